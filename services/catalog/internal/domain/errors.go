package domain

import (
	"fmt"
	"regexp"

	"github.com/patchwave/patchwave/libs/apierr"
)

// errNotFound is apierr.ErrNotFound; the domain's not-found errors wrap it.
var errNotFound = apierr.ErrNotFound

// ErrConflict marks a write that lost a race or contradicts what is stored (an illegal
// certification step, other content under a published baseline version). It is
// apierr.ErrFailedPrecondition.
var ErrConflict = apierr.ErrFailedPrecondition

// cvePattern is the shape of a CVE id.
var cvePattern = regexp.MustCompile(`^CVE-\d{4}-\d{4,}$`)

// CVEPattern finds CVE ids inside other strings ("UBUNTU-CVE-2014-4607").
var CVEPattern = regexp.MustCompile(`CVE-\d{4}-\d{4,}`)

// ValidateCVE checks a CVE id.
func ValidateCVE(field, id string) error {
	if !cvePattern.MatchString(id) {
		return Invalid(fmt.Errorf("%s %q: must be a CVE id like CVE-2025-49706", field, id))
	}
	return nil
}

// Conflict marks err as ErrConflict, keeping its message.
func Conflict(err error) error {
	if err == nil {
		return nil
	}
	return conflictError{err: err}
}

type conflictError struct{ err error }

func (e conflictError) Error() string        { return e.err.Error() }
func (e conflictError) Unwrap() error        { return e.err }
func (e conflictError) Is(target error) bool { return target == ErrConflict }
