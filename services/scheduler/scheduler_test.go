package scheduler_test

import (
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
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/scheduler"
)

var t0 = time.Date(2026, 11, 23, 15, 48, 0, 0, time.UTC)

// env is one embedded NATS with a publishing bus for test input, emulated AWS accounts (cloudsim
// through the AWS adapter) of tenant acme with 20 instances over 2 waves and of tenant empty
// with none, and counters of every publish (core subscriptions see
// duplicates the stream drops, so they count what the service sent, not what was stored).
type env struct {
	nats      *testkit.NATS
	nc        *nats.Conn
	js        jetstream.JetStream
	in        *bus.Bus
	cloud     *cloudtest.Env
	completed atomic.Int64
	jobs      atomic.Int64
	seeded    bool
	// clock is the services' clock; nil means always t0.
	clock func() time.Time
	// policy is the rollout policy of the seeded waves (default allAtOnce).
	policy *typesv1.RolloutPolicy
}

// allAtOnce releases every job at once and tolerates any failure.
var allAtOnce = &typesv1.RolloutPolicy{
	MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 100}},
	ErrorBudget:    &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 100}},
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{nats: testkit.StartNATS(t), policy: allAtOnce}
	e.nc = e.nats.Connect(t)
	var err error
	e.in, err = bus.New(t.Context(), bus.Config{Service: "tester", Conn: e.nc})
	require.NoError(t, err)
	e.js = e.in.JetStream()
	_, err = e.nc.Subscribe("patch.*.run.completed", func(*nats.Msg) { e.completed.Add(1) })
	require.NoError(t, err)
	_, err = e.nc.Subscribe("patch.*.job.requested", func(*nats.Msg) { e.jobs.Add(1) })
	require.NoError(t, err)
	acme := cloudtest.DefaultAccount()
	acme.Instances, acme.Waves = 20, 2
	acme.OSMix = map[string]float64{"amazon-linux-2023": 1}
	empty := cloudsim.AccountConfig{ID: "222222222222", Tenant: "empty", Regions: []string{"eu-west-1"}}
	e.cloud = cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{acme, empty}})
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
	stagetest.Publish(t, e.nc, ev)
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

// running is one scheduler hosted like cmd/scheduler does it, with gRPC clients.
type running struct {
	client schedulerv1.SchedulerServiceClient
	design designv1.DesignServiceClient
	stop   func()
}

// start hosts a scheduler; the first one of an env puts the service design of tenant acme
// (waves 1 and 2 of at most 3) and of tenant empty (wave 1, no instances).
func (e *env) start(t *testing.T, st store.Store) *running {
	t.Helper()
	clock := e.clock
	if clock == nil {
		clock = func() time.Time { return t0 }
	}
	svc, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Fleet: e.cloud.Fleet, Store: st, Clock: clock})
	require.NoError(t, err)
	conn, stop := stagetest.RunGRPCComponent(t, e.nc, svc)
	r := &running{client: schedulerv1.NewSchedulerServiceClient(conn), design: designv1.NewDesignServiceClient(conn), stop: stop}
	if !e.seeded {
		seedTenantWith(t, r.design, "acme", 2, e.policy)
		seedTenantWith(t, r.design, "empty", 1, e.policy)
		e.seeded = true
	}
	return r
}

// seedTenantWith puts a tenant with waves 1..waves (Berlin, second Tuesday + wave days) with
// rollout policy p.
func seedTenantWith(t *testing.T, c designv1.DesignServiceClient, tenant string, waves int32, p *typesv1.RolloutPolicy) {
	t.Helper()
	ctx := t.Context() // the test connection calls as stagetest.Operator
	_, err := c.PutTenant(ctx, &designv1.PutTenantRequest{Tenant: tenant, Settings: &typesv1.Tenant{DisplayName: tenant}})
	require.NoError(t, err)
	for w := int32(1); w <= waves; w++ {
		_, err := c.PutWave(ctx, &designv1.PutWaveRequest{Tenant: tenant, Wave: w, Definition: &typesv1.Wave{Schedule: &typesv1.Schedule{
			WeekOfMonth: 2, DayOfWeek: "TUESDAY", OffsetDays: w, StartTime: "02:00", EndTime: "06:00", TimeZone: "Europe/Berlin",
		}, Policy: p}})
		require.NoError(t, err)
	}
}

// members returns the instance ids of a run's membership chunks, in membership order.
func (e *env) members(t *testing.T, tenant, runID string) []string {
	t.Helper()
	var ids []string
	for _, ev := range e.stored(t, "patch."+tenant+".run.membership") {
		c := ev.Data.(*eventsv1.RunMembership)
		if c.GetRunId() != runID {
			continue
		}
		for _, m := range c.GetMembers() {
			ids = append(ids, m.GetInstanceId())
		}
	}
	return ids
}

func TestABaselineThatIsNotTheCatalogsIsNotBelieved(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	svc := e.start(t, store.NewMemory())
	// Sent on the catalog's subject with another source, as a misconfigured service (or one
	// whose NATS user is too wide) would: the payload check refuses it.
	forged := events.MustNew("", "b-forged", &eventsv1.BaselinePublished{BaselineId: "b-forged", OsFamily: "amazon-linux-2023", Version: 9,
		Patches: []*typesv1.Patch{{Id: "EVIL-1"}}})
	forged.Source, forged.Time = events.SourcePrefix+"notifier", t0
	data, err := events.Marshal(forged)
	require.NoError(t, err)
	_, err = e.js.Publish(ctx, forged.Subject, data)
	require.NoError(t, err)
	// A real one after it: once the scheduler knows b2, it has read past the forged one.
	e.publish(t, "", "b2", &eventsv1.BaselinePublished{BaselineId: "b2", OsFamily: "amazon-linux-2023", Version: 2,
		PublishedAt: timestamppb.New(t0), Patches: []*typesv1.Patch{{Id: "ALAS-3"}}})
	require.Eventually(t, func() bool {
		_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 1, BaselineId: "b2"})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)

	_, err = svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 2, BaselineId: "b-forged"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "baseline b-forged is not published")
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
			require.ElementsMatch(t, e.members(t, "acme", run.GetRunId()), instances)
			require.Equal(t, int32(10), started.GetMembership().GetEligible())
			var wave1 []string
			for _, in := range e.cloud.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "1"}) {
				wave1 = append(wave1, in.ID)
			}
			require.ElementsMatch(t, wave1, instances, "every instance tagged into wave 1, and no other")

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
				Total: 10, Succeeded: 8, Failed: 2, CompletedAt: timestamppb.New(t0), SnapshotFailed: 1,
			}, done), "got %v", done)

			want := &schedulerv1.Run{
				Tenant: "acme", RunId: runID, Wave: 1, BaselineId: "b1", State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
				Total: 10, Snapshotted: 9, Succeeded: 8, Failed: 1, SnapshotFailed: 1,
				StartedAt: timestamppb.New(t0), CompletedAt: timestamppb.New(t0), ErrorBudget: 10,
				JobCounts: []*schedulerv1.JobStateCount{
					{State: typesv1.JobState_JOB_STATE_SNAPSHOT_FAILED, Count: 1}, {State: typesv1.JobState_JOB_STATE_SUCCEEDED, Count: 8},
					{State: typesv1.JobState_JOB_STATE_FAILED, Count: 1},
				},
				Pins: []*typesv1.BaselinePin{{OsFamily: "amazon-linux-2023", BaselineId: "b1", Version: 1, PatchIds: []string{"ALAS-1", "ALAS-2"}}},
			}
			require.Eventually(t, func() bool {
				got, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme", RunId: runID})
				return err == nil && proto.Equal(want, got.GetRun())
			}, 10*time.Second, 20*time.Millisecond)
			require.Equal(t, int64(1), e.flushed(t, &e.completed), "RunCompleted is published exactly once")
			require.Equal(t, int64(10), e.flushed(t, &e.jobs))

			// Restart: the rebuilt read model knows every job was requested and the run completed.
			svc.stop()
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
			require.Never(t, func() bool { return e.flushed(t, &e.completed) != 1 || e.flushed(t, &e.jobs) != 10 },
				time.Second, 50*time.Millisecond, "no second RunCompleted and no job requested again after a restart")
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
	resp, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "empty", Wave: 1})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, resp.GetRun().GetState())
	require.Zero(t, resp.GetRun().GetTotal())
	done := e.stored(t, "patch.empty.run.completed")
	require.Len(t, done, 1)
	msg := done[0].Data.(*eventsv1.RunCompleted)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, msg.GetState())
	require.Zero(t, msg.GetTotal())
	require.Eventually(t, func() bool {
		got, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "empty", RunId: resp.GetRun().GetRunId()})
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
		}, codes.InvalidArgument, []string{"tenant", "wave"}, "wave: must be from 1 to 10, got 0"},
		{"StartRun with a wave above the tenant's limit", func() error {
			_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 4})
			return err
		}, codes.InvalidArgument, []string{"wave"}, "wave: must be from 1 to 3 (the tenant's wave limit), got 4"},
		{"StartRun of a wave the design does not define", func() error {
			_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 3})
			return err
		}, codes.FailedPrecondition, nil, "wave 3 of tenant acme is not defined in the service design"},
		{"StartRun for a tenant that is not in the design", func() error {
			_, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "nobody", Wave: 1})
			return err
		}, codes.NotFound, nil, "tenant nobody is not in the service design"},
		{"GetRun for a tenant that is not in the design", func() error {
			_, err := svc.client.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "nobody", RunId: "run-1"})
			return err
		}, codes.NotFound, nil, "tenant nobody is not in the service design"},
		{"ListRuns for a tenant that is not in the design", func() error {
			_, err := svc.client.ListRuns(ctx, &schedulerv1.ListRunsRequest{Tenant: "nobody"})
			return err
		}, codes.NotFound, nil, "tenant nobody is not in the service design"},
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
	list, err := svc.client.ListRuns(ctx, &schedulerv1.ListRunsRequest{Tenant: "empty"})
	require.NoError(t, err)
	require.Empty(t, list.GetRuns(), "a tenant without runs has none")
}

func TestNewChecksConfigAndDeps(t *testing.T) {
	_, err := scheduler.New(scheduler.Config{DesignReplicas: -1}, scheduler.Deps{})
	require.ErrorContains(t, err, "DesignReplicas -1: must be from 1 to 5")
	require.ErrorContains(t, err, "Deps.Fleet: required")
	require.ErrorContains(t, err, "Deps.Store: required")

	cloud := cloudtest.Start(t, cloudtest.Options{})
	svc, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Fleet: cloud.Fleet, Store: store.NewMemory()})
	require.NoError(t, err)
	require.Equal(t, "scheduler", svc.Name())
}

func TestARunInsideItsWindowStopsDispatchAtAFreezeThatStartsInIt(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	e.policy = nil
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	e.clock = func() time.Time { return *now.Load() }
	svc := e.start(t, store.NewMemory())
	// t0 is Monday 2026-11-23 15:48 UTC, the fourth Monday of the month: the window is
	// 15:00-18:00 UTC, the cutoff 30 minutes, and a freeze starts at 16:30.
	_, err := svc.design.PutWave(ctx, &designv1.PutWaveRequest{Tenant: "acme", Wave: 1, Definition: &typesv1.Wave{
		Schedule: &typesv1.Schedule{WeekOfMonth: 4, DayOfWeek: "MONDAY", StartTime: "15:00", EndTime: "18:00", TimeZone: "UTC"},
		Policy:   &typesv1.RolloutPolicy{Cutoff: "30m", MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Count{Count: 2}}},
	}})
	require.NoError(t, err)
	_, err = svc.design.PutFreeze(ctx, &designv1.PutFreezeRequest{Tenant: "acme", FreezeId: "release", Freeze: &typesv1.Freeze{
		Name: "release day", Start: timestamppb.New(time.Date(2026, 11, 23, 16, 30, 0, 0, time.UTC)), End: timestamppb.New(time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)),
	}})
	require.NoError(t, err)
	var run *schedulerv1.Run
	require.Eventually(t, func() bool {
		resp, err := svc.client.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 1})
		if err != nil {
			return false
		}
		run = resp.GetRun()
		return true
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, time.Date(2026, 11, 23, 16, 30, 0, 0, time.UTC), run.GetDispatchStopAt().AsTime())
	require.Equal(t, "freeze release", run.GetStopReason())
	require.EqualValues(t, 2, run.GetMaxInFlight())
	require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.job.requested")) == 2 }, 10*time.Second, 20*time.Millisecond,
		"two jobs at once")
	for _, ev := range e.stored(t, "patch.acme.job.requested") {
		job := ev.Data.(*eventsv1.JobRequested)
		require.Equal(t, "amazon-linux-2023", job.GetOsFamily())
		require.Equal(t, int64(2*time.Hour+12*time.Minute), job.GetPolicy().GetInstanceTimeout().AsDuration().Nanoseconds(),
			"no installation outlives the window (18:00)")
	}
	jobs := e.stored(t, "patch.acme.job.requested")
	first := jobs[0].Data.(*eventsv1.JobRequested)
	e.publish(t, "acme", jobs[0].Key, &eventsv1.InstallSucceeded{Tenant: "acme", RunId: run.GetRunId(), Wave: 1, InstanceId: first.GetInstanceId()})
	require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.job.requested")) == 3 }, 10*time.Second, 20*time.Millisecond,
		"an outcome frees a slot")

	// The freeze starts: dispatch stops by the clock, without an outcome.
	stop := time.Date(2026, 11, 23, 16, 30, 0, 0, time.UTC)
	now.Store(&stop)
	require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.run.dispatch_stopped")) == 1 }, 10*time.Second, 20*time.Millisecond)
	for _, ev := range e.stored(t, "patch.acme.job.requested")[1:] {
		job := ev.Data.(*eventsv1.JobRequested)
		e.publish(t, "acme", ev.Key, &eventsv1.InstallSucceeded{Tenant: "acme", RunId: run.GetRunId(), Wave: 1, InstanceId: job.GetInstanceId()})
	}
	require.Eventually(t, func() bool { return len(e.stored(t, "patch.acme.run.completed")) == 1 }, 10*time.Second, 20*time.Millisecond)
	done := e.stored(t, "patch.acme.run.completed")[0].Data.(*eventsv1.RunCompleted)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, done.GetState())
	require.Equal(t, []int32{10, 3, 7}, []int32{done.GetTotal(), done.GetSucceeded(), done.GetSkipped()})
	require.Len(t, e.stored(t, "patch.acme.job.requested"), 3, "no job after the freeze started")
}
