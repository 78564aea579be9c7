// Package gateway is Patchwave's REST API: a grpc-gateway reverse proxy that maps the HTTP routes
// of proto/api_config.yaml onto the scheduler, reporting and catalog gRPC APIs and serves the
// generated OpenAPI document at /openapi.json. It owns no state and consumes no events.
//
// The gateway is a host component: host.New gives it a bus it does not use, and its Run serves
// HTTP until the context ends. /livez, /readyz and /metrics belong to the host's ops server.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/patchwave/patchwave/libs/bus"
	patchwaveproto "github.com/patchwave/patchwave/proto"
	"github.com/patchwave/patchwave/services/gateway/internal/httpapi"
)

// Name is the gateway's service name.
const Name = "gateway"

// CorrelationHeader is the HTTP header that carries a request's correlation id; the gateway
// forwards it to the services as the x-correlation-id metadata and echoes it in the response.
const CorrelationHeader = httpapi.CorrelationHeader

// Config configures the gateway.
type Config struct {
	// Addr is the HTTP listen address, e.g. "127.0.0.1:8080"; ":0" picks a free port (see
	// Service.Addr). Required.
	Addr string
	// Backend is the gRPC target of the services, e.g. "127.0.0.1:9090"; in patchd every service
	// is on that one server. Required unless SchedulerTarget, ReportingTarget and CatalogTarget
	// are all set.
	Backend string
	// SchedulerTarget is the scheduler's gRPC target. Optional, default Backend.
	SchedulerTarget string
	// ReportingTarget is the reporting service's gRPC target. Optional, default Backend.
	ReportingTarget string
	// CatalogTarget is the catalog's gRPC target. Optional, default Backend.
	CatalogTarget string
	// Logger logs one line per request. Optional, default discards. The caller names the
	// service in it (obs.NewLogger does).
	Logger *slog.Logger
	// DialOptions replace the default dial options (plain-text transport). Optional.
	DialOptions []grpc.DialOption
	// ShutdownTimeout bounds the wait for requests in flight when Run stops. Optional, default 10s.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout bounds the reading of a request's headers. Optional, default 10s.
	ReadHeaderTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.SchedulerTarget == "" {
		c.SchedulerTarget = c.Backend
	}
	if c.ReportingTarget == "" {
		c.ReportingTarget = c.Backend
	}
	if c.CatalogTarget == "" {
		c.CatalogTarget = c.Backend
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(c.DialOptions) == 0 {
		c.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
}

// Validate reports every problem with the configuration (after defaults are applied).
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("Addr: required (HTTP listen address, e.g. 127.0.0.1:8080)"))
	}
	for name, target := range map[string]string{
		"SchedulerTarget": c.SchedulerTarget, "ReportingTarget": c.ReportingTarget, "CatalogTarget": c.CatalogTarget,
	} {
		if target == "" {
			errs = append(errs, fmt.Errorf("%s: required (set it or Backend, the gRPC target of the services)", name))
		}
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("ShutdownTimeout %s: must not be negative", c.ShutdownTimeout))
	}
	if c.ReadHeaderTimeout < 0 {
		errs = append(errs, fmt.Errorf("ReadHeaderTimeout %s: must not be negative", c.ReadHeaderTimeout))
	}
	return errors.Join(errs...)
}

// Service is the gateway. It implements host.Component and host.Runner.
type Service struct {
	cfg   Config
	log   *slog.Logger
	lis   net.Listener
	srv   *http.Server
	conns map[string]*grpc.ClientConn
}

// New checks cfg, creates the backend connections (they connect lazily) and binds the HTTP
// listener, so Addr is known before Run. Call Run to serve, or Close to release the listener
// and connections without serving.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, conns: map[string]*grpc.ClientConn{}}
	dial := func(target string) (*grpc.ClientConn, error) {
		if cc, ok := s.conns[target]; ok {
			return cc, nil
		}
		cc, err := grpc.NewClient(target, cfg.DialOptions...)
		if err != nil {
			return nil, fmt.Errorf("gateway: backend %s: %w", target, err)
		}
		s.conns[target] = cc
		return cc, nil
	}
	var backends httpapi.Backends
	var err error
	if backends.Scheduler, err = dial(cfg.SchedulerTarget); err == nil {
		if backends.Reporting, err = dial(cfg.ReportingTarget); err == nil {
			backends.Catalog, err = dial(cfg.CatalogTarget)
		}
	}
	if err != nil {
		s.closeConns()
		return nil, err
	}
	// The route handlers use the request's context; this one only outlives registration.
	handler, err := httpapi.NewHandler(context.Background(), backends, httpapi.Options{
		Logger:  s.log,
		OpenAPI: patchwaveproto.OpenAPI,
	})
	if err != nil {
		s.closeConns()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		s.closeConns()
		return nil, fmt.Errorf("gateway: listen %s: %w", cfg.Addr, err)
	}
	s.lis = lis
	s.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Name returns "gateway".
func (s *Service) Name() string { return Name }

// Register does nothing: the gateway has no handlers or projections.
func (s *Service) Register(*bus.Bus) error { return nil }

// Busless marks the gateway as needing no bus, so a gateway-only process needs no NATS.
func (s *Service) Busless() {}

// Addr returns the bound HTTP address, e.g. "127.0.0.1:8080".
func (s *Service) Addr() string { return s.lis.Addr().String() }

// Run serves HTTP until ctx is done, then stops taking requests, waits up to
// Config.ShutdownTimeout for those in flight and closes the backend connections.
func (s *Service) Run(ctx context.Context) error {
	defer s.closeConns()
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.lis) }()
	s.log.Info("gateway serving", "addr", s.Addr(), "scheduler", s.cfg.SchedulerTarget,
		"reporting", s.cfg.ReportingTarget, "catalog", s.cfg.CatalogTarget)
	select {
	case err := <-errc:
		return fmt.Errorf("gateway serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := s.srv.Shutdown(sctx)
	if shutdownErr != nil {
		_ = s.srv.Close() // requests still in flight are cut off
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway serve: %w", err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("gateway shutdown: %w", shutdownErr)
	}
	return nil
}

// Close releases the listener and the backend connections of a gateway that is not running.
func (s *Service) Close() error {
	err := s.srv.Close()
	if lerr := s.lis.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
		err = lerr
	}
	s.closeConns()
	return err
}

// Ready reports whether every backend connection is READY or IDLE (an idle connection connects
// on the next call). It suits the host's readiness check.
func (s *Service) Ready(context.Context) error {
	var errs []error
	for target, cc := range s.conns {
		switch st := cc.GetState(); st {
		case connectivity.Ready, connectivity.Idle:
		default:
			errs = append(errs, fmt.Errorf("backend %s: %s", target, st))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) closeConns() {
	for _, cc := range s.conns {
		_ = cc.Close()
	}
}
