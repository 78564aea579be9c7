// Package domain holds the catalog's entities and rules: baselines, the certified, immutable,
// versioned sets of patches a tenant's waves install, and the repository they are kept in.
package domain

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
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

// Patch is one normalized vendor patch.
type Patch struct {
	// ID is the vendor's stable id, e.g. "ALAS2023-2026-1001" or "KB5002768".
	ID string
	// Vendor, e.g. "Amazon Linux".
	Vendor string
	// Title is a one-line summary.
	Title string
	// OSFamily the patch applies to, e.g. "amazon-linux-2023"; empty means the baseline's.
	OSFamily string
	// Severity is the vendor severity.
	Severity typesv1.Severity
	// Classification is security, bugfix or enhancement.
	Classification typesv1.Classification
	// CVEs fixed by the patch.
	CVEs []string
	// RebootRequired says the instance must reboot for the patch to take effect.
	RebootRequired bool
}

// Baseline is a certified, immutable, versioned set of patches for one OS family.
type Baseline struct {
	// ID names the baseline, e.g. "al2023-2026.11"; it must match ^[a-z0-9][a-z0-9.-]{0,62}$.
	ID string
	// OSFamily, e.g. "amazon-linux-2023".
	OSFamily string
	// Version counts the baselines of the OS family, from 1.
	Version int32
	// Patches in install order; at least one, ids unique.
	Patches []Patch
	// PublishedAt is when the baseline was published; zero before.
	PublishedAt time.Time
}

// ValidateID checks a baseline id.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return Invalid(fmt.Errorf("baseline id %q: must match %s (1-63 lower-case letters, digits, '.' or '-', starting with a letter or digit)", id, idPattern))
	}
	return nil
}

// Validate reports every rule the baseline breaks, each naming the field (relative to the
// baseline, e.g. "Patches[2].ID").
func (b Baseline) Validate() error {
	var errs []error
	if !idPattern.MatchString(b.ID) {
		errs = append(errs, fmt.Errorf("ID %q: must match %s", b.ID, idPattern))
	}
	if strings.TrimSpace(b.OSFamily) == "" {
		errs = append(errs, errors.New("OSFamily: required, e.g. amazon-linux-2023"))
	}
	if b.Version < 1 {
		errs = append(errs, fmt.Errorf("Version %d: must be 1 or more", b.Version))
	}
	if len(b.Patches) == 0 {
		errs = append(errs, errors.New("Patches: at least one patch is required"))
	}
	seen := make(map[string]int, len(b.Patches))
	for i, p := range b.Patches {
		switch {
		case p.ID == "" || strings.ContainsAny(p.ID, " \t\r\n/"):
			errs = append(errs, fmt.Errorf("Patches[%d].ID %q: required, no white space or '/'", i, p.ID))
		default:
			if j, dup := seen[p.ID]; dup {
				errs = append(errs, fmt.Errorf("Patches[%d].ID %q: duplicate of Patches[%d]", i, p.ID, j))
			} else {
				seen[p.ID] = i
			}
		}
		if _, ok := typesv1.Severity_name[int32(p.Severity)]; !ok {
			errs = append(errs, fmt.Errorf("Patches[%d].Severity %d: unknown severity", i, p.Severity))
		}
		if _, ok := typesv1.Classification_name[int32(p.Classification)]; !ok {
			errs = append(errs, fmt.Errorf("Patches[%d].Classification %d: unknown classification", i, p.Classification))
		}
	}
	return errors.Join(errs...)
}

// Repository keeps the published baselines (a read model rebuilt from catalog events) and the
// stream position it has applied up to.
type Repository interface {
	// Put stores b, replacing a baseline with the same id.
	Put(ctx context.Context, b Baseline) error
	// Get returns the baseline id, or ErrNotFound.
	Get(ctx context.Context, id string) (Baseline, error)
	// List returns every baseline, newest first.
	List(ctx context.Context) ([]Baseline, error)
	// Checkpoint returns the stream sequence applied up to; 0 when nothing was.
	Checkpoint(ctx context.Context) (uint64, error)
	// SetCheckpoint records that events up to seq are applied.
	SetCheckpoint(ctx context.Context, seq uint64) error
}

// Newer reports whether a sorts before b in a newest-first list: later publication first, then
// higher version, then id.
func Newer(a, b Baseline) bool {
	if !a.PublishedAt.Equal(b.PublishedAt) {
		return a.PublishedAt.After(b.PublishedAt)
	}
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return a.ID < b.ID
}
