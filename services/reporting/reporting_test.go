package reporting_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting"
)

var t0 = time.Date(2026, 11, 23, 15, 48, 0, 0, time.UTC)

type env struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// newEnv is an embedded NATS whose service design has the tenants acme and globex.
func newEnv(t *testing.T) *env {
	t.Helper()
	nc := testkit.StartNATS(t).Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	designtest.PutTenant(t, js, "acme", nil)
	designtest.PutTenant(t, js, "globex", nil)
	return &env{nc: nc, js: js}
}

// keyed is an event payload with its business key.
type keyed struct {
	tenant, key string
	msg         proto.Message
}

func (e *env) publish(t *testing.T, evs ...keyed) {
	t.Helper()
	out := make([]*events.Event, len(evs))
	for i, k := range evs {
		ev, err := events.New(k.tenant, k.key, k.msg)
		require.NoError(t, err)
		if ev.Time.IsZero() {
			ev.Time = t0
		}
		out[i] = ev
	}
	stagetest.Publish(t, e.nc, out...)
}

type running struct {
	client reportingv1.ReportingServiceClient
	stop   func()
}

func (e *env) start(t *testing.T, st store.Store) *running {
	t.Helper()
	svc, err := reporting.New(reporting.Config{}, reporting.Deps{Store: st, Clock: func() time.Time { return t0 }})
	require.NoError(t, err)
	conn, stop := stagetest.RunGRPCComponent(t, e.nc, svc)
	return &running{client: reportingv1.NewReportingServiceClient(conn), stop: stop}
}

func inst(n int) string { return fmt.Sprintf("i-%02d", n) }

func runStarted(tenant, run string, wave int32, ids ...string) keyed {
	return keyed{tenant, run, &eventsv1.RunStarted{Tenant: tenant, RunId: run, Wave: wave, InstanceIds: ids, StartedAt: timestamppb.New(t0)}}
}

func ok(tenant, run string, wave int32, id string) keyed {
	return keyed{tenant, run + "/" + id, &eventsv1.InstallSucceeded{Tenant: tenant, RunId: run, Wave: wave, InstanceId: id,
		Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_INSTALLED}}}}
}

func installFailed(tenant, run string, wave int32, id string, results ...*typesv1.PatchResult) keyed {
	return keyed{tenant, run + "/" + id, &eventsv1.InstallFailed{Tenant: tenant, RunId: run, Wave: wave, InstanceId: id,
		Reason: "exit status 1", Results: results}}
}

func patch(id string, state typesv1.PatchState, errText string) *typesv1.PatchResult {
	return &typesv1.PatchResult{PatchId: id, State: state, Error: errText}
}

// scenario is acme with 20 instances over 2 waves and globex with one, in two halves: the first
// is in the stream before reporting starts (replayed), the second arrives while it runs (live).
//
//	wave 1 (run r1, i-01..i-10): 6 succeed, i-07 and i-08 fail to install, i-09 fails to
//	  snapshot, i-10 has no outcome yet: 6 compliant, 3 non-compliant, 1 unknown.
//	wave 2 (run r2, i-11..i-20): 9 succeed; i-20 fails, then succeeds in run r3: 10 compliant.
func scenario() (replayed, live []keyed) {
	var w1, w2 []string
	for i := 1; i <= 10; i++ {
		w1, w2 = append(w1, inst(i)), append(w2, inst(i+10))
	}
	replayed = append(replayed, runStarted("acme", "r1", 1, w1...), runStarted("acme", "r2", 2, w2...))
	for i := 1; i <= 6; i++ {
		replayed = append(replayed, ok("acme", "r1", 1, inst(i)))
	}
	replayed = append(replayed,
		installFailed("acme", "r1", 1, inst(7), patch("p1", typesv1.PatchState_PATCH_STATE_FAILED, "package conflict"), patch("p2", typesv1.PatchState_PATCH_STATE_MISSING, "")),
		installFailed("acme", "r2", 2, inst(20), patch("p1", typesv1.PatchState_PATCH_STATE_FAILED, "package conflict")),
		runStarted("globex", "r4", 1, "g-1"),
		installFailed("globex", "r4", 1, "g-1", patch("p9", typesv1.PatchState_PATCH_STATE_FAILED, "boom")),
	)
	live = append(live,
		installFailed("acme", "r1", 1, inst(8), patch("p2", typesv1.PatchState_PATCH_STATE_FAILED, "")),
		keyed{"acme", "r1/" + inst(9), &eventsv1.SnapshotFailed{Tenant: "acme", RunId: "r1", Wave: 1, InstanceId: inst(9), Reason: "quota"}},
	)
	for i := 11; i <= 19; i++ {
		live = append(live, ok("acme", "r2", 2, inst(i)))
	}
	live = append(live, runStarted("acme", "r3", 2, inst(20)), ok("acme", "r3", 2, inst(20)))
	return replayed, live
}

var wantCompliance = &reportingv1.GetComplianceResponse{
	Tenant: "acme",
	Total:  &reportingv1.Coverage{InScope: 20, Compliant: 16, NonCompliant: 3, Unknown: 1, Coverage: 0.8},
	Waves: []*reportingv1.WaveCoverage{
		{Wave: 1, Coverage: &reportingv1.Coverage{InScope: 10, Compliant: 6, NonCompliant: 3, Unknown: 1, Coverage: 0.6}},
		{Wave: 2, Coverage: &reportingv1.Coverage{InScope: 10, Compliant: 10, Coverage: 1}},
	},
	OsFamilies: []*reportingv1.OSFamilyCoverage{
		{OsFamily: "unknown", Coverage: &reportingv1.Coverage{InScope: 20, Compliant: 16, NonCompliant: 3, Unknown: 1, Coverage: 0.8}},
	},
	AsOf: timestamppb.New(t0),
}

var wantFailed = &reportingv1.ListFailedPatchesResponse{FailedPatches: []*reportingv1.FailedPatch{
	{PatchId: "p1", InstanceId: "i-07", Wave: 1, RunId: "r1", Error: "package conflict", FirstSeen: timestamppb.New(t0), OsFamily: "unknown"},
	{PatchId: "p2", InstanceId: "i-08", Wave: 1, RunId: "r1", Error: "exit status 1", FirstSeen: timestamppb.New(t0), OsFamily: "unknown"},
}}

// reports reads both reports of a tenant.
func reports(t *testing.T, c reportingv1.ReportingServiceClient, tenant string) (*reportingv1.GetComplianceResponse, *reportingv1.ListFailedPatchesResponse) {
	t.Helper()
	comp, err := c.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: tenant})
	require.NoError(t, err)
	failed, err := c.ListFailedPatches(t.Context(), &reportingv1.ListFailedPatchesRequest{Tenant: tenant})
	require.NoError(t, err)
	return comp, failed
}

func TestReportsFromTheEventStream(t *testing.T) {
	e := newEnv(t)
	replayed, live := scenario()
	e.publish(t, replayed...)
	svc := e.start(t, store.NewMemory())
	e.publish(t, live...)

	require.Eventually(t, func() bool {
		comp, failed := reports(t, svc.client, "acme")
		return proto.Equal(wantCompliance, comp) && proto.Equal(wantFailed, failed)
	}, 10*time.Second, 20*time.Millisecond)

	comp, failed := reports(t, svc.client, "globex")
	require.True(t, proto.Equal(&reportingv1.Coverage{InScope: 1, NonCompliant: 1}, comp.GetTotal()), "tenants are apart: %v", comp)
	require.Len(t, failed.GetFailedPatches(), 1)
	require.Equal(t, "p9", failed.GetFailedPatches()[0].GetPatchId())

	// A tenant that is not in the service design is unknown, even with events in the stream.
	e.publish(t, runStarted("ghost", "r9", 1, "x-1"))
	_, err := svc.client.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: "ghost"})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "tenant ghost is not in the service design")
	_, err = svc.client.ListFailedPatches(t.Context(), &reportingv1.ListFailedPatchesRequest{Tenant: "nobody"})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)

	// Once the design has it, its report is there; a tenant without events gets zeros.
	designtest.PutTenant(t, e.js, "ghost", nil)
	require.Eventually(t, func() bool {
		comp, err := svc.client.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: "ghost"})
		return err == nil && comp.GetTotal().GetInScope() == 1
	}, 10*time.Second, 20*time.Millisecond, "the watched design sees the new tenant")
	designtest.PutTenant(t, e.js, "quiet", nil)
	require.Eventually(t, func() bool {
		comp, err := svc.client.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: "quiet"})
		return err == nil && proto.Equal(&reportingv1.Coverage{}, comp.GetTotal()) && len(comp.GetWaves()) == 0
	}, 10*time.Second, 20*time.Millisecond, "a known tenant without events gets zeros")
}

// TestReportsAreRebuiltFromTheStream is the architecture's proof that the store holds nothing
// the stream does not: build the reports, lose the store, replay, get the same reports.
func TestReportsAreRebuiltFromTheStream(t *testing.T) {
	tests := []struct {
		name string
		// lose empties the store, or returns a new empty one, between the two services.
		store func(t *testing.T) store.Store
		lose  func(t *testing.T, st store.Store) store.Store
	}{
		{"redis flushed", func(t *testing.T) store.Store {
			return store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "patchwave:")
		}, func(t *testing.T, st store.Store) store.Store {
			require.NoError(t, st.FlushPrefix(t.Context(), ""))
			keys, err := st.Keys(t.Context(), "")
			require.NoError(t, err)
			require.Empty(t, keys, "the flush left nothing")
			return st
		}},
		{"redis with its checkpoint lost, so everything is applied again", func(t *testing.T) store.Store {
			return store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "patchwave:")
		}, func(t *testing.T, st store.Store) store.Store {
			require.NoError(t, st.Delete(t.Context(), "reporting:checkpoint"))
			return st
		}},
		{"memory store of a new process", func(*testing.T) store.Store { return store.NewMemory() },
			func(*testing.T, store.Store) store.Store { return store.NewMemory() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			replayed, live := scenario()
			e.publish(t, replayed...)
			st := tt.store(t)
			svc := e.start(t, st)
			e.publish(t, live...)
			require.Eventually(t, func() bool {
				comp, failed := reports(t, svc.client, "acme")
				return proto.Equal(wantCompliance, comp) && proto.Equal(wantFailed, failed)
			}, 10*time.Second, 20*time.Millisecond)
			beforeComp, beforeFailed := reports(t, svc.client, "acme")
			beforeOther, _ := reports(t, svc.client, "globex")
			svc.stop()

			st = tt.lose(t, st)
			svc = e.start(t, st) // a new service instance; its projection replays the stream
			afterComp, afterFailed := reports(t, svc.client, "acme")
			afterOther, _ := reports(t, svc.client, "globex")
			require.True(t, proto.Equal(beforeComp, afterComp), "compliance before %v\nafter %v", beforeComp, afterComp)
			require.True(t, proto.Equal(beforeFailed, afterFailed), "failed patches before %v\nafter %v", beforeFailed, afterFailed)
			require.True(t, proto.Equal(beforeOther, afterOther))
		})
	}
}

func TestAPIErrors(t *testing.T) {
	e := newEnv(t)
	svc := e.start(t, store.NewMemory())
	for _, tenant := range []string{"", "ACME", "a.b", "-x"} {
		_, err := svc.client.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: tenant})
		require.Equal(t, codes.InvalidArgument, status.Code(err), tenant)
		require.ErrorContains(t, err, "tenant: must match")
		_, err = svc.client.ListFailedPatches(t.Context(), &reportingv1.ListFailedPatchesRequest{Tenant: tenant})
		require.Equal(t, codes.InvalidArgument, status.Code(err), tenant)
	}
}

func TestNewChecksDeps(t *testing.T) {
	_, err := reporting.New(reporting.Config{}, reporting.Deps{})
	require.ErrorContains(t, err, "Deps.Store: required")
	svc, err := reporting.New(reporting.Config{}, reporting.Deps{Store: store.NewMemory()})
	require.NoError(t, err)
	require.Equal(t, "reporting", svc.Name())
}
