// Package patchd runs every Patchwave service in one process with an embedded NATS JetStream
// server: the quick start and the single-machine default. JetStream keeps its file store under
// the data directory, so a restarted patchd continues where it stopped; read models and
// idempotency marks live in memory and are rebuilt from the streams at start. The fleet is an
// in-process cloudsim (Patchwave's AWS API emulator) reached through the real AWS adapter; the
// emulator keeps its state in the data directory too.
//
// The embedded server is secured (libs/natsauth): its operator and accounts are made in
// <data-dir>/nats at first start, and every service connects as its own NATS user, allowed
// exactly what the permission table declares for it. Operators' tools connect with
// <data-dir>/nats/creds/admin.creds; integrators get credentials from Integrators (over REST:
// POST /v1/tenants/{tenant}/integrators).
//
// Nothing is open without a credential, here too: at start patchd makes (or keeps) its own CA
// and certificates in <data-dir>/pki, so the gateway reaches the services over mutual TLS as
// any deployment does, and writes an operator API key to <data-dir>/operator.key (mode 0600)
// when there is no good one, for the demo, patchctl and curl.
package patchd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/natsembed"
	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/services/catalog"
	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/gateway"
	"github.com/patchwave/patchwave/services/installer"
	"github.com/patchwave/patchwave/services/notifier"
	"github.com/patchwave/patchwave/services/patchd/internal/cloud"
	"github.com/patchwave/patchwave/services/reporting"
	"github.com/patchwave/patchwave/services/scheduler"
	"github.com/patchwave/patchwave/services/snapshotter"
)

// Config configures patchd.
type Config struct {
	// DataDir holds the JetStream store and the emulator's state. Required.
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
	// Cloud configures the in-process AWS emulator (timing, faults, seed). Its StateDir
	// defaults to DataDir/cloudsim; its Accounts default to one account of Tenant.
	Cloud cloudsim.Config
	// RemoteCloud, when its Endpoint is set, is an emulator in another process (what
	// `cloudsim -print-config` prints): the fleet runs against it and no emulator starts in
	// patchd, so Cloud and Instances are not used and Daemon.Cloud is nil. Optional.
	RemoteCloud cloud.Remote
	// Tenant and Instances seed the emulator when it has no state yet: one account of Tenant
	// with Instances running VMs spread over Waves waves. Optional; Instances 0 seeds nothing.
	Tenant    string
	Instances int
	Waves     int
	// PollInterval of the snapshotter's and installer's trackers. Optional, default 100ms.
	PollInterval time.Duration
	// RebootPolicy, InstanceTimeout and AutoRollback are the job policy of every run (the
	// scheduler's defaults). Optional: if-required, the installer's timeout, no auto-rollback.
	RebootPolicy    provider.RebootPolicy
	InstanceTimeout time.Duration
	AutoRollback    bool
	// Bus tunes the bus of every service. Optional.
	Bus bus.Config
	// LocalJWT makes the gateway accept HS256 tokens signed with its key. Optional.
	LocalJWT gateway.LocalJWT
	// RateLimit is every credential's request budget. Optional, the gateway's default.
	RateLimit ratelimit.Limit
	// Notifier configures the notifier. Optional: its PublicURL defaults to the REST API's
	// URL, and its SNS channel publishes to the in-process emulator (cloudsim's SNS) unless
	// SNS.Endpoint is set.
	Notifier notifier.Config
	// Reporting configures reporting (the daily scan, scans in freezes). Optional, its
	// defaults.
	Reporting reporting.Config
	// Clock is the scheduler's clock (windows, firing, dispatch) and reporting's (scan orders,
	// the daily scan, as-of times). Optional, default time.Now; tests inject one to open a
	// wave's window or to move to the next month.
	Clock func() time.Time
	// FireInterval is how often the scheduler fires the waves' occurrences. Optional, the
	// scheduler's default (10 s); negative turns firing off.
	FireInterval time.Duration
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
	if c.Cloud.StateDir == "" && c.DataDir != "" {
		c.Cloud.StateDir = filepath.Join(c.DataDir, "cloudsim")
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
	cloud *cloud.Cloud
	// design is the fleet adapter's view of tenants' accounts.
	design *design.View
	host   *host.Host
	reg    *prometheus.Registry
	gw     *gateway.Service
	// integConn and sysConn are the connections of the integrator issuer.
	integConn, sysConn *nats.Conn
	integrators        *natsauth.Integrators
	// violations counts the permission violations the server reported to patchd's users.
	violations atomic.Int64
	// operatorKey is the key in OperatorKeyFile; keyCreated says whether this start wrote it.
	operatorKey string
	keyCreated  bool
}

// OperatorKeyFile is where patchd keeps its operator API key, in the data directory.
func OperatorKeyFile(dataDir string) string { return filepath.Join(dataDir, "operator.key") }

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
		AuthDir: d.AuthDir(),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if d.nc, err = d.connect(natsauth.UserAdmin); err != nil {
		return nil, err
	}
	// The admin brings the streams to their current definition; the services' users may only
	// create them.
	js, err := jetstream.New(d.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := bus.EnsureStreams(ctx, js, cfg.Bus.Streams); err != nil {
		return nil, err
	}
	if err := d.startIntegrators(); err != nil {
		return nil, err
	}
	// The emulator generates the tenant's instances on its first start only; a restarted
	// patchd loads the same fleet from the state directory.
	// The adapter takes tenants' accounts (role, external id, regions) from the service design,
	// through a watched view of the design bucket that Run keeps up to date.
	d.design, err = design.NewView(design.ViewConfig{JetStream: js, Logger: cfg.Logger, RetryInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	d.cloud, err = cloud.Start(cloud.Config{Sim: cfg.Cloud, Tenant: cfg.Tenant, Instances: cfg.Instances, Waves: cfg.Waves,
		Accounts: d.design, Logger: cfg.Logger, Remote: cfg.RemoteCloud})
	if err != nil {
		return nil, err
	}

	// Every service is on one gRPC server on loopback, behind mutual TLS with patchd's own CA;
	// the gateway dials it with its certificate.
	pki, err := mtls.Ensure(filepath.Join(cfg.DataDir, "pki"), time.Now(),
		mtls.Leaf{Name: mtls.Services, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}},
		mtls.Leaf{Name: mtls.Gateway})
	if err != nil {
		return nil, fmt.Errorf("patchd pki: %w", err)
	}
	serverTLS, err := pki[mtls.Services].ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("patchd pki: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("grpc listen: %w", err)
	}
	d.gw, err = gateway.New(gateway.Config{
		Addr: cfg.HTTPAddr, Backend: lis.Addr().String(), Logger: cfg.Logger.With("service", "gateway"),
		ServicesTLS: pki[mtls.Gateway], LocalJWT: cfg.LocalJWT, RateLimit: cfg.RateLimit,
		OperatorKeyFile: OperatorKeyFile(cfg.DataDir), Integrators: gateway.NATSIntegrators(d.integrators),
	})
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	comps, err := d.components()
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	d.reg = obs.NewRegistry()
	d.host, err = host.New(ctx, host.Config{
		Name: "patchd", Logger: cfg.Logger, Registry: d.reg,
		Dial:         func(_ context.Context, service string) (*nats.Conn, error) { return d.connect(service) },
		Permissions:  &natsauth.Default,
		GRPCListener: lis, GRPCTLS: serverTLS, OpsAddr: cfg.OpsAddr, Bus: cfg.Bus,
	}, append(comps, d.gw)...)
	if err != nil {
		_ = lis.Close()
		_ = d.gw.Close()
		return nil, err
	}
	if d.operatorKey, d.keyCreated, err = d.gw.EnsureOperatorKey(ctx, OperatorKeyFile(cfg.DataDir)); err != nil {
		return nil, err
	}
	return d, nil
}

// OperatorKey is the operator API key of OperatorKeyFile: send it as
// "Authorization: Bearer <key>".
func (d *Daemon) OperatorKey() string { return d.operatorKey }

// OperatorKeyCreated says whether this start wrote a new operator key.
func (d *Daemon) OperatorKeyCreated() bool { return d.keyCreated }

// URL is the REST API's base URL.
func (d *Daemon) URL() string { return d.gw.URL() }

// DataDir is the data directory.
func (d *Daemon) DataDir() string { return d.cfg.DataDir }

// GRPCAddr is the bound address of the services' gRPC server (mutual TLS, patchd's CA).
func (d *Daemon) GRPCAddr() string { return d.host.GRPCAddr() }

// connect opens a connection to the embedded server as user, with its credentials from the
// auth directory.
func (d *Daemon) connect(user string) (*nats.Conn, error) {
	log := d.log.With("nats_user", user)
	opts := append(natsauth.ConnectOptions(d.CredsFile(user), user), nats.Name("patchd-"+user), nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A refusal means the permission table misses something a service does.
			if errors.Is(err, nats.ErrPermissionViolation) {
				d.violations.Add(1)
			}
			log.Error("nats connection error", "error", err)
		}))
	nc, err := nats.Connect(d.ns.ClientURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect embedded nats as %s: %w", user, err)
	}
	return nc, nil
}

// startIntegrators builds the integrator issuer on its own users' connections.
func (d *Daemon) startIntegrators() error {
	m, err := natsauth.Load(d.AuthDir())
	if err != nil {
		return err
	}
	if d.integConn, err = d.connect(natsauth.UserIntegrations); err != nil {
		return err
	}
	if d.sysConn, err = d.connect(natsauth.UserSystem); err != nil {
		return err
	}
	d.integrators, err = natsauth.NewIntegrators(natsauth.IntegratorsConfig{Conn: d.integConn, System: d.sysConn, Material: m})
	return err
}

// components builds every service with its own in-memory store.
func (d *Daemon) components() ([]host.Component, error) {
	logFor := func(name string) *slog.Logger { return d.log.With("service", name) }
	cat, err := catalog.New(catalog.Config{}, catalog.Deps{Logger: logFor("catalog")})
	if err != nil {
		return nil, err
	}
	fleet := d.cloud.Fleet
	sch, err := scheduler.New(scheduler.Config{
		RebootPolicy: d.cfg.RebootPolicy, InstanceTimeout: d.cfg.InstanceTimeout, AutoRollback: d.cfg.AutoRollback,
		FireInterval: d.cfg.FireInterval,
	}, scheduler.Deps{Fleet: fleet, Store: store.NewMemory(), Logger: logFor("scheduler"), Clock: d.cfg.Clock})
	if err != nil {
		return nil, err
	}
	// One process runs the whole wave: the snapshotter takes more jobs at once than its
	// default (256) so that several CreateSnapshots batches are in flight while others wait
	// for their describes, and the notifier (one publish per outcome) keeps up with the
	// installer (docs/performance.md).
	snap, err := snapshotter.New(snapshotter.Config{PollInterval: d.cfg.PollInterval, Concurrency: 1024}, snapshotter.Deps{Fleet: fleet, Store: store.NewMemory(), Logger: logFor("snapshotter")})
	if err != nil {
		return nil, err
	}
	inst, err := installer.New(installer.Config{PollInterval: d.cfg.PollInterval}, installer.Deps{Fleet: fleet, Store: store.NewMemory(), Logger: logFor("installer")})
	if err != nil {
		return nil, err
	}
	ncfg := d.cfg.Notifier
	if ncfg.Concurrency == 0 {
		ncfg.Concurrency = 64 // docs/performance.md
	}
	if ncfg.PublicURL == "" {
		ncfg.PublicURL = d.gw.URL()
	}
	if ncfg.SNS.Endpoint == "" {
		ncfg.SNS.Endpoint = d.cloud.Endpoint
		ncfg.SNS.AccessKeyID, ncfg.SNS.SecretAccessKey = d.cloud.AccessKeyID, d.cloud.SecretAccessKey
	}
	not, err := notifier.New(ncfg, notifier.Deps{Store: store.NewMemory(), Logger: logFor("notifier")})
	if err != nil {
		return nil, err
	}
	rep, err := reporting.New(d.cfg.Reporting, reporting.Deps{Store: store.NewMemory(), Logger: logFor("reporting"), Clock: d.cfg.Clock})
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

// Metrics gathers the daemon's metrics (the bus's, the services' and the Go runtime's), as its
// ops endpoint serves them.
func (d *Daemon) Metrics() prometheus.Gatherer { return d.reg }

// Cloud is the in-process AWS emulator the fleet runs on (stats, faults, instances); nil when
// Config.RemoteCloud names one in another process.
func (d *Daemon) Cloud() *cloudsim.Server { return d.cloud.Sim }

// Fleet is the AWS adapter against the emulator.
func (d *Daemon) Fleet() provider.Fleet { return d.cloud.Fleet }

// Conn is patchd's own NATS connection, as natsauth.UserAdmin.
func (d *Daemon) Conn() *nats.Conn { return d.nc }

// AuthDir is the directory of the embedded server's operator, accounts and credentials:
// <data-dir>/nats.
func (d *Daemon) AuthDir() string { return filepath.Join(d.cfg.DataDir, "nats") }

// CredsFile is the credentials file of a user of the embedded server: a service,
// natsauth.UserAdmin, natsauth.UserIntegrations or natsauth.UserSystem.
func (d *Daemon) CredsFile(user string) string { return natsauth.CredsPath(d.AuthDir(), user) }

// PermissionViolations returns how many times the embedded server refused something to one of
// patchd's users (each is logged too): a service doing what the permission table does not
// declare.
func (d *Daemon) PermissionViolations() int64 { return d.violations.Load() }

// Integrators issues, lists and revokes integrator credentials on the embedded server.
func (d *Daemon) Integrators() *natsauth.Integrators { return d.integrators }

// Ready blocks until every service consumes events.
func (d *Daemon) Ready(ctx context.Context) error { return d.host.Ready(ctx) }

// Run runs every service until ctx is done, then shuts down in order: the API and handlers
// first, the NATS connection and the embedded server last.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	vctx, stopView := context.WithCancel(ctx)
	viewDone := make(chan struct{})
	go func() {
		defer close(viewDone)
		_ = d.design.Run(vctx)
	}()
	defer func() {
		stopView()
		<-viewDone
	}()
	return d.host.Run(ctx)
}

// Close releases the NATS connections, the embedded server and the emulator. It is safe to
// call twice.
func (d *Daemon) Close() {
	if d.host != nil {
		d.host.Close()
	}
	for _, nc := range []**nats.Conn{&d.nc, &d.integConn, &d.sysConn} {
		if *nc != nil {
			(*nc).Close()
			*nc = nil
		}
	}
	if d.cloud != nil {
		if err := d.cloud.Close(); err != nil {
			d.log.Warn("cloudsim close", "error", err)
		}
		d.cloud = nil
	}
	if d.ns != nil {
		d.ns.Shutdown()
		d.ns.WaitForShutdown()
		d.ns = nil
	}
}
