// Package bus carries Patchwave events over NATS JetStream.
//
// Stage handlers run in a watermill router. Each handler reads from its own durable pull consumer
// (named "<service>_<handler>"), which every replica of the service shares, so a stage scales by
// adding replicas and replays by re-driving that consumer. The bus creates streams and consumers
// itself; nothing is provisioned from topic names. The router is fed by the bus's own subscriber
// over those consumers (not watermill-nats'), which keeps HandlerSpec.Concurrency messages in
// flight per replica, acks asynchronously, and signals progress while a handler runs longer than
// AckWait/2. A deleted consumer makes Run fail rather than stall.
//
// A handler gets a decoded event. When it returns an error the message is redelivered by
// JetStream after a backoff; after Config.MaxDeliver attempts, or at once for a Permanent error or
// a message that is not a valid event, the raw message goes to dlq.<service>.<handler> with the
// reason in its headers and is acknowledged. A panic in a handler is an error like any other.
//
// Publishing is asynchronous with a bounded wait: every event is sent with its id as Nats-Msg-Id,
// each attempt has an ack timeout, and a timed-out or failed attempt is sent again with the same
// id, so a retry never stores an event twice and a stream leader change never stalls a stage.
//
// Projections (read models) read a subject filter in stream order with an ordered consumer from
// a checkpoint the caller keeps. Bus.Run starts every projection and waits until each has caught
// up with the stream before it starts the handlers, so idempotency marks and read models that
// live in memory are rebuilt before any handler acts on them.
package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchwave/patchwave/libs/events"
)

// Config configures a Bus.
type Config struct {
	// Service names the service; it prefixes consumer names and is the event source. Required.
	Service string
	// Conn is the NATS connection used to publish and to manage streams. Required.
	Conn *nats.Conn
	// Logger for the bus and its handlers. Optional, default discards.
	Logger *slog.Logger
	// Registerer for the bus metrics. Optional, default none.
	Registerer prometheus.Registerer
	// Streams tunes the stream definitions. Optional.
	Streams events.StreamOptions
	// PublishTimeout bounds the wait for one publish attempt's ack. Optional, default 5s.
	PublishTimeout time.Duration
	// PublishAttempts is how many times an event is sent before Publish gives up. Optional, default 5.
	PublishAttempts int
	// PublishWindow bounds the publishes in flight per Publish call. Optional, default 4000.
	PublishWindow int
	// MaxDeliver is how many deliveries a failing message gets before it is dead-lettered.
	// Optional, default 5.
	MaxDeliver int
	// RetryBackoff is the delay before the first redelivery; it doubles per attempt up to
	// MaxRetryBackoff. Optional, default 500ms.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the redelivery delay. Optional, default 30s.
	MaxRetryBackoff time.Duration
	// AckWait is how long a delivered message may stay unacknowledged before JetStream
	// redelivers it (a crashed replica). Optional, default 60s.
	AckWait time.Duration
	// MaxAckPending bounds the messages in flight per consumer across replicas. Optional,
	// default 2000.
	MaxAckPending int
	// FetchBatch caps how many messages a handler pulls ahead (see HandlerSpec.FetchBatch).
	// Optional, default 256.
	FetchBatch int
	// SkipStreamSetup leaves streams alone (they are created by deploy/nats). Optional.
	SkipStreamSetup bool
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.PublishAttempts == 0 {
		c.PublishAttempts = 5
	}
	if c.PublishWindow == 0 {
		c.PublishWindow = 4000
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 500 * time.Millisecond
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = 30 * time.Second
	}
	if c.AckWait == 0 {
		c.AckWait = 60 * time.Second
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 2000
	}
	if c.FetchBatch == 0 {
		c.FetchBatch = 256
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if !namePattern.MatchString(c.Service) {
		errs = append(errs, fmt.Errorf("Service %q: required, must match %s", c.Service, namePattern))
	}
	if c.Conn == nil {
		errs = append(errs, errors.New("Conn: required"))
	}
	for name, d := range map[string]time.Duration{
		"PublishTimeout": c.PublishTimeout, "RetryBackoff": c.RetryBackoff,
		"MaxRetryBackoff": c.MaxRetryBackoff, "AckWait": c.AckWait,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must not be negative", name, d))
		}
	}
	for name, n := range map[string]int{
		"PublishAttempts": c.PublishAttempts, "PublishWindow": c.PublishWindow, "MaxDeliver": c.MaxDeliver,
		"MaxAckPending": c.MaxAckPending, "FetchBatch": c.FetchBatch,
	} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must not be negative", name, n))
		}
	}
	if err := c.Streams.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Streams: %w", err))
	}
	return errors.Join(errs...)
}

// Bus publishes events and runs handlers and projections.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	js      jetstream.JetStream
	metrics *metrics

	// pullExpiry is how long a pull request waits on the server; a consumer that stops sending
	// heartbeats is noticed after it. Tests shorten it.
	pullExpiry time.Duration

	mu          sync.Mutex
	handlers    []*handler
	projections []*projection
	started     bool
	running     chan struct{}
}

// defaultPullExpiry bounds a pull request: heartbeats come every half of it, and a handler whose
// consumer was deleted (its pull requests go unanswered) fails within about that time.
const defaultPullExpiry = 10 * time.Second

// New checks cfg, creates the streams and returns a Bus ready for handlers to be registered.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bus config: %w", err)
	}
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncMaxPending(cfg.PublishWindow),
		// Acks that never come (a lost connection, a moved stream leader) free their slot.
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if !cfg.SkipStreamSetup {
		if err := events.EnsureStreams(ctx, js, cfg.Streams); err != nil {
			return nil, err
		}
	}
	return &Bus{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "bus"),
		js:         js,
		metrics:    newMetrics(cfg.Registerer, cfg.Service),
		running:    make(chan struct{}),
		pullExpiry: defaultPullExpiry,
	}, nil
}

// JetStream returns the JetStream context, for tooling and tests.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Service returns the service name the bus was built for.
func (b *Bus) Service() string { return b.cfg.Service }

// Running is closed once every projection has caught up and every handler is consuming.
func (b *Bus) Running() <-chan struct{} { return b.running }

// Ready reports whether Running is closed; it suits a readiness check.
func (b *Bus) Ready(context.Context) error {
	select {
	case <-b.running:
		return nil
	default:
		return errors.New("bus: handlers not consuming yet")
	}
}
