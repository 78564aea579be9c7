package app

import (
	"context"
	"fmt"
	"slices"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// markKey is the idempotency key of a run's job requests.
func markKey(tenant, runID string) string { return tenant + "/" + runID }

// RequestJobs is the RequestJobsOnRunStarted handler: one JobRequested per instance of the run,
// all in one Publish call (the bus sends them asynchronously in windows). Event ids are
// deterministic ("<subject>/<run>/<instance>"), so a redelivery within the stream's duplicate
// window stores nothing twice; the run's idempotency mark keeps a replay after the window from
// requesting the jobs again.
func (a *Application) RequestJobs(ctx context.Context, ev *events.Event, msg *eventsv1.RunStarted) error {
	runID := msg.GetRunId()
	if runID == "" {
		return bus.Permanent(fmt.Errorf("run started %s: run_id is empty", ev.ID))
	}
	key := markKey(ev.Tenant, runID)
	done, err := a.marks.Done(ctx, key)
	if err != nil || done {
		return err
	}
	instances := slices.Clone(msg.GetInstanceIds())
	slices.Sort(instances)
	instances = slices.Compact(instances)
	now := a.clock().UTC()
	evs := make([]*events.Event, 0, len(instances))
	for _, id := range instances {
		job, err := events.New(ev.Tenant, runID+"/"+id, &eventsv1.JobRequested{
			Tenant: ev.Tenant, RunId: runID, Wave: msg.GetWave(), InstanceId: id,
			BaselineId: msg.GetBaselineId(), PatchIds: msg.GetPatchIds(),
		})
		if err != nil {
			return bus.Permanent(fmt.Errorf("run %s: job for instance %q: %w", runID, id, err))
		}
		job.Time = now
		evs = append(evs, job)
	}
	if len(evs) > 0 {
		pub := a.publisher()
		if pub == nil {
			return fmt.Errorf("request jobs of run %s: not attached to a bus", runID)
		}
		if err := pub.Publish(ctx, evs...); err != nil {
			return fmt.Errorf("request %d jobs of run %s: %w", len(evs), runID, err)
		}
	}
	// Mark first, then drop the rebuild bookkeeping: the job-marks projection checks the mark
	// after each write, so whichever of the two runs last leaves nothing behind.
	if err := a.marks.Mark(ctx, key); err != nil {
		return err
	}
	if err := a.repo.ForgetJobs(ctx, ev.Tenant, runID); err != nil {
		return err
	}
	a.log.InfoContext(ctx, "jobs requested", "tenant", ev.Tenant, "run_id", runID, "jobs", len(evs))
	return nil
}

// ApplyJobMark is the job-marks projection. It rebuilds the per-run idempotency marks of
// RequestJobs from the stream when the store is empty (patchd's memory store at start, a
// flushed Redis). Marking a run on its first JobRequested would be wrong: a crash in the middle
// of a Publish leaves only some of a run's jobs in the stream, and the redelivered RunStarted
// must still request the rest. So the projection counts the distinct instances of each run's
// JobRequested events against the run's instance count from RunStarted (same stream, earlier),
// and marks the run only when every job is in the stream.
func (a *Application) ApplyJobMark(ctx context.Context, ev *events.Event, _ bool) error {
	var err error
	switch msg := ev.Data.(type) {
	case *eventsv1.RunStarted:
		err = a.jobsTotal(ctx, ev.Tenant, msg)
	case *eventsv1.JobRequested:
		err = a.jobSeen(ctx, ev.Tenant, msg)
	default:
		return bus.Permanent(fmt.Errorf("job-marks projection: unexpected event type %s", ev.Type))
	}
	if err != nil {
		return err
	}
	return a.repo.SetCheckpoint(ctx, ProjectionJobMarks, ev.Sequence)
}

func (a *Application) jobsTotal(ctx context.Context, tenant string, msg *eventsv1.RunStarted) error {
	if msg.GetRunId() == "" {
		return nil
	}
	key := markKey(tenant, msg.GetRunId())
	if done, err := a.marks.Done(ctx, key); err != nil || done {
		return err
	}
	total := countUnique(msg.GetInstanceIds())
	if total == 0 {
		return a.marks.Mark(ctx, key)
	}
	if err := a.repo.JobsTotal(ctx, tenant, msg.GetRunId(), total); err != nil {
		return err
	}
	return a.forgetIfMarked(ctx, tenant, msg.GetRunId())
}

func (a *Application) jobSeen(ctx context.Context, tenant string, msg *eventsv1.JobRequested) error {
	runID := msg.GetRunId()
	if runID == "" || msg.GetInstanceId() == "" {
		return nil
	}
	key := markKey(tenant, runID)
	if done, err := a.marks.Done(ctx, key); err != nil || done {
		return err
	}
	seen, total, err := a.repo.JobRequested(ctx, tenant, runID, msg.GetInstanceId())
	if err != nil {
		return err
	}
	if total >= 0 && seen >= total {
		if err := a.marks.Mark(ctx, key); err != nil {
			return err
		}
		return a.repo.ForgetJobs(ctx, tenant, runID)
	}
	return a.forgetIfMarked(ctx, tenant, runID)
}

// forgetIfMarked drops the bookkeeping of a run that RequestJobs marked meanwhile.
func (a *Application) forgetIfMarked(ctx context.Context, tenant, runID string) error {
	done, err := a.marks.Done(ctx, markKey(tenant, runID))
	if err != nil || !done {
		return err
	}
	return a.repo.ForgetJobs(ctx, tenant, runID)
}
