package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/app"
)

// recorder is a Publisher that keeps what it got and, as the stream would, feeds it to the
// compliance projection of app (when set) at the next sequence of *seq.
type recorder struct {
	mu  sync.Mutex
	evs []*events.Event
	app *app.Application
	seq *uint64
}

func (r *recorder) Publish(ctx context.Context, evs ...*events.Event) error {
	r.mu.Lock()
	r.evs = append(r.evs, evs...)
	r.mu.Unlock()
	if r.app == nil {
		return nil
	}
	for _, e := range evs {
		*r.seq++
		c := *e
		c.Sequence = *r.seq
		if err := r.app.Apply(ctx, &c, true); err != nil {
			return err
		}
	}
	return nil
}

// of returns the events of type T the recorder got.
func of[T any](r *recorder) []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []T
	for _, e := range r.evs {
		if m, ok := e.Data.(T); ok {
			out = append(out, m)
		}
	}
	return out
}

// waveLimits is a Policies of fixed answers.
type waveLimits map[int32]*typesv1.Amount

func (w waveLimits) MaxConcurrency(string) map[int32]*typesv1.Amount { return w }

func count(n int32) *typesv1.Amount { return &typesv1.Amount{Value: &typesv1.Amount_Count{Count: n}} }

func percent(n int32) *typesv1.Amount {
	return &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: n}}
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
	seq := uint64(3)
	pub := &recorder{app: a, seq: &seq}
	a.SetScans(app.ScanOptions{Publisher: pub, Freezes: freezes{frozenFrom: t0.Add(time.Hour), frozenTo: t0.Add(2 * time.Hour)}, DailyAt: "03:00",
		Policies: waveLimits{1: count(100), 2: percent(100)}})
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
	// Every instance of a run in progress waits for its job's outcome: a scan leaves it out.
	plan, err := a.RequestScans(ctx, "acme", "during-runs", "admin@acme")
	require.NoError(t, err)
	require.Equal(t, app.ScanPlan{ScanID: "scan-during-runs", InRun: 123}, plan)
	require.Empty(t, of[*eventsv1.ScanRequested](pub))
	pub.evs = nil
	for i, run := range []string{"r1", "r2", "r3"} {
		require.NoError(t, a.Apply(ctx, ev(t, uint64(10+i), &eventsv1.RunCompleted{Tenant: "acme", RunId: run, Wave: int32(i + 1),
			State: typesv1.RunState_RUN_STATE_COMPLETED, CompletedAt: timestamppb.New(t0)}), true))
	}
	// A fourth run in progress: its one instance is left out; the others are scanned.
	seq = 20
	require.NoError(t, a.Apply(ctx, ev(t, 20, &eventsv1.RunStarted{Tenant: "acme", RunId: "r4", Wave: 1, BaselineId: "al-1", Groups: []*typesv1.InstanceGroup{
		{Location: loc("111111111111"), InstanceIds: []string{"busy-1"}}}}), true))

	plan, err = a.RequestScans(ctx, "acme", "manual-1", "admin@acme")
	require.NoError(t, err)
	require.Equal(t, app.ScanPlan{ScanID: "scan-manual-1", Instances: 122, Chunks: 4, Unlocated: 1, InRun: 1}, plan,
		"100 in one account: 2 chunks of 50; 20 in another; 2 Windows instances apart; busy-1 waits for its install")
	orders := of[*eventsv1.ScanOrdered](pub)
	require.Len(t, orders, 1)
	require.Equal(t, "admin@acme", orders[0].GetRequestedBy())
	require.Empty(t, of[*eventsv1.ScanRequested](pub), "nothing is requested before the releaser runs")

	// Wave 1 (max 100 at once) gets its two chunks of 50, wave 2 (100%) its chunk of 2; the
	// third chunk of wave 1 waits for outcomes.
	n, err := a.ReleaseScans(ctx, t0)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = a.ReleaseScans(ctx, t0)
	require.NoError(t, err)
	require.Zero(t, n, "100 of wave 1 in flight: no more")
	for i, id := range al[:19] {
		require.NoError(t, pub.Publish(ctx, ev(t, uint64(100+i), &eventsv1.ScanCompleted{Tenant: "acme", ScanId: "scan-manual-1", InstanceId: id})))
	}
	n, err = a.ReleaseScans(ctx, t0)
	require.NoError(t, err)
	require.Zero(t, n, "81 in flight + 20 is over 100")
	require.NoError(t, pub.Publish(ctx, ev(t, 200, &eventsv1.ScanFailed{Tenant: "acme", ScanId: "scan-manual-1", InstanceId: al[19], Reason: "no agent"})))
	n, err = a.ReleaseScans(ctx, t0.Add(90*time.Minute))
	require.NoError(t, err)
	require.Zero(t, n, "inside the freeze nothing is released")
	n, err = a.ReleaseScans(ctx, t0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "80 in flight + 20")
	got := map[string]int{}
	for _, m := range of[*eventsv1.ScanRequested](pub) {
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
	require.Len(t, pub.evs, 2, "one order per tenant")
	require.Equal(t, "daily-2026-11-24", pub.evs[0].Data.(*eventsv1.ScanOrdered).GetScanId())
	require.Equal(t, "acme", pub.evs[0].Tenant)
	require.NoError(t, a.DailyScans(ctx, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)))
	require.Len(t, pub.evs, 2, "once a day")
	require.NoError(t, a.DailyScans(ctx, time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)))
	require.Len(t, pub.evs, 4, "and again the next day")
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
