// Package design holds the rules of the service design, which the scheduler owns: what a valid
// tenant, cloud account, wave, rollout policy, freeze and override are, how a list of
// operations changes a tenant's document (all of them or none), what changed between two
// revisions (the audit trail's before and after), a service request's lifecycle, and the
// pagination of lists. It is pure: the calendar (libs/calendar) computes schedules, freezes and
// occurrences; this package converts the API's messages to and from its types.
//
// Field names in errors are the REST API's JSON names, relative to the request body (or to
// "operations[i].<kind>." inside a service request): "schedule.weekOfMonth", "policy.cutoff",
// "accountId", "regions[0]".
package design

import (
	"fmt"
	"regexp"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
)

// ProviderTenant is the tenant id reserved for provider-wide things (libs/design.ProviderTenant).
const ProviderTenant = "provider"

// Limits of one tenant's document, so that it stays far below the KV's value limit (1 MiB).
const (
	MaxAccounts      = 50
	MaxRegions       = 30
	MaxWaveLimit     = 10
	DefaultWaveLimit = 3
	MaxFreezes       = 200
	MaxOverrides     = 100
	MaxSkipKeys      = 24
	MaxExDates       = 100
	MaxOperations    = 50
	MaxICSBytes      = 512 << 10
	// DefaultTagKey is the wave tag key of a tenant that sets none.
	DefaultTagKey = "PatchWave"
)

var (
	idPattern       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	requestIDRule   = regexp.MustCompile(`^sr-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$`)
	occurrenceKeyRe = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)
)

// ValidateTenantID checks a customer tenant id: the subject-token rule of every tenant, and not
// the reserved "provider". field names it in the error.
func ValidateTenantID(field, id string) error {
	var v apierr.Violations
	checkTenantID(&v, field, id)
	return v.Err()
}

func checkTenantID(v *apierr.Violations, field, id string) {
	switch {
	case events.ValidateTenant(id) != nil:
		v.Add(field, fmt.Sprintf("must be 1-63 lower-case letters, digits or '-', not starting with '-', got %q", id))
	case id == ProviderTenant:
		v.Add(field, fmt.Sprintf("%q is reserved for provider-wide resources", ProviderTenant))
	}
}

// ValidateActor checks the actor of a write: the subject of the caller's credential.
func ValidateActor(field, actor string) error {
	var v apierr.Violations
	switch {
	case actor == "":
		v.Add(field, "is required: every change names who makes it")
	case len(actor) > 128:
		v.Add(field, fmt.Sprintf("must be at most 128 characters, got %d", len(actor)))
	case !printable(actor):
		v.Add(field, "must be printable text without control characters")
	}
	return v.Err()
}

// ValidateReason checks a change's reason: optional unless required, at most 1000 characters.
func ValidateReason(field, reason string, required bool) error {
	var v apierr.Violations
	checkText(&v, field, reason, 1000, required)
	return v.Err()
}

// ValidateRequestID checks a service request id.
func ValidateRequestID(field, id string) error {
	var v apierr.Violations
	if !requestIDRule.MatchString(id) {
		v.Add(field, fmt.Sprintf("must be a service request id such as sr-20270101T090000Z-a1b2c3, got %q", id))
	}
	return v.Err()
}

// ValidateFreezeID checks a freeze id.
func ValidateFreezeID(field, id string) error {
	var v apierr.Violations
	checkID(&v, field, id)
	return v.Err()
}

// ValidateOccurrenceKey checks an occurrence key, "YYYY-MM".
func ValidateOccurrenceKey(field, key string) error {
	var v apierr.Violations
	checkKey(&v, field, key)
	return v.Err()
}

func checkID(v *apierr.Violations, field, id string) {
	if !idPattern.MatchString(id) {
		v.Add(field, fmt.Sprintf("must be 1-64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit, got %q", id))
	}
}

func checkKey(v *apierr.Violations, field, key string) {
	if !occurrenceKeyRe.MatchString(key) {
		v.Add(field, fmt.Sprintf("must be an occurrence key YYYY-MM (the anchor month), got %q", key))
	}
}

func checkText(v *apierr.Violations, field, s string, maxLen int, required bool) {
	switch {
	case s == "" && required:
		v.Add(field, "is required")
	case len(s) > maxLen:
		v.Add(field, fmt.Sprintf("must be at most %d characters, got %d", maxLen, len(s)))
	case !printable(s):
		v.Add(field, "must be printable text without control characters")
	}
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// FormatDuration writes d compactly in Go's syntax: "4h", "1h30m", "45m", "0s".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := ""
	if d < 0 {
		s, d = "-", -d
	}
	h, m, sec := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	if h > 0 {
		s += fmt.Sprintf("%dh", h)
	}
	if m > 0 {
		s += fmt.Sprintf("%dm", m)
	}
	if sec > 0 || d%time.Second != 0 {
		rest := d % time.Minute
		s += rest.String()
	}
	return s
}
