package bus

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A group's replay reads the stream without a filter when its filters match most of it: with
// several filter subjects nats-server looks up each next message by intersecting the stream's
// subject tree with the filters (LoadNextMsgMulti), which was about a tenth of a rebuild's
// CPU, while an unfiltered consumer reads the stream in order. The reader already skips, by
// subject and before decoding, what no member wants. Once the replay reaches the last message
// on the members' subjects that was stored when the group started, the reader goes on with
// the filtered consumer (live events are few, and the filter keeps the others off the wire).
//
// The consumer is read through Consume, not the Messages iterator: the iterator's Next starts
// a timer for every call (its heartbeat check, and one more for a wait), which was a few
// percent of a replay's CPU and a tenth of its allocations. Consume's callback hands each
// message to the reader over a channel (readerQueue deep, so the two goroutines do not meet
// for every message) and blocks while it is full, so the consumer pulls no more than the
// reader takes (PullMaxMessages ahead), and the reader waits with one timer of its own. A
// replaced consumer's queue goes with it: the next one starts after the last message read.

// replayDenseMin is how many messages a replay must have before the reader considers reading
// it unfiltered (a consumer more to create).
const replayDenseMin = 10000

// replayPull is how many messages the consumers of a group keep buffered ahead of its reader.
const replayPull = 2000

// readerQueue is how many messages a consumer's callback queues for the group's reader.
const readerQueue = 256

// groupReader is the messages of a group's ordered consumer from after, switching to an
// unfiltered consumer for a dense replay and back to the filtered one after stored. Next is
// called from one goroutine; Stop may be called from any.
type groupReader struct {
	b      *Bus
	ctx    context.Context
	stream string
	cfg    jetstream.OrderedConsumerConfig
	stored uint64

	mu      sync.Mutex
	cur     *consuming
	stopped bool
	// first: no message read yet; unfiltered: cur reads the whole stream until stored.
	first, unfiltered bool
	last              uint64
	// wait times Next's waits; it is stopped (its channel empty) between calls.
	wait *time.Timer
}

// consuming is one consumer's Consume: its messages, the first error its consumer reported,
// and its end.
type consuming struct {
	cc     jetstream.ConsumeContext
	msgs   chan jetstream.Msg
	errs   chan error
	closed <-chan struct{}
	// stop ends the callback's wait for the reader (the consumer was replaced or stopped).
	stop     chan struct{}
	stopOnce sync.Once
}

func (c *consuming) end() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.cc.Stop()
}

func (b *Bus) groupMessages(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, stored uint64) (*groupReader, error) {
	r := &groupReader{b: b, ctx: ctx, stream: stream, cfg: cfg, stored: stored, first: true}
	r.wait = time.NewTimer(time.Hour)
	r.wait.Stop()
	c, err := r.open(cfg)
	if err != nil {
		return nil, err
	}
	r.cur = c
	return r, nil
}

func (r *groupReader) open(cfg jetstream.OrderedConsumerConfig) (*consuming, error) {
	// Named after the service, so consumer listings say whose it is; the random part keeps the
	// replicas' and groups' consumers apart.
	cfg.NamePrefix = r.b.cfg.Service + "_projections_" + rand.Text()[:10]
	cons, err := r.b.js.OrderedConsumer(r.ctx, r.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	c := &consuming{msgs: make(chan jetstream.Msg, readerQueue), errs: make(chan error, 1), stop: make(chan struct{})}
	report := func(_ jetstream.ConsumeContext, err error) {
		// Only a closed connection ends an ordered consumer (it recreates itself after the
		// rest); the reader stops with it.
		if connClosed(err) {
			select {
			case c.errs <- err:
			default:
			}
		}
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case c.msgs <- msg:
			return // room in the queue: what a replay mostly finds
		default:
		}
		select {
		case c.msgs <- msg:
		case <-c.stop:
		}
	}, jetstream.PullMaxMessages(replayPull), jetstream.ConsumeErrHandler(report))
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	c.cc, c.closed = cc, cc.Closed()
	return c, nil
}

// reopen replaces the consumer by one with cfg from sequence from.
func (r *groupReader) reopen(cfg jetstream.OrderedConsumerConfig, from uint64) error {
	cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	r.mu.Lock()
	r.cur.end()
	r.mu.Unlock()
	c, err := r.open(cfg)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		c.end()
		return jetstream.ErrMsgIteratorClosed
	}
	r.cur = c
	return nil
}

// Next returns the next message and its metadata (parsed once, here). With maxWait above
// zero it returns nats.ErrTimeout when no message comes for that long.
func (r *groupReader) Next(maxWait time.Duration) (jetstream.Msg, *jetstream.MsgMetadata, error) {
	if r.unfiltered && r.last >= r.stored {
		// The replay is read: on with the filter.
		r.unfiltered = false
		r.b.log.Debug("projections read the rest with their filters", "stream", r.stream, "after", r.last)
		if err := r.reopen(r.cfg, r.last+1); err != nil {
			return nil, nil, err
		}
	}
	r.mu.Lock()
	c, stopped := r.cur, r.stopped
	r.mu.Unlock()
	if stopped {
		return nil, nil, jetstream.ErrMsgIteratorClosed
	}
	msg, err := r.take(c, maxWait)
	if err != nil {
		return nil, nil, err
	}
	meta, err := msg.Metadata()
	if err != nil {
		return nil, nil, fmt.Errorf("metadata: %w", err)
	}
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
				return nil, nil, err
			}
			return r.Next(maxWait)
		}
	}
	r.last = seq
	return msg, meta, nil
}

// take waits for c's next message, at most maxWait when it is above zero.
func (r *groupReader) take(c *consuming, maxWait time.Duration) (jetstream.Msg, error) {
	select {
	case msg := <-c.msgs:
		return msg, nil // what a replay mostly finds: no timer to set
	default:
	}
	var timeout <-chan time.Time
	if maxWait > 0 {
		r.wait.Reset(maxWait)
		defer r.wait.Stop()
		timeout = r.wait.C
	}
	select {
	case msg := <-c.msgs:
		return msg, nil
	case err := <-c.errs:
		return nil, fmt.Errorf("%w: %w", jetstream.ErrMsgIteratorClosed, err)
	case <-c.closed:
		return nil, jetstream.ErrMsgIteratorClosed
	case <-timeout:
		return nil, nats.ErrTimeout
	}
}

// Stop stops reading; it may be called from another goroutine.
func (r *groupReader) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.cur.end()
}
