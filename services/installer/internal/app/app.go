// Package app installs patch sets: it turns each SnapshotCreated into at most one provider
// installation and exactly one InstallSucceeded or InstallFailed, and never installs on an
// instance whose pre-patch snapshot for the run is not complete.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/installer/internal/domain"
)

// Marks records the business keys of finished jobs (libs/idem).
type Marks interface {
	Done(ctx context.Context, key string) (bool, error)
	Mark(ctx context.Context, key string) error
}

// Publisher stores events in the stream (libs/bus).
type Publisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// Config tunes the installer; the service's public Config has set the defaults.
type Config struct {
	// InstallTimeout bounds one installation, counted from its start.
	InstallTimeout time.Duration
	// PollInterval is the pause between two reads of a running installation.
	PollInterval time.Duration
	// RebootPolicy is passed to every installation.
	RebootPolicy provider.RebootPolicy
}

// Installer handles snapshot-created events.
type Installer struct {
	cfg   Config
	fleet provider.Fleet
	marks Marks
	pub   Publisher
	log   *slog.Logger
	now   func() time.Time
}

// New returns an Installer. All arguments are required.
func New(cfg Config, fleet provider.Fleet, marks Marks, pub Publisher, log *slog.Logger, now func() time.Time) *Installer {
	return &Installer{cfg: cfg, fleet: fleet, marks: marks, pub: pub, log: log, now: now}
}

// InstallOnSnapshotCreated installs the job's patch set once per run and publishes the outcome.
// It first checks, at the provider, that the run's snapshot of the instance exists, is
// completed and is the one the event names; if not, it publishes InstallFailed with the refusal
// and installs nothing. A job already finished is acknowledged without a provider call; the
// provider's idempotency per (tenant, run, instance) covers a crash between the install and the
// publish. Retryable provider errors are returned so the bus redelivers the event.
func (a *Installer) InstallOnSnapshotCreated(ctx context.Context, ev *events.Event, sc *eventsv1.SnapshotCreated) error {
	if err := domain.ValidateJob(ev.Tenant, sc.GetTenant(), sc.GetRunId(), sc.GetInstanceId()); err != nil {
		return bus.Permanent(fmt.Errorf("snapshot created %s: %w", ev.ID, err))
	}
	key := domain.Key(sc.GetRunId(), sc.GetInstanceId())
	done, err := a.marks.Done(ctx, key)
	if err != nil {
		return err
	}
	if done {
		a.log.DebugContext(ctx, "job already installed", "tenant", ev.Tenant, "key", key, "event", ev.ID)
		return nil
	}
	out, err := a.install(ctx, ev.Tenant, sc)
	if err != nil {
		return err
	}
	if err := a.pub.Publish(ctx, out); err != nil {
		return fmt.Errorf("publish %s: %w", out.ID, err)
	}
	return a.marks.Mark(ctx, key)
}

// install checks the snapshot, installs, waits, and returns the outcome event, or an error
// when the event must be redelivered.
func (a *Installer) install(ctx context.Context, tenant string, sc *eventsv1.SnapshotCreated) (*events.Event, error) {
	run, inst := sc.GetRunId(), sc.GetInstanceId()
	snap, err := a.fleet.FindSnapshot(ctx, tenant, run, inst)
	if err != nil && domain.Retry(ctx, err) {
		return nil, fmt.Errorf("find snapshot of %s: %w", inst, err)
	}
	if reason := domain.CheckSnapshot(snap, err, sc.GetSnapshotId()); reason != "" {
		a.log.WarnContext(ctx, "install refused", "tenant", tenant, "run", run, "instance", inst, "reason", reason)
		return a.failed(tenant, sc, "", reason, nil)
	}
	in, err := a.fleet.Install(ctx, provider.InstallRequest{
		Tenant:       tenant,
		RunID:        run,
		InstanceID:   inst,
		BaselineID:   sc.GetBaselineId(),
		PatchIDs:     sc.GetPatchIds(),
		RebootPolicy: a.cfg.RebootPolicy,
	})
	if err != nil {
		if domain.Retry(ctx, err) {
			return nil, fmt.Errorf("install on %s: %w", inst, err)
		}
		return a.failed(tenant, sc, "", fmt.Sprintf("install: %v", err), nil)
	}
	// The installation exists at the provider: say so before the long wait. A redelivery
	// publishes the same event id again, which the stream drops.
	started, err := events.New(tenant, domain.Key(run, inst), &eventsv1.InstallStarted{
		Tenant: tenant, RunId: run, Wave: sc.GetWave(), InstanceId: inst,
		SnapshotId: sc.GetSnapshotId(), InstallationId: in.ID,
	})
	if err != nil {
		return nil, err
	}
	if err := a.pub.Publish(ctx, started); err != nil {
		return nil, fmt.Errorf("publish %s: %w", started.ID, err)
	}
	if !in.State.Terminal() {
		in, err = a.wait(ctx, tenant, in)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return a.failed(tenant, sc, in.ID, fmt.Sprintf("installation %s did not finish within %s", in.ID, a.cfg.InstallTimeout), nil)
		case err != nil && domain.Retry(ctx, err):
			return nil, err
		case err != nil:
			return a.failed(tenant, sc, in.ID, fmt.Sprintf("wait for installation: %v", err), nil)
		}
	}
	results, rebootPending := domain.Results(in.Results)
	if in.State != provider.InstallSucceeded {
		return a.failed(tenant, sc, in.ID, domain.FailureReason(in), results)
	}
	return events.New(tenant, domain.Key(run, inst), &eventsv1.InstallSucceeded{
		Tenant:         tenant,
		RunId:          run,
		Wave:           sc.GetWave(),
		InstanceId:     inst,
		SnapshotId:     sc.GetSnapshotId(),
		InstallationId: in.ID,
		RebootPending:  rebootPending || in.RebootPending,
		Results:        results,
	})
}

// wait polls a running installation until it is terminal or InstallTimeout after its start,
// so that a redelivered job does not wait a full timeout again. On timeout it returns the last
// installation seen and an error wrapping context.DeadlineExceeded.
func (a *Installer) wait(ctx context.Context, tenant string, in provider.Installation) (provider.Installation, error) {
	left := a.cfg.InstallTimeout
	if !in.StartedAt.IsZero() {
		left = min(left, in.StartedAt.Add(a.cfg.InstallTimeout).Sub(a.now()))
	}
	if left <= 0 {
		return in, fmt.Errorf("wait installation %s: %w", in.ID, context.DeadlineExceeded)
	}
	wctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	last, err := provider.WaitInstallation(wctx, a.fleet, tenant, in.ID, a.cfg.PollInterval)
	if last.ID == "" {
		last = in
	}
	return last, err
}

func (a *Installer) failed(tenant string, sc *eventsv1.SnapshotCreated, installationID, reason string, results []*typesv1.PatchResult) (*events.Event, error) {
	return events.New(tenant, domain.Key(sc.GetRunId(), sc.GetInstanceId()), &eventsv1.InstallFailed{
		Tenant:         tenant,
		RunId:          sc.GetRunId(),
		Wave:           sc.GetWave(),
		InstanceId:     sc.GetInstanceId(),
		SnapshotId:     sc.GetSnapshotId(),
		InstallationId: installationID,
		Reason:         reason,
		Results:        results,
	})
}
