package events

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// fastOnly reports whether every field set in m is one the fast path decodes (no Struct,
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
			if fastOnly(data.ProtoReflect()) {
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
