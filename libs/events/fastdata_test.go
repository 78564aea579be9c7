package events

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// fastOnly reports whether every field set in m is one the fast path encodes (no Struct,
// Duration or double).
func fastOnly(m protoreflect.Message) bool {
	ok := true
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case f.Kind() == protoreflect.DoubleKind || f.Kind() == protoreflect.FloatKind || f.Kind() == protoreflect.BytesKind || f.IsMap():
			ok = false
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Timestamp":
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName().Parent() == "google.protobuf":
			ok = false
		case f.IsList() && f.Kind() == protoreflect.MessageKind:
			for i := range v.List().Len() {
				ok = ok && fastOnly(v.List().Get(i).Message())
			}
		case f.Kind() == protoreflect.MessageKind:
			ok = fastOnly(v.Message())
		}
		return ok
	})
	return ok
}

// decodesFast reports whether every field set in m is one the fast path decodes (no Struct, map,
// bytes, NaN or infinity).
func decodesFast(m protoreflect.Message) bool {
	ok := true
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case f.Kind() == protoreflect.BytesKind || f.IsMap():
			ok = false
		case (f.Kind() == protoreflect.DoubleKind || f.Kind() == protoreflect.FloatKind) && !f.IsList():
			ok = !math.IsNaN(v.Float()) && !math.IsInf(v.Float(), 0)
		case (f.Kind() == protoreflect.DoubleKind || f.Kind() == protoreflect.FloatKind) && f.IsList():
			for i := range v.List().Len() {
				x := v.List().Get(i).Float()
				ok = ok && !math.IsNaN(x) && !math.IsInf(x, 0)
			}
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Timestamp":
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Duration":
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName().Parent() == "google.protobuf":
			ok = false
		case f.IsList() && f.Kind() == protoreflect.MessageKind:
			for i := range v.List().Len() {
				ok = ok && decodesFast(v.List().Get(i).Message())
			}
		case f.Kind() == protoreflect.MessageKind:
			ok = decodesFast(v.Message())
		}
		return ok
	})
	return ok
}

// fillRandom sets every field of m the fast path decodes to random values (some zero, some
// unset, some with non-ASCII text), depth levels deep.
func fillRandom(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if r.IntN(4) == 0 || f.IsMap() {
			continue
		}
		scalar := func() (protoreflect.Value, bool) {
			switch f.Kind() {
			case protoreflect.StringKind:
				return protoreflect.ValueOfString([]string{"", "x", "run-1/i-0abc", "déjà vu ✓", strings.Repeat("z", r.IntN(40))}[r.IntN(5)]), true
			case protoreflect.Int32Kind:
				return protoreflect.ValueOfInt32([]int32{0, 1, -1, 2147483647, -2147483648, r.Int32()}[r.IntN(6)]), true
			case protoreflect.Int64Kind:
				return protoreflect.ValueOfInt64([]int64{0, -1, 9223372036854775807, -9223372036854775808, r.Int64()}[r.IntN(5)]), true
			case protoreflect.Uint64Kind:
				return protoreflect.ValueOfUint64([]uint64{0, 1, 18446744073709551615, r.Uint64()}[r.IntN(4)]), true
			case protoreflect.Uint32Kind:
				return protoreflect.ValueOfUint32([]uint32{0, 4294967295, r.Uint32()}[r.IntN(3)]), true
			case protoreflect.BoolKind:
				return protoreflect.ValueOfBool(r.IntN(2) == 0), true
			case protoreflect.DoubleKind:
				return protoreflect.ValueOfFloat64([]float64{0, 7.5, -0.1, 1e21, 5e-324, math.MaxFloat64, math.Inf(1), math.NaN(), r.NormFloat64() * 1e6}[r.IntN(9)]), true
			case protoreflect.FloatKind:
				return protoreflect.ValueOfFloat32([]float32{0, 7.5, -0.1, 1e21, math.MaxFloat32, float32(r.NormFloat64())}[r.IntN(6)]), true
			case protoreflect.EnumKind:
				vs := f.Enum().Values()
				return protoreflect.ValueOfEnum(vs.Get(r.IntN(vs.Len())).Number()), true
			}
			return protoreflect.Value{}, false
		}
		switch {
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Timestamp":
			if f.IsList() {
				continue
			}
			ts := []time.Time{time.Unix(0, 0), time.Date(2026, 11, 10, 2, 0, 0, 0, time.UTC),
				time.Date(2026, 12, 2, 15, 4, 5, 123456789, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
				time.Date(9999, 12, 31, 23, 59, 59, 123000000, time.UTC), time.Date(1960, 5, 6, 7, 8, 9, 0, time.UTC)}[r.IntN(6)]
			m.Set(f, protoreflect.ValueOfMessage(timestamppb.New(ts).ProtoReflect()))
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Duration":
			if f.IsList() {
				continue
			}
			d := []time.Duration{0, time.Second, 1500 * time.Millisecond, -time.Nanosecond, -90 * time.Minute, 1234567 * time.Microsecond,
				time.Duration(r.Int64()), -time.Duration(r.Int64N(1e12))}[r.IntN(8)]
			m.Set(f, protoreflect.ValueOfMessage(durationpb.New(d).ProtoReflect()))
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName().Parent() == "google.protobuf":
		case f.IsList() && f.Kind() == protoreflect.MessageKind:
			if depth == 0 {
				continue
			}
			l := m.Mutable(f).List()
			for range r.IntN(4) {
				e := l.NewElement()
				fillRandom(r, e.Message(), depth-1)
				l.Append(e)
			}
		case f.IsList():
			l := m.Mutable(f).List()
			for range r.IntN(4) {
				if v, ok := scalar(); ok {
					l.Append(v)
				}
			}
		case f.Kind() == protoreflect.MessageKind:
			if depth > 0 {
				fillRandom(r, m.Mutable(f).Message(), depth-1)
			}
		default:
			if v, ok := scalar(); ok {
				m.Set(f, v)
			}
		}
	}
}

// The fast path decodes what protojson writes for every event type, as protojson decodes it.
func TestDecodeDataFastMatchesProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range Defs() {
		for round := range 50 {
			data := d.new()
			if round == 0 {
				fill(data.ProtoReflect(), "acme")
			} else {
				fillRandom(r, data.ProtoReflect(), 3)
			}
			raw, err := dataMarshal.Marshal(data)
			require.NoError(t, err)
			want := d.new()
			require.NoError(t, dataUnmarshal.Unmarshal(raw, want))
			got := d.new()
			fast := decodeDataFast(raw, got)
			if decodesFast(data.ProtoReflect()) {
				require.True(t, fast, "%s: %s", d.Message, raw)
			}
			if fast {
				require.True(t, proto.Equal(want, got), "%s: %s\nwant %v\ngot  %v", d.Message, raw, want, got)
			}
		}
	}
}

// The fast path leaves to protojson what it does not handle, and never accepts what protojson
// refuses.
func TestDecodeDataFastFallsBack(t *testing.T) {
	d := DefFor[*eventsv1.InstallSucceeded]()
	for _, doc := range []string{
		`{"tenant":"a","tenant":"b"}`,      // duplicate
		`{"tenant":"a\"b"}`,                // escape
		`{"tenant":null}`,                  // null
		`{"wave":"2"}`,                     // quoted int32
		`{"wave":2.0}`,                     // float
		`{"wave":1e2}`,                     // exponent
		`{"wave":01}`,                      // leading zero
		`{"wave":2147483648}`,              // overflow
		`{"jobState":3}`,                   // enum number
		`{"jobState":"JOB_STATE_NO_SUCH"}`, // unknown enum name
		`{"run_id":"r"}`,                   // proto name
		`{"noSuchField":"x"}`,              // unknown field
		`{"tenant":"\xff"}`,                // invalid UTF-8
		`{"tenant":"a",}`,                  // trailing comma
		`{"tenant":"a"} x`,                 // trailing data
		`{"results":[{"patchId":"p"},]}`,   // trailing comma in a list
		`{"location":{"account":"1"}`,      // unterminated
		`{"healthy":tru}`,                  // bad literal
	} {
		require.False(t, decodeDataFast([]byte(doc), d.new()), doc)
	}
}

// Durations and floating-point numbers take the fast path as protojson writes them; their
// other forms go to protojson.
func TestDecodeDataFastDurationsAndNumbers(t *testing.T) {
	policy := DefFor[*eventsv1.ApprovalPolicyChanged]()
	patch := DefFor[*eventsv1.PatchDiscovered]()
	for _, c := range []struct {
		def  Def
		doc  string
		fast bool
	}{
		{policy, `{"delay":"5400s"}`, true},
		{policy, `{"delay":"0s"}`, true},
		{policy, `{"delay":"1.500s"}`, true},
		{policy, `{"delay":"-0.000000001s"}`, true},
		{policy, `{"delay":"-12.000001s"}`, true},
		{policy, `{"delay":"315576000000s"}`, true},
		{policy, `{"delay":"315576000001s"}`, false}, // out of range: protojson refuses it
		{policy, `{"delay":"1.5s"}`, false},          // protojson reads it, never writes it
		{policy, `{"delay":"01s"}`, false},
		{policy, `{"delay":"+1s"}`, false},
		{policy, `{"delay":".5s"}`, false},
		{policy, `{"delay":"1"}`, false},
		{policy, `{"delay":"s"}`, false},
		{policy, `{"delay":"-s"}`, false},
		{policy, `{"delay":"1.50xs"}`, false},
		{policy, `{"delay":5}`, false},
		{patch, `{"patch":{"cvssScore":7.5}}`, true},
		{patch, `{"patch":{"cvssScore":0}}`, true},
		{patch, `{"patch":{"cvssScore":-0.1}}`, true},
		{patch, `{"patch":{"cvssScore":1e+21}}`, true},
		{patch, `{"patch":{"cvssScore":5e-324}}`, true},
		{patch, `{"patch":{"cvssScore":1.7976931348623157e+308}}`, true},
		{patch, `{"patch":{"cvssScore":1e400}}`, false}, // out of range
		{patch, `{"patch":{"cvssScore":"NaN"}}`, false},
		{patch, `{"patch":{"cvssScore":"Infinity"}}`, false},
		{patch, `{"patch":{"cvssScore":"7.5"}}`, false},
		{patch, `{"patch":{"cvssScore":07.5}}`, false},
		{patch, `{"patch":{"cvssScore":7.}}`, false},
		{patch, `{"patch":{"cvssScore":.5}}`, false},
		{patch, `{"patch":{"cvssScore":1e}}`, false},
		{patch, `{"patch":{"cvssScore":+1}}`, false},
	} {
		got := c.def.new()
		require.Equal(t, c.fast, decodeDataFast([]byte(c.doc), got), c.doc)
		if !c.fast {
			continue
		}
		want := c.def.new()
		require.NoError(t, dataUnmarshal.Unmarshal([]byte(c.doc), want), c.doc)
		require.True(t, proto.Equal(want, got), "%s\nwant %v\ngot  %v", c.doc, want, got)
	}
}

// FuzzDecodeData: whatever the fast path accepts, protojson accepts and decodes the same.
func FuzzDecodeData(f *testing.F) {
	defs := Defs()
	r := rand.New(rand.NewPCG(3, 4))
	for i, d := range defs {
		data := d.new()
		fillRandom(r, data.ProtoReflect(), 3)
		raw, err := dataMarshal.Marshal(data)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), raw)
	}
	index := func(d Def) uint8 {
		for i, x := range defs {
			if x.Message == d.Message {
				return uint8(i)
			}
		}
		f.Fatalf("%s is not registered", d.Message)
		return 0
	}
	// Durations and numbers near the edges of what the fast path reads.
	policy, patch := index(DefFor[*eventsv1.ApprovalPolicyChanged]()), index(DefFor[*eventsv1.PatchDiscovered]())
	for _, doc := range []string{`{"delay":"-1.000000001s"}`, `{"delay":"315576000000.999999999s"}`, `{"delay":"1.50s"}`} {
		f.Add(policy, []byte(doc))
	}
	for _, doc := range []string{`{"patch":{"cvssScore":-0}}`, `{"patch":{"cvssScore":2.2250738585072014e-308}}`, `{"patch":{"cvssScore":1E-7}}`} {
		f.Add(patch, []byte(doc))
	}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		d := defs[int(which)%len(defs)]
		got := d.new()
		if !decodeDataFast(raw, got) {
			return
		}
		want := d.new()
		if err := dataUnmarshal.Unmarshal(raw, want); err != nil {
			t.Fatalf("%s: fast path accepted what protojson refuses (%v): %s", d.Message, err, raw)
		}
		if !proto.Equal(want, got) {
			t.Fatalf("%s: %s\nwant %v\ngot  %v", d.Message, raw, want, got)
		}
	})
}

// The fast encoder writes what protojson writes for every event type (compacted), or leaves
// the payload to protojson.
func TestAppendDataFastMatchesProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fast := 0
	for _, d := range Defs() {
		for round := range 50 {
			data := d.new()
			if round == 0 {
				fill(data.ProtoReflect(), "acme")
			} else {
				fillRandom(r, data.ProtoReflect(), 3)
			}
			raw, err := dataMarshal.Marshal(data)
			require.NoError(t, err)
			var want bytes.Buffer
			require.NoError(t, json.Compact(&want, raw))
			got, ok := appendDataFast(nil, data.ProtoReflect(), 0)
			if !ok {
				require.False(t, fastOnly(data.ProtoReflect()) && asciiOnly(raw), "%s: %s left to protojson", d.Message, raw)
				continue
			}
			fast++
			require.Equal(t, want.String(), string(got), "%s", d.Message)
		}
	}
	require.Greater(t, fast, len(Defs())*25, "most payloads take the fast path")
}

func asciiOnly(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// The fast encoder leaves to protojson what it does not write as protojson does.
func TestAppendDataFastLeavesTheUnusual(t *testing.T) {
	for name, m := range map[string]proto.Message{
		"escaped string":     &eventsv1.JobRequested{Tenant: "acme", RunId: "r\"1"},
		"control character":  &eventsv1.JobRequested{Tenant: "acme", RunId: "r\n1"},
		"invalid UTF-8":      &eventsv1.JobRequested{Tenant: "acme", RunId: "r\xff1"},
		"replacement char":   &eventsv1.JobRequested{Tenant: "acme", RunId: "r\uFFFD1"},
		"timestamp too late": &eventsv1.RunStarted{Tenant: "acme", StartedAt: &timestamppb.Timestamp{Seconds: maxTimestampSeconds + 1}},
		"negative nanos":     &eventsv1.RunStarted{Tenant: "acme", StartedAt: &timestamppb.Timestamp{Nanos: -1}},
	} {
		_, ok := appendDataFast(nil, m.ProtoReflect(), 0)
		require.False(t, ok, name)
	}
	// Text outside ASCII is written as it is, as protojson writes it.
	m := &eventsv1.JobRequested{Tenant: "acme", RunId: "déjà vu"}
	got, ok := appendDataFast(nil, m.ProtoReflect(), 0)
	require.True(t, ok)
	raw, err := dataMarshal.Marshal(m)
	require.NoError(t, err)
	var want bytes.Buffer
	require.NoError(t, json.Compact(&want, raw))
	require.Equal(t, want.String(), string(got))
	require.Contains(t, string(got), "déjà vu")
}

// fastFallbacks are the event kinds whose payloads the fast path leaves to protojson, and
// why.
var fastFallbacks = map[protoreflect.FullName]string{
	"patchwave.events.v1.DesignChanged": "its changes carry google.protobuf.Struct values",
}

// Every event kind but the named fallbacks takes the fast path, filled with every field set
// (fill) and at random, and decodes equal to protojson's result.
func TestEveryEventKindTakesTheFastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, d := range Defs() {
		if _, ok := fastFallbacks[d.Message]; ok {
			continue
		}
		for round := range 20 {
			data := d.new()
			if round == 0 {
				fill(data.ProtoReflect(), "acme")
			} else {
				fillRandom(r, data.ProtoReflect(), 3)
				if !decodesFast(data.ProtoReflect()) {
					continue // NaN or an infinity, written as a string
				}
			}
			raw, err := dataMarshal.Marshal(data)
			require.NoError(t, err)
			got := d.new()
			require.True(t, decodeDataFast(raw, got), "%s takes the fast path: %s", d.Message, raw)
			want := d.new()
			require.NoError(t, dataUnmarshal.Unmarshal(raw, want))
			require.True(t, proto.Equal(want, got), "%s: %s\nwant %v\ngot  %v", d.Message, raw, want, got)
		}
	}
}

// A nested message takes one byte for its length up to 127 bytes, more beyond: both decode
// as protojson decodes them.
func TestDecodeDataFastNestedLengths(t *testing.T) {
	d := DefFor[*eventsv1.InstallFailed]()
	for _, n := range []int{0, 1, 100, 120, 127, 128, 129, 300, 20000} {
		data := &eventsv1.InstallFailed{Tenant: "acme", InstanceId: "i-1", Results: []*typesv1.PatchResult{
			{PatchId: "ALAS-1", State: typesv1.PatchState_PATCH_STATE_FAILED, Error: strings.Repeat("e", n)},
			{PatchId: "ALAS-2", Error: strings.Repeat("f", n/2)},
		}}
		raw, err := dataMarshal.Marshal(data)
		require.NoError(t, err)
		got := d.new()
		require.True(t, decodeDataFast(raw, got), "error of %d bytes", n)
		require.True(t, proto.Equal(data, got), "error of %d bytes", n)
	}
}
