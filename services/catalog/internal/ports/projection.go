package ports

import (
	"context"
	"errors"
	"fmt"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// ProjectionName names the baseline read model's projection.
const ProjectionName = "baselines"

// Projection returns the projection of catalog.baseline.published into the read model. Once
// it has caught up it publishes the configured baselines the stream does not hold yet.
func Projection(a *app.App, pub app.Publisher) bus.ProjectionSpec {
	return bus.ProjectionSpec{
		Name:       ProjectionName,
		Subjects:   []string{events.Pattern[*eventsv1.BaselinePublished]()},
		Checkpoint: a.Checkpoint,
		Apply: func(ctx context.Context, ev *events.Event, _ bool) error {
			msg, ok := ev.Data.(*eventsv1.BaselinePublished)
			if !ok {
				return bus.Permanent(fmt.Errorf("event %s: type %s, want BaselinePublished", ev.ID, ev.Type))
			}
			err := a.ApplyPublished(ctx, pb.FromPublished(msg), ev.Sequence)
			if errors.Is(err, domain.ErrInvalid) {
				return bus.Permanent(err)
			}
			return err
		},
		CaughtUp: func(ctx context.Context) error { return a.PublishConfigured(ctx, pub) },
	}
}
