// Package snapshotter is Patchwave's pre-patch snapshot stage, its snapshot retention and its
// restores. For every JobRequested it starts one crash-consistent snapshot set of the
// instance's volumes (in batches, one CreateSnapshots call for many jobs) and publishes
// SnapshotStarted; a tracker holds those events while the sets are taken, reads them back in
// batches, and publishes SnapshotCreated (which the installer waits for) or SnapshotFailed. No
// worker waits for a snapshot, so one replica keeps MaxTracked snapshots in flight.
//
// Retention deletes a snapshot set Retention after its job succeeded, keeps it while the
// instance is failed or restored (until a later run succeeds on it), and publishes
// SnapshotDeleted for each deletion. Restores come from the RestoreService API (and from the
// wave's auto-rollback policy when an installation fails): restore.requested, .started,
// .completed or .failed.
//
// Build it with New and host it with libs/host, alone (cmd/snapshotter) or with the other
// services (patchd).
package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"

	"github.com/patchwave/patchwave/services/snapshotter/internal/adapters"
	"github.com/patchwave/patchwave/services/snapshotter/internal/app"
	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
	"github.com/patchwave/patchwave/services/snapshotter/internal/ports"
)

// Name is the service name: it names the bus consumers and is the source of its events.
const Name = "snapshotter"

// Handler and tracker names (with Name they name the durable consumers).
const (
	HandlerTakeSnapshot = "TakeSnapshotOnJobRequested"
	TrackerSnapshots    = "TrackSnapshots"
	HandlerStartRestore = "StartRestoreOnRestoreRequested"
	TrackerRestores     = "TrackRestores"
	HandlerAutoRollback = "RestoreOnInstallFailed"
)

// ActorAutoRollback is the actor of the restores auto-rollback asks for.
const ActorAutoRollback = domain.ActorAutoRollback

// Config configures the snapshotter.
type Config struct {
	// SnapshotTimeout bounds how long a snapshot set may stay pending, counted from its start;
	// a set still pending then is a SnapshotFailed. Optional, default 30m.
	SnapshotTimeout time.Duration
	// PollInterval is the pause between two batched reads of the sets (and restores) in
	// flight. Optional, default 2s.
	PollInterval time.Duration
	// Concurrency is how many JobRequested one replica handles at once; each waits only for
	// its batched CreateSnapshots call. Optional, default 256.
	Concurrency int
	// MaxTracked bounds the snapshot sets (and, separately, the restores) one replica tracks at
	// once, and so its memory. Optional, default 10000.
	MaxTracked int
	// BatchSize is the most snapshot sets one CreateSnapshots call starts. Optional, default 100.
	BatchSize int
	// BatchLinger is how long a job waits for others to share its CreateSnapshots call.
	// Optional, default 20ms.
	BatchLinger time.Duration
	// Retention is how long a snapshot set is kept after its job succeeded (or after a later
	// run succeeded on an instance that was failed or restored). Optional, default 168h (7 days).
	Retention time.Duration
	// SweepInterval is the pause between two retention sweeps. Optional, default 1h.
	SweepInterval time.Duration
	// DeleteBatch bounds the snapshot sets one sweep deletes. Optional, default 1000.
	DeleteBatch int
	// RestoreTimeout bounds how long a restore may run, from its start. Optional, default 1h.
	RestoreTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.SnapshotTimeout == 0 {
		c.SnapshotTimeout = 30 * time.Minute
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
		c.BatchSize = 100
	}
	if c.BatchLinger == 0 {
		c.BatchLinger = 20 * time.Millisecond
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Hour
	}
	if c.DeleteBatch == 0 {
		c.DeleteBatch = 1000
	}
	if c.RestoreTimeout == 0 {
		c.RestoreTimeout = time.Hour
	}
}

// Validate reports every problem with the configuration, naming the field and the rule.
func (c Config) Validate() error {
	errs := []error{
		stage.Positive("SnapshotTimeout", c.SnapshotTimeout),
		stage.Positive("PollInterval", c.PollInterval),
		stage.IntRange("Concurrency", c.Concurrency, 1, 4096),
		stage.IntRange("MaxTracked", c.MaxTracked, 1, 1000000),
		stage.IntRange("BatchSize", c.BatchSize, 1, 1000),
		stage.Positive("BatchLinger", c.BatchLinger),
		stage.Positive("Retention", c.Retention),
		stage.Positive("SweepInterval", c.SweepInterval),
		stage.IntRange("DeleteBatch", c.DeleteBatch, 1, 100000),
		stage.Positive("RestoreTimeout", c.RestoreTimeout),
	}
	if c.PollInterval > 0 && c.SnapshotTimeout > 0 {
		errs = append(errs, stage.AtMost("PollInterval", c.PollInterval, "SnapshotTimeout", c.SnapshotTimeout))
	}
	return errors.Join(errs...)
}

// Deps are the snapshotter's collaborators.
type Deps struct {
	// Fleet is the cloud the snapshots are taken in. Required.
	Fleet provider.Fleet
	// Store holds the idempotency marks and read models, rebuilt from the stream at start.
	// Required.
	Store store.Store
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Clock is the time source for timeouts and retention. Optional, default time.Now.
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

// Service is the snapshotter; it implements host.Component, host.GRPCRegistrar and
// host.Runner (the retention sweeps).
type Service struct {
	cfg   Config
	deps  Deps
	app   *app.Application
	marks struct{ started, finished, restoresStarted, restoresFinished *idem.Marks }

	mu         sync.Mutex
	registered bool
}

var (
	_ host.Component     = (*Service)(nil)
	_ host.GRPCRegistrar = (*Service)(nil)
	_ host.Runner        = (*Service)(nil)
)

// New checks cfg and deps and returns the service, ready to be registered on a bus.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	deps.setDefaults()
	if err := errors.Join(cfg.Validate(), deps.Validate()); err != nil {
		return nil, fmt.Errorf("snapshotter config: %w", err)
	}
	s := &Service{cfg: cfg, deps: deps}
	s.marks.started = idem.New(deps.Store, Name)
	s.marks.finished = idem.New(deps.Store, Name+"-done")
	s.marks.restoresStarted = idem.New(deps.Store, Name+"-restores")
	s.marks.restoresFinished = idem.New(deps.Store, Name+"-restores-done")
	a, err := app.New(app.Config{
		SnapshotTimeout: cfg.SnapshotTimeout, RestoreTimeout: cfg.RestoreTimeout, Retention: cfg.Retention,
		DeleteBatch: cfg.DeleteBatch, CheckConcurrency: 8,
		Batch:   stage.BatcherConfig{Size: cfg.BatchSize, Linger: cfg.BatchLinger},
		Publish: stage.BatcherConfig{Size: cfg.Concurrency, Linger: 5 * time.Millisecond},
	}, app.Deps{
		Fleet: deps.Fleet, Repo: adapters.New(deps.Store),
		Started: s.marks.started, Finished: s.marks.finished,
		RestoresStarted: s.marks.restoresStarted, RestoresFinished: s.marks.restoresFinished,
		Logger: deps.Logger.With("service", Name), Clock: deps.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshotter: %w", err)
	}
	s.app = a
	return s, nil
}

// Name returns the service name, "snapshotter".
func (s *Service) Name() string { return Name }

// Config returns the configuration with defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Register adds the snapshotter's projections (idempotency marks and the records of snapshot
// sets and restores), its handlers and its trackers to b. A Service registers on one bus only.
func (s *Service) Register(b *bus.Bus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered {
		return errors.New("snapshotter: already registered on a bus")
	}
	if err := s.app.Attach(b); err != nil {
		return err
	}
	projections := []bus.ProjectionSpec{
		stage.MarksProjection(s.marks.started, events.Pattern[*eventsv1.SnapshotStarted](), events.Pattern[*eventsv1.SnapshotFailed]()),
		stage.MarksProjection(s.marks.finished, events.Pattern[*eventsv1.SnapshotCreated](), events.Pattern[*eventsv1.SnapshotFailed]()),
		stage.MarksProjection(s.marks.restoresStarted, events.Pattern[*eventsv1.RestoreStarted](), events.Pattern[*eventsv1.RestoreFailed]()),
		stage.MarksProjection(s.marks.restoresFinished, events.Pattern[*eventsv1.RestoreCompleted](), events.Pattern[*eventsv1.RestoreFailed]()),
		{
			Name: app.ProjectionRecords, Subjects: app.RecordSubjects(), Apply: s.app.ApplyRecord, CaughtUp: s.app.CaughtUp,
			Checkpoint: func(ctx context.Context) (uint64, error) {
				return adapters.New(s.deps.Store).Checkpoint(ctx, app.ProjectionRecords)
			},
		},
	}
	for _, p := range projections {
		if err := b.Project(p); err != nil {
			return fmt.Errorf("projection %s: %w", p.Name, err)
		}
	}
	if err := stage.Handle(b, stage.HandlerSpec[*eventsv1.JobRequested]{
		Name: HandlerTakeSnapshot, Handle: s.app.TakeSnapshotOnJobRequested, OnDeadLetter: s.app.FailJobOnDeadLetter,
		Concurrency: s.cfg.Concurrency,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	if err := stage.Track(b, stage.TrackerSpec[*eventsv1.SnapshotStarted]{
		Name: TrackerSnapshots, Check: s.app.TrackSnapshots, OnDeadLetter: s.app.FailSnapshotOnDeadLetter,
		MaxHeld: s.cfg.MaxTracked, PollInterval: s.cfg.PollInterval,
	}); err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	if err := stage.Handle(b, stage.HandlerSpec[*eventsv1.RestoreRequested]{
		Name: HandlerStartRestore, Handle: s.app.StartRestoreOnRestoreRequested, OnDeadLetter: s.app.FailRestoreOnDeadLetter,
		Concurrency: 16,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	if err := stage.Track(b, stage.TrackerSpec[*eventsv1.RestoreStarted]{
		Name: TrackerRestores, Check: s.app.TrackRestores, OnDeadLetter: s.app.FailTrackedRestoreOnDeadLetter,
		MaxHeld: s.cfg.MaxTracked, PollInterval: s.cfg.PollInterval,
	}); err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	if err := stage.Handle(b, stage.HandlerSpec[*eventsv1.InstallFailed]{
		Name: HandlerAutoRollback, Handle: s.app.RestoreOnInstallFailed, Concurrency: 16,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	s.registered = true
	return nil
}

// RegisterGRPC serves patchwave.snapshotter.v1.RestoreService.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	snapshotterv1.RegisterRestoreServiceServer(r, ports.NewGRPCServer(s.app))
}

// Server returns the RestoreService implementation, for in-process callers and tests.
func (s *Service) Server() snapshotterv1.RestoreServiceServer { return ports.NewGRPCServer(s.app) }

// Run sweeps retention every SweepInterval until ctx is done; the first sweep runs once the
// read models have caught up.
func (s *Service) Run(ctx context.Context) error {
	select {
	case <-s.app.Ready():
	case <-ctx.Done():
		return nil
	}
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if _, err := s.SweepRetention(ctx); err != nil && ctx.Err() == nil {
			s.deps.Logger.Warn("retention sweep failed", "service", Name, "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepRetention deletes the snapshot sets that are due now (by Deps.Clock), at most
// DeleteBatch, and returns how many it deleted. Run calls it every SweepInterval.
func (s *Service) SweepRetention(ctx context.Context) (int, error) {
	n, err := s.app.Sweep(ctx)
	if n > 0 {
		s.deps.Logger.Info("retention swept", "service", Name, "deleted", n)
	}
	return n, err
}
