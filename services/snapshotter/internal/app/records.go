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

	"github.com/patchwave/patchwave/services/snapshotter/internal/adapters"
	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

// ProjectionRecords names the records projection and its checkpoint.
const ProjectionRecords = "records"

// RecordSubjects are the events the records projection reads: the snapshotter's own snapshot
// and restore events and the installer's outcomes.
func RecordSubjects() []string {
	return []string{
		events.Pattern[*eventsv1.SnapshotStarted](),
		events.Pattern[*eventsv1.SnapshotCreated](),
		events.Pattern[*eventsv1.SnapshotFailed](),
		events.Pattern[*eventsv1.SnapshotDeleted](),
		events.Pattern[*eventsv1.InstallSucceeded](),
		events.Pattern[*eventsv1.InstallFailed](),
		events.Pattern[*eventsv1.RestoreRequested](),
		events.Pattern[*eventsv1.RestoreStarted](),
		events.Pattern[*eventsv1.RestoreCompleted](),
		events.Pattern[*eventsv1.RestoreFailed](),
	}
}

// ApplyRecord is the records projection: the record of every job's snapshot set with its
// retention state, and every restore. Times come from the events, so a replay computes the
// same due dates.
func (a *Application) ApplyRecord(ctx context.Context, ev *events.Event, _ bool) error {
	var err error
	at := ev.Time
	if at.IsZero() {
		at = a.now()
	}
	ret := domain.Retention{Keep: a.cfg.Retention}
	switch m := ev.Data.(type) {
	case *eventsv1.SnapshotStarted:
		err = a.updateRecord(ctx, ev.Tenant, m.GetRunId(), m.GetInstanceId(), func(s domain.Snapshot, found bool) (domain.Snapshot, bool) {
			if found {
				return s, false
			}
			s.SetID, s.State, s.StartedAt = m.GetSnapshotId(), domain.SnapshotStarted, m.GetStartedAt().AsTime()
			s.Account, s.Region = m.GetLocation().GetAccount(), m.GetLocation().GetRegion()
			return s, true
		})
	case *eventsv1.SnapshotCreated:
		err = a.updateRecord(ctx, ev.Tenant, m.GetRunId(), m.GetInstanceId(), func(s domain.Snapshot, found bool) (domain.Snapshot, bool) {
			if s.State == domain.SnapshotDeleted {
				return s, false
			}
			if !found {
				s.StartedAt = m.GetCreatedAt().AsTime()
			}
			s.SetID, s.State = m.GetSnapshotId(), domain.SnapshotCompleted
			s.Account, s.Region = m.GetLocation().GetAccount(), m.GetLocation().GetRegion()
			return s, true
		})
	case *eventsv1.SnapshotFailed:
		err = a.updateRecord(ctx, ev.Tenant, m.GetRunId(), m.GetInstanceId(), func(s domain.Snapshot, found bool) (domain.Snapshot, bool) {
			if !found || s.State == domain.SnapshotDeleted {
				return s, false // nothing was created, so nothing to keep or delete
			}
			return ret.OnSnapshotFailed(s, m.GetReason(), at), true
		})
	case *eventsv1.SnapshotDeleted:
		err = a.updateRecord(ctx, ev.Tenant, m.GetRunId(), m.GetInstanceId(), func(s domain.Snapshot, found bool) (domain.Snapshot, bool) {
			s.State = domain.SnapshotDeleted
			return s, found
		})
	case *eventsv1.InstallSucceeded:
		err = a.applySuccess(ctx, ev.Tenant, m.GetRunId(), m.GetInstanceId(), at, ret)
	case *eventsv1.InstallFailed:
		err = a.updateRecord(ctx, ev.Tenant, m.GetRunId(), m.GetInstanceId(), func(s domain.Snapshot, found bool) (domain.Snapshot, bool) {
			return ret.OnOutcome(s, domain.OutcomeFailed, at), found
		})
	case *eventsv1.RestoreRequested:
		err = a.applyRestoreRequested(ctx, ev.Tenant, m, at, ret)
	case *eventsv1.RestoreStarted:
		err = a.updateRestore(ctx, ev.Tenant, m.GetRestoreId(), domain.RestoreInProgress, func(r *domain.Restore) {
			r.ProviderID, r.StartedAt = m.GetProviderRestoreId(), m.GetStartedAt().AsTime()
		})
	case *eventsv1.RestoreCompleted:
		err = a.updateRestore(ctx, ev.Tenant, m.GetRestoreId(), domain.RestoreSucceeded, func(r *domain.Restore) {
			r.FinishedAt = m.GetCompletedAt().AsTime()
		})
	case *eventsv1.RestoreFailed:
		err = a.updateRestore(ctx, ev.Tenant, m.GetRestoreId(), domain.RestoreFailed, func(r *domain.Restore) {
			r.FinishedAt, r.Error = m.GetFailedAt().AsTime(), m.GetReason()
		})
	default:
		return bus.Permanent(fmt.Errorf("records projection: unexpected event type %s", ev.Type))
	}
	if err != nil {
		return err
	}
	return a.d.Repo.SetCheckpoint(ctx, ProjectionRecords, ev.Sequence)
}

// updateRecord reads a job's record, lets fn change it, and writes it when fn says so.
func (a *Application) updateRecord(ctx context.Context, tenant, runID, instanceID string, fn func(s domain.Snapshot, found bool) (domain.Snapshot, bool)) error {
	if runID == "" || instanceID == "" {
		return nil
	}
	s, found, err := a.d.Repo.Snapshot(ctx, tenant, runID, instanceID)
	if err != nil {
		return err
	}
	if !found {
		s = domain.Snapshot{Tenant: tenant, RunID: runID, InstanceID: instanceID}
	}
	s, write := fn(s, found)
	if !write {
		return nil
	}
	return a.d.Repo.PutSnapshot(ctx, s)
}

// applySuccess schedules the run's set Keep after the success, and releases the sets of earlier
// runs that the instance was failed or restored on.
func (a *Application) applySuccess(ctx context.Context, tenant, runID, instanceID string, at time.Time, ret domain.Retention) error {
	this, found, err := a.d.Repo.Snapshot(ctx, tenant, runID, instanceID)
	if err != nil || !found {
		return err
	}
	if err := a.d.Repo.PutSnapshot(ctx, ret.OnOutcome(this, domain.OutcomeSucceeded, at)); err != nil {
		return err
	}
	all, err := a.d.Repo.InstanceSnapshots(ctx, tenant, instanceID)
	if err != nil {
		return err
	}
	for _, s := range all {
		if s.RunID == runID {
			continue
		}
		if s, changed := ret.OnLaterSuccess(s, this.StartedAt, at); changed {
			if err := a.d.Repo.PutSnapshot(ctx, s); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Application) applyRestoreRequested(ctx context.Context, tenant string, m *eventsv1.RestoreRequested, at time.Time, ret domain.Retention) error {
	if err := a.updateRecord(ctx, tenant, m.GetRunId(), m.GetInstanceId(), func(s domain.Snapshot, found bool) (domain.Snapshot, bool) {
		return ret.OnOutcome(s, domain.OutcomeRestored, at), found
	}); err != nil {
		return err
	}
	_, found, err := a.d.Repo.Restore(ctx, tenant, m.GetRestoreId())
	if err != nil || found {
		return err
	}
	return a.d.Repo.PutRestore(ctx, restoreOf(tenant, m))
}

func restoreOf(tenant string, m *eventsv1.RestoreRequested) domain.Restore {
	return domain.Restore{
		Tenant: tenant, ID: m.GetRestoreId(), InstanceID: m.GetInstanceId(), RunID: m.GetRunId(),
		SetID: m.GetSnapshotId(), Account: m.GetLocation().GetAccount(), Region: m.GetLocation().GetRegion(),
		State: domain.RestoreRequested, Actor: m.GetActor(), Reason: m.GetReason(), RequestedAt: m.GetRequestedAt().AsTime(),
	}
}

// updateRestore moves a restore on; an event about a restore the model has not seen requested
// (not possible in stream order) is skipped.
func (a *Application) updateRestore(ctx context.Context, tenant, id string, next domain.RestoreState, fill func(*domain.Restore)) error {
	r, found, err := a.d.Repo.Restore(ctx, tenant, id)
	if err != nil || !found {
		return err
	}
	r, moved := r.Advance(next)
	if !moved {
		return nil
	}
	fill(&r)
	return a.d.Repo.PutRestore(ctx, r)
}

// Sweep deletes the snapshot sets retention has made due by now, at most DeleteBatch of them,
// with a SnapshotDeleted for each. Its cost is what is due: it reads the retention buckets from
// the first one not swept yet up to the current hour, never every snapshot. It returns how many
// sets it deleted.
func (a *Application) Sweep(ctx context.Context) (int, error) {
	select {
	case <-a.ready:
	default:
		return 0, nil // the records are still being rebuilt
	}
	now := a.now()
	nowHour := adapters.HourOf(now)
	cursor, ok, err := a.d.Repo.Cursor(ctx)
	if err != nil || !ok {
		return 0, err
	}
	deleted := 0
	next := cursor
	for h := cursor; h <= nowHour; h++ {
		keys, recs, err := a.d.Repo.Due(ctx, h)
		if err != nil {
			return deleted, err
		}
		var drop []string
		left := 0
		for _, k := range keys {
			s, ok := recs[k]
			switch {
			case !ok || s.State == domain.SnapshotDeleted || s.DueAt.IsZero() || s.Outcome.Held() || adapters.HourOf(s.DueAt) != h:
				// Deleted, kept (held), or due at another time: another bucket has it, or it is
				// scheduled again when it is released.
				drop = append(drop, k)
			case s.Due(now) && deleted < a.cfg.DeleteBatch:
				if err := a.deleteSet(ctx, s, now); err != nil {
					a.log.WarnContext(ctx, "retention delete failed", "tenant", s.Tenant, "snapshot_id", s.SetID, "error", err)
					left++
					continue
				}
				deleted++
				drop = append(drop, k)
			default:
				left++
			}
		}
		if err := a.d.Repo.Unschedule(ctx, h, drop...); err != nil {
			return deleted, err
		}
		if left == 0 && next == h && h < nowHour {
			next = h + 1
		}
	}
	if next != cursor {
		if err := a.d.Repo.SetCursor(ctx, next); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

func (a *Application) deleteSet(ctx context.Context, s domain.Snapshot, now time.Time) error {
	t := provider.Target{Tenant: s.Tenant, Account: s.Account, Region: s.Region}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("snapshot %s has no location: %w", s.SetID, err)
	}
	if err := a.d.Fleet.DeleteSnapshot(ctx, t, s.SetID); err != nil {
		return err
	}
	reason := fmt.Sprintf("retention: kept %s after the job %s", a.cfg.Retention, retentionCause(s))
	out := events.MustNew(s.Tenant, s.RunID+"/"+s.InstanceID, &eventsv1.SnapshotDeleted{
		Tenant: s.Tenant, RunId: s.RunID, InstanceId: s.InstanceID, SnapshotId: s.SetID,
		Location: &typesv1.Location{Account: s.Account, Region: s.Region}, Reason: reason, DeletedAt: stage.Timestamp(now),
	})
	out.Time = now
	if err := a.publishAll(ctx, []*events.Event{out}); err != nil {
		return err
	}
	s.State = domain.SnapshotDeleted
	return a.d.Repo.PutSnapshot(ctx, s)
}

func retentionCause(s domain.Snapshot) string {
	switch {
	case s.State == domain.SnapshotFailed:
		return "snapshot failed"
	case s.Outcome == domain.OutcomeSucceeded:
		return "succeeded (or a later run succeeded on the instance)"
	}
	return "ended"
}
