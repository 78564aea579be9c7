// Package buspub publishes the catalog's events on the bus.
package buspub

import (
	"context"
	"fmt"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// Publisher is an app.Publisher over a bus.
type Publisher struct {
	b *bus.Bus
}

var _ app.Publisher = (*Publisher)(nil)

// New returns a publisher over b.
func New(b *bus.Bus) *Publisher { return &Publisher{b: b} }

// PublishBaselines publishes one catalog.baseline.published event per baseline, keyed by the
// baseline id, so publishing a baseline twice stores it once.
func (p *Publisher) PublishBaselines(ctx context.Context, bs ...domain.Baseline) error {
	evs := make([]*events.Event, 0, len(bs))
	for _, b := range bs {
		ev, err := events.New("", b.ID, pb.Published(b))
		if err != nil {
			return fmt.Errorf("baseline %s event: %w", b.ID, err)
		}
		evs = append(evs, ev)
	}
	return p.b.Publish(ctx, evs...)
}
