package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

var t0 = time.Date(2026, 11, 23, 15, 48, 0, 0, time.UTC)

// knownTenants stands in for the service design: these tenants exist.
type knownTenants []string

func (k knownTenants) RequireTenant(_ context.Context, tenant string) error {
	if !slices.Contains(k, tenant) {
		return fmt.Errorf("%w: tenant %s is not in the service design", apierr.ErrNotFound, tenant)
	}
	return nil
}

var tenants = knownTenants{"acme", "quiet"}

func newApp(t *testing.T) *app.Application {
	t.Helper()
	a := app.New(adapters.New(store.NewMemory()), tenants, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })
	require.NoError(t, a.CaughtUp(t.Context()))
	return a
}

func ev(t *testing.T, seq uint64, msg proto.Message) *events.Event {
	t.Helper()
	e, err := events.New("acme", fmt.Sprintf("key-%d", seq), msg)
	require.NoError(t, err)
	e.Sequence = seq
	e.Time = t0.Add(time.Duration(seq) * time.Minute)
	return e
}

func started(run string, wave int32, ids ...string) *eventsv1.RunStarted {
	return &eventsv1.RunStarted{Tenant: "acme", RunId: run, Wave: wave, InstanceIds: ids}
}

// chunk is one membership chunk of a run (the form of runs started since chunks).
func chunk(run string, wave int32, ids ...string) *eventsv1.RunMembership {
	m := &eventsv1.RunMembership{Tenant: "acme", RunId: run, Wave: wave, MembershipId: "m1", Chunks: 1}
	for _, id := range ids {
		m.Members = append(m.Members, &typesv1.Member{InstanceId: id, Status: typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE})
	}
	return m
}

func succeeded(run string, wave int32, id string, patches ...string) *eventsv1.InstallSucceeded {
	m := &eventsv1.InstallSucceeded{Tenant: "acme", RunId: run, Wave: wave, InstanceId: id}
	for _, p := range patches {
		m.Results = append(m.Results, &typesv1.PatchResult{PatchId: p, State: typesv1.PatchState_PATCH_STATE_INSTALLED})
	}
	return m
}

func failed(run string, wave int32, id string, patches ...string) *eventsv1.InstallFailed {
	m := &eventsv1.InstallFailed{Tenant: "acme", RunId: run, Wave: wave, InstanceId: id, Reason: "install failed"}
	for _, p := range patches {
		m.Results = append(m.Results, &typesv1.PatchResult{PatchId: p, State: typesv1.PatchState_PATCH_STATE_FAILED, Error: "conflict " + p})
	}
	m.Results = append(m.Results, &typesv1.PatchResult{PatchId: "other", State: typesv1.PatchState_PATCH_STATE_MISSING})
	return m
}

func snapFailed(run string, wave int32, id string) *eventsv1.SnapshotFailed {
	return &eventsv1.SnapshotFailed{Tenant: "acme", RunId: run, Wave: wave, InstanceId: id, Reason: "quota"}
}

func TestCompliance(t *testing.T) {
	tests := []struct {
		name   string
		events []proto.Message
		total  domain.Coverage
		waves  map[int32]domain.Coverage
		failed []string // instance/patch
	}{
		{"instances in scope without outcome are unknown",
			[]proto.Message{started("r1", 1, "i-1", "i-2", "i-2")},
			domain.Coverage{InScope: 2, Unknown: 2}, map[int32]domain.Coverage{1: {InScope: 2, Unknown: 2}}, nil},
		{"outcomes make instances compliant or not",
			[]proto.Message{started("r1", 1, "i-1", "i-2", "i-3", "i-4"), succeeded("r1", 1, "i-1"), failed("r1", 1, "i-2", "p1", "p2"), snapFailed("r1", 1, "i-3")},
			domain.Coverage{InScope: 4, Compliant: 1, NonCompliant: 2, Unknown: 1}, map[int32]domain.Coverage{1: {InScope: 4, Compliant: 1, NonCompliant: 2, Unknown: 1}},
			[]string{"i-2/p1", "i-2/p2"}},
		{"a later success clears the failed patches",
			[]proto.Message{started("r1", 2, "i-5"), failed("r1", 2, "i-5", "p1"), started("r2", 2, "i-5"), succeeded("r2", 2, "i-5", "p1", "other")},
			domain.Coverage{InScope: 1, Compliant: 1}, map[int32]domain.Coverage{2: {InScope: 1, Compliant: 1}}, nil},
		{"a later failure updates the patches it reports and leaves the others",
			[]proto.Message{started("r1", 2, "i-5"), failed("r1", 2, "i-5", "p1", "p2"), failed("r2", 2, "i-5", "p3"), succeeded("r3", 2, "i-5", "p2")},
			domain.Coverage{InScope: 1, NonCompliant: 1}, map[int32]domain.Coverage{2: {InScope: 1, NonCompliant: 1}}, []string{"i-5/p1", "i-5/p3"}},
		{"a snapshot failure keeps the failed patches of the last install",
			[]proto.Message{started("r1", 1, "i-1"), failed("r1", 1, "i-1", "p1"), snapFailed("r2", 1, "i-1")},
			domain.Coverage{InScope: 1, NonCompliant: 1}, map[int32]domain.Coverage{1: {InScope: 1, NonCompliant: 1}}, []string{"i-1/p1"}},
		{"membership chunks put their instances in scope, stopped ones included",
			[]proto.Message{chunk("r1", 1, "i-1", "i-2"), chunk("r1", 1, "i-3"), &eventsv1.RunStarted{Tenant: "acme", RunId: "r1", Wave: 1,
				Membership: &typesv1.MembershipCounts{Total: 3, Eligible: 3, Chunks: 2}}, succeeded("r1", 1, "i-1")},
			domain.Coverage{InScope: 3, Compliant: 1, Unknown: 2}, map[int32]domain.Coverage{1: {InScope: 3, Compliant: 1, Unknown: 2}}, nil},
		{"an instance re-tagged into another wave moves with its state",
			[]proto.Message{started("r1", 1, "i-1", "i-2"), succeeded("r1", 1, "i-1"), started("r2", 3, "i-1")},
			domain.Coverage{InScope: 2, Compliant: 1, Unknown: 1}, map[int32]domain.Coverage{1: {InScope: 1, Unknown: 1}, 3: {InScope: 1, Compliant: 1}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			a := newApp(t)
			check := func() {
				c, err := a.GetCompliance(ctx, "acme")
				require.NoError(t, err)
				require.Equal(t, tt.total, c.Total)
				require.Equal(t, t0, c.AsOf)
				got := map[int32]domain.Coverage{}
				for _, w := range c.Waves {
					got[w.Wave] = w.Coverage
				}
				require.Equal(t, tt.waves, got)
				fps, _, err := a.ListFailedPatches(ctx, "acme", app.FailedFilter{}, app.Page{})
				require.NoError(t, err)
				var names []string
				for _, fp := range fps {
					names = append(names, fp.InstanceID+"/"+fp.PatchID)
				}
				require.Equal(t, tt.failed, names)
			}
			for i, m := range tt.events {
				require.NoError(t, a.Apply(ctx, ev(t, uint64(i+1), m), false))
			}
			check()
			// A replay from the start (a checkpoint lost, a redelivery) changes nothing.
			for i, m := range tt.events {
				require.NoError(t, a.Apply(ctx, ev(t, uint64(i+1), m), true))
			}
			check()
		})
	}
}

func TestFailedPatchDetails(t *testing.T) {
	ctx := t.Context()
	a := newApp(t)
	require.NoError(t, a.Apply(ctx, ev(t, 1, started("r1", 2, "i-9")), true))
	m := failed("r1", 2, "i-9", "p2", "p1")
	m.Results = append(m.Results, &typesv1.PatchResult{PatchId: "p0", State: typesv1.PatchState_PATCH_STATE_FAILED})
	require.NoError(t, a.Apply(ctx, ev(t, 2, m), true))
	fps, next, err := a.ListFailedPatches(ctx, "acme", app.FailedFilter{}, app.Page{})
	require.NoError(t, err)
	require.Empty(t, next)
	at := t0.Add(2 * time.Minute)
	require.Equal(t, []domain.FailedPatch{
		{PatchID: "p0", InstanceID: "i-9", Wave: 2, RunID: "r1", Error: "install failed", FirstSeen: at, OSFamily: "unknown"},
		{PatchID: "p1", InstanceID: "i-9", Wave: 2, RunID: "r1", Error: "conflict p1", FirstSeen: at, OSFamily: "unknown"},
		{PatchID: "p2", InstanceID: "i-9", Wave: 2, RunID: "r1", Error: "conflict p2", FirstSeen: at, OSFamily: "unknown"},
	}, fps)
	page, next, err := a.ListFailedPatches(ctx, "acme", app.FailedFilter{}, app.Page{Size: 2})
	require.NoError(t, err)
	require.Equal(t, fps[:2], page)
	page, next, err = a.ListFailedPatches(ctx, "acme", app.FailedFilter{}, app.Page{Size: 2, Token: next})
	require.NoError(t, err)
	require.Equal(t, fps[2:], page)
	require.Empty(t, next)
	page, _, err = a.ListFailedPatches(ctx, "acme", app.FailedFilter{PatchID: "p1"}, app.Page{})
	require.NoError(t, err)
	require.Equal(t, fps[1:2], page)
}

func TestQueries(t *testing.T) {
	ctx := t.Context()
	a := newApp(t)
	_, err := a.GetCompliance(ctx, "Not-A-Tenant")
	require.ErrorIs(t, err, domain.ErrInvalidArgument)
	require.ErrorContains(t, err, "tenant: must match")
	_, _, err = a.ListFailedPatches(ctx, "", app.FailedFilter{}, app.Page{})
	require.ErrorIs(t, err, domain.ErrInvalidArgument)
	_, _, err = a.ListFailedPatches(ctx, "acme", app.FailedFilter{}, app.Page{Token: "not a token"})
	require.ErrorContains(t, err, "pageToken: must be the nextPageToken of the previous page")
	_, _, err = a.ListInstances(ctx, "acme", app.InstanceFilter{States: []typesv1.ComplianceState{9}}, app.Page{Size: 5000})
	require.ErrorIs(t, err, domain.ErrInvalidArgument)
	require.ErrorContains(t, err, "states: must be COMPLIANT, NON_COMPLIANT or UNKNOWN")
	require.ErrorContains(t, err, "pageSize: must be from 1 to 1000, got 5000")
	_, err = a.GetHistory(ctx, "acme", t0, t0.Add(-time.Hour))
	require.ErrorContains(t, err, "from: must not be after to")
	_, err = a.GetRun(ctx, "acme", "nope", app.Page{})
	require.ErrorIs(t, err, apierr.ErrNotFound)
	_, err = a.InstancePatches(ctx, "acme", "i-none")
	require.ErrorIs(t, err, apierr.ErrNotFound)

	c, err := a.GetCompliance(ctx, "quiet")
	require.NoError(t, err)
	require.Equal(t, domain.Coverage{}, c.Total, "a known tenant without events gets zeros")
	require.Empty(t, c.Waves)

	_, err = a.GetCompliance(ctx, "nobody")
	require.ErrorIs(t, err, apierr.ErrNotFound, "a tenant that is not in the design is not found")
	_, _, err = a.ListFailedPatches(ctx, "nobody", app.FailedFilter{}, app.Page{})
	require.ErrorIs(t, err, apierr.ErrNotFound)

	notReady := app.New(adapters.New(store.NewMemory()), tenants, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = notReady.GetCompliance(short, "acme")
	require.ErrorIs(t, err, domain.ErrUnavailable)
}
