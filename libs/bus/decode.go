package bus

import (
	"bytes"
	"hash/maphash"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/events"
)

// decodeCacheSize is how many recently decoded events the process keeps. Every live consumer
// of an event (a service's projections, handlers and trackers, and in patchd every service)
// receives it within moments of the others, so a few thousand are enough for nearly every
// repeat to hit.
const decodeCacheSize = 4096

// decoded is the process-wide cache of decoded events, keyed by the message's bytes: decoding
// (encoding/json for the envelope, protojson for the payload) is the costliest step of
// receiving an event, and an event reaches several consumers (in patchd, of several
// services). A hit is checked byte for byte and answers a copy whose payload is a clone, so no
// consumer sees another's changes and two servers in one process (tests) never mix.
var decoded = newDecodeCache(decodeCacheSize)

type decodeCache struct {
	seed maphash.Seed
	mu   sync.Mutex
	m    map[uint64]*decodedEvent
	ring []uint64
	next int
}

type decodedEvent struct {
	subject string
	raw     []byte
	ev      *events.Event
}

func newDecodeCache(n int) *decodeCache {
	return &decodeCache{seed: maphash.MakeSeed(), m: make(map[uint64]*decodedEvent, n), ring: make([]uint64, n)}
}

// unmarshal is events.Unmarshal through the cache.
func (c *decodeCache) unmarshal(subject string, b []byte) (*events.Event, error) {
	h := maphash.Bytes(c.seed, b)
	c.mu.Lock()
	hit := c.m[h]
	c.mu.Unlock()
	if hit != nil && hit.subject == subject && bytes.Equal(hit.raw, b) {
		ev := *hit.ev
		ev.Data = proto.Clone(hit.ev.Data)
		return &ev, nil
	}
	ev, err := events.Unmarshal(subject, b)
	if err != nil {
		return nil, err
	}
	keep := *ev
	keep.Data = proto.Clone(ev.Data)
	entry := &decodedEvent{subject: subject, raw: bytes.Clone(b), ev: &keep}
	c.mu.Lock()
	if old := c.ring[c.next]; old != 0 {
		delete(c.m, old)
	}
	c.ring[c.next] = h
	c.next = (c.next + 1) % len(c.ring)
	c.m[h] = entry
	c.mu.Unlock()
	return ev, nil
}
