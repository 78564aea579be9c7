package notifier_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
)

// testBus is the bus template of services under test: quick retries.
var testBus = bus.Config{RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond}

// runComponent hosts comp on nc until the returned stop is called (or the test ends), and
// returns once its handlers consume.
func runComponent(t *testing.T, nc *nats.Conn, comp host.Component) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h, err := host.New(ctx, host.Config{Name: "test-" + comp.Name(), Conn: nc, Bus: testBus}, comp)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	readyCtx, cancelReady := context.WithTimeout(ctx, 30*time.Second)
	defer cancelReady()
	require.NoError(t, h.Ready(readyCtx), "host did not become ready")
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return stop
}

// publisher returns a bus that publishes test input as another service would.
func publisher(t *testing.T, nc *nats.Conn, service string) *bus.Bus {
	t.Helper()
	b, err := bus.New(t.Context(), bus.Config{Service: service, Conn: nc})
	require.NoError(t, err)
	return b
}

// countEvents returns how many events on subjects matching filter the stream holds.
func countEvents(t *testing.T, js jetstream.JetStream, stream, filter string) int {
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

// readEvents returns, in stream order, every event of PATCH_EVENTS on subjects matching filter.
func readEvents(t *testing.T, js jetstream.JetStream, filter string) []*events.Event {
	t.Helper()
	n := countEvents(t, js, events.StreamTenant, filter)
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

// drained reports whether the durable consumer of a handler has nothing left to deliver or
// to be acknowledged.
func drained(t *testing.T, js jetstream.JetStream, service, handler string) bool {
	t.Helper()
	c, err := js.Consumer(t.Context(), events.StreamTenant, bus.Consumer(service, handler))
	require.NoError(t, err)
	info, err := c.Info(t.Context())
	require.NoError(t, err)
	return info.NumPending == 0 && info.NumAckPending == 0
}
