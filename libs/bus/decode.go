package bus

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/events"
)

// decodeCacheSize is how many recently decoded events the process keeps. Every live consumer
// of an event (a service's projection group, handlers and trackers, and in patchd every
// service) receives it within moments of the others, but a wave publishes thousands of events
// at once and the consumers drift apart by as many: 4,096 entries missed most repeats of a
// 10,000-instance wave. An entry is about 3 KB (the message and its decoded event), so the
// cache costs some 50 MiB at most, whatever the fleet.
const decodeCacheSize = 16384

// decoded is the process-wide cache of decoded events, keyed by the message's bytes: decoding
// (the envelope, and protojson for the payload) is the costliest step of receiving an event,
// and an event reaches several consumers (in patchd, of several services). A hit is checked
// byte for byte, so two servers in one process (tests) never mix. Handlers and trackers get a
// private copy (unmarshal: the payload cloned); projection groups share the cached event
// (shared), which their Apply functions only read.
var decoded = newDecodeCache(decodeCacheSize)

type decodeCache struct {
	// hits and misses count the lookups (shared and unmarshal); DecodeStats reads them.
	hits, misses atomic.Uint64

	seed maphash.Seed
	mu   sync.Mutex
	m    map[uint64]*decodedEvent
	ring []uint64
	next int
}

type decodedEvent struct {
	subject string
	// raw is the message's data, kept (not copied): a received message's data is its own
	// buffer, which nothing writes to.
	raw []byte
	// ev is the decoded event, held in the entry (one allocation for both).
	ev events.Event
}

func newDecodeCache(n int) *decodeCache {
	return &decodeCache{seed: maphash.MakeSeed(), m: make(map[uint64]*decodedEvent, n), ring: make([]uint64, n)}
}

// unmarshal is events.Unmarshal through the cache: a private copy.
func (c *decodeCache) unmarshal(subject string, b []byte) (*events.Event, error) {
	own := new(events.Event)
	if err := c.decodeTo(own, subject, b); err != nil {
		return nil, err
	}
	own.Data = proto.Clone(own.Data)
	return own, nil
}

// shared is events.Unmarshal through the cache, answering the cached event itself: a copy of
// its attributes (so Sequence and Delivered can be set) whose payload the caller and every
// other caller of shared read and never change.
func (c *decodeCache) shared(subject string, b []byte) (*events.Event, error) {
	ev := new(events.Event)
	if err := c.decodeTo(ev, subject, b); err != nil {
		return nil, err
	}
	return ev, nil
}

// decodeTo is shared into *dst (events.UnmarshalTo through the cache), so that a caller that
// decodes many events keeps them in one slice.
func (c *decodeCache) decodeTo(dst *events.Event, subject string, b []byte) error {
	h := maphash.Bytes(c.seed, b)
	c.mu.Lock()
	hit := c.m[h]
	c.mu.Unlock()
	if hit != nil && hit.subject == subject && bytes.Equal(hit.raw, b) {
		c.hits.Add(1)
		*dst = hit.ev
		return nil
	}
	c.misses.Add(1)
	// Decoded into the entry: the event and the entry are one allocation.
	entry := &decodedEvent{subject: subject, raw: b}
	if err := events.UnmarshalTo(&entry.ev, subject, b); err != nil {
		return err
	}
	*dst = entry.ev
	c.mu.Lock()
	if old := c.ring[c.next]; old != 0 {
		delete(c.m, old)
	}
	c.ring[c.next] = h
	c.next = (c.next + 1) % len(c.ring)
	c.m[h] = entry
	c.mu.Unlock()
	return nil
}

// DecodeStats reports how many received events this process took from its decode cache (hits)
// and how many it decoded (misses), over every bus: with every consumer of an event receiving
// it within the cache's reach, misses are about the events received and hits the deliveries
// beyond the first.
func DecodeStats() (hits, misses uint64) { return decoded.hits.Load(), decoded.misses.Load() }
