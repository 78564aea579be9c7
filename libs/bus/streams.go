package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/events"
)

// StreamOptions tune the stream definitions for a deployment.
type StreamOptions struct {
	// Replicas of each stream. Optional, default 1; 3 on a JetStream cluster.
	Replicas int
	// Storage is file or memory. Optional, default file.
	Storage jetstream.StorageType
	// DuplicateWindow is how long JetStream remembers message ids to drop re-publishes.
	// Optional, default 2h: longer than any retry or restart, so a re-published event is stored once.
	DuplicateWindow time.Duration
	// MaxAge of events. Optional, default 0 (kept forever: the stream is the system of record).
	MaxAge time.Duration
	// DLQMaxAge of dead letters. Optional, default 30 days.
	DLQMaxAge time.Duration
}

func (o *StreamOptions) setDefaults() {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Hour
	}
	if o.DLQMaxAge == 0 {
		o.DLQMaxAge = 30 * 24 * time.Hour
	}
}

// Validate reports every problem with the options.
func (o StreamOptions) Validate() error {
	var errs []error
	if o.Replicas < 0 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("Replicas %d: must be from 1 to 5", o.Replicas))
	}
	if o.DuplicateWindow < 0 {
		errs = append(errs, errors.New("DuplicateWindow: must not be negative"))
	}
	if o.MaxAge < 0 || o.DLQMaxAge < 0 {
		errs = append(errs, errors.New("MaxAge, DLQMaxAge: must not be negative"))
	}
	return errors.Join(errs...)
}

// Streams returns the definitions of every stream Patchwave uses. deploy/nats holds the same
// definitions for operators who create streams with the nats CLI; a test keeps the two equal.
func Streams(o StreamOptions) []jetstream.StreamConfig {
	o.setDefaults()
	base := func(name, root, desc string, maxAge time.Duration) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{root + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			MaxAge:      maxAge,
			Discard:     jetstream.DiscardOld,
		}
	}
	return []jetstream.StreamConfig{
		base(events.StreamTenant, events.RootTenant, "Patchwave tenant events: patch.<tenant>.<aggregate>.<event>", o.MaxAge),
		base(events.StreamCatalog, events.RootCatalog, "Patchwave catalog events: catalog.<aggregate>.<event>", o.MaxAge),
		base(events.StreamDLQ, events.RootDLQ, "Patchwave dead letters: dlq.<service>.<handler>", o.DLQMaxAge),
	}
}

// EnsureStreams creates every stream, or updates it to the current definition. A stream that
// already has the definition is left alone by a create request alone, so a service whose NATS
// user may create the streams but not change them (libs/natsauth) starts against streams that
// are up to date; changing a definition needs a user that may update streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("stream options: %w", err)
	}
	for _, cfg := range Streams(o) {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// ensureAttempts bounds the retries of a transient refusal; with the wait doubling from
// ensureBackoff and capped at ensureBackoffMax, they span about 8 s.
const ensureAttempts = 12

var ensureBackoff, ensureBackoffMax = 25 * time.Millisecond, time.Second

// errCodeStreamStoreFailed is nats-server's JSStreamStoreFailedF ("error creating store for
// stream"). Services that create the same stream at the same moment on a fresh server can get
// it: the server checks the name, sets up the store and registers the stream without holding
// one lock across the three (nats-io/nats.go#949 is the same race). Asked again, the server
// finds the stream that was registered.
const errCodeStreamStoreFailed jetstream.ErrorCode = 10049

// ensureStream creates one stream or updates it to cfg, retrying the refusals that a moment
// later are gone: a store that failed in a create race, a cluster without a leader yet (503),
// and a request that timed out.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	wait := ensureBackoff
	for attempt := 1; ; attempt++ {
		_, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// It exists with another definition.
			_, err = js.UpdateStream(ctx, cfg)
		}
		if err == nil || !transientStreamError(ctx, err) || attempt == ensureAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last refusal: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, ensureBackoffMax)
	}
}

func transientStreamError(ctx context.Context, err error) bool {
	if errors.Is(err, nats.ErrTimeout) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// The request's own timeout, not the caller's.
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == errCodeStreamStoreFailed || apiErr.Code == 503
}
