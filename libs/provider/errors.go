package provider

import "errors"

// Sentinel errors. Adapters wrap them (fmt.Errorf("...: %w", ErrNotFound)) so callers test with
// errors.Is.
var (
	// ErrNotFound means the instance, snapshot, restore or installation does not exist for the tenant.
	ErrNotFound = errors.New("not found")
	// ErrInstanceNotRunning means the operation needs a running instance.
	ErrInstanceNotRunning = errors.New("instance not running")
	// ErrSnapshotNotCompleted means a restore was asked from a snapshot that is not completed.
	ErrSnapshotNotCompleted = errors.New("snapshot not completed")
	// ErrInvalidArgument means the request is malformed; the message names the field and rule.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrThrottled means the provider refused the call for now (rate limit, request limit
	// exceeded); retrying later with backoff is safe.
	ErrThrottled = errors.New("throttled")
)

// IsRetryable reports whether retrying the call later may succeed: the error wraps ErrThrottled,
// or an error in its chain has a Retryable() bool method that returns true (adapters use this for
// transient transport and 5xx errors). Context cancellation is not retryable.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrThrottled) {
		return true
	}
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}
