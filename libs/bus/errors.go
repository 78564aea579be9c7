package bus

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrConnectionClosed is wrapped by the error Run returns when the bus's NATS connection is
// closed for good: closed by the process, or lost with no reconnect left (Config.Conn's
// MaxReconnects run out, or reconnecting disabled). No consumer can go on without it, so Run
// stops, and the process should exit non-zero for its supervisor to restart it. It wraps
// nats.ErrConnectionClosed.
var ErrConnectionClosed = fmt.Errorf("bus: %w", nats.ErrConnectionClosed)

// closedError is the error Run returns for nc closed: ErrConnectionClosed with the connection's
// last error, which says why it closed when the server went away.
func closedError(nc *nats.Conn) error {
	if err := nc.LastError(); err != nil {
		return fmt.Errorf("%w (last error: %w)", ErrConnectionClosed, err)
	}
	return ErrConnectionClosed
}

// connClosed reports whether err comes from a closed connection, as nats.go or its jetstream
// package says it.
func connClosed(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed)
}

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
