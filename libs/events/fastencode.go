package events

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// appendDataFast appends the payload m as protojson.Marshal writes it, compacted (its fields
// in declaration order under their JSON names, unpopulated fields left out, 64-bit integers
// quoted, enums by name, Timestamp in RFC 3339 with 0, 3, 6 or 9 fractional digits), walking
// m's fields with protoreflect and writing the JSON itself. It reports false for anything it
// does not write (a float, bytes, a map, a well-known type other than Timestamp, a required
// field, an extension, a string protojson would escape, a timestamp out of range, deeper
// nesting than maxFastDepth): the caller then uses protojson. protojson's encoder
// (reflection through order.RangeFields, its sort and a buffer grown per value) was most of
// the cost and allocations of publishing an event.
func appendDataFast(dst []byte, m protoreflect.Message, depth int) ([]byte, bool) {
	md := m.Descriptor()
	if depth > maxFastDepth {
		return nil, false
	}
	if md.FullName().Parent() == "google.protobuf" {
		if md.FullName() != "google.protobuf.Timestamp" {
			return nil, false
		}
		return appendTimestamp(dst, m)
	}
	dst = append(dst, '{')
	first := true
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Cardinality() == protoreflect.Required {
			return nil, false
		}
		if !m.Has(fd) {
			continue
		}
		if fd.IsMap() || fd.IsExtension() {
			return nil, false
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, fd.JSONName()...)
		dst = append(dst, '"', ':')
		v := m.Get(fd)
		var ok bool
		if fd.IsList() {
			l := v.List()
			dst = append(dst, '[')
			for j := range l.Len() {
				if j > 0 {
					dst = append(dst, ',')
				}
				if dst, ok = appendValueFast(dst, fd, l.Get(j), depth); !ok {
					return nil, false
				}
			}
			dst = append(dst, ']')
			continue
		}
		if dst, ok = appendValueFast(dst, fd, v, depth); !ok {
			return nil, false
		}
	}
	return append(dst, '}'), true
}

// appendValueFast appends one value of field fd (an element, for a list).
func appendValueFast(dst []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) ([]byte, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s := v.String()
		if !plainString(s) {
			return nil, false
		}
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"'), true
	case protoreflect.BoolKind:
		return strconv.AppendBool(dst, v.Bool()), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(dst, v.Int(), 10), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(dst, v.Uint(), 10), true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, v.Int(), 10)
		return append(dst, '"'), true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, v.Uint(), 10)
		return append(dst, '"'), true
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			return nil, false
		}
		ev := ed.Values().ByNumber(v.Enum())
		if ev == nil {
			return strconv.AppendInt(dst, int64(v.Enum()), 10), true
		}
		dst = append(dst, '"')
		dst = append(dst, ev.Name()...)
		return append(dst, '"'), true
	case protoreflect.MessageKind:
		return appendDataFast(dst, v.Message(), depth+1)
	}
	return nil, false
}

// plainString reports whether protojson writes s as it is between quotes: valid UTF-8 without
// control characters, quotes, backslashes or U+FFFD.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return false
		} else if c >= 0x80 {
			return utf8.ValidString(s[i:]) && !strings.ContainsRune(s[i:], utf8.RuneError)
		}
	}
	return true
}

// Timestamp's range as protojson accepts it: 0001-01-01 to 9999-12-31.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// appendTimestamp appends a google.protobuf.Timestamp as protojson writes it.
func appendTimestamp(dst []byte, m protoreflect.Message) ([]byte, bool) {
	fds := m.Descriptor().Fields()
	secs, nanos := m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos >= 1e9 {
		return nil, false
	}
	dst = append(dst, '"')
	start := len(dst)
	dst = time.Unix(secs, nanos).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000000")
	text := bytes.TrimSuffix(bytes.TrimSuffix(dst[start:], []byte("000")), []byte("000"))
	text = bytes.TrimSuffix(text, []byte(".000"))
	dst = dst[:start+len(text)]
	return append(dst, 'Z', '"'), true
}
