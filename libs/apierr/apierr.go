// Package apierr is the error vocabulary shared by every service's API: a few sentinel errors and
// a validation error listing field violations. It imports nothing but the standard library, so
// domain packages use it freely; libs/grpcerr maps these errors to gRPC statuses at the edge.
//
// A domain package defines its errors by wrapping these sentinels
// (fmt.Errorf("%w: run %s", apierr.ErrNotFound, id), or a sentinel of its own such as
// fmt.Errorf("baseline %w", apierr.ErrNotFound)) or by aliasing them
// (var ErrNotFound = apierr.ErrNotFound), and reports bad requests as a *ValidationError naming
// each field and rule. Nothing below the edge knows about gRPC: a service's gRPC port calls
// grpcerr.ToStatus once, on every error it returns.
package apierr

import (
	"errors"
	"strings"
)

// Sentinel errors. grpcerr.ToStatus maps each to one gRPC code; wrap them with %w to add context.
var (
	// ErrInvalidArgument means the request is malformed; the error names the field and rule.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound means the requested entity does not exist.
	ErrNotFound = errors.New("not found")
	// ErrFailedPrecondition means the request is well formed but cannot be served in the
	// current state of the system.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable means the service cannot answer yet (read models still catching up, a
	// dependency unreachable); retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnauthenticated means the call carries no credential the API accepts.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied means the caller's credential does not allow the call.
	ErrPermissionDenied = errors.New("permission denied")
)

// Violation is one problem with one request field.
type Violation struct {
	// Field is the request field's name as in the API, e.g. "wave".
	Field string
	// Rule says what is wrong and what is expected.
	Rule string
}

// ValidationError lists every problem with a request. errors.Is(err, ErrInvalidArgument) holds
// for it, and grpcerr.ToStatus gives it a BadRequest detail with one field violation per Violation.
type ValidationError struct {
	Violations []Violation
}

// Error joins the violations: `invalid argument: wave: must be from 1 to 3, got 0; tenant: ...`.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Rule
	}
	return ErrInvalidArgument.Error() + ": " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidArgument }

// Violations collects the problems of one request, in the order they are found.
type Violations []Violation

// Add records that field breaks rule.
func (v *Violations) Add(field, rule string) {
	*v = append(*v, Violation{Field: field, Rule: rule})
}

// Err returns a *ValidationError listing the violations, or nil when there are none.
func (v Violations) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Violations: v}
}
