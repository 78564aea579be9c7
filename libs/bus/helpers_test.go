package bus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// env is one embedded NATS server and a client of it, private to a test.
type env struct {
	srv *testkit.NATS
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &env{srv: srv, nc: nc, js: js}
}

// testLogger writes warnings to the test output under -v and discards them otherwise. It stops
// writing once the test is over, as bus goroutines may still log while they shut down.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &stopWriter{w: t.Output()}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type stopWriter struct {
	mu      sync.Mutex
	w       io.Writer
	stopped bool
}

func (s *stopWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return len(p), nil
	}
	return s.w.Write(p)
}

func (s *stopWriter) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// config is a bus configuration with short delays, so retries happen within a test.
func (e *env) config(t *testing.T, service string) bus.Config {
	return bus.Config{
		Service:         service,
		Conn:            e.nc,
		Logger:          testLogger(t),
		PublishTimeout:  2 * time.Second,
		PublishAttempts: 3,
		MaxDeliver:      3,
		RetryBackoff:    10 * time.Millisecond,
		MaxRetryBackoff: 40 * time.Millisecond,
		AckWait:         10 * time.Second,
	}
}

func newBus(t *testing.T, cfg bus.Config) *bus.Bus {
	t.Helper()
	b, err := bus.New(t.Context(), cfg)
	require.NoError(t, err)
	return b
}

// running is a bus started by start.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs b until stop or the end of the test and waits until its handlers consume.
func start(t *testing.T, b *bus.Bus) *running {
	t.Helper()
	r := startNoWait(t, b)
	select {
	case <-b.Running():
	case err := <-r.done:
		t.Fatalf("bus stopped before running: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bus not running after 30s")
	}
	return r
}

func startNoWait(t *testing.T, b *bus.Bus) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			// Tests that expect Run to fail check the error themselves.
			if err != nil {
				t.Logf("bus run returned: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("bus did not stop within 30s")
		}
	})
	return r
}

// stop cancels the bus and returns what Run returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("bus did not stop within 30s")
		return nil
	}
}

// count returns how many messages the stream holds on subjects matching filter.
func (e *env) count(t *testing.T, stream, filter string) uint64 {
	t.Helper()
	s, err := e.js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// msgs returns every message of the stream on subjects matching filter, in order.
func (e *env) msgs(t *testing.T, stream, filter string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := t.Context()
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	require.NoError(t, err)
	n := e.count(t, stream, filter)
	var out []*jetstream.RawStreamMsg
	for uint64(len(out)) < n {
		batch, err := cons.Fetch(int(n)-len(out), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			require.NoError(t, err)
			out = append(out, &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: meta.Sequence.Stream, Header: m.Headers(), Data: m.Data()})
		}
		require.NoError(t, batch.Error())
		require.NotZero(t, got, "no messages fetched")
	}
	return out
}

// consumerIdle reports whether the durable consumer has nothing pending or unacknowledged.
func (e *env) consumerIdle(t *testing.T, stream, name string) bool {
	t.Helper()
	c, err := e.js.Consumer(t.Context(), stream, name)
	require.NoError(t, err)
	info, err := c.Info(t.Context())
	require.NoError(t, err)
	return info.NumPending == 0 && info.NumAckPending == 0
}

func runStarted(t *testing.T, tenant, run string) *events.Event {
	t.Helper()
	ev, err := events.New(tenant, run, &eventsv1.RunStarted{Tenant: tenant, RunId: run, Wave: 1})
	require.NoError(t, err)
	return ev
}

func jobRequested(t *testing.T, tenant, run, instance string) *events.Event {
	t.Helper()
	ev, err := events.New(tenant, run+"/"+instance, &eventsv1.JobRequested{Tenant: tenant, RunId: run, InstanceId: instance, Wave: 1})
	require.NoError(t, err)
	return ev
}

// recorder collects what a handler saw.
type recorder struct {
	mu    sync.Mutex
	evs   []*events.Event
	calls map[string]int
}

func newRecorder() *recorder { return &recorder{calls: map[string]int{}} }

func (r *recorder) add(ev *events.Event) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	r.calls[ev.Key]++
	return r.calls[ev.Key]
}

func (r *recorder) callsOf(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[key]
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

func (r *recorder) events() []*events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*events.Event(nil), r.evs...)
}

var errBoom = errors.New("boom")

const eventually = 15 * time.Second
const tick = 10 * time.Millisecond
