// Package bus carries Patchwave events over NATS JetStream.
//
// Stage handlers run in a watermill router. Each handler reads from its own durable pull consumer
// (named "<service>_<handler>"), which every replica of the service shares, so a stage scales by
// adding replicas and replays by re-driving that consumer. The bus creates streams and consumers
// itself; nothing is provisioned from topic names. The router is fed by the bus's own subscriber
// over those consumers (not watermill-nats'), which keeps HandlerSpec.Concurrency messages in
// flight per replica, acks each message as soon as its handler returns (in the router's
// goroutine for it), and signals progress, from one loop per handler, for a message whose
// handler has run AckWait/4 or more, so none goes AckWait/2 without a signal. A deleted consumer
// makes Run fail rather than stall, and so does a connection closed for good
// (ErrConnectionClosed); a connection that reconnects does not.
//
// A handler gets a decoded event. When it returns an error the message is redelivered by
// JetStream after a backoff; after Config.MaxDeliver attempts, or at once for a Permanent error or
// a message that is not a valid event, the raw message goes to dlq.<service>.<handler> with the
// reason in its headers and is acknowledged. A panic in a handler is an error like any other.
// A Throttled error (a rate-limited dependency) gets Config.MaxDeliverThrottled deliveries and a
// longer backoff instead. Before a valid event is dead-lettered the handler's OnDeadLetter hook
// runs, so the stage can publish the job's failure outcome; if the hook fails the message is
// kept and retried, so no job is left without an outcome.
//
// Trackers (Bus.Track) follow operations that run elsewhere without a router: a tracker holds
// up to MaxHeld messages of its durable consumer unacknowledged, keeps them in progress with one
// loop, and hands the held set to a check function every poll interval, which acks, retries or
// dead-letters each. A replica that dies lets JetStream redeliver what it held to another.
//
// Publishing is asynchronous with a bounded wait: every event is sent with its id as Nats-Msg-Id,
// each attempt has an ack timeout, and a timed-out or failed attempt is sent again with the same
// id, so a retry never stores an event twice and a stream leader change never stalls a stage.
//
// Projections (read models) read a subject filter in stream order from a checkpoint the caller
// keeps. The projections of a bus on one stream share one ordered consumer, which decodes each
// message once and hands it to every projection it is for (fanout.go); each keeps its own
// checkpoint, catch-up and replays. Bus.Run starts every projection and waits until each has
// caught up with the stream before it starts the handlers, so idempotency marks and read models
// that live in memory are rebuilt before any handler acts on them. A group's ordered consumer is
// named "<service>_projections_<random>_<n>", so a consumer listing says whose it is.
//
// Every live consumer decodes through one process-wide cache of decoded events (decode.go), so
// an event that reaches several consumers of the process (in patchd, of several services) is
// decoded about once; a replay decodes on its own. DecodeStats counts the cache's hits and
// misses (patchbench prints them).
package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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
	Streams StreamOptions
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
	// MaxDeliverThrottled replaces MaxDeliver for a message whose last failure was Throttled
	// (a cloud API's rate limit), so that throttling is waited out rather than turned into a
	// failure within seconds. Optional, default 20 (with the defaults about 8 minutes).
	MaxDeliverThrottled int
	// ThrottledBackoff is the first redelivery delay after a Throttled failure; it doubles per
	// delivery up to MaxRetryBackoff. Optional, default 2s.
	ThrottledBackoff time.Duration
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
	if c.MaxDeliverThrottled == 0 {
		c.MaxDeliverThrottled = max(20, c.MaxDeliver)
	}
	if c.ThrottledBackoff == 0 {
		c.ThrottledBackoff = 2 * time.Second
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
		"MaxRetryBackoff": c.MaxRetryBackoff, "AckWait": c.AckWait, "ThrottledBackoff": c.ThrottledBackoff,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must not be negative", name, d))
		}
	}
	for name, n := range map[string]int{
		"PublishAttempts": c.PublishAttempts, "PublishWindow": c.PublishWindow, "MaxDeliver": c.MaxDeliver,
		"MaxAckPending": c.MaxAckPending, "FetchBatch": c.FetchBatch, "MaxDeliverThrottled": c.MaxDeliverThrottled,
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
	trackers    []*tracker
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
		if err := EnsureStreams(ctx, js, cfg.Streams); err != nil {
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

// Registerer returns the metrics registerer the bus was built with (nil when none), so a
// component can register its own metrics beside the bus's.
func (b *Bus) Registerer() prometheus.Registerer { return b.cfg.Registerer }

// Service returns the service name the bus was built for.
func (b *Bus) Service() string { return b.cfg.Service }

// HandlerInfo describes a registered handler: its name, its durable consumer and its stream.
type HandlerInfo struct {
	Name, Consumer, Stream string
}

// Handlers lists the handlers and then the trackers registered so far, each in registration
// order: every durable consumer of the service.
func (b *Bus) Handlers() []HandlerInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]HandlerInfo, 0, len(b.handlers)+len(b.trackers))
	for _, h := range b.handlers {
		out = append(out, HandlerInfo{Name: h.spec.Name, Consumer: h.consumer, Stream: h.stream})
	}
	// A tracker is a durable consumer of its service like a handler.
	for _, t := range b.trackers {
		out = append(out, HandlerInfo{Name: t.spec.Name, Consumer: t.consumer, Stream: t.stream})
	}
	return out
}

// ProjectionStreams lists the streams the projections registered so far read, each once, in
// registration order.
func (b *Bus) ProjectionStreams() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, p := range b.projections {
		if !slices.Contains(out, p.stream) {
			out = append(out, p.stream)
		}
	}
	return out
}

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
