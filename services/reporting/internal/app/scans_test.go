package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/app"
)

// recorder is a Publisher that keeps what it got.
type recorder struct {
	mu  sync.Mutex
	evs []*events.Event
}

func (r *recorder) Publish(_ context.Context, evs ...*events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, evs...)
	return nil
}

// freezes is a Freezes of fixed answers: acme is frozen in [frozenFrom, frozenTo).
type freezes struct{ frozenFrom, frozenTo time.Time }

func (f freezes) FrozenAt(tenant string, at time.Time) (string, error) {
	if tenant == "acme" && !at.Before(f.frozenFrom) && at.Before(f.frozenTo) {
		return "year-end", nil
	}
	return "", nil
}

func (freezes) TenantIDs() []string { return []string{"acme", "quiet"} }

func TestScansAreRequestedInChunksPerLocationFamilyAndBaselineNeverInAFreeze(t *testing.T) {
	ctx := t.Context()
	a := newApp(t)
	pub := &recorder{}
	a.SetScans(app.ScanOptions{Publisher: pub, Freezes: freezes{frozenFrom: t0.Add(time.Hour), frozenTo: t0.Add(2 * time.Hour)}, DailyAt: "03:00"})
	applyCatalog(t, a, published("al-1", "al2023", 1, t0, "p1", "p2"), published("win-1", "win2022", 1, t0, "kb1"))
	var al, win []string
	for i := range 120 {
		al = append(al, fmt.Sprintf("i-%03d", i))
	}
	win = append(win, "w-1", "w-2")
	loc := func(account string) *typesv1.Location {
		return &typesv1.Location{Account: account, Region: "eu-central-1"}
	}
	r1 := &eventsv1.RunStarted{Tenant: "acme", RunId: "r1", Wave: 1, BaselineId: "al-1", Groups: []*typesv1.InstanceGroup{
		{Location: loc("111111111111"), InstanceIds: al[:100]}, {Location: loc("222222222222"), InstanceIds: al[100:]}}}
	r2 := &eventsv1.RunStarted{Tenant: "acme", RunId: "r2", Wave: 2, BaselineId: "win-1", Groups: []*typesv1.InstanceGroup{
		{Location: loc("111111111111"), InstanceIds: win}}}
	r3 := started("r3", 3, "nowhere") // no location: cannot be scanned
	for i, m := range []*eventsv1.RunStarted{r1, r2, r3} {
		require.NoError(t, a.Apply(ctx, ev(t, uint64(i+1), m), true))
	}

	plan, err := a.RequestScans(ctx, "acme", "manual-1", "admin@acme")
	require.NoError(t, err)
	require.Equal(t, app.ScanPlan{ScanID: "scan-manual-1", Instances: 122, Chunks: 4, Unlocated: 1}, plan,
		"100 in one account: 2 chunks of 50; 20 in another; 2 Windows instances apart")
	got := map[string]int{}
	for _, e := range pub.evs {
		m := e.Data.(*eventsv1.ScanRequested)
		require.LessOrEqual(t, len(m.GetInstanceIds()), 50)
		require.Equal(t, "admin@acme", m.GetRequestedBy())
		got[m.GetLocation().GetAccount()+"/"+m.GetOsFamily()+"/"+m.GetBaselineId()] += len(m.GetInstanceIds())
		if m.GetBaselineId() == "al-1" {
			require.Equal(t, []string{"p1", "p2"}, m.GetPatchIds())
		}
	}
	require.Equal(t, map[string]int{"111111111111/al2023/al-1": 100, "222222222222/al2023/al-1": 20, "111111111111/win2022/win-1": 2}, got)

	_, err = a.RequestScans(ctx, "acme", "bad id!", "x")
	require.ErrorContains(t, err, "requestId: must match")

	// Inside the freeze: refused on demand, skipped by the daily scan that day.
	frozen := newApp(t)
	frozen.SetScans(app.ScanOptions{Publisher: pub, Freezes: freezes{frozenFrom: t0.Add(-time.Hour), frozenTo: t0.Add(time.Hour)}, DailyAt: "03:00"})
	_, err = frozen.RequestScans(ctx, "acme", "", "x")
	require.ErrorIs(t, err, apierr.ErrFailedPrecondition)
	require.ErrorContains(t, err, "inside change freeze year-end")

	// The daily scan: once per UTC day after DailyAt, with the day's id.
	pub.evs = nil
	require.NoError(t, a.DailyScans(ctx, time.Date(2026, 11, 24, 2, 59, 0, 0, time.UTC)))
	require.Empty(t, pub.evs, "not before 03:00")
	require.NoError(t, a.DailyScans(ctx, time.Date(2026, 11, 24, 3, 1, 0, 0, time.UTC)))
	require.Len(t, pub.evs, 4)
	require.Equal(t, "daily-2026-11-24", pub.evs[0].Data.(*eventsv1.ScanRequested).GetScanId())
	require.NoError(t, a.DailyScans(ctx, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)))
	require.Len(t, pub.evs, 4, "once a day")
	require.NoError(t, a.DailyScans(ctx, time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)))
	require.Len(t, pub.evs, 8, "and again the next day")
}

func TestScanOutcomesAssessTheInstances(t *testing.T) {
	ctx := t.Context()
	a := newApp(t)
	applyCatalog(t, a, published("al-1", "al2023", 1, t0, "p1", "p2"))
	run := started("r1", 1, "i-1", "i-2")
	run.BaselineId = "al-1"
	require.NoError(t, a.Apply(ctx, ev(t, 1, run), true))
	require.NoError(t, a.Apply(ctx, ev(t, 2, &eventsv1.ScanCompleted{Tenant: "acme", ScanId: "s1", InstanceId: "i-1", OsFamily: "al2023",
		Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_INSTALLED}, {PatchId: "p2", State: typesv1.PatchState_PATCH_STATE_INSTALLED_OTHER}}}), true))
	require.NoError(t, a.Apply(ctx, ev(t, 3, &eventsv1.ScanFailed{Tenant: "acme", ScanId: "s1", InstanceId: "i-2", Reason: "no agent"}), true))
	ins, _, err := a.ListInstances(ctx, "acme", app.InstanceFilter{}, app.Page{})
	require.NoError(t, err)
	require.Len(t, ins, 2)
	require.Equal(t, typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT, ins[0].State, "installed by the patch manager or otherwise")
	require.Equal(t, "s1", ins[0].LastRun)
	require.Equal(t, typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN, ins[1].State, "a scan that cannot reach the instance")
}
