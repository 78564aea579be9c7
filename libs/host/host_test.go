package host_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/testkit"
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
	h, err := host.New(ctx, host.Config{Name: "test", Conn: nc, GRPCAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0"}, comp)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.NoError(t, h.Ready(ctx))

	// Handlers consume.
	pub, err := bus.New(ctx, bus.Config{Service: "publisher", Conn: nc})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ctx, events.MustNew("acme", "run-1", &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1"})))
	require.Eventually(t, func() bool { return comp.handled.Load() == 1 }, 10*time.Second, 10*time.Millisecond)

	// gRPC serves the health service.
	conn, err := grpc.NewClient(h.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
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
	require.ErrorContains(t, err, "Conn: required by component echo")
}

func TestHostConfigNamesEveryProblem(t *testing.T) {
	_, err := host.New(t.Context(), host.Config{ShutdownTimeout: -time.Second})
	require.ErrorContains(t, err, "Name: required")
	require.ErrorContains(t, err, "ShutdownTimeout: must not be negative")
}
