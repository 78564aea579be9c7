package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/events"
)

// ApplyFunc applies one event to a read model. live is false while the projection replays what
// the stream held when it started, and true afterwards: side effects such as publishing belong
// to live events (or to CaughtUp). ev.Sequence is the stream sequence to checkpoint.
type ApplyFunc func(ctx context.Context, ev *events.Event, live bool) error

// ProjectionSpec describes a read model fed from the stream in order.
type ProjectionSpec struct {
	// Name of the projection, for logs and metrics. Required.
	Name string
	// Subjects to read (filters, wildcards allowed), all in one stream. Required.
	Subjects []string
	// Checkpoint returns the stream sequence the read model has applied up to; reading resumes
	// after it. Optional: nil or 0 replays the whole stream, as an in-memory model must.
	Checkpoint func(ctx context.Context) (uint64, error)
	// Apply is called for each event in stream order. Required unless ApplyBatch is set. An
	// error is retried with a backoff (the projection never skips an event), except a
	// Permanent one, which is logged and skipped.
	Apply ApplyFunc
	// ApplyBatch, when set, is called instead of Apply with the events that are there at once
	// (up to BatchSize, in stream order; a batch never mixes replayed and live events), so a
	// read model can write a whole batch in one round trip. An error retries the whole batch;
	// a Permanent one skips it (the read model handles a bad event inside a batch itself).
	ApplyBatch func(ctx context.Context, evs []*events.Event, live bool) error
	// BatchSize bounds a batch of ApplyBatch. Optional, default DefaultProjectionBatch.
	BatchSize int
	// CaughtUp is called once, after the events the stream held at start are applied.
	// Optional.
	CaughtUp func(ctx context.Context) error
	// Replay, when it delivers, makes the projection read its Checkpoint again and the stream
	// from there, as an Apply returning ErrReplay does (for a read model that learns outside
	// Apply that its store was emptied). Optional.
	Replay <-chan struct{}
}

type projection struct {
	spec     ProjectionSpec
	stream   string
	caughtUp chan struct{}
	once     sync.Once
}

// ErrReplay restarts a projection when an ApplyFunc returns an error wrapping it: the
// projection reads its Checkpoint again and reads the stream from there. A read model that
// finds its store emptied under it (a flushed Redis) returns it, so it is rebuilt without a
// restart of the process.
var ErrReplay = errors.New("projection: replay from the checkpoint")

// Project registers a projection. It must be called before Run.
func (b *Bus) Project(spec ProjectionSpec) error {
	if !namePattern.MatchString(spec.Name) {
		return fmt.Errorf("projection name %q: must match %s", spec.Name, namePattern)
	}
	if len(spec.Subjects) == 0 || (spec.Apply == nil && spec.ApplyBatch == nil) {
		return fmt.Errorf("projection %s: Subjects and Apply are required", spec.Name)
	}
	stream, err := streamOf(spec.Subjects)
	if err != nil {
		return fmt.Errorf("projection %s: %w", spec.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return fmt.Errorf("projection %s: registered after Run", spec.Name)
	}
	b.projections = append(b.projections, &projection{spec: spec, stream: stream, caughtUp: make(chan struct{})})
	return nil
}

func (b *Bus) runProjection(ctx context.Context, p *projection) error {
	for {
		err := b.projectFromCheckpoint(ctx, p)
		if !errors.Is(err, ErrReplay) || ctx.Err() != nil {
			return err
		}
		b.log.Warn("projection replays from its checkpoint", "projection", p.spec.Name, "reason", err)
	}
}

// projectFromCheckpoint reads the stream from the projection's checkpoint until ctx ends, an
// error stops it, or Apply asks for a replay (ErrReplay).
func (b *Bus) projectFromCheckpoint(ctx context.Context, p *projection) error {
	log := b.log.With("projection", p.spec.Name)
	var from uint64
	if p.spec.Checkpoint != nil {
		var err error
		if from, err = p.spec.Checkpoint(ctx); err != nil {
			return fmt.Errorf("projection %s checkpoint: %w", p.spec.Name, err)
		}
	}
	// The last message on the projection's subjects when it starts: once it is applied, or at
	// once when the checkpoint is past it or nothing matches, the projection has caught up.
	target, err := b.lastSequence(ctx, p.stream, p.spec.Subjects)
	if err != nil {
		return fmt.Errorf("projection %s: %w", p.spec.Name, err)
	}
	live := false
	markCaughtUp := func() error {
		live = true
		var err error
		p.once.Do(func() {
			if p.spec.CaughtUp != nil {
				if err = p.spec.CaughtUp(ctx); err != nil {
					err = fmt.Errorf("projection %s caught up: %w", p.spec.Name, err)
					return
				}
			}
			close(p.caughtUp)
			log.Debug("projection caught up", "from", from, "target", target)
		})
		return err
	}
	if target <= from {
		if err := markCaughtUp(); err != nil {
			return err
		}
	}

	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: p.spec.Subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from + 1
	}
	cons, err := b.js.OrderedConsumer(ctx, p.stream, cfg)
	if err != nil {
		return fmt.Errorf("projection %s consumer: %w", p.spec.Name, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("projection %s messages: %w", p.spec.Name, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var replay atomic.Bool
	if p.spec.Replay != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-p.spec.Replay:
				replay.Store(true)
				it.Stop()
			case <-done:
			}
		}()
	}
	size := 1
	if p.spec.ApplyBatch != nil {
		size = p.spec.BatchSize
		if size <= 0 {
			size = DefaultProjectionBatch
		}
	}
	nextErr := func(err error) error {
		if ctx.Err() != nil {
			return nil //nolint:nilerr // the iterator stopped because ctx ended: a clean stop
		}
		if replay.Load() {
			return fmt.Errorf("projection %s: asked to replay: %w", p.spec.Name, ErrReplay)
		}
		// The ordered consumer recreates itself after server restarts; an error here
		// means it cannot go on (closed connection).
		return fmt.Errorf("projection %s: %w", p.spec.Name, err)
	}
	// A reader goroutine takes the messages that are there at once (up to the batch size,
	// never past the catch-up target in one batch, so every event of a batch is replayed or
	// every one is live) and decodes them while the batch before is applied.
	batches := make(chan projBatch, 1)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		defer close(batches)
		readerLive := live
		for {
			msg, err := it.Next()
			if err != nil {
				sendBatch(batches, stopped, projBatch{err: err})
				return
			}
			raw := make([]projMsg, 0, size)
			var pb projBatch
			for {
				meta, err := msg.Metadata()
				if err != nil {
					pb.err = fmt.Errorf("projection %s metadata: %w", p.spec.Name, err)
					break
				}
				pb.last = meta.Sequence.Stream
				raw = append(raw, projMsg{subject: msg.Subject(), data: msg.Data(), seq: pb.last})
				if size == 1 || len(raw) >= size || (!readerLive && pb.last >= target) {
					break
				}
				if msg, err = it.Next(jetstream.NextMaxWait(batchLinger)); err != nil {
					if !errors.Is(err, nats.ErrTimeout) {
						pb.err = err
					}
					break
				}
			}
			pb.live = readerLive
			if !readerLive && pb.last >= target {
				readerLive = true
			}
			// Live events reach the process's other consumers too: through the decode cache.
			// A replay would only fill it.
			dec := events.Unmarshal
			if pb.live {
				dec = decoded.unmarshal
			}
			pb.evs = decodeAll(log, dec, raw, make([]*events.Event, 0, len(raw)))
			if !sendBatch(batches, stopped, pb) || pb.err != nil {
				return
			}
		}
	}()
	for pb := range batches {
		if len(pb.evs) > 0 {
			if err := b.applyAll(ctx, p, pb.evs, pb.live); err != nil {
				if errors.Is(err, ErrReplay) {
					return err
				}
				return nil // ctx done
			}
			b.metrics.projected.WithLabelValues(p.spec.Name).Add(float64(len(pb.evs)))
		}
		if !live && pb.last >= target {
			if err := markCaughtUp(); err != nil {
				return err
			}
		}
		if pb.err != nil {
			return nextErr(pb.err)
		}
	}
	return nextErr(errors.New("the reader stopped"))
}

// projBatch is a decoded batch: its events, the last stream sequence read, whether its events
// are live, and the error that ended the reading after it (nil: reading goes on).
type projBatch struct {
	evs  []*events.Event
	last uint64
	live bool
	err  error
}

// sendBatch hands pb to the applier unless it stopped.
func sendBatch(ch chan<- projBatch, stopped <-chan struct{}, pb projBatch) bool {
	select {
	case ch <- pb:
		return true
	case <-stopped:
		return false
	}
}

// projMsg is a message of a batch before it is decoded.
type projMsg struct {
	subject string
	data    []byte
	seq     uint64
}

// decodeAll decodes a batch into out, in stream order, skipping malformed messages; a large
// batch is decoded on every core (decoding CloudEvents JSON and protobuf JSON is most of a
// replay's cost).
func decodeAll(log *slog.Logger, dec func(subject string, b []byte) (*events.Event, error), raw []projMsg, out []*events.Event) []*events.Event {
	evs := make([]*events.Event, len(raw))
	decode := func(i int) {
		ev, err := dec(raw[i].subject, raw[i].data)
		if err != nil {
			log.Warn("projection skips malformed message", "seq", raw[i].seq, "error", err)
			return
		}
		ev.Sequence, ev.Delivered = raw[i].seq, 1
		evs[i] = ev
	}
	workers := runtime.GOMAXPROCS(0)
	if len(raw) < 64 || workers == 1 {
		for i := range raw {
			decode(i)
		}
	} else {
		var wg sync.WaitGroup
		chunk := (len(raw) + workers - 1) / workers
		for start := 0; start < len(raw); start += chunk {
			end := min(start+chunk, len(raw))
			wg.Go(func() {
				for i := start; i < end; i++ {
					decode(i)
				}
			})
		}
		wg.Wait()
	}
	for _, ev := range evs {
		if ev != nil {
			out = append(out, ev)
		}
	}
	return out
}

// DefaultProjectionBatch is the batch size of a projection with ApplyBatch and no BatchSize.
const DefaultProjectionBatch = 500

// batchLinger is how long a batching projection waits for one more message before it applies
// what it has.
const batchLinger = 2 * time.Millisecond

// applyAll applies a batch: with ApplyBatch in one call (retried as a whole), else event by
// event.
func (b *Bus) applyAll(ctx context.Context, p *projection, evs []*events.Event, live bool) error {
	if p.spec.ApplyBatch == nil {
		for _, ev := range evs {
			if err := b.apply(ctx, p, ev, live); err != nil {
				return err
			}
		}
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := p.spec.ApplyBatch(ctx, evs, live)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrReplay) {
			return err
		}
		if IsPermanent(err) {
			b.log.Error("projection skips batch", "projection", p.spec.Name, "first", evs[0].ID, "events", len(evs), "error", err)
			return nil
		}
		b.log.Warn("projection batch failed, retrying", "projection", p.spec.Name, "first", evs[0].ID, "events", len(evs), "attempt", attempt, "error", err)
		if err := sleepCtx(ctx, backoff(b.cfg.RetryBackoff, b.cfg.MaxRetryBackoff, attempt)); err != nil {
			return err
		}
	}
}

// lastSequence returns the sequence of the last message stored on any of subjects, 0 if none.
func (b *Bus) lastSequence(ctx context.Context, stream string, subjects []string) (uint64, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	var last uint64
	for _, subj := range subjects {
		m, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("last message on %s: %w", subj, err)
		}
		last = max(last, m.Sequence)
	}
	return last, nil
}

// apply retries Apply until it succeeds, fails permanently, or ctx ends.
func (b *Bus) apply(ctx context.Context, p *projection, ev *events.Event, live bool) error {
	for attempt := 1; ; attempt++ {
		err := p.spec.Apply(ctx, ev, live)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrReplay) {
			return err
		}
		if IsPermanent(err) {
			b.log.Error("projection skips event", "projection", p.spec.Name, "event", ev.ID, "error", err)
			return nil
		}
		b.log.Warn("projection apply failed, retrying", "projection", p.spec.Name, "event", ev.ID, "attempt", attempt, "error", err)
		if err := sleepCtx(ctx, backoff(b.cfg.RetryBackoff, b.cfg.MaxRetryBackoff, attempt)); err != nil {
			return err
		}
	}
}
