package bus

import (
	"context"
	"errors"
	"fmt"

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
	// Apply is called for each event in stream order. Required. An error is retried with a
	// backoff (the projection never skips an event), except a Permanent one, which is logged
	// and skipped.
	Apply ApplyFunc
	// CaughtUp is called once, after the events the stream held at start are applied.
	// Optional.
	CaughtUp func(ctx context.Context) error
}

type projection struct {
	spec     ProjectionSpec
	stream   string
	caughtUp chan struct{}
}

// Project registers a projection. It must be called before Run.
func (b *Bus) Project(spec ProjectionSpec) error {
	if !namePattern.MatchString(spec.Name) {
		return fmt.Errorf("projection name %q: must match %s", spec.Name, namePattern)
	}
	if len(spec.Subjects) == 0 || spec.Apply == nil {
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
		if p.spec.CaughtUp != nil {
			if err := p.spec.CaughtUp(ctx); err != nil {
				return fmt.Errorf("projection %s caught up: %w", p.spec.Name, err)
			}
		}
		close(p.caughtUp)
		log.Debug("projection caught up", "from", from, "target", target)
		return nil
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
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The ordered consumer recreates itself after server restarts; an error here
			// means it cannot go on (closed connection).
			return fmt.Errorf("projection %s: %w", p.spec.Name, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("projection %s metadata: %w", p.spec.Name, err)
		}
		seq := meta.Sequence.Stream
		ev, err := events.Unmarshal(msg.Subject(), msg.Data())
		if err != nil {
			log.Warn("projection skips malformed message", "seq", seq, "error", err)
		} else {
			ev.Sequence = seq
			ev.Delivered = 1
			if err := b.apply(ctx, p, ev, live); err != nil {
				return nil // ctx done
			}
			b.metrics.projected.WithLabelValues(p.spec.Name).Inc()
		}
		if !live && seq >= target {
			if err := markCaughtUp(); err != nil {
				return err
			}
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
