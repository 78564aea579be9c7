package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchwave/patchwave/libs/events"
)

// ApplyFunc applies one event to a read model. live is false while the projection replays what
// the stream held when it started, and true afterwards: side effects such as publishing belong
// to live events (or to CaughtUp). ev.Sequence is the stream sequence to checkpoint. ev.Data
// is shared with the bus's other projections (and, for live events, the process's): read it,
// never change it.
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
	// Settle, when set, is called when the projection has been handed every batch the reader
	// had for it (before it waits for more) and before CaughtUp, in the projection's goroutine:
	// an ApplyBatch may return with its last write still under way (a pipelined replay), and
	// Settle waits for it and makes it good, so CaughtUp means written and an idle projection
	// has nothing under way. An error is retried as ApplyBatch's is (ErrReplay replays, a
	// Permanent one is logged). Optional.
	Settle func(ctx context.Context) error
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
	// filters are spec.Subjects split into tokens, to tell which events of a group are the
	// projection's.
	filters [][]string

	// What its group's run keeps about the projection across restarts of the group's consumer.
	// pos is the last stream sequence the projection has applied or had nothing to apply at; it
	// is written by the member's goroutine and read when the group (re)starts.
	pos atomic.Uint64
	// target is the last sequence on its subjects when it (re)started: once it has applied up
	// to there it is live.
	target uint64
	live   bool
	// reread makes the next start of the group read the projection's Checkpoint again; replay
	// is set (by its Apply's ErrReplay or its Replay channel) while the group runs.
	reread bool
	replay atomic.Bool
	// ch carries its batches from the group's reader to its goroutine; waiting says that
	// goroutine has applied every batch and waits for the next (the reader then hands it a
	// replayed batch that is not full rather than let it wait).
	ch        chan projBatch
	waiting   atomic.Bool
	projected prometheus.Counter
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
	filters := make([][]string, len(spec.Subjects))
	for i, s := range spec.Subjects {
		filters[i] = strings.Split(s, ".")
	}
	b.projections = append(b.projections, &projection{
		spec: spec, stream: stream, caughtUp: make(chan struct{}), filters: filters,
		projected: b.metrics.projected.WithLabelValues(spec.Name),
	})
	return nil
}

// batchSize is how many events one call of the projection gets at most.
func (p *projection) batchSize() int {
	if p.spec.ApplyBatch != nil && p.spec.BatchSize > 0 {
		return p.spec.BatchSize
	}
	return DefaultProjectionBatch
}

// wants reports whether subject is one of the projection's.
func (p *projection) wants(subject []string) bool {
	for _, f := range p.filters {
		if subjectMatch(f, subject) {
			return true
		}
	}
	return false
}

// projBatch is what a group's reader hands one of its projections: its events (in stream
// order), the last stream sequence read for it, and whether its events are live.
type projBatch struct {
	evs  []*events.Event
	last uint64
	live bool
}

// projMsg is a message read by a group before it is decoded; ev is nil until then, and after
// when the message is malformed or no projection wants it.
type projMsg struct {
	subject string
	data    []byte
	seq     uint64
	// live says the message was stored after the group started: it goes through the decode
	// cache, since the process's other consumers receive it at about the same time.
	live bool
	// want lists the group's projections whose subjects it is on.
	want []int
	ev   *events.Event
}

// decodeAll decodes the messages some projection wants, in place, logging and leaving out the
// malformed ones; a large batch is decoded on every core (decoding CloudEvents JSON and
// protobuf JSON is most of a replay's cost).
func decodeAll(log *slog.Logger, raw []projMsg) {
	// The round's events are one allocation; a projection's batch points into it, so it lives
	// until every batch holding one of its events is applied and dropped.
	wanted := 0
	for i := range raw {
		if len(raw[i].want) > 0 {
			wanted++
		}
	}
	if wanted == 0 {
		return
	}
	evs := make([]events.Event, 0, wanted)
	for i := range raw {
		if len(raw[i].want) > 0 {
			evs = evs[:len(evs)+1]
			raw[i].ev = &evs[len(evs)-1]
		}
	}
	workers := runtime.GOMAXPROCS(0)
	if len(raw) < 64 || workers == 1 {
		for i := range raw {
			decodeOne(log, &raw[i])
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (len(raw) + workers - 1) / workers
	for start := 0; start < len(raw); start += chunk {
		end := min(start+chunk, len(raw))
		wg.Go(func() {
			for i := start; i < end; i++ {
				decodeOne(log, &raw[i])
			}
		})
	}
	wg.Wait()
}

// decodeOne decodes a message of decodeAll's into its event (r.ev, nil when no projection
// wants it), or logs it and sets r.ev to nil when it is malformed.
func decodeOne(log *slog.Logger, r *projMsg) {
	if r.ev == nil {
		return
	}
	var err error
	if r.live {
		err = decoded.decodeTo(r.ev, r.subject, r.data)
	} else {
		err = events.UnmarshalTo(r.ev, r.subject, r.data)
	}
	if err != nil {
		log.Warn("projection skips malformed message", "seq", r.seq, "error", err)
		r.ev = nil
		return
	}
	r.ev.Sequence, r.ev.Delivered = r.seq, 1
}

// DefaultProjectionBatch is the batch size of a projection with ApplyBatch and no BatchSize.
const DefaultProjectionBatch = 500

// batchLinger is how long a group's reader waits for one more message before it hands out
// what it has.
const batchLinger = 2 * time.Millisecond

// applyAll applies a batch: with ApplyBatch in one call (retried as a whole), else event by
// event.
func (b *Bus) applyAll(ctx context.Context, p *projection, evs []*events.Event, live bool) error {
	if p.spec.ApplyBatch == nil {
		for _, ev := range evs {
			if err := ctx.Err(); err != nil {
				return err // the group stops: the rest is read again
			}
			if err := b.apply(ctx, p, ev, live); err != nil {
				return err
			}
			// Applied: a restart of the group does not hand it to this projection again.
			p.pos.Store(ev.Sequence)
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

// settle calls the projection's Settle, if any, until it succeeds, fails permanently, or ctx
// ends.
func (b *Bus) settle(ctx context.Context, p *projection) error {
	if p.spec.Settle == nil {
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := p.spec.Settle(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrReplay) || ctx.Err() != nil {
			return err
		}
		if IsPermanent(err) {
			b.log.Error("projection could not settle", "projection", p.spec.Name, "error", err)
			return nil
		}
		b.log.Warn("projection settle failed, retrying", "projection", p.spec.Name, "attempt", attempt, "error", err)
		if err := sleepCtx(ctx, backoff(b.cfg.RetryBackoff, b.cfg.MaxRetryBackoff, attempt)); err != nil {
			return err
		}
	}
}

// lastSequence returns the sequence of the last message stored on any of subjects, 0 if none.
func lastSequence(ctx context.Context, s jetstream.Stream, subjects []string) (uint64, error) {
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

// nextSequence returns the sequence of the first message at or after seq on any of subjects, 0
// if none.
func nextSequence(ctx context.Context, s jetstream.Stream, subjects []string, seq uint64) (uint64, error) {
	var next uint64
	for _, subj := range subjects {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("next message on %s after %d: %w", subj, seq-1, err)
		}
		if next == 0 || m.Sequence < next {
			next = m.Sequence
		}
	}
	return next, nil
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
