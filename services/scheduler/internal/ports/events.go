// Package ports connects the scheduler's application to the outside: its projections and
// handler on the bus, and its gRPC API.
package ports

import (
	"context"
	"fmt"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/app"
)

// RegisterEvents attaches the application to b and registers its projections.
func RegisterEvents(b *bus.Bus, a *app.Application) error {
	a.Attach(b)
	specs := []bus.ProjectionSpec{
		{
			Name:       app.ProjectionBaselines,
			Subjects:   []string{events.Pattern[*eventsv1.BaselinePublished]()},
			Checkpoint: a.Checkpoint(app.ProjectionBaselines),
			Apply:      a.ApplyBaseline,
			CaughtUp:   a.BaselinesCaughtUp,
		},
		{
			Name: app.ProjectionRuns,
			Subjects: []string{
				events.Pattern[*eventsv1.RunMembership](),
				events.Pattern[*eventsv1.RunStarted](),
				events.Pattern[*eventsv1.JobRequested](),
				events.Pattern[*eventsv1.RunPaused](),
				events.Pattern[*eventsv1.RunResumed](),
				events.Pattern[*eventsv1.RunCancelled](),
				events.Pattern[*eventsv1.RunHalted](),
				events.Pattern[*eventsv1.RunDispatchStopped](),
				events.Pattern[*eventsv1.SnapshotCreated](),
				events.Pattern[*eventsv1.SnapshotFailed](),
				events.Pattern[*eventsv1.InstallSucceeded](),
				events.Pattern[*eventsv1.InstallFailed](),
				events.Pattern[*eventsv1.RunCompleted](),
			},
			Checkpoint: a.Checkpoint(app.ProjectionRuns),
			Apply:      a.ApplyRun,
			CaughtUp:   a.RunsCaughtUp,
		},
	}
	for _, s := range specs {
		if err := b.Project(s); err != nil {
			return fmt.Errorf("projection %s: %w", s.Name, err)
		}
	}
	return nil
}

// RegisterFiring registers the firing's projection: the tenants' approvals, the firing's
// events and the runs' starts and completions (which wake the firing loop).
func RegisterFiring(b *bus.Bus, f *app.Firing, checkpoint func(context.Context) (uint64, error)) error {
	err := b.Project(bus.ProjectionSpec{
		Name: app.ProjectionFiring,
		Subjects: []string{
			events.Pattern[*eventsv1.BaselineApproved](),
			events.Pattern[*eventsv1.BaselineRejected](),
			events.Pattern[*eventsv1.RunStarted](),
			events.Pattern[*eventsv1.RunCompleted](),
			events.Pattern[*eventsv1.RunDeferred](),
			events.Pattern[*eventsv1.RunSkipped](),
			events.Pattern[*eventsv1.RunMissed](),
			events.Pattern[*eventsv1.RunWaitingApproval](),
			events.Pattern[*eventsv1.RunHeld](),
			events.Pattern[*eventsv1.RunReleased](),
		},
		Checkpoint: checkpoint,
		Apply:      f.ApplyFiring,
		CaughtUp:   f.CaughtUp,
	})
	if err != nil {
		return fmt.Errorf("projection %s: %w", app.ProjectionFiring, err)
	}
	return nil
}
