// Package gateway is Patchwave's REST API: a grpc-gateway reverse proxy that maps the HTTP routes
// of proto/api_config.yaml onto the scheduler, service design, reporting, catalog and restore
// gRPC APIs and its own credentials API (patchwave.credentials.v1.CredentialsService), and serves the generated OpenAPI
// document at /openapi.json.
//
// Nothing is open without a credential: every route but /openapi.json needs an API key or a
// JWT (401 without one), each call is checked against the rule its rpc declares (403, and 404
// for another tenant), rate-limited per credential (429) and body-limited (413), and every
// mutating call is audited as a patch.<tenant>.audit.recorded event. The gateway dials the
// services over mutual TLS with its own certificate and forwards the caller's identity, which
// the services check again (libs/host).
//
// The gateway is a host component with a bus: its API keys live in a JetStream KV bucket
// (patchwave-credentials) that every replica watches, and it publishes the audit events. Its
// Run serves HTTP (or HTTPS) until the context ends. /livez, /readyz and /metrics belong to the
// host's ops server.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/ratelimit"
	patchwaveproto "github.com/patchwave/patchwave/proto"
	"github.com/patchwave/patchwave/services/gateway/internal/apikeys"
	"github.com/patchwave/patchwave/services/gateway/internal/authn"
	"github.com/patchwave/patchwave/services/gateway/internal/authsvc"
	"github.com/patchwave/patchwave/services/gateway/internal/httpapi"
)

// Name is the gateway's service name.
const Name = "gateway"

// CorrelationHeader is the HTTP header that carries a request's correlation id; the gateway
// forwards it to the services as the x-correlation-id metadata and echoes it in the response.
const CorrelationHeader = httpapi.CorrelationHeader

// Integrators issues integrator credentials (NATS credentials that read one tenant's event
// stream); libs/natsauth provides the implementation.
type Integrators = authsvc.Integrators

// LocalJWT configures HS256 tokens signed by a local key.
type LocalJWT = authn.LocalJWT

// OIDC configures RS256/ES256 tokens of an OIDC provider.
type OIDC = authn.OIDC

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
	// RestoreTarget is the snapshotter's gRPC target (RestoreService). Optional, default Backend.
	RestoreTarget string
	// NotifierTarget is the notifier's gRPC target (NotifierService). Optional, default Backend.
	NotifierTarget string
	// DesignTarget is the gRPC target of the service design API (served by the scheduler).
	// Optional, default SchedulerTarget.
	DesignTarget string
	// Logger logs one line per request. Optional, default discards. The caller names the
	// service in it (obs.NewLogger does).
	Logger *slog.Logger
	// ServicesTLS are the gateway's mutual-TLS files towards the services; its certificate
	// names it mtls.Gateway. Required unless DialOptions are given.
	ServicesTLS mtls.Files
	// ServicesServerName is the name the services' certificates must have. Optional, default
	// the host of each target.
	ServicesServerName string
	// DialOptions replace the transport of the backend connections (tests with plain-text
	// servers). Optional. The guard's interceptor is always added.
	DialOptions []grpc.DialOption
	// TLSCertFile and TLSKeyFile make the gateway serve HTTPS with that certificate. Optional:
	// both or neither.
	TLSCertFile, TLSKeyFile string
	// LocalJWT accepts HS256 tokens signed by a local key. Optional.
	LocalJWT LocalJWT
	// OIDC accepts RS256/ES256 tokens of an OIDC provider. Optional.
	OIDC OIDC
	// ClockSkew bounds the leeway of a token's times. Optional, default 30s.
	ClockSkew time.Duration
	// RateLimit is every credential's request budget. Optional, default 50/s, bursts of 100.
	RateLimit ratelimit.Limit
	// Limiter counts the requests. Optional, default in memory (one process); give a Redis
	// limiter when several gateways serve.
	Limiter ratelimit.Limiter
	// MaxBody bounds a request body in bytes. Optional, default 1 MiB.
	MaxBody int64
	// KeyTTL is an API key's default lifetime. Optional, default 90 days.
	KeyTTL time.Duration
	// KeyMaxTTL bounds an API key's lifetime. Optional, default 365 days.
	KeyMaxTTL time.Duration
	// KeyLastUseInterval is how often at most a key's last use is recorded. Optional, default 1m.
	KeyLastUseInterval time.Duration
	// KVReplicas is the replica count of the API key bucket. Optional, default 1.
	KVReplicas int
	// OperatorKeyFile, when set, holds an operator API key once the gateway runs: the key there
	// if it is still good, else a new one (EnsureOperatorKey). Optional.
	OperatorKeyFile string
	// Integrators issues integrator credentials. Optional: without it those routes answer 412.
	Integrators Integrators
	// Registerer takes the gateway's metrics. Optional.
	Registerer prometheus.Registerer
	// Clock. Optional, default time.Now.
	Clock func() time.Time
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
	if c.RestoreTarget == "" {
		c.RestoreTarget = c.Backend
	}
	if c.NotifierTarget == "" {
		c.NotifierTarget = c.Backend
	}
	if c.DesignTarget == "" {
		c.DesignTarget = c.SchedulerTarget
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
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
	for _, t := range []struct{ name, target string }{
		{"SchedulerTarget", c.SchedulerTarget}, {"ReportingTarget", c.ReportingTarget},
		{"CatalogTarget", c.CatalogTarget}, {"DesignTarget", c.DesignTarget}, {"RestoreTarget", c.RestoreTarget},
		{"NotifierTarget", c.NotifierTarget},
	} {
		if t.target == "" {
			errs = append(errs, fmt.Errorf("%s: required (set it or Backend, the gRPC target of the services)", t.name))
		}
	}
	if len(c.DialOptions) == 0 {
		if err := c.ServicesTLS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("ServicesTLS: the services accept only mutual TLS: %w", err))
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLSCertFile and TLSKeyFile: both or neither"))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("ShutdownTimeout %s: must not be negative", c.ShutdownTimeout))
	}
	if c.ReadHeaderTimeout < 0 {
		errs = append(errs, fmt.Errorf("ReadHeaderTimeout %s: must not be negative", c.ReadHeaderTimeout))
	}
	return errors.Join(errs...)
}

// Service is the gateway. It implements host.Component, host.Runner and host.Readiness.
type Service struct {
	cfg    Config
	log    *slog.Logger
	lis    net.Listener
	srv    *http.Server
	conns  map[string]*grpc.ClientConn
	guard  *httpapi.Guard
	bg     context.Context // bounds the JWKS refresh
	stopBg context.CancelFunc

	keys   atomic.Pointer[apikeys.Store]
	design atomic.Pointer[design.View]
}

// New checks cfg, creates the backend connections (they connect lazily) and binds the HTTP
// listener, so Addr is known before Run. Register gives it its bus; then Run serves. Close
// releases the listener and connections of a gateway that never runs.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, conns: map[string]*grpc.ClientConn{}}
	s.bg, s.stopBg = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			s.closeConns()
		}
	}()
	an, err := authn.New(s.bg, authn.Config{Keys: keysOf{s}, Local: cfg.LocalJWT, OIDC: cfg.OIDC, ClockSkew: cfg.ClockSkew, Clock: cfg.Clock})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	s.guard, err = httpapi.NewGuard(httpapi.GuardConfig{
		Authenticator: an, Limiter: cfg.Limiter, Limit: cfg.RateLimit, MaxBody: cfg.MaxBody,
		Logger: s.log, Registerer: cfg.Registerer, Clock: cfg.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	opts := cfg.DialOptions
	if len(opts) == 0 {
		tc, err := cfg.ServicesTLS.ClientConfig(cfg.ServicesServerName)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		opts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	}
	opts = append(opts, grpc.WithChainUnaryInterceptor(s.guard.Interceptor()),
		// Raw advisory uploads and their answers can be larger than gRPC's 4 MiB default.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(host.MaxMessageSize), grpc.MaxCallSendMsgSize(host.MaxMessageSize)))
	dial := func(target string) (*grpc.ClientConn, error) {
		if cc, ok := s.conns[target]; ok {
			return cc, nil
		}
		cc, err := grpc.NewClient(target, opts...)
		if err != nil {
			return nil, fmt.Errorf("gateway: backend %s: %w", target, err)
		}
		s.conns[target] = cc
		return cc, nil
	}
	backends := httpapi.Backends{Auth: authsvc.New(keysOf{s}, tenantsOf{s}, cfg.Integrators, cfg.Clock)}
	if backends.Scheduler, err = dial(cfg.SchedulerTarget); err == nil {
		if backends.Reporting, err = dial(cfg.ReportingTarget); err == nil {
			if backends.Catalog, err = dial(cfg.CatalogTarget); err == nil {
				if backends.Design, err = dial(cfg.DesignTarget); err == nil {
					if backends.Restore, err = dial(cfg.RestoreTarget); err == nil {
						backends.Notifier, err = dial(cfg.NotifierTarget)
					}
				}
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := checkRoutes(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	// The route handlers use the request's context; this one only outlives registration.
	handler, err := httpapi.NewHandler(context.Background(), backends, httpapi.Options{
		Logger: s.log, OpenAPI: patchwaveproto.OpenAPI, Guard: s.guard,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s: %w", cfg.Addr, err)
	}
	s.lis = lis
	s.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ok = true
	return s, nil
}

// checkRoutes refuses to serve when any rpc lacks a valid rule.
func checkRoutes() error {
	_, err := auth.Rules()
	return err
}

// Name returns "gateway".
func (s *Service) Name() string { return Name }

// Register opens the API key bucket on the bus's JetStream (creating it), makes the bus the
// publisher of audit events and starts following the service design.
func (s *Service) Register(b *bus.Bus) error {
	if b == nil {
		return errors.New("gateway: needs a bus: API keys live in JetStream KV and calls are audited as events")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := apikeys.Open(ctx, apikeys.Config{
		JetStream: b.JetStream(), Replicas: s.cfg.KVReplicas, DefaultTTL: s.cfg.KeyTTL, MaxTTL: s.cfg.KeyMaxTTL,
		LastUseInterval: s.cfg.KeyLastUseInterval, Clock: s.cfg.Clock, Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	view, err := design.NewView(design.ViewConfig{JetStream: b.JetStream(), Logger: s.log})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.keys.Store(keys)
	s.design.Store(view)
	s.guard.SetPublisher(b)
	return nil
}

// Addr returns the bound HTTP address, e.g. "127.0.0.1:8080".
func (s *Service) Addr() string { return s.lis.Addr().String() }

// URL returns the API's base URL, http:// or https://.
func (s *Service) URL() string {
	if s.cfg.TLSCertFile != "" {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Run follows the API keys and the service design, waits until the keys are loaded, then
// serves until ctx is done; it stops taking requests, waits up to Config.ShutdownTimeout for
// those in flight and closes the backend connections.
func (s *Service) Run(ctx context.Context) error {
	defer s.closeConns()
	keys, view := s.keys.Load(), s.design.Load()
	if keys == nil || view == nil {
		return errors.New("gateway: Register was not called")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return keys.Run(gctx) })
	g.Go(func() error { return view.Run(gctx) })
	g.Go(func() error {
		if keys.WaitLoaded(gctx) != nil {
			return nil //nolint:nilerr // stopped before the keys were loaded: a clean stop
		}
		if s.cfg.OperatorKeyFile != "" {
			_, created, err := s.EnsureOperatorKey(gctx, s.cfg.OperatorKeyFile)
			if err != nil {
				return err
			}
			s.log.Info("operator API key", "file", s.cfg.OperatorKeyFile, "created", created)
		}
		return s.serve(gctx)
	})
	return g.Wait()
}

func (s *Service) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCertFile != "" {
			errc <- s.srv.ServeTLS(s.lis, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
			return
		}
		errc <- s.srv.Serve(s.lis)
	}()
	s.log.Info("gateway serving", "url", s.URL(), "scheduler", s.cfg.SchedulerTarget,
		"reporting", s.cfg.ReportingTarget, "catalog", s.cfg.CatalogTarget, "design", s.cfg.DesignTarget, "restore", s.cfg.RestoreTarget, "notifier", s.cfg.NotifierTarget)
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

// Ready reports whether the API keys are loaded and every backend connection is READY or IDLE
// (an idle connection connects on the next call). It suits the host's readiness check.
func (s *Service) Ready(context.Context) error {
	var errs []error
	if k := s.keys.Load(); k == nil {
		errs = append(errs, errors.New("api keys: not opened"))
	} else if !k.Loaded() {
		errs = append(errs, errors.New("api keys: loading"))
	}
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
	s.stopBg()
	for _, cc := range s.conns {
		_ = cc.Close()
	}
}

// OperatorKeyName names the operator key EnsureOperatorKey makes.
const OperatorKeyName = "operator"

// EnsureOperatorKey makes sure path holds an active operator API key and returns it: the key
// already there when the store knows it, it is neither revoked nor expiring within a week;
// otherwise a new key (name "operator", the longest lifetime) written to path with mode
// 0600. created says which. Call it after Register.
func (s *Service) EnsureOperatorKey(ctx context.Context, path string) (key string, created bool, err error) {
	keys := s.keys.Load()
	if keys == nil {
		return "", false, errors.New("gateway: EnsureOperatorKey before Register")
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key = strings.TrimSpace(string(b))
		if rec, err := keys.VerifyStored(ctx, key); err == nil && rec.Identity().Has(auth.RoleOperator) &&
			rec.ExpireTime.After(s.cfg.Clock().Add(7*24*time.Hour)) {
			if err := os.Chmod(path, 0o600); err != nil {
				return "", false, fmt.Errorf("operator key %s: %w", path, err)
			}
			return key, false, nil
		}
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("operator key %s: %w", path, err)
	}
	_, key, err = keys.Create(ctx, apikeys.CreateRequest{
		Name: OperatorKeyName, Roles: []auth.Role{auth.RoleOperator}, TTL: keys.MaxTTL(), CreatedBy: "bootstrap",
	})
	if err != nil {
		return "", false, fmt.Errorf("operator key: %w", err)
	}
	if err := mtls.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("operator key: %w", err)
	}
	return key, true, nil
}

// keysOf is the gateway's key store as authn and authsvc see it, before and after Register.
type keysOf struct{ s *Service }

var errNoKeys = fmt.Errorf("%w: the API keys are not open yet", apierr.ErrUnavailable)

func (k keysOf) store() (*apikeys.Store, error) {
	if st := k.s.keys.Load(); st != nil {
		return st, nil
	}
	return nil, errNoKeys
}

func (k keysOf) Verify(key string) (*apikeys.Record, error) {
	st, err := k.store()
	if err != nil {
		return nil, apikeys.ErrNotLoaded
	}
	return st.Verify(key)
}

func (k keysOf) Create(ctx context.Context, req apikeys.CreateRequest) (apikeys.Record, string, error) {
	st, err := k.store()
	if err != nil {
		return apikeys.Record{}, "", err
	}
	return st.Create(ctx, req)
}

func (k keysOf) Get(ctx context.Context, tenant, id string) (apikeys.Record, error) {
	st, err := k.store()
	if err != nil {
		return apikeys.Record{}, err
	}
	return st.Get(ctx, tenant, id)
}

func (k keysOf) Revoke(ctx context.Context, tenant, id, by, reason string) (apikeys.Record, error) {
	st, err := k.store()
	if err != nil {
		return apikeys.Record{}, err
	}
	return st.Revoke(ctx, tenant, id, by, reason)
}

func (k keysOf) List(tenant string, pageSize int, pageToken string) ([]apikeys.Record, string, error) {
	st, err := k.store()
	if err != nil {
		return nil, "", err
	}
	return st.List(tenant, pageSize, pageToken)
}

// tenantsOf is the service design as authsvc sees it.
type tenantsOf struct{ s *Service }

func (t tenantsOf) RequireTenant(ctx context.Context, tenant string) error {
	v := t.s.design.Load()
	if v == nil {
		return fmt.Errorf("%w: the service design is not followed yet", apierr.ErrUnavailable)
	}
	return v.RequireTenant(ctx, tenant)
}
