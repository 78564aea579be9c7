// Package host runs one or more Patchwave service components in a process: a bus per component
// (so consumer names belong to the service, whichever process hosts it), one gRPC server for
// every component's API, the ops server (/metrics, /livez, /readyz), and each component's own
// work, under one errgroup with graceful shutdown. cmd/<service> hosts one component; patchd
// hosts them all, each on a NATS connection of its own service's user (Config.Dial).
package host

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/obs"
)

// Component is one service's part of a process.
type Component interface {
	// Name is the service name: it names the bus consumers and the event source.
	Name() string
	// Register adds the component's handlers and projections to its bus.
	Register(b *bus.Bus) error
}

// GRPCRegistrar is implemented by components that serve a gRPC API.
type GRPCRegistrar interface {
	RegisterGRPC(s grpc.ServiceRegistrar)
}

// Readiness is implemented by components with a readiness condition of their own (a backend
// connection); /readyz includes it.
type Readiness interface {
	Ready(ctx context.Context) error
}

// Busless is implemented by components that neither handle nor publish events (the gateway).
// A host whose components are all Busless needs no NATS connection.
type Busless interface {
	Busless()
}

// Runner is implemented by components with work of their own besides handlers (an HTTP server,
// a timer). Run blocks until ctx is done.
type Runner interface {
	Run(ctx context.Context) error
}

// Config configures a Host.
type Config struct {
	// Name of the process, for logs. Required.
	Name string
	// Conn is the NATS connection every component's bus shares. Required unless Dial is set or
	// every component is Busless.
	Conn *nats.Conn
	// Dial opens the NATS connection of one service, so that each component's bus runs as its
	// own service's NATS user (libs/natsauth). Optional: when nil, every component shares Conn.
	// The host closes the connections Dial opened when Run returns (or Close is called).
	Dial func(ctx context.Context, service string) (*nats.Conn, error)
	// Permissions is the NATS permission table the services' users were made from. Optional:
	// when set, New refuses a component that registers a handler or a projection the table
	// does not declare, naming what to add, rather than let the server refuse it at run time.
	Permissions *natsauth.Table
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Registry for metrics. Optional, default a new registry with Go and process collectors.
	Registry *prometheus.Registry
	// GRPCListener serves the gRPC API. Optional: when nil, GRPCAddr is listened on.
	GRPCListener net.Listener
	// GRPCAddr is the gRPC listen address. Optional; empty with no GRPCListener means no gRPC
	// server.
	GRPCAddr string
	// OpsAddr is the listen address of /metrics, /livez and /readyz. Optional; empty disables.
	OpsAddr string
	// Bus is the template of every component's bus configuration; Service, Conn, Logger and
	// Registerer are filled in. Optional.
	Bus bus.Config
	// ShutdownTimeout bounds the graceful stop of the gRPC server. Optional, default 10s.
	ShutdownTimeout time.Duration
	// GRPCTLS is the gRPC server's TLS configuration, which must require and verify client
	// certificates (mtls.Files.ServerConfig). Required with a gRPC server (see auth.go).
	GRPCTLS *tls.Config
	// Forwarder is the peer name (mtls) whose forwarded caller identity the gRPC server
	// believes. Optional, default mtls.Gateway.
	Forwarder string
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Registry == nil {
		c.Registry = obs.NewRegistry()
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Forwarder == "" {
		c.Forwarder = mtls.Gateway
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("Name: required"))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("ShutdownTimeout: must not be negative"))
	}
	if (c.GRPCListener != nil || c.GRPCAddr != "") && c.GRPCTLS == nil {
		errs = append(errs, errNoGRPCTLS)
	}
	if c.GRPCTLS != nil && c.GRPCTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		errs = append(errs, errors.New("GRPCTLS: must require and verify client certificates (tls.RequireAndVerifyClientCert)"))
	}
	return errors.Join(errs...)
}

// MaxMessageSize bounds a gRPC request the host's server takes: large enough for one vendor
// advisory document (an MSRC monthly CVRF file is some 20 MiB), instead of gRPC's 4 MiB.
const MaxMessageSize = 48 << 20

// Host runs components.
type Host struct {
	cfg   Config
	log   *slog.Logger
	comps []Component
	// buses[i] and conns[i] belong to busComps[i].
	busComps []Component
	buses    []*bus.Bus
	conns    []*nats.Conn
	// dialed are the connections Dial opened, closed by Close.
	dialed    []*nats.Conn
	closeOnce sync.Once
	grpc      *grpc.Server
	lis       net.Listener
	ops       *obs.Ops
	hs        *health.Server
}

// New builds a bus per component, registers their handlers and APIs, and binds the listeners,
// so addresses are known before Run. When New fails it closes what it opened.
func New(ctx context.Context, cfg Config, comps ...Component) (_ *Host, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("host config: %w", err)
	}
	h := &Host{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	for _, c := range comps {
		if _, ok := c.(Busless); ok {
			continue
		}
		nc, err := h.conn(ctx, c.Name())
		if err != nil {
			return nil, err
		}
		bc := cfg.Bus
		bc.Service = c.Name()
		bc.Conn = nc
		bc.Logger = cfg.Logger.With("service", c.Name())
		bc.Registerer = cfg.Registry
		b, err := bus.New(ctx, bc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name(), err)
		}
		if err := c.Register(b); err != nil {
			return nil, fmt.Errorf("%s: register: %w", c.Name(), err)
		}
		if err := checkPermissions(cfg.Permissions, c.Name(), b); err != nil {
			return nil, err
		}
		h.buses = append(h.buses, b)
		h.busComps = append(h.busComps, c)
		h.conns = append(h.conns, nc)
	}
	h.comps = comps
	h.lis = cfg.GRPCListener
	if h.lis == nil && cfg.GRPCAddr != "" {
		lis, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return nil, fmt.Errorf("grpc listen %s: %w", cfg.GRPCAddr, err)
		}
		h.lis = lis
	}
	if h.lis != nil {
		h.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg.GRPCTLS)),
			grpc.ChainUnaryInterceptor(unaryCorrelation(cfg.Logger), unaryAuth(cfg.Forwarder)),
			grpc.ChainStreamInterceptor(streamAuth(cfg.Forwarder)), grpc.MaxRecvMsgSize(MaxMessageSize))
		h.hs = health.NewServer()
		healthpb.RegisterHealthServer(h.grpc, h.hs)
		for _, c := range comps {
			if r, ok := c.(GRPCRegistrar); ok {
				r.RegisterGRPC(h.grpc)
			}
		}
		if err := checkServedRules(h.grpc); err != nil {
			if cfg.GRPCListener == nil {
				_ = h.lis.Close()
			}
			return nil, err
		}
	}
	if cfg.OpsAddr != "" {
		ops, err := obs.NewOps(obs.OpsConfig{Addr: cfg.OpsAddr, Registry: cfg.Registry, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("ops server: %w", err)
		}
		if cfg.Conn != nil && cfg.Dial == nil {
			ops.AddReadiness("nats", connected(cfg.Conn))
		}
		if cfg.Dial != nil {
			for i, nc := range h.conns {
				ops.AddReadiness("nats-"+h.busComps[i].Name(), connected(nc))
			}
		}
		for i, b := range h.buses {
			ops.AddReadiness("bus-"+h.busComps[i].Name(), b.Ready)
		}
		for _, c := range comps {
			if r, ok := c.(Readiness); ok {
				ops.AddReadiness(c.Name(), r.Ready)
			}
		}
		h.ops = ops
	}
	return h, nil
}

// conn returns the NATS connection of a component: its own from Dial, or the shared Conn.
func (h *Host) conn(ctx context.Context, service string) (*nats.Conn, error) {
	if h.cfg.Dial == nil {
		if h.cfg.Conn == nil {
			return nil, fmt.Errorf("host config: Conn or Dial: required by component %s", service)
		}
		return h.cfg.Conn, nil
	}
	nc, err := h.cfg.Dial(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("%s: connect nats: %w", service, err)
	}
	h.dialed = append(h.dialed, nc)
	return nc, nil
}

// checkPermissions refuses a bus whose handlers or projections the permission table does not
// declare for its service.
func checkPermissions(t *natsauth.Table, service string, b *bus.Bus) error {
	if t == nil {
		return nil
	}
	var handlers []natsauth.Handler
	for _, hi := range b.Handlers() {
		handlers = append(handlers, natsauth.Handler{Name: hi.Name, Stream: hi.Stream})
	}
	return t.Check(service, handlers, b.ProjectionStreams())
}

func connected(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return nil
	}
}

// Close closes the NATS connections Dial opened. Run calls it when it returns; call it when Run
// is never called. It is safe to call twice.
func (h *Host) Close() {
	h.closeOnce.Do(func() {
		for _, nc := range h.dialed {
			nc.Close()
		}
	})
}

// GRPCAddr returns the bound gRPC address, or "" without a gRPC server.
func (h *Host) GRPCAddr() string {
	if h.lis == nil {
		return ""
	}
	return h.lis.Addr().String()
}

// OpsAddr returns the bound ops address, or "".
func (h *Host) OpsAddr() string {
	if h.ops == nil {
		return ""
	}
	return h.ops.Addr()
}

// Bus returns the bus of the named component, or nil.
func (h *Host) Bus(name string) *bus.Bus {
	for i, c := range h.busComps {
		if c.Name() == name {
			return h.buses[i]
		}
	}
	return nil
}

// Ready is closed when every bus consumes.
func (h *Host) Ready(ctx context.Context) error {
	for _, b := range h.buses {
		select {
		case <-b.Running():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Run runs everything until ctx is done or a part fails, then shuts down: the gRPC server stops
// taking calls first, then handlers finish their messages and the ops server goes last.
func (h *Host) Run(ctx context.Context) error {
	// Deferred first, so the connections close after the ops server has stopped.
	defer h.Close()
	g, gctx := errgroup.WithContext(ctx)
	if h.ops != nil {
		// The ops server outlives the rest so /livez answers during shutdown.
		opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
		defer stopOps()
		opsDone := make(chan error, 1)
		go func() { opsDone <- h.ops.Run(opsCtx) }()
		defer func() {
			stopOps()
			if err := <-opsDone; err != nil {
				h.log.Warn("ops server stopped with an error", "error", err)
			}
		}()
	}
	for i, b := range h.buses {
		g.Go(func() error {
			if err := b.Run(gctx); err != nil {
				return fmt.Errorf("%s bus: %w", h.busComps[i].Name(), err)
			}
			return nil
		})
	}
	for _, c := range h.comps {
		if r, ok := c.(Runner); ok {
			g.Go(func() error {
				if err := r.Run(gctx); err != nil && gctx.Err() == nil {
					return fmt.Errorf("%s: %w", c.Name(), err)
				}
				return nil
			})
		}
	}
	if h.grpc != nil {
		g.Go(func() error {
			if err := h.grpc.Serve(h.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("grpc serve: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			h.hs.Shutdown()
			stopped := make(chan struct{})
			go func() { h.grpc.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(h.cfg.ShutdownTimeout):
				h.grpc.Stop()
			}
			return nil
		})
	}
	h.log.Info("started", "process", h.cfg.Name, "components", len(h.comps), "grpc", h.GRPCAddr(), "ops", h.OpsAddr())
	err := g.Wait()
	if err != nil && ctx.Err() == nil {
		return err
	}
	h.log.Info("stopped", "process", h.cfg.Name)
	return nil
}

// unaryCorrelation gives every gRPC call a correlation id (from the x-correlation-id metadata
// or a new one) and logs failed calls once, here at the edge: server-side failures as errors,
// the caller's mistakes (bad input, unknown ids) at debug level.
func unaryCorrelation(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		ctx = withIncomingCorrelation(ctx)
		resp, err := next(ctx, req)
		if err != nil {
			code := status.Code(err)
			level := slog.LevelDebug
			switch code {
			case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable, codes.DeadlineExceeded, codes.Unimplemented:
				level = slog.LevelError
			}
			log.LogAttrs(ctx, level, "grpc call failed", slog.String("method", info.FullMethod),
				slog.String("code", code.String()), slog.String("error", err.Error()))
		}
		return resp, err
	}
}
