// Package stagetest helps test a pipeline stage (a host.Component with bus handlers) through
// the bus: host it on a test's embedded NATS (with its gRPC API on a loopback port if it has
// one), publish its input as the upstream service would, and read or count what it wrote to
// the streams. It sits beside testkit, which starts the servers and depends on no Patchwave
// package beyond them.
package stagetest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
)

// BusConfig returns the bus template of components under test: quick retries, so a test that
// provokes a retry does not wait for the production backoff.
func BusConfig() bus.Config {
	return bus.Config{RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond}
}

// RunComponent hosts comp on nc with BusConfig until the returned stop is called (or the test
// ends), and returns once its handlers consume. stop waits for the host to stop and fails the
// test if it stopped with an error; calling it again does nothing.
func RunComponent(t testing.TB, nc *nats.Conn, comp host.Component) (stop func()) {
	t.Helper()
	_, stop = run(t, nc, comp, "", nil)
	return stop
}

// RunGRPCComponent is RunComponent with the host's gRPC server on a free loopback port (comp's
// API, if it is a host.GRPCRegistrar, and the health service): it returns a client connection
// to it as well. stop closes the connection first, then stops the host as RunComponent's does.
func RunGRPCComponent(t testing.TB, nc *nats.Conn, comp host.Component) (conn *grpc.ClientConn, stop func()) {
	t.Helper()
	h, stop := run(t, nc, comp, "127.0.0.1:0", func() {
		if conn != nil {
			_ = conn.Close()
		}
	})
	conn, err := grpc.NewClient(h.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	return conn, stop
}

// run hosts comp, gRPC on grpcAddr unless empty, and returns once the host is ready. Its stop,
// also registered as a cleanup before waiting, calls beforeStop (if not nil) before stopping
// the host.
func run(t testing.TB, nc *nats.Conn, comp host.Component, grpcAddr string, beforeStop func()) (*host.Host, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h, err := host.New(ctx, host.Config{Name: "test-" + comp.Name(), Conn: nc, GRPCAddr: grpcAddr, Bus: BusConfig()}, comp)
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if beforeStop != nil {
			beforeStop()
		}
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	readyCtx, cancelReady := context.WithTimeout(ctx, 30*time.Second)
	defer cancelReady()
	require.NoError(t, h.Ready(readyCtx), "host did not become ready")
	return h, stop
}

// Publisher returns a bus that publishes test input as service would.
func Publisher(t testing.TB, nc *nats.Conn, service string) *bus.Bus {
	t.Helper()
	b, err := bus.New(t.Context(), bus.Config{Service: service, Conn: nc})
	require.NoError(t, err)
	return b
}

// CountEvents returns how many events on subjects matching filter the stream holds.
func CountEvents(t testing.TB, js jetstream.JetStream, stream, filter string) int {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// ReadEvents returns, in stream order, every event of the tenant stream (PATCH_EVENTS) on
// subjects matching filter.
func ReadEvents(t testing.TB, js jetstream.JetStream, filter string) []*events.Event {
	t.Helper()
	n := CountEvents(t, js, events.StreamTenant, filter)
	cons, err := js.OrderedConsumer(t.Context(), events.StreamTenant, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	require.NoError(t, err)
	var out []*events.Event
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n {
		require.True(t, time.Now().Before(deadline), "read %d of %d events on %s", len(out), n, filter)
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for msg := range batch.Messages() {
			ev, err := events.Unmarshal(msg.Subject(), msg.Data())
			require.NoError(t, err)
			out = append(out, ev)
		}
		require.NoError(t, batch.Error())
	}
	return out
}

// Drained reports whether the durable consumer of a handler of service on the tenant stream
// has nothing left to deliver or to be acknowledged.
func Drained(t testing.TB, js jetstream.JetStream, service, handler string) bool {
	t.Helper()
	c, err := js.Consumer(t.Context(), events.StreamTenant, bus.Consumer(service, handler))
	require.NoError(t, err)
	info, err := c.Info(t.Context())
	require.NoError(t, err)
	return info.NumPending == 0 && info.NumAckPending == 0
}
