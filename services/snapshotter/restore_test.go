package snapshotter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/testkit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/snapshotter"
)

func TestARestoreOverGRPCReplacesTheRootVolumeFromTheRunsSnapshot(t *testing.T) {
	h := newHarness(t, 2, nil)
	client := h.startGRPC(t, snapshotter.Config{})
	ids := h.InstanceIDs()
	h.jobs(t, "run-1", ids, nil)
	h.WaitCount(t, "snapshot.created", 2)

	req := &snapshotterv1.RestoreInstanceRequest{Tenant: tenant, Instance: ids[0], RunId: "run-1", Reason: "app broken", RequestId: "chg-1"}
	res, err := client.RestoreInstance(actor(t.Context(), "alice@acme"), req)
	require.NoError(t, err)
	r := res.GetRestore()
	require.Equal(t, snapshotterv1.RestoreState_RESTORE_STATE_REQUESTED, r.GetState())
	require.Equal(t, "alice@acme", r.GetActor())
	require.Equal(t, provider.SnapshotSetID(tenant, "run-1", ids[0]), r.GetSnapshotId())
	done := waitRestore(t, client, r.GetRestoreId(), snapshotterv1.RestoreState_RESTORE_STATE_SUCCEEDED)
	require.NotNil(t, done.GetFinishedAt())
	require.Equal(t, int64(1), h.Calls(ids[0], "ec2:CreateReplaceRootVolumeTask"))

	// The same request again is the same restore: nothing is restored twice.
	again, err := client.RestoreInstance(actor(t.Context(), "alice@acme"), req)
	require.NoError(t, err)
	require.Equal(t, r.GetRestoreId(), again.GetRestore().GetRestoreId())
	require.Equal(t, snapshotterv1.RestoreState_RESTORE_STATE_SUCCEEDED, again.GetRestore().GetState())
	for _, kind := range []string{"restore.requested", "restore.started", "restore.completed"} {
		require.Equal(t, 1, h.Count(t, kind), kind)
	}
	require.Equal(t, int64(1), h.Calls(ids[0], "ec2:CreateReplaceRootVolumeTask"))

	list, err := client.ListRestores(t.Context(), &snapshotterv1.ListRestoresRequest{Tenant: tenant, InstanceId: ids[0]})
	require.NoError(t, err)
	require.Len(t, list.GetRestores(), 1)
	list, err = client.ListRestores(t.Context(), &snapshotterv1.ListRestoresRequest{Tenant: tenant, InstanceId: ids[1]})
	require.NoError(t, err)
	require.Empty(t, list.GetRestores())
}

func TestARestoreIsRefusedClearlyWithoutACompletedSnapshot(t *testing.T) {
	cloudClock := testkit.NewClock(time.Now())
	h := newHarness(t, 2, func(c *cloudsim.Config) { c.Clock, c.Timing.Snapshot = cloudClock.Now, 10*time.Minute })
	client := h.startGRPC(t, snapshotter.Config{})
	ids := h.InstanceIDs()
	h.jobs(t, "run-1", ids[:1], nil)
	h.WaitCount(t, "snapshot.started", 1) // pending: the cloud clock does not move
	require.Eventually(t, func() bool {   // until the records have the pending set
		_, err := client.RestoreInstance(actor(t.Context(), "alice"), &snapshotterv1.RestoreInstanceRequest{Tenant: tenant, Instance: ids[0], RunId: "run-1", Reason: "x"})
		return status.Code(err) == codes.FailedPrecondition
	}, eventually, tick)

	tests := []struct {
		name  string
		who   string
		req   *snapshotterv1.RestoreInstanceRequest
		code  codes.Code
		msg   string
		field string
	}{
		{"no snapshot of that run is not found", "alice", &snapshotterv1.RestoreInstanceRequest{Tenant: tenant, Instance: ids[1], RunId: "run-1", Reason: "x"},
			codes.NotFound, "no pre-patch snapshot of run run-1 for instance " + ids[1], ""},
		{"a pending snapshot is a failed precondition", "alice", &snapshotterv1.RestoreInstanceRequest{Tenant: tenant, Instance: ids[0], RunId: "run-1", Reason: "x"},
			codes.FailedPrecondition, "is not completed yet", ""},
		{"a restore without an identity is refused", "", &snapshotterv1.RestoreInstanceRequest{Tenant: tenant, Instance: ids[0], RunId: "run-1", Reason: "x"},
			codes.Unauthenticated, "no caller identity", ""},
		{"a restore without a reason is refused", "alice", &snapshotterv1.RestoreInstanceRequest{Tenant: tenant, Instance: ids[0], RunId: "run-1"},
			codes.InvalidArgument, "reason: is required", "reason"},
		{"a restore without a run is refused", "alice", &snapshotterv1.RestoreInstanceRequest{Tenant: tenant, Instance: ids[0], Reason: "x"},
			codes.InvalidArgument, "run_id: is required", "run_id"},
		{"a bad tenant is refused", "alice", &snapshotterv1.RestoreInstanceRequest{Tenant: "ACME", Instance: ids[0], RunId: "run-1", Reason: "x"},
			codes.InvalidArgument, "tenant", "tenant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := actor(t.Context(), tt.who)
			_, err := client.RestoreInstance(ctx, tt.req)
			st, ok := status.FromError(err)
			require.True(t, ok, "a gRPC status: %v", err)
			require.Equal(t, tt.code, st.Code(), st.Message())
			require.Contains(t, st.Message(), tt.msg)
			if tt.field != "" {
				var fields []string
				for _, d := range st.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok {
						for _, v := range br.GetFieldViolations() {
							fields = append(fields, v.GetField())
						}
					}
				}
				require.Contains(t, fields, tt.field)
			}
		})
	}
	_, err := client.GetRestore(t.Context(), &snapshotterv1.GetRestoreRequest{Tenant: tenant, RestoreId: "rst-nope"})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = client.ListRestores(t.Context(), &snapshotterv1.ListRestoresRequest{Tenant: tenant, PageSize: 501})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Zero(t, h.Count(t, "restore.requested"), "nothing refused was requested")
	require.Zero(t, h.Calls(ids[0], "ec2:CreateReplaceRootVolumeTask"))
}

// Auto-rollback: a job whose policy asks for it is restored from its pre-patch snapshot when its
// installation fails, once, with actor auto-rollback; a job without the policy, or one whose
// install was refused (nothing was installed), is not.
func TestAutoRollbackRestoresAFailedInstallOnce(t *testing.T) {
	h := newHarness(t, 3, nil)
	client := h.startGRPC(t, snapshotter.Config{})
	ids := h.InstanceIDs()
	rollback := &typesv1.JobPolicy{AutoRollback: true}
	h.jobs(t, "run-1", ids, rollback)
	h.WaitCount(t, "snapshot.created", 3)
	failed := func(id, key, installation string, policy *typesv1.JobPolicy) {
		h.Publish(t, key, &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-1", InstanceId: id,
			SnapshotId: provider.SnapshotSetID(tenant, "run-1", id), InstallationId: installation, Location: h.Location(),
			Policy: policy, JobState: typesv1.JobState_JOB_STATE_FAILED, Reason: "installation failed: 1 patch(es) failed: KB1"})
	}
	failed(ids[0], "run-1/"+ids[0], "cmd-1/"+ids[0], rollback)
	failed(ids[0], "run-1/"+ids[0]+"/again", "cmd-1/"+ids[0], rollback) // delivered twice
	failed(ids[1], "run-1/"+ids[1], "cmd-1/"+ids[1], nil)
	failed(ids[2], "run-1/"+ids[2], "", rollback) // refused: nothing installed

	h.WaitCount(t, "restore.completed", 1)
	requested := h.Read(t, "restore.requested")
	require.Len(t, requested, 1, "one restore")
	rr := requested[0].Data.(*eventsv1.RestoreRequested)
	require.Equal(t, ids[0], rr.GetInstanceId())
	require.Equal(t, "auto-rollback", rr.GetActor())
	require.Contains(t, rr.GetReason(), "auto-rollback after a failed installation: installation failed")
	waitRestore(t, client, rr.GetRestoreId(), snapshotterv1.RestoreState_RESTORE_STATE_SUCCEEDED)
	require.Eventually(t, func() bool { return h.drained(t, snapshotter.HandlerAutoRollback) }, eventually, tick)
	require.Equal(t, 1, h.Count(t, "restore.requested"))
	require.Equal(t, int64(1), h.Calls(ids[0], "ec2:CreateReplaceRootVolumeTask"))
	require.Zero(t, h.Calls(ids[1], "ec2:CreateReplaceRootVolumeTask"))
	require.Zero(t, h.Calls(ids[2], "ec2:CreateReplaceRootVolumeTask"))
}
