// Package domain holds the catalog's entities and rules: normalized patches and their
// certification, auto-approval rules, baselines (the certified, immutable, versioned sets of
// patches a tenant's waves install, with deployment rules per patch) and the tenants'
// approvals of them. It imports no infrastructure.
package domain

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/baseline"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// ErrNotFound is returned for a baseline that was never published. It wraps
// apierr.ErrNotFound, keeping the message "baseline not found".
var ErrNotFound = fmt.Errorf("baseline %w", apierr.ErrNotFound)

// ErrInvalid marks input that breaks a rule: errors.Is(err, ErrInvalid) holds for the errors
// Invalid returns, whose messages name the field and the rule. It is apierr.ErrInvalidArgument.
var ErrInvalid = apierr.ErrInvalidArgument

// invalidError is an error that is ErrInvalid without saying so in its message.
type invalidError struct{ err error }

func (e invalidError) Error() string        { return e.err.Error() }
func (e invalidError) Unwrap() error        { return e.err }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// Invalid marks err as ErrInvalid, keeping its message. Invalid(nil) is nil.
func Invalid(err error) error {
	if err == nil {
		return nil
	}
	return invalidError{err: err}
}

// idPattern is the rule for baseline ids: they appear in URLs, event keys and subjects.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// familyPattern is the rule for OS family names ("amazon-linux-2023", "ubuntu-22.04").
var familyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// tagPattern is an instance tag exclusion: "key" or "key=value".
var tagPattern = regexp.MustCompile(`^[^=\s][^=]{0,127}(=.{0,256})?$`)

// Baseline limits.
const (
	MaxBaselinePatches = 500
	MaxExclusions      = 50
)

// Baseline is a certified, immutable, versioned set of patches for one OS family.
type Baseline struct {
	// ID names the baseline, e.g. "al2023-2026.11"; it must match ^[a-z0-9][a-z0-9.-]{0,62}$.
	ID string
	// OSFamily, e.g. "amazon-linux-2023".
	OSFamily string
	// Version counts the baselines of the OS family, from 1; (OSFamily, Version) is unique.
	Version int32
	// Patches as certified when the baseline was published, in install order.
	Patches []*typesv1.Patch
	// Rules holds the deployment rule of each patch, in the same order.
	Rules []*typesv1.DeploymentRule
	// Emergency marks an out-of-band baseline for EmergencyCVE.
	Emergency    bool
	EmergencyCVE string
	PublishedAt  time.Time
	PublishedBy  string
	Notes        string
	// Digest is "sha256:<hex>" of the content that makes the version: family, version,
	// rules (hence patch ids and order) and the emergency marks.
	Digest string
}

// Ref is the baseline's identity for libs/baseline's "newest" rule.
func (b Baseline) Ref() baseline.Ref {
	return baseline.Ref{ID: b.ID, OSFamily: b.OSFamily, Version: b.Version}
}

// ValidateID checks a baseline id.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return Invalid(fmt.Errorf("baseline id %q: must match %s (1-63 lower-case letters, digits, '.' or '-', starting with a letter or digit)", id, idPattern))
	}
	return nil
}

// ValidateFamily checks an OS family name for the request field field.
func ValidateFamily(field, family string) error {
	if !familyPattern.MatchString(family) {
		return Invalid(fmt.Errorf("%s %q: must match %s, e.g. amazon-linux-2023", field, family, familyPattern))
	}
	return nil
}

// ComputeDigest returns the digest of b's content.
func (b Baseline) ComputeDigest() string {
	var s strings.Builder
	fmt.Fprintf(&s, "id=%s\nfamily=%s\nversion=%d\nemergency=%t\ncve=%s\n", b.ID, b.OSFamily, b.Version, b.Emergency, b.EmergencyCVE)
	for _, r := range b.Rules {
		fmt.Fprintf(&s, "patch=%s|reboot=%s|order=%d|products=%s|tags=%s\n", r.GetPatchId(), r.GetReboot(), r.GetOrder(),
			strings.Join(r.GetExcludeProducts(), ","), strings.Join(r.GetExcludeInstanceTags(), ","))
	}
	sum := sha256.Sum256([]byte(s.String()))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Validate reports every rule the baseline breaks, each naming the field.
func (b Baseline) Validate() error {
	var v apierr.Violations
	if !idPattern.MatchString(b.ID) {
		v.Add("baselineId", fmt.Sprintf("%q: must match %s", b.ID, idPattern))
	}
	if !familyPattern.MatchString(b.OSFamily) {
		v.Add("osFamily", fmt.Sprintf("%q: must match %s, e.g. amazon-linux-2023", b.OSFamily, familyPattern))
	}
	if b.Version < 1 {
		v.Add("version", fmt.Sprintf("%d: must be 1 or more", b.Version))
	}
	if len(b.Patches) == 0 || len(b.Patches) != len(b.Rules) {
		v.Add("patches", "at least one patch, each with its deployment rule")
	}
	for i, p := range b.Patches {
		if i < len(b.Rules) && b.Rules[i].GetPatchId() != p.GetId() {
			v.Add(fmt.Sprintf("rules[%d].patchId", i), fmt.Sprintf("%q: must name patches[%d] %q", b.Rules[i].GetPatchId(), i, p.GetId()))
		}
	}
	return v.Err()
}

// PublishRequest asks for a baseline version of certified patches.
type PublishRequest struct {
	ID       string
	OSFamily string
	// Version from 1, or 0 for the family's next version.
	Version int32
	Rules   []*typesv1.DeploymentRule
	Notes   string
	Actor   string
}

// Validate reports every problem with the request's fields.
func (r PublishRequest) Validate() error {
	var v apierr.Violations
	if !idPattern.MatchString(r.ID) {
		v.Add("baselineId", fmt.Sprintf("%q: must match %s", r.ID, idPattern))
	}
	if !familyPattern.MatchString(r.OSFamily) {
		v.Add("osFamily", fmt.Sprintf("%q: must match %s, e.g. amazon-linux-2023", r.OSFamily, familyPattern))
	}
	if r.Version < 0 {
		v.Add("version", fmt.Sprintf("%d: must be 0 (next) or more", r.Version))
	}
	if err := ValidateActor(r.Actor); err != nil {
		v.Add("actor", err.Error())
	}
	if len(r.Notes) > MaxNotes {
		v.Add("notes", fmt.Sprintf("at most %d bytes", MaxNotes))
	}
	validateRules(&v, r.Rules)
	return v.Err()
}

func validateRules(v *apierr.Violations, rules []*typesv1.DeploymentRule) {
	if len(rules) == 0 || len(rules) > MaxBaselinePatches {
		v.Add("patches", fmt.Sprintf("from 1 to %d patches, got %d", MaxBaselinePatches, len(rules)))
	}
	seen := map[string]int{}
	for i, rule := range rules {
		f := fmt.Sprintf("patches[%d]", i)
		if err := ValidatePatchID(rule.GetPatchId()); err != nil {
			v.Add(f+".patchId", err.Error())
		} else if j, dup := seen[rule.GetPatchId()]; dup {
			v.Add(f+".patchId", fmt.Sprintf("%q: duplicate of patches[%d]", rule.GetPatchId(), j))
		} else {
			seen[rule.GetPatchId()] = i
		}
		if _, ok := typesv1.RebootBehavior_name[int32(rule.GetReboot())]; !ok {
			v.Add(f+".reboot", "must be IF_REQUIRED, ALWAYS or NEVER (or unset: the patch's reboot hint)")
		}
		if rule.GetOrder() < 0 {
			v.Add(f+".order", fmt.Sprintf("%d: must not be negative", rule.GetOrder()))
		}
		if len(rule.GetExcludeProducts()) > MaxExclusions || len(rule.GetExcludeInstanceTags()) > MaxExclusions {
			v.Add(f, fmt.Sprintf("at most %d exclusions of each kind", MaxExclusions))
		}
		for j, p := range rule.GetExcludeProducts() {
			if strings.TrimSpace(p) == "" {
				v.Add(fmt.Sprintf("%s.excludeProducts[%d]", f, j), "must not be empty")
			}
		}
		for j, tag := range rule.GetExcludeInstanceTags() {
			if !tagPattern.MatchString(tag) {
				v.Add(fmt.Sprintf("%s.excludeInstanceTags[%d]", f, j), fmt.Sprintf("%q: must be \"key\" or \"key=value\" (key 1-128 characters)", tag))
			}
		}
	}
}

// Build makes the baseline of the request from the patch records it names, at version
// (resolved by the caller when the request asked for the next one). Every patch must be
// CERTIFIED and apply to the OS family; the patches are put in install order (the rules'
// order, then the request's).
func (r PublishRequest) Build(records map[string]*Record, version int32, now time.Time) (Baseline, error) {
	var v apierr.Violations
	rules := make([]*typesv1.DeploymentRule, len(r.Rules))
	for i, rule := range r.Rules {
		rules[i] = proto.CloneOf(rule)
	}
	slices.SortStableFunc(rules, func(a, b *typesv1.DeploymentRule) int { return cmp.Compare(a.GetOrder(), b.GetOrder()) })
	b := Baseline{ID: r.ID, OSFamily: r.OSFamily, Version: version, Rules: rules,
		PublishedAt: now.UTC(), PublishedBy: r.Actor, Notes: r.Notes}
	var notCertified []string
	for _, rule := range rules {
		rec, ok := records[rule.GetPatchId()]
		if !ok {
			v.Add("patches", fmt.Sprintf("patch %q: not in the catalog", rule.GetPatchId()))
			continue
		}
		if rec.State != StateCertified {
			notCertified = append(notCertified, fmt.Sprintf("patch %q is %s", rule.GetPatchId(), StateName(rec.State)))
		}
		if !slices.Contains(rec.Patch.GetOsFamilies(), r.OSFamily) {
			notCertified = append(notCertified, fmt.Sprintf("patch %q does not apply to %s (it applies to %s)", rule.GetPatchId(), r.OSFamily, strings.Join(rec.Patch.GetOsFamilies(), ", ")))
		}
		p := proto.CloneOf(rec.Patch)
		p.Sources = nil
		b.Patches = append(b.Patches, p)
	}
	if err := v.Err(); err != nil {
		return Baseline{}, err
	}
	if len(notCertified) > 0 {
		return Baseline{}, Conflict(fmt.Errorf("a baseline holds certified patches of its OS family only: %s", strings.Join(notCertified, "; ")))
	}
	b.Digest = b.ComputeDigest()
	return b, nil
}

// SameVersion reports whether other is the same published version as b (same digest).
func (b Baseline) SameVersion(other Baseline) bool { return b.Digest == other.Digest }
