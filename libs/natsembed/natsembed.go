// Package natsembed runs a NATS server with JetStream inside the current
// process. patchd uses it to ship as a single binary with its own event log,
// and libs/testkit uses it to give every test a private server, so the two
// configure the server the same way.
//
// The server is open by default. With Options.AuthDir it runs secured, in NATS
// operator mode: the operator, the system account and the Patchwave account
// (libs/natsauth) are generated there at first start and kept, every service of
// the permission table gets its own user's credentials file there, and the
// account JWTs live in a full (directory) resolver under it, so revocations
// pushed at run time survive a restart.
package natsembed

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/patchwave/patchwave/libs/natsauth"
)

// RandomPort asks the server to listen on a free port chosen by the kernel.
// Read the chosen port back with ClientURL or Addr on the returned server.
const RandomPort = server.RANDOM_PORT

// Options configures an embedded NATS server with JetStream enabled.
type Options struct {
	// Host is the interface the client listener binds to.
	// Optional, default "127.0.0.1" (loopback only).
	Host string
	// Port is the client port. Optional: 0 means the NATS default 4222,
	// RandomPort (-1) means a free port chosen by the kernel.
	Port int
	// StoreDir is the directory JetStream keeps its file store in.
	// Required; the server creates it when missing. Reusing the directory
	// after a restart recovers every stream and key/value bucket.
	StoreDir string
	// ServerName names the server in monitoring and JetStream metadata.
	// Optional, default: the server's generated id. Keep it stable across
	// restarts of the same store.
	ServerName string
	// MaxPayload is the largest message the server accepts, in bytes.
	// Optional, default 0 meaning the NATS default (1 MiB); must not be negative.
	MaxPayload int32
	// Logger receives the server's warnings and errors (notices, debug and
	// trace output are dropped). Optional, default nil: the server logs nothing.
	Logger *slog.Logger
	// ReadyTimeout bounds how long Run waits for the server to accept
	// connections. Optional, default 10s.
	ReadyTimeout time.Duration
	// AuthDir makes the server secured: its operator and accounts are loaded
	// from this directory or generated there at first start
	// (natsauth.LoadOrCreate), and the credentials of every user of AuthTable are
	// (re)written there (natsauth.CredsPath). Optional, default "": an open
	// server that lets any client do anything.
	AuthDir string
	// AuthTable is the permission table whose users get credentials in AuthDir.
	// Optional, default natsauth.Default; ignored without AuthDir.
	AuthTable *natsauth.Table
}

func (o *Options) setDefaults() {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if o.AuthTable == nil {
		o.AuthTable = &natsauth.Default
	}
}

// Validate reports every problem with the options, each naming the field.
func (o Options) Validate() error {
	var errs []error
	if o.StoreDir == "" {
		errs = append(errs, errors.New("StoreDir: required"))
	}
	if o.Port < RandomPort || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("Port: must be -1 (random), 0 (default 4222) or 1..65535, got %d", o.Port))
	}
	if o.MaxPayload < 0 {
		errs = append(errs, fmt.Errorf("MaxPayload: must not be negative, got %d", o.MaxPayload))
	}
	if o.ReadyTimeout < 0 {
		errs = append(errs, fmt.Errorf("ReadyTimeout: must not be negative, got %s", o.ReadyTimeout))
	}
	return errors.Join(errs...)
}

// Run starts a JetStream-enabled NATS server and waits until it accepts
// connections. The caller owns the server: stop it with Shutdown followed by
// WaitForShutdown. The server installs no signal handlers; the embedding
// process decides when to stop.
func Run(opts Options) (*server.Server, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("embedded nats options: %w", err)
	}
	srvOpts := &server.Options{
		ServerName: opts.ServerName,
		Host:       opts.Host,
		Port:       opts.Port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		MaxPayload: opts.MaxPayload,
		NoSigs:     true,
		NoLog:      opts.Logger == nil,
	}
	if opts.AuthDir != "" {
		if err := secure(srvOpts, opts.AuthDir, *opts.AuthTable); err != nil {
			return nil, fmt.Errorf("embedded nats auth: %w", err)
		}
	}
	srv, err := server.NewServer(srvOpts)
	if err != nil {
		return nil, fmt.Errorf("create embedded nats server: %w", err)
	}
	if opts.Logger != nil {
		srv.SetLoggerV2(slogAdapter{log: opts.Logger.With("component", "nats-server")}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats server on %s:%d not ready for connections after %s", opts.Host, opts.Port, opts.ReadyTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats server started without JetStream (store dir %q)", opts.StoreDir)
	}
	return srv, nil
}

// ResolverDir returns the directory of a secured server's account resolver
// under its AuthDir.
func ResolverDir(authDir string) string { return filepath.Join(authDir, "resolver") }

// secure puts the server in operator mode with the material of dir, writes the
// users' credentials, and stores the account JWTs in the resolver unless it
// has them already (then it has the newest, with the revocations pushed since).
func secure(o *server.Options, dir string, t natsauth.Table) error {
	m, err := natsauth.LoadOrCreate(dir)
	if err != nil {
		return err
	}
	if err := m.WriteCreds(t); err != nil {
		return err
	}
	oc, err := m.OperatorClaims()
	if err != nil {
		return err
	}
	res, err := server.NewDirAccResolver(ResolverDir(dir), 0, time.Minute, server.NoDelete)
	if err != nil {
		return fmt.Errorf("account resolver: %w", err)
	}
	for pub, token := range map[string]string{m.SystemAccount(): m.SystemAccountJWT(), m.Account(): m.AccountJWT()} {
		if token, _ := res.LoadAcc(pub); token != "" {
			continue
		}
		if err := res.Store(pub, token); err != nil {
			return fmt.Errorf("account resolver: store %s: %w", pub, err)
		}
	}
	// A user JWT travels in the CONNECT line; a service's permissions list tens of subjects.
	o.MaxControlLine = natsauth.MaxControlLine
	o.TrustedOperators = []*jwt.OperatorClaims{oc}
	o.SystemAccount = m.SystemAccount()
	o.AccountResolver = res
	return nil
}

// slogAdapter routes the server's warnings and errors to slog. Notices are
// dropped because the server prints a multi-line banner at start-up that
// would drown the embedding service's own logs.
type slogAdapter struct {
	log *slog.Logger
}

var _ server.Logger = slogAdapter{}

// Noticef drops the message; see slogAdapter.
func (slogAdapter) Noticef(string, ...any) {}

// Warnf logs at warn level.
func (a slogAdapter) Warnf(format string, v ...any) { a.log.Warn(fmt.Sprintf(format, v...)) }

// Fatalf logs at error level. The server stops itself after a fatal error;
// the embedding process must not exit from inside a library call.
func (a slogAdapter) Fatalf(format string, v ...any) {
	a.log.Error(fmt.Sprintf(format, v...), "fatal", true)
}

// Errorf logs at error level.
func (a slogAdapter) Errorf(format string, v ...any) { a.log.Error(fmt.Sprintf(format, v...)) }

// Debugf drops the message; debug output is not enabled.
func (slogAdapter) Debugf(string, ...any) {}

// Tracef drops the message; trace output is not enabled.
func (slogAdapter) Tracef(string, ...any) {}
