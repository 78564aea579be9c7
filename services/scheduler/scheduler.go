// Package scheduler is Patchwave's scheduler service: it starts runs of a tenant's waves,
// requests one job per instance in scope, follows the jobs' outcomes and completes each run.
//
// A Service is a host.Component (Name "scheduler") and a host.GRPCRegistrar
// (patchwave.scheduler.v1.SchedulerService):
//
//	svc, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Fleet: fleet, Store: st})
//	h, err := host.New(ctx, host.Config{...}, svc)
//
// Read models (known baselines, runs and their progress, job-request marks) live in Deps.Store
// and are rebuilt from JetStream, so an in-memory store is enough for a single process.
package scheduler

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/adapters"
	"github.com/patchwave/patchwave/services/scheduler/internal/app"
	"github.com/patchwave/patchwave/services/scheduler/internal/ports"
)

// Name is the service name: it names the bus consumers and the event source.
const Name = "scheduler"

// Config configures the scheduler.
type Config struct {
	// TagKey is the instance tag whose value is the wave number ("1", "2", ...).
	// Optional, default "PatchWave".
	TagKey string
	// MaxWaves is the highest wave number a run may start. Optional, default 3.
	MaxWaves int
	// MaxRunInstances bounds the instances of one run: RunStarted lists them all in one event,
	// which must stay under the NATS maximum payload (1 MiB by default). Optional, default
	// 20000; a wave with more running instances is refused with FailedPrecondition.
	MaxRunInstances int
}

func (c *Config) setDefaults() {
	if c.TagKey == "" {
		c.TagKey = "PatchWave"
	}
	if c.MaxWaves == 0 {
		c.MaxWaves = 3
	}
	if c.MaxRunInstances == 0 {
		c.MaxRunInstances = 20000
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MaxWaves < 1 || c.MaxWaves > 52 {
		errs = append(errs, fmt.Errorf("MaxWaves %d: must be from 1 to 52", c.MaxWaves))
	}
	if c.MaxRunInstances < 0 {
		errs = append(errs, fmt.Errorf("MaxRunInstances %d: must not be negative", c.MaxRunInstances))
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
	app *app.Application
}

var (
	_ host.Component     = (*Service)(nil)
	_ host.GRPCRegistrar = (*Service)(nil)
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
	a := app.New(app.Config{TagKey: cfg.TagKey, MaxWaves: cfg.MaxWaves, MaxRunInstances: cfg.MaxRunInstances}, app.Deps{
		Fleet:  deps.Fleet,
		Repo:   adapters.New(deps.Store),
		Marks:  idem.New(deps.Store, "scheduler-jobs"),
		Logger: deps.Logger.With("service", Name),
		Clock:  deps.Clock,
	})
	return &Service{app: a}, nil
}

// Name implements host.Component.
func (s *Service) Name() string { return Name }

// Register implements host.Component: the baselines, runs and job-marks projections and the
// RequestJobsOnRunStarted handler. A Service is registered on one bus.
func (s *Service) Register(b *bus.Bus) error { return ports.RegisterEvents(b, s.app) }

// RegisterGRPC implements host.GRPCRegistrar.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	schedulerv1.RegisterSchedulerServiceServer(r, ports.NewGRPCServer(s.app))
}

// Server returns the SchedulerService implementation, for in-process callers and tests.
func (s *Service) Server() schedulerv1.SchedulerServiceServer { return ports.NewGRPCServer(s.app) }
