package app

import (
	"context"
	"fmt"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/installer/internal/domain"
)

// InstallOnSnapshotCreated starts the job's installation. It first checks, at the provider and
// in a batch with the concurrent calls of this replica (one GetSnapshots per target), that the
// run's snapshot set of the instance is completed and is the one the event names; if not, it
// publishes InstallFailed with the refusal and installs nothing. When the message may have been
// handled before (a redelivery), it looks for an installation already started for the run
// (FindInstallations, batched) and reuses it. Otherwise it starts the installation in a batch
// (one SSM command per 50 instances sharing baseline, patches and reboot option) and publishes
// InstallStarted; TrackInstallations follows it from there.
func (a *Installer) InstallOnSnapshotCreated(ctx context.Context, ev *events.Event, sc *eventsv1.SnapshotCreated) error {
	if err := stage.ValidateJob(ev.Tenant, sc.GetTenant(), sc.GetRunId(), sc.GetInstanceId()); err != nil {
		return bus.Permanent(fmt.Errorf("snapshot created %s: %w", ev.ID, err))
	}
	run, inst := sc.GetRunId(), sc.GetInstanceId()
	key := stage.Key(ev.Tenant, run, inst)
	if done, err := a.d.Started.Done(ctx, key); err != nil || done {
		return err
	}
	t, err := stage.Target(ev.Tenant, sc.GetLocation())
	if err != nil {
		return a.finishStart(ctx, key, a.failed(ev, sc, "", fmt.Sprintf("the job names no location: %v", err), nil, typesv1.JobState_JOB_STATE_FAILED))
	}
	look, err := a.snapshots.Do(ctx, t, provider.SnapshotSetID(ev.Tenant, run, inst))
	if err != nil {
		if retry := stage.Retry(ctx, err); retry != nil {
			return fmt.Errorf("check the snapshot of %s: %w", inst, retry)
		}
		return a.finishStart(ctx, key, a.failed(ev, sc, "", domain.RefusalPrefix+err.Error(), nil, typesv1.JobState_JOB_STATE_FAILED))
	}
	if reason := domain.CheckSnapshot(ev.Tenant, run, inst, sc.GetSnapshotId(), look.snap, look.found); reason != "" {
		a.log.WarnContext(ctx, "install refused", "tenant", ev.Tenant, "run", run, "instance", inst, "reason", reason)
		return a.finishStart(ctx, key, a.failed(ev, sc, "", reason, nil, typesv1.JobState_JOB_STATE_FAILED))
	}

	var in provider.Installation
	found := false
	if ev.Delivered > 1 {
		// A previous delivery may have started it before it could say so.
		prev, err := a.finds.Do(ctx, findKey{target: t, runID: run}, inst)
		if err != nil {
			if retry := stage.Retry(ctx, err); retry != nil {
				return fmt.Errorf("look for an installation of %s: %w", inst, retry)
			}
			return a.finishStart(ctx, key, a.failed(ev, sc, "", fmt.Sprintf("look for an installation: %v", err), nil, typesv1.JobState_JOB_STATE_FAILED))
		}
		in, found = prev.in, prev.found
	}
	timeout := a.timeout(sc.GetPolicy())
	if !found {
		res, err := a.installs.Do(ctx, t, provider.InstallRequest{
			Tenant: ev.Tenant, RunID: run, InstanceID: inst, BaselineID: sc.GetBaselineId(), PatchIDs: sc.GetPatchIds(),
			RebootPolicy: stage.RebootPolicy(sc.GetPolicy().GetRebootPolicy()), Timeout: timeout,
		})
		if err == nil {
			err = res.Err
		}
		if err != nil {
			if retry := stage.Retry(ctx, err); retry != nil {
				return fmt.Errorf("install on %s: %w", inst, retry)
			}
			return a.finishStart(ctx, key, a.failed(ev, sc, "", fmt.Sprintf("start installation: %v", err), nil, typesv1.JobState_JOB_STATE_FAILED))
		}
		in = res.Installation
	}
	started := in.StartedAt
	if started.IsZero() {
		started = a.now()
	}
	out := stage.Next(ev, run+"/"+inst, &eventsv1.InstallStarted{
		Tenant: ev.Tenant, RunId: run, Wave: sc.GetWave(), InstanceId: inst, SnapshotId: sc.GetSnapshotId(),
		InstallationId: in.ID, Location: sc.GetLocation(), Policy: sc.GetPolicy(), CommandId: in.CommandID,
		StartedAt: stage.Timestamp(started), Deadline: stage.Timestamp(started.Add(timeout)),
		BaselineId: sc.GetBaselineId(), PatchIds: sc.GetPatchIds(),
	}, a.now())
	return a.finishStart(ctx, key, out)
}

// timeout is the job's per-instance timeout: its policy's, else the configured default.
func (a *Installer) timeout(p *typesv1.JobPolicy) time.Duration {
	if d := p.GetInstanceTimeout().AsDuration(); p.GetInstanceTimeout() != nil && d > 0 {
		return d
	}
	return a.cfg.InstallTimeout
}

func (a *Installer) finishStart(ctx context.Context, key string, out *events.Event) error {
	if err := a.publishBatched(ctx, out); err != nil {
		return fmt.Errorf("publish %s: %w", out.ID, err)
	}
	return a.d.Started.Mark(ctx, key)
}

// job is what the events of one job name.
type job interface {
	GetRunId() string
	GetWave() int32
	GetInstanceId() string
	GetSnapshotId() string
	GetLocation() *typesv1.Location
	GetPolicy() *typesv1.JobPolicy
}

func (a *Installer) failed(in *events.Event, j job, installationID, reason string, results []*typesv1.PatchResult, state typesv1.JobState) *events.Event {
	return stage.Next(in, j.GetRunId()+"/"+j.GetInstanceId(), &eventsv1.InstallFailed{
		Tenant: in.Tenant, RunId: j.GetRunId(), Wave: j.GetWave(), InstanceId: j.GetInstanceId(), SnapshotId: j.GetSnapshotId(),
		InstallationId: installationID, Reason: reason, Results: results, Location: j.GetLocation(), Policy: j.GetPolicy(),
		JobState: state,
	}, a.now())
}

// FailJobOnDeadLetter publishes the InstallFailed of a job whose SnapshotCreated is about to be
// dead-lettered, so its run does not wait for it forever.
func (a *Installer) FailJobOnDeadLetter(ctx context.Context, ev *events.Event, sc *eventsv1.SnapshotCreated, reason string) error {
	if stage.ValidateJob(ev.Tenant, sc.GetTenant(), sc.GetRunId(), sc.GetInstanceId()) != nil {
		return nil //nolint:nilerr // an invalid job names no run: nothing waits for its outcome
	}
	if done, err := a.d.Started.Done(ctx, stage.Key(ev.Tenant, sc.GetRunId(), sc.GetInstanceId())); err != nil || done {
		return err
	}
	return a.publishAll(ctx, []*events.Event{a.failed(ev, sc, "", reason, nil, typesv1.JobState_JOB_STATE_FAILED)})
}
