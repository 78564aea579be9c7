package bus

import "errors"

// permanentError marks an error no retry can fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the message is dead-lettered at once instead of being retried.
// Use it for input that can never be handled: a payload that fails validation, an unknown
// tenant. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// throttledError marks a failure caused by a dependency asking to slow down.
type throttledError struct{ err error }

func (e throttledError) Error() string { return e.err.Error() }
func (e throttledError) Unwrap() error { return e.err }

// Throttled wraps err for a dependency that refused the call for now (a cloud API's rate
// limit): the message is retried like any failure, but with Config.ThrottledBackoff as the
// first delay and for up to Config.MaxDeliverThrottled deliveries, because throttling passes
// when the caller waits, while most other errors do not. Throttled(nil) is nil.
func Throttled(err error) error {
	if err == nil {
		return nil
	}
	return throttledError{err: err}
}

// IsThrottled reports whether err was marked Throttled (and not Permanent).
func IsThrottled(err error) bool {
	var t throttledError
	return errors.As(err, &t) && !IsPermanent(err)
}
