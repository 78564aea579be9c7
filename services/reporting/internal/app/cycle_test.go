package app_test

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// movingClock is a clock the test sets.
type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *movingClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func pinnedMsg(cycle, run string, at time.Time, pins ...*typesv1.BaselinePin) *eventsv1.CyclePinned {
	return &eventsv1.CyclePinned{Tenant: "acme", Cycle: cycle, RunId: run, PinnedAt: timestamppb.New(at), Pins: pins}
}

// TestTheCycleIsMeasuredAgainstItsPinUntilTheNextCycle: in December the cycle pins al-1; al-2
// (one more patch) approved later in December changes nothing, a scan requested then is against
// al-1; the first event of January keeps December's figures with its pin (a cycle snapshot)
// and measures against al-2, the newest approved, before January is pinned; the Windows family,
// which no pin names, is measured against its approved baseline throughout.
func TestTheCycleIsMeasuredAgainstItsPinUntilTheNextCycle(t *testing.T) {
	ctx := t.Context()
	clk := &movingClock{t: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	a := app.New(adapters.New(store.NewMemory()), tenants, slog.New(slog.NewTextHandler(io.Discard, nil)), clk.now)
	require.NoError(t, a.CaughtUp(ctx))
	seq := uint64(0)
	pub := &recorder{app: a, seq: &seq}
	a.SetScans(app.ScanOptions{Publisher: pub, Freezes: freezes{}, Policies: waveLimits{1: percent(100)}})
	applyCatalog(t, a, published("al-1", "al2023", 1, t0, "p1", "p2"), published("al-2", "al2023", 2, t0, "p1", "p2", "p3"),
		published("win-1", "win2022", 1, t0, "kb1"))
	apply := func(at time.Time, msgs ...proto.Message) {
		t.Helper()
		for _, m := range msgs {
			seq++
			e, err := events.New("acme", fmt.Sprintf("key-%d", seq), m)
			require.NoError(t, err)
			e.Sequence, e.Time = seq, at
			require.NoError(t, a.Apply(ctx, e, true))
		}
	}
	dec := func(day int) time.Time { return time.Date(2026, 12, day, 9, 0, 0, 0, time.UTC) }
	jan := func(day int) time.Time { return time.Date(2027, 1, day, 9, 0, 0, 0, time.UTC) }
	instance := func(id string) domain.Instance {
		t.Helper()
		r, err := a.InstancePatches(ctx, "acme", id)
		require.NoError(t, err)
		return r.Instance
	}
	loc := []*typesv1.InstanceGroup{{Location: &typesv1.Location{Account: "111111111111", Region: "eu-central-1"}, InstanceIds: []string{"i-1", "i-2", "w-1"}}}

	alPin := &typesv1.BaselinePin{OsFamily: "al2023", BaselineId: "al-1", Version: 1, PatchIds: []string{"p1", "p2"}}
	apply(dec(1), approvedMsg("al-1", "al2023", 1), approvedMsg("win-1", "win2022", 1))
	apply(dec(10), pinnedMsg("2026-12", "r1", dec(10), alPin),
		&eventsv1.RunStarted{Tenant: "acme", RunId: "r1", Wave: 1, BaselineId: "al-1", Groups: loc[:1], Pins: []*typesv1.BaselinePin{alPin}},
		succeeded("r1", 1, "i-1", "p1", "p2"), failed("r1", 1, "i-2", "p2"), succeeded("r1", 1, "w-1", "kb1"))
	// w-1 runs Windows: a scan says so (the run's baseline names the Amazon Linux family).
	apply(dec(10), &eventsv1.ScanCompleted{Tenant: "acme", ScanId: "s0", InstanceId: "w-1", OsFamily: "win2022",
		Results: []*typesv1.PatchResult{{PatchId: "kb1", State: typesv1.PatchState_PATCH_STATE_INSTALLED}}})
	apply(dec(11), &eventsv1.RunCompleted{Tenant: "acme", RunId: "r1", Wave: 1, State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: 3, Succeeded: 2, Failed: 1})
	december := domain.Coverage{InScope: 3, Compliant: 2, NonCompliant: 1}
	c, err := a.GetCompliance(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, december, c.Total)
	require.Equal(t, "al-1", instance("i-1").Baseline)
	require.Equal(t, "win-1", instance("w-1").Baseline, "a family the pin does not name: its approved baseline")

	// al-2 approved inside the pinned cycle: the cycle's pin stands.
	apply(dec(20), approvedMsg("al-2", "al2023", 2))
	c, err = a.GetCompliance(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, december, c.Total, "an approval after the pin counts from the next cycle")
	require.Equal(t, typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT, instance("i-1").State)
	scannedBy := func() map[string]string {
		t.Helper()
		n, err := a.ReleaseScans(ctx, clk.now())
		require.NoError(t, err)
		require.Equal(t, 2, n, "one chunk per family")
		out := map[string]string{}
		for _, sr := range of[*eventsv1.ScanRequested](pub) {
			out[sr.GetOsFamily()] = sr.GetBaselineId()
		}
		pub.evs = nil
		return out
	}
	clk.set(dec(21))
	_, err = a.RequestScans(ctx, "acme", "dec", "op")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"al2023": "al-1", "win2022": "win-1"}, scannedBy(), "a scan in the pinned cycle checks the pin")
	// The machines are as the run left them.
	installed := func(ids ...string) []*typesv1.PatchResult {
		var out []*typesv1.PatchResult
		for _, id := range ids {
			out = append(out, &typesv1.PatchResult{PatchId: id, State: typesv1.PatchState_PATCH_STATE_INSTALLED})
		}
		return out
	}
	apply(dec(21), &eventsv1.ScanCompleted{Tenant: "acme", ScanId: "scan-dec", InstanceId: "i-1", OsFamily: "al2023", Results: installed("p1", "p2")},
		&eventsv1.ScanCompleted{Tenant: "acme", ScanId: "scan-dec", InstanceId: "i-2", OsFamily: "al2023",
			Results: []*typesv1.PatchResult{{PatchId: "p2", State: typesv1.PatchState_PATCH_STATE_MISSING}}},
		&eventsv1.ScanCompleted{Tenant: "acme", ScanId: "scan-dec", InstanceId: "w-1", OsFamily: "win2022", Results: installed("kb1")})
	c, err = a.GetCompliance(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, december, c.Total)

	// A scan ordered in January (not pinned yet) is January's first event: December is kept
	// with its pin, and the scan checks what January's waves will install (al-2).
	clk.set(jan(2))
	_, err = a.RequestScans(ctx, "acme", "jan", "op")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"al2023": "al-2", "win2022": "win-1"}, scannedBy())
	c, err = a.GetCompliance(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, domain.Coverage{InScope: 3, Compliant: 1, NonCompliant: 2}, c.Total)
	require.Equal(t, "al-2", instance("i-1").Baseline)
	require.Equal(t, []string{"p3"}, instance("i-1").Missing)
	h, err := a.GetHistory(ctx, "acme", time.Time{}, time.Time{})
	require.NoError(t, err)
	decPins := []domain.Pin{{OSFamily: "al2023", BaselineID: "al-1", Version: 1}}
	require.Len(t, h.Cycles, 1)
	require.Equal(t, "2026-12", h.Cycles[0].Key)
	require.Equal(t, "2026-12", h.Cycles[0].Cycle)
	require.Equal(t, decPins, h.Cycles[0].Pins)
	require.Equal(t, december, h.Cycles[0].Report.Total)
	require.Equal(t, time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC), h.Cycles[0].At)
	require.Len(t, h.Runs, 1)
	require.Equal(t, decPins, h.Runs[0].Pins, "the run's snapshot names the pin it was measured against")
	require.Equal(t, december, h.Runs[0].Report.Total)
	for _, d := range h.Days {
		require.Equal(t, "2026-12", d.Cycle, "day %s", d.Key)
	}
	require.Equal(t, "2027-01", h.Current.Cycle)
	require.Empty(t, h.Current.Pins, "January is not pinned yet")

	// January's pin (al-2) changes nothing that is measured; a late repeat of December's pin
	// is ignored.
	apply(jan(12), pinnedMsg("2027-01", "r2", jan(12), &typesv1.BaselinePin{OsFamily: "al2023", BaselineId: "al-2", Version: 2}),
		pinnedMsg("2026-12", "r1", dec(10), alPin))
	h2, err := a.GetHistory(ctx, "acme", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, h.Cycles, h2.Cycles)
	require.Equal(t, []domain.Pin{{OSFamily: "al2023", BaselineID: "al-2", Version: 2}}, h2.Current.Pins)
	require.Equal(t, domain.Coverage{InScope: 3, Compliant: 1, NonCompliant: 2}, h2.Current.Report.Total)

	// A pin the event does not describe fully is refused, naming the field.
	seq++
	e, err := events.New("acme", "bad", pinnedMsg("2027-02", "r3", jan(20), &typesv1.BaselinePin{OsFamily: "al2023"}))
	require.NoError(t, err)
	e.Sequence, e.Time = seq, jan(20)
	require.ErrorContains(t, a.Apply(ctx, e, true), "pins: os_family and baseline_id are required")
}
