// Package domain holds reporting's compliance rules: how each event moves an instance's
// per-patch results, how an instance is measured against the baseline that applies to it, and
// how coverage, failed patches and ageing are computed. It knows nothing of NATS, Redis or gRPC.
//
// An instance is in scope once a run of its wave lists it (run.started). Its state is UNKNOWN
// until the first assessment (an install outcome, a failed pre-patch snapshot or a scan). Each
// assessment records per-patch results in AWS's vocabulary (INSTALLED, INSTALLED_OTHER,
// INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED, MISSING, FAILED, NOT_APPLICABLE); the instance is
// then measured against the baseline that applies to it (Evaluate): COMPLIANT when every patch
// of that baseline is INSTALLED, INSTALLED_OTHER or NOT_APPLICABLE, NON_COMPLIANT otherwise (a
// patch without a result is MISSING). A failed install or snapshot keeps the instance
// NON_COMPLIANT until a later install or scan says otherwise. Events apply in stream order
// only: each instance remembers the stream sequence of the last event applied to it and ignores
// anything not newer, so a replay or a redelivery changes nothing.
package domain

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"time"

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
	// ErrNotFound means the thing asked for is not in the read model.
	ErrNotFound = apierr.ErrNotFound
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

// UnknownFamily is the OS family of an instance no baseline or scan has named a family for.
const UnknownFamily = "unknown"

// Outcome is the kind of the last assessment of an instance.
type Outcome int

// Outcomes.
const (
	// OutcomeNone: never assessed.
	OutcomeNone Outcome = iota
	// OutcomeInstalled: an install succeeded.
	OutcomeInstalled
	// OutcomeInstallFailed: an install failed (or timed out).
	OutcomeInstallFailed
	// OutcomeSnapshotFailed: the pre-patch snapshot failed, nothing was installed.
	OutcomeSnapshotFailed
	// OutcomeScanned: a scan read the patches on the machine.
	OutcomeScanned
	// OutcomeUnreachable: the last scan could not assess the instance (no agent, stopped): its
	// state is UNKNOWN until a later assessment; its last known patches are kept.
	OutcomeUnreachable
)

// PatchStatus is the last known state of one patch on one instance.
type PatchStatus struct {
	State typesv1.PatchState `json:"s"`
	// Error is the failure text of a FAILED patch.
	Error string `json:"e,omitempty"`
	// RunID is the run (or scan) that reported it.
	RunID string `json:"r,omitempty"`
	// Since is when the patch was first seen in State (for FAILED: the first-seen time).
	Since time.Time `json:"t"`
}

// Compliant says whether a patch state counts as compliant: installed (by us or otherwise) or
// not applicable. INSTALLED_PENDING_REBOOT and INSTALLED_REJECTED do not (AWS's default).
func Compliant(s typesv1.PatchState) bool {
	switch s {
	case typesv1.PatchState_PATCH_STATE_INSTALLED, typesv1.PatchState_PATCH_STATE_INSTALLED_OTHER,
		typesv1.PatchState_PATCH_STATE_NOT_APPLICABLE:
		return true
	}
	return false
}

// Instance is the compliance record of one instance of a tenant.
type Instance struct {
	Tenant string `json:"-"`
	ID     string `json:"-"`
	// Wave is the wave of the latest run that had the instance in scope.
	Wave int32 `json:"w"`
	// OSFamily is the instance's OS family (from its run's baseline or a scan); UnknownFamily
	// when nothing named it.
	OSFamily string `json:"f"`
	// RunBaseline is the baseline of the latest run that had the instance in scope.
	RunBaseline string `json:"rb,omitempty"`
	// Account and Region locate the instance (from its latest run), so it can be scanned.
	Account string `json:"ac,omitempty"`
	Region  string `json:"rg,omitempty"`
	// LastRun is the run (or scan) of the last event applied.
	LastRun string `json:"r,omitempty"`
	// Outcome is the kind of the last assessment, AssessedAt its time and Reason the failure
	// text of a failed one.
	Outcome    Outcome   `json:"o"`
	AssessedAt time.Time `json:"a"`
	Reason     string    `json:"x,omitempty"`
	// Patches are the last known per-patch results.
	Patches map[string]PatchStatus `json:"p,omitempty"`
	// Seq is the stream sequence of the last event applied; older events are ignored.
	Seq uint64 `json:"q"`

	// State, Baseline and Missing are derived by Evaluate and stored for the queries.
	State typesv1.ComplianceState `json:"c"`
	// Baseline is the baseline the instance was measured against; empty when none applies.
	Baseline string `json:"b,omitempty"`
	// Missing lists the patches that keep the instance from compliance, sorted.
	Missing []string `json:"m,omitempty"`
}

// Family returns the instance's OS family, UnknownFamily when none is known.
func (i Instance) Family() string {
	if i.OSFamily == "" {
		return UnknownFamily
	}
	return i.OSFamily
}

// Clone returns a copy that shares nothing with i.
func (i Instance) Clone() Instance {
	i.Patches = maps.Clone(i.Patches)
	i.Missing = slices.Clone(i.Missing)
	return i
}

// InScope applies a run.started at stream sequence seq that lists the instance: its wave, the
// run's baseline and, when the baseline names one, its OS family. It returns the new record
// and whether anything changed; the caller evaluates it.
func (i Instance) InScope(wave int32, runID, runBaseline, family string, seq uint64) (Instance, bool) {
	if seq <= i.Seq {
		return i, false
	}
	i = i.Clone()
	i.Wave, i.LastRun, i.Seq, i.RunBaseline = wave, runID, seq, runBaseline
	if family != "" {
		i.OSFamily = family
	}
	return i, true
}

// Located sets where the instance lives, when its run named it.
func (i Instance) Located(account, region string) Instance {
	if account != "" {
		i.Account, i.Region = account, region
	}
	return i
}

// Assessment is one outcome for one instance.
type Assessment struct {
	Outcome Outcome
	// Wave of the outcome; used only for an instance no run.started put in scope.
	Wave  int32
	RunID string
	At    time.Time
	// Reason is the failure text of a failed outcome; a FAILED result without error text
	// takes it.
	Reason string
	// Results are the per-patch results reported.
	Results []*typesv1.PatchResult
	// Replace: the results are the whole picture of the machine (a scan), not only the
	// patches the install touched, so patches they do not name are forgotten.
	Replace bool
	// OSFamily, when the outcome names one (a scan).
	OSFamily string
}

// Assess applies an outcome at stream sequence seq. It returns the new record and whether
// anything changed; the caller evaluates it.
func (i Instance) Assess(a Assessment, seq uint64) (Instance, bool) {
	if seq <= i.Seq {
		return i, false
	}
	prev := i.Patches
	i = i.Clone()
	if i.Wave == 0 {
		i.Wave = a.Wave
	}
	if a.OSFamily != "" {
		i.OSFamily = a.OSFamily
	}
	i.Outcome, i.AssessedAt, i.LastRun, i.Seq = a.Outcome, a.At.UTC(), a.RunID, seq
	i.Reason = ""
	if a.Outcome == OutcomeInstallFailed || a.Outcome == OutcomeSnapshotFailed {
		i.Reason = a.Reason
	}
	if a.Outcome == OutcomeUnreachable {
		i.Reason = a.Reason
		return i, true
	}
	if a.Replace {
		i.Patches = nil
	}
	for _, r := range a.Results {
		if r.GetPatchId() == "" || r.GetState() == typesv1.PatchState_PATCH_STATE_UNSPECIFIED {
			continue
		}
		ps := PatchStatus{State: r.GetState(), RunID: a.RunID, Since: a.At.UTC()}
		if ps.State == typesv1.PatchState_PATCH_STATE_FAILED {
			ps.Error = r.GetError()
			if ps.Error == "" {
				ps.Error = a.Reason
			}
		}
		old, had := prev[r.GetPatchId()]
		if had && old.State == typesv1.PatchState_PATCH_STATE_FAILED && ps.State == typesv1.PatchState_PATCH_STATE_MISSING {
			// A scan sees a failed patch as missing: it stays FAILED, with its error and
			// first-seen time, until an assessment finds it installed (or not applicable).
			ps = old
		}
		if had && old.State == ps.State {
			ps.Since = old.Since
		}
		if i.Patches == nil {
			i.Patches = map[string]PatchStatus{}
		}
		i.Patches[r.GetPatchId()] = ps
	}
	return i, true
}

// Evaluate measures the instance against b, the baseline that applies to it (nil: none is
// known, and the instance is measured against its recorded results only), and sets State,
// Baseline and Missing. seq, when newer, becomes the instance's sequence (a re-evaluation
// after an approval counts as applying that event). The result shares i's Patches, which it
// only reads (every method that changes them clones first, as Assess does); Missing is new.
func (i Instance) Evaluate(b *Baseline, seq uint64) Instance {
	if seq > i.Seq {
		i.Seq = seq
	}
	i.Baseline, i.Missing = "", nil
	if b != nil {
		i.Baseline = b.ID
	}
	if i.Outcome == OutcomeNone || i.Outcome == OutcomeUnreachable {
		i.State = typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN
		return i
	}
	if b != nil {
		for _, p := range b.Patches {
			if !Compliant(i.Patches[p.ID].State) {
				i.Missing = append(i.Missing, p.ID)
			}
		}
	} else {
		for id, ps := range i.Patches {
			if !Compliant(ps.State) {
				i.Missing = append(i.Missing, id)
			}
		}
	}
	sort.Strings(i.Missing)
	switch {
	case i.Outcome == OutcomeInstallFailed || i.Outcome == OutcomeSnapshotFailed || len(i.Missing) > 0:
		i.State = typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT
	default:
		i.State = typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT
	}
	return i
}

// PatchView is one patch of an instance as a report shows it.
type PatchView struct {
	PatchID string
	State   typesv1.PatchState
	Error   string
	RunID   string
	Since   time.Time
	// InBaseline: the patch is in the baseline the instance is measured against.
	InBaseline bool
	Severity   typesv1.Severity
}

// PatchViews lists the instance's patches against b (nil: none): every patch of the baseline
// (MISSING when nothing was reported for it, once the instance was assessed), then the other
// recorded results, sorted by patch id.
func (i Instance) PatchViews(b *Baseline) []PatchView {
	out := []PatchView{}
	seen := map[string]bool{}
	if b != nil {
		for _, p := range b.Patches {
			seen[p.ID] = true
			v := PatchView{PatchID: p.ID, InBaseline: true, Severity: p.Severity}
			if ps, ok := i.Patches[p.ID]; ok {
				v.State, v.Error, v.RunID, v.Since = ps.State, ps.Error, ps.RunID, ps.Since
			} else if i.Outcome != OutcomeNone {
				v.State = typesv1.PatchState_PATCH_STATE_MISSING
			}
			out = append(out, v)
		}
	}
	for id, ps := range i.Patches {
		if !seen[id] {
			out = append(out, PatchView{PatchID: id, State: ps.State, Error: ps.Error, RunID: ps.RunID, Since: ps.Since})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].PatchID < out[b].PatchID })
	return out
}

// FailedPatch is one patch that failed on one instance in one run.
type FailedPatch struct {
	PatchID    string
	InstanceID string
	Wave       int32
	RunID      string
	Error      string
	// FirstSeen is when the patch was first seen failing on the instance.
	FirstSeen time.Time
	OSFamily  string
}

// Failed returns the instance's FAILED patches, sorted by patch id.
func (i Instance) Failed() []FailedPatch {
	var out []FailedPatch
	for id, ps := range i.Patches {
		if ps.State == typesv1.PatchState_PATCH_STATE_FAILED {
			out = append(out, FailedPatch{PatchID: id, InstanceID: i.ID, Wave: i.Wave, RunID: ps.RunID, Error: ps.Error,
				FirstSeen: ps.Since, OSFamily: i.Family()})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].PatchID < out[b].PatchID })
	return out
}

// BaselinePatch is one patch of a baseline, with what ageing needs.
type BaselinePatch struct {
	ID       string           `json:"id"`
	Severity typesv1.Severity `json:"sev,omitempty"`
}

// Baseline is a published baseline as reporting keeps it.
type Baseline struct {
	ID          string          `json:"id"`
	OSFamily    string          `json:"f"`
	Version     int32           `json:"v"`
	PublishedAt time.Time       `json:"t"`
	Patches     []BaselinePatch `json:"p"`
}

// Approval is a tenant's approval of one baseline version.
type Approval struct {
	BaselineID string    `json:"id"`
	OSFamily   string    `json:"f"`
	Version    int32     `json:"v"`
	At         time.Time `json:"t"`
}

// Coverage counts in-scope instances by state.
type Coverage struct {
	InScope      int `json:"in_scope"`
	Compliant    int `json:"compliant"`
	NonCompliant int `json:"non_compliant"`
	Unknown      int `json:"unknown"`
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

// GroupCoverage is the coverage of the instances of one wave and one OS family.
type GroupCoverage struct {
	Wave     int32
	OSFamily string
	Coverage Coverage
}

// WaveCoverage is the coverage of one wave.
type WaveCoverage struct {
	Wave     int32    `json:"wave"`
	Coverage Coverage `json:"coverage"`
}

// FamilyCoverage is the coverage of one OS family.
type FamilyCoverage struct {
	OSFamily string   `json:"os_family"`
	Coverage Coverage `json:"coverage"`
}

// Report is a tenant's compliance: in total, per wave and per OS family (ascending, groups
// with instances only).
type Report struct {
	Tenant   string           `json:"tenant"`
	Total    Coverage         `json:"total"`
	Waves    []WaveCoverage   `json:"waves"`
	Families []FamilyCoverage `json:"families"`
}

// NewReport sums per-group coverage into a report.
func NewReport(tenant string, groups []GroupCoverage) Report {
	r := Report{Tenant: tenant, Waves: []WaveCoverage{}, Families: []FamilyCoverage{}}
	waves, fams := map[int32]Coverage{}, map[string]Coverage{}
	for _, g := range groups {
		if g.Coverage.InScope == 0 {
			continue
		}
		waves[g.Wave] = waves[g.Wave].Plus(g.Coverage)
		fams[g.OSFamily] = fams[g.OSFamily].Plus(g.Coverage)
		r.Total = r.Total.Plus(g.Coverage)
	}
	for _, w := range slices.Sorted(maps.Keys(waves)) {
		r.Waves = append(r.Waves, WaveCoverage{Wave: w, Coverage: waves[w]})
	}
	for _, f := range slices.Sorted(maps.Keys(fams)) {
		r.Families = append(r.Families, FamilyCoverage{OSFamily: f, Coverage: fams[f]})
	}
	return r
}

// States are the instance states a coverage counts, in report order.
var States = []typesv1.ComplianceState{
	typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT,
	typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT,
	typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN,
}

// AgeingEntry is one patch of an applicable baseline that in-scope instances still miss.
type AgeingEntry struct {
	PatchID     string
	OSFamily    string
	BaselineID  string
	Severity    typesv1.Severity
	CertifiedAt time.Time
	// Days since CertifiedAt, whole days, at the report's time.
	Days int32
	// Instances that miss it.
	Instances int
}

// AgeDays is the whole days from certified to now (0 when now is earlier).
func AgeDays(certified, now time.Time) int32 {
	if certified.IsZero() || !now.After(certified) {
		return 0
	}
	return int32(now.Sub(certified) / (24 * time.Hour))
}

// Snapshot is a tenant's figures at one time, kept in its history.
type Snapshot struct {
	// Kind is "day" (the figures at the end of Key, a UTC date), "run" (at the end of run Key)
	// or "cycle" (as the tenant's cycle Key ended: the first event of a later cycle).
	Kind string `json:"kind"`
	Key  string `json:"key"`
	// At is the time of the last event the figures include.
	At     time.Time `json:"at"`
	Report Report    `json:"report"`
	// Cycle is the tenant's cycle the figures were measured in, Pins its pin (empty: not
	// pinned yet, each family measured against its newest approved baseline).
	Cycle string `json:"cycle,omitempty"`
	Pins  []Pin  `json:"pins,omitempty"`
}
