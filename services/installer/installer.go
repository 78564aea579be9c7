// Package installer is Patchwave's installation stage. For every SnapshotCreated it checks at
// the provider that the run's pre-patch snapshot set of the instance is complete and is the one
// the event names (no snapshot, no install), then starts the installation of the pinned
// baseline's patches in batches (one SSM command per 50 instances) and publishes
// InstallStarted. A tracker holds those events while the installations run, follows them with
// batched reads, applies the job's reboot policy and a post-install health check, and publishes
// exactly one InstallSucceeded or InstallFailed per job with per-patch results; an installation
// that outlives the job's per-instance timeout is cancelled and fails with job state TIMED_OUT.
// Build it with New and host it with libs/host, alone (cmd/installer) or with the other
// services (patchd).
package installer

import (
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
	"github.com/patchwave/patchwave/libs/stage"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/installer/internal/app"
)

// Name is the service name: it names the bus consumers and is the source of its events.
const Name = "installer"

// Handler and tracker names (with Name they name the durable consumers).
const (
	HandlerInstall       = "InstallOnSnapshotCreated"
	TrackerInstallations = "TrackInstallations"
	HandlerScan          = "ScanOnScanRequested"
	TrackerScans         = "TrackScans"
)

// Config configures the installer.
type Config struct {
	// InstallTimeout is the per-instance timeout of a job whose policy names none: how long one
	// installation may run, counted from its start, before it is cancelled and the job is
	// TIMED_OUT. Optional, default 2h.
	InstallTimeout time.Duration
	// PollInterval is the pause between two batched reads of the installations in flight.
	// Optional, default 2s.
	PollInterval time.Duration
	// Concurrency is how many SnapshotCreated one replica handles at once; each waits only for
	// its batched calls. Optional, default 256.
	Concurrency int
	// MaxTracked bounds the installations one replica tracks at once, and so its memory.
	// Optional, default 10000.
	MaxTracked int
	// BatchSize is the most installations one Install call starts (SSM takes 50 instances per
	// command). Optional, default 50.
	BatchSize int
	// BatchLinger is how long a job waits for others to share its calls. Optional, default 20ms.
	BatchLinger time.Duration
	// HealthGrace is how long after an installation ends (or the installer's reboot) the
	// instance may be short of healthy (rebooting) before the job fails. Optional, default 10m.
	HealthGrace time.Duration
	// ScanTimeout bounds one scan (an assessment), from its start. Optional, default 30m.
	ScanTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.InstallTimeout == 0 {
		c.InstallTimeout = 2 * time.Hour
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 256
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = 10000
	}
	if c.BatchSize == 0 {
		c.BatchSize = 50
	}
	if c.BatchLinger == 0 {
		c.BatchLinger = 20 * time.Millisecond
	}
	if c.HealthGrace == 0 {
		c.HealthGrace = 10 * time.Minute
	}
	if c.ScanTimeout == 0 {
		c.ScanTimeout = 30 * time.Minute
	}
}

// Validate reports every problem with the configuration, naming the field and the rule.
func (c Config) Validate() error {
	errs := []error{
		stage.Positive("InstallTimeout", c.InstallTimeout),
		stage.Positive("PollInterval", c.PollInterval),
		stage.IntRange("Concurrency", c.Concurrency, 1, 4096),
		stage.IntRange("MaxTracked", c.MaxTracked, 1, 1000000),
		stage.IntRange("BatchSize", c.BatchSize, 1, 50),
		stage.Positive("BatchLinger", c.BatchLinger),
		stage.Positive("HealthGrace", c.HealthGrace),
		stage.Positive("ScanTimeout", c.ScanTimeout),
	}
	if c.PollInterval > 0 && c.InstallTimeout > 0 {
		errs = append(errs, stage.AtMost("PollInterval", c.PollInterval, "InstallTimeout", c.InstallTimeout))
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
	// Clock is the time source for timeouts and the health grace. Optional, default time.Now.
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
	cfg               Config
	deps              Deps
	app               *app.Installer
	started, finished *idem.Marks
	scans             app.Scans

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
	s := &Service{cfg: cfg, deps: deps, started: idem.New(deps.Store, Name), finished: idem.New(deps.Store, Name+"-done"),
		scans: app.Scans{Started: idem.New(deps.Store, Name+"-scans"), Finished: idem.New(deps.Store, Name+"-scans-done"), Timeout: cfg.ScanTimeout}}
	a, err := app.New(app.Config{
		InstallTimeout: cfg.InstallTimeout, HealthGrace: cfg.HealthGrace, CheckConcurrency: 8, ResultsConcurrency: 32, CheckChunk: 1000,
		Install: stage.BatcherConfig{Size: cfg.BatchSize, Linger: cfg.BatchLinger},
		Check:   stage.BatcherConfig{Size: 200, Linger: cfg.BatchLinger},
		Publish: stage.BatcherConfig{Size: cfg.Concurrency, Linger: 5 * time.Millisecond},
	}, app.Deps{
		Fleet: deps.Fleet, Started: s.started, Finished: s.finished, Reboots: idem.New(deps.Store, Name+"-reboots"), Scans: s.scans,
		Logger: deps.Logger.With("service", Name), Clock: deps.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("installer: %w", err)
	}
	s.app = a
	return s, nil
}

// Name returns the service name, "installer".
func (s *Service) Name() string { return Name }

// Config returns the configuration with defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Register adds the idempotency-mark projections, the InstallOnSnapshotCreated handler and the
// TrackInstallations tracker to b. A Service registers on one bus only.
func (s *Service) Register(b *bus.Bus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered {
		return errors.New("installer: already registered on a bus")
	}
	if err := s.app.Attach(b); err != nil {
		return err
	}
	for _, p := range []bus.ProjectionSpec{
		stage.MarksProjection(s.started, events.Pattern[*eventsv1.InstallStarted](), events.Pattern[*eventsv1.InstallFailed]()),
		stage.MarksProjection(s.finished, events.Pattern[*eventsv1.InstallSucceeded](), events.Pattern[*eventsv1.InstallFailed]()),
		s.scans.Started.Projection(app.ScanKeyOf, events.Pattern[*eventsv1.ScanStarted](), events.Pattern[*eventsv1.ScanFailed]()),
		s.scans.Finished.Projection(app.ScanKeyOf, events.Pattern[*eventsv1.ScanCompleted](), events.Pattern[*eventsv1.ScanFailed]()),
	} {
		if err := b.Project(p); err != nil {
			return fmt.Errorf("projection %s: %w", p.Name, err)
		}
	}
	if err := stage.Handle(b, stage.HandlerSpec[*eventsv1.SnapshotCreated]{
		Name: HandlerInstall, Handle: s.app.InstallOnSnapshotCreated, OnDeadLetter: s.app.FailJobOnDeadLetter,
		Concurrency: s.cfg.Concurrency,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	if err := stage.Track(b, stage.TrackerSpec[*eventsv1.InstallStarted]{
		Name: TrackerInstallations, Check: s.app.TrackInstallations, OnDeadLetter: s.app.FailInstallationOnDeadLetter,
		MaxHeld: s.cfg.MaxTracked, PollInterval: s.cfg.PollInterval,
	}); err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	if err := stage.Handle(b, stage.HandlerSpec[*eventsv1.ScanRequested]{
		Name: HandlerScan, Handle: s.app.ScanOnScanRequested, Concurrency: s.cfg.Concurrency,
	}); err != nil {
		return fmt.Errorf("scan handler: %w", err)
	}
	if err := stage.Track(b, stage.TrackerSpec[*eventsv1.ScanStarted]{
		Name: TrackerScans, Check: s.app.TrackScans, OnDeadLetter: s.app.FailScanOnDeadLetter,
		MaxHeld: s.cfg.MaxTracked, PollInterval: s.cfg.PollInterval,
	}); err != nil {
		return fmt.Errorf("scan tracker: %w", err)
	}
	s.registered = true
	return nil
}
