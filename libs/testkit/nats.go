package testkit

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/natsembed"
)

// NATS is an embedded JetStream-enabled nats-server private to one test: open
// (StartNATS) or secured with the Patchwave permission table (StartSecureNATS).
type NATS struct {
	// Server is the running server. Restart replaces it.
	Server *server.Server

	opts natsembed.Options
	url  string
}

// StartNATS starts an embedded nats-server with JetStream on a random
// loopback port, its store in t.TempDir(), and shuts it down when the test
// ends. The server logs its warnings to stderr only under go test -v.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return startNATS(t, func(*natsembed.Options) {})
}

// startNATS starts a server with the test defaults as changed by change.
func startNATS(t testing.TB, change func(*natsembed.Options)) *NATS {
	t.Helper()
	n := &NATS{opts: natsembed.Options{
		Host:       "127.0.0.1",
		Port:       natsembed.RandomPort,
		StoreDir:   t.TempDir(),
		ServerName: "testkit",
	}}
	if testing.Verbose() {
		n.opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	change(&n.opts)
	n.start(t)
	t.Cleanup(n.shutdown)
	return n
}

// StartSecureNATS is StartNATS in operator mode (natsembed.Options.AuthDir):
// the operator, the accounts and every user's credentials of table (default
// natsauth.Default) are made in t.TempDir(). Connect connects as
// natsauth.UserAdmin; ConnectAs as any user of the table.
func StartSecureNATS(t testing.TB, table ...natsauth.Table) *NATS {
	t.Helper()
	return startNATS(t, func(o *natsembed.Options) {
		o.AuthDir = t.TempDir()
		if len(table) > 0 {
			o.AuthTable = &table[0]
		}
	})
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	srv, err := natsembed.Run(n.opts)
	if err != nil {
		t.Fatalf("testkit: start nats-server: %v", err)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		t.Fatalf("testkit: nats-server listens on unexpected address %v", srv.Addr())
	}
	// Pin the port so Restart comes back where clients reconnect to.
	n.opts.Port = addr.Port
	n.url = fmt.Sprintf("nats://%s", net.JoinHostPort(n.opts.Host, fmt.Sprint(addr.Port)))
	n.Server = srv
}

func (n *NATS) shutdown() {
	if n.Server == nil {
		return
	}
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}

// URL returns the client URL, for example "nats://127.0.0.1:41234". It stays
// the same across Restart.
func (n *NATS) URL() string { return n.url }

// StoreDir returns the JetStream store directory, which survives Restart.
func (n *NATS) StoreDir() string { return n.opts.StoreDir }

// Connect opens a client connection that reconnects forever (every 50ms) so
// it survives Restart, and closes it when the test ends. On a secured server it
// connects as natsauth.UserAdmin.
func (n *NATS) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	if n.opts.AuthDir != "" {
		return n.ConnectAs(t, natsauth.UserAdmin)
	}
	return n.connect(t)
}

// ConnectAs is Connect as one user of a secured server's table (a service,
// natsauth.UserAdmin or natsauth.UserIntegrations), with the user's inbox
// prefix; opts come last, so they may replace those.
func (n *NATS) ConnectAs(t testing.TB, user string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	if n.opts.AuthDir == "" {
		t.Fatalf("testkit: ConnectAs(%q) on an open nats-server: start it with StartSecureNATS", user)
	}
	return n.connect(t, append(natsauth.ConnectOptions(n.CredsFile(user), user), opts...)...)
}

func (n *NATS) connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.url, append([]nats.Option{
		nats.Name(t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
	}, opts...)...)
	if err != nil {
		t.Fatalf("testkit: connect to nats-server %s: %v", n.url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// AuthDir returns the material directory of a secured server, "" for an open
// one.
func (n *NATS) AuthDir() string { return n.opts.AuthDir }

// CredsFile returns the credentials file of a user of a secured server.
func (n *NATS) CredsFile(user string) string { return natsauth.CredsPath(n.opts.AuthDir, user) }

// Material loads a secured server's operator and accounts, to issue more
// credentials.
func (n *NATS) Material(t testing.TB) *natsauth.Material {
	t.Helper()
	m, err := natsauth.Load(n.opts.AuthDir)
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return m
}

// JetStream returns a JetStream context (new jetstream API) on a fresh
// connection from Connect.
func (n *NATS) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(n.Connect(t))
	if err != nil {
		t.Fatalf("testkit: jetstream context: %v", err)
	}
	return js
}

// Restart shuts the server down, as a crash would stop it, and starts a new
// one on the same port and store directory. Streams, consumers and key/value
// buckets are recovered from the store; clients from Connect reconnect by
// themselves, so wait for them with require.Eventually(nc.IsConnected).
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.shutdown()
	n.Server = nil
	n.start(t)
}
