package awsfleet

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	smithytime "github.com/aws/smithy-go/time"
)

// xmlReader is the small streaming XML reader behind the lean EC2 decoders (leandecode.go).
// It reads the subset of XML that EC2's query protocol answers with: an optional
// `<?xml version="1.0" encoding="UTF-8"?>` declaration, a root element whose attributes
// (xmlns) are ignored, and below it elements without attributes or namespace prefixes holding
// either child elements or text with the five predefined entities and character references.
//
// Anything outside that subset (comments, CDATA, processing instructions or a DOCTYPE,
// carriage returns, which encoding/xml would normalise, characters XML forbids, "]]>" in text,
// attributes below the root, names that are not plain ASCII, a mismatched end tag, a
// truncated body, another encoding) makes the reader bad: the decoder stops and the caller
// falls back to the SDK's own decoder, which then decodes the body or reports its error
// exactly as it would have without us. The reader never panics on any input.
//
// Element names are matched as the SDK matches them (strings.EqualFold on the local name):
// the reader lowers ASCII names into a scratch buffer, and the decoders switch on that.
type xmlReader struct {
	b   []byte
	i   int
	bad bool

	// pendingEnd is set after a self-closing start tag: the next token is its end.
	pendingEnd bool
	// name is the name of the last start or end tag, as written (a slice of b).
	name []byte
	// lower is name in ASCII lower case (a slice of lowerBuf), "" when longer than lowerBuf.
	lower    []byte
	lowerBuf [64]byte
	// scratch holds the last value whose entities were replaced.
	scratch []byte
	// interned holds the values intern has seen in this answer.
	interned map[string]string
	// The SDK's types hold values by pointer; these slabs hand out the pointers in blocks
	// (each pointer to an element of its own, so nothing is aliased).
	strs  []string
	i32s  []int32
	bools []bool
	times []time.Time
}

type xmlToken int

const (
	tokBad xmlToken = iota
	tokStart
	tokEnd
	tokText
)

// fail marks the reader bad and returns tokBad.
func (r *xmlReader) fail() xmlToken {
	r.bad = true
	return tokBad
}

// root reads the declaration and the root start tag. It reports false for a body that is
// not in the subset (including an empty one: the SDK has its own rule for that).
func (r *xmlReader) root() bool {
	r.skipSpace()
	if bytes.HasPrefix(r.b[r.i:], []byte("<?xml")) {
		end := bytes.Index(r.b[r.i:], []byte("?>"))
		if end < 0 {
			r.bad = true
			return false
		}
		switch string(bytes.TrimSpace(r.b[r.i+len("<?xml") : r.i+end])) {
		case `version="1.0" encoding="UTF-8"`, `version="1.0" encoding="utf-8"`, `version="1.0"`:
		default:
			r.bad = true
			return false
		}
		r.i += end + 2
		r.skipSpace()
	}
	if r.i >= len(r.b) || r.b[r.i] != '<' {
		r.bad = true
		return false
	}
	r.i++
	if !r.readName(true) {
		r.bad = true
		return false
	}
	// Attributes: name="value" or name='value', values without '<' or '&'.
	for {
		sp := r.skipSpace()
		if r.i >= len(r.b) {
			r.bad = true
			return false
		}
		switch r.b[r.i] {
		case '>':
			r.i++
			return true
		case '/':
			// A self-closing root: nothing to decode, leave it to the SDK.
			r.bad = true
			return false
		}
		if !sp || !r.skipAttribute() {
			r.bad = true
			return false
		}
	}
}

func (r *xmlReader) skipAttribute() bool {
	start := r.i
	for r.i < len(r.b) && (isNameByte(r.b[r.i]) || r.b[r.i] == ':') {
		r.i++
	}
	if r.i == start || !isNameStart(r.b[start]) {
		return false
	}
	r.skipSpace()
	if r.i >= len(r.b) || r.b[r.i] != '=' {
		return false
	}
	r.i++
	r.skipSpace()
	if r.i >= len(r.b) || (r.b[r.i] != '"' && r.b[r.i] != '\'') {
		return false
	}
	q := r.b[r.i]
	r.i++
	end := bytes.IndexByte(r.b[r.i:], q)
	if end < 0 {
		return false
	}
	v := r.b[r.i : r.i+end]
	if bytes.ContainsAny(v, "<&") || !validText(v) {
		return false
	}
	r.i += end + 1
	return true
}

func (r *xmlReader) skipSpace() bool {
	start := r.i
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n':
			r.i++
			continue
		}
		break
	}
	return r.i > start
}

// nameClass classifies bytes of tag names: 1 may start a name, 2 may follow.
var nameClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
			t[c] = 1 | 2
		case c >= '0' && c <= '9', c == '-', c == '.':
			t[c] = 2
		}
	}
	return t
}()

func isNameStart(c byte) bool { return nameClass[c]&1 != 0 }

func isNameByte(c byte) bool { return nameClass[c]&2 != 0 }

// readName reads a tag name at r.i into name, and into lower when lower is set (start tags:
// end tags are only compared with their start).
func (r *xmlReader) readName(lower bool) bool {
	start := r.i
	b := r.b
	if r.i >= len(b) || nameClass[b[r.i]]&1 == 0 {
		return false
	}
	i := r.i + 1
	for i < len(b) && nameClass[b[i]]&2 != 0 {
		i++
	}
	r.i = i
	r.name = b[start:i]
	if !lower {
		return true
	}
	if len(r.name) > len(r.lowerBuf) {
		r.lower = r.lowerBuf[:0]
		return true
	}
	for j, c := range r.name {
		if c <= 'Z' && c >= 'A' {
			c += 'a' - 'A'
		}
		r.lowerBuf[j] = c
	}
	r.lower = r.lowerBuf[:len(r.name)]
	return true
}

// next reads the next token: a start tag (name), an end tag (name, not yet checked against
// its start), or text (raw, validated; unescape with textValue).
func (r *xmlReader) next() (xmlToken, []byte) {
	if r.bad {
		return tokBad, nil
	}
	if r.pendingEnd {
		r.pendingEnd = false
		return tokEnd, nil
	}
	if r.i >= len(r.b) {
		return r.fail(), nil
	}
	if r.b[r.i] != '<' {
		end := bytes.IndexByte(r.b[r.i:], '<')
		if end < 0 {
			return r.fail(), nil
		}
		text := r.b[r.i : r.i+end]
		r.i += end
		if !validText(text) {
			return r.fail(), nil
		}
		return tokText, text
	}
	r.i++
	if r.i < len(r.b) && r.b[r.i] == '/' {
		r.i++
		if !r.readName(false) {
			return r.fail(), nil
		}
		r.skipSpace()
		if r.i >= len(r.b) || r.b[r.i] != '>' {
			return r.fail(), nil
		}
		r.i++
		return tokEnd, r.name
	}
	if !r.readName(true) {
		// Comments, CDATA, processing instructions, prefixed or non-ASCII names.
		return r.fail(), nil
	}
	r.skipSpace()
	switch {
	case r.i < len(r.b) && r.b[r.i] == '>':
		r.i++
	case r.i+1 < len(r.b) && r.b[r.i] == '/' && r.b[r.i+1] == '>':
		r.i += 2
		r.pendingEnd = true
	default:
		// Attributes below the root.
		return r.fail(), nil
	}
	return tokStart, r.name
}

// validText reports whether text is characters encoding/xml accepts and passes unchanged
// (apart from references): no carriage returns (it would normalise them), no "]]>", no
// control characters, valid UTF-8 in XML's character range, every '&' a predefined entity or
// a character reference to a character in that range.
func validText(text []byte) bool {
	if bytes.Contains(text, []byte("]]>")) {
		return false
	}
	for j := 0; j < len(text); {
		c := text[j]
		switch {
		case c == '&':
			n, _ := reference(text[j:])
			if n == 0 {
				return false
			}
			j += n
		case c < utf8.RuneSelf:
			if c < 0x20 && c != '\t' && c != '\n' {
				return false
			}
			j++
		default:
			ru, size := utf8.DecodeRune(text[j:])
			if ru == utf8.RuneError && size == 1 || !inXMLRange(ru) {
				return false
			}
			j += size
		}
	}
	return true
}

func inXMLRange(r rune) bool {
	return r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// reference reads the entity or character reference text starts with, and returns its length
// and character; 0 when it is not one we accept.
func reference(text []byte) (int, rune) {
	for _, e := range [...]struct {
		s string
		r rune
	}{{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}} {
		if bytes.HasPrefix(text, []byte(e.s)) {
			return len(e.s), e.r
		}
	}
	if len(text) < 4 || text[1] != '#' {
		return 0, 0
	}
	j, base, maxDigits := 2, 10, 7
	if text[2] == 'x' {
		j, base, maxDigits = 3, 16, 6
	}
	start := j
	for j < len(text) && j-start <= maxDigits && isDigit(text[j], base) {
		j++
	}
	if j == start || j-start > maxDigits || j >= len(text) || text[j] != ';' {
		return 0, 0
	}
	n, err := strconv.ParseUint(string(text[start:j]), base, 32)
	if err != nil {
		return 0, 0
	}
	r := rune(n)
	if r != '\t' && r != '\n' && r != '\r' && !inXMLRange(r) {
		return 0, 0
	}
	return j + 1, r
}

func isDigit(c byte, base int) bool {
	return c >= '0' && c <= '9' || base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
}

// unescape returns text with its references replaced (text itself when it has none).
func (r *xmlReader) unescape(text []byte) []byte {
	if bytes.IndexByte(text, '&') < 0 {
		return text
	}
	out := r.scratch[:0]
	for j := 0; j < len(text); {
		c := text[j]
		if c != '&' {
			out = append(out, c)
			j++
			continue
		}
		n, ru := reference(text[j:])
		out = utf8.AppendRune(out, ru)
		j += n
	}
	r.scratch = out
	return out
}

// child reads up to the next child element of the element named parent and reports true with
// the child's name in r.name/r.lower; false at parent's end tag or when the reader is bad.
// Text between children is ignored, as the SDK ignores it.
func (r *xmlReader) child(parent []byte) bool {
	for {
		tok, name := r.next()
		switch tok {
		case tokStart:
			return true
		case tokEnd:
			if name != nil && !bytes.Equal(name, parent) {
				r.bad = true
			}
			return false
		case tokText:
			continue
		default:
			return false
		}
	}
}

// value reads the text of the element just started (its name is given) up to its end tag:
// "" for an empty or self-closing element. A child element inside makes the reader bad (the
// SDK fails such a body). The result is only valid until the next call.
func (r *xmlReader) value(name []byte) []byte {
	tok, text := r.next()
	switch tok {
	case tokEnd:
		if text != nil && !bytes.Equal(text, name) {
			r.bad = true
		}
		return nil
	case tokText:
	default:
		r.bad = true
		return nil
	}
	tok, end := r.next()
	if tok != tokEnd || !bytes.Equal(end, name) {
		r.bad = true
		return nil
	}
	return r.unescape(text)
}

// skip skips the rest of the element just started, checking that it is well formed.
func (r *xmlReader) skip(name []byte) {
	// Names are slices of the body, so the stack of open names costs no copy.
	stack := [][]byte{name}
	for len(stack) > 0 {
		tok, n := r.next()
		switch tok {
		case tokStart:
			stack = append(stack, n)
		case tokEnd:
			// A nil name is the end of a self-closing tag.
			if n != nil && !bytes.Equal(n, stack[len(stack)-1]) {
				r.bad = true
				return
			}
			stack = stack[:len(stack)-1]
		case tokText:
		default:
			return
		}
	}
}

// Typed values, decoded as the SDK decodes them (strconv and smithy's time parser); a value
// the SDK would fail on makes the reader bad.

// slabSize is how many values of a kind one allocation holds, at most; a small answer (a
// CreateSnapshots answer of about 1 KB holds a dozen strings) gets smaller slabs, about one
// value per slabBytes of body, so a call that decodes a few values does not allocate for a
// hundred.
const (
	slabSize    = 128
	minSlabSize = 8
	slabBytes   = 64
)

// slab returns how many values of a kind the next allocation holds.
func (r *xmlReader) slab() int {
	return min(slabSize, max(minSlabSize, len(r.b)/slabBytes))
}

func (r *xmlReader) newString(s string) *string {
	if len(r.strs) == 0 {
		r.strs = make([]string, r.slab())
	}
	p := &r.strs[0]
	r.strs = r.strs[1:]
	*p = s
	return p
}

func (r *xmlReader) str(name []byte) *string {
	v := r.value(name)
	if r.bad {
		return nil
	}
	return r.newString(string(v))
}

// text reads an enum-like value: interned (see intern).
func (r *xmlReader) text(name []byte) string {
	v := r.value(name)
	if r.bad {
		return ""
	}
	return r.intern(v)
}

// common reads a string value that repeats within one answer (tag keys and values, zones,
// image ids, ...): the pointer is the value's own, the characters are shared.
func (r *xmlReader) common(name []byte) *string {
	v := r.value(name)
	if r.bad {
		return nil
	}
	return r.newString(r.intern(v))
}

// maxInterned bounds the interned values (length and number), so an answer of unique values
// costs a bounded map. Answers shorter than minInternBody are not interned: their few values
// repeat little, and the map would cost more than the copies it saves.
const (
	maxInternedLen = 64
	maxInterned    = 512
	minInternBody  = 4 << 10
)

// intern returns v as a string, the same string for equal values within one answer: a page of
// 1,000 instances repeats its tag keys, states, zones and image ids in every instance, and a
// copy of each was a good part of the decoder's allocations. Strings are immutable, so sharing
// them is invisible to the caller.
func (r *xmlReader) intern(v []byte) string {
	if len(v) > maxInternedLen || len(r.b) < minInternBody {
		return string(v)
	}
	if s, ok := r.interned[string(v)]; ok {
		return s
	}
	s := string(v)
	if r.interned == nil {
		r.interned = make(map[string]string, 64)
	}
	if len(r.interned) < maxInterned {
		r.interned[s] = s
	}
	return s
}

func (r *xmlReader) int32(name []byte) *int32 {
	v := r.value(name)
	if r.bad {
		return nil
	}
	i, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		r.bad = true
		return nil
	}
	if len(r.i32s) == 0 {
		r.i32s = make([]int32, r.slab())
	}
	p := &r.i32s[0]
	r.i32s = r.i32s[1:]
	*p = int32(i) // truncated as the SDK truncates
	return p
}

func (r *xmlReader) int64(name []byte) *int64 {
	v := r.value(name)
	if r.bad {
		return nil
	}
	i, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		r.bad = true
		return nil
	}
	return &i
}

func (r *xmlReader) bool(name []byte) *bool {
	v := r.value(name)
	if r.bad {
		return nil
	}
	b, err := strconv.ParseBool(string(v))
	if err != nil {
		r.bad = true
		return nil
	}
	if len(r.bools) == 0 {
		r.bools = make([]bool, r.slab())
	}
	p := &r.bools[0]
	r.bools = r.bools[1:]
	*p = b
	return p
}

func (r *xmlReader) time(name []byte) *time.Time {
	v := r.value(name)
	if r.bad {
		return nil
	}
	t, err := smithytime.ParseDateTime(string(v))
	if err != nil {
		r.bad = true
		return nil
	}
	if len(r.times) == 0 {
		r.times = make([]time.Time, max(1, r.slab()/4))
	}
	p := &r.times[0]
	r.times = r.times[1:]
	*p = t
	return p
}
