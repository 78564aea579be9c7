package domain

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// ErrRuleNotFound is returned for a rule that does not exist.
var ErrRuleNotFound = fmt.Errorf("rule %w", errNotFound)

// MaxApproveAfterDays bounds a rule's delay, as AWS does (0..360).
const MaxApproveAfterDays = 360

var ruleIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Rule is an auto-approval rule: it certifies the patches it matches ApproveAfterDays days
// after their release, counted in UTC days (AWS ApproveAfterDays).
type Rule struct {
	ID          string
	Description string
	// Classifications matched; empty matches every one.
	Classifications []typesv1.Classification
	// Severities matched; empty matches every one.
	Severities []typesv1.Severity
	// OSFamilies matched; empty matches every one.
	OSFamilies       []string
	ApproveAfterDays int32
	Enabled          bool
}

// ValidateRuleID checks a rule id.
func ValidateRuleID(id string) error {
	if !ruleIDPattern.MatchString(id) {
		return Invalid(fmt.Errorf("rule id %q: must match %s", id, ruleIDPattern))
	}
	return nil
}

// Validate reports every broken rule, naming the request field.
func (r Rule) Validate() error {
	var v apierr.Violations
	if !ruleIDPattern.MatchString(r.ID) {
		v.Add("rule.ruleId", fmt.Sprintf("%q: must match %s", r.ID, ruleIDPattern))
	}
	if r.ApproveAfterDays < 0 || r.ApproveAfterDays > MaxApproveAfterDays {
		v.Add("rule.approveAfterDays", fmt.Sprintf("must be from 0 to %d, got %d", MaxApproveAfterDays, r.ApproveAfterDays))
	}
	for i, c := range r.Classifications {
		if _, ok := typesv1.Classification_name[int32(c)]; !ok || c == 0 {
			v.Add(fmt.Sprintf("rule.classifications[%d]", i), "must be SECURITY, BUGFIX or ENHANCEMENT")
		}
	}
	for i, s := range r.Severities {
		if _, ok := typesv1.Severity_name[int32(s)]; !ok {
			v.Add(fmt.Sprintf("rule.severities[%d]", i), "must be a known severity")
		}
	}
	for i, f := range r.OSFamilies {
		if !familyPattern.MatchString(f) {
			v.Add(fmt.Sprintf("rule.osFamilies[%d]", i), fmt.Sprintf("%q: must match %s", f, familyPattern))
		}
	}
	if len(r.Description) > 1024 {
		v.Add("rule.description", "at most 1024 bytes")
	}
	return v.Err()
}

// Matches reports whether the rule covers patch p (enabled, and p's classification,
// severity and one of its OS families among the rule's).
func (r Rule) Matches(p *typesv1.Patch) bool {
	if !r.Enabled {
		return false
	}
	if len(r.Classifications) > 0 && !slices.Contains(r.Classifications, p.GetClassification()) {
		return false
	}
	if len(r.Severities) > 0 && !slices.Contains(r.Severities, p.GetSeverity()) {
		return false
	}
	if len(r.OSFamilies) > 0 && !slices.ContainsFunc(p.GetOsFamilies(), func(f string) bool { return slices.Contains(r.OSFamilies, f) }) {
		return false
	}
	return p.GetReleasedAt() != nil
}

// DueAt is when the rule certifies a patch released at released: 00:00 UTC of the release's
// UTC day plus ApproveAfterDays days. A patch released 2026-11-10T23:30Z with 7 days is due
// 2026-11-17T00:00Z (released 2026-11-11T00:30+02:00 it is the same instant, so the same day).
func (r Rule) DueAt(released time.Time) time.Time {
	d := released.UTC()
	return time.Date(d.Year(), d.Month(), d.Day()+int(r.ApproveAfterDays), 0, 0, 0, 0, time.UTC)
}

// Due reports whether the rule certifies p at now.
func (r Rule) Due(p *typesv1.Patch, now time.Time) bool {
	return r.Matches(p) && !now.Before(r.DueAt(p.GetReleasedAt().AsTime()))
}
