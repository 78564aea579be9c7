package scheduler_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler"
)

var t0 = time.Date(2026, 11, 23, 15, 48, 0, 0, time.UTC)

// env is one embedded NATS with a publishing bus for test input, a simulated fleet of 20
// instances of tenant acme over 2 waves, and counters of every publish (core subscriptions see
// duplicates the stream drops, so they count what the service sent, not what was stored).
type env struct {
	nats      *testkit.NATS
	nc        *nats.Conn
	js        jetstream.JetStream
	in        *bus.Bus
	fleet     *simfleet.Fleet
	completed atomic.Int64
	jobs      atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{nats: testkit.StartNATS(t)}
	e.nc = e.nats.Connect(t)
	var err error
	e.in, err = bus.New(t.Context(), bus.Config{Service: "tester", Conn: e.nc})
	require.NoError(t, err)
	e.js = e.in.JetStream()
	_, err = e.nc.Subscribe("patch.*.run.completed", func(*nats.Msg) { e.completed.Add(1) })
	require.NoError(t, err)
	_, err = e.nc.Subscribe("patch.*.job.requested", func(*nats.Msg) { e.jobs.Add(1) })
	require.NoError(t, err)
	e.fleet, err = simfleet.New(simfleet.Config{})
	require.NoError(t, err)
	require.NoError(t, e.fleet.Populate("acme", 20, 2))
	e.publish(t, "", "b1", &eventsv1.BaselinePublished{
		BaselineId: "b1", OsFamily: "amazon-linux-2023", Version: 1, PublishedAt: timestamppb.New(t0),
		Patches: []*typesv1.Patch{{Id: "ALAS-1"}, {Id: "ALAS-2"}},
	})
	return e
}

func (e *env) publish(t *testing.T, tenant, key string, msg proto.Message) {
	t.Helper()
	ev, err := events.New(tenant, key, msg)
	require.NoError(t, err)
	require.NoError(t, e.in.Publish(t.Context(), ev))
}

// flushed returns a publish counter after every message the server sent us was read.
func (e *env) flushed(t *testing.T, c *atomic.Int64) int64 {
	t.Helper()
	require.NoError(t, e.nc.Flush())
	return c.Load()
}

// stored returns the events stored on subject, in stream order.
func (e *env) stored(t *testing.T, subject string) []*events.Event {
	t.Helper()
	ctx := t.Context()
	name, err := events.StreamFor(subject)
	require.NoError(t, err)
	s, err := e.js.Stream(ctx, name)
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	var n int
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	if n == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(t, err)
	var out []*events.Event
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
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

// running is one scheduler hosted like cmd/scheduler does it, with a gRPC client.
type running struct {
	client schedulerv1.SchedulerServiceClient
	stop   func()
}

func (e *env) start(t *testing.T, st store.Store) *running {
	t.Helper()
	svc, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Fleet: e.fleet, Store: st, Clock: func() time.Time { return t0 }})
	require.NoError(t, err)
	conn, stop := stagetest.RunGRPCComponent(t, e.nc, svc)
	return &running{client: schedulerv1.NewSchedulerServiceClient(conn), stop: stop}
}

// waitConsumed waits until the scheduler's RequestJobsOnRunStarted consumer has handled
// everything it was given.
func (e *env) waitConsumed(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := e.js.Consumer(t.Context(), events.StreamTenant, bus.Consumer(scheduler.Name, "RequestJobsOnRunStarted"))
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 10*time.Second, 20*time.Millisecond)
}

func TestRunLifecycle(t *testing.T) {
	tests := []struct {
		name string
		// stores returns the store of the first and of the restarted service.
		stores func(t *testing.T) (first, restarted store.Store)
		// flush empties the store before the restart, as if Redis lost everything.
		flush bool
	}{
		{"memory store, rebuilt from the stream on restart", func(*testing.T) (store.Store, store.Store) {
			return store.NewMemory(), store.NewMemory()
		}, false},
		{"redis store, resumed from its checkpoints on restart", func(t *testing.T) (store.Store, store.Store) {
			st := store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "pw:")
			return st, st
		}, false},
		{"redis store, flushed before the restart", func(t *testing.T) (store.Store, store.Store) {
			st := store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "pw:")
			return st, st
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			e := newEnv(t)
			first, restarted := tt.stores(t)
			svc := e.start(t, first)

			resp, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 1})
			require.NoError(t, err)
			run := resp.GetRun()
			require.Equal(t, typesv1.RunState_RUN_STATE_RUNNING, run.GetState())
			require.Equal(t, int32(10), run.GetTotal())
			require.Equal(t, "b1", run.GetBaselineId())

			require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.job.requested")) == 10 }, 10*time.Second, 20*time.Millisecond)
			startedEvs := e.stored(t, "patch.acme.run.started")
			require.Len(t, startedEvs, 1)
			started := startedEvs[0].Data.(*eventsv1.RunStarted)
			require.Equal(t, []string{"ALAS-1", "ALAS-2"}, started.GetPatchIds())
			var instances []string
			for _, ev := range e.stored(t, "patch.acme.job.requested") {
				job := ev.Data.(*eventsv1.JobRequested)
				require.Equal(t, run.GetRunId(), job.GetRunId())
				require.Equal(t, "patch.acme.job.requested/"+run.GetRunId()+"/"+job.GetInstanceId(), ev.ID)
				require.Equal(t, []string{"ALAS-1", "ALAS-2"}, job.GetPatchIds())
				instances = append(instances, job.GetInstanceId())
			}
			require.ElementsMatch(t, started.GetInstanceIds(), instances)
			for _, id := range instances {
				in := strings.TrimPrefix(id, "i-acme-")
				var n int
				_, err := fmt.Sscanf(in, "%d", &n)
				require.NoError(t, err)
				require.Equal(t, 1, n%2, "instance %s is tagged into wave 1", id)
			}

			// Outcomes: 8 succeed, 1 install fails, 1 snapshot fails.
			runID := run.GetRunId()
			for i, id := range instances {
				key := runID + "/" + id
				if i == 9 {
					e.publish(t, "acme", key, &eventsv1.SnapshotFailed{Tenant: "acme", RunId: runID, Wave: 1, InstanceId: id, Reason: "quota"})
					continue
				}
				e.publish(t, "acme", key, &eventsv1.SnapshotCreated{Tenant: "acme", RunId: runID, Wave: 1, InstanceId: id, SnapshotId: "snap-" + id})
				require.Zero(t, e.flushed(t, &e.completed), "no RunCompleted before every job ended")
				if i == 8 {
					e.publish(t, "acme", key, &eventsv1.InstallFailed{Tenant: "acme", RunId: runID, Wave: 1, InstanceId: id, Reason: "exit status 1"})
					continue
				}
				e.publish(t, "acme", key, &eventsv1.InstallSucceeded{Tenant: "acme", RunId: runID, Wave: 1, InstanceId: id})
			}
			require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.run.completed")) == 1 }, 10*time.Second, 20*time.Millisecond)
			done := e.stored(t, "patch.acme.run.completed")[0].Data.(*eventsv1.RunCompleted)
			require.True(t, proto.Equal(&eventsv1.RunCompleted{
				Tenant: "acme", RunId: runID, Wave: 1, State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
				Total: 10, Succeeded: 8, Failed: 2, CompletedAt: timestamppb.New(t0),
			}, done), "got %v", done)

			want := &schedulerv1.Run{
				Tenant: "acme", RunId: runID, Wave: 1, BaselineId: "b1", State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
				Total: 10, Snapshotted: 9, Succeeded: 8, Failed: 1, SnapshotFailed: 1,
				StartedAt: timestamppb.New(t0), CompletedAt: timestamppb.New(t0),
			}
			require.Eventually(t, func() bool {
				got, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme", RunId: runID})
				return err == nil && proto.Equal(want, got.GetRun())
			}, 10*time.Second, 20*time.Millisecond)
			require.Equal(t, int64(1), e.flushed(t, &e.completed), "RunCompleted is published exactly once")
			require.Equal(t, int64(10), e.flushed(t, &e.jobs))

			// Restart. The handler's consumer is deleted too, so every RunStarted is delivered
			// again, as a replay after the duplicate window would: the rebuilt marks stop it.
			svc.stop()
			require.NoError(t, e.js.DeleteConsumer(ctx, events.StreamTenant, bus.Consumer(scheduler.Name, "RequestJobsOnRunStarted")))
			if tt.flush {
				require.NoError(t, restarted.FlushPrefix(ctx, ""))
				keys, err := restarted.Keys(ctx, "")
				require.NoError(t, err)
				require.Empty(t, keys)
			}
			svc = e.start(t, restarted)
			got, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme", RunId: runID})
			require.NoError(t, err, "the read model is ready as soon as the service is")
			require.True(t, proto.Equal(want, got.GetRun()), "got %v", got.GetRun())
			list, err := svc.client.ListRuns(ctx, &schedulerv1.ListRunsRequest{Tenant: "acme"})
			require.NoError(t, err)
			require.Len(t, list.GetRuns(), 1)
			e.waitConsumed(t)
			require.Equal(t, int64(1), e.flushed(t, &e.completed), "no second RunCompleted after a restart")
			require.Equal(t, int64(10), e.flushed(t, &e.jobs), "no job is requested again")
		})
	}
}

func TestRunFinishedWhileTheSchedulerWasDownIsCompletedOnce(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	svc := e.start(t, store.NewMemory())
	resp, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 2, RequestId: "change-7"})
	require.NoError(t, err)
	runID := resp.GetRun().GetRunId()
	require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.job.requested")) == 10 }, 10*time.Second, 20*time.Millisecond)
	svc.stop()

	for _, ev := range e.stored(t, "patch.acme.job.requested") {
		job := ev.Data.(*eventsv1.JobRequested)
		e.publish(t, "acme", ev.Key, &eventsv1.InstallSucceeded{Tenant: "acme", RunId: runID, Wave: 2, InstanceId: job.GetInstanceId()})
	}
	require.Zero(t, e.flushed(t, &e.completed))

	for range 2 {
		svc = e.start(t, store.NewMemory())
		// The count comes from an asynchronous core subscription: wait for it, then make sure
		// it is exactly one.
		require.Eventually(t, func() bool { return e.flushed(t, &e.completed) >= 1 }, 10*time.Second, 10*time.Millisecond)
		require.Equal(t, int64(1), e.flushed(t, &e.completed), "the catch-up completes the run once")
		got, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme", RunId: runID})
		require.NoError(t, err)
		require.Equal(t, int32(10), got.GetRun().GetSucceeded())
		svc.stop()
	}
	done := e.stored(t, "patch.acme.run.completed")
	require.Len(t, done, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, done[0].Data.(*eventsv1.RunCompleted).GetState())
}

func TestStartRunWithARequestIDStartsOneRun(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	svc := e.start(t, store.NewMemory())
	req := &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 1, RequestId: "change-42"}
	first, err := svc.client.StartRun(ctx, req)
	require.NoError(t, err)
	// The retry may come before or after the read model has the run: both give one run.
	second, err := svc.client.StartRun(ctx, req)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		l, err := svc.client.ListRuns(ctx, &schedulerv1.ListRunsRequest{Tenant: "acme"})
		return err == nil && len(l.GetRuns()) == 1
	}, 10*time.Second, 20*time.Millisecond)
	third, err := svc.client.StartRun(ctx, req)
	require.NoError(t, err)
	require.Equal(t, first.GetRun().GetRunId(), second.GetRun().GetRunId())
	require.Equal(t, first.GetRun().GetRunId(), third.GetRun().GetRunId())

	other, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 1, RequestId: "change-43"})
	require.NoError(t, err)
	require.NotEqual(t, first.GetRun().GetRunId(), other.GetRun().GetRunId())

	require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.job.requested")) == 20 }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, e.stored(t, "patch.acme.run.started"), 2)
}

func TestStartRunWithoutInstancesCompletesTheRun(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	svc := e.start(t, store.NewMemory())
	resp, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "nobody", Wave: 3})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, resp.GetRun().GetState())
	require.Zero(t, resp.GetRun().GetTotal())
	done := e.stored(t, "patch.nobody.run.completed")
	require.Len(t, done, 1)
	msg := done[0].Data.(*eventsv1.RunCompleted)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, msg.GetState())
	require.Zero(t, msg.GetTotal())
	require.Eventually(t, func() bool {
		got, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "nobody", RunId: resp.GetRun().GetRunId()})
		return err == nil && got.GetRun().GetState() == typesv1.RunState_RUN_STATE_COMPLETED
	}, 10*time.Second, 20*time.Millisecond)
}

func TestAPIErrors(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	svc := e.start(t, store.NewMemory())
	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		fields []string
		text   string
	}{
		{"StartRun without a tenant", func() error {
			_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Wave: 1})
			return err
		}, codes.InvalidArgument, []string{"tenant"}, "tenant: must match"},
		{"StartRun with wave 0 and a bad tenant", func() error {
			_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "ACME"})
			return err
		}, codes.InvalidArgument, []string{"tenant", "wave"}, "wave: must be from 1 to 3, got 0"},
		{"StartRun with wave 4", func() error {
			_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 4})
			return err
		}, codes.InvalidArgument, []string{"wave"}, "wave: must be from 1 to 3, got 4"},
		{"StartRun with an unpublished baseline", func() error {
			_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 1, BaselineId: "b9"})
			return err
		}, codes.FailedPrecondition, nil, "baseline b9 is not published"},
		{"GetRun without a run id", func() error {
			_, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme"})
			return err
		}, codes.InvalidArgument, []string{"run_id"}, "run_id: is required"},
		{"GetRun of an unknown run", func() error {
			_, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme", RunId: "run-404"})
			return err
		}, codes.NotFound, nil, "run run-404 of tenant acme"},
		{"ListRuns with a bad tenant", func() error {
			_, err := svc.client.ListRuns(ctx, &schedulerv1.ListRunsRequest{Tenant: "a b"})
			return err
		}, codes.InvalidArgument, []string{"tenant"}, "tenant: must match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ok := status.FromError(tt.call())
			require.True(t, ok)
			require.Equal(t, tt.code, st.Code(), st.Message())
			require.Contains(t, st.Message(), tt.text)
			if tt.fields == nil {
				return
			}
			var got []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						got = append(got, v.GetField())
					}
				}
			}
			require.Equal(t, tt.fields, got)
		})
	}
	list, err := svc.client.ListRuns(ctx, &schedulerv1.ListRunsRequest{Tenant: "unknown"})
	require.NoError(t, err)
	require.Empty(t, list.GetRuns(), "an unknown tenant has no runs")
}

func TestNewChecksConfigAndDeps(t *testing.T) {
	_, err := scheduler.New(scheduler.Config{MaxWaves: -1}, scheduler.Deps{})
	require.ErrorContains(t, err, "MaxWaves -1: must be from 1 to 52")
	require.ErrorContains(t, err, "Deps.Fleet: required")
	require.ErrorContains(t, err, "Deps.Store: required")

	fleet, err := simfleet.New(simfleet.Config{})
	require.NoError(t, err)
	svc, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Fleet: fleet, Store: store.NewMemory()})
	require.NoError(t, err)
	require.Equal(t, "scheduler", svc.Name())
}
