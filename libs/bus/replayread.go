package bus

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// A group's replay reads the stream without a filter when its filters match most of it: with
// several filter subjects nats-server looks up each next message by intersecting the stream's
// subject tree with the filters (LoadNextMsgMulti), which was about a tenth of a rebuild's
// CPU, while an unfiltered consumer reads the stream in order. The reader already skips, by
// subject and before decoding, what no member wants. Once the replay reaches the last message
// on the members' subjects that was stored when the group started, the reader goes on with
// the filtered consumer (live events are few, and the filter keeps the others off the wire).

// replayDenseMin is how many messages a replay must have before the reader considers reading
// it unfiltered (a consumer more to create).
const replayDenseMin = 10000

// replayPull is how many messages the consumers of a group keep buffered ahead of its reader.
const replayPull = 2000

// groupReader is the messages of a group's ordered consumer from after, switching to an
// unfiltered consumer for a dense replay and back to the filtered one after stored.
type groupReader struct {
	b      *Bus
	ctx    context.Context
	stream string
	cfg    jetstream.OrderedConsumerConfig
	stored uint64

	mu      sync.Mutex
	cur     jetstream.MessagesContext
	stopped bool
	// first: no message read yet; unfiltered: cur reads the whole stream until stored.
	first, unfiltered bool
	last              uint64
}

func (b *Bus) groupMessages(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, stored uint64) (*groupReader, error) {
	r := &groupReader{b: b, ctx: ctx, stream: stream, cfg: cfg, stored: stored, first: true}
	it, err := r.open(cfg)
	if err != nil {
		return nil, err
	}
	r.cur = it
	return r, nil
}

func (r *groupReader) open(cfg jetstream.OrderedConsumerConfig) (jetstream.MessagesContext, error) {
	// Named after the service, so consumer listings say whose it is; the random part keeps the
	// replicas' and groups' consumers apart.
	cfg.NamePrefix = r.b.cfg.Service + "_projections_" + rand.Text()[:10]
	cons, err := r.b.js.OrderedConsumer(r.ctx, r.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(replayPull))
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	return it, nil
}

// reopen replaces the consumer by one with cfg from sequence from.
func (r *groupReader) reopen(cfg jetstream.OrderedConsumerConfig, from uint64) error {
	cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	r.mu.Lock()
	r.cur.Stop()
	r.mu.Unlock()
	it, err := r.open(cfg)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		it.Stop()
		return jetstream.ErrMsgIteratorClosed
	}
	r.cur = it
	return nil
}

// Next implements jetstream.MessagesContext.
func (r *groupReader) Next(opts ...jetstream.NextOpt) (jetstream.Msg, error) {
	if r.unfiltered && r.last >= r.stored {
		// The replay is read: on with the filter.
		r.unfiltered = false
		r.b.log.Debug("projections read the rest with their filters", "stream", r.stream, "after", r.last)
		if err := r.reopen(r.cfg, r.last+1); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	it := r.cur
	r.mu.Unlock()
	msg, err := it.Next(opts...)
	if err != nil {
		return nil, err
	}
	// A message without metadata is handed on: the caller reads it again and stops.
	if meta, merr := msg.Metadata(); merr == nil {
		seq := meta.Sequence.Stream
		if r.first {
			r.first = false
			// Messages on the filters from here to stored, against every message of the
			// stream in that range: at least half of them, and enough to matter, read
			// unfiltered.
			if span := r.stored - min(seq, r.stored) + 1; seq < r.stored && span >= replayDenseMin && 2*(meta.NumPending+1) >= span {
				r.unfiltered = true
				r.b.log.Debug("projections read a dense replay without a filter", "stream", r.stream, "from", seq, "to", r.stored, "on_filters", meta.NumPending+1)
				all := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq}
				if err := r.reopen(all, seq); err != nil {
					return nil, err
				}
				return r.Next(opts...)
			}
		}
		r.last = seq
	}
	return msg, nil
}

// Stop implements jetstream.MessagesContext; it may be called from another goroutine.
func (r *groupReader) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.cur.Stop()
}

// Drain implements jetstream.MessagesContext.
func (r *groupReader) Drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.cur.Drain()
}
