package simfleet

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/patchwave/patchwave/libs/provider"
)

// Messages of simulated failures.
const (
	installFailureMessage  = "exit status 1: package conflict"
	snapshotFailureMessage = "internal error: snapshot of volume %s failed"
)

// enter starts every provider.Fleet method, holding f.mu: it honours a cancelled ctx, fires an
// injected fault, and settles what is due.
func (f *Fleet) enter(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if q := f.faults[op]; len(q) > 0 {
		err := q[0]
		if len(q) == 1 {
			delete(f.faults, op)
		} else {
			f.faults[op] = q[1:]
		}
		return err
	}
	f.settle()
	return nil
}

// instance finds a tenant's instance; the error wraps provider.ErrNotFound.
func (f *Fleet) instance(tenant, id string) (*instanceRec, error) {
	in := f.st.Instances[instKey(tenant, id)]
	if in == nil {
		return nil, fmt.Errorf("instance %s of tenant %s: %w", id, tenant, provider.ErrNotFound)
	}
	return in, nil
}

// DiscoverInstances lists the tenant's instances matching the query, sorted by ID.
func (f *Fleet) DiscoverInstances(ctx context.Context, q provider.DiscoverQuery) ([]provider.Instance, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("discover instances: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpDiscoverInstances); err != nil {
		return nil, fmt.Errorf("discover instances: %w", err)
	}
	out := []provider.Instance{}
	for _, r := range f.st.Instances {
		in := r.Instance
		if in.Tenant != q.Tenant || in.State == provider.InstanceTerminated {
			continue
		}
		if in.State != provider.InstanceRunning && !q.IncludeStopped {
			continue
		}
		if q.TagKey != "" {
			v, ok := in.Tags[q.TagKey]
			if !ok || (q.TagValue != "" && v != q.TagValue) {
				continue
			}
		}
		out = append(out, cloneInstance(in))
	}
	slices.SortFunc(out, func(a, b provider.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// CreateSnapshot snapshots all volumes of the instance, or returns the snapshot already taken
// for (Tenant, RunID, InstanceID). Stopped instances can be snapshotted; terminated ones
// cannot (provider.ErrInstanceNotRunning).
func (f *Fleet) CreateSnapshot(ctx context.Context, req provider.SnapshotRequest) (provider.Snapshot, error) {
	if err := req.Validate(); err != nil {
		return provider.Snapshot{}, fmt.Errorf("create snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpCreateSnapshot); err != nil {
		return provider.Snapshot{}, fmt.Errorf("create snapshot: %w", err)
	}
	key := bizKey{req.Tenant, req.RunID, req.InstanceID}
	if id, ok := f.snapByKey[key]; ok {
		return f.st.Snapshots[id].view(), nil
	}
	in, err := f.instance(req.Tenant, req.InstanceID)
	if err != nil {
		return provider.Snapshot{}, fmt.Errorf("create snapshot: %w", err)
	}
	if in.Instance.State == provider.InstanceTerminated {
		return provider.Snapshot{}, fmt.Errorf("create snapshot: instance %s is terminated: %w", req.InstanceID, provider.ErrInstanceNotRunning)
	}
	now := f.now()
	id, seq := f.nextID("snapset")
	snap := provider.Snapshot{
		ID:         id,
		Tenant:     req.Tenant,
		RunID:      req.RunID,
		InstanceID: req.InstanceID,
		State:      provider.SnapshotCompleted,
		Tags:       maps.Clone(req.Tags),
		CreatedAt:  now,
	}
	for range in.Instance.VolumeIDs {
		volSnap, _ := f.nextID("snap")
		snap.VolumeSnapshotIDs = append(snap.VolumeSnapshotIDs, volSnap)
	}
	if f.roll("snapshot", req.Tenant, req.RunID, req.InstanceID) < f.cfg.SnapshotFailureRate {
		snap.State = provider.SnapshotError
		vol := "(none)"
		if n := len(in.Instance.VolumeIDs); n > 0 {
			vol = in.Instance.VolumeIDs[f.pick(n, "snapshot", req.Tenant, req.RunID, req.InstanceID)]
		}
		snap.Error = fmt.Sprintf(snapshotFailureMessage, vol)
	}
	f.st.Snapshots[id] = &snapshotRec{Final: snap, Patches: in.installed(), DueAt: now.Add(f.cfg.Latency), Seq: seq}
	f.snapByKey[key] = id
	f.pending = append(f.pending, pendingRef{pendingSnapshot, id, now.Add(f.cfg.Latency), seq})
	f.st.Stats.SnapshotsCreated++
	f.settle()
	if err := f.save(); err != nil {
		return provider.Snapshot{}, fmt.Errorf("create snapshot: %w", err)
	}
	return f.st.Snapshots[id].view(), nil
}

// GetSnapshot reads a snapshot by id.
func (f *Fleet) GetSnapshot(ctx context.Context, tenant, snapshotID string) (provider.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpGetSnapshot); err != nil {
		return provider.Snapshot{}, fmt.Errorf("get snapshot: %w", err)
	}
	r := f.st.Snapshots[snapshotID]
	if r == nil || r.Final.Tenant != tenant {
		return provider.Snapshot{}, fmt.Errorf("get snapshot %s of tenant %s: %w", snapshotID, tenant, provider.ErrNotFound)
	}
	return r.view(), nil
}

// FindSnapshot reads the snapshot taken for (tenant, runID, instanceID).
func (f *Fleet) FindSnapshot(ctx context.Context, tenant, runID, instanceID string) (provider.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpFindSnapshot); err != nil {
		return provider.Snapshot{}, fmt.Errorf("find snapshot: %w", err)
	}
	id, ok := f.snapByKey[bizKey{tenant, runID, instanceID}]
	if !ok {
		return provider.Snapshot{}, fmt.Errorf("find snapshot of run %s instance %s tenant %s: %w", runID, instanceID, tenant, provider.ErrNotFound)
	}
	return f.st.Snapshots[id].view(), nil
}

// DeleteSnapshot deletes a snapshot, pending or not; an unknown one is not an error.
func (f *Fleet) DeleteSnapshot(ctx context.Context, tenant, snapshotID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpDeleteSnapshot); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	r := f.st.Snapshots[snapshotID]
	if r == nil || r.Final.Tenant != tenant {
		return nil
	}
	delete(f.st.Snapshots, snapshotID)
	delete(f.snapByKey, bizKey{r.Final.Tenant, r.Final.RunID, r.Final.InstanceID})
	f.pending = slices.DeleteFunc(f.pending, func(p pendingRef) bool {
		return p.kind == pendingSnapshot && p.id == snapshotID
	})
	f.st.Stats.SnapshotsDeleted++
	if err := f.save(); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	return nil
}

// RestoreFromSnapshot restores the instance's root volume from a completed snapshot of that
// instance, bringing back the patches installed when the snapshot was taken, or returns the
// restore already started for (Tenant, RestoreKey).
func (f *Fleet) RestoreFromSnapshot(ctx context.Context, req provider.RestoreRequest) (provider.Restore, error) {
	if err := req.Validate(); err != nil {
		return provider.Restore{}, fmt.Errorf("restore from snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpRestoreFromSnapshot); err != nil {
		return provider.Restore{}, fmt.Errorf("restore from snapshot: %w", err)
	}
	key := bizKey{req.Tenant, req.RestoreKey, ""}
	if id, ok := f.restoreByKey[key]; ok {
		r := f.st.Restores[id]
		if r.Final.InstanceID != req.InstanceID || r.Final.SnapshotID != req.SnapshotID {
			return provider.Restore{}, fmt.Errorf("restore from snapshot: %w: RestoreKey %q already used for instance %s snapshot %s",
				provider.ErrInvalidArgument, req.RestoreKey, r.Final.InstanceID, r.Final.SnapshotID)
		}
		return r.view(), nil
	}
	snap := f.st.Snapshots[req.SnapshotID]
	if snap == nil || snap.Final.Tenant != req.Tenant {
		return provider.Restore{}, fmt.Errorf("restore from snapshot %s of tenant %s: %w", req.SnapshotID, req.Tenant, provider.ErrNotFound)
	}
	if snap.Final.InstanceID != req.InstanceID {
		return provider.Restore{}, fmt.Errorf("restore from snapshot: %w: SnapshotID %s was taken of instance %s, not %s",
			provider.ErrInvalidArgument, req.SnapshotID, snap.Final.InstanceID, req.InstanceID)
	}
	in, err := f.instance(req.Tenant, req.InstanceID)
	if err != nil {
		return provider.Restore{}, fmt.Errorf("restore from snapshot: %w", err)
	}
	if in.Instance.State != provider.InstanceRunning {
		return provider.Restore{}, fmt.Errorf("restore from snapshot: instance %s is %s: %w", req.InstanceID, in.Instance.State, provider.ErrInstanceNotRunning)
	}
	if s := snap.view().State; s != provider.SnapshotCompleted {
		return provider.Restore{}, fmt.Errorf("restore from snapshot: snapshot %s is %s: %w", req.SnapshotID, s, provider.ErrSnapshotNotCompleted)
	}
	now := f.now()
	id, seq := f.nextID("replacevol")
	f.st.Restores[id] = &restoreRec{
		Final: provider.Restore{
			ID:         id,
			Tenant:     req.Tenant,
			InstanceID: req.InstanceID,
			SnapshotID: req.SnapshotID,
			State:      provider.RestoreSucceeded,
		},
		Key:     req.RestoreKey,
		Patches: slices.Clone(snap.Patches),
		DueAt:   now.Add(f.cfg.Latency),
		Seq:     seq,
	}
	f.restoreByKey[key] = id
	f.pending = append(f.pending, pendingRef{pendingRestore, id, now.Add(f.cfg.Latency), seq})
	f.st.Stats.Restores++
	f.settle()
	if err := f.save(); err != nil {
		return provider.Restore{}, fmt.Errorf("restore from snapshot: %w", err)
	}
	return f.st.Restores[id].view(), nil
}

// GetRestore reads a restore by id.
func (f *Fleet) GetRestore(ctx context.Context, tenant, restoreID string) (provider.Restore, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpGetRestore); err != nil {
		return provider.Restore{}, fmt.Errorf("get restore: %w", err)
	}
	r := f.st.Restores[restoreID]
	if r == nil || r.Final.Tenant != tenant {
		return provider.Restore{}, fmt.Errorf("get restore %s of tenant %s: %w", restoreID, tenant, provider.ErrNotFound)
	}
	return r.view(), nil
}

// Install starts installing the patches on a running instance, or returns the installation
// already started for (Tenant, RunID, InstanceID). See the package comment for how failures and
// reboots are decided.
func (f *Fleet) Install(ctx context.Context, req provider.InstallRequest) (provider.Installation, error) {
	if err := req.Validate(); err != nil {
		return provider.Installation{}, fmt.Errorf("install: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpInstall); err != nil {
		return provider.Installation{}, fmt.Errorf("install: %w", err)
	}
	key := bizKey{req.Tenant, req.RunID, req.InstanceID}
	if id, ok := f.installByKey[key]; ok {
		return f.st.Installations[id].view(), nil
	}
	in, err := f.instance(req.Tenant, req.InstanceID)
	if err != nil {
		return provider.Installation{}, fmt.Errorf("install: %w", err)
	}
	if in.Instance.State != provider.InstanceRunning {
		return provider.Installation{}, fmt.Errorf("install: instance %s is %s: %w", req.InstanceID, in.Instance.State, provider.ErrInstanceNotRunning)
	}
	now := f.now()
	due := now.Add(f.cfg.Latency)
	id, seq := f.nextID("cmd")
	rec := &installRec{
		Final: provider.Installation{
			ID:         id,
			Tenant:     req.Tenant,
			RunID:      req.RunID,
			InstanceID: req.InstanceID,
			StartedAt:  now,
			FinishedAt: due,
		},
		Patches: slices.Clone(req.PatchIDs),
		DueAt:   due,
		Seq:     seq,
	}
	f.decideInstall(rec, req)
	f.st.Installations[id] = rec
	f.installByKey[key] = id
	f.pending = append(f.pending, pendingRef{pendingInstall, id, due, seq})
	f.st.Stats.InstallsStarted++
	f.settle()
	if err := f.save(); err != nil {
		return provider.Installation{}, fmt.Errorf("install: %w", err)
	}
	return f.st.Installations[id].view(), nil
}

// decideInstall fills in the final outcome of an installation.
func (f *Fleet) decideInstall(rec *installRec, req provider.InstallRequest) {
	out := &rec.Final
	out.Results = make([]provider.PatchResult, len(req.PatchIDs))
	if f.roll("install", req.Tenant, req.RunID, req.InstanceID) < f.cfg.InstallFailureRate {
		out.State = provider.InstallFailed
		out.Error = installFailureMessage
		for i, p := range req.PatchIDs {
			out.Results[i] = provider.PatchResult{PatchID: p, State: provider.PatchMissing}
		}
		if n := len(req.PatchIDs); n > 0 {
			i := f.pick(n, "install", req.Tenant, req.RunID, req.InstanceID)
			out.Results[i] = provider.PatchResult{PatchID: req.PatchIDs[i], State: provider.PatchFailed, Error: installFailureMessage}
			out.Error = fmt.Sprintf("patch %s: %s", req.PatchIDs[i], installFailureMessage)
		}
		return
	}
	out.State = provider.InstallSucceeded
	needReboot := slices.ContainsFunc(req.PatchIDs, needsReboot)
	policy := req.RebootPolicy.OrDefault()
	rec.Rebooted = policy == provider.RebootAlways || (policy == provider.RebootIfRequired && needReboot)
	for i, p := range req.PatchIDs {
		out.Results[i] = provider.PatchResult{PatchID: p, State: provider.PatchInstalled}
		if !rec.Rebooted && needsReboot(p) {
			out.Results[i].State = provider.PatchInstalledPendingReboot
			out.RebootPending = true
		}
	}
}

// GetInstallation reads an installation by id.
func (f *Fleet) GetInstallation(ctx context.Context, tenant, installationID string) (provider.Installation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpGetInstallation); err != nil {
		return provider.Installation{}, fmt.Errorf("get installation: %w", err)
	}
	r := f.st.Installations[installationID]
	if r == nil || r.Final.Tenant != tenant {
		return provider.Installation{}, fmt.Errorf("get installation %s of tenant %s: %w", installationID, tenant, provider.ErrNotFound)
	}
	return r.view(), nil
}

// FindInstallation reads the installation started for (tenant, runID, instanceID).
func (f *Fleet) FindInstallation(ctx context.Context, tenant, runID, instanceID string) (provider.Installation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpFindInstallation); err != nil {
		return provider.Installation{}, fmt.Errorf("find installation: %w", err)
	}
	id, ok := f.installByKey[bizKey{tenant, runID, instanceID}]
	if !ok {
		return provider.Installation{}, fmt.Errorf("find installation of run %s instance %s tenant %s: %w", runID, instanceID, tenant, provider.ErrNotFound)
	}
	return f.st.Installations[id].view(), nil
}

// Reboot reboots a running instance, which clears a pending reboot.
func (f *Fleet) Reboot(ctx context.Context, tenant, instanceID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpReboot); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	in, err := f.instance(tenant, instanceID)
	if err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	if in.Instance.State != provider.InstanceRunning {
		return fmt.Errorf("reboot: instance %s is %s: %w", instanceID, in.Instance.State, provider.ErrInstanceNotRunning)
	}
	in.Reboots++
	in.RebootPending = false
	f.st.Stats.Reboots++
	if err := f.save(); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

// CheckHealth reports a running instance healthy (unless SetHealth said otherwise) and any other
// instance unhealthy.
func (f *Fleet) CheckHealth(ctx context.Context, tenant, instanceID string) (provider.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, OpCheckHealth); err != nil {
		return provider.Health{}, fmt.Errorf("check health: %w", err)
	}
	in, err := f.instance(tenant, instanceID)
	if err != nil {
		return provider.Health{}, fmt.Errorf("check health: %w", err)
	}
	switch {
	case in.Instance.State != provider.InstanceRunning:
		return provider.Health{Healthy: false, Detail: "instance is " + string(in.Instance.State)}, nil
	case in.Health != nil:
		return *in.Health, nil
	}
	return provider.Health{Healthy: true, Detail: "running, status checks passed"}, nil
}
