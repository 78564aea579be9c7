package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

const eventually = 15 * time.Second

func newBus(t *testing.T, nc *nats.Conn, service string) *bus.Bus {
	t.Helper()
	cfg := stagetest.BusConfig()
	cfg.Service, cfg.Conn, cfg.MaxDeliver, cfg.MaxDeliverThrottled = service, nc, 3, 6
	b, err := bus.New(t.Context(), cfg)
	require.NoError(t, err)
	return b
}

func run(t *testing.T, b *bus.Bus) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-b.Running():
	case err := <-done:
		t.Fatalf("bus stopped: %v", err)
	case <-time.After(eventually):
		t.Fatal("bus not running")
	}
}

func job(tenant, run, instance string) *events.Event {
	return events.MustNew(tenant, run+"/"+instance, &eventsv1.JobRequested{Tenant: tenant, RunId: run, InstanceId: instance,
		Location: &typesv1.Location{Account: "111111111111", Region: "eu-central-1"}})
}

func failureOf(ev *events.Event, msg *eventsv1.JobRequested, reason string) *events.Event {
	return stage.Follow(events.MustNew(ev.Tenant, ev.Key, &eventsv1.SnapshotFailed{Tenant: ev.Tenant, RunId: msg.GetRunId(),
		InstanceId: msg.GetInstanceId(), Reason: reason}), ev)
}

// A job whose handler keeps failing gets its failure outcome, naming why, from the dead-letter
// hook: no run waits forever for it.
func TestHandlerThatKeepsFailingPublishesTheFailureOutcomeFromTheHook(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	b := newBus(t, nc, "snapshotter")
	var calls atomic.Int32
	require.NoError(t, stage.Handle(b, stage.HandlerSpec[*eventsv1.JobRequested]{
		Name: "SnapOnJobRequested", Concurrency: 4,
		Handle: func(context.Context, *events.Event, *eventsv1.JobRequested) error {
			calls.Add(1)
			return bus.Throttled(fmt.Errorf("create snapshots: %w", provider.ErrThrottled))
		},
		OnDeadLetter: func(ctx context.Context, ev *events.Event, msg *eventsv1.JobRequested, reason string) error {
			return b.Publish(ctx, failureOf(ev, msg, reason))
		},
	}))
	run(t, b)
	in := job("acme", "run-1", "i-1")
	in.CorrelationID = "corr-7"
	stagetest.Publish(t, nc, in)

	require.Eventually(t, func() bool {
		return stagetest.CountEvents(t, b.JetStream(), events.StreamTenant, "patch.acme.snapshot.failed") == 1
	}, eventually, 10*time.Millisecond)
	out := stagetest.ReadEvents(t, b.JetStream(), "patch.acme.snapshot.failed")[0]
	reason := out.Data.(*eventsv1.SnapshotFailed).GetReason()
	require.Equal(t, "dead-lettered after 6 attempts: create snapshots: throttled", reason, "throttling is retried longer before it fails the job")
	require.Equal(t, "corr-7", out.CorrelationID)
	require.Equal(t, int32(6), calls.Load())
	require.Equal(t, 1, stagetest.CountEvents(t, b.JetStream(), events.StreamDLQ, "dlq.snapshotter.SnapOnJobRequested"))
}

func TestTrackerFailsEventsOfAnotherTypeAndHandsTypedOnesToTheCheck(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	b := newBus(t, nc, "snapshotter")
	var mu sync.Mutex
	seen := map[string]int{}
	require.NoError(t, stage.Track(b, stage.TrackerSpec[*eventsv1.JobRequested]{
		Name: "TrackJobs", PollInterval: 10 * time.Millisecond,
		Check: func(_ context.Context, held []stage.Tracked[*eventsv1.JobRequested]) error {
			mu.Lock()
			defer mu.Unlock()
			for _, h := range held {
				seen[h.Msg.GetInstanceId()]++
				require.Equal(t, seen[h.Msg.GetInstanceId()]-1, h.Checks)
				if seen[h.Msg.GetInstanceId()] == 3 {
					h.Done()
				}
			}
			return nil
		},
	}))
	run(t, b)
	stagetest.Publish(t, nc, job("acme", "run-1", "i-1"), job("acme", "run-1", "i-2"))
	require.Eventually(t, func() bool { return stagetest.Drained(t, b.JetStream(), "snapshotter", "TrackJobs") }, eventually, 10*time.Millisecond)
	mu.Lock()
	require.Equal(t, map[string]int{"i-1": 3, "i-2": 3}, seen, "held until the third check decides")
	mu.Unlock()
}

func TestPublisherCoalescesConcurrentPublishesAndKeepsEachCallsCorrelation(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	b := newBus(t, nc, "scheduler")
	counting := &countingPublisher{pub: b}
	p, err := stage.NewPublisher(counting, stage.BatcherConfig{Size: 50, Linger: 50 * time.Millisecond})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			ctx := bus.WithCorrelationID(t.Context(), fmt.Sprintf("corr-%d", i))
			require.NoError(t, p.Publish(ctx, job("acme", "run-1", fmt.Sprintf("i-%d", i))))
		})
	}
	wg.Wait()
	require.Equal(t, int32(1), counting.calls.Load(), "fifty publishes, one bus publish")
	evs := stagetest.ReadEvents(t, b.JetStream(), "patch.acme.job.requested")
	require.Len(t, evs, 50)
	for _, ev := range evs {
		var n int
		_, err := fmt.Sscanf(ev.Key, "run-1/i-%d", &n)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("corr-%d", n), ev.CorrelationID)
	}
}

func TestPublisherIsolatesACallWhoseEventIsRefused(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	b := newBus(t, nc, "scheduler")
	p, err := stage.NewPublisher(b, stage.BatcherConfig{Size: 2, Linger: time.Hour})
	require.NoError(t, err)
	bad := job("acme", "run-1", "i-bad")
	bad.Subject = "patch.acme.run.started" // does not match its payload
	errs := make(chan error, 2)
	go func() { errs <- p.Publish(t.Context(), bad) }()
	go func() { errs <- p.Publish(t.Context(), job("acme", "run-1", "i-good")) }()
	var failed, ok int
	for range 2 {
		if err := <-errs; err != nil {
			require.True(t, bus.IsPermanent(err))
			failed++
		} else {
			ok++
		}
	}
	require.Equal(t, 1, failed)
	require.Equal(t, 1, ok)
	require.Equal(t, 1, stagetest.CountEvents(t, b.JetStream(), events.StreamTenant, "patch.acme.job.requested"))
}

type countingPublisher struct {
	pub   stage.EventPublisher
	calls atomic.Int32
}

func (c *countingPublisher) Publish(ctx context.Context, evs ...*events.Event) error {
	c.calls.Add(1)
	return c.pub.Publish(ctx, evs...)
}

func TestRetryTellsRedeliveriesFromOutcomes(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		err       error
		retry     bool
		throttled bool
	}{
		{"throttling is retried and waited out longer", t.Context(), fmt.Errorf("x: %w", provider.ErrThrottled), true, true},
		{"a retryable error is retried", t.Context(), retryable{}, true, false},
		{"a deadline is retried", t.Context(), context.DeadlineExceeded, true, false},
		{"access denied is an outcome", t.Context(), fmt.Errorf("assume role: %w", provider.ErrAccessDenied), false, false},
		{"an instance not running is an outcome", t.Context(), provider.ErrInstanceNotRunning, false, false},
		{"any error while stopping is retried", cancelled, provider.ErrNotFound, true, false},
		{"no error is nothing", t.Context(), nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stage.Retry(tt.ctx, tt.err)
			require.Equal(t, tt.retry, got != nil)
			require.Equal(t, tt.throttled, bus.IsThrottled(got))
			if got != nil {
				require.ErrorIs(t, got, tt.err)
			}
		})
	}
}

type retryable struct{}

func (retryable) Error() string   { return "503 service unavailable" }
func (retryable) Retryable() bool { return true }

func TestConversions(t *testing.T) {
	require.Equal(t, "acme/run-1/i-1", stage.Key("acme", "run-1", "i-1"))
	require.Equal(t, "acme/run-1/i-1", stage.EventKey(job("acme", "run-1", "i-1")))

	target, err := stage.Target("acme", &typesv1.Location{Account: "111111111111", Region: "eu-central-1"})
	require.NoError(t, err)
	require.Equal(t, provider.Target{Tenant: "acme", Account: "111111111111", Region: "eu-central-1"}, target)
	require.Equal(t, "111111111111", stage.Location(target).GetAccount())
	_, err = stage.Target("acme", nil)
	require.ErrorContains(t, err, "location.account: required")
	require.ErrorContains(t, err, "location.region: required")

	for _, p := range []provider.RebootPolicy{provider.RebootIfRequired, provider.RebootAlways, provider.RebootNever} {
		require.Equal(t, p, stage.RebootPolicy(stage.RebootPolicyOf(p)))
	}
	require.Equal(t, provider.RebootIfRequired, stage.RebootPolicy(typesv1.RebootPolicy_REBOOT_POLICY_UNSPECIFIED))

	require.NoError(t, stage.ValidateJob("acme", "", "run-1", "i-1"))
	err = stage.ValidateJob("acme", "globex", "", "i/1")
	require.ErrorContains(t, err, `tenant "globex": must equal the event's tenant "acme"`)
	require.ErrorContains(t, err, "run_id: required")
	require.ErrorContains(t, err, `instance_id "i/1": must not contain`)

	require.NoError(t, errors.Join(stage.Positive("A", time.Second), stage.IntRange("B", 3, 1, 5), stage.AtMost("C", time.Second, "D", time.Minute)))
	require.ErrorContains(t, stage.Positive("PollInterval", 0), "PollInterval 0s: must be > 0")
	require.ErrorContains(t, stage.IntRange("Concurrency", 0, 1, 1024), "Concurrency 0: must be from 1 to 1024")
	require.ErrorContains(t, stage.AtMost("PollInterval", time.Hour, "Timeout", time.Minute), "PollInterval 1h0m0s: must not exceed Timeout 1m0s")
}
