package ports

import (
	"context"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
)

// Projection names.
const (
	ProjectionBaselines = "baselines_announced"
	ProjectionPatches   = "patches_announced"
	ProjectionDecisions = "decisions_announced"
)

// Projections read back the catalog's own events to learn what the stream holds; once each has
// caught up (and the KV mirrors are loaded, which ready waits for) it publishes the events of
// the changes stored without one (a crash between a KV write and its publish). The bus counts
// the catalog as running only after that.
func Projections(a *app.App, ready func(context.Context) error) []bus.ProjectionSpec {
	caughtUp := func(repair func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error {
			if err := ready(ctx); err != nil {
				return err
			}
			return repair(ctx)
		}
	}
	return []bus.ProjectionSpec{
		{
			Name:     ProjectionBaselines,
			Subjects: []string{events.Pattern[*eventsv1.BaselinePublished]()},
			Apply: func(_ context.Context, ev *events.Event, _ bool) error {
				if msg, ok := ev.Data.(*eventsv1.BaselinePublished); ok {
					a.MarkBaselineAnnounced(msg.GetBaselineId())
				}
				return nil
			},
			CaughtUp: caughtUp(a.RepairBaselines),
		},
		{
			Name:     ProjectionPatches,
			Subjects: []string{events.CatalogSubject("patch", ">")},
			Apply: func(_ context.Context, ev *events.Event, _ bool) error {
				a.HearPatchEvent(ev)
				return nil
			},
			CaughtUp: caughtUp(a.RepairPatches),
		},
		{
			Name:     ProjectionDecisions,
			Subjects: []string{events.Pattern[*eventsv1.BaselineApproved](), events.Pattern[*eventsv1.BaselineRejected]()},
			Apply: func(_ context.Context, ev *events.Event, _ bool) error {
				a.HearDecisionEvent(ev)
				return nil
			},
			CaughtUp: caughtUp(a.RepairDecisions),
		},
	}
}
