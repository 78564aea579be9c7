// Package domain holds the scheduler's rules: what a valid run request is, how run ids are made,
// which baselines a run pins, the run and job state machines, the run controller's release
// rule and limits, and when a run is complete. It knows nothing of NATS, Redis or gRPC.
package domain

import "github.com/patchwave/patchwave/libs/apierr"

// Sentinel errors, aliases of the apierr ones the gRPC edge maps to status codes.
var (
	// ErrInvalidArgument means the request is malformed; the error names the field and rule.
	ErrInvalidArgument = apierr.ErrInvalidArgument
	// ErrNotFound means the run does not exist for the tenant.
	ErrNotFound = apierr.ErrNotFound
	// ErrFailedPrecondition means the request is well formed but cannot be served in the
	// current state (no such baseline published, too many instances for one run).
	ErrFailedPrecondition = apierr.ErrFailedPrecondition
	// ErrUnavailable means the service cannot answer yet (read models still catching up, the
	// fleet provider unreachable); retrying later may succeed.
	ErrUnavailable = apierr.ErrUnavailable
)

// ValidationError lists every problem with a request, one apierr.Violation per field. It
// matches ErrInvalidArgument.
type ValidationError = apierr.ValidationError
