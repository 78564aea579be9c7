package reporting_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"

	"github.com/patchwave/patchwave/services/reporting"
)

// everything reads every report of acme that a tenant sees, to compare them field for field.
func everything(t *testing.T, c reportingv1.ReportingServiceClient) []proto.Message {
	t.Helper()
	ctx := t.Context()
	var out []proto.Message
	add := func(m proto.Message, err error) {
		require.NoError(t, err)
		out = append(out, m)
	}
	for _, tenant := range []string{"acme", "globex"} {
		add(c.GetCompliance(ctx, &reportingv1.GetComplianceRequest{Tenant: tenant}))
		add(c.ListFailedPatches(ctx, &reportingv1.ListFailedPatchesRequest{Tenant: tenant}))
		add(c.ListInstances(ctx, &reportingv1.ListInstancesRequest{Tenant: tenant, PageSize: 1000}))
		add(c.ExportFailedPatches(ctx, &reportingv1.ExportFailedPatchesRequest{Tenant: tenant}))
		add(c.GetPatchAgeing(ctx, &reportingv1.GetPatchAgeingRequest{Tenant: tenant}))
	}
	add(c.GetInstancePatches(ctx, &reportingv1.GetInstancePatchesRequest{Tenant: "acme", InstanceId: inst(7)}))
	add(c.GetRunReport(ctx, &reportingv1.GetRunReportRequest{Tenant: "acme", RunId: "r1"}))
	h, err := c.GetComplianceHistory(ctx, &reportingv1.GetComplianceHistoryRequest{Tenant: "acme"})
	add(h, err)
	return out
}

func requireSame(t *testing.T, want, got []proto.Message, what string) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.True(t, proto.Equal(want[i], got[i]), "%s: report %d\nwant %v\ngot  %v", what, i, want[i], got[i])
	}
}

// TestTwoReplicasAndARebuildUnderThemGiveTheSameReports runs two reporting replicas over one
// Redis, both projecting the stream into it; they answer alike and as expected. Then Redis is
// flushed under them and the rebuild command replays the streams into it: every report comes
// back equal, field for field, and both replicas go on applying new events to the rebuilt model.
func TestTwoReplicasAndARebuildUnderThemGiveTheSameReports(t *testing.T) {
	e := newEnv(t)
	replayed, live := scenario()
	e.publish(t, replayed...)
	client := testkit.StartRedis(t).Client(t)
	st := store.NewRedisFromClient(client, "patchwave:")
	one := e.start(t, st)
	two := e.start(t, store.NewRedisFromClient(client, "patchwave:"))
	e.publish(t, live...)
	for _, r := range []*running{one, two} {
		require.Eventually(t, func() bool {
			comp, failed := reports(t, r.client, "acme")
			return proto.Equal(wantCompliance, comp) && proto.Equal(wantFailed, failed)
		}, 10*time.Second, 20*time.Millisecond)
	}
	before := everything(t, one.client)
	requireSame(t, before, everything(t, two.client), "the second replica")

	require.NoError(t, st.FlushPrefix(t.Context(), ""))
	stats, err := reporting.Rebuild(t.Context(), reporting.RebuildConfig{Conn: e.nc, Store: st})
	require.NoError(t, err)
	require.Positive(t, stats.Events)
	requireSame(t, before, everything(t, one.client), "after the rebuild")
	requireSame(t, before, everything(t, two.client), "after the rebuild, the second replica")

	// Both replicas go on from the rebuilt read model.
	e.publish(t, ok("acme", "r1", 1, inst(10)))
	for _, r := range []*running{one, two} {
		require.Eventually(t, func() bool {
			comp, err := r.client.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: "acme"})
			return err == nil && comp.GetTotal().GetUnknown() == 0 && comp.GetTotal().GetCompliant() == 17
		}, 10*time.Second, 20*time.Millisecond)
	}
	requireSame(t, everything(t, one.client), everything(t, two.client), "after a live event")
}

// TestAFlushUnderARunningServiceIsRebuiltByTheNextEvent: without the rebuild command, the next
// batch finds the checkpoint gone and replays the stream into the emptied store.
func TestAFlushUnderARunningServiceIsRebuiltByTheNextEvent(t *testing.T) {
	e := newEnv(t)
	replayed, live := scenario()
	e.publish(t, replayed...)
	st := store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "patchwave:")
	svc := e.start(t, st)
	e.publish(t, live...)
	require.Eventually(t, func() bool {
		comp, failed := reports(t, svc.client, "acme")
		return proto.Equal(wantCompliance, comp) && proto.Equal(wantFailed, failed)
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, st.FlushPrefix(t.Context(), "reporting:"))
	e.publish(t, ok("acme", "r1", 1, inst(10)))
	require.Eventually(t, func() bool {
		comp, err := svc.client.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: "acme"})
		return err == nil && comp.GetTotal().GetInScope() == 20 && comp.GetTotal().GetCompliant() == 17
	}, 10*time.Second, 20*time.Millisecond, "the whole stream was applied again")
}
