// Package scheduler is Patchwave's scheduler service: it owns the service design (tenants,
// their cloud accounts, waves, freezes, rollout policies and service requests, in JetStream KV),
// starts runs of a tenant's waves, requests one job per instance in scope, follows the jobs'
// outcomes and completes each run.
//
// A Service is a host.Component (Name "scheduler"), a host.Runner (the design's watched view
// and its audit relay) and a host.GRPCRegistrar (patchwave.scheduler.v1.SchedulerService and
// patchwave.design.v1.DesignService):
//
//	svc, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Fleet: fleet, Store: st})
//	h, err := host.New(ctx, host.Config{...}, svc)
//
// Read models (known baselines, runs and their progress, job-request marks) live in Deps.Store
// and are rebuilt from JetStream, so an in-memory store is enough for a single process.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	libdesign "github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
	"github.com/patchwave/patchwave/libs/store"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/adapters"
	"github.com/patchwave/patchwave/services/scheduler/internal/app"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
	"github.com/patchwave/patchwave/services/scheduler/internal/ports"
)

// Name is the service name: it names the bus consumers and the event source.
const Name = "scheduler"

// Config configures the scheduler. A tenant's wave tag key and wave limit are the tenant's
// settings in the service design.
type Config struct {
	// DesignReplicas is the number of replicas of the design's KV bucket: 1 on a single NATS
	// server, 3 on a cluster. Optional, default 1.
	DesignReplicas int
	// Tick is how often the run controller looks at every open run without news (the dispatch
	// stop instant, a release lost in a crash). Optional, default 250ms.
	Tick time.Duration
	// RebootPolicy is the reboot policy of a job whose wave's rollout policy (and the tenant's
	// default policy) names none: if-required, always or never. Optional, default if-required.
	RebootPolicy provider.RebootPolicy
	// InstanceTimeout is the per-instance timeout of a job whose rollout policy names none.
	// Optional, default 0: the installer's.
	InstanceTimeout time.Duration
	// AutoRollback restores an instance from its pre-patch snapshot when its install fails, for
	// a job whose wave's rollout policy does not ask for it itself. Optional, default false.
	AutoRollback bool
	// FireInterval is how often the firing evaluates the waves' occurrences (it also does when
	// an approval arrives or a run completes). Optional, default 10 s; negative turns the firing
	// loop off (ReleaseRun, SkipRun and PatchNow still work).
	FireInterval time.Duration
	// FireLookback bounds how long after its window an occurrence nobody fired is still
	// recorded MISSED. Optional, default 40 days.
	FireLookback time.Duration
	// FireLease is how long a claim to start a run stays its claimant's before another replica
	// starts the run in its place. Optional, default 30 s.
	FireLease time.Duration
}

func (c *Config) setDefaults() {
	if c.DesignReplicas == 0 {
		c.DesignReplicas = 1
	}
	if c.Tick == 0 {
		c.Tick = 250 * time.Millisecond
	}
	if c.FireInterval == 0 {
		c.FireInterval = 10 * time.Second
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DesignReplicas < 1 || c.DesignReplicas > 5 {
		errs = append(errs, fmt.Errorf("DesignReplicas %d: must be from 1 to 5", c.DesignReplicas))
	}
	if c.Tick < time.Millisecond {
		errs = append(errs, fmt.Errorf("Tick %s: must be at least 1ms", c.Tick))
	}
	if !c.RebootPolicy.Valid() {
		errs = append(errs, fmt.Errorf("RebootPolicy %q: must be one of %s, %s, %s", c.RebootPolicy,
			provider.RebootIfRequired, provider.RebootAlways, provider.RebootNever))
	}
	if c.InstanceTimeout < 0 {
		errs = append(errs, fmt.Errorf("InstanceTimeout %s: must not be negative", c.InstanceTimeout))
	}
	if c.FireLease < 0 {
		errs = append(errs, fmt.Errorf("FireLease %s: must not be negative", c.FireLease))
	}
	if c.FireLookback < 0 {
		errs = append(errs, fmt.Errorf("FireLookback %s: must not be negative", c.FireLookback))
	}
	return errors.Join(errs...)
}

// Deps are the scheduler's collaborators.
type Deps struct {
	// Fleet discovers the instances of a wave. Required.
	Fleet provider.Fleet
	// Store keeps the read models; every key starts with "scheduler:" or "idem:scheduler-".
	// Required.
	Store store.Store
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Clock stamps runs and events. Optional, default time.Now.
	Clock func() time.Time
}

// Service is the scheduler.
type Service struct {
	cfg   Config
	log   *slog.Logger
	clock func() time.Time
	app   *app.Application

	// Set by Register, which opens the design's bucket on the bus's JetStream.
	mu      sync.Mutex
	designs *app.Designs
	view    *libdesign.View
	feed    *adapters.AuditFeed
	firing  *app.Firing
	repo    *adapters.Store
}

var (
	_ host.Component     = (*Service)(nil)
	_ host.GRPCRegistrar = (*Service)(nil)
	_ host.Runner        = (*Service)(nil)
	_ host.Readiness     = (*Service)(nil)
)

// New checks cfg and deps and returns the service, ready to be registered on a bus.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	errs := []error{cfg.Validate()}
	if deps.Fleet == nil {
		errs = append(errs, errors.New("Deps.Fleet: required"))
	}
	if deps.Store == nil {
		errs = append(errs, errors.New("Deps.Store: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	log := deps.Logger.With("service", Name)
	s := &Service{cfg: cfg, log: log, clock: deps.Clock}
	policy := &typesv1.JobPolicy{RebootPolicy: stage.RebootPolicyOf(cfg.RebootPolicy), AutoRollback: cfg.AutoRollback}
	if cfg.InstanceTimeout > 0 {
		policy.InstanceTimeout = durationpb.New(cfg.InstanceTimeout)
	}
	s.repo = adapters.New(deps.Store)
	s.app = app.New(app.Config{Policy: policy, Tick: cfg.Tick}, app.Deps{
		Fleet:  deps.Fleet,
		Design: designScope{s},
		Repo:   s.repo,
		Logger: log,
		Clock:  deps.Clock,
	})
	return s, nil
}

// Name implements host.Component.
func (s *Service) Name() string { return Name }

// Register implements host.Component: the baselines and runs projections (the run controller
// releases jobs from Run); it also creates the design's KV bucket (or checks its
// configuration) on the bus's JetStream. A Service is registered on one bus.
func (s *Service) Register(b *bus.Bus) error {
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout)
	defer cancel()
	kv, err := adapters.OpenDesignKV(ctx, b.JetStream(), s.cfg.DesignReplicas)
	if err != nil {
		return err
	}
	view, err := libdesign.NewView(libdesign.ViewConfig{JetStream: b.JetStream(), ServiceRequests: true, Logger: s.log})
	if err != nil {
		return err
	}
	designs := app.NewDesigns(app.DesignDeps{Repo: kv, View: view, Logger: s.log, Clock: s.clock})
	designs.Attach(b)
	claims, err := adapters.OpenClaims(ctx, b.JetStream(), s.cfg.DesignReplicas)
	if err != nil {
		return err
	}
	firing := app.NewFiring(app.FiringConfig{Lookback: s.cfg.FireLookback, Lease: s.cfg.FireLease}, s.app, claims, s.repo, view)
	s.mu.Lock()
	s.designs, s.view, s.feed, s.firing = designs, view, adapters.NewAuditFeed(b.JetStream(), time.Second), firing
	s.mu.Unlock()
	if err := ports.RegisterEvents(b, s.app); err != nil {
		return err
	}
	return ports.RegisterFiring(b, firing, s.app.Checkpoint(app.ProjectionFiring))
}

// design returns the design application, or Unavailable before Register.
func (s *Service) design() (*app.Designs, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.designs == nil {
		return nil, fmt.Errorf("%w: the service design is not open yet", apierr.ErrUnavailable)
	}
	return s.designs, nil
}

// designScope gives runs the design once Register has opened it.
type designScope struct{ s *Service }

func (d designScope) RunScope(ctx context.Context, tenant string, wave int32) (string, error) {
	a, err := d.s.design()
	if err != nil {
		return "", err
	}
	return a.RunScope(ctx, tenant, wave)
}

func (d designScope) WavePolicy(ctx context.Context, tenant string, wave int32) (*typesv1.RolloutPolicy, error) {
	a, err := d.s.design()
	if err != nil {
		return nil, err
	}
	return a.WavePolicy(ctx, tenant, wave)
}

func (d designScope) Window(ctx context.Context, tenant string, wave int32, now time.Time) (*domain.Window, error) {
	a, err := d.s.design()
	if err != nil {
		return nil, err
	}
	return a.Window(ctx, tenant, wave, now)
}

func (d designScope) RequireTenant(ctx context.Context, tenant string) error {
	a, err := d.s.design()
	if err != nil {
		return err
	}
	return a.RequireTenant(ctx, tenant)
}

// registerTimeout bounds the creation of the design bucket in Register.
const registerTimeout = 30 * time.Second

// Run implements host.Runner: it keeps the design's watched view up to date, runs the run
// controller (which releases every open run's jobs under its rollout limits), the audit
// relay (the event of every design revision, published once even after a crash between a
// write and its publish) and the firing loop (the waves' occurrences) until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	designs, view, feed, firing := s.designs, s.view, s.feed, s.firing
	s.mu.Unlock()
	if view == nil {
		return errors.New("scheduler: Run before Register")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return view.Run(gctx) })
	if s.cfg.FireInterval > 0 {
		g.Go(func() error {
			select {
			case <-view.Ready():
			case <-gctx.Done():
				return nil
			}
			return firing.Run(gctx, s.cfg.FireInterval)
		})
	}
	g.Go(func() error { return s.app.RunController(gctx) })
	g.Go(func() error {
		for {
			err := feed.Run(gctx, func(ctx context.Context, e adapters.AuditEntry) error {
				return designs.Audit(ctx, e.Key, e.Revision, e.Value, e.Deleted)
			})
			if gctx.Err() == nil {
				s.log.WarnContext(gctx, "design audit relay stopped; starting it again", "error", err)
			}
			select {
			case <-gctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	})
	return g.Wait()
}

// Ready implements host.Readiness: the design's view has its initial values.
func (s *Service) Ready(ctx context.Context) error {
	s.mu.Lock()
	view := s.view
	s.mu.Unlock()
	if view == nil {
		return errors.New("design view: not started")
	}
	return view.Loaded(ctx)
}

// View is the design's watched view, for in-process readers (nil before Register).
func (s *Service) View() *libdesign.View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view
}

// RegisterGRPC implements host.GRPCRegistrar: the scheduler's API, and the design's once
// Register has opened it (host.New registers components before their APIs).
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	schedulerv1.RegisterSchedulerServiceServer(r, ports.NewGRPCServer(s.app))
	if designs, err := s.design(); err == nil {
		designv1.RegisterDesignServiceServer(r, ports.NewDesignServer(designs))
	}
}

// Server returns the SchedulerService implementation, for in-process callers and tests.
func (s *Service) Server() schedulerv1.SchedulerServiceServer { return ports.NewGRPCServer(s.app) }

// Fire evaluates the waves' occurrences once, at the clock's now: what the firing loop does
// every FireInterval. For tests with an injected clock, and for tools.
func (s *Service) Fire(ctx context.Context) error {
	s.mu.Lock()
	firing := s.firing
	s.mu.Unlock()
	if firing == nil {
		return errors.New("scheduler: Fire before Register")
	}
	return firing.Tick(ctx)
}
