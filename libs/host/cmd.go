package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/libs/store"
)

// Variables every Command reads besides its own (see RunCommand).
const (
	envNATSURL       = "PATCHWAVE_NATS_URL"
	envNATSCreds     = "PATCHWAVE_NATS_CREDS" //nolint:gosec // G101: the name of the variable, not a credential
	envRedisAddr     = "PATCHWAVE_REDIS_ADDR"
	envRedisPassword = "PATCHWAVE_REDIS_PASSWORD" //nolint:gosec // G101: the name of the variable, not a credential
	envGRPCAddr      = "PATCHWAVE_GRPC_ADDR"
	envOpsAddr       = "PATCHWAVE_OPS_ADDR"
	envLogLevel      = "PATCHWAVE_LOG_LEVEL"
	envTLSCA         = "PATCHWAVE_TLS_CA"
	envTLSCert       = "PATCHWAVE_TLS_CERT"
	envTLSKey        = "PATCHWAVE_TLS_KEY"
	defaultNATSURL   = "nats://127.0.0.1:4222"
)

// Command describes a program that hosts one service component: what cmd/<service>/main.go
// hands to RunCommand.
type Command struct {
	// Name is the service name. It names the logger, the NATS connection
	// ("patchwave-<name>") and the Redis key prefix ("patchwave:<name>:"), so services sharing
	// one Redis never share a key. Required.
	Name string
	// GRPCAddr is the default of PATCHWAVE_GRPC_ADDR. Optional; empty means no gRPC server
	// unless the variable is set.
	GRPCAddr string
	// OpsAddr is the default of PATCHWAVE_OPS_ADDR. Optional; empty means no ops server unless
	// the variable is set.
	OpsAddr string
	// NoNATS is for a front end that is Busless and serves no gRPC API (the gateway): no NATS
	// connection, no store, no gRPC server, and PATCHWAVE_NATS_URL, PATCHWAVE_REDIS_ADDR,
	// PATCHWAVE_REDIS_PASSWORD and PATCHWAVE_GRPC_ADDR are not read. Optional, default false.
	NoNATS bool
	// Build reads the service's own variables from env and builds its component. The attrs it
	// returns are logged with the common configuration at start; it masks secrets in them
	// (config.Mask, config.MaskURL). A component that is an io.Closer is closed when it never
	// gets to run. Required.
	Build func(ctx context.Context, env config.Env, deps CommandDeps) (comp Component, attrs []any, err error)
}

// CommandDeps is what RunCommand builds for a Command's component.
type CommandDeps struct {
	// Store is the service's store: Redis under the prefix "patchwave:<name>:" when
	// PATCHWAVE_REDIS_ADDR is set, in memory otherwise; nil with NoNATS. RunCommand closes it.
	Store store.Store
	// Logger is the process logger, at PATCHWAVE_LOG_LEVEL.
	Logger *slog.Logger
	// TLS names the process's mutual-TLS files (PATCHWAVE_TLS_CA, PATCHWAVE_TLS_CERT,
	// PATCHWAVE_TLS_KEY): the gRPC server's, and a client's towards the services (the
	// gateway). Empty when the variables are not set.
	TLS mtls.Files

	// onConnect holds what OnConnect registered.
	onConnect *[]func(context.Context, *nats.Conn) error
}

// OnConnect registers fn to run once the process's NATS connection is up, before the host
// starts: for collaborators of the component that read from NATS themselves (the service
// design's watched View that gives a fleet adapter its accounts, for example). An error stops
// the program. Nothing runs with NoNATS.
func (d CommandDeps) OnConnect(fn func(ctx context.Context, nc *nats.Conn) error) {
	if d.onConnect != nil {
		*d.onConnect = append(*d.onConnect, fn)
	}
}

// RunCommand runs cmd until SIGINT or SIGTERM and returns the process exit code: 0 after a
// graceful stop, 1 after a failure, which it logs once to stderr. Besides the component's own
// variables it reads PATCHWAVE_LOG_LEVEL (debug, info, warn or error; default info),
// PATCHWAVE_NATS_URL (default nats://127.0.0.1:4222), PATCHWAVE_NATS_CREDS (the .creds file of
// the service's NATS user, libs/natsauth; empty: no credentials, for an open server),
// PATCHWAVE_REDIS_ADDR (empty: in-memory store), PATCHWAVE_REDIS_PASSWORD, PATCHWAVE_GRPC_ADDR
// and PATCHWAVE_OPS_ADDR (defaults from cmd), and PATCHWAVE_TLS_CA, PATCHWAVE_TLS_CERT and
// PATCHWAVE_TLS_KEY, the mutual-TLS files every gRPC server requires. main calls os.Exit with
// the code; everything RunCommand opened is closed by then.
func RunCommand(cmd Command, env config.Env, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runCommand(ctx, cmd, env, stderr)
}

// runCommand is RunCommand under ctx instead of the signal context.
func runCommand(ctx context.Context, cmd Command, env config.Env, stderr io.Writer) int {
	level, err := logLevel(env)
	log := obs.NewLogger(stderr, cmd.Name, level)
	if err == nil {
		err = cmd.run(ctx, env, log, level)
	}
	if err != nil {
		log.Error(cmd.Name+" stopped", "error", err)
		return 1
	}
	return 0
}

func (c Command) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("Name: required"))
	}
	if c.Build == nil {
		errs = append(errs, errors.New("Build: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("command: %w", err)
	}
	return nil
}

// run builds the store, the component, the NATS connection and the host, in that order, and runs the host; the
// deferred closes release the store and the NATS connection once it has stopped.
func (c Command) run(ctx context.Context, env config.Env, log *slog.Logger, level slog.Level) error {
	if err := c.validate(); err != nil {
		return err
	}
	hcfg := Config{Name: c.Name, Logger: log, OpsAddr: env.String(envOpsAddr, c.OpsAddr)}
	attrs := []any{"log_level", level.String()}
	natsURL, natsCreds := env.String(envNATSURL, defaultNATSURL), env.String(envNATSCreds, "")
	deps := CommandDeps{Logger: log, TLS: mtls.Files{
		CA: env.String(envTLSCA, ""), Cert: env.String(envTLSCert, ""), Key: env.String(envTLSKey, ""),
	}}
	attrs = append(attrs, "tls_ca", deps.TLS.CA, "tls_cert", deps.TLS.Cert, "tls_key", deps.TLS.Key)
	if !c.NoNATS {
		redisAddr, redisPassword := env.String(envRedisAddr, ""), env.String(envRedisPassword, "")
		hcfg.GRPCAddr = env.String(envGRPCAddr, c.GRPCAddr)
		if hcfg.GRPCAddr != "" {
			tc, err := deps.TLS.ServerConfig()
			if err != nil {
				return fmt.Errorf("%s, %s, %s: the gRPC API accepts only peers with a certificate of the deployment's CA: %w",
					envTLSCA, envTLSCert, envTLSKey, err)
			}
			hcfg.GRPCTLS = tc
		}
		attrs = append(attrs, "nats_url", config.MaskURL(natsURL), "nats_creds", natsCreds, "redis_addr", redisAddr,
			"redis_password", config.Mask(redisPassword), "grpc_addr", hcfg.GRPCAddr)
		var st store.Store = store.NewMemory()
		if redisAddr != "" {
			rs, err := store.NewRedis(store.RedisConfig{Addr: redisAddr, Password: redisPassword, Prefix: c.redisPrefix()})
			if err != nil {
				return err
			}
			st = rs
		}
		defer func() { _ = st.Close() }()
		deps.Store = st
	}
	attrs = append(attrs, "ops_addr", hcfg.OpsAddr)

	var onConnect []func(context.Context, *nats.Conn) error
	deps.onConnect = &onConnect
	comp, own, err := c.Build(ctx, env, deps)
	if err != nil {
		return err
	}
	log.Info("config", append(attrs, own...)...)
	if !c.NoNATS {
		opts := []nats.Option{nats.Name("patchwave-" + c.Name), nats.MaxReconnects(-1)}
		if natsCreds != "" {
			// The service's user may subscribe to its own inbox only, and do only what the
			// permission table declares: check the component against it before the server does.
			opts = append(opts, natsauth.ConnectOptions(natsCreds, c.Name)...)
			hcfg.Permissions = &natsauth.Default
		}
		nc, err := nats.Connect(natsURL, opts...)
		if err != nil {
			closeUnrun(comp)
			return fmt.Errorf("connect nats %s: %w", config.MaskURL(natsURL), err)
		}
		defer nc.Close()
		hcfg.Conn = nc
		for _, fn := range onConnect {
			if err := fn(ctx, nc); err != nil {
				closeUnrun(comp)
				return err
			}
		}
	}
	h, err := New(ctx, hcfg, comp)
	if err != nil {
		closeUnrun(comp)
		return err
	}
	return h.Run(ctx)
}

// closeUnrun releases what a component that never ran holds (the gateway's listener).
func closeUnrun(comp Component) {
	if cl, ok := comp.(io.Closer); ok {
		_ = cl.Close()
	}
}

// redisPrefix returns the prefix of every key of the command's Redis store.
func (c Command) redisPrefix() string {
	return "patchwave:" + c.Name + ":"
}

// logLevel reads PATCHWAVE_LOG_LEVEL.
func logLevel(env config.Env) (slog.Level, error) {
	v := strings.TrimSpace(env.String(envLogLevel, ""))
	switch strings.ToLower(v) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, &config.ParseError{Key: envLogLevel, Value: v, Expected: "debug, info, warn or error"}
}
