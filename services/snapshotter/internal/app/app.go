// Package app takes pre-patch snapshots: it turns each JobRequested into exactly one provider
// snapshot and exactly one SnapshotCreated or SnapshotFailed.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
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

// Config tunes the snapshotter; the service's public Config has set the defaults.
type Config struct {
	// SnapshotTimeout bounds how long a snapshot may stay pending, counted from its creation.
	SnapshotTimeout time.Duration
	// PollInterval is the pause between two reads of a pending snapshot.
	PollInterval time.Duration
}

// Snapshotter handles job requests.
type Snapshotter struct {
	cfg   Config
	fleet provider.Fleet
	marks Marks
	pub   Publisher
	log   *slog.Logger
	now   func() time.Time
}

// New returns a Snapshotter. All arguments are required.
func New(cfg Config, fleet provider.Fleet, marks Marks, pub Publisher, log *slog.Logger, now func() time.Time) *Snapshotter {
	return &Snapshotter{cfg: cfg, fleet: fleet, marks: marks, pub: pub, log: log, now: now}
}

// TakeSnapshotOnJobRequested snapshots the job's instance once per run and publishes the
// outcome. A job already finished (its outcome is in the stream) is acknowledged without a
// provider call; the provider's own idempotency per (tenant, run, instance) covers a crash
// between the snapshot and the publish. Retryable provider errors are returned so the bus
// redelivers the event after a backoff; a malformed request is dead-lettered.
func (s *Snapshotter) TakeSnapshotOnJobRequested(ctx context.Context, ev *events.Event, job *eventsv1.JobRequested) error {
	if err := domain.ValidateJob(ev.Tenant, job.GetTenant(), job.GetRunId(), job.GetInstanceId()); err != nil {
		return bus.Permanent(fmt.Errorf("job requested %s: %w", ev.ID, err))
	}
	key := domain.Key(job.GetRunId(), job.GetInstanceId())
	done, err := s.marks.Done(ctx, key)
	if err != nil {
		return err
	}
	if done {
		s.log.DebugContext(ctx, "job already snapshotted", "tenant", ev.Tenant, "key", key, "event", ev.ID)
		return nil
	}
	out, err := s.snapshot(ctx, ev.Tenant, job)
	if err != nil {
		return err
	}
	if err := s.pub.Publish(ctx, out); err != nil {
		return fmt.Errorf("publish %s: %w", out.ID, err)
	}
	return s.marks.Mark(ctx, key)
}

// snapshot creates the snapshot, waits for it and returns the outcome event, or an error when
// the event must be redelivered.
func (s *Snapshotter) snapshot(ctx context.Context, tenant string, job *eventsv1.JobRequested) (*events.Event, error) {
	run, inst := job.GetRunId(), job.GetInstanceId()
	snap, err := s.fleet.CreateSnapshot(ctx, provider.SnapshotRequest{
		Tenant: tenant, RunID: run, InstanceID: inst, Tags: domain.Tags(tenant, run, inst),
	})
	if err != nil {
		if domain.Retry(ctx, err) {
			return nil, fmt.Errorf("create snapshot of %s: %w", inst, err)
		}
		reason := fmt.Sprintf("create snapshot: %v", err)
		if errors.Is(err, provider.ErrInstanceNotRunning) {
			reason = fmt.Sprintf("instance %s is not running: %v", inst, err)
		}
		return s.failed(tenant, job, reason)
	}
	if !snap.State.Terminal() {
		snap, err = s.wait(ctx, tenant, snap)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return s.failed(tenant, job, fmt.Sprintf("snapshot %s not completed within %s (state %s)", snap.ID, s.cfg.SnapshotTimeout, snap.State))
		case err != nil && domain.Retry(ctx, err):
			return nil, err
		case err != nil:
			return s.failed(tenant, job, fmt.Sprintf("wait for snapshot: %v", err))
		}
	}
	if snap.State != provider.SnapshotCompleted {
		return s.failed(tenant, job, fmt.Sprintf("snapshot %s failed: %s", snap.ID, snap.Error))
	}
	var created *timestamppb.Timestamp
	if !snap.CreatedAt.IsZero() {
		created = timestamppb.New(snap.CreatedAt)
	}
	return events.New(tenant, domain.Key(run, inst), &eventsv1.SnapshotCreated{
		Tenant:     tenant,
		RunId:      run,
		Wave:       job.GetWave(),
		InstanceId: inst,
		SnapshotId: snap.ID,
		BaselineId: job.GetBaselineId(),
		PatchIds:   job.GetPatchIds(),
		CreatedAt:  created,
	})
}

// wait polls a pending snapshot until it is terminal or SnapshotTimeout after its creation, so
// that a redelivered job does not wait a full timeout again. On timeout it returns the last
// snapshot seen and an error wrapping context.DeadlineExceeded.
func (s *Snapshotter) wait(ctx context.Context, tenant string, snap provider.Snapshot) (provider.Snapshot, error) {
	left := s.cfg.SnapshotTimeout
	if !snap.CreatedAt.IsZero() {
		left = min(left, snap.CreatedAt.Add(s.cfg.SnapshotTimeout).Sub(s.now()))
	}
	if left <= 0 {
		return snap, fmt.Errorf("wait snapshot %s: %w", snap.ID, context.DeadlineExceeded)
	}
	wctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	last, err := provider.WaitSnapshot(wctx, s.fleet, tenant, snap.ID, s.cfg.PollInterval)
	if last.ID == "" {
		last = snap
	}
	return last, err
}

func (s *Snapshotter) failed(tenant string, job *eventsv1.JobRequested, reason string) (*events.Event, error) {
	return events.New(tenant, domain.Key(job.GetRunId(), job.GetInstanceId()), &eventsv1.SnapshotFailed{
		Tenant:     tenant,
		RunId:      job.GetRunId(),
		Wave:       job.GetWave(),
		InstanceId: job.GetInstanceId(),
		Reason:     reason,
	})
}
