// Package domain holds reporting's compliance rules: how each event moves an instance's
// compliance state, which patches count as failed, and how coverage is computed. It knows
// nothing of NATS, Redis or gRPC.
//
// An instance is in scope once a run of its wave lists it (run.started). Its state is UNKNOWN
// until the first outcome, COMPLIANT after an install succeeded and NON_COMPLIANT after an install
// or its pre-patch snapshot failed (the baseline's patches are MISSING). A later run does not
// reset the state: the last assessment stands until a newer outcome replaces it, as AWS Patch
// Manager reports the last scan or install. Events apply in stream order only: each instance
// remembers the stream sequence of the last event applied to it and ignores anything not newer,
// so a replay or a redelivery changes nothing.
package domain

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Sentinel errors, aliases of the apierr ones the gRPC edge maps to status codes.
var (
	// ErrInvalidArgument means the request is malformed; the message names the field and rule.
	ErrInvalidArgument = apierr.ErrInvalidArgument
	// ErrUnavailable means the read models are still catching up with the stream.
	ErrUnavailable = apierr.ErrUnavailable
)

var tenantRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateTenant checks a tenant id; the error wraps ErrInvalidArgument and names the field.
func ValidateTenant(tenant string) error {
	if events.ValidateTenant(tenant) != nil {
		return fmt.Errorf("%w: tenant: must match %s (1-63 lower-case letters, digits or '-', not starting with '-'), got %q",
			ErrInvalidArgument, tenantRule, tenant)
	}
	return nil
}

// Instance is the compliance record of one instance of a tenant.
type Instance struct {
	Tenant string
	ID     string
	// Wave is the wave of the latest run that had the instance in scope.
	Wave  int32
	State typesv1.ComplianceState
	// LastRun is the run of the last event applied.
	LastRun string
	// Seq is the stream sequence of the last event applied; older events are ignored.
	Seq uint64
}

// InScope applies a run.started at stream sequence seq that lists the instance. It returns
// the new record and whether anything changed.
func (i Instance) InScope(wave int32, runID string, seq uint64) (Instance, bool) {
	if seq <= i.Seq {
		return i, false
	}
	i.Wave, i.LastRun, i.Seq = wave, runID, seq
	if i.State == typesv1.ComplianceState_COMPLIANCE_STATE_UNSPECIFIED {
		i.State = typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN
	}
	return i, true
}

// Assess applies an outcome (the state it leads to) at stream sequence seq. wave is the
// outcome's wave; it is used only for an instance no run.started put in scope.
func (i Instance) Assess(state typesv1.ComplianceState, wave int32, runID string, seq uint64) (Instance, bool) {
	if seq <= i.Seq {
		return i, false
	}
	if i.Wave == 0 {
		i.Wave = wave
	}
	i.State, i.LastRun, i.Seq = state, runID, seq
	return i, true
}

// FailedPatch is one patch that failed on one instance in one run.
type FailedPatch struct {
	PatchID    string `json:"-"`
	InstanceID string `json:"-"`
	Wave       int32  `json:"wave"`
	RunID      string `json:"run_id"`
	Error      string `json:"error"`
}

// FailedPatches picks the FAILED results of an install. A result without error text takes the
// install's reason.
func FailedPatches(instanceID string, wave int32, runID, reason string, results []*typesv1.PatchResult) []FailedPatch {
	var out []FailedPatch
	for _, r := range results {
		if r.GetState() != typesv1.PatchState_PATCH_STATE_FAILED || r.GetPatchId() == "" {
			continue
		}
		msg := r.GetError()
		if msg == "" {
			msg = reason
		}
		out = append(out, FailedPatch{PatchID: r.GetPatchId(), InstanceID: instanceID, Wave: wave, RunID: runID, Error: msg})
	}
	return out
}

// SortFailedPatches orders a listing by instance, then patch.
func SortFailedPatches(fps []FailedPatch) {
	sort.Slice(fps, func(a, b int) bool {
		if fps[a].InstanceID != fps[b].InstanceID {
			return fps[a].InstanceID < fps[b].InstanceID
		}
		return fps[a].PatchID < fps[b].PatchID
	})
}

// Coverage counts in-scope instances by state.
type Coverage struct {
	InScope      int
	Compliant    int
	NonCompliant int
	Unknown      int
}

// Add counts n instances in state.
func (c *Coverage) Add(state typesv1.ComplianceState, n int) {
	c.InScope += n
	switch state {
	case typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT:
		c.Compliant += n
	case typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT:
		c.NonCompliant += n
	default:
		c.Unknown += n
	}
}

// Plus returns the sum of c and o.
func (c Coverage) Plus(o Coverage) Coverage {
	return Coverage{
		InScope: c.InScope + o.InScope, Compliant: c.Compliant + o.Compliant,
		NonCompliant: c.NonCompliant + o.NonCompliant, Unknown: c.Unknown + o.Unknown,
	}
}

// Ratio is compliant / in scope, 0 when nothing is in scope.
func (c Coverage) Ratio() float64 {
	if c.InScope == 0 {
		return 0
	}
	return float64(c.Compliant) / float64(c.InScope)
}

// WaveCoverage is the coverage of one wave.
type WaveCoverage struct {
	Wave     int32
	Coverage Coverage
}

// Report is a tenant's compliance: in total and per wave (ascending, waves with instances only).
type Report struct {
	Tenant string
	Total  Coverage
	Waves  []WaveCoverage
}

// NewReport sums per-wave coverage into a report.
func NewReport(tenant string, waves []WaveCoverage) Report {
	r := Report{Tenant: tenant, Waves: []WaveCoverage{}}
	for _, w := range waves {
		if w.Coverage.InScope == 0 {
			continue
		}
		r.Waves = append(r.Waves, w)
		r.Total = r.Total.Plus(w.Coverage)
	}
	sort.Slice(r.Waves, func(a, b int) bool { return r.Waves[a].Wave < r.Waves[b].Wave })
	return r
}

// States are the instance states a coverage counts, in report order.
var States = []typesv1.ComplianceState{
	typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT,
	typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT,
	typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN,
}
