package domain_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

const (
	unknown      = typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN
	compliant    = typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT
	nonCompliant = typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT
)

func TestInstanceTransitions(t *testing.T) {
	fresh := domain.Instance{Tenant: "acme", ID: "i-1"}
	tests := []struct {
		name    string
		apply   func(domain.Instance) (domain.Instance, bool)
		from    domain.Instance
		want    domain.Instance
		changed bool
	}{
		{"a run puts a new instance in scope as unknown", func(i domain.Instance) (domain.Instance, bool) { return i.InScope(2, "run-1", 10) },
			fresh, domain.Instance{Tenant: "acme", ID: "i-1", Wave: 2, State: unknown, LastRun: "run-1", Seq: 10}, true},
		{"a new run keeps the last assessment and moves the wave", func(i domain.Instance) (domain.Instance, bool) { return i.InScope(3, "run-2", 20) },
			domain.Instance{Wave: 2, State: compliant, LastRun: "run-1", Seq: 15}, domain.Instance{Wave: 3, State: compliant, LastRun: "run-2", Seq: 20}, true},
		{"an install success makes it compliant", func(i domain.Instance) (domain.Instance, bool) { return i.Assess(compliant, 2, "run-1", 11) },
			domain.Instance{Wave: 2, State: unknown, LastRun: "run-1", Seq: 10}, domain.Instance{Wave: 2, State: compliant, LastRun: "run-1", Seq: 11}, true},
		{"a later failure makes it non-compliant", func(i domain.Instance) (domain.Instance, bool) { return i.Assess(nonCompliant, 2, "run-2", 30) },
			domain.Instance{Wave: 2, State: compliant, LastRun: "run-1", Seq: 11}, domain.Instance{Wave: 2, State: nonCompliant, LastRun: "run-2", Seq: 30}, true},
		{"a replayed outcome changes nothing", func(i domain.Instance) (domain.Instance, bool) { return i.Assess(nonCompliant, 2, "run-1", 11) },
			domain.Instance{Wave: 2, State: compliant, LastRun: "run-1", Seq: 11}, domain.Instance{Wave: 2, State: compliant, LastRun: "run-1", Seq: 11}, false},
		{"an older run start changes nothing", func(i domain.Instance) (domain.Instance, bool) { return i.InScope(1, "run-0", 5) },
			domain.Instance{Wave: 2, State: compliant, LastRun: "run-1", Seq: 11}, domain.Instance{Wave: 2, State: compliant, LastRun: "run-1", Seq: 11}, false},
		{"an outcome without a run start takes the outcome's wave", func(i domain.Instance) (domain.Instance, bool) { return i.Assess(compliant, 3, "run-9", 7) },
			fresh, domain.Instance{Tenant: "acme", ID: "i-1", Wave: 3, State: compliant, LastRun: "run-9", Seq: 7}, true},
		{"an outcome of another wave keeps the scope's wave", func(i domain.Instance) (domain.Instance, bool) { return i.Assess(compliant, 1, "run-0", 40) },
			domain.Instance{Wave: 2, State: unknown, LastRun: "run-2", Seq: 30}, domain.Instance{Wave: 2, State: compliant, LastRun: "run-0", Seq: 40}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := tt.apply(tt.from)
			require.Equal(t, tt.changed, changed)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestFailedPatches(t *testing.T) {
	results := []*typesv1.PatchResult{
		{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_FAILED, Error: "exit status 1: package conflict"},
		{PatchId: "p2", State: typesv1.PatchState_PATCH_STATE_MISSING},
		{PatchId: "p3", State: typesv1.PatchState_PATCH_STATE_FAILED},
		{PatchId: "p4", State: typesv1.PatchState_PATCH_STATE_INSTALLED},
	}
	got := domain.FailedPatches("i-1", 2, "run-1", "install failed", results)
	require.Equal(t, []domain.FailedPatch{
		{PatchID: "p1", InstanceID: "i-1", Wave: 2, RunID: "run-1", Error: "exit status 1: package conflict"},
		{PatchID: "p3", InstanceID: "i-1", Wave: 2, RunID: "run-1", Error: "install failed"},
	}, got, "only FAILED results count; one without error text takes the install's reason")
	require.Empty(t, domain.FailedPatches("i-1", 2, "run-1", "timed out", nil))

	list := []domain.FailedPatch{{InstanceID: "i-2", PatchID: "a"}, {InstanceID: "i-1", PatchID: "b"}, {InstanceID: "i-1", PatchID: "a"}}
	domain.SortFailedPatches(list)
	require.Equal(t, []domain.FailedPatch{{InstanceID: "i-1", PatchID: "a"}, {InstanceID: "i-1", PatchID: "b"}, {InstanceID: "i-2", PatchID: "a"}}, list)
}

func TestCoverage(t *testing.T) {
	tests := []struct {
		name  string
		waves []domain.WaveCoverage
		total domain.Coverage
		ratio float64
		order []int32
	}{
		{"nothing in scope is zero coverage", nil, domain.Coverage{}, 0, []int32{}},
		{"waves are summed and sorted", []domain.WaveCoverage{
			{Wave: 2, Coverage: domain.Coverage{InScope: 4, Compliant: 1, NonCompliant: 2, Unknown: 1}},
			{Wave: 1, Coverage: domain.Coverage{InScope: 4, Compliant: 4}},
		}, domain.Coverage{InScope: 8, Compliant: 5, NonCompliant: 2, Unknown: 1}, 0.625, []int32{1, 2}},
		{"an empty wave is left out", []domain.WaveCoverage{{Wave: 3}, {Wave: 1, Coverage: domain.Coverage{InScope: 2, Unknown: 2}}},
			domain.Coverage{InScope: 2, Unknown: 2}, 0, []int32{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := domain.NewReport("acme", tt.waves)
			require.Equal(t, tt.total, r.Total)
			require.InDelta(t, tt.ratio, r.Total.Ratio(), 1e-9)
			order := []int32{}
			for _, w := range r.Waves {
				order = append(order, w.Wave)
			}
			require.Equal(t, tt.order, order)
		})
	}
	var c domain.Coverage
	c.Add(compliant, 2)
	c.Add(nonCompliant, 1)
	c.Add(unknown, 1)
	require.Equal(t, domain.Coverage{InScope: 4, Compliant: 2, NonCompliant: 1, Unknown: 1}, c)
	require.InDelta(t, 0.5, c.Ratio(), 1e-9)
}

func TestValidateTenant(t *testing.T) {
	require.NoError(t, domain.ValidateTenant("acme-1"))
	for _, bad := range []string{"", "Acme", "-acme", "a.b", "a b"} {
		err := domain.ValidateTenant(bad)
		require.ErrorIs(t, err, domain.ErrInvalidArgument, bad)
		require.ErrorContains(t, err, "tenant: must match")
	}
}
