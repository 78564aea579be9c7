// Package snapshotter is Patchwave's pre-patch snapshot stage. For every JobRequested it takes
// one crash-consistent snapshot of all volumes of the job's instance, tagged with tenant, run
// and instance, waits until the provider reports it completed, and publishes SnapshotCreated
// (which the installer waits for) or SnapshotFailed. Build it with New and host it with
// libs/host, alone (cmd/snapshotter) or with the other services (patchd).
package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/snapshotter/internal/app"
)

// Name is the service name: it names the bus consumers and is the source of its events.
const Name = "snapshotter"

// HandlerTakeSnapshot is the name of the handler that consumes JobRequested.
const HandlerTakeSnapshot = "TakeSnapshotOnJobRequested"

// Config configures the snapshotter.
type Config struct {
	// SnapshotTimeout bounds how long a snapshot may stay pending, counted from its creation;
	// a snapshot still pending then is a SnapshotFailed. Optional, default 30m.
	SnapshotTimeout time.Duration
	// PollInterval is the pause between two reads of a pending snapshot. Optional, default 2s.
	PollInterval time.Duration
	// Concurrency is how many jobs one replica handles at once; each holds a slot while it
	// waits for its snapshot. Optional, default 32.
	Concurrency int
}

func (c *Config) setDefaults() {
	if c.SnapshotTimeout == 0 {
		c.SnapshotTimeout = 30 * time.Minute
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
}

// Validate reports every problem with the configuration, naming the field and the rule.
func (c Config) Validate() error {
	var errs []error
	if c.SnapshotTimeout <= 0 {
		errs = append(errs, fmt.Errorf("SnapshotTimeout %s: must be > 0", c.SnapshotTimeout))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("PollInterval %s: must be > 0", c.PollInterval))
	} else if c.SnapshotTimeout > 0 && c.PollInterval > c.SnapshotTimeout {
		errs = append(errs, fmt.Errorf("PollInterval %s: must not exceed SnapshotTimeout %s", c.PollInterval, c.SnapshotTimeout))
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("Concurrency %d: must be from 1 to 1024", c.Concurrency))
	}
	return errors.Join(errs...)
}

// Deps are the snapshotter's collaborators.
type Deps struct {
	// Fleet is the cloud the snapshots are taken in. Required.
	Fleet provider.Fleet
	// Store holds the idempotency marks, rebuilt from the stream at start. Required.
	Store store.Store
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Clock is the time source for snapshot timeouts. Optional, default time.Now.
	Clock func() time.Time
}

func (d *Deps) setDefaults() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
}

// Validate reports every missing dependency.
func (d Deps) Validate() error {
	var errs []error
	if d.Fleet == nil {
		errs = append(errs, errors.New("Fleet: required"))
	}
	if d.Store == nil {
		errs = append(errs, errors.New("Store: required"))
	}
	return errors.Join(errs...)
}

// Service is the snapshotter; it implements host.Component.
type Service struct {
	cfg   Config
	deps  Deps
	marks *idem.Marks

	mu         sync.Mutex
	registered bool
}

var _ host.Component = (*Service)(nil)

// New checks cfg and deps and returns the service, ready to be registered on a bus.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	deps.setDefaults()
	if err := errors.Join(cfg.Validate(), deps.Validate()); err != nil {
		return nil, fmt.Errorf("snapshotter config: %w", err)
	}
	return &Service{cfg: cfg, deps: deps, marks: idem.New(deps.Store, Name)}, nil
}

// Name returns the service name, "snapshotter".
func (s *Service) Name() string { return Name }

// Config returns the configuration with defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Register adds the idempotency-mark projection (over SnapshotCreated and SnapshotFailed) and
// the TakeSnapshotOnJobRequested handler to b. A Service registers on one bus only.
func (s *Service) Register(b *bus.Bus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered {
		return errors.New("snapshotter: already registered on a bus")
	}
	if err := b.Project(s.marks.Projection(nil,
		events.Pattern[*eventsv1.SnapshotCreated](),
		events.Pattern[*eventsv1.SnapshotFailed](),
	)); err != nil {
		return fmt.Errorf("marks projection: %w", err)
	}
	a := app.New(app.Config{SnapshotTimeout: s.cfg.SnapshotTimeout, PollInterval: s.cfg.PollInterval},
		s.deps.Fleet, s.marks, b, s.deps.Logger, s.deps.Clock)
	if err := b.Handle(bus.HandlerSpec{
		Name:        HandlerTakeSnapshot,
		Subjects:    []string{events.Pattern[*eventsv1.JobRequested]()},
		Handle:      onJobRequested(a.TakeSnapshotOnJobRequested),
		Concurrency: s.cfg.Concurrency,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	s.registered = true
	return nil
}

// onJobRequested adapts the handler to bus.HandlerFunc, as bus.Handle does, for a HandlerSpec
// that also sets Concurrency. An event of another type is dead-lettered.
func onJobRequested(fn func(context.Context, *events.Event, *eventsv1.JobRequested) error) bus.HandlerFunc {
	return func(ctx context.Context, ev *events.Event) error {
		msg, ok := ev.Data.(*eventsv1.JobRequested)
		if !ok {
			return bus.Permanent(fmt.Errorf("handler %s: event %s has type %s, want JobRequested", HandlerTakeSnapshot, ev.ID, ev.Type))
		}
		return fn(ctx, ev, msg)
	}
}
