package bus_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// operations stands for a cloud whose operations finish when the test says so: a tracker's
// check asks it about each held job.
type operations struct {
	mu       sync.Mutex
	finished map[string]bool
	done     map[string]int // Done verdicts per key, over every replica
	checks   int
	maxSeen  int
}

func newOperations() *operations {
	return &operations{finished: map[string]bool{}, done: map[string]int{}}
}

func (o *operations) finish(keys ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		o.finished[k] = true
	}
}

func (o *operations) check(_ context.Context, held []*bus.Held) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checks++
	o.maxSeen = max(o.maxSeen, len(held))
	for _, h := range held {
		if o.finished[h.Event.Key] {
			o.done[h.Event.Key]++
			h.Done()
		}
	}
	return nil
}

func (o *operations) doneCount(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.done[key]
}

func (o *operations) doneKeys() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.done)
}

func (o *operations) stats() (checks, maxSeen int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.checks, o.maxSeen
}

func publishJobs(t *testing.T, b *bus.Bus, n int) []string {
	t.Helper()
	evs := make([]*events.Event, n)
	keys := make([]string, n)
	for i := range evs {
		evs[i] = jobRequested(t, "acme", "run-1", fmt.Sprintf("i-%03d", i))
		keys[i] = evs[i].Key
	}
	require.NoError(t, b.Publish(t.Context(), evs...))
	return keys
}

func consumerInfo(t *testing.T, e *env, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := e.js.Consumer(t.Context(), events.StreamTenant, name)
	require.NoError(t, err)
	info, err := c.Info(t.Context())
	require.NoError(t, err)
	return info
}

func TestTrackerHoldsMessagesInProgressUntilTheCheckSaysDone(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t, "scheduler")
	cfg.AckWait = 500 * time.Millisecond
	b := newBus(t, cfg)
	ops := newOperations()
	var deliveries sync.Map
	require.NoError(t, b.Track(bus.TrackerSpec{
		Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()}, PollInterval: 20 * time.Millisecond,
		Check: func(ctx context.Context, held []*bus.Held) error {
			for _, h := range held {
				deliveries.Store(h.Event.Key, h.Event.Delivered)
			}
			return ops.check(ctx, held)
		},
	}))
	start(t, b)
	keys := publishJobs(t, b, 5)

	require.Eventually(t, func() bool { return consumerInfo(t, e, "scheduler_TrackJobs").NumAckPending == 5 }, eventually, tick)
	// Several AckWaits pass: the held messages stay in progress, none is redelivered.
	checks, _ := ops.stats()
	require.Eventually(t, func() bool { c, _ := ops.stats(); return c > checks+10 }, eventually, tick)
	require.Never(t, func() bool { return consumerInfo(t, e, "scheduler_TrackJobs").NumRedelivered > 0 }, 4*cfg.AckWait, 50*time.Millisecond)
	for _, k := range keys {
		d, _ := deliveries.Load(k)
		require.Equal(t, uint64(1), d, "delivered once: %s", k)
	}

	ops.finish(keys[:3]...)
	require.Eventually(t, func() bool { return consumerInfo(t, e, "scheduler_TrackJobs").NumAckPending == 2 }, eventually, tick)
	ops.finish(keys[3:]...)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_TrackJobs") }, eventually, tick)
	for _, k := range keys {
		require.Equal(t, 1, ops.doneCount(k), "one Done per job: %s", k)
	}
	require.Zero(t, e.count(t, events.StreamDLQ, "dlq.>"))
}

func TestTrackerHoldsAtMostMaxHeldPerReplica(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	cfg := e.config(t, "scheduler")
	cfg.Registerer = reg
	b := newBus(t, cfg)
	ops := newOperations()
	require.NoError(t, b.Track(bus.TrackerSpec{
		Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()},
		MaxHeld: 7, PollInterval: 10 * time.Millisecond, Check: ops.check,
	}))
	start(t, b)
	keys := publishJobs(t, b, 40)

	require.Eventually(t, func() bool { return counterValue(t, reg, "patchwave_bus_tracker_held") == 7 }, eventually, tick)
	require.Eventually(t, func() bool { c, _ := ops.stats(); return c > 20 }, eventually, tick)
	require.LessOrEqual(t, consumerInfo(t, e, "scheduler_TrackJobs").NumAckPending, 7, "no more than MaxHeld pulled")
	_, maxSeen := ops.stats()
	require.Equal(t, 7, maxSeen, "a check sees the whole held set, never more than MaxHeld")

	ops.finish(keys...)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_TrackJobs") }, eventually, tick)
	require.Equal(t, 40, ops.doneKeys())
	_, maxSeen = ops.stats()
	require.Equal(t, 7, maxSeen)
	require.InDelta(t, 40, counterValue(t, reg, "patchwave_bus_tracker_outcomes_total"), 0)
	require.Positive(t, counterValue(t, reg, "patchwave_bus_tracker_checks_total"))
}

func TestTrackerVerdictsRetryAndFailDeadLetterThroughTheHook(t *testing.T) {
	tests := []struct {
		name       string
		decide     func(h *bus.Held)
		deliveries uint64
		reason     string
	}{
		{"a retried message is dead-lettered once its deliveries are used up", func(h *bus.Held) { h.Retry(errBoom) }, 3,
			"dead-lettered after 3 attempts: boom"},
		{"a failed message is dead-lettered at once", func(h *bus.Held) { h.Fail(errBoom) }, 1, "dead-lettered: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			b := newBus(t, e.config(t, "scheduler"))
			var seen atomic.Int32
			hooked := make(chan bus.DeadLetter, 1)
			require.NoError(t, b.Track(bus.TrackerSpec{
				Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()}, PollInterval: 10 * time.Millisecond,
				Check: func(_ context.Context, held []*bus.Held) error {
					for _, h := range held {
						seen.Add(1)
						tt.decide(h)
					}
					return nil
				},
				OnDeadLetter: func(_ context.Context, dl bus.DeadLetter) error {
					hooked <- dl
					return nil
				},
			}))
			start(t, b)
			publishJobs(t, b, 1)

			select {
			case dl := <-hooked:
				require.Equal(t, "run-1/i-000", dl.Event.Key)
				require.Equal(t, tt.deliveries, dl.Deliveries)
				require.Equal(t, tt.reason, dl.Reason)
				require.ErrorIs(t, dl.Cause, errBoom)
			case <-time.After(eventually):
				t.Fatal("hook not called")
			}
			require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.scheduler.TrackJobs") == 1 }, eventually, tick)
			dl := e.msgs(t, events.StreamDLQ, "dlq.scheduler.TrackJobs")[0]
			require.Equal(t, tt.reason, dl.Header.Get(events.HeaderDLQReason))
			require.Equal(t, "scheduler_TrackJobs", dl.Header.Get(events.HeaderDLQHandler))
			require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_TrackJobs") }, eventually, tick)
			require.Equal(t, int32(tt.deliveries), seen.Load(), "checked once per delivery")
		})
	}
}

func TestTrackerDeadLettersMalformedMessagesWithoutTheHook(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	var hooks, checked atomic.Int32
	require.NoError(t, b.Track(bus.TrackerSpec{
		Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()}, PollInterval: 10 * time.Millisecond,
		Check: func(_ context.Context, held []*bus.Held) error {
			for _, h := range held {
				checked.Add(1)
				h.Done()
			}
			return nil
		},
		OnDeadLetter: func(context.Context, bus.DeadLetter) error { hooks.Add(1); return nil },
	}))
	start(t, b)
	_, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: "patch.acme.job.requested", Data: []byte("{not json")})
	require.NoError(t, err)
	publishJobs(t, b, 1)

	require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.scheduler.TrackJobs") == 1 }, eventually, tick)
	require.Contains(t, e.msgs(t, events.StreamDLQ, "dlq.>")[0].Header.Get(events.HeaderDLQReason), events.ErrMalformed.Error())
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_TrackJobs") }, eventually, tick)
	require.Equal(t, int32(1), checked.Load(), "only the valid event is held")
	require.Zero(t, hooks.Load(), "a malformed message names no job")
}

func TestTrackerPanickingCheckDecidesNothingAndTheTrackerGoesOn(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	var calls atomic.Int32
	require.NoError(t, b.Track(bus.TrackerSpec{
		Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()}, PollInterval: 10 * time.Millisecond,
		Check: func(_ context.Context, held []*bus.Held) error {
			for _, h := range held {
				h.Done()
			}
			if calls.Add(1) <= 2 {
				panic("check bug")
			}
			return nil
		},
	}))
	start(t, b)
	publishJobs(t, b, 2)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_TrackJobs") }, eventually, tick)
	require.GreaterOrEqual(t, calls.Load(), int32(3), "the verdicts of a panicking check are not applied")
	require.Zero(t, e.count(t, events.StreamDLQ, "dlq.>"))
}

// A replica that stops hands its held messages back at once; one that dies (its connection
// gone, nothing handed back) has them redelivered after AckWait. Either way the other replica
// resumes tracking and every job is done exactly once.
func TestTrackerReplicaStoppedOrDeadHandsItsHeldMessagesToAnother(t *testing.T) {
	tests := []struct {
		name string
		kill func(t *testing.T, r *running, nc *nats.Conn)
	}{
		{"a replica stopped cleanly", func(t *testing.T, r *running, _ *nats.Conn) { require.NoError(t, r.stop(t)) }},
		{"a replica whose connection dies", func(_ *testing.T, _ *running, nc *nats.Conn) { nc.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ops := newOperations()
			newReplica := func(check bus.CheckFunc) (*bus.Bus, *nats.Conn) {
				cfg := e.config(t, "scheduler")
				cfg.Conn = e.srv.Connect(t)
				cfg.AckWait = time.Second
				b := newBus(t, cfg)
				require.NoError(t, b.Track(bus.TrackerSpec{
					Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()},
					PollInterval: 10 * time.Millisecond, Check: check,
				}))
				return b, cfg.Conn
			}
			// The first replica holds every job but never finishes one.
			var firstSaw atomic.Int32
			first, firstConn := newReplica(func(_ context.Context, held []*bus.Held) error {
				firstSaw.Store(int32(len(held)))
				return nil
			})
			r := start(t, first)
			keys := publishJobs(t, first, 20)
			require.Eventually(t, func() bool { return firstSaw.Load() == 20 }, eventually, tick)

			tt.kill(t, r, firstConn)
			ops.finish(keys...)
			second, _ := newReplica(ops.check)
			start(t, second)
			require.Eventually(t, func() bool { return ops.doneKeys() == 20 }, eventually, tick)
			require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_TrackJobs") }, eventually, tick)
			for _, k := range keys {
				require.Equal(t, 1, ops.doneCount(k), "done once: %s", k)
			}
		})
	}
}

func TestHandlerDeadLetterHookRunsFirstAndAFailedHookKeepsTheMessage(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	var calls, hooks atomic.Int32
	var reasons sync.Map
	require.NoError(t, b.Handle(bus.HandlerSpec{
		Name: "FailOnJobRequested", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()},
		Handle: func(context.Context, *events.Event) error { calls.Add(1); return errBoom },
		OnDeadLetter: func(_ context.Context, dl bus.DeadLetter) error {
			n := hooks.Add(1)
			reasons.Store(n, dl.Reason)
			if n < 3 {
				return fmt.Errorf("outcome store down (%d)", n)
			}
			return nil
		},
	}))
	start(t, b)
	publishJobs(t, b, 1)

	require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.scheduler.FailOnJobRequested") == 1 }, eventually, tick)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_FailOnJobRequested") }, eventually, tick)
	require.Equal(t, int32(3), hooks.Load(), "the hook is retried until it succeeds")
	require.Equal(t, int32(5), calls.Load(), "3 deliveries, then one more per failed hook")
	first, _ := reasons.Load(int32(1))
	require.Equal(t, "dead-lettered after 3 attempts: boom", first)
	last, _ := reasons.Load(int32(3))
	require.Equal(t, "dead-lettered after 5 attempts: boom", last)
	dl := e.msgs(t, events.StreamDLQ, "dlq.>")[0]
	require.Equal(t, last, dl.Header.Get(events.HeaderDLQReason))
}

func TestThrottledFailuresGetMoreDeliveriesThanOtherFailures(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		calls int32
	}{
		{"an ordinary error is dead-lettered after MaxDeliver", errBoom, 3},
		{"a throttled error is dead-lettered after MaxDeliverThrottled", bus.Throttled(errBoom), 6},
		{"a permanent error stays permanent even when throttled", bus.Permanent(bus.Throttled(errBoom)), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config(t, "scheduler")
			cfg.MaxDeliverThrottled = 6
			cfg.ThrottledBackoff = 5 * time.Millisecond
			b := newBus(t, cfg)
			var calls atomic.Int32
			require.NoError(t, bus.Handle(b, "ThrottledOnRunStarted", func(context.Context, *events.Event, *eventsv1.RunStarted) error {
				calls.Add(1)
				return tt.err
			}))
			start(t, b)
			require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "run-1")))
			require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.>") == 1 }, eventually, tick)
			require.Equal(t, tt.calls, calls.Load())
		})
	}
}

func TestTrackerRegistrationErrors(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	check := func(context.Context, []*bus.Held) error { return nil }
	subjects := []string{"patch.>"}
	tests := []struct {
		name string
		spec bus.TrackerSpec
		msg  string
	}{
		{"a tracker needs a valid name", bus.TrackerSpec{Name: "a b", Subjects: subjects, Check: check}, "must match"},
		{"a tracker needs subjects", bus.TrackerSpec{Name: "T", Check: check}, "required"},
		{"a tracker needs a check", bus.TrackerSpec{Name: "T", Subjects: subjects}, "required"},
		{"a tracker refuses a negative bound", bus.TrackerSpec{Name: "T", Subjects: subjects, Check: check, MaxHeld: -1}, "negative"},
		{"a tracker reads one stream", bus.TrackerSpec{Name: "T", Subjects: []string{"patch.>", "catalog.>"}, Check: check}, "span streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorContains(t, b.Track(tt.spec), tt.msg)
		})
	}
	require.NoError(t, b.Handle(bus.HandlerSpec{Name: "H", Subjects: subjects, Handle: func(context.Context, *events.Event) error { return nil }}))
	require.ErrorContains(t, b.Track(bus.TrackerSpec{Name: "H", Subjects: subjects, Check: check}), "a handler has that name")
	require.NoError(t, b.Track(bus.TrackerSpec{Name: "T", Subjects: subjects, Check: check}))
	require.ErrorContains(t, b.Track(bus.TrackerSpec{Name: "T", Subjects: subjects, Check: check}), "twice")
	start(t, b)
	require.ErrorContains(t, b.Track(bus.TrackerSpec{Name: "Late", Subjects: subjects, Check: check}), "after Run")
}

func TestRunWithOnlyATrackerIsRunning(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	ops := newOperations()
	require.NoError(t, b.Track(bus.TrackerSpec{Name: "T", Subjects: []string{"patch.>"}, PollInterval: 10 * time.Millisecond, Check: ops.check}))
	r := start(t, b)
	keys := publishJobs(t, b, 1)
	ops.finish(keys...)
	require.Eventually(t, func() bool { return ops.doneKeys() == 1 }, eventually, tick)
	require.NoError(t, r.stop(t))
}

func TestTrackerChecksAnOperationLessOftenTheLongerItRuns(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	const poll, most = 10 * time.Millisecond, 80 * time.Millisecond
	ops := newOperations()
	var (
		mu     sync.Mutex
		checks []time.Time
	)
	require.NoError(t, b.Track(bus.TrackerSpec{
		Name: "TrackJobs", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()},
		PollInterval: poll, MaxCheckInterval: most,
		Check: func(ctx context.Context, held []*bus.Held) error {
			mu.Lock()
			checks = append(checks, time.Now())
			mu.Unlock()
			return ops.check(ctx, held)
		},
	}))
	start(t, b)
	keys := publishJobs(t, b, 1)
	seen := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(checks)
	}
	require.Eventually(t, func() bool { return len(seen()) >= 8 }, eventually, tick)

	// Checks 2 to 8 came 1, 2, 4, 8, 8, 8, 8 poll intervals apart at the soonest (each less
	// half a tick of slack): a slow machine only spaces them more.
	got := seen()
	var least time.Duration
	for i := 1; i < 8; i++ {
		least += min(poll<<(i-1), most) - poll/2
	}
	require.GreaterOrEqual(t, got[7].Sub(got[0]), least, "8 checks of one running operation")

	ops.finish(keys...)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_TrackJobs") }, eventually, tick)
	require.Equal(t, 1, ops.doneCount(keys[0]))
}
