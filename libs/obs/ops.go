package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// OpsConfig configures the ops HTTP server.
type OpsConfig struct {
	// Addr is the listen address, for example "127.0.0.1:9090"; port 0 picks
	// a free port (read it back with Ops.Addr). Optional: empty disables the
	// server, and Run then only waits for its context.
	Addr string
	// Registry is served on /metrics. Optional, default NewRegistry().
	Registry *prometheus.Registry
	// Logger logs serve errors. Optional, default: discard.
	Logger *slog.Logger
	// ReadinessTimeout bounds one /readyz evaluation; a check still running
	// then fails. Optional, default 2s.
	ReadinessTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown when Run's context ends.
	// Optional, default 5s.
	ShutdownTimeout time.Duration
}

func (c *OpsConfig) setDefaults() {
	if c.Registry == nil {
		c.Registry = NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ReadinessTimeout == 0 {
		c.ReadinessTimeout = 2 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
}

// Validate reports every problem with the config, each naming the field.
func (c OpsConfig) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("Addr: must be host:port such as 127.0.0.1:9090: %w", err))
		}
	}
	if c.ReadinessTimeout < 0 {
		errs = append(errs, fmt.Errorf("ReadinessTimeout: must not be negative, got %s", c.ReadinessTimeout))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("ShutdownTimeout: must not be negative, got %s", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// ReadinessCheck reports whether a dependency is ready; a nil error means
// ready. It must respect ctx.
type ReadinessCheck func(ctx context.Context) error

// Ops is the ops HTTP server: /metrics (Prometheus), /livez (200 while the
// process runs) and /readyz (200 only while every readiness check passes,
// 503 with the failing checks otherwise, and 503 while shutting down).
type Ops struct {
	cfg      OpsConfig
	listener net.Listener
	server   *http.Server
	handler  http.Handler

	mu     sync.Mutex
	checks map[string]ReadinessCheck

	ran      atomic.Bool
	draining atomic.Bool
}

// NewOps validates cfg and, unless Addr is empty, binds the listen address
// right away so Addr reports the real port and a taken port fails here.
// Serve with Run; if Run is never called, Close releases the address.
func NewOps(cfg OpsConfig) (*Ops, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ops server config: %w", err)
	}
	o := &Ops{cfg: cfg, checks: make(map[string]ReadinessCheck)}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(cfg.Registry,
		promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /readyz", o.serveReadyz)
	o.handler = mux

	if cfg.Addr == "" {
		return o, nil
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ops server listen on %s: %w", cfg.Addr, err)
	}
	o.listener = l
	o.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return o, nil
}

// Addr returns the bound address, such as "127.0.0.1:43117", or "" when the
// server is disabled.
func (o *Ops) Addr() string {
	if o.listener == nil {
		return ""
	}
	return o.listener.Addr().String()
}

// Registry returns the registry served on /metrics.
func (o *Ops) Registry() *prometheus.Registry { return o.cfg.Registry }

// Handler returns the server's routes, for mounting them elsewhere.
func (o *Ops) Handler() http.Handler { return o.handler }

// AddReadiness registers check under name, replacing any check of that
// name. Safe to call while serving.
func (o *Ops) AddReadiness(name string, check ReadinessCheck) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checks[name] = check
}

// Run serves until ctx is done, then stops accepting requests, marks
// /readyz unready and waits up to ShutdownTimeout for requests in flight.
// It returns nil after a clean shutdown. Run may be called once.
func (o *Ops) Run(ctx context.Context) error {
	if !o.ran.CompareAndSwap(false, true) {
		return errors.New("ops server: Run called twice")
	}
	if o.server == nil {
		<-ctx.Done()
		return nil
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- o.server.Serve(o.listener) }()

	select {
	case err := <-serveErr:
		if errors.Is(err, http.ErrServerClosed) { // Close was called
			return nil
		}
		return fmt.Errorf("ops server on %s: %w", o.Addr(), err)
	case <-ctx.Done():
	}
	o.draining.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.cfg.ShutdownTimeout)
	defer cancel()
	if err := o.server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("ops server shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops server on %s: %w", o.Addr(), err)
	}
	return nil
}

// Close stops the server at once, dropping requests in flight; it releases
// the address when Run was never called. Prefer cancelling Run's context.
func (o *Ops) Close() error {
	if o.server == nil {
		return nil
	}
	o.draining.Store(true)
	if !o.ran.Load() {
		// Serve never took ownership of the listener.
		if err := o.listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("ops server close: %w", err)
		}
	}
	if err := o.server.Close(); err != nil {
		return fmt.Errorf("ops server close: %w", err)
	}
	return nil
}

// readyzBody is the JSON body of /readyz.
type readyzBody struct {
	Status  string            `json:"status"`
	Checks  []string          `json:"checks,omitempty"`
	Failing map[string]string `json:"failing,omitempty"`
}

func (o *Ops) serveReadyz(w http.ResponseWriter, r *http.Request) {
	body := readyzBody{Status: "ready"}
	code := http.StatusOK
	if o.draining.Load() {
		body.Status, code = "shutting down", http.StatusServiceUnavailable
	} else {
		o.mu.Lock()
		checks := maps.Clone(o.checks)
		o.mu.Unlock()
		body.Checks = slices.Sorted(maps.Keys(checks))
		if failing := runChecks(r.Context(), checks, o.cfg.ReadinessTimeout); len(failing) > 0 {
			body.Status, body.Failing, code = "not ready", failing, http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// runChecks runs every check in parallel under one timeout and returns the
// failing ones with their errors. A check that panics or outlives the
// timeout fails.
func runChecks(ctx context.Context, checks map[string]ReadinessCheck, timeout time.Duration) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	// Buffered so checks that ignore ctx and finish late do not leak.
	results := make(chan result, len(checks))
	pending := make(map[string]bool, len(checks))
	for name, check := range checks {
		pending[name] = true
		go func() {
			defer func() {
				if p := recover(); p != nil {
					results <- result{name, fmt.Errorf("check panicked: %v", p)}
				}
			}()
			results <- result{name, check(ctx)}
		}()
	}
	failing := make(map[string]string)
	for len(pending) > 0 {
		select {
		case res := <-results:
			delete(pending, res.name)
			if res.err != nil {
				failing[res.name] = res.err.Error()
			}
		case <-ctx.Done():
			for name := range pending {
				failing[name] = fmt.Sprintf("no answer within %s: %v", timeout, ctx.Err())
			}
			return failing
		}
	}
	return failing
}
