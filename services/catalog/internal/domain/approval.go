package domain

import (
	"fmt"
	"slices"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
)

// ApprovalState is a tenant's decision on a baseline version.
type ApprovalState int

// Approval states.
const (
	ApprovalPending ApprovalState = iota
	ApprovalApproved
	ApprovalRejected
)

// String names the state.
func (s ApprovalState) String() string {
	switch s {
	case ApprovalApproved:
		return "APPROVED"
	case ApprovalRejected:
		return "REJECTED"
	default:
		return "PENDING"
	}
}

// AutoApproveActor is the actor of approvals made by a tenant's auto-approve policy.
const AutoApproveActor = "policy:auto-approve"

// MaxApprovalDelay bounds a policy's delay.
const MaxApprovalDelay = 90 * 24 * time.Hour

// Approval is a tenant's decision on one baseline version.
type Approval struct {
	Tenant     string
	BaselineID string
	OSFamily   string
	Version    int32
	State      ApprovalState
	Actor      string
	DecidedAt  time.Time
	Notes      string
	Auto       bool
}

// Decide returns the approval after the decision state by actor, and whether anything
// changed: deciding what is already decided changes nothing (a retried call is harmless). A
// tenant may change its mind (approve what it rejected, or the reverse) until a run pins the
// version; the run engine owns that part.
func (a Approval) Decide(state ApprovalState, actor, notes string, auto bool, at time.Time) (Approval, bool) {
	if a.State == state {
		return a, false
	}
	a.State, a.Actor, a.Notes, a.Auto, a.DecidedAt = state, actor, notes, auto, at.UTC()
	return a, true
}

// Policy is a tenant's auto-approve policy: every baseline of a covered OS family is approved
// Delay after its publication unless the tenant decided otherwise first.
type Policy struct {
	Tenant      string
	AutoApprove bool
	Delay       time.Duration
	// OSFamilies covered; empty covers every family.
	OSFamilies []string
	ChangedBy  string
	ChangedAt  time.Time
	Revision   uint64
}

// Validate reports every problem with the policy, naming the request field.
func (p Policy) Validate() error {
	var v apierr.Violations
	if p.Delay < 0 || p.Delay > MaxApprovalDelay {
		v.Add("policy.delay", fmt.Sprintf("%s: must be from 0 to %s (90 days)", p.Delay, MaxApprovalDelay))
	}
	for i, f := range p.OSFamilies {
		if !familyPattern.MatchString(f) {
			v.Add(fmt.Sprintf("policy.osFamilies[%d]", i), fmt.Sprintf("%q: must match %s", f, familyPattern))
		}
	}
	if err := ValidateActor(p.ChangedBy); err != nil {
		v.Add("actor", err.Error())
	}
	return v.Err()
}

// Covers reports whether the policy auto-approves baselines of family.
func (p Policy) Covers(family string) bool {
	return p.AutoApprove && (len(p.OSFamilies) == 0 || slices.Contains(p.OSFamilies, family))
}

// DueAt is when the policy approves a baseline published at published.
func (p Policy) DueAt(published time.Time) time.Time { return published.Add(p.Delay) }
