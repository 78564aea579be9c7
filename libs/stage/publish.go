package stage

import (
	"context"
	"fmt"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
)

// EventPublisher stores events (a *bus.Bus).
type EventPublisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// Publisher coalesces the outcome publishes of concurrent handler calls into one bus publish
// (which sends them asynchronously and waits for the acks once), so a stage handling hundreds
// of events at once does not wait for hundreds of separate ack round trips. Each event keeps
// the correlation and trace of the call that published it. A Publisher is safe for concurrent
// use.
type Publisher struct {
	b *Batcher[struct{}, []*events.Event, error]
}

// NewPublisher returns a Publisher over pub; cfg.Size counts Publish calls per batch.
func NewPublisher(pub EventPublisher, cfg BatcherConfig) (*Publisher, error) {
	if pub == nil {
		return nil, fmt.Errorf("publisher: pub is required")
	}
	b, err := NewBatcher(cfg, func(ctx context.Context, _ struct{}, calls [][]*events.Event) ([]error, error) {
		var all []*events.Event
		for _, evs := range calls {
			all = append(all, evs...)
		}
		errs := make([]error, len(calls))
		err := pub.Publish(ctx, all...)
		if err == nil || !bus.IsPermanent(err) {
			for i := range errs {
				errs[i] = err
			}
			return errs, nil
		}
		// One call's event is refused for good: publish call by call so only that call fails.
		for i, evs := range calls {
			errs[i] = pub.Publish(ctx, evs...)
		}
		return errs, nil
	})
	if err != nil {
		return nil, err
	}
	return &Publisher{b: b}, nil
}

// Publish stores evs together with the events of concurrent calls and returns once they are
// acknowledged; an error is bus.Publish's.
func (p *Publisher) Publish(ctx context.Context, evs ...*events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	for _, e := range evs {
		if e == nil {
			continue
		}
		if e.CorrelationID == "" {
			e.CorrelationID = bus.CorrelationID(ctx)
		}
		if e.TraceParent == "" {
			e.TraceParent = bus.TraceParent(ctx)
		}
	}
	perCall, err := p.b.Do(ctx, struct{}{}, evs)
	if err != nil {
		return err
	}
	return perCall
}
