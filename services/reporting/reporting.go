// Package reporting is Patchwave's reporting service: read models built from the event stream
// that answer compliance queries (coverage per tenant and wave, failed patches) and the audit
// trail of the API's mutating calls (per tenant, newest first).
//
// A Service is a host.Component (Name "reporting") with no handlers, only the compliance and
// audit projections, a host.GRPCRegistrar (patchwave.reporting.v1.ReportingService) and a
// host.Runner: it watches the service design (libs/design's View) so that a tenant that is not
// in the design is NotFound. Its read model lives in Deps.Store and is rebuilt from JetStream:
// flush the store and restart, and the reports come back the same.
package reporting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/store"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/ports"
)

// Name is the service name.
const Name = "reporting"

// Config configures reporting.
type Config struct {
	// DailyScanAt is the UTC time of day ("HH:MM") of the daily assessment of every tenant's
	// in-scope instances. Optional, default "03:00"; "off" disables it.
	DailyScanAt string
	// ScanDuringFreeze lets scans run inside a change freeze. Optional, default false: no scan
	// starts inside a freeze of the tenant (or a global one).
	ScanDuringFreeze bool
	// ScanTick is how often the daily assessment checks whether it is due. Optional, default 1m.
	ScanTick time.Duration
	// ScanReleaseTick is how often pending scan chunks are looked at besides when scan
	// outcomes arrive (a freeze that ended, a lost wake-up). Optional, default 1s.
	ScanReleaseTick time.Duration
}

func (c *Config) setDefaults() {
	if c.DailyScanAt == "" {
		c.DailyScanAt = "03:00"
	}
	if c.ScanTick == 0 {
		c.ScanTick = time.Minute
	}
	if c.ScanReleaseTick == 0 {
		c.ScanReleaseTick = time.Second
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DailyScanAt != "" && c.DailyScanAt != "off" {
		if _, err := time.Parse("15:04", c.DailyScanAt); err != nil {
			errs = append(errs, fmt.Errorf("DailyScanAt: must be a UTC time of day HH:MM or \"off\", got %q", c.DailyScanAt))
		}
	}
	if c.ScanTick < 0 {
		errs = append(errs, fmt.Errorf("ScanTick: must not be negative, got %s", c.ScanTick))
	}
	if c.ScanReleaseTick < 0 {
		errs = append(errs, fmt.Errorf("ScanReleaseTick: must not be negative, got %s", c.ScanReleaseTick))
	}
	return errors.Join(errs...)
}

// Deps are reporting's collaborators.
type Deps struct {
	// Store keeps the read model; every key starts with "reporting:". Required.
	Store store.Store
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Clock stamps reports (as_of). Optional, default time.Now.
	Clock func() time.Time
}

// Service is the reporting service.
type Service struct {
	cfg   Config
	clock func() time.Time
	app   *app.Application
	audit *app.Audit
	log   *slog.Logger

	// fromStart makes the baselines and audit projections read their streams from the start
	// (a rebuild).
	fromStart bool

	mu   sync.Mutex
	view *design.View
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
	if deps.Store == nil {
		errs = append(errs, errors.New("Deps.Store: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("reporting: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	s := &Service{cfg: cfg, clock: deps.Clock, log: deps.Logger.With("service", Name)}
	repo := adapters.New(deps.Store)
	s.app = app.New(repo, tenants{s}, s.log, deps.Clock)
	daily := cfg.DailyScanAt
	if daily == "off" {
		daily = ""
	}
	s.app.SetScans(app.ScanOptions{Freezes: adapters.Freezes{View: s.designView}, Policies: adapters.Policies{View: s.designView},
		DuringFreeze: cfg.ScanDuringFreeze, DailyAt: daily})
	s.audit = app.NewAudit(repo, tenants{s})
	return s, nil
}

// tenants answers from the design view once Register has made it.
type tenants struct{ s *Service }

func (t tenants) RequireTenant(ctx context.Context, tenant string) error {
	v := t.s.designView()
	if v == nil {
		return fmt.Errorf("%w: the service design is not watched yet", apierr.ErrUnavailable)
	}
	return v.RequireTenant(ctx, tenant)
}

func (s *Service) designView() *design.View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view
}

// Run implements host.Runner: it watches the service design, every ScanTick orders the daily
// assessment when it is due, and releases pending scan chunks when scan outcomes arrive (and
// every ScanReleaseTick), until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	v := s.designView()
	if v == nil {
		return errors.New("reporting: Run before Register")
	}
	errc := make(chan error, 1)
	go func() { errc <- v.Run(ctx) }()
	t := time.NewTicker(s.cfg.ScanTick)
	defer t.Stop()
	rt := time.NewTicker(s.cfg.ScanReleaseTick)
	defer rt.Stop()
	release := func() {
		if _, err := s.app.ReleaseScans(ctx, s.clock()); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "scan release", "error", err)
		}
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-t.C:
			if err := s.app.DailyScans(ctx, s.clock()); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "daily scan", "error", err)
			}
		case <-s.app.ScanKicks():
			release()
		case <-rt.C:
			release()
		}
	}
}

// DailyScans requests the daily assessment of every tenant if it is due at now (the Runner
// calls it every ScanTick with the clock's time; tests call it with theirs).
func (s *Service) DailyScans(ctx context.Context, now time.Time) error {
	return s.app.DailyScans(ctx, now)
}

// Ready implements host.Readiness: the service design is loaded.
func (s *Service) Ready(ctx context.Context) error {
	v := s.designView()
	if v == nil {
		return errors.New("design view: not started")
	}
	return v.Loaded(ctx)
}

// Name implements host.Component.
func (s *Service) Name() string { return Name }

// Register implements host.Component: the compliance projection, and the watch of the service
// design on the bus's JetStream. A Service is registered on one bus.
func (s *Service) Register(b *bus.Bus) error {
	v, err := design.NewView(design.ViewConfig{JetStream: b.JetStream(), Logger: s.log})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.view = v
	s.mu.Unlock()
	o := s.app.ScanOptions()
	o.Publisher = b
	s.app.SetScans(o)
	return ports.RegisterEvents(b, s.app, s.audit, s.fromStart)
}

// RegisterGRPC implements host.GRPCRegistrar.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	reportingv1.RegisterReportingServiceServer(r, ports.NewGRPCServer(s.app, s.audit))
}

// Server returns the ReportingService implementation, for in-process callers and tests.
func (s *Service) Server() reportingv1.ReportingServiceServer {
	return ports.NewGRPCServer(s.app, s.audit)
}
