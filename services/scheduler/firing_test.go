package scheduler_test

import (
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// The tenant acme of newEnv: waves 1 and 2 on the second Tuesday + 1 and + 2 days, 02:00-06:00
// Berlin. In December 2026 (cycle "2026-12") the second Tuesday is the 8th, so wave 1's window
// is 9 December 01:00-05:00 UTC and wave 2's 10 December 01:00-05:00 UTC.
var (
	beforeCycle = time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	wave1Open   = time.Date(2026, 12, 9, 1, 30, 0, 0, time.UTC)
	wave1End    = time.Date(2026, 12, 9, 5, 0, 0, 0, time.UTC)
	wave2Open   = time.Date(2026, 12, 10, 1, 30, 0, 0, time.UTC)
	wave2End    = time.Date(2026, 12, 10, 5, 0, 0, 0, time.UTC)
)

const cycle = "2026-12"

// clock is an injected clock the test moves; nothing sleeps on real time for windows.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// replica is one scheduler with its firing loop off: the test fires it (Service.Fire) at the
// clock's now.
type replica struct {
	*running
	svc *scheduler.Service
	st  store.Store
}

func (e *env) startReplica(t *testing.T, st store.Store) *replica {
	t.Helper()
	svc, err := scheduler.New(scheduler.Config{FireInterval: -1}, scheduler.Deps{Fleet: e.cloud.Fleet, Store: st, Clock: e.clock,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, err)
	conn, stop := stagetest.RunGRPCComponent(t, e.nc, svc)
	r := &replica{running: &running{client: schedulerv1.NewSchedulerServiceClient(conn), design: designv1.NewDesignServiceClient(conn), stop: stop}, svc: svc, st: st}
	if !e.seeded {
		seedTenantWith(t, r.design, "acme", 2, e.policy)
		seedTenantWith(t, r.design, "empty", 1, e.policy)
		e.seeded = true
	}
	return r
}

// testLog writes a service's log to the test's.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fire fires the replica once, waiting until its read models have caught up.
func (r *replica) fire(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { w, _ := r.svc.View().Waves("acme"); return len(w) == 2 }, 10*time.Second, 10*time.Millisecond,
		"the replica's view has the design")
	require.Eventually(t, func() bool {
		err := r.svc.Fire(t.Context())
		if err != nil {
			t.Logf("fire: %v", err)
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

func firingEnv(t *testing.T, at time.Time) (*env, *clock) {
	t.Helper()
	e := newEnv(t)
	c := &clock{t: at}
	e.clock = c.now
	return e, c
}

// approve publishes the tenant's approval of a baseline as the catalog does, and waits until
// the replicas' read models have it.
func (e *env) approve(t *testing.T, tenant, baseline string, replicas ...*replica) {
	t.Helper()
	e.publish(t, tenant, baseline+"/1", &eventsv1.BaselineApproved{Tenant: tenant, BaselineId: baseline, ApprovedBy: "admin@" + tenant,
		OsFamily: "amazon-linux-2023", Version: 1, ApprovedAt: timestamppb.New(beforeCycle)})
	for _, r := range replicas {
		require.Eventually(t, func() bool {
			v, ok, err := r.st.Get(t.Context(), "scheduler:approval:"+tenant+":"+baseline)
			return err == nil && ok && string(v) == "approved"
		}, 10*time.Second, 10*time.Millisecond, "the approval reaches the replica's read model")
	}
}

// counter counts the messages the services publish on subject (core subscription: it sees
// duplicates the stream drops).
func (e *env) counter(t *testing.T, subject string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	_, err := e.nc.Subscribe(subject, func(*nats.Msg) { n.Add(1) })
	require.NoError(t, err)
	require.NoError(t, e.nc.Flush())
	return &n
}

func (e *env) waitStored(t *testing.T, subject string, n int) []*events.Event {
	t.Helper()
	var evs []*events.Event
	require.Eventually(t, func() bool { evs = e.stored(t, subject); return len(evs) >= n }, 10*time.Second, 20*time.Millisecond,
		"%d events on %s", n, subject)
	require.Len(t, evs, n, subject)
	return evs
}

func getRun(t *testing.T, r *replica, tenant, runID string, want typesv1.RunState) *schedulerv1.Run {
	t.Helper()
	var run *schedulerv1.Run
	require.Eventually(t, func() bool {
		resp, err := r.client.GetRun(t.Context(), &schedulerv1.GetRunRequest{Tenant: tenant, RunId: runID})
		if err != nil {
			return false
		}
		run = resp.GetRun()
		return run.GetState() == want && run.GetOccurrenceKey() != ""
	}, 10*time.Second, 20*time.Millisecond, "run %s of an occurrence becomes %s (is %s)", runID, want, run.GetState())
	return run
}

func TestAWaveFiresByItselfOnceAcrossReplicasAndRestarts(t *testing.T) {
	e, clk := firingEnv(t, beforeCycle)
	started := e.counter(t, "patch.acme.run.started")
	a := e.startReplica(t, store.NewMemory())
	b := e.startReplica(t, store.NewMemory())
	e.approve(t, "acme", "b1", a, b)
	a.fire(t)
	b.fire(t)
	require.Zero(t, e.flushed(t, started), "nothing fires before the window opens")

	// The window opens: both replicas fire at once.
	clk.set(wave1Open)
	var wg sync.WaitGroup
	replicas := []*replica{a, b, a, b}
	errs := make([]error, len(replicas))
	for i, r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.svc.Fire(t.Context())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err, "both replicas are ready: they fired before")
	}
	runID := domain.OccurrenceRunID("acme", 1, cycle)
	evs := e.waitStored(t, "patch.acme.run.started", 1)
	rs := evs[0].Data.(*eventsv1.RunStarted)
	require.Equal(t, runID, rs.GetRunId(), "the run id derives from tenant, wave and occurrence")
	require.Equal(t, int32(1), rs.GetWave())
	require.Equal(t, "b1", rs.GetBaselineId(), "the cycle's pin")
	require.Equal(t, cycle, rs.GetFiring().GetOccurrenceKey())
	require.Equal(t, cycle, rs.GetFiring().GetCycle())
	require.Equal(t, domain.TriggerSchedule, rs.GetFiring().GetTrigger())
	require.Equal(t, time.Date(2026, 12, 9, 1, 0, 0, 0, time.UTC), rs.GetFiring().GetWindowStart().AsTime())
	require.Equal(t, wave1End, rs.GetFiring().GetWindowEnd().AsTime())
	require.Len(t, e.members(t, "acme", runID), 10)
	require.EqualValues(t, 1, e.flushed(t, started), "one replica won the claim and published one RunStarted")

	pinned := e.waitStored(t, "patch.acme.cycle.pinned", 1)[0].Data.(*eventsv1.CyclePinned)
	require.Equal(t, cycle, pinned.GetCycle())
	require.Equal(t, runID, pinned.GetRunId())
	require.Len(t, pinned.GetPins(), 1)
	require.Equal(t, "b1", pinned.GetPins()[0].GetBaselineId())

	run := getRun(t, a, "acme", runID, typesv1.RunState_RUN_STATE_RUNNING)
	require.Equal(t, cycle, run.GetOccurrenceKey())
	require.Equal(t, cycle, run.GetCycle())
	require.Equal(t, "schedule", run.GetTrigger())

	// Firing again, and a new replica with an empty store after a restart, start nothing more.
	clk.set(wave1Open.Add(time.Hour))
	a.fire(t)
	b.fire(t)
	a.stop()
	c := e.startReplica(t, store.NewMemory())
	c.fire(t)
	require.EqualValues(t, 1, e.flushed(t, started))
	require.Len(t, e.stored(t, "patch.acme.run.started"), 1)
}

func TestASchedulerDownAtTheStartStartsLateOrRecordsTheMiss(t *testing.T) {
	e, clk := firingEnv(t, beforeCycle)
	first := e.startReplica(t, store.NewMemory())
	e.approve(t, "acme", "b1", first)
	first.fire(t)
	first.stop() // down before wave 1's window opens

	// Back up late, while wave 1's window is still open: it starts.
	clk.set(wave1End.Add(-30 * time.Minute))
	second := e.startReplica(t, store.NewMemory())
	second.fire(t)
	rs := e.waitStored(t, "patch.acme.run.started", 1)[0].Data.(*eventsv1.RunStarted)
	require.Equal(t, domain.OccurrenceRunID("acme", 1, cycle), rs.GetRunId())
	second.stop()

	// Down for the whole of wave 2's window: the next start records it missed, never starts it.
	clk.set(wave2End.Add(time.Minute))
	third := e.startReplica(t, store.NewMemory())
	third.fire(t)
	third.fire(t)
	missed := e.waitStored(t, "patch.acme.run.missed", 1)[0].Data.(*eventsv1.RunMissed)
	wave2 := domain.OccurrenceRunID("acme", 2, cycle)
	require.Equal(t, wave2, missed.GetRunId())
	require.Equal(t, domain.CauseDown, missed.GetCause())
	require.Contains(t, missed.GetReason(), "no scheduler fired the occurrence")
	require.Len(t, e.stored(t, "patch.acme.run.started"), 1, "a missed occurrence is never started outside its window")
	run := getRun(t, third, "acme", wave2, typesv1.RunState_RUN_STATE_MISSED)
	require.Equal(t, cycle, run.GetOccurrenceKey())

	list, err := third.client.ListRuns(t.Context(), &schedulerv1.ListRunsRequest{Tenant: "acme"})
	require.NoError(t, err)
	require.Len(t, list.GetRuns(), 2)
	require.Equal(t, wave2, list.GetRuns()[0].GetRunId(), "newest first")
	require.Equal(t, typesv1.RunState_RUN_STATE_MISSED, list.GetRuns()[0].GetState())
}

func TestARunWaitsForApprovalAndStartsWhenApproved(t *testing.T) {
	e, clk := firingEnv(t, wave1Open)
	r := e.startReplica(t, store.NewMemory())
	r.fire(t)
	runID := domain.OccurrenceRunID("acme", 1, cycle)
	waiting := e.waitStored(t, "patch.acme.run.waiting_approval", 1)[0].Data.(*eventsv1.RunWaitingApproval)
	require.Equal(t, runID, waiting.GetRunId())
	require.Equal(t, []string{"b1"}, waiting.GetUnapprovedBaselineIds())
	run := getRun(t, r, "acme", runID, typesv1.RunState_RUN_STATE_WAITING_APPROVAL)
	require.Contains(t, run.GetReason(), "has not approved the cycle's baseline b1")
	r.fire(t)
	require.Len(t, e.stored(t, "patch.acme.run.waiting_approval"), 1, "waiting is announced once")
	require.Empty(t, e.stored(t, "patch.acme.run.started"))

	// A rejection keeps it waiting; the approval starts it while the window is open.
	e.publish(t, "acme", "b1/0", &eventsv1.BaselineRejected{Tenant: "acme", BaselineId: "b1", RejectedBy: "admin@acme", Reason: "not yet"})
	r.fire(t)
	require.Empty(t, e.stored(t, "patch.acme.run.started"))
	clk.set(wave1Open.Add(time.Hour))
	e.approve(t, "acme", "b1")
	require.Eventually(t, func() bool {
		r.fire(t)
		return len(e.stored(t, "patch.acme.run.started")) == 1
	}, 10*time.Second, 50*time.Millisecond)
	getRun(t, r, "acme", runID, typesv1.RunState_RUN_STATE_RUNNING)
}

func TestAnApprovalAfterTheWindowClosedLeavesTheRunMissed(t *testing.T) {
	e, clk := firingEnv(t, wave1Open)
	r := e.startReplica(t, store.NewMemory())
	r.fire(t)
	e.waitStored(t, "patch.acme.run.waiting_approval", 1)
	clk.set(wave1End)
	e.approve(t, "acme", "b1", r)
	r.fire(t)
	missed := e.waitStored(t, "patch.acme.run.missed", 1)[0].Data.(*eventsv1.RunMissed)
	require.Equal(t, domain.CauseApproval, missed.GetCause())
	require.Empty(t, e.stored(t, "patch.acme.run.started"))
}

func TestFrozenPausedSkippedAndDeferredOccurrences(t *testing.T) {
	t.Run("a freeze skips wave 1, a paused wave 2 is skipped", func(t *testing.T) {
		e, clk := firingEnv(t, beforeCycle)
		r := e.startReplica(t, store.NewMemory())
		e.approve(t, "acme", "b1", r)
		ctx := t.Context()
		_, err := r.design.CreateFreeze(ctx, &designv1.CreateFreezeRequest{Tenant: "acme", Freeze: &typesv1.Freeze{
			Id: "year-end", Start: timestamppb.New(time.Date(2026, 12, 9, 0, 0, 0, 0, time.UTC)),
			End: timestamppb.New(time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)), Policy: typesv1.FreezePolicy_FREEZE_POLICY_SKIP,
		}})
		require.NoError(t, err)
		w2, err := r.design.GetWave(ctx, &designv1.GetWaveRequest{Tenant: "acme", Wave: 2})
		require.NoError(t, err)
		w2.GetWave().Paused = true
		_, err = r.design.PutWave(ctx, &designv1.PutWaveRequest{Tenant: "acme", Wave: 2, Definition: w2.GetWave()})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			w, _ := r.svc.View().Wave("acme", 2)
			fs, _ := r.svc.View().Freezes("acme")
			return w.GetPaused() && len(fs) == 1
		}, 10*time.Second, 10*time.Millisecond, "the view follows the design's writes")
		r.fire(t)

		clk.set(wave1Open)
		r.fire(t)
		skipped := e.waitStored(t, "patch.acme.run.skipped", 1)[0].Data.(*eventsv1.RunSkipped)
		require.Equal(t, domain.OccurrenceRunID("acme", 1, cycle), skipped.GetRunId())
		require.Equal(t, typesv1.RunState_RUN_STATE_SKIPPED_FROZEN, skipped.GetState())
		require.Equal(t, domain.CauseFrozen, skipped.GetCause())
		require.Equal(t, []string{"year-end"}, skipped.GetFreezes())
		getRun(t, r, "acme", skipped.GetRunId(), typesv1.RunState_RUN_STATE_SKIPPED_FROZEN)

		clk.set(wave2Open)
		r.fire(t)
		evs := e.waitStored(t, "patch.acme.run.skipped", 2)
		paused := evs[1].Data.(*eventsv1.RunSkipped)
		require.Equal(t, domain.OccurrenceRunID("acme", 2, cycle), paused.GetRunId())
		require.Equal(t, typesv1.RunState_RUN_STATE_SKIPPED, paused.GetState())
		require.Equal(t, domain.CausePaused, paused.GetCause())
		r.fire(t)
		require.Len(t, e.stored(t, "patch.acme.run.skipped"), 2, "each skip is recorded once")
		require.Empty(t, e.stored(t, "patch.acme.run.started"))
	})

	t.Run("a defer freeze moves wave 1 to a later window, where it fires", func(t *testing.T) {
		e, clk := firingEnv(t, beforeCycle)
		r := e.startReplica(t, store.NewMemory())
		e.approve(t, "acme", "b1", r)
		_, err := r.design.CreateFreeze(t.Context(), &designv1.CreateFreezeRequest{Tenant: "acme", Freeze: &typesv1.Freeze{
			Id: "release-night", Start: timestamppb.New(time.Date(2026, 12, 9, 0, 0, 0, 0, time.UTC)),
			End: timestamppb.New(time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)), Policy: typesv1.FreezePolicy_FREEZE_POLICY_DEFER, DeferDays: 3,
		}})
		require.NoError(t, err)
		require.Eventually(t, func() bool { fs, _ := r.svc.View().Freezes("acme"); return len(fs) == 1 }, 10*time.Second, 10*time.Millisecond)
		r.fire(t)
		clk.set(wave1Open)
		r.fire(t)
		deferred := e.waitStored(t, "patch.acme.run.deferred", 1)[0].Data.(*eventsv1.RunDeferred)
		runID := domain.OccurrenceRunID("acme", 1, cycle)
		require.Equal(t, runID, deferred.GetRunId())
		require.Equal(t, time.Date(2026, 12, 10, 1, 0, 0, 0, time.UTC), deferred.GetFiring().GetWindowStart().AsTime(), "the next free day")
		require.Equal(t, time.Date(2026, 12, 9, 1, 0, 0, 0, time.UTC), deferred.GetOriginalStart().AsTime())
		getRun(t, r, "acme", runID, typesv1.RunState_RUN_STATE_SCHEDULED)
		require.Empty(t, e.stored(t, "patch.acme.run.started"))

		clk.set(time.Date(2026, 12, 10, 1, 5, 0, 0, time.UTC))
		r.fire(t)
		rs := e.waitStored(t, "patch.acme.run.started", 1)[0].Data.(*eventsv1.RunStarted)
		require.Equal(t, runID, rs.GetRunId(), "the deferred run keeps its id")
		require.Equal(t, time.Date(2026, 12, 10, 5, 0, 0, 0, time.UTC), rs.GetFiring().GetWindowEnd().AsTime())
	})
}

// jobsOf waits until the run controller released n jobs of a run and returns them.
func (e *env) jobsOf(t *testing.T, runID string, n int) []*eventsv1.JobRequested {
	t.Helper()
	var jobs []*eventsv1.JobRequested
	require.Eventually(t, func() bool {
		jobs = jobs[:0]
		for _, ev := range e.stored(t, "patch.acme.job.requested") {
			if j := ev.Data.(*eventsv1.JobRequested); j.GetRunId() == runID {
				jobs = append(jobs, j)
			}
		}
		return len(jobs) == n
	}, 10*time.Second, 20*time.Millisecond, "%d jobs of %s released", n, runID)
	return jobs
}

// finishRun feeds outcomes for every job of a run: failures instances fail, the rest succeed.
func (e *env) finishRun(t *testing.T, runID string, wave int32, failures int) {
	t.Helper()
	for i, j := range e.jobsOf(t, runID, 10) {
		key := runID + "/" + j.GetInstanceId()
		e.publish(t, "acme", key, &eventsv1.SnapshotCreated{Tenant: "acme", RunId: runID, Wave: wave, InstanceId: j.GetInstanceId(), SnapshotId: "snap-" + j.GetInstanceId()})
		if i < failures {
			e.publish(t, "acme", key, &eventsv1.InstallFailed{Tenant: "acme", RunId: runID, Wave: wave, InstanceId: j.GetInstanceId(), Reason: "exit status 1"})
		} else {
			e.publish(t, "acme", key, &eventsv1.InstallSucceeded{Tenant: "acme", RunId: runID, Wave: wave, InstanceId: j.GetInstanceId()})
		}
	}
}

func TestTheWaveGate(t *testing.T) {
	t.Run("wave 2 is held until wave 1 completes, then held below the threshold until released", func(t *testing.T) {
		e, clk := firingEnv(t, wave1Open)
		r := e.startReplica(t, store.NewMemory())
		e.approve(t, "acme", "b1", r)
		r.fire(t)
		wave1 := domain.OccurrenceRunID("acme", 1, cycle)
		wave2 := domain.OccurrenceRunID("acme", 2, cycle)
		e.waitStored(t, "patch.acme.run.started", 1)
		e.jobsOf(t, wave1, 10) // all released inside wave 1's window

		// Wave 2's window opens while wave 1's run is still running: held, not complete.
		clk.set(wave2Open)
		r.fire(t)
		held := e.waitStored(t, "patch.acme.run.held", 1)[0].Data.(*eventsv1.RunHeld)
		require.Equal(t, wave2, held.GetRunId())
		require.Equal(t, int32(1), held.GetGateWave())
		require.Equal(t, wave1, held.GetGateRunId())
		require.False(t, held.GetGateComplete())
		require.Contains(t, held.GetReason(), "has not completed yet")

		// Wave 1 completes with 2 of 10 failed: 80%, below the default threshold of 95%.
		e.finishRun(t, wave1, 1, 2)
		getRun(t, r, "acme", wave1, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS)
		r.fire(t)
		evs := e.waitStored(t, "patch.acme.run.held", 2)
		held = evs[1].Data.(*eventsv1.RunHeld)
		require.True(t, held.GetGateComplete())
		require.Equal(t, int32(80), held.GetSuccessPercent())
		require.Equal(t, int32(95), held.GetThresholdPercent())
		require.Contains(t, held.GetReason(), "succeeded on 80% of its instances (8 of 10), below its threshold of 95%")
		require.Eventually(t, func() bool {
			resp, err := r.client.GetRun(t.Context(), &schedulerv1.GetRunRequest{Tenant: "acme", RunId: wave2})
			return err == nil && resp.GetRun().GetState() == typesv1.RunState_RUN_STATE_HELD &&
				strings.Contains(resp.GetRun().GetReason(), "below its threshold")
		}, 10*time.Second, 20*time.Millisecond, "GetRun shows the hold and why")
		r.fire(t)
		require.Len(t, e.stored(t, "patch.acme.run.started"), 1, "a held run does not start")
		require.Len(t, e.stored(t, "patch.acme.run.held"), 2, "the same hold is announced once")

		// The operator's release needs a reason, and starts the run.
		ctx := t.Context()
		_, err := r.client.ReleaseRun(ctx, &schedulerv1.ReleaseRunRequest{Tenant: "acme", RunId: wave2})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.ErrorContains(t, err, "reason")
		resp, err := r.client.ReleaseRun(ctx, &schedulerv1.ReleaseRunRequest{Tenant: "acme", RunId: wave2, Reason: "wave 1's failures are known flaky hosts"})
		require.NoError(t, err)
		require.Equal(t, typesv1.RunState_RUN_STATE_RUNNING, resp.GetRun().GetState())
		released := e.waitStored(t, "patch.acme.run.released", 1)[0].Data.(*eventsv1.RunReleased)
		require.Equal(t, stagetest.Operator.Subject, released.GetActor(), "the actor is the caller's subject")
		require.Equal(t, "wave 1's failures are known flaky hosts", released.GetReason())
		evs = e.waitStored(t, "patch.acme.run.started", 2)
		rs := evs[1].Data.(*eventsv1.RunStarted)
		require.Equal(t, wave2, rs.GetRunId())
		require.Equal(t, "b1", rs.GetBaselineId(), "wave 2 installs the cycle's pin")
		require.Equal(t, stagetest.Operator.Subject, rs.GetFiring().GetActor())

		_, err = r.client.ReleaseRun(ctx, &schedulerv1.ReleaseRunRequest{Tenant: "acme", RunId: wave2, Reason: "again"})
		require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
		require.ErrorContains(t, err, "is RUNNING")
		_, err = r.client.ReleaseRun(ctx, &schedulerv1.ReleaseRunRequest{Tenant: "acme", RunId: "run-unknown", Reason: "x"})
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	})

	t.Run("wave 2 starts by itself when wave 1 met the threshold", func(t *testing.T) {
		e, clk := firingEnv(t, wave1Open)
		r := e.startReplica(t, store.NewMemory())
		e.approve(t, "acme", "b1", r)
		r.fire(t)
		wave1 := domain.OccurrenceRunID("acme", 1, cycle)
		e.waitStored(t, "patch.acme.run.started", 1)
		e.finishRun(t, wave1, 1, 0)
		getRun(t, r, "acme", wave1, typesv1.RunState_RUN_STATE_COMPLETED)
		// A newer baseline published between the waves is not the cycle's.
		e.publish(t, "", "b2", &eventsv1.BaselinePublished{BaselineId: "b2", OsFamily: "amazon-linux-2023", Version: 2,
			PublishedAt: timestamppb.New(wave1Open), Patches: []*typesv1.Patch{{Id: "ALAS-3"}}})
		e.approve(t, "acme", "b2", r)
		clk.set(wave2Open)
		r.fire(t)
		evs := e.waitStored(t, "patch.acme.run.started", 2)
		rs := evs[1].Data.(*eventsv1.RunStarted)
		require.Equal(t, domain.OccurrenceRunID("acme", 2, cycle), rs.GetRunId())
		require.Equal(t, "b1", rs.GetBaselineId(), "every wave of the cycle installs the cycle's pin")
		require.Len(t, rs.GetPins(), 1)
		require.Equal(t, "b1", rs.GetPins()[0].GetBaselineId())
		require.Empty(t, e.stored(t, "patch.acme.run.held"))
	})

	t.Run("an operator skips a held run", func(t *testing.T) {
		e, clk := firingEnv(t, wave1Open)
		r := e.startReplica(t, store.NewMemory())
		e.approve(t, "acme", "b1", r)
		r.fire(t)
		e.waitStored(t, "patch.acme.run.started", 1)
		clk.set(wave2Open)
		r.fire(t)
		wave2 := domain.OccurrenceRunID("acme", 2, cycle)
		e.waitStored(t, "patch.acme.run.held", 1)
		getRun(t, r, "acme", wave2, typesv1.RunState_RUN_STATE_HELD)
		resp, err := r.client.SkipRun(t.Context(), &schedulerv1.SkipRunRequest{Tenant: "acme", RunId: wave2, Reason: "skip this month"})
		require.NoError(t, err)
		require.Equal(t, typesv1.RunState_RUN_STATE_SKIPPED, resp.GetRun().GetState())
		skipped := e.waitStored(t, "patch.acme.run.skipped", 1)[0].Data.(*eventsv1.RunSkipped)
		require.Equal(t, domain.CauseOperator, skipped.GetCause())
		_, err = r.client.SkipRun(t.Context(), &schedulerv1.SkipRunRequest{Tenant: "acme", RunId: wave2, Reason: "again"})
		require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
		require.ErrorContains(t, err, "is SKIPPED")
	})
}

func TestPatchNowStartsARunWithTheCyclesPin(t *testing.T) {
	ctx := t.Context()
	e, _ := firingEnv(t, beforeCycle)
	r := e.startReplica(t, store.NewMemory())
	r.fire(t)

	_, err := r.client.PatchNow(ctx, &schedulerv1.PatchNowRequest{Tenant: "acme", Wave: 2})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "reason")
	_, err = r.client.PatchNow(ctx, &schedulerv1.PatchNowRequest{Tenant: "acme", Wave: 2, Reason: "CVE-2026-0001"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "has not approved the baseline of cycle 2026-12: b1")

	e.approve(t, "acme", "b1", r)
	// A newer baseline published after the cycle was pinned is not the cycle's.
	e.publish(t, "", "b2", &eventsv1.BaselinePublished{BaselineId: "b2", OsFamily: "amazon-linux-2023", Version: 2, PublishedAt: timestamppb.New(beforeCycle),
		Patches: []*typesv1.Patch{{Id: "ALAS-3"}}})
	var resp *schedulerv1.PatchNowResponse
	require.Eventually(t, func() bool {
		resp, err = r.client.PatchNow(ctx, &schedulerv1.PatchNowRequest{Tenant: "acme", Wave: 2, Reason: "CVE-2026-0001", RequestId: "p1"})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, typesv1.RunState_RUN_STATE_RUNNING, resp.GetRun().GetState())
	require.Equal(t, "b1", resp.GetRun().GetBaselineId(), "pinned when the first patch-now request failed on approval")
	require.Equal(t, cycle, resp.GetRun().GetCycle())
	require.Equal(t, "patch_now", resp.GetRun().GetTrigger())
	rs := e.waitStored(t, "patch.acme.run.started", 1)[0].Data.(*eventsv1.RunStarted)
	require.Equal(t, domain.TriggerPatchNow, rs.GetFiring().GetTrigger())
	require.Equal(t, stagetest.Operator.Subject, rs.GetFiring().GetActor())
	require.Equal(t, "CVE-2026-0001", rs.GetFiring().GetReason())

	again, err := r.client.PatchNow(ctx, &schedulerv1.PatchNowRequest{Tenant: "acme", Wave: 2, Reason: "CVE-2026-0001", RequestId: "p1"})
	require.NoError(t, err)
	require.Equal(t, resp.GetRun().GetRunId(), again.GetRun().GetRunId(), "a retried request starts one run")
}

func TestSkipNextIsRecordedAsSkippedOnRequest(t *testing.T) {
	e, clk := firingEnv(t, beforeCycle)
	r := e.startReplica(t, store.NewMemory())
	e.approve(t, "acme", "b1", r)
	_, err := r.design.SkipNextOccurrence(t.Context(), &designv1.SkipNextOccurrenceRequest{Tenant: "acme", Wave: 1, Reason: "app release"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { w, _ := r.svc.View().Wave("acme", 1); return len(w.GetSkipKeys()) == 1 }, 10*time.Second, 10*time.Millisecond)
	r.fire(t)
	clk.set(wave1Open)
	r.fire(t)
	skipped := e.waitStored(t, "patch.acme.run.skipped", 1)[0].Data.(*eventsv1.RunSkipped)
	require.Equal(t, typesv1.RunState_RUN_STATE_SKIPPED, skipped.GetState())
	require.Equal(t, domain.CauseRequested, skipped.GetCause())
	require.Empty(t, e.stored(t, "patch.acme.run.started"))
}

// TestAnEventLostBetweenTheClaimAndItsPublishIsPublished leaves in the firing bucket what a
// replica killed between writing a record and publishing its event leaves (the record with its
// event pending): the next firing publishes the event, once.
func TestAnEventLostBetweenTheClaimAndItsPublishIsPublished(t *testing.T) {
	e, clk := firingEnv(t, beforeCycle)
	r := e.startReplica(t, store.NewMemory())
	r.fire(t)
	kv, err := e.js.KeyValue(t.Context(), "patchwave-firing")
	require.NoError(t, err)
	runID := domain.OccurrenceRunID("acme", 1, cycle)
	rec := domain.Occurrence{Tenant: "acme", Wave: 1, Key: cycle, RunID: runID, State: typesv1.RunState_RUN_STATE_SKIPPED_FROZEN,
		Cause: domain.CauseFrozen, Reason: "frozen by year-end", Start: wave1Open, End: wave1End, OriginalStart: wave1Open,
		Trigger: domain.TriggerSchedule, Pending: true, UpdatedAt: wave1Open}
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	rev, err := kv.Create(t.Context(), "occ.acme.1."+cycle, data)
	require.NoError(t, err)

	clk.set(wave1Open)
	r.fire(t)
	r.fire(t)
	evs := e.waitStored(t, "patch.acme.run.skipped", 1)
	require.Equal(t, "patch.acme.run.skipped/"+runID+"/"+strconv.FormatUint(rev, 10), evs[0].ID, "the id of the record's revision")
	require.Equal(t, "frozen by year-end", evs[0].Data.(*eventsv1.RunSkipped).GetReason())
	entry, err := kv.Get(t.Context(), "occ.acme.1."+cycle)
	require.NoError(t, err)
	var got domain.Occurrence
	require.NoError(t, json.Unmarshal(entry.Value(), &got))
	require.False(t, got.Pending, "the flag is cleared once the event is stored")
	require.Empty(t, e.stored(t, "patch.acme.run.started"), "the record's decision stands")
	getRun(t, r, "acme", runID, typesv1.RunState_RUN_STATE_SKIPPED_FROZEN)
}

// TestAPinWhoseEventWasLostIsAnnounced leaves a cycle's pin without its CyclePinned event, as
// a replica killed between the two leaves it: the next run of the cycle installs that pin and
// the event is published, once.
func TestAPinWhoseEventWasLostIsAnnounced(t *testing.T) {
	e, clk := firingEnv(t, beforeCycle)
	r := e.startReplica(t, store.NewMemory())
	e.approve(t, "acme", "b1", r)
	r.fire(t)
	kv, err := e.js.KeyValue(t.Context(), "patchwave-firing")
	require.NoError(t, err)
	pin := domain.CyclePin{Tenant: "acme", Cycle: cycle, RunID: "run-crashed", PinnedAt: beforeCycle,
		Pins: []domain.Pin{{OSFamily: "amazon-linux-2023", BaselineID: "b1", Version: 1, PatchIDs: []string{"ALAS-1", "ALAS-2"}}}}
	data, err := json.Marshal(pin)
	require.NoError(t, err)
	_, err = kv.Create(t.Context(), "cycle.acme."+cycle, data)
	require.NoError(t, err)

	clk.set(wave1Open)
	r.fire(t)
	r.fire(t)
	rs := e.waitStored(t, "patch.acme.run.started", 1)[0].Data.(*eventsv1.RunStarted)
	require.Equal(t, "b1", rs.GetBaselineId())
	pinned := e.waitStored(t, "patch.acme.cycle.pinned", 1)[0].Data.(*eventsv1.CyclePinned)
	require.Equal(t, "run-crashed", pinned.GetRunId(), "the stored pin's event, not a new pin")
	clk.set(wave2Open)
	r.fire(t)
	require.Len(t, e.stored(t, "patch.acme.cycle.pinned"), 1, "announced once")
}
