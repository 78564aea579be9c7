// Package reporting is Patchwave's reporting service: read models built from the event stream
// that answer compliance queries (coverage per tenant and wave, failed patches).
//
// A Service is a host.Component (Name "reporting") with no handlers, only the compliance
// projection, and a host.GRPCRegistrar (patchwave.reporting.v1.ReportingService). Its read
// model lives in Deps.Store and is rebuilt from JetStream: flush the store and restart, and the
// reports come back the same.
package reporting

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/store"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/ports"
)

// Name is the service name.
const Name = "reporting"

// Config configures reporting. It has no settings yet.
type Config struct{}

// Validate reports every problem with the configuration.
func (Config) Validate() error { return nil }

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
	app *app.Application
}

var (
	_ host.Component     = (*Service)(nil)
	_ host.GRPCRegistrar = (*Service)(nil)
)

// New checks cfg and deps and returns the service, ready to be registered on a bus.
func New(cfg Config, deps Deps) (*Service, error) {
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
	return &Service{app: app.New(adapters.New(deps.Store), deps.Logger.With("service", Name), deps.Clock)}, nil
}

// Name implements host.Component.
func (s *Service) Name() string { return Name }

// Register implements host.Component: the compliance projection. A Service is registered on
// one bus.
func (s *Service) Register(b *bus.Bus) error { return ports.RegisterEvents(b, s.app) }

// RegisterGRPC implements host.GRPCRegistrar.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	reportingv1.RegisterReportingServiceServer(r, ports.NewGRPCServer(s.app))
}

// Server returns the ReportingService implementation, for in-process callers and tests.
func (s *Service) Server() reportingv1.ReportingServiceServer { return ports.NewGRPCServer(s.app) }
