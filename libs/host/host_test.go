package host_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// echo handles RunStarted events and counts them; it is ready when told so.
type echo struct {
	handled atomic.Int64
	ready   atomic.Bool
}

func (e *echo) Name() string { return "echo" }

func (e *echo) Register(b *bus.Bus) error {
	return bus.Handle(b, "CountOnRunStarted", func(context.Context, *events.Event, *eventsv1.RunStarted) error {
		e.handled.Add(1)
		return nil
	})
}

func (e *echo) Ready(context.Context) error {
	if !e.ready.Load() {
		return errors.New("not yet")
	}
	return nil
}

// api is a component without a bus.
type api struct{ ran atomic.Bool }

func (a *api) Name() string            { return "api" }
func (a *api) Register(*bus.Bus) error { return errors.New("a busless component is not registered") }
func (a *api) Busless()                {}
func (a *api) Run(ctx context.Context) error {
	a.ran.Store(true)
	<-ctx.Done()
	return nil
}

func TestHostRunsHandlersGRPCAndOpsThenStopsCleanly(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	comp := &echo{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pki := stagetest.PKI(t)
	h, err := host.New(ctx, host.Config{Name: "test", Conn: nc, GRPCAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
		GRPCTLS: stagetest.ServerTLS(t, pki[mtls.Services])}, comp)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.NoError(t, h.Ready(ctx))

	// Handlers consume.
	pub, err := bus.New(ctx, bus.Config{Service: "scheduler", Conn: nc})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ctx, events.MustNew("acme", "run-1", &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1"})))
	require.Eventually(t, func() bool { return comp.handled.Load() == 1 }, 10*time.Second, 10*time.Millisecond)

	// gRPC serves the health service.
	conn := stagetest.Dial(t, h.GRPCAddr(), pki[mtls.Gateway])
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.GetStatus())

	// /readyz follows the component's own readiness.
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + h.OpsAddr() + "/readyz")
		require.NoError(t, err)
		defer func() { require.NoError(t, resp.Body.Close()) }()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := readyz()
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "echo")
	comp.ready.Store(true)
	code, body = readyz()
	require.Equal(t, http.StatusOK, code, body)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("host did not stop within 20s")
	}
}

// A host whose NATS connection is closed for good stops with an error naming the component's
// bus and the closed connection, so the command exits non-zero and the process is restarted.
func TestHostStopsWithAnErrorWhenItsConnectionCloses(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h, err := host.New(ctx, host.Config{Name: "test", Conn: nc}, &echo{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.NoError(t, h.Ready(ctx))

	nc.Close()
	select {
	case err := <-done:
		require.ErrorIs(t, err, bus.ErrConnectionClosed)
		require.ErrorContains(t, err, "echo bus")
	case <-time.After(10 * time.Second):
		t.Fatal("host did not stop within 10s of its connection closing")
	}
}

func TestHostOfBuslessComponentsNeedsNoNATS(t *testing.T) {
	a := &api{}
	ctx, cancel := context.WithCancel(t.Context())
	h, err := host.New(ctx, host.Config{Name: "gateway-only"}, a)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.Eventually(t, a.ran.Load, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestHostRefusesABusComponentWithoutNATS(t *testing.T) {
	_, err := host.New(t.Context(), host.Config{Name: "broken"}, &echo{})
	require.ErrorContains(t, err, "Conn or Dial: required by component echo")
}

// stage is a component named after a real service, with its handler as the permission table
// declares it.
type stage struct {
	name    string
	handler string
	// more handlers, which the table need not declare.
	more []string
}

func (s *stage) Name() string { return s.name }

func (s *stage) Register(b *bus.Bus) error {
	for _, h := range append([]string{s.handler}, s.more...) {
		if err := b.Handle(bus.HandlerSpec{Name: h, Subjects: []string{"patch.*.install.>"},
			Handle: func(context.Context, *events.Event) error { return nil }}); err != nil {
			return err
		}
	}
	return nil
}

// dialer connects each service as its own user of ns and records the connections.
func dialer(ns *testkit.NATS) (func(context.Context, string) (*nats.Conn, error), *[]*nats.Conn) {
	var conns []*nats.Conn
	return func(_ context.Context, service string) (*nats.Conn, error) {
		nc, err := nats.Connect(ns.URL(), natsauth.ConnectOptions(ns.CredsFile(service), service)...)
		if err == nil {
			conns = append(conns, nc)
		}
		return nc, err
	}, &conns
}

func TestHostGivesEveryComponentItsOwnNATSUser(t *testing.T) {
	ns := testkit.StartSecureNATS(t)
	comps := []*stage{
		{name: "installer", handler: "InstallOnSnapshotCreated"},
		{name: "notifier", handler: "NotifyOnOutcome"},
	}
	dial, conns := dialer(ns)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h, err := host.New(ctx, host.Config{Name: "test", Dial: dial, Permissions: &natsauth.Default, OpsAddr: "127.0.0.1:0"}, comps[0], comps[1])
	require.NoError(t, err)
	require.Len(t, *conns, 2, "one connection per component")
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.NoError(t, h.Ready(ctx))

	js, err := jetstream.New(ns.Connect(t))
	require.NoError(t, err)
	for _, c := range comps {
		_, err := js.Consumer(t.Context(), events.StreamTenant, c.name+"_"+c.handler)
		require.NoError(t, err, "%s created its consumer as its own user", c.name)
	}
	resp, err := http.Get("http://" + h.OpsAddr() + "/readyz")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	require.Contains(t, string(body), "nats-installer")
	require.Contains(t, string(body), "nats-notifier")

	cancel()
	require.NoError(t, <-done)
	for _, nc := range *conns {
		require.True(t, nc.IsClosed(), "the host closes the connections it dialed")
	}
}

func TestHostRefusesAComponentThePermissionTableDoesNotDeclare(t *testing.T) {
	ns := testkit.StartSecureNATS(t)
	dial, conns := dialer(ns)
	_, err := host.New(t.Context(), host.Config{Name: "test", Dial: dial, Permissions: &natsauth.Default},
		&stage{name: "installer", handler: "InstallOnSnapshotCreated"},
		&stage{name: "notifier", handler: "NotifyOnOutcome", more: []string{"DigestOnRunCompleted"}})
	require.ErrorContains(t, err, "notifier: handler DigestOnRunCompleted on PATCH_EVENTS is not in the NATS permission table (libs/natsauth Default)")
	require.Len(t, *conns, 2)
	for _, nc := range *conns {
		require.True(t, nc.IsClosed(), "a failed New closes what it dialed")
	}
}

func TestHostConfigNamesEveryProblem(t *testing.T) {
	_, err := host.New(t.Context(), host.Config{ShutdownTimeout: -time.Second})
	require.ErrorContains(t, err, "Name: required")
	require.ErrorContains(t, err, "ShutdownTimeout: must not be negative")
}
