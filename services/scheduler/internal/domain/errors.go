// Package domain holds the scheduler's rules: what a valid run request is, how run ids are made,
// which baseline a run pins, and when a run is complete. It knows nothing of NATS, Redis or gRPC.
package domain

import (
	"errors"
	"strings"
)

// Sentinel errors. The gRPC edge maps each to one status code.
var (
	// ErrInvalidArgument means the request is malformed; the error names the field and rule.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound means the run does not exist for the tenant.
	ErrNotFound = errors.New("not found")
	// ErrFailedPrecondition means the request is well formed but cannot be served in the
	// current state (no such baseline published, too many instances for one run).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable means the service cannot answer yet (read models still catching up, the
	// fleet provider unreachable); retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
)

// FieldViolation is one problem with one request field.
type FieldViolation struct {
	// Field is the request field's name as in the API, e.g. "wave".
	Field string
	// Rule says what is wrong and what is expected.
	Rule string
}

// ValidationError lists every problem with a request. It matches ErrInvalidArgument.
type ValidationError struct {
	Violations []FieldViolation
}

// Error joins the violations: `wave 0: must be from 1 to 3; tenant "": ...`.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Rule
	}
	return "invalid argument: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidArgument }

// violations collects field violations and returns nil when there are none.
type violations []FieldViolation

func (v *violations) add(field, rule string) {
	*v = append(*v, FieldViolation{Field: field, Rule: rule})
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Violations: v}
}
