package natsauth_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/natsauth"
)

// deployServer runs nats-server in this process from a copy of deploy/nats/server.conf and the
// secrets natsauth init writes beside it, on a random port that a restart keeps.
type deployServer struct {
	dir, confPath, url string
	port               int
}

func newDeployServer(t *testing.T) *deployServer {
	t.Helper()
	d := &deployServer{dir: t.TempDir(), port: -1}
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "server.conf"))
	require.NoError(t, err)
	d.confPath = filepath.Join(d.dir, "server.conf")
	require.NoError(t, os.WriteFile(d.confPath, conf, 0o600))
	m, err := natsauth.LoadOrCreate(d.secrets())
	require.NoError(t, err)
	require.NoError(t, m.WriteCreds(natsauth.Default))
	require.NoError(t, m.WriteServerConfig(natsauth.ServerConfig{ResolverDir: filepath.Join(d.dir, "resolver")}))
	return d
}

func (d *deployServer) secrets() string { return filepath.Join(d.dir, "secrets") }

// start runs the server until stop is called or the test ends.
func (d *deployServer) start(t *testing.T) (stop func()) {
	t.Helper()
	opts, err := server.ProcessConfigFile(d.confPath)
	require.NoError(t, err, "deploy/nats/server.conf with the generated auth.conf is a valid configuration")
	require.NotEmpty(t, opts.TrustedOperators, "operator mode")
	require.Equal(t, int32(natsauth.MaxControlLine), opts.MaxControlLine)
	// The test's own port, store and no monitoring port; everything else as deployed.
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", d.port, 0
	opts.StoreDir = filepath.Join(d.dir, "data")
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	require.True(t, srv.JetStreamEnabled())
	d.port = srv.Addr().(*net.TCPAddr).Port
	d.url = srv.ClientURL()
	done := false
	stop = func() {
		if !done {
			done = true
			srv.Shutdown()
			srv.WaitForShutdown()
		}
	}
	t.Cleanup(stop)
	return stop
}

func (d *deployServer) connect(t *testing.T, user string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(d.url, natsauth.ConnectOptions(natsauth.CredsPath(d.secrets(), user), user)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func TestTheDeployConfigurationRunsSecuredWithTheGeneratedCredentials(t *testing.T) {
	d := newDeployServer(t)
	stop := d.start(t)
	ctx := t.Context()

	// A service's bus creates the streams with its own user, and the permissions hold.
	b, err := bus.New(ctx, bus.Config{Service: "installer", Conn: d.connect(t, "installer")})
	require.NoError(t, err)
	_, err = b.JetStream().Publish(ctx, "patch.acme.install.succeeded", []byte(`{}`))
	require.NoError(t, err)
	notifier := &client{user: "notifier", seen: make(chan struct{}, 1)}
	nc, err := nats.Connect(d.url, append(natsauth.ConnectOptions(natsauth.CredsPath(d.secrets(), "notifier"), "notifier"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { notifier.record(err) }))...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	notifier.nc = nc
	notifier.requirePublishDenied(t, "patch.acme.install.succeeded")

	// Integrators are issued and revoked through the full resolver of the configuration.
	m, err := natsauth.Load(d.secrets())
	require.NoError(t, err)
	x, err := natsauth.NewIntegrators(natsauth.IntegratorsConfig{
		Conn: d.connect(t, natsauth.UserIntegrations), System: d.connect(t, natsauth.UserSystem), Material: m,
	})
	require.NoError(t, err)
	revoked, err := x.Issue(ctx, natsauth.IssueRequest{Tenant: "acme", Name: "old"})
	require.NoError(t, err)
	kept, err := x.Issue(ctx, natsauth.IssueRequest{Tenant: "acme", Name: "new"})
	require.NoError(t, err)
	require.NoError(t, x.Revoke(ctx, "acme", "old"))
	_, err = connectCreds(t, d.url, revoked.Creds, revoked.InboxPrefix)
	require.ErrorIs(t, err, nats.ErrAuthorization)

	// A restart preloads the account JWTs again, but keeps the newer one with the revocation.
	stop()
	d.start(t)
	_, err = connectCreds(t, d.url, revoked.Creds, revoked.InboxPrefix)
	require.ErrorIs(t, err, nats.ErrAuthorization, "still refused after a restart")
	integ, err := connectCreds(t, d.url, kept.Creds, kept.InboxPrefix)
	require.NoError(t, err)
	cons, err := integ.js.Consumer(context.WithoutCancel(ctx), kept.Stream, kept.Consumer)
	require.NoError(t, err)
	require.Equal(t, "patch.acme.>", cons.CachedInfo().Config.FilterSubject)
}
