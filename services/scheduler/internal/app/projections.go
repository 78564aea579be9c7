package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// ApplyBaseline is the baselines projection: it records every catalog.baseline.published.
func (a *Application) ApplyBaseline(ctx context.Context, ev *events.Event, _ bool) error {
	msg, ok := ev.Data.(*eventsv1.BaselinePublished)
	if !ok {
		return bus.Permanent(fmt.Errorf("baselines projection: unexpected event type %s", ev.Type))
	}
	if msg.GetBaselineId() == "" {
		return bus.Permanent(fmt.Errorf("baseline published %s: baseline_id is empty", ev.ID))
	}
	b := domain.Baseline{
		ID: msg.GetBaselineId(), OSFamily: msg.GetOsFamily(), Version: msg.GetVersion(),
		PublishedAt: msg.GetPublishedAt().AsTime().UTC(),
	}
	for _, p := range msg.GetPatches() {
		b.PatchIDs = append(b.PatchIDs, p.GetId())
	}
	if err := a.repo.PutBaseline(ctx, b); err != nil {
		return err
	}
	return a.repo.SetCheckpoint(ctx, ProjectionBaselines, ev.Sequence)
}

// BaselinesCaughtUp marks the baselines read model ready.
func (a *Application) BaselinesCaughtUp(context.Context) error {
	a.baselinesOnce.Do(func() { close(a.baselinesReady) })
	return nil
}

// ApplyRun is the runs projection: run records and per-outcome instance sets. When live, an
// outcome that finishes a run's last job publishes RunCompleted.
func (a *Application) ApplyRun(ctx context.Context, ev *events.Event, live bool) error {
	tenant := ev.Tenant
	var err error
	switch msg := ev.Data.(type) {
	case *eventsv1.RunStarted:
		if msg.GetRunId() == "" {
			return bus.Permanent(fmt.Errorf("run started %s: run_id is empty", ev.ID))
		}
		r := domain.Run{
			Tenant: tenant, ID: msg.GetRunId(), Wave: msg.GetWave(), BaselineID: msg.GetBaselineId(),
			Total: countUnique(msg.GetInstanceIds()), StartedAt: msg.GetStartedAt().AsTime().UTC(),
		}
		if err = a.repo.RunStarted(ctx, r); err == nil && live {
			err = a.completeIfDone(ctx, tenant, r.ID)
		}
	case *eventsv1.RunCompleted:
		if msg.GetRunId() == "" {
			return bus.Permanent(fmt.Errorf("run completed %s: run_id is empty", ev.ID))
		}
		err = a.repo.RunCompleted(ctx, tenant, msg.GetRunId(), msg.GetState(), msg.GetCompletedAt().AsTime())
	case *eventsv1.SnapshotCreated:
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), domain.OutcomeSnapshotted, live)
	case *eventsv1.SnapshotFailed:
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), domain.OutcomeSnapshotFailed, live)
	case *eventsv1.InstallSucceeded:
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), domain.OutcomeSucceeded, live)
	case *eventsv1.InstallFailed:
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), domain.OutcomeFailed, live)
	default:
		return bus.Permanent(fmt.Errorf("runs projection: unexpected event type %s", ev.Type))
	}
	if err != nil {
		return err
	}
	return a.repo.SetCheckpoint(ctx, ProjectionRuns, ev.Sequence)
}

func (a *Application) outcome(ctx context.Context, ev *events.Event, runID, instanceID string, o domain.Outcome, live bool) error {
	if runID == "" || instanceID == "" {
		return bus.Permanent(fmt.Errorf("%s: run_id and instance_id are required", ev.ID))
	}
	if err := a.repo.AddOutcome(ctx, ev.Tenant, runID, instanceID, o); err != nil {
		return err
	}
	if live && o.Terminal() {
		return a.completeIfDone(ctx, ev.Tenant, runID)
	}
	return nil
}

// completeIfDone publishes RunCompleted when every job of a running run has a terminal outcome.
func (a *Application) completeIfDone(ctx context.Context, tenant, runID string) error {
	ev, err := a.completion(ctx, tenant, runID)
	if err != nil || ev == nil {
		return err
	}
	return a.publishCompleted(ctx, ev)
}

// completion returns the RunCompleted event of a complete-but-unfinished run, or nil.
func (a *Application) completion(ctx context.Context, tenant, runID string) (*events.Event, error) {
	head, ok, err := a.repo.RunHeader(ctx, tenant, runID)
	if err != nil || !ok {
		return nil, err
	}
	done, err := a.repo.Done(ctx, tenant, runID)
	if err != nil {
		return nil, err
	}
	if _, complete := head.Complete(done); !complete {
		return nil, nil
	}
	// Only now read the counters: most outcomes do not finish their run.
	r, ok, err := a.repo.Run(ctx, tenant, runID)
	if err != nil || !ok {
		return nil, err
	}
	c, complete := r.Complete(done)
	if !complete {
		return nil, nil
	}
	return a.completedEvent(r, c, a.clock().UTC())
}

func (a *Application) publishCompleted(ctx context.Context, evs ...*events.Event) error {
	pub := a.publisher()
	if pub == nil {
		return errors.New("publish run completed: not attached to a bus")
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		return fmt.Errorf("publish run completed: %w", err)
	}
	for _, ev := range evs {
		msg := ev.Data.(*eventsv1.RunCompleted)
		a.log.InfoContext(ctx, "run completed", "tenant", msg.GetTenant(), "run_id", msg.GetRunId(),
			"state", msg.GetState().String(), "total", msg.GetTotal(), "succeeded", msg.GetSucceeded(), "failed", msg.GetFailed())
	}
	return nil
}

// RunsCaughtUp completes every run that finished while no replica was live (a restart between
// its last outcome and its RunCompleted), then marks the runs read model ready.
func (a *Application) RunsCaughtUp(ctx context.Context) error {
	open, err := a.repo.OpenRuns(ctx)
	if err != nil {
		return err
	}
	var evs []*events.Event
	for _, ref := range open {
		head, ok, err := a.repo.RunHeader(ctx, ref.Tenant, ref.RunID)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if head.State == typesv1.RunState_RUN_STATE_RUNNING {
			ev, err := a.completion(ctx, ref.Tenant, ref.RunID)
			if err != nil {
				return err
			}
			if ev != nil {
				evs = append(evs, ev)
			}
			continue
		}
		// Completed, but the index missed it (a crash between the two writes): tidy up.
		if err := a.repo.UnindexOpen(ctx, ref.Tenant, ref.RunID); err != nil {
			return err
		}
	}
	if len(evs) > 0 {
		if err := a.publishCompleted(ctx, evs...); err != nil {
			return err
		}
	}
	a.runsOnce.Do(func() { close(a.runsReady) })
	return nil
}

func countUnique(ids []string) int {
	s := slices.Clone(ids)
	slices.Sort(s)
	return len(slices.Compact(s))
}
