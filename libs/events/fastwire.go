package events

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// decodeWireFast decodes the envelope of a document as Marshal writes it (an object whose
// attributes are strings without escapes, data an object) in one pass, without encoding/json,
// and keeps data raw for protojson. It reports false for anything else (escapes, nulls,
// numbers, unknown attributes that are not plain strings, malformed JSON): the caller then
// decodes the document with encoding/json, which also words the errors. Decoding the envelope
// with encoding/json took as long as decoding the payload.
func decodeWireFast(b []byte, w *wire) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		ks, ke, ok := rawString(b, i)
		if !ok {
			return false
		}
		// The name is matched as bytes (a switch on string(b[..]) builds no string).
		key := attrKey(b[ks:ke])
		i = skipSpace(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if key == attrData {
			end, ok := skipObject(b, i)
			if !ok {
				return false
			}
			w.Data = b[i:end]
			i = end
		} else {
			vs, ve, ok := rawString(b, i)
			if !ok || !validUTF8(b[vs:ve]) {
				// encoding/json replaces invalid UTF-8 with U+FFFD.
				return false
			}
			val := b[vs:ve]
			i = ve + 1
			switch key {
			case attrSpecVersion:
				w.SpecVersion = internAttr(val)
			case attrID:
				w.ID = string(val)
			case attrSource:
				w.Source = internAttr(val)
			case attrType:
				w.Type = internAttr(val)
			case attrSubject:
				w.Subject = string(val)
			case attrDataContentType:
				w.DataContentType = internAttr(val)
			case attrTenant:
				w.Tenant = string(val)
			case attrCorrelationID:
				w.CorrelationID = string(val)
			case attrTraceParent:
				w.TraceParent = string(val)
			case attrTime:
				if err := w.Time.UnmarshalJSON(b[vs-1 : ve+1]); err != nil {
					return false
				}
			default:
				// An extension attribute, ignored as encoding/json ignores it, unless
				// encoding/json would take it for one of ours (it folds case).
				if !lowerASCII(b[ks:ke]) {
					return false
				}
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// attr is an envelope attribute's name, as decodeWireFast matched it.
type attr int

const (
	attrOther attr = iota
	attrSpecVersion
	attrID
	attrSource
	attrType
	attrSubject
	attrDataContentType
	attrTenant
	attrCorrelationID
	attrTraceParent
	attrTime
	attrData
)

func attrKey(name []byte) attr {
	switch string(name) {
	case "specversion":
		return attrSpecVersion
	case "id":
		return attrID
	case "source":
		return attrSource
	case "type":
		return attrType
	case "subject":
		return attrSubject
	case "datacontenttype":
		return attrDataContentType
	case "tenant":
		return attrTenant
	case "correlationid":
		return attrCorrelationID
	case "traceparent":
		return attrTraceParent
	case "time":
		return attrTime
	case "data":
		return attrData
	}
	return attrOther
}

// interned are the attribute values that repeat in every document (the spec version,
// content type, and every registered type and source), answered without allocating.
var interned = func() map[string]string {
	m := map[string]string{SpecVersion: SpecVersion, DataContentType: DataContentType}
	for _, d := range registry {
		m[string(d.Message)] = string(d.Message)
		m[d.Source()] = d.Source()
	}
	return m
}()

// validUTF8 is utf8.Valid, quicker on ASCII.
func validUTF8(b []byte) bool {
	for i, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b[i:])
		}
	}
	return true
}

func internAttr(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipObject returns the index after the JSON object at b[i], matching braces and brackets
// outside strings. It does not validate what is inside (protojson does, as it decodes it).
func skipObject(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	var room [32]byte
	stack := room[:0] // deeper documents grow it
	for j := i; j < len(b); j++ {
		switch c := b[j]; c {
		case '"':
			// To the closing quote: the next quote not escaped (after an even number of
			// backslashes).
			for {
				k := bytes.IndexByte(b[j+1:], '"')
				if k < 0 {
					return 0, false
				}
				j += k + 1
				n := 0
				for b[j-1-n] == '\\' {
					n++
				}
				if n%2 == 0 {
					break
				}
			}
		case '{', '[':
			stack = append(stack, c)
		case '}', ']':
			if len(stack) == 0 || (c == '}') != (stack[len(stack)-1] == '{') {
				return 0, false
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, true
			}
		}
	}
	return 0, false
}

// hasEscape reports whether s would need escaping as a JSON string (so the fast path of
// Marshal does not write it itself).
func hasEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			return true
		}
	}
	return false
}

func lowerASCII(s []byte) bool {
	for _, c := range s {
		if c >= 0x80 || (c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// appendWireFast writes the document of w to dst as encoding/json writes it, and reports
// false when an attribute needs escaping or data is not compact already (protojson's output:
// the caller then uses encoding/json, which compacts it).
func appendWireFast(dst *bytes.Buffer, w *wire, compact bool) bool {
	for _, s := range []string{w.SpecVersion, w.ID, w.Source, w.Type, w.Subject, w.DataContentType, w.Tenant, w.CorrelationID, w.TraceParent} {
		if hasEscape(s) {
			return false
		}
	}
	b := dst.AvailableBuffer()
	b = append(b, '{')
	b = appendAttr(b, "specversion", w.SpecVersion, false)
	b = appendAttr(b, "id", w.ID, false)
	b = appendAttr(b, "source", w.Source, false)
	b = appendAttr(b, "type", w.Type, false)
	b = appendAttr(b, "subject", w.Subject, true)
	if !w.Time.IsZero() {
		// What Time.MarshalJSON writes, without its allocation.
		b = append(b, `,"time":"`...)
		var err error
		if b, err = w.Time.AppendText(b); err != nil {
			return false
		}
		b = append(b, '"')
	}
	b = appendAttr(b, "datacontenttype", w.DataContentType, false)
	b = appendAttr(b, "tenant", w.Tenant, true)
	b = appendAttr(b, "correlationid", w.CorrelationID, true)
	b = appendAttr(b, "traceparent", w.TraceParent, true)
	b = append(b, `,"data":`...)
	if !compact {
		// The payload protojson wrote: encoding/json compacts it and escapes it for HTML.
		return false
	}
	if needsHTMLEscape(w.Data) {
		// What encoding/json does to a RawMessage: <, >, &, U+2028 and U+2029 (which in
		// JSON can only be inside strings) become \u escapes.
		dst.Write(b)
		json.HTMLEscape(dst, w.Data)
	} else {
		b = append(b, w.Data...)
		dst.Write(b)
	}
	dst.WriteByte('}')
	return true
}

// needsHTMLEscape reports whether b has a byte encoding/json escapes in a RawMessage: <, >, &,
// or the first byte of U+2028 or U+2029.
func needsHTMLEscape(b []byte) bool {
	for i, c := range b {
		switch {
		case c == '<' || c == '>' || c == '&':
			return true
		case c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && b[i+2]&^1 == 0xA8:
			return true
		}
	}
	return false
}

// appendAttr appends "name":"v" (after a comma unless it is the first), or nothing for an
// empty v with omitEmpty.
func appendAttr(dst []byte, name, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return dst
	}
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":"`...)
	dst = append(dst, v...)
	return append(dst, '"')
}
