package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

var t0 = time.Date(2026, 11, 23, 15, 48, 0, 0, time.UTC)

func newApp(t *testing.T) *app.Application {
	t.Helper()
	a := app.New(adapters.New(store.NewMemory()), slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })
	require.NoError(t, a.CaughtUp(t.Context()))
	return a
}

func ev(t *testing.T, seq uint64, msg proto.Message) *events.Event {
	t.Helper()
	e, err := events.New("acme", fmt.Sprintf("key-%d", seq), msg)
	require.NoError(t, err)
	e.Sequence = seq
	return e
}

func started(run string, wave int32, ids ...string) *eventsv1.RunStarted {
	return &eventsv1.RunStarted{Tenant: "acme", RunId: run, Wave: wave, InstanceIds: ids}
}

func succeeded(run string, wave int32, id string) *eventsv1.InstallSucceeded {
	return &eventsv1.InstallSucceeded{Tenant: "acme", RunId: run, Wave: wave, InstanceId: id}
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
			[]proto.Message{started("r1", 2, "i-5"), failed("r1", 2, "i-5", "p1"), started("r2", 2, "i-5"), succeeded("r2", 2, "i-5")},
			domain.Coverage{InScope: 1, Compliant: 1}, map[int32]domain.Coverage{2: {InScope: 1, Compliant: 1}}, nil},
		{"a later failure replaces the failed patches",
			[]proto.Message{started("r1", 2, "i-5"), failed("r1", 2, "i-5", "p1"), failed("r2", 2, "i-5", "p3")},
			domain.Coverage{InScope: 1, NonCompliant: 1}, map[int32]domain.Coverage{2: {InScope: 1, NonCompliant: 1}}, []string{"i-5/p3"}},
		{"a snapshot failure keeps the failed patches of the last install",
			[]proto.Message{started("r1", 1, "i-1"), failed("r1", 1, "i-1", "p1"), snapFailed("r2", 1, "i-1")},
			domain.Coverage{InScope: 1, NonCompliant: 1}, map[int32]domain.Coverage{1: {InScope: 1, NonCompliant: 1}}, []string{"i-1/p1"}},
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
				fps, err := a.ListFailedPatches(ctx, "acme")
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
	fps, err := a.ListFailedPatches(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, []domain.FailedPatch{
		{PatchID: "p0", InstanceID: "i-9", Wave: 2, RunID: "r1", Error: "install failed"},
		{PatchID: "p1", InstanceID: "i-9", Wave: 2, RunID: "r1", Error: "conflict p1"},
		{PatchID: "p2", InstanceID: "i-9", Wave: 2, RunID: "r1", Error: "conflict p2"},
	}, fps)
}

func TestQueries(t *testing.T) {
	ctx := t.Context()
	a := newApp(t)
	_, err := a.GetCompliance(ctx, "Not-A-Tenant")
	require.ErrorIs(t, err, domain.ErrInvalidArgument)
	require.ErrorContains(t, err, "tenant: must match")
	_, err = a.ListFailedPatches(ctx, "")
	require.ErrorIs(t, err, domain.ErrInvalidArgument)

	c, err := a.GetCompliance(ctx, "nobody")
	require.NoError(t, err)
	require.Equal(t, domain.Coverage{}, c.Total)
	require.Empty(t, c.Waves)

	notReady := app.New(adapters.New(store.NewMemory()), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = notReady.GetCompliance(short, "acme")
	require.ErrorIs(t, err, domain.ErrUnavailable)
}
