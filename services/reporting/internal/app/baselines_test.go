package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

func published(id, family string, version int32, at time.Time, patches ...string) *eventsv1.BaselinePublished {
	m := &eventsv1.BaselinePublished{BaselineId: id, OsFamily: family, Version: version, PublishedAt: timestamppb.New(at)}
	for i, p := range patches {
		m.Patches = append(m.Patches, &typesv1.Patch{Id: p, OsFamily: family, Severity: typesv1.Severity(1 + i%4)})
	}
	return m
}

func approvedMsg(id, family string, version int32) *eventsv1.BaselineApproved {
	return &eventsv1.BaselineApproved{Tenant: "acme", BaselineId: id, OsFamily: family, Version: version, ApprovedAt: timestamppb.New(t0)}
}

// applyCatalog feeds catalog events to the baselines projection.
func applyCatalog(t *testing.T, a *app.Application, msgs ...proto.Message) {
	t.Helper()
	for i, m := range msgs {
		e, err := events.New("", fmt.Sprintf("cat-%d", i), m)
		require.NoError(t, err)
		e.Sequence, e.Time = uint64(i+1), t0
		require.NoError(t, a.ApplyCatalog(t.Context(), e, false))
	}
	require.NoError(t, a.CatalogCaughtUp(t.Context()))
}

func TestANewApprovedBaselineMakesInstancesThatMissItsPatchesNonCompliant(t *testing.T) {
	ctx := t.Context()
	a := newApp(t)
	day := 24 * time.Hour
	applyCatalog(t, a,
		published("al-1", "al2023", 1, t0.Add(-40*day), "p1", "p2"),
		published("al-2", "al2023", 2, t0.Add(-10*day), "p1", "p2", "p3"),
		published("win-1", "win2022", 1, t0.Add(-5*day), "kb1"),
		&eventsv1.PatchCertified{PatchId: "p3", Step: &typesv1.CertificationStep{At: timestamppb.New(t0.Add(-12 * day))}},
	)
	run := started("r1", 1, "i-1", "i-2", "i-3")
	run.BaselineId = "al-1"
	winRun := started("r2", 2, "w-1")
	winRun.BaselineId = "win-1"
	seq := uint64(0)
	apply := func(msgs ...proto.Message) {
		for _, m := range msgs {
			seq++
			require.NoError(t, a.Apply(ctx, ev(t, seq, m), true))
		}
	}
	apply(approvedMsg("al-1", "al2023", 1), run, winRun,
		succeeded("r1", 1, "i-1", "p1", "p2"), succeeded("r1", 1, "i-2", "p1", "p2", "p3"), failed("r1", 1, "i-3", "p2"),
		succeeded("r2", 2, "w-1", "kb1"),
		&eventsv1.RunCompleted{Tenant: "acme", RunId: "r1", Wave: 1, State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: 3, Succeeded: 2, Failed: 1})

	c, err := a.GetCompliance(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, domain.Coverage{InScope: 4, Compliant: 3, NonCompliant: 1}, c.Total)
	require.Equal(t, []domain.FamilyCoverage{
		{OSFamily: "al2023", Coverage: domain.Coverage{InScope: 3, Compliant: 2, NonCompliant: 1}},
		{OSFamily: "win2022", Coverage: domain.Coverage{InScope: 1, Compliant: 1}},
	}, c.Families)

	// al-2 adds p3: i-1 misses it, i-2 has it; the Windows instance is not touched.
	apply(approvedMsg("al-2", "al2023", 2))
	c, err = a.GetCompliance(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, []domain.FamilyCoverage{
		{OSFamily: "al2023", Coverage: domain.Coverage{InScope: 3, Compliant: 1, NonCompliant: 2}},
		{OSFamily: "win2022", Coverage: domain.Coverage{InScope: 1, Compliant: 1}},
	}, c.Families)
	// An older version approved late does not replace the newest.
	apply(approvedMsg("al-1", "al2023", 1))
	c2, err := a.GetCompliance(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, c.Families, c2.Families)

	non, next, err := a.ListInstances(ctx, "acme", app.InstanceFilter{States: []typesv1.ComplianceState{typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT}}, app.Page{Size: 1})
	require.NoError(t, err)
	require.Len(t, non, 1)
	require.Equal(t, "i-1", non[0].ID)
	require.Equal(t, []string{"p3"}, non[0].Missing)
	require.Equal(t, "al-2", non[0].Baseline)
	non, next, err = a.ListInstances(ctx, "acme", app.InstanceFilter{States: []typesv1.ComplianceState{typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT}}, app.Page{Size: 1, Token: next})
	require.NoError(t, err)
	require.Equal(t, "i-3", non[0].ID)
	require.Empty(t, next)

	rep, err := a.InstancePatches(ctx, "acme", "i-1")
	require.NoError(t, err)
	states := map[string]typesv1.PatchState{}
	for _, p := range rep.Patches {
		states[p.PatchID] = p.State
		require.True(t, p.InBaseline)
	}
	require.Equal(t, map[string]typesv1.PatchState{"p1": typesv1.PatchState_PATCH_STATE_INSTALLED, "p2": typesv1.PatchState_PATCH_STATE_INSTALLED,
		"p3": typesv1.PatchState_PATCH_STATE_MISSING}, states)

	ag, err := a.GetAgeing(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, []domain.AgeingEntry{
		{PatchID: "p3", OSFamily: "al2023", BaselineID: "al-2", Severity: typesv1.Severity_SEVERITY_HIGH, CertifiedAt: t0.Add(-12 * day), Days: 12, Instances: 2},
		{PatchID: "p1", OSFamily: "al2023", BaselineID: "al-2", Severity: typesv1.Severity_SEVERITY_LOW, CertifiedAt: t0.Add(-10 * day), Days: 10, Instances: 1},
		{PatchID: "p2", OSFamily: "al2023", BaselineID: "al-2", Severity: typesv1.Severity_SEVERITY_MEDIUM, CertifiedAt: t0.Add(-10 * day), Days: 10, Instances: 1},
	}, ag.Patches, "i-3 (failed install) misses p1, p2 and p3; i-1 misses p3; a patch without a certification time ages from its baseline's publication")
	require.Equal(t, []app.SeverityAgeing{
		{Severity: typesv1.Severity_SEVERITY_HIGH, Patches: 1, Instances: 2, OldestDays: 12},
		{Severity: typesv1.Severity_SEVERITY_MEDIUM, Patches: 1, Instances: 1, OldestDays: 10},
		{Severity: typesv1.Severity_SEVERITY_LOW, Patches: 1, Instances: 1, OldestDays: 10},
	}, ag.BySeverity)

	rr, err := a.GetRun(ctx, "acme", "r1", app.Page{})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, rr.Run.State)
	require.Equal(t, "al-1", rr.Run.BaselineID)
	require.Equal(t, map[typesv1.JobState]int{typesv1.JobState_JOB_STATE_SUCCEEDED: 2, typesv1.JobState_JOB_STATE_FAILED: 1}, rr.Counts)
	require.Equal(t, []app.Job{{"i-1", typesv1.JobState_JOB_STATE_SUCCEEDED}, {"i-2", typesv1.JobState_JOB_STATE_SUCCEEDED}, {"i-3", typesv1.JobState_JOB_STATE_FAILED}}, rr.Jobs)

	h, err := a.GetHistory(ctx, "acme", time.Time{}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, h.Runs, 1)
	require.Equal(t, "r1", h.Runs[0].Key)
	require.Equal(t, domain.Coverage{InScope: 4, Compliant: 3, NonCompliant: 1}, h.Runs[0].Report.Total, "the run's snapshot keeps its figures after the new baseline")
	require.Equal(t, c.Report, h.Current.Report)
}

func TestADaySnapshotIsKeptWhenTheNextDayBegins(t *testing.T) {
	ctx := t.Context()
	a := newApp(t)
	day1 := time.Date(2026, 10, 5, 22, 0, 0, 0, time.UTC)
	at := func(seq uint64, when time.Time, m proto.Message) {
		e := ev(t, seq, m)
		e.Time = when
		require.NoError(t, a.Apply(ctx, e, true))
	}
	at(1, day1, started("r1", 1, "i-1", "i-2"))
	at(2, day1.Add(time.Hour), succeeded("r1", 1, "i-1"))
	at(3, day1.Add(3*time.Hour), succeeded("r1", 1, "i-2")) // the next day
	at(3, day1.Add(3*time.Hour), succeeded("r1", 1, "i-2")) // replayed
	h, err := a.GetHistory(ctx, "acme", day1.Add(-time.Hour), t0)
	require.NoError(t, err)
	require.Len(t, h.Days, 1)
	require.Equal(t, "2026-10-05", h.Days[0].Key)
	require.Equal(t, domain.Coverage{InScope: 2, Compliant: 1, Unknown: 1}, h.Days[0].Report.Total)
	require.Equal(t, domain.Coverage{InScope: 2, Compliant: 2}, h.Current.Report.Total)
	none, err := a.GetHistory(ctx, "acme", day1.Add(48*time.Hour), t0)
	require.NoError(t, err)
	require.Empty(t, none.Days)
}

// A unit of work keeps the baselines and approvals it read: a batch that approves a newer
// baseline and then saves instances must measure them against it, as one event at a time does.
func TestABatchMeasuresInstancesAgainstTheApprovalItWrites(t *testing.T) {
	ctx := t.Context()
	day := 24 * time.Hour
	run := started("r1", 1, "i-1", "i-2", "i-3")
	run.BaselineId = "al-1"
	msgs := []proto.Message{
		approvedMsg("al-1", "al2023", 1), run,
		succeeded("r1", 1, "i-1", "p1", "p2"),
		approvedMsg("al-2", "al2023", 2),
		succeeded("r1", 1, "i-2", "p1", "p2"), succeeded("r1", 1, "i-3", "p1", "p2", "p3"),
	}
	var evs []*events.Event
	for i, m := range msgs {
		evs = append(evs, ev(t, uint64(i+1), m))
	}
	results := map[string]app.Compliance{}
	for _, mode := range []string{"one event at a time", "one batch"} {
		a := newApp(t)
		applyCatalog(t, a,
			published("al-1", "al2023", 1, t0.Add(-40*day), "p1", "p2"),
			published("al-2", "al2023", 2, t0.Add(-10*day), "p1", "p2", "p3"))
		if mode == "one batch" {
			require.NoError(t, a.ApplyBatch(ctx, evs, true))
		} else {
			for _, e := range evs {
				require.NoError(t, a.Apply(ctx, e, true))
			}
		}
		c, err := a.GetCompliance(ctx, "acme")
		require.NoError(t, err)
		results[mode] = c
	}
	require.Equal(t, domain.Coverage{InScope: 3, Compliant: 1, NonCompliant: 2}, results["one batch"].Total,
		"i-1 and i-2 miss al-2's p3")
	require.Equal(t, results["one event at a time"], results["one batch"])
}
