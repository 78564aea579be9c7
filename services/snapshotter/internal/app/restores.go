package app

import (
	"context"
	"fmt"
	"strconv"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

// RestoreInstance asks for a restore of an instance from the completed pre-patch snapshot of a
// run: it publishes RestoreRequested and returns the restore in state requested. With a request
// id a repeat returns the restore already asked for. It is refused with NotFound when the
// snapshotter knows no snapshot of that run for the instance, and with FailedPrecondition when
// the snapshot is not completed, was deleted, or another restore of the instance is running.
func (a *Application) RestoreInstance(ctx context.Context, cmd domain.RestoreCommand) (domain.Restore, error) {
	if err := cmd.Validate(); err != nil {
		return domain.Restore{}, err
	}
	pub, err := a.waitReady(ctx)
	if err != nil {
		return domain.Restore{}, err
	}
	var id string
	if cmd.RequestID != "" {
		id = domain.RestoreIDForRequest(cmd.Tenant, cmd.InstanceID, cmd.RequestID)
		if r, found, err := a.d.Repo.Restore(ctx, cmd.Tenant, id); err != nil || found {
			return r, err
		}
	} else if id, err = domain.NewRestoreID(a.d.Random); err != nil {
		return domain.Restore{}, err
	}
	snap, found, err := a.d.Repo.Snapshot(ctx, cmd.Tenant, cmd.RunID, cmd.InstanceID)
	if err != nil {
		return domain.Restore{}, err
	}
	if err := domain.CheckRestorable(snap, found, cmd.Tenant, cmd.RunID, cmd.InstanceID); err != nil {
		return domain.Restore{}, err
	}
	if err := a.refuseConcurrentRestore(ctx, cmd.Tenant, cmd.InstanceID, id); err != nil {
		return domain.Restore{}, err
	}
	r := domain.Restore{
		Tenant: cmd.Tenant, ID: id, InstanceID: cmd.InstanceID, RunID: cmd.RunID, SetID: snap.SetID,
		Account: snap.Account, Region: snap.Region, State: domain.RestoreRequested, Actor: cmd.Actor,
		Reason: cmd.Reason, RequestedAt: a.now().UTC(),
	}
	ev := restoreRequested(r)
	if err := pub.Publish(ctx, ev); err != nil {
		return domain.Restore{}, fmt.Errorf("%w: publish restore %s: %w", apierr.ErrUnavailable, id, err)
	}
	// The projection writes the same record; writing it now lets the caller read it at once.
	if err := a.d.Repo.PutRestore(ctx, r); err != nil {
		return domain.Restore{}, err
	}
	a.log.InfoContext(ctx, "restore requested", "tenant", r.Tenant, "restore_id", id, "instance", r.InstanceID,
		"run_id", r.RunID, "snapshot_id", r.SetID, "actor", r.Actor)
	return r, nil
}

func (a *Application) refuseConcurrentRestore(ctx context.Context, tenant, instanceID, id string) error {
	others, err := a.d.Repo.Restores(ctx, tenant, instanceID)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.ID != id && !o.State.Terminal() {
			return fmt.Errorf("%w: restore %s of instance %s is %s; wait until it ends", apierr.ErrFailedPrecondition, o.ID, instanceID, o.State)
		}
	}
	return nil
}

func restoreRequested(r domain.Restore) *events.Event {
	ev := events.MustNew(r.Tenant, r.ID, &eventsv1.RestoreRequested{
		Tenant: r.Tenant, RestoreId: r.ID, InstanceId: r.InstanceID, RunId: r.RunID, SnapshotId: r.SetID,
		Location: &typesv1.Location{Account: r.Account, Region: r.Region}, Actor: r.Actor, Reason: r.Reason,
		RequestedAt: stage.Timestamp(r.RequestedAt),
	})
	ev.Time = r.RequestedAt
	return ev
}

// GetRestore returns one restore.
func (a *Application) GetRestore(ctx context.Context, tenant, id string) (domain.Restore, error) {
	if err := domain.ValidateRestoreID(tenant, id); err != nil {
		return domain.Restore{}, err
	}
	if _, err := a.waitReady(ctx); err != nil {
		return domain.Restore{}, err
	}
	r, found, err := a.d.Repo.Restore(ctx, tenant, id)
	if err != nil {
		return domain.Restore{}, err
	}
	if !found {
		return domain.Restore{}, fmt.Errorf("%w: restore %s of tenant %s", apierr.ErrNotFound, id, tenant)
	}
	return r, nil
}

// ListRestores returns one page of a tenant's restores (of one instance when instanceID is
// set), newest first, and the token of the next page ("" on the last).
func (a *Application) ListRestores(ctx context.Context, tenant, instanceID string, pageSize int, pageToken string) ([]domain.Restore, string, error) {
	var v apierr.Violations
	if events.ValidateTenant(tenant) != nil {
		v.Add("tenant", fmt.Sprintf("must be 1-63 lower-case letters, digits or '-', got %q", tenant))
	}
	if pageSize < 0 || pageSize > 500 {
		v.Add("page_size", fmt.Sprintf("must be from 0 to 500, got %d", pageSize))
	}
	offset := 0
	if pageToken != "" {
		n, err := strconv.Atoi(pageToken)
		if err != nil || n < 0 {
			v.Add("page_token", "is not a token this API returned")
		}
		offset = n
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	if pageSize == 0 {
		pageSize = 100
	}
	if _, err := a.waitReady(ctx); err != nil {
		return nil, "", err
	}
	all, err := a.d.Repo.Restores(ctx, tenant, instanceID)
	if err != nil {
		return nil, "", err
	}
	if offset >= len(all) {
		return nil, "", nil
	}
	end := min(offset+pageSize, len(all))
	next := ""
	if end < len(all) {
		next = strconv.Itoa(end)
	}
	return all[offset:end], next, nil
}

// StartRestoreOnRestoreRequested starts the restore at the cloud (the root volume replaced
// from the set's root-volume snapshot, idempotent per restore id there) and publishes
// RestoreStarted, or RestoreFailed when the cloud refuses it; TrackRestores follows it.
func (a *Application) StartRestoreOnRestoreRequested(ctx context.Context, ev *events.Event, m *eventsv1.RestoreRequested) error {
	if err := stage.Token("restore_id", m.GetRestoreId()); err != nil {
		return bus.Permanent(fmt.Errorf("restore requested %s: %w", ev.ID, err))
	}
	key := ev.Tenant + "/" + m.GetRestoreId()
	if done, err := a.d.RestoresStarted.Done(ctx, key); err != nil || done {
		return err
	}
	t, err := stage.Target(ev.Tenant, m.GetLocation())
	if err != nil {
		return a.finishRestoreStart(ctx, key, a.restoreFailed(ev, m, fmt.Sprintf("the restore names no location: %v", err)))
	}
	r, err := a.d.Fleet.RestoreFromSnapshot(ctx, t, provider.RestoreRequest{
		Tenant: ev.Tenant, InstanceID: m.GetInstanceId(), SnapshotID: m.GetSnapshotId(), RestoreKey: m.GetRestoreId(),
	})
	if err != nil {
		if retry := stage.Retry(ctx, err); retry != nil {
			return fmt.Errorf("restore %s: %w", m.GetRestoreId(), retry)
		}
		return a.finishRestoreStart(ctx, key, a.restoreFailed(ev, m, fmt.Sprintf("start restore: %v", err)))
	}
	started := r.StartedAt
	if started.IsZero() {
		started = a.now()
	}
	out := stage.Next(ev, m.GetRestoreId(), &eventsv1.RestoreStarted{
		Tenant: ev.Tenant, RestoreId: m.GetRestoreId(), InstanceId: m.GetInstanceId(), RunId: m.GetRunId(),
		SnapshotId: m.GetSnapshotId(), Location: m.GetLocation(), ProviderRestoreId: r.ID, StartedAt: stage.Timestamp(started),
	}, a.now())
	return a.finishRestoreStart(ctx, key, out)
}

func (a *Application) finishRestoreStart(ctx context.Context, key string, out *events.Event) error {
	if err := a.publishBatched(ctx, out); err != nil {
		return fmt.Errorf("publish %s: %w", out.ID, err)
	}
	return a.d.RestoresStarted.Mark(ctx, key)
}

// FailRestoreOnDeadLetter publishes the RestoreFailed of a restore whose event is about to be
// dead-lettered.
func (a *Application) FailRestoreOnDeadLetter(ctx context.Context, ev *events.Event, m *eventsv1.RestoreRequested, reason string) error {
	if m.GetRestoreId() == "" {
		return nil
	}
	if done, err := a.d.RestoresStarted.Done(ctx, ev.Tenant+"/"+m.GetRestoreId()); err != nil || done {
		return err
	}
	return a.publishAll(ctx, []*events.Event{a.restoreFailed(ev, m, reason)})
}

// restoreRef is what every restore event names.
type restoreRef interface {
	GetRestoreId() string
	GetInstanceId() string
	GetRunId() string
	GetSnapshotId() string
	GetLocation() *typesv1.Location
}

func (a *Application) restoreFailed(in *events.Event, m restoreRef, reason string) *events.Event {
	now := a.now()
	return stage.Next(in, m.GetRestoreId(), &eventsv1.RestoreFailed{
		Tenant: in.Tenant, RestoreId: m.GetRestoreId(), InstanceId: m.GetInstanceId(), RunId: m.GetRunId(),
		SnapshotId: m.GetSnapshotId(), Location: m.GetLocation(), Reason: reason, FailedAt: stage.Timestamp(now),
	}, a.now())
}

// TrackRestores follows the held restores with one GetRestores call per target and publishes
// RestoreCompleted or RestoreFailed (also when a restore outlives the restore timeout).
func (a *Application) TrackRestores(ctx context.Context, held []stage.Tracked[*eventsv1.RestoreStarted]) error {
	type item = stage.Tracked[*eventsv1.RestoreStarted]
	key := func(h item) string { return h.Event.Tenant + "/" + h.Msg.GetRestoreId() }
	live, err := stage.Unfinished(ctx, held, a.d.RestoresFinished, key)
	if err != nil {
		return err
	}
	var outs stage.Outcomes
	invalid := func(h item, err error) {
		outs.Add(h.Held, key(h), a.restoreFailed(h.Event, h.Msg, fmt.Sprintf("the restore names no location: %v", err)))
	}
	stage.EachTarget(ctx, a.cfg.CheckConcurrency, live, invalid, func(ctx context.Context, t provider.Target, items []item) {
		ids := make([]string, len(items))
		for i, h := range items {
			ids[i] = h.Msg.GetProviderRestoreId()
		}
		got, err := a.d.Fleet.GetRestores(ctx, t, ids)
		if err != nil {
			a.log.WarnContext(ctx, "restore check failed", "target", t.String(), "restores", len(items), "error", err)
		}
		for _, h := range items {
			deadline := h.Msg.GetStartedAt().AsTime().Add(a.cfg.RestoreTimeout)
			r, ok := got[h.Msg.GetProviderRestoreId()]
			switch {
			case err != nil || (ok && !r.State.Terminal()):
				if !a.now().Before(deadline) {
					outs.Add(h.Held, key(h), a.restoreFailed(h.Event, h.Msg, fmt.Sprintf("restore %s not completed within %s of its start", h.Msg.GetRestoreId(), a.cfg.RestoreTimeout)))
				}
			case !ok:
				outs.Add(h.Held, key(h), a.restoreFailed(h.Event, h.Msg, fmt.Sprintf("the provider no longer knows restore %s", h.Msg.GetProviderRestoreId())))
			case r.State == provider.RestoreSucceeded:
				outs.Add(h.Held, key(h), stage.Next(h.Event, h.Msg.GetRestoreId(), &eventsv1.RestoreCompleted{
					Tenant: h.Event.Tenant, RestoreId: h.Msg.GetRestoreId(), InstanceId: h.Msg.GetInstanceId(), RunId: h.Msg.GetRunId(),
					SnapshotId: h.Msg.GetSnapshotId(), Location: h.Msg.GetLocation(), CompletedAt: stage.Timestamp(a.now()),
				}, a.now()))
			default:
				outs.Add(h.Held, key(h), a.restoreFailed(h.Event, h.Msg, fmt.Sprintf("the provider failed the restore: %s", r.Error)))
			}
		}
	})
	pub, _, err := a.publisher()
	if err != nil {
		return err
	}
	return outs.Settle(ctx, pub, a.d.RestoresFinished)
}

// FailTrackedRestoreOnDeadLetter publishes the RestoreFailed of a held restore whose event is
// about to be dead-lettered.
func (a *Application) FailTrackedRestoreOnDeadLetter(ctx context.Context, ev *events.Event, m *eventsv1.RestoreStarted, reason string) error {
	if done, err := a.d.RestoresFinished.Done(ctx, ev.Tenant+"/"+m.GetRestoreId()); err != nil || done {
		return err
	}
	return a.publishAll(ctx, []*events.Event{a.restoreFailed(ev, m, reason)})
}

// RestoreOnInstallFailed is auto-rollback: when a job whose policy asks for it failed its
// installation (FAILED or TIMED_OUT, after an installation was started), it asks for a restore
// of the instance from the job's pre-patch snapshot, with actor "auto-rollback". One restore per
// run and instance, however often the failure is delivered.
func (a *Application) RestoreOnInstallFailed(ctx context.Context, ev *events.Event, m *eventsv1.InstallFailed) error {
	if !m.GetPolicy().GetAutoRollback() || m.GetInstallationId() == "" || m.GetSnapshotId() == "" {
		return nil // no policy, or nothing was installed (a refusal): nothing to roll back
	}
	if err := stage.ValidateJob(ev.Tenant, m.GetTenant(), m.GetRunId(), m.GetInstanceId()); err != nil {
		return bus.Permanent(fmt.Errorf("install failed %s: %w", ev.ID, err))
	}
	id := domain.RestoreIDForAutoRollback(ev.Tenant, m.GetRunId(), m.GetInstanceId())
	if _, found, err := a.d.Repo.Restore(ctx, ev.Tenant, id); err != nil || found {
		return err
	}
	r := domain.Restore{
		Tenant: ev.Tenant, ID: id, InstanceID: m.GetInstanceId(), RunID: m.GetRunId(), SetID: m.GetSnapshotId(),
		Account: m.GetLocation().GetAccount(), Region: m.GetLocation().GetRegion(), State: domain.RestoreRequested,
		Actor: domain.ActorAutoRollback, Reason: "auto-rollback after a failed installation: " + m.GetReason(),
		RequestedAt: a.now().UTC(),
	}
	if len(r.Reason) > domain.MaxReasonLen {
		r.Reason = r.Reason[:domain.MaxReasonLen]
	}
	if err := a.publishBatched(ctx, stage.Follow(restoreRequested(r), ev)); err != nil {
		return fmt.Errorf("publish auto-rollback of %s: %w", m.GetInstanceId(), err)
	}
	return nil
}
