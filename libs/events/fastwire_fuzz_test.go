package events

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// FuzzWireDecode: whatever document the fast envelope decoder accepts, encoding/json decodes to
// the same attributes and the same raw data, or refuses and so does Unmarshal (the fast path
// leaves checking data to protojson); and an event Unmarshal reads is written back by Marshal
// to a document that reads the same.
func FuzzWireDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, d := range Defs() {
		tenant := "acme"
		if d.Scope == ScopeCatalog {
			tenant = ""
		}
		data := d.new()
		fillRandom(r, data.ProtoReflect(), 3)
		e, err := New(tenant, "run-1/i-1", data)
		if err != nil {
			f.Fatal(err)
		}
		e.Time = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
		e.CorrelationID, e.TraceParent = "corr-1", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		b, err := Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(` {"specversion":"1.0","id":"a","ext":"x","data":{"a":[1,{"b":"}"}]}} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast wire
		if !decodeWireFast(b, &fast) {
			return
		}
		var slow wire
		if err := json.Unmarshal(b, &slow); err != nil {
			// The fast path skips data without checking it all (protojson reads it next):
			// the document must still be refused as an event.
			if _, uerr := Unmarshal("", b); uerr == nil {
				t.Fatalf("Unmarshal accepted what encoding/json refuses (%v): %q", err, b)
			}
			return
		}
		if !fast.Time.Equal(slow.Time) || fast.Time.Location() != slow.Time.Location() {
			t.Fatalf("time: fast %v, encoding/json %v: %q", fast.Time, slow.Time, b)
		}
		fast.Time, slow.Time = time.Time{}, time.Time{}
		if fast.SpecVersion != slow.SpecVersion || fast.ID != slow.ID || fast.Source != slow.Source ||
			fast.Type != slow.Type || fast.Subject != slow.Subject || fast.DataContentType != slow.DataContentType ||
			fast.Tenant != slow.Tenant || fast.CorrelationID != slow.CorrelationID || fast.TraceParent != slow.TraceParent ||
			!bytes.Equal(fast.Data, slow.Data) {
			t.Fatalf("fast %+v\nencoding/json %+v\ndocument %q", fast, slow, b)
		}
		ev, err := Unmarshal("", b)
		if err != nil {
			return
		}
		again, err := Marshal(ev)
		if err != nil {
			t.Fatalf("Marshal of an event Unmarshal read: %v: %q", err, b)
		}
		back, err := Unmarshal("", again)
		if err != nil {
			t.Fatalf("Unmarshal of Marshal's document: %v: %q", err, again)
		}
		if back.ID != ev.ID || back.Key != ev.Key || !back.Time.Equal(ev.Time) || back.Tenant != ev.Tenant ||
			back.CorrelationID != ev.CorrelationID || back.TraceParent != ev.TraceParent || !proto.Equal(back.Data, ev.Data) {
			t.Fatalf("round trip changed the event:\n%q\n%q", b, again)
		}
	})
}

// FuzzWireEncode: the fast envelope encoder writes exactly what encoding/json writes for the
// same attributes and payload, or leaves the document to encoding/json.
func FuzzWireEncode(f *testing.F) {
	f.Add("run-1/i-1", "patchwave/snapshotter", "patchwave.events.v1.JobRequested", "run-1/i-1", "acme", "corr-1", "", int64(1735787045000000006), []byte(`{"tenant":"acme","runId":"r"}`), true)
	f.Add("a<b", "s&", "t>", "", "", "", "00-x", int64(0), []byte(`{ "a" : [1, 2] }`), false)
	f.Add("é", "\u2028", "x", "k", "t", "c", "p", int64(-62135596800000000000/1000), []byte(`{"s":"<&>\u2028"}`), false)
	f.Add("a", "s", "t", "", "acme", "", "", int64(1), []byte("{\"s\":\"<&>\u2028\u2029\"}"), true)
	f.Fuzz(func(t *testing.T, id, source, typ, subject, tenant, corr, trace string, nanos int64, data []byte, compact bool) {
		if compact {
			// A compact payload is what the fast data encoder writes: compacted already.
			var c bytes.Buffer
			if json.Compact(&c, data) != nil {
				return
			}
			data = c.Bytes()
		}
		w := wire{SpecVersion: SpecVersion, ID: id, Source: source, Type: typ, Subject: subject,
			DataContentType: DataContentType, Tenant: tenant, CorrelationID: corr, TraceParent: trace, Data: data}
		if nanos != 0 {
			w.Time = time.Unix(0, nanos).UTC()
		}
		want, err := json.Marshal(w)
		var got bytes.Buffer
		if !appendWireFast(&got, &w, compact) {
			return
		}
		if err != nil {
			t.Fatalf("fast path wrote what encoding/json refuses (%v): %q", err, got.Bytes())
		}
		if !bytes.Equal(want, got.Bytes()) {
			t.Fatalf("encoding/json %q\nfast          %q", want, got.Bytes())
		}
	})
}
