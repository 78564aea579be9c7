// Package app is reporting's application layer: the compliance projection and the
// GetCompliance and ListFailedPatches queries, over domain.Repository.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// ProjectionCompliance names the compliance projection.
const ProjectionCompliance = "compliance"

// readyWait bounds how long a query waits for the read model to catch up before it answers
// Unavailable.
const readyWait = 5 * time.Second

// Application answers compliance queries from the read model it projects.
type Application struct {
	repo  domain.Repository
	log   *slog.Logger
	clock func() time.Time

	ready     chan struct{}
	readyOnce sync.Once
}

// New returns the application.
func New(repo domain.Repository, log *slog.Logger, clock func() time.Time) *Application {
	return &Application{repo: repo, log: log, clock: clock, ready: make(chan struct{})}
}

// Checkpoint returns the last stream sequence the compliance projection applied.
func (a *Application) Checkpoint(ctx context.Context) (uint64, error) { return a.repo.Checkpoint(ctx) }

// CaughtUp marks the read model ready for queries.
func (a *Application) CaughtUp(ctx context.Context) error {
	a.readyOnce.Do(func() {
		close(a.ready)
		a.log.InfoContext(ctx, "compliance read model caught up")
	})
	return nil
}

// Apply is the compliance projection: run.started puts instances in scope, outcomes assess
// them, install results feed the failed patches.
func (a *Application) Apply(ctx context.Context, ev *events.Event, _ bool) error {
	var err error
	switch msg := ev.Data.(type) {
	case *eventsv1.RunStarted:
		err = a.inScope(ctx, ev, msg)
	case *eventsv1.SnapshotFailed:
		err = a.assess(ctx, ev, msg.GetInstanceId(), msg.GetWave(), msg.GetRunId(),
			typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT, nil)
	case *eventsv1.InstallSucceeded:
		err = a.assess(ctx, ev, msg.GetInstanceId(), msg.GetWave(), msg.GetRunId(),
			typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT, []domain.FailedPatch{})
	case *eventsv1.InstallFailed:
		fps := domain.FailedPatches(msg.GetInstanceId(), msg.GetWave(), msg.GetRunId(), msg.GetReason(), msg.GetResults())
		if fps == nil {
			fps = []domain.FailedPatch{}
		}
		err = a.assess(ctx, ev, msg.GetInstanceId(), msg.GetWave(), msg.GetRunId(),
			typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT, fps)
	default:
		return bus.Permanent(fmt.Errorf("compliance projection: unexpected event type %s", ev.Type))
	}
	if err != nil {
		return err
	}
	return a.repo.SetCheckpoint(ctx, ev.Sequence)
}

func (a *Application) inScope(ctx context.Context, ev *events.Event, msg *eventsv1.RunStarted) error {
	ids := slices.Clone(msg.GetInstanceIds())
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		if id == "" {
			continue
		}
		prev, found, err := a.repo.Instance(ctx, ev.Tenant, id)
		if err != nil {
			return err
		}
		next, changed := prev.InScope(msg.GetWave(), msg.GetRunId(), ev.Sequence)
		if !changed {
			continue
		}
		if err := a.repo.SaveInstance(ctx, prev, found, next); err != nil {
			return err
		}
	}
	return nil
}

// assess applies an outcome. fps nil leaves the failed patches alone; otherwise they replace
// the instance's (empty clears them).
func (a *Application) assess(ctx context.Context, ev *events.Event, instanceID string, wave int32, runID string,
	state typesv1.ComplianceState, fps []domain.FailedPatch,
) error {
	if instanceID == "" {
		return bus.Permanent(fmt.Errorf("%s: instance_id is required", ev.ID))
	}
	prev, found, err := a.repo.Instance(ctx, ev.Tenant, instanceID)
	if err != nil {
		return err
	}
	next, changed := prev.Assess(state, wave, runID, ev.Sequence)
	if !changed {
		return nil
	}
	if fps != nil {
		if err := a.repo.ReplaceFailedPatches(ctx, ev.Tenant, instanceID, fps); err != nil {
			return err
		}
	}
	// Last: once the sequence is saved, the event counts as applied.
	return a.repo.SaveInstance(ctx, prev, found, next)
}

func (a *Application) waitReady(ctx context.Context) error {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-a.ready:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: reporting is still catching up with the event stream", domain.ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", domain.ErrUnavailable, ctx.Err())
	}
}

// Compliance is a tenant's report and when it was computed.
type Compliance struct {
	domain.Report
	AsOf time.Time
}

// GetCompliance returns a tenant's coverage in total and per wave. An unknown tenant has none.
func (a *Application) GetCompliance(ctx context.Context, tenant string) (Compliance, error) {
	if err := domain.ValidateTenant(tenant); err != nil {
		return Compliance{}, err
	}
	if err := a.waitReady(ctx); err != nil {
		return Compliance{}, err
	}
	waves, err := a.repo.Coverage(ctx, tenant)
	if err != nil {
		return Compliance{}, err
	}
	return Compliance{Report: domain.NewReport(tenant, waves), AsOf: a.clock().UTC()}, nil
}

// ListFailedPatches returns a tenant's failed patches sorted by instance, then patch.
func (a *Application) ListFailedPatches(ctx context.Context, tenant string) ([]domain.FailedPatch, error) {
	if err := domain.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	if err := a.waitReady(ctx); err != nil {
		return nil, err
	}
	fps, err := a.repo.FailedPatches(ctx, tenant)
	if err != nil {
		return nil, err
	}
	domain.SortFailedPatches(fps)
	return fps, nil
}
