// Package installer is Patchwave's installation stage. For every SnapshotCreated it checks at
// the provider that the run's pre-patch snapshot of the instance is complete (no snapshot, no
// install), installs the pinned baseline's patches once, waits for the result within the
// per-VM timeout, and publishes InstallStarted and then InstallSucceeded or InstallFailed with
// per-patch results. Build it with New and host it with libs/host, alone (cmd/installer) or
// with the other services (patchd).
package installer

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

	"github.com/patchwave/patchwave/services/installer/internal/app"
)

// Name is the service name: it names the bus consumers and is the source of its events.
const Name = "installer"

// HandlerInstall is the name of the handler that consumes SnapshotCreated.
const HandlerInstall = "InstallOnSnapshotCreated"

// Config configures the installer.
type Config struct {
	// InstallTimeout is the per-VM timeout: how long one installation may run, counted from
	// its start, before the job is an InstallFailed. Optional, default 2h.
	InstallTimeout time.Duration
	// PollInterval is the pause between two reads of a running installation. Optional,
	// default 2s.
	PollInterval time.Duration
	// RebootPolicy is the reboot policy of every installation: if-required, always or never.
	// Optional, default if-required.
	RebootPolicy provider.RebootPolicy
	// Concurrency is how many jobs one replica handles at once; each holds a slot while it
	// waits for its installation. Optional, default 32.
	Concurrency int
}

func (c *Config) setDefaults() {
	if c.InstallTimeout == 0 {
		c.InstallTimeout = 2 * time.Hour
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Second
	}
	c.RebootPolicy = c.RebootPolicy.OrDefault()
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
}

// Validate reports every problem with the configuration, naming the field and the rule.
func (c Config) Validate() error {
	var errs []error
	if c.InstallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("InstallTimeout %s: must be > 0", c.InstallTimeout))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("PollInterval %s: must be > 0", c.PollInterval))
	} else if c.InstallTimeout > 0 && c.PollInterval > c.InstallTimeout {
		errs = append(errs, fmt.Errorf("PollInterval %s: must not exceed InstallTimeout %s", c.PollInterval, c.InstallTimeout))
	}
	if !c.RebootPolicy.Valid() {
		errs = append(errs, fmt.Errorf("RebootPolicy %q: must be one of %s, %s, %s", c.RebootPolicy,
			provider.RebootIfRequired, provider.RebootAlways, provider.RebootNever))
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("Concurrency %d: must be from 1 to 1024", c.Concurrency))
	}
	return errors.Join(errs...)
}

// Deps are the installer's collaborators.
type Deps struct {
	// Fleet is the cloud the patches are installed in; the snapshotter must use the same one.
	// Required.
	Fleet provider.Fleet
	// Store holds the idempotency marks, rebuilt from the stream at start. Required.
	Store store.Store
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Clock is the time source for installation timeouts. Optional, default time.Now.
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

// Service is the installer; it implements host.Component.
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
		return nil, fmt.Errorf("installer config: %w", err)
	}
	return &Service{cfg: cfg, deps: deps, marks: idem.New(deps.Store, Name)}, nil
}

// Name returns the service name, "installer".
func (s *Service) Name() string { return Name }

// Config returns the configuration with defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Register adds the idempotency-mark projection (over InstallSucceeded and InstallFailed) and
// the InstallOnSnapshotCreated handler to b. A Service registers on one bus only.
func (s *Service) Register(b *bus.Bus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered {
		return errors.New("installer: already registered on a bus")
	}
	if err := b.Project(s.marks.Projection(nil,
		events.Pattern[*eventsv1.InstallSucceeded](),
		events.Pattern[*eventsv1.InstallFailed](),
	)); err != nil {
		return fmt.Errorf("marks projection: %w", err)
	}
	a := app.New(app.Config{
		InstallTimeout: s.cfg.InstallTimeout,
		PollInterval:   s.cfg.PollInterval,
		RebootPolicy:   s.cfg.RebootPolicy,
	}, s.deps.Fleet, s.marks, b, s.deps.Logger, s.deps.Clock)
	if err := b.Handle(bus.HandlerSpec{
		Name:        HandlerInstall,
		Subjects:    []string{events.Pattern[*eventsv1.SnapshotCreated]()},
		Handle:      onSnapshotCreated(a.InstallOnSnapshotCreated),
		Concurrency: s.cfg.Concurrency,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	s.registered = true
	return nil
}

// onSnapshotCreated adapts the handler to bus.HandlerFunc, as bus.Handle does, for a
// HandlerSpec that also sets Concurrency. An event of another type is dead-lettered.
func onSnapshotCreated(fn func(context.Context, *events.Event, *eventsv1.SnapshotCreated) error) bus.HandlerFunc {
	return func(ctx context.Context, ev *events.Event) error {
		msg, ok := ev.Data.(*eventsv1.SnapshotCreated)
		if !ok {
			return bus.Permanent(fmt.Errorf("handler %s: event %s has type %s, want SnapshotCreated", HandlerInstall, ev.ID, ev.Type))
		}
		return fn(ctx, ev, msg)
	}
}
