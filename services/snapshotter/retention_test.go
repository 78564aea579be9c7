package snapshotter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/snapshotter"
)

// Retention with an injected clock: a set is deleted N days after its job succeeded; the sets
// of a failed and of a restored instance are kept until a later run succeeds on the instance,
// then deleted N days after that success. Each deletion deletes the set at the provider and
// publishes SnapshotDeleted.
func TestRetentionDeletesNDaysAfterSuccessAndKeepsFailedAndRestoredInstances(t *testing.T) {
	const days = 24 * time.Hour
	h := newHarness(t, 3, nil)
	client := h.startGRPC(t, snapshotter.Config{Retention: 7 * days})
	ids := h.InstanceIDs()
	succeeded, failed, restored := ids[0], ids[1], ids[2]
	set := func(run, id string) string { return provider.SnapshotSetID(tenant, run, id) }

	h.jobs(t, "run-1", ids, nil)
	h.WaitCount(t, "snapshot.created", 3)
	t0 := h.Clock.Now()
	h.Publish(t, "run-1/"+failed, &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-1", InstanceId: failed, SnapshotId: set("run-1", failed),
		Location: h.Location(), JobState: typesv1.JobState_JOB_STATE_FAILED, Reason: "KB1 failed"})
	h.Publish(t, "run-1/"+restored, &eventsv1.InstallSucceeded{Tenant: tenant, RunId: "run-1", InstanceId: restored, Location: h.Location()})
	h.Publish(t, "run-1/"+succeeded, &eventsv1.InstallSucceeded{Tenant: tenant, RunId: "run-1", InstanceId: succeeded, Location: h.Location()})
	// The tenant restores the third instance from its run-1 snapshot (the app broke later).
	res, err := client.RestoreInstance(actor(t.Context(), "alice"), &snapshotterv1.RestoreInstanceRequest{
		Tenant: tenant, Instance: restored, RunId: "run-1", Reason: "the app broke after the patch"})
	require.NoError(t, err)
	waitRestore(t, client, res.GetRestore().GetRestoreId(), snapshotterv1.RestoreState_RESTORE_STATE_SUCCEEDED)

	sweepAt := func(d time.Duration) int {
		t.Helper()
		h.Clock.Advance(t0.Add(d).Sub(h.Clock.Now()))
		return sweep(t, h)
	}
	require.Zero(t, sweepAt(6*days), "nothing is due within the retention")
	require.Equal(t, 1, sweepAt(7*days+time.Hour), "the succeeded job's set is deleted 7 days after its success")
	deleted := h.Read(t, "snapshot.deleted")
	require.Len(t, deleted, 1)
	d := deleted[0].Data.(*eventsv1.SnapshotDeleted)
	require.Equal(t, succeeded, d.GetInstanceId())
	require.Equal(t, set("run-1", succeeded), d.GetSnapshotId())
	require.Contains(t, d.GetReason(), "retention: kept 168h0m0s")
	got, err := h.Cloud.Fleet.GetSnapshots(t.Context(), h.Target(), []string{set("run-1", succeeded), set("run-1", failed), set("run-1", restored)})
	require.NoError(t, err)
	require.NotContains(t, got, set("run-1", succeeded), "deleted at the provider")
	require.Contains(t, got, set("run-1", failed), "kept: the instance is failed")
	require.Contains(t, got, set("run-1", restored), "kept: the instance was restored from it")
	require.Zero(t, sweepAt(60*days), "held sets are kept however long")

	// A later run succeeds on both held instances: their run-1 sets are released, due 7 days on.
	h.jobs(t, "run-2", []string{failed, restored}, nil)
	h.WaitCount(t, "snapshot.created", 5)
	t1 := h.Clock.Now()
	for _, id := range []string{failed, restored} {
		h.Publish(t, "run-2/"+id, &eventsv1.InstallSucceeded{Tenant: tenant, RunId: "run-2", InstanceId: id, Location: h.Location()})
	}
	sentinel(t, h, client)
	require.Zero(t, sweepAt(t1.Sub(t0)+6*days), "released sets wait 7 days after the later success")
	require.Equal(t, 4, sweepAt(t1.Sub(t0)+7*days+time.Hour), "both run-1 sets and both run-2 sets")
	require.Equal(t, 5, h.Count(t, "snapshot.deleted"))
	got, err = h.Cloud.Fleet.GetSnapshots(t.Context(), h.Target(), []string{set("run-1", failed), set("run-1", restored), set("run-2", failed)})
	require.NoError(t, err)
	require.Empty(t, got)
	require.Zero(t, sweepAt(t1.Sub(t0)+30*days), "a deleted set is not deleted again")
}

// sweep runs one retention sweep of the last replica started and returns how many sets it
// deleted.
func sweep(t *testing.T, h *harness) int {
	t.Helper()
	n, err := h.sweeper.SweepRetention(t.Context())
	require.NoError(t, err)
	return n
}

// sentinel asks for a restore nobody can do and waits until the read model has it: every event
// published before it has been applied by then.
func sentinel(t *testing.T, h *harness, client snapshotterv1.RestoreServiceClient) {
	t.Helper()
	id := "sentinel-" + h.Clock.Now().Format("150405.000000")
	h.Publish(t, id, &eventsv1.RestoreRequested{Tenant: tenant, RestoreId: id, InstanceId: "i-none", RunId: "run-none", Actor: "test"})
	require.Eventually(t, func() bool {
		_, err := client.GetRestore(t.Context(), &snapshotterv1.GetRestoreRequest{Tenant: tenant, RestoreId: id})
		return err == nil
	}, eventually, tick)
}

func waitRestore(t *testing.T, client snapshotterv1.RestoreServiceClient, id string, want snapshotterv1.RestoreState) *snapshotterv1.Restore {
	t.Helper()
	var last *snapshotterv1.Restore
	require.Eventually(t, func() bool {
		got, err := client.GetRestore(t.Context(), &snapshotterv1.GetRestoreRequest{Tenant: tenant, RestoreId: id})
		if err != nil {
			return false
		}
		last = got.GetRestore()
		return last.GetState() == want
	}, eventually, tick, "restore %s reaches %s (last %v)", id, want, last)
	return last
}
