package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

func benchSnapshotEvent(b *testing.B, i int) *events.Event {
	b.Helper()
	e, err := events.New("acme", fmt.Sprintf("run-20261202-abcdef/i-%017d", i), &eventsv1.SnapshotCreated{Tenant: "acme",
		RunId: "run-20261202-abcdef", InstanceId: fmt.Sprintf("i-%017d", i), SnapshotId: "snap-0123456789abcdef0",
		PatchIds: []string{"KB5034441", "KB5034439"}})
	if err != nil {
		b.Fatal(err)
	}
	e.Time = time.Date(2026, 12, 2, 15, 4, 5, 123456789, time.UTC)
	e.CorrelationID = "0af7651916cd43dd8448eb211c80319c"
	e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	return e
}

// BenchmarkEncode measures what Publish does to an event before sending it (checks, the
// CloudEvents document, the NATS message and its headers), with the message given back to the
// pool as Publish does once it is acknowledged:
//
//	go test -run '^$' -bench 'Encode|DecodeCache' -benchmem ./bus/
func BenchmarkEncode(b *testing.B) {
	d := events.DefFor[*eventsv1.SnapshotCreated]()
	bs := &Bus{cfg: Config{Service: d.Producer}}
	e := benchSnapshotEvent(b, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		o := getOutMsg()
		if err := bs.encode(ctx, e, o); err != nil {
			b.Fatal(err)
		}
		o.put()
	}
}

// BenchmarkDecodeCacheShared measures a lookup that hits the decode cache, as every consumer
// after the first does.
func BenchmarkDecodeCacheShared(b *testing.B) {
	c, e, raw := primedDecodeCache(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.shared(e.Subject, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeCacheMiss measures a lookup of an event the cache does not hold yet (the
// first consumer's), 1,024 distinct events through a cache of 512.
func BenchmarkDecodeCacheMiss(b *testing.B) {
	c := newDecodeCache(512)
	raws := make([][]byte, 1024)
	var subject string
	for i := range raws {
		e := benchSnapshotEvent(b, i)
		subject = e.Subject
		raw, err := events.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = raw
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := c.shared(subject, raws[i%len(raws)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDecodeCachePrivate measures a hit as a handler or tracker gets it: the cached
// event's attributes and a clone of its payload.
func BenchmarkDecodeCachePrivate(b *testing.B) {
	c, e, raw := primedDecodeCache(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.unmarshal(e.Subject, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// primedDecodeCache returns a decode cache that holds one snapshot event, with the event and
// its document.
func primedDecodeCache(b *testing.B) (*decodeCache, *events.Event, []byte) {
	b.Helper()
	c := newDecodeCache(1024)
	e := benchSnapshotEvent(b, 1)
	raw, err := events.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.shared(e.Subject, raw); err != nil {
		b.Fatal(err)
	}
	return c, e, raw
}
