package idem_test

import (
	"context"
	"fmt"
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
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

const (
	service = "snapshotter"
	handler = "TakeSnapshotOnJobRequested"
	jobs    = 20
)

// stage is a snapshotter-like stage: JobRequested in, SnapshotCreated out, one side effect per
// job at most, following the pattern of the package comment.
type stage struct {
	marks *idem.Marks

	mu      sync.Mutex
	effects map[string]int // side effects per key
	skipped int
}

func (s *stage) register(t *testing.T, b *bus.Bus) {
	t.Helper()
	require.NoError(t, b.Project(s.marks.Projection(nil, events.Pattern[*eventsv1.SnapshotCreated](), events.Pattern[*eventsv1.SnapshotFailed]())))
	require.NoError(t, bus.Handle(b, handler, func(ctx context.Context, ev *events.Event, job *eventsv1.JobRequested) error {
		done, err := s.marks.Done(ctx, ev.Key)
		if err != nil {
			return err
		}
		if done {
			s.mu.Lock()
			s.skipped++
			s.mu.Unlock()
			return nil
		}
		s.mu.Lock()
		s.effects[ev.Key]++
		s.mu.Unlock()
		out, err := events.New(ev.Tenant, ev.Key, &eventsv1.SnapshotCreated{Tenant: ev.Tenant, RunId: job.GetRunId(),
			InstanceId: job.GetInstanceId(), SnapshotId: "snap-" + job.GetInstanceId()})
		if err != nil {
			return bus.Permanent(err)
		}
		if err := b.Publish(ctx, out); err != nil {
			return err
		}
		return s.marks.Mark(ctx, ev.Key)
	}))
}

func (s *stage) counts() (effects map[string]int, skipped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.effects {
		out[k] = v
	}
	return out, s.skipped
}

type harness struct {
	nats *testkit.NATS
	nc   *nats.Conn
	js   jetstream.JetStream
}

func (h *harness) bus(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.New(t.Context(), bus.Config{
		Service: service, Conn: h.nc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	return b
}

// run runs b until the returned stop is called (or the test ends) and waits for it to consume.
func run(t *testing.T, b *bus.Bus) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("bus did not stop")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-b.Running():
	case err := <-done:
		t.Fatalf("bus stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bus not running")
	}
	return stop
}

func (h *harness) count(t *testing.T, filter string) uint64 {
	t.Helper()
	s, err := h.js.Stream(t.Context(), events.StreamTenant)
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// publishJobs publishes the jobs as their producer, the scheduler, would.
func (h *harness) publishJobs(t *testing.T) {
	t.Helper()
	b, err := bus.New(t.Context(), bus.Config{Service: "scheduler", Conn: h.nc})
	require.NoError(t, err)
	var evs []*events.Event
	for i := range jobs {
		inst := fmt.Sprintf("i-%d", i)
		evs = append(evs, events.MustNew("acme", "run-1/"+inst, &eventsv1.JobRequested{Tenant: "acme", RunId: "run-1", InstanceId: inst}))
	}
	require.NoError(t, b.Publish(t.Context(), evs...))
}

// redeliverEverything deletes the stage's durable consumer: the next bus re-creates it and gets
// every job again, as after an operator reset or a lost consumer.
func (h *harness) redeliverEverything(t *testing.T) {
	t.Helper()
	require.NoError(t, h.js.DeleteConsumer(t.Context(), events.StreamTenant, bus.Consumer(service, handler)))
}

type storeKind struct {
	name string
	// fresh returns the store a restarted stage gets; the first is the store before it.
	open func(t *testing.T) (first, fresh store.Store)
}

func storeKinds() []storeKind {
	return []storeKind{
		{"a fresh memory store", func(*testing.T) (store.Store, store.Store) {
			return store.NewMemory(), store.NewMemory()
		}},
		{"a flushed Redis", func(t *testing.T) (store.Store, store.Store) {
			r := testkit.StartRedis(t)
			st, err := store.NewRedis(store.RedisConfig{Addr: r.Addr(), Prefix: "t:"})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st, &flushOnFirstUse{Store: st, t: t, r: r}
		}},
	}
}

// flushOnFirstUse flushes Redis when the restarted stage first uses it.
type flushOnFirstUse struct {
	store.Store
	t    *testing.T
	r    *testkit.Redis
	once sync.Once
}

func (f *flushOnFirstUse) Get(ctx context.Context, key string) ([]byte, bool, error) {
	f.once.Do(func() { f.r.Flush(f.t) })
	return f.Store.Get(ctx, key)
}

func TestMarksAreRebuiltFromTheStreamAfterARestart(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run("with "+kind.name, func(t *testing.T) {
			srv := testkit.StartNATS(t)
			nc := srv.Connect(t)
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			h := &harness{nats: srv, nc: nc, js: js}
			firstStore, freshStore := kind.open(t)

			first := &stage{marks: idem.New(firstStore, service), effects: map[string]int{}}
			b1 := h.bus(t)
			first.register(t, b1)
			stop := run(t, b1)
			h.publishJobs(t)
			require.Eventually(t, func() bool { return h.count(t, "patch.*.snapshot.created") == jobs }, 15*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool { n, _ := first.marks.Count(t.Context()); return n == jobs }, 15*time.Second, 10*time.Millisecond)
			stop()

			// The service restarts with its marks lost, and its consumer redelivers every job.
			h.redeliverEverything(t)
			second := &stage{marks: idem.New(freshStore, service), effects: map[string]int{}}
			b2 := h.bus(t)
			second.register(t, b2)
			run(t, b2)
			n, err := second.marks.Count(t.Context())
			require.NoError(t, err)
			require.Equal(t, jobs, n, "the marks are rebuilt before any handler runs")
			done, err := second.marks.Done(t.Context(), "run-1/i-7")
			require.NoError(t, err)
			require.True(t, done)

			require.Eventually(t, func() bool { _, skipped := second.counts(); return skipped == jobs }, 15*time.Second, 10*time.Millisecond,
				"every redelivered job is recognised as done")
			effects, _ := second.counts()
			require.Empty(t, effects, "no side effect is repeated")
			firstEffects, _ := first.counts()
			require.Len(t, firstEffects, jobs)
			require.Equal(t, uint64(jobs), h.count(t, "patch.*.snapshot.created"), "no output is published twice")
		})
	}
}

func TestMarksResumeFromTheirCheckpoint(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	h := &harness{nats: srv, nc: nc, js: js}
	st := store.NewMemory()

	b1 := h.bus(t)
	marks := idem.New(st, service)
	first := &stage{marks: marks, effects: map[string]int{}}
	first.register(t, b1)
	stop := run(t, b1)
	h.publishJobs(t)
	require.Eventually(t, func() bool { return h.count(t, "patch.*.snapshot.created") == jobs }, 15*time.Second, 10*time.Millisecond)
	// The projection applies the outputs after the handler published them.
	require.Eventually(t, func() bool {
		seq, found, err := st.Get(t.Context(), "idem:"+service+":seq")
		require.NoError(t, err)
		return found && string(seq) == fmt.Sprint(2*jobs)
	}, 15*time.Second, 10*time.Millisecond, "the checkpoint is the last output's stream sequence")
	stop()

	// The same store survives the restart: the projection reads nothing old again.
	var applied int
	counting := idem.New(&countingStore{Store: st, sadds: &applied}, service)
	b2 := h.bus(t)
	require.NoError(t, b2.Project(counting.Projection(nil, events.Pattern[*eventsv1.SnapshotCreated]())))
	run(t, b2)
	require.Zero(t, applied)
	n, err := counting.Count(t.Context())
	require.NoError(t, err)
	require.Equal(t, jobs, n)
}

type countingStore struct {
	store.Store
	mu    sync.Mutex
	sadds *int
}

func (c *countingStore) SAdd(ctx context.Context, key string, members ...string) (int, error) {
	c.mu.Lock()
	*c.sadds++
	c.mu.Unlock()
	return c.Store.SAdd(ctx, key, members...)
}

func TestMarksBasics(t *testing.T) {
	ctx := t.Context()
	st := store.NewMemory()
	a := idem.New(st, "a")
	b := idem.New(st, "b")
	done, err := a.Done(ctx, "k1")
	require.NoError(t, err)
	require.False(t, done)
	require.NoError(t, a.Mark(ctx, "k1"))
	require.NoError(t, a.Mark(ctx, "k1"), "marking twice is harmless")
	done, err = a.Done(ctx, "k1")
	require.NoError(t, err)
	require.True(t, done)
	done, err = b.Done(ctx, "k1")
	require.NoError(t, err)
	require.False(t, done, "mark sets are separate per name")
	n, err := a.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	spec := a.Projection(func(ev *events.Event) string { return "custom/" + ev.Key }, "patch.*.snapshot.created")
	require.Equal(t, "a-marks", spec.Name)
	require.Equal(t, []string{"patch.*.snapshot.created"}, spec.Subjects)
	ev := events.MustNew("acme", "run-1/i-1", &eventsv1.SnapshotCreated{})
	ev.Sequence = 42
	require.NoError(t, spec.Apply(ctx, ev, false))
	done, err = a.Done(ctx, "custom/run-1/i-1")
	require.NoError(t, err)
	require.True(t, done)
	cp, err := spec.Checkpoint(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(42), cp)

	require.NoError(t, st.Set(ctx, "idem:a:seq", []byte("garbage")))
	_, err = spec.Checkpoint(ctx)
	require.Error(t, err, "a corrupt checkpoint is an error, not a silent replay")
}

// TestMarksSurviveAFlushUnderARunningService flushes Redis under a running stage: no handler is
// told "not done" for a job finished before the flush (Done answers ErrRebuilding), the next
// output makes the projection replay the stream, and every mark comes back with the checkpoint.
func TestMarksSurviveAFlushUnderARunningService(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	h := &harness{nats: srv, nc: nc, js: js}
	r := testkit.StartRedis(t)
	st, err := store.NewRedis(store.RedisConfig{Addr: r.Addr(), Prefix: "t:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	s := &stage{marks: idem.New(st, service), effects: map[string]int{}}
	b := h.bus(t)
	s.register(t, b)
	run(t, b)
	h.publishJobs(t)
	require.Eventually(t, func() bool {
		_, found, err := st.Get(t.Context(), "idem:"+service+":seq")
		require.NoError(t, err)
		n, _ := s.marks.Count(t.Context())
		return found && n == jobs && h.count(t, "patch.*.snapshot.created") == jobs
	}, 15*time.Second, 10*time.Millisecond)

	r.Flush(t)
	_, err = s.marks.Done(t.Context(), "run-1/i-7")
	require.ErrorIs(t, err, idem.ErrRebuilding, "a finished job is never reported not done while its mark is gone")

	// More work: its outputs make the projection notice the loss and replay.
	sched, err := bus.New(t.Context(), bus.Config{Service: "scheduler", Conn: nc})
	require.NoError(t, err)
	var evs []*events.Event
	for i := range 5 {
		inst := fmt.Sprintf("i-%d", i)
		evs = append(evs, events.MustNew("acme", "run-2/"+inst, &eventsv1.JobRequested{Tenant: "acme", RunId: "run-2", InstanceId: inst}))
	}
	require.NoError(t, sched.Publish(t.Context(), evs...))
	require.Eventually(t, func() bool {
		n, err := s.marks.Count(t.Context())
		require.NoError(t, err)
		done, err := s.marks.Done(t.Context(), "run-1/i-7")
		return n == jobs+5 && err == nil && done
	}, 15*time.Second, 10*time.Millisecond, "the marks written before the flush are back")
	// The handler marks its jobs itself, so the marks can be back before the projection has
	// applied the last events: the checkpoint follows.
	require.Eventually(t, func() bool {
		seq, found, err := st.Get(t.Context(), "idem:"+service+":seq")
		require.NoError(t, err)
		return found && string(seq) == fmt.Sprint(h.count(t, "patch.>"))
	}, 15*time.Second, 10*time.Millisecond, "the checkpoint reaches the last event of the stream")
	effects, _ := s.counts()
	for k, n := range effects {
		require.Equal(t, 1, n, "one side effect for %s", k)
	}
}
