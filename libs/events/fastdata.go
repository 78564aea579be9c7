package events

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// decodeDataFast decodes a payload as protojson.Marshal writes it (JSON names, strings
// without escapes, integers, floating-point numbers, enum names (not numbers), RFC 3339 UTC
// timestamps, durations, nested messages and lists) into m, a new message: it transcodes the
// JSON to the protobuf binary form in one pass, guided by m's descriptor, and unmarshals that
// (the generated code's fast path, no reflection per field). It reports false for anything
// else: an unknown or repeated field, null, an escape, NaN or an infinity, a quoted number, a
// well-known type other than Timestamp and Duration, a map, bytes, two fields of one oneof,
// malformed JSON; the caller then decodes a fresh message with
// protojson, which also words the errors. It never accepts a document protojson refuses, and
// what it decodes equals protojson's result (FuzzDecodeData). protojson's tokenizer and
// reflection were most of the cost of receiving an event.
func decodeDataFast(b []byte, m proto.Message) bool {
	bp := transcodeBufs.Get().(*[]byte)
	defer transcodeBufs.Put(bp)
	buf, i, ok := transObject((*bp)[:0], b, skipSpace(b, 0), fastMsgOf(m.ProtoReflect().Descriptor()), 0)
	if cap(buf) <= 64<<10 {
		*bp = buf
	}
	return ok && skipSpace(b, i) == len(b) && freshUnmarshal.Unmarshal(buf, m) == nil
}

// freshUnmarshal unmarshals into a message that is new (every caller's is), so it skips the
// Reset that proto.Unmarshal does first.
var freshUnmarshal = proto.UnmarshalOptions{Merge: true}

var transcodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxFastDepth bounds nesting on the fast path (protojson's own limit is far deeper; a deeper
// document falls back to it).
const maxFastDepth = 16

// fastMsg is what the fast path needs of a message type, read once from its descriptor: the
// descriptor's methods are interface calls, which were a visible part of decoding.
type fastMsg struct {
	// fields by JSON name.
	fields map[string]*fastField
	// tooMany: more fields or oneofs than the duplicate checks' bits (the fast path refuses).
	tooMany bool
}

// fastField is one field of a fastMsg.
type fastField struct {
	num  protowire.Number
	kind protoreflect.Kind
	// bit marks the field among its message's, oneof its oneof (0: none).
	bit, oneof    uint64
	list, message bool
	// unsupported: a map or a group (the fast path refuses).
	unsupported bool
	// wkt is the well-known type of a message field; sub the message's own plan otherwise.
	wkt wellKnown
	sub *fastMsg
	// enums are an enum field's values by name (a lookup by bytes does not allocate).
	enums map[string]protoreflect.EnumNumber
	// checkedUTF8: proto.Unmarshal checks the string field's UTF-8 (checkedUTF8).
	checkedUTF8 bool
}

type wellKnown int

const (
	notWellKnown wellKnown = iota
	wktTimestamp
	wktDuration
	// wktOther: Struct, wrappers and the rest, which have JSON forms of their own.
	wktOther
)

// fastMsgs holds the plan of each message type.
var fastMsgs sync.Map // protoreflect.FullName -> *fastMsg

func fastMsgOf(md protoreflect.MessageDescriptor) *fastMsg {
	if v, ok := fastMsgs.Load(md.FullName()); ok {
		return v.(*fastMsg)
	}
	built := map[protoreflect.FullName]*fastMsg{}
	m := buildFastMsg(md, built)
	for name, fm := range built {
		fastMsgs.LoadOrStore(name, fm)
	}
	return m
}

// buildFastMsg builds md's plan and those of the messages it holds, into built (which also
// ends recursion: a message type that holds itself).
func buildFastMsg(md protoreflect.MessageDescriptor, built map[protoreflect.FullName]*fastMsg) *fastMsg {
	if m, ok := built[md.FullName()]; ok {
		return m
	}
	fds := md.Fields()
	m := &fastMsg{fields: make(map[string]*fastField, fds.Len()), tooMany: fds.Len() > 64 || md.Oneofs().Len() > 64}
	built[md.FullName()] = m
	if m.tooMany {
		return m
	}
	for i := range fds.Len() {
		fd := fds.Get(i)
		f := &fastField{
			num: fd.Number(), kind: fd.Kind(), bit: uint64(1) << fd.Index(),
			list: fd.IsList(), message: fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind,
			unsupported: fd.IsMap() || fd.Kind() == protoreflect.GroupKind,
			checkedUTF8: checkedUTF8(fd),
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			f.oneof = uint64(1) << od.Index()
		}
		switch {
		case f.unsupported:
		case f.message:
			switch name := fd.Message().FullName(); {
			case name == "google.protobuf.Timestamp":
				f.wkt = wktTimestamp
			case name == "google.protobuf.Duration":
				f.wkt = wktDuration
			case name.Parent() == "google.protobuf":
				f.wkt = wktOther
			default:
				f.sub = buildFastMsg(fd.Message(), built)
			}
		case f.kind == protoreflect.EnumKind:
			vals := fd.Enum().Values()
			f.enums = make(map[string]protoreflect.EnumNumber, vals.Len())
			for k := range vals.Len() {
				v := vals.Get(k)
				f.enums[string(v.Name())] = v.Number()
			}
		}
		m.fields[fd.JSONName()] = f
	}
	return m
}

// transObject appends the binary form of the object at b[i], a message m, to dst, and
// returns it and the index after the object.
func transObject(dst, b []byte, i int, m *fastMsg, depth int) ([]byte, int, bool) {
	if depth > maxFastDepth || i >= len(b) || b[i] != '{' || m.tooMany {
		return nil, 0, false
	}
	var seen, oneofs uint64
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return dst, i + 1, true
	}
	for {
		start, end, ok := rawString(b, i)
		if !ok {
			return nil, 0, false
		}
		f := m.fields[string(b[start:end])]
		if f == nil || f.unsupported {
			return nil, 0, false
		}
		if seen&f.bit != 0 {
			return nil, 0, false // a duplicate: protojson refuses it
		}
		seen |= f.bit
		if f.oneof != 0 {
			if oneofs&f.oneof != 0 {
				return nil, 0, false // two fields of a oneof: protojson refuses it
			}
			oneofs |= f.oneof
		}
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return nil, 0, false
		}
		i = skipSpace(b, i+1)
		switch {
		case f.list:
			dst, i, ok = transList(dst, b, i, f, depth)
		case f.message:
			dst, i, ok = transMessage(dst, b, i, f, depth)
		default:
			dst, i, ok = transScalar(dst, b, i, f)
		}
		if !ok {
			return nil, 0, false
		}
		var done bool
		if i, done, ok = nextItem(b, i, '}'); !ok {
			return nil, 0, false
		} else if done {
			return dst, i, true
		}
	}
}

// nextItem reads what follows a member of an object or an element of a list at b[i]: a comma
// (the next one starts at the returned index) or the closing end (done; the returned index
// follows it); ok is false for anything else.
func nextItem(b []byte, i int, end byte) (next int, done, ok bool) {
	i = skipSpace(b, i)
	switch {
	case i >= len(b):
		return 0, false, false
	case b[i] == ',':
		return skipSpace(b, i+1), false, true
	case b[i] == end:
		return i + 1, true, true
	}
	return 0, false, false
}

// transMessage appends a message field f (one element of it if it is a list): its tag, its
// length and the binary form of the object (or the Timestamp's or Duration's string) at b[i].
func transMessage(dst, b []byte, i int, f *fastField, depth int) ([]byte, int, bool) {
	dst = protowire.AppendTag(dst, f.num, protowire.BytesType)
	// One byte for the length, what most messages here need; a longer one moves the message.
	dst = append(dst, 0)
	mark := len(dst)
	var ok bool
	switch f.wkt {
	case wktTimestamp:
		dst, i, ok = transTimestamp(dst, b, i)
	case wktDuration:
		dst, i, ok = transDuration(dst, b, i)
	case wktOther:
		return nil, 0, false
	default:
		dst, i, ok = transObject(dst, b, i, f.sub, depth+1)
	}
	if !ok {
		return nil, 0, false
	}
	n := len(dst) - mark
	if n < 0x80 {
		dst[mark-1] = byte(n)
		return dst, i, true
	}
	var tmp [binary.MaxVarintLen64]byte
	l := protowire.AppendVarint(tmp[:0], uint64(n))
	dst = append(dst, l[1:]...)
	copy(dst[mark-1+len(l):], dst[mark:mark+n])
	copy(dst[mark-1:], l)
	return dst, i, true
}

// transList appends the list at b[i], the repeated field f.
func transList(dst, b []byte, i int, f *fastField, depth int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '[' {
		return nil, 0, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return dst, i + 1, true
	}
	for {
		var ok bool
		if f.message {
			dst, i, ok = transMessage(dst, b, i, f, depth)
		} else {
			dst, i, ok = transScalar(dst, b, i, f)
		}
		if !ok {
			return nil, 0, false
		}
		var done bool
		if i, done, ok = nextItem(b, i, ']'); !ok {
			return nil, 0, false
		} else if done {
			return dst, i, true
		}
	}
}

// transScalar appends the value at b[i] of a scalar field (or a list element) f, with its
// tag. A list of scalars is written unpacked, which every decoder reads as the packed form.
func transScalar(dst, b []byte, i int, f *fastField) ([]byte, int, bool) {
	num := f.num
	switch f.kind {
	case protoreflect.StringKind:
		start, end, ok := rawString(b, i)
		if !ok || (!f.checkedUTF8 && !utf8.Valid(b[start:end])) {
			return nil, 0, false
		}
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendBytes(dst, b[start:end]), end + 1, true
	case protoreflect.BoolKind:
		var v uint64
		switch {
		case hasLiteral(b, i, "true"):
			v, i = 1, i+4
		case hasLiteral(b, i, "false"):
			i += 5
		default:
			return nil, 0, false
		}
		return protowire.AppendVarint(protowire.AppendTag(dst, num, protowire.VarintType), v), i, true
	case protoreflect.EnumKind:
		start, end, ok := rawString(b, i)
		if !ok {
			return nil, 0, false
		}
		n, ok := f.enums[string(b[start:end])]
		if !ok {
			return nil, 0, false
		}
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, uint64(int64(n))), end + 1, true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, end, ok := jsonInt(b, i, 32, true)
		if !ok {
			return nil, 0, false
		}
		return appendInt(dst, f, n), end, true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, end, ok := jsonInt(b, i, 32, false)
		if !ok {
			return nil, 0, false
		}
		return appendInt(dst, f, n), end, true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, end, ok := quotedInt(b, i, true)
		if !ok {
			return nil, 0, false
		}
		return appendInt(dst, f, n), end, true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, end, ok := quotedInt(b, i, false)
		if !ok {
			return nil, 0, false
		}
		return appendInt(dst, f, n), end, true
	case protoreflect.DoubleKind:
		f, end, ok := jsonFloat(b, i, 64)
		if !ok {
			return nil, 0, false
		}
		return protowire.AppendFixed64(protowire.AppendTag(dst, num, protowire.Fixed64Type), math.Float64bits(f)), end, true
	case protoreflect.FloatKind:
		f, end, ok := jsonFloat(b, i, 32)
		if !ok {
			return nil, 0, false
		}
		return protowire.AppendFixed32(protowire.AppendTag(dst, num, protowire.Fixed32Type), math.Float32bits(float32(f))), end, true
	}
	return nil, 0, false
}

// checkedUTF8 says whether proto.Unmarshal checks that the string field fd is valid UTF-8
// (a proto3 string: it refuses the message otherwise, and the caller falls back to protojson,
// which refuses it too), so the fast path need not check it first.
func checkedUTF8(fd protoreflect.FieldDescriptor) bool {
	return fd.Syntax() == protoreflect.Proto3
}

// jsonNumber returns the index after the JSON number at b[i]
// (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?), the grammar protojson reads.
func jsonNumber(b []byte, i int) (int, bool) {
	digits := func(j int) int {
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j
	}
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		j = digits(j + 1)
	default:
		return 0, false
	}
	if j < len(b) && b[j] == '.' {
		k := digits(j + 1)
		if k == j+1 {
			return 0, false
		}
		j = k
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := digits(j)
		if k == j {
			return 0, false
		}
		j = k
	}
	return j, true
}

// jsonFloat reads a floating-point field as protojson writes it, a JSON number (NaN and the
// infinities, which it writes as strings, and numbers out of range go to protojson), and
// rounds it to bits as protojson does.
func jsonFloat(b []byte, i, bits int) (float64, int, bool) {
	end, ok := jsonNumber(b, i)
	if !ok {
		return 0, 0, false
	}
	f, err := strconv.ParseFloat(string(b[i:end]), bits)
	return f, end, err == nil
}

// appendInt appends an integer field's tag and value in its kind's encoding; n holds the
// value's bits (an unsigned 64-bit value reinterpreted).
func appendInt(dst []byte, f *fastField, n int64) []byte {
	num := f.num
	switch f.kind {
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return protowire.AppendVarint(protowire.AppendTag(dst, num, protowire.VarintType), protowire.EncodeZigZag(n))
	case protoreflect.Sfixed32Kind, protoreflect.Fixed32Kind:
		return protowire.AppendFixed32(protowire.AppendTag(dst, num, protowire.Fixed32Type), uint32(n))
	case protoreflect.Sfixed64Kind, protoreflect.Fixed64Kind:
		return protowire.AppendFixed64(protowire.AppendTag(dst, num, protowire.Fixed64Type), uint64(n))
	default:
		return protowire.AppendVarint(protowire.AppendTag(dst, num, protowire.VarintType), uint64(n))
	}
}

func hasLiteral(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// rawString returns the bounds of the contents of the JSON string at b[i] when it has no
// escapes and no control characters (end is the index of its closing quote).
func rawString(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		if c := b[j]; stringStops[c] {
			if c == '"' {
				return i + 1, j, true
			}
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// stringStops are the bytes that end rawString's scan: the closing quote, an escape and the
// control characters (one table lookup per byte instead of three comparisons).
var stringStops = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// jsonInt reads a JSON integer (-?(0|[1-9][0-9]*), no fraction or exponent) at b[i] that fits
// bits, and returns it and the index after it.
func jsonInt(b []byte, i, bits int, signed bool) (int64, int, bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	d := j
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == d || (b[d] == '0' && j > d+1) {
		return 0, 0, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, 0, false
	}
	s := string(b[i:j])
	if signed {
		n, err := strconv.ParseInt(s, 10, bits)
		return n, j, err == nil
	}
	n, err := strconv.ParseUint(s, 10, bits)
	return int64(n), j, err == nil
}

// quotedInt reads a 64-bit integer as protojson writes it, a quoted JSON integer.
func quotedInt(b []byte, i int, signed bool) (int64, int, bool) {
	start, end, ok := rawString(b, i)
	if !ok || start == end {
		return 0, 0, false
	}
	n, e, ok := jsonInt(b[:end], start, 64, signed)
	if !ok || e != end {
		return 0, 0, false
	}
	return n, end + 1, true
}

// transTimestamp appends the binary form of the Timestamp at b[i] as protojson writes it:
// "YYYY-MM-DDTHH:MM:SS[.f]Z" with 3, 6 or 9 fractional digits, years 1 to 9999.
func transTimestamp(dst, b []byte, i int) ([]byte, int, bool) {
	start, end, ok := rawString(b, i)
	if !ok {
		return nil, 0, false
	}
	s := b[start:end]
	n := len(s)
	if n != 20 && n != 24 && n != 27 && n != 30 {
		return nil, 0, false
	}
	if s[n-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return nil, 0, false
	}
	if n > 20 && s[19] != '.' {
		return nil, 0, false
	}
	for k, c := range s[:n-1] {
		if k == 4 || k == 7 || k == 10 || k == 13 || k == 16 || k == 19 {
			continue
		}
		if c < '0' || c > '9' {
			return nil, 0, false
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil || t.Year() < 1 {
		return nil, 0, false
	}
	if sec := t.Unix(); sec != 0 {
		dst = protowire.AppendVarint(protowire.AppendTag(dst, 1, protowire.VarintType), uint64(sec))
	}
	if ns := t.Nanosecond(); ns != 0 {
		dst = protowire.AppendVarint(protowire.AppendTag(dst, 2, protowire.VarintType), uint64(ns))
	}
	return dst, end + 1, true
}

// maxDurationSeconds is the range of a google.protobuf.Duration's seconds (about 10,000
// years), as protojson checks it.
const maxDurationSeconds = 315576000000

// transDuration appends the binary form of the Duration at b[i] as protojson writes it:
// "[-]S[.fff]s" with 0, 3, 6 or 9 fractional digits and no leading zeros.
func transDuration(dst, b []byte, i int) ([]byte, int, bool) {
	start, end, ok := rawString(b, i)
	if !ok {
		return nil, 0, false
	}
	s := b[start:end]
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) < 2 || s[len(s)-1] != 's' {
		return nil, 0, false
	}
	s = s[:len(s)-1]
	intPart, frac := s, []byte(nil)
	if k := bytes.IndexByte(s, '.'); k >= 0 {
		intPart, frac = s[:k], s[k+1:]
		if len(frac) != 3 && len(frac) != 6 && len(frac) != 9 {
			return nil, 0, false
		}
	}
	if len(intPart) == 0 || len(intPart) > 12 || (intPart[0] == '0' && len(intPart) > 1) {
		return nil, 0, false
	}
	var secs int64
	for _, c := range intPart {
		if c < '0' || c > '9' {
			return nil, 0, false
		}
		secs = secs*10 + int64(c-'0')
	}
	var nanos int64
	for k := range 9 {
		nanos *= 10
		if k < len(frac) {
			c := frac[k]
			if c < '0' || c > '9' {
				return nil, 0, false
			}
			nanos += int64(c - '0')
		}
	}
	if secs > maxDurationSeconds {
		return nil, 0, false
	}
	if neg {
		secs, nanos = -secs, -nanos
	}
	if secs != 0 {
		dst = protowire.AppendVarint(protowire.AppendTag(dst, 1, protowire.VarintType), uint64(secs))
	}
	if nanos != 0 {
		dst = protowire.AppendVarint(protowire.AppendTag(dst, 2, protowire.VarintType), uint64(nanos))
	}
	return dst, end + 1, true
}
