// Package ports connects the scheduler's application to the outside: its projections and
// handler on the bus, and its gRPC API.
package ports

import (
	"fmt"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/app"
)

// HandlerRequestJobs is the name of the handler that turns a RunStarted into JobRequested events.
const HandlerRequestJobs = "RequestJobsOnRunStarted"

// RegisterEvents attaches the application to b and registers its projections and handler.
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
				events.Pattern[*eventsv1.RunStarted](),
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
		{
			Name: app.ProjectionJobMarks,
			Subjects: []string{
				events.Pattern[*eventsv1.RunStarted](),
				events.Pattern[*eventsv1.JobRequested](),
			},
			Checkpoint: a.Checkpoint(app.ProjectionJobMarks),
			Apply:      a.ApplyJobMark,
		},
	}
	for _, s := range specs {
		if err := b.Project(s); err != nil {
			return fmt.Errorf("projection %s: %w", s.Name, err)
		}
	}
	if err := bus.Handle(b, HandlerRequestJobs, a.RequestJobs); err != nil {
		return fmt.Errorf("handler %s: %w", HandlerRequestJobs, err)
	}
	return nil
}
