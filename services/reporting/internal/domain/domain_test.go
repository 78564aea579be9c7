package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

const (
	unknown      = typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN
	compliant    = typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT
	nonCompliant = typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT

	installed = typesv1.PatchState_PATCH_STATE_INSTALLED
	other     = typesv1.PatchState_PATCH_STATE_INSTALLED_OTHER
	pending   = typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT
	rejected  = typesv1.PatchState_PATCH_STATE_INSTALLED_REJECTED
	missing   = typesv1.PatchState_PATCH_STATE_MISSING
	failed    = typesv1.PatchState_PATCH_STATE_FAILED
	na        = typesv1.PatchState_PATCH_STATE_NOT_APPLICABLE
)

var t0 = time.Date(2026, 11, 10, 3, 0, 0, 0, time.UTC)

func res(id string, s typesv1.PatchState, errText string) *typesv1.PatchResult {
	return &typesv1.PatchResult{PatchId: id, State: s, Error: errText}
}

func base(id string, patches ...string) *domain.Baseline {
	b := &domain.Baseline{ID: id, OSFamily: "al2023"}
	for _, p := range patches {
		b.Patches = append(b.Patches, domain.BaselinePatch{ID: p})
	}
	return b
}

func TestEvaluationAgainstTheBaseline(t *testing.T) {
	inst := func(outcome domain.Outcome, results ...*typesv1.PatchResult) domain.Instance {
		in, _ := domain.Instance{Tenant: "acme", ID: "i-1"}.Assess(domain.Assessment{Outcome: outcome, RunID: "r1", At: t0, Reason: "exit 1", Results: results}, 1)
		return in
	}
	tests := []struct {
		name    string
		in      domain.Instance
		b       *domain.Baseline
		state   typesv1.ComplianceState
		missing []string
	}{
		{"never assessed is unknown", domain.Instance{}, base("b1", "p1"), unknown, nil},
		{"every baseline patch installed, installed otherwise or not applicable is compliant",
			inst(domain.OutcomeInstalled, res("p1", installed, ""), res("p2", other, ""), res("p3", na, "")), base("b1", "p1", "p2", "p3"), compliant, nil},
		{"a baseline patch without a result is missing",
			inst(domain.OutcomeInstalled, res("p1", installed, "")), base("b2", "p1", "p2"), nonCompliant, []string{"p2"}},
		{"pending reboot, rejected, missing and failed are not compliant (AWS's default)",
			inst(domain.OutcomeScanned, res("p1", pending, ""), res("p2", rejected, ""), res("p3", missing, ""), res("p4", failed, "x")),
			base("b1", "p1", "p2", "p3", "p4"), nonCompliant, []string{"p1", "p2", "p3", "p4"}},
		{"a result outside the baseline does not count against it",
			inst(domain.OutcomeInstalled, res("p1", installed, ""), res("old", failed, "x")), base("b1", "p1"), compliant, nil},
		{"a failed install is non-compliant even with every patch in place",
			inst(domain.OutcomeInstallFailed, res("p1", installed, "")), base("b1", "p1"), nonCompliant, nil},
		{"without a baseline the recorded results decide",
			inst(domain.OutcomeInstalled, res("p1", installed, ""), res("p2", missing, "")), nil, nonCompliant, []string{"p2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.Evaluate(tt.b, 5)
			require.Equal(t, tt.state, got.State)
			require.Equal(t, tt.missing, got.Missing)
			require.Equal(t, uint64(5), got.Seq)
		})
	}
}

func TestAssessments(t *testing.T) {
	fresh := domain.Instance{Tenant: "acme", ID: "i-1"}
	in, changed := fresh.InScope(2, "r1", "b1", "al2023", 10)
	require.True(t, changed)
	require.Equal(t, domain.Instance{Tenant: "acme", ID: "i-1", Wave: 2, LastRun: "r1", RunBaseline: "b1", OSFamily: "al2023", Seq: 10}, in)
	_, changed = in.InScope(1, "r0", "b0", "x", 9)
	require.False(t, changed, "an older run start changes nothing")

	t1 := t0.Add(time.Hour)
	failedOnce, changed := in.Assess(domain.Assessment{Outcome: domain.OutcomeInstallFailed, RunID: "r1", At: t0, Reason: "exit 1",
		Results: []*typesv1.PatchResult{res("p1", failed, ""), res("p2", installed, "")}}, 11)
	require.True(t, changed)
	require.Equal(t, []domain.FailedPatch{{PatchID: "p1", InstanceID: "i-1", Wave: 2, RunID: "r1", Error: "exit 1", FirstSeen: t0, OSFamily: "al2023"}},
		failedOnce.Failed(), "a FAILED result without error text takes the outcome's reason")
	_, changed = failedOnce.Assess(domain.Assessment{Outcome: domain.OutcomeInstalled, At: t1}, 11)
	require.False(t, changed, "a replayed outcome changes nothing")

	again, _ := failedOnce.Assess(domain.Assessment{Outcome: domain.OutcomeInstallFailed, RunID: "r2", At: t1,
		Results: []*typesv1.PatchResult{res("p1", failed, "conflict")}}, 12)
	require.Equal(t, t0, again.Failed()[0].FirstSeen, "a patch still failing keeps its first-seen time")
	require.Equal(t, "conflict", again.Failed()[0].Error)
	require.Equal(t, installed, again.Patches["p2"].State, "an install updates the patches it reports, the others stand")

	scanned, _ := again.Assess(domain.Assessment{Outcome: domain.OutcomeScanned, RunID: "scan-1", At: t1, OSFamily: "al2023",
		Results: []*typesv1.PatchResult{res("p1", missing, ""), res("p3", missing, "")}, Replace: true}, 13)
	require.Len(t, scanned.Patches, 2, "a scan is the whole picture of the machine: p2, which it does not name, is forgotten")
	require.Equal(t, again.Failed(), scanned.Failed(), "a failed patch a scan sees missing stays failed, with its first-seen time")
	fixedByScan, _ := scanned.Assess(domain.Assessment{Outcome: domain.OutcomeScanned, RunID: "scan-2", At: t1,
		Results: []*typesv1.PatchResult{res("p1", installed, "")}, Replace: true}, 14)
	require.Empty(t, fixedByScan.Failed())
	unreachable, _ := fixedByScan.Assess(domain.Assessment{Outcome: domain.OutcomeUnreachable, RunID: "scan-3", At: t1, Reason: "no agent"}, 15)
	require.Equal(t, unknown, unreachable.Evaluate(nil, 15).State, "an instance a scan cannot reach is unknown")
	require.Equal(t, fixedByScan.Patches, unreachable.Patches, "its last known patches are kept")
	require.Empty(t, again.Patches["p3"], "assessing never changes the record it starts from")

	views := scanned.PatchViews(base("b2", "p3", "p4"))
	require.Equal(t, []domain.PatchView{
		{PatchID: "p1", State: failed, Error: "conflict", RunID: "r2", Since: t0},
		{PatchID: "p3", State: missing, RunID: "scan-1", Since: t1, InBaseline: true},
		{PatchID: "p4", State: missing, InBaseline: true},
	}, views)
}

func TestCoverage(t *testing.T) {
	tests := []struct {
		name   string
		groups []domain.GroupCoverage
		total  domain.Coverage
		ratio  float64
		waves  []int32
		fams   []string
	}{
		{"nothing in scope is zero coverage", nil, domain.Coverage{}, 0, []int32{}, []string{}},
		{"groups are summed per wave and per OS family, sorted", []domain.GroupCoverage{
			{Wave: 2, OSFamily: "win2022", Coverage: domain.Coverage{InScope: 4, Compliant: 1, NonCompliant: 2, Unknown: 1}},
			{Wave: 1, OSFamily: "al2023", Coverage: domain.Coverage{InScope: 4, Compliant: 4}},
			{Wave: 2, OSFamily: "al2023", Coverage: domain.Coverage{InScope: 0}},
		}, domain.Coverage{InScope: 8, Compliant: 5, NonCompliant: 2, Unknown: 1}, 0.625, []int32{1, 2}, []string{"al2023", "win2022"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := domain.NewReport("acme", tt.groups)
			require.Equal(t, tt.total, r.Total)
			require.InDelta(t, tt.ratio, r.Total.Ratio(), 1e-9)
			waves, fams := []int32{}, []string{}
			for _, w := range r.Waves {
				waves = append(waves, w.Wave)
			}
			for _, f := range r.Families {
				fams = append(fams, f.OSFamily)
			}
			require.Equal(t, tt.waves, waves)
			require.Equal(t, tt.fams, fams)
		})
	}
	var c domain.Coverage
	c.Add(compliant, 2)
	c.Add(nonCompliant, 1)
	c.Add(unknown, 1)
	require.Equal(t, domain.Coverage{InScope: 4, Compliant: 2, NonCompliant: 1, Unknown: 1}, c)
	require.InDelta(t, 0.5, c.Ratio(), 1e-9)
	require.Equal(t, int32(30), domain.AgeDays(t0, t0.Add(30*24*time.Hour+time.Hour)))
	require.Zero(t, domain.AgeDays(t0, t0.Add(-time.Hour)))
}

func TestValidateTenant(t *testing.T) {
	require.NoError(t, domain.ValidateTenant("acme-1"))
	for _, bad := range []string{"", "Acme", "-acme", "a.b", "a b"} {
		err := domain.ValidateTenant(bad)
		require.ErrorIs(t, err, domain.ErrInvalidArgument, bad)
		require.ErrorContains(t, err, "tenant: must match")
	}
}

// TestAnEvaluatedInstanceSharesNothingThatChanges: Evaluate's result shares the patches it only
// reads; a later assessment of it leaves the evaluated instance before it as it was.
func TestAnEvaluatedInstanceSharesNothingThatChanges(t *testing.T) {
	b := &domain.Baseline{ID: "b1", Patches: []domain.BaselinePatch{{ID: "p1"}}}
	in, _ := domain.Instance{Tenant: "acme", ID: "i-1"}.Assess(domain.Assessment{Outcome: domain.OutcomeInstalled, RunID: "r1", At: t0,
		Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_INSTALLED}}}, 1)
	evaluated := in.Evaluate(b, 1)
	require.Equal(t, typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT, evaluated.State)
	later, _ := evaluated.Assess(domain.Assessment{Outcome: domain.OutcomeInstallFailed, RunID: "r2", At: t0, Reason: "exit 1",
		Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_FAILED}}}, 2)
	require.Equal(t, typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT, later.Evaluate(b, 2).State)
	require.Equal(t, typesv1.PatchState_PATCH_STATE_INSTALLED, evaluated.Patches["p1"].State)
	require.Equal(t, typesv1.PatchState_PATCH_STATE_INSTALLED, in.Patches["p1"].State)
	require.Equal(t, typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT, evaluated.Evaluate(b, 2).State)
}
