package bus_test

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// stopBound is how long Run may take to return once its connection is gone. It is a liveness
// bound, generous for a loaded machine, not a measure: Run returns within a second or two.
const stopBound = 10 * time.Second

// kinds are the buses the tests run: with projections only, a handler only, a tracker only,
// and all three.
var kinds = []string{"projections", "handler", "tracker", "all"}

// consumersOf registers what a bus of the given kind runs.
func consumersOf(t *testing.T, b *bus.Bus, kind string) {
	t.Helper()
	if kind == "projections" || kind == "all" {
		require.NoError(t, b.Project(newRunsModel().spec("Runs", 0)))
		require.NoError(t, b.Project(bus.ProjectionSpec{
			Name: "Jobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()},
			Apply: func(context.Context, *events.Event, bool) error { return nil },
		}))
	}
	if kind == "handler" || kind == "all" {
		require.NoError(t, b.Handle(bus.HandlerSpec{
			Name: "NoteRunStarted", Subjects: []string{events.Pattern[*eventsv1.RunStarted]()},
			Handle: func(context.Context, *events.Event) error { return nil },
		}))
	}
	if kind == "tracker" || kind == "all" {
		require.NoError(t, b.Track(bus.TrackerSpec{
			Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()},
			PollInterval: 10 * time.Millisecond, Check: newOperations().check,
		}))
	}
}

// stopped waits for Run's result within stopBound; on timeout it fails the test with every
// goroutine's stack, to show where Run waits.
func stopped(t *testing.T, r *running) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(stopBound):
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		_, _ = os.Stderr.Write(buf)
		t.Fatalf("Run did not return within %s of its connection closing", stopBound)
		return nil
	}
}

// A bus whose connection is closed, by the process or because the server is gone and the
// client will not reconnect, returns an error saying so instead of waiting for ever, so the
// process exits and its supervisor restarts it.
func TestRunReturnsWhenItsConnectionIsClosed(t *testing.T) {
	ways := []struct {
		name string
		// connect opens the bus's connection; lose makes it closed for good.
		connect func(t *testing.T, e *env) *nats.Conn
		lose    func(t *testing.T, e *env, nc *nats.Conn)
	}{
		{
			"the client closes its connection",
			func(t *testing.T, e *env) *nats.Conn { return e.srv.Connect(t) },
			func(_ *testing.T, _ *env, nc *nats.Conn) { nc.Close() },
		},
		{
			"the server goes away and the client does not reconnect",
			func(t *testing.T, e *env) *nats.Conn { return dial(t, e, nats.NoReconnect()) },
			func(_ *testing.T, e *env, _ *nats.Conn) { e.srv.Server.Shutdown() },
		},
		{
			"the server goes away and the client's reconnects run out",
			func(t *testing.T, e *env) *nats.Conn {
				return dial(t, e, nats.MaxReconnects(3), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
			},
			func(_ *testing.T, e *env, _ *nats.Conn) { e.srv.Server.Shutdown() },
		},
	}
	for _, kind := range kinds {
		for _, way := range ways {
			t.Run(kind+": "+way.name, func(t *testing.T) {
				e := newEnv(t)
				pub := newBus(t, e.config(t, "scheduler"))
				seedRuns(t, pub, 4)
				cfg := e.config(t, "reader")
				cfg.Conn = way.connect(t, e)
				b := newBus(t, cfg)
				consumersOf(t, b, kind)
				r := start(t, b)

				way.lose(t, e, cfg.Conn)
				err := stopped(t, r)
				require.ErrorIs(t, err, bus.ErrConnectionClosed)
				require.ErrorIs(t, err, nats.ErrConnectionClosed)
				require.ErrorContains(t, err, "connection closed")
			})
		}
	}
}

// dial connects to the test's server with opts and closes the connection when the test ends.
func dial(t *testing.T, e *env, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.srv.URL(), opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// Cancelling Run's context still stops every kind of bus cleanly, with no error.
func TestRunStopsCleanlyWhenCancelled(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			b := newBus(t, e.config(t, "reader"))
			consumersOf(t, b, kind)
			r := start(t, b)
			require.NoError(t, r.stop(t))
		})
	}
}

// A bus whose server restarts (its client reconnects) goes on: its handler and its tracker
// get the events published after the restart.
func TestHandlersAndTrackersResumeAfterAServerRestart(t *testing.T) {
	e := newEnv(t)
	rec := newRecorder()
	ops := newOperations()
	b := newBus(t, e.config(t, "scheduler"))
	require.NoError(t, b.Handle(bus.HandlerSpec{
		Name: "NoteRunStarted", Subjects: []string{events.Pattern[*eventsv1.RunStarted]()},
		Handle: func(_ context.Context, ev *events.Event) error { rec.add(ev); return nil },
	}))
	require.NoError(t, b.Track(bus.TrackerSpec{
		Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()},
		PollInterval: 10 * time.Millisecond, Check: ops.check,
	}))
	r := start(t, b)
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "before")))
	require.Eventually(t, func() bool { return rec.callsOf("before") == 1 }, eventually, tick)

	e.srv.Restart(t)
	require.Eventually(t, e.nc.IsConnected, eventually, tick)
	require.Eventually(t, func() bool { return b.Publish(t.Context(), runStarted(t, "acme", "after")) == nil }, eventually, 100*time.Millisecond)
	keys := publishJobs(t, b, 3)
	ops.finish(keys...)
	require.Eventually(t, func() bool { return rec.callsOf("after") >= 1 }, 30*time.Second, tick)
	require.Eventually(t, func() bool { return ops.doneKeys() == 3 }, 30*time.Second, tick)
	select {
	case err := <-r.done:
		t.Fatalf("Run returned across a restart its client survives: %v", err)
	default:
	}
	require.NoError(t, r.stop(t))
}
