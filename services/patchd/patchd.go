// Package patchd runs every Patchwave service in one process with an embedded NATS JetStream
// server: the quick start and the single-machine default. JetStream keeps its file store under
// the data directory, so a restarted patchd continues where it stopped; read models and
// idempotency marks live in memory and are rebuilt from the streams at start. The fleet is the
// simulated one (libs/provider/simfleet), persisted in the data directory too.
package patchd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/natsembed"
	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/services/catalog"
	"github.com/patchwave/patchwave/services/gateway"
	"github.com/patchwave/patchwave/services/installer"
	"github.com/patchwave/patchwave/services/notifier"
	"github.com/patchwave/patchwave/services/reporting"
	"github.com/patchwave/patchwave/services/scheduler"
	"github.com/patchwave/patchwave/services/snapshotter"
)

// Config configures patchd.
type Config struct {
	// DataDir holds the JetStream store and the simulated fleet. Required.
	DataDir string
	// NATSPort is the embedded NATS client port on 127.0.0.1, for integrators and ops tools.
	// Optional: 0 means 4222, -1 a random free port.
	NATSPort int
	// HTTPAddr is the REST API address. Optional, default 127.0.0.1:8080.
	HTTPAddr string
	// OpsAddr serves /metrics, /livez, /readyz. Optional, default 127.0.0.1:9090; "-" disables.
	OpsAddr string
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Fleet configures the simulated fleet. Its StatePath defaults to DataDir/fleet.json.
	Fleet simfleet.Config
	// Tenant and Instances seed the simulated fleet when it is empty: Instances running VMs of
	// Tenant spread over Waves waves. Optional; Instances 0 seeds nothing.
	Tenant    string
	Instances int
	Waves     int
	// PollInterval of the snapshotter and installer while a snapshot or installation is
	// pending. Optional, default 100ms.
	PollInterval time.Duration
	// Bus tunes the bus of every service. Optional.
	Bus bus.Config
}

func (c *Config) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.OpsAddr == "" {
		c.OpsAddr = "127.0.0.1:9090"
	}
	if c.OpsAddr == "-" {
		c.OpsAddr = ""
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Fleet.StatePath == "" && c.DataDir != "" {
		c.Fleet.StatePath = filepath.Join(c.DataDir, "fleet.json")
	}
	if c.Waves == 0 {
		c.Waves = 3
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir: required"))
	}
	if c.Instances < 0 {
		errs = append(errs, fmt.Errorf("Instances %d: must not be negative", c.Instances))
	}
	if c.Instances > 0 && c.Tenant == "" {
		errs = append(errs, errors.New("Tenant: required when Instances > 0"))
	}
	if c.Waves < 1 || c.Waves > 10 {
		errs = append(errs, fmt.Errorf("Waves %d: must be from 1 to 10", c.Waves))
	}
	if c.PollInterval < 0 {
		errs = append(errs, errors.New("PollInterval: must not be negative"))
	}
	return errors.Join(errs...)
}

// Daemon is a running patchd.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	ns    *server.Server
	nc    *nats.Conn
	fleet *simfleet.Fleet
	host  *host.Host
	gw    *gateway.Service
}

// New starts the embedded NATS server and builds every service. Call Run to start them; call
// Close if Run is never called.
func New(ctx context.Context, cfg Config) (d *Daemon, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("patchd config: %w", err)
	}
	d = &Daemon{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	d.ns, err = natsembed.Run(natsembed.Options{
		Port: cfg.NATSPort, StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
		ServerName: "patchd", Logger: cfg.Logger.With("component", "nats-server"),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	d.nc, err = nats.Connect(d.ns.ClientURL(), nats.Name("patchd"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	d.fleet, err = simfleet.New(cfg.Fleet)
	if err != nil {
		return nil, fmt.Errorf("simulated fleet: %w", err)
	}
	if cfg.Instances > 0 {
		// Populate keeps existing instances, so a restarted patchd has the same fleet.
		if err := d.fleet.Populate(cfg.Tenant, cfg.Instances, cfg.Waves); err != nil {
			return nil, fmt.Errorf("simulated fleet: %w", err)
		}
	}

	// Every service is on one gRPC server on loopback; the gateway dials it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("grpc listen: %w", err)
	}
	d.gw, err = gateway.New(gateway.Config{Addr: cfg.HTTPAddr, Backend: lis.Addr().String(), Logger: cfg.Logger.With("service", "gateway")})
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	comps, err := d.components()
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	d.host, err = host.New(ctx, host.Config{
		Name: "patchd", Conn: d.nc, Logger: cfg.Logger, Registry: obs.NewRegistry(),
		GRPCListener: lis, OpsAddr: cfg.OpsAddr, Bus: cfg.Bus,
	}, append(comps, d.gw)...)
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	return d, nil
}

// components builds every service with its own in-memory store.
func (d *Daemon) components() ([]host.Component, error) {
	logFor := func(name string) *slog.Logger { return d.log.With("service", name) }
	cat, err := catalog.New(catalog.Config{}, catalog.Deps{Store: store.NewMemory(), Logger: logFor("catalog")})
	if err != nil {
		return nil, err
	}
	sch, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Fleet: d.fleet, Store: store.NewMemory(), Logger: logFor("scheduler")})
	if err != nil {
		return nil, err
	}
	snap, err := snapshotter.New(snapshotter.Config{PollInterval: d.cfg.PollInterval}, snapshotter.Deps{Fleet: d.fleet, Store: store.NewMemory(), Logger: logFor("snapshotter")})
	if err != nil {
		return nil, err
	}
	inst, err := installer.New(installer.Config{PollInterval: d.cfg.PollInterval}, installer.Deps{Fleet: d.fleet, Store: store.NewMemory(), Logger: logFor("installer")})
	if err != nil {
		return nil, err
	}
	not, err := notifier.New(notifier.Config{}, notifier.Deps{Store: store.NewMemory(), Logger: logFor("notifier")})
	if err != nil {
		return nil, err
	}
	rep, err := reporting.New(reporting.Config{}, reporting.Deps{Store: store.NewMemory(), Logger: logFor("reporting")})
	if err != nil {
		return nil, err
	}
	return []host.Component{cat, sch, snap, inst, not, rep}, nil
}

// HTTPAddr is the bound REST API address.
func (d *Daemon) HTTPAddr() string { return d.gw.Addr() }

// NATSURL is the embedded NATS server's client URL.
func (d *Daemon) NATSURL() string { return d.ns.ClientURL() }

// OpsAddr is the bound ops address, or "".
func (d *Daemon) OpsAddr() string { return d.host.OpsAddr() }

// Fleet is the simulated fleet.
func (d *Daemon) Fleet() *simfleet.Fleet { return d.fleet }

// Conn is patchd's own NATS connection.
func (d *Daemon) Conn() *nats.Conn { return d.nc }

// Ready blocks until every service consumes events.
func (d *Daemon) Ready(ctx context.Context) error { return d.host.Ready(ctx) }

// Run runs every service until ctx is done, then shuts down in order: the API and handlers
// first, the NATS connection and the embedded server last.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	return d.host.Run(ctx)
}

// Close releases the NATS connection and the embedded server. It is safe to call twice.
func (d *Daemon) Close() {
	if d.nc != nil {
		d.nc.Close()
		d.nc = nil
	}
	if d.ns != nil {
		d.ns.Shutdown()
		d.ns.WaitForShutdown()
		d.ns = nil
	}
}
