package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/scheduler/internal/adapters"
	"github.com/patchwave/patchwave/services/scheduler/internal/app"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

var t0 = time.Date(2026, 11, 23, 15, 48, 0, 0, time.UTC)

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	evs []*events.Event
}

func (r *recorder) Publish(_ context.Context, evs ...*events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, evs...)
	return nil
}

func (r *recorder) take() []*events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

type fixture struct {
	app    *app.Application
	pub    *recorder
	cloud  *cloudtest.Env
	seq    uint64
	design *staticDesign
	now    atomic.Pointer[time.Time]
	st     store.Store
}

// at sets the fixture's clock.
func (f *fixture) at(t time.Time) { f.now.Store(&t) }

// policy is the job policy the fixture's scheduler gives a run whose wave has no rollout
// policy.
var policy = &typesv1.JobPolicy{RebootPolicy: typesv1.RebootPolicy_REBOOT_POLICY_NEVER, AutoRollback: true}

// wave2Policy is the rollout policy of acme's wave 2 in the fixture's design.
var wave2Policy = &typesv1.RolloutPolicy{RebootPolicy: typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS, InstanceTimeout: "45m"}

// account is tenant acme's account in the emulator with instances over waves.
func account(instances, waves int) cloudsim.AccountConfig {
	a := cloudtest.DefaultAccount()
	a.Instances, a.Waves = instances, waves
	a.OSMix = map[string]float64{"amazon-linux-2023": 1}
	return a
}

// newFixture is the application on an emulated account of acme without instances.
func newFixture(t testing.TB, st store.Store) *fixture { return newFixtureWith(t, st, account(0, 0)) }

// newFixtureWith is the application on the emulated account acc.
func newFixtureWith(t testing.TB, st store.Store, acc cloudsim.AccountConfig) *fixture {
	t.Helper()
	cloud := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{acc}})
	f := &fixture{cloud: cloud, pub: &recorder{}, st: st, design: &staticDesign{
		tenants:  map[string][2]int32{"acme": {3, 2}, "globex": {3, 1}},
		policies: map[int32]*typesv1.RolloutPolicy{2: wave2Policy},
	}}
	f.at(t0)
	f.app = app.New(app.Config{Policy: policy}, app.Deps{
		Fleet: cloud.Fleet, Design: f.design, Repo: adapters.New(st),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: func() time.Time { return *f.now.Load() },
	})
	f.app.Attach(f.pub)
	return f
}

// staticDesign is a fixed table of tenants (wave limit, highest defined wave) with the
// default tag key, acme's rollout policies by wave and the window open now, standing in for
// the service design (whose KV is covered by the scheduler's integration tests).
type staticDesign struct {
	tenants  map[string][2]int32
	policies map[int32]*typesv1.RolloutPolicy
	window   *domain.Window
}

func (d *staticDesign) RunScope(ctx context.Context, tenant string, wave int32) (string, error) {
	if err := d.RequireTenant(ctx, tenant); err != nil {
		return "", err
	}
	if limit := d.tenants[tenant][0]; wave > limit {
		return "", fmt.Errorf("%w: wave: must be from 1 to %d (the tenant's wave limit), got %d", apierr.ErrInvalidArgument, limit, wave)
	}
	if wave > d.tenants[tenant][1] {
		return "", fmt.Errorf("%w: wave %d is not defined", apierr.ErrFailedPrecondition, wave)
	}
	return "PatchWave", nil
}

func (d *staticDesign) WavePolicy(ctx context.Context, tenant string, wave int32) (*typesv1.RolloutPolicy, error) {
	if err := d.RequireTenant(ctx, tenant); err != nil {
		return nil, err
	}
	if tenant == "acme" {
		return d.policies[wave], nil
	}
	return nil, nil
}

func (d *staticDesign) Window(context.Context, string, int32, time.Time) (*domain.Window, error) {
	return d.window, nil
}

func (d *staticDesign) RequireTenant(_ context.Context, tenant string) error {
	if _, ok := d.tenants[tenant]; !ok {
		return fmt.Errorf("%w: tenant %s is not in the service design", apierr.ErrNotFound, tenant)
	}
	return nil
}

// ready publishes a baseline and catches the projections up, as the bus would at start.
func (f *fixture) ready(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	f.apply(t, f.app.ApplyBaseline, "", "b1", &eventsv1.BaselinePublished{
		BaselineId: "b1", OsFamily: "amazon-linux-2023", Version: 1, PublishedAt: timestamppb.New(t0),
		Patches: []*typesv1.Patch{{Id: "p1"}, {Id: "p2"}},
	}, false)
	require.NoError(t, f.app.BaselinesCaughtUp(ctx))
	require.NoError(t, f.app.RunsCaughtUp(ctx))
}

// apply feeds one event to a projection with the next stream sequence.
func (f *fixture) apply(t *testing.T, fn func(context.Context, *events.Event, bool) error, tenant, key string, msg proto.Message, live bool) {
	t.Helper()
	ev, err := events.New(tenant, key, msg)
	require.NoError(t, err)
	f.seq++
	ev.Sequence = f.seq
	require.NoError(t, fn(t.Context(), ev, live))
}

func payloads[T proto.Message](evs []*events.Event) []T {
	var out []T
	for _, ev := range evs {
		if m, ok := ev.Data.(T); ok {
			out = append(out, m)
		}
	}
	return out
}

// waveIDs returns the sorted ids of acme's instances in wave.
func (f *fixture) waveIDs(t *testing.T, wave string) []string {
	var ids []string
	for _, in := range f.cloud.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: wave}) {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}

// feed applies what the application published to the runs projection, as the stream would.
func (f *fixture) feed(t *testing.T, live bool) []*events.Event {
	t.Helper()
	evs := f.pub.take()
	for _, ev := range evs {
		f.seq++
		ev.Sequence = f.seq
		require.NoError(t, f.app.ApplyRun(t.Context(), ev, live))
	}
	return evs
}

// step runs the controller once and feeds what it published back to the projection.
func (f *fixture) step(t *testing.T) []*events.Event {
	t.Helper()
	f.app.StepOpenRuns(t.Context())
	return f.feed(t, true)
}

// end applies one job's outcome: "ok", "fail", "snapfail" or "timeout".
func (f *fixture) end(t *testing.T, runID, id, how string) {
	t.Helper()
	var msg proto.Message
	switch how {
	case "ok":
		msg = &eventsv1.InstallSucceeded{Tenant: "acme", RunId: runID, InstanceId: id}
	case "fail":
		msg = &eventsv1.InstallFailed{Tenant: "acme", RunId: runID, InstanceId: id, JobState: typesv1.JobState_JOB_STATE_FAILED}
	case "timeout":
		msg = &eventsv1.InstallFailed{Tenant: "acme", RunId: runID, InstanceId: id, JobState: typesv1.JobState_JOB_STATE_TIMED_OUT}
	case "snapfail":
		msg = &eventsv1.SnapshotFailed{Tenant: "acme", RunId: runID, InstanceId: id}
	}
	if how != "snapfail" {
		f.apply(t, f.app.ApplyRun, "acme", runID+"/"+id, &eventsv1.SnapshotCreated{Tenant: "acme", RunId: runID, InstanceId: id}, true)
	}
	f.apply(t, f.app.ApplyRun, "acme", runID+"/"+id, msg, true)
}

func jobIDs(evs []*events.Event) []string {
	var ids []string
	for _, j := range payloads[*eventsv1.JobRequested](evs) {
		ids = append(ids, j.GetInstanceId())
	}
	return ids
}

func TestStartRun(t *testing.T) {
	f := newFixtureWith(t, store.NewMemory(), account(6, 2))
	f.ready(t)

	run, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "acme", Wave: 2})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_RUNNING, run.State)
	require.Equal(t, 3, run.Total)
	require.Equal(t, "b1", run.BaselineID)
	require.Regexp(t, `^run-20261123T154800Z-[0-9a-f]{6}$`, run.ID)

	evs := f.pub.take()
	require.Len(t, evs, 2, "one membership chunk, then RunStarted")
	chunk := evs[0].Data.(*eventsv1.RunMembership)
	started := evs[1].Data.(*eventsv1.RunStarted)
	require.Equal(t, "patch.acme.run.started/"+run.ID, evs[1].ID)
	require.Equal(t, "patch.acme.run.membership/"+run.ID+"/"+started.GetMembershipId()+"/0", evs[0].ID)
	require.Empty(t, started.GetInstanceIds(), "RunStarted carries counts, not ids")
	require.Empty(t, started.GetGroups())
	require.True(t, proto.Equal(&typesv1.MembershipCounts{Total: 3, Eligible: 3, Chunks: 1}, started.GetMembership()), "%v", started.GetMembership())
	target := f.cloud.Target("acme")
	var ids []string
	for _, m := range chunk.GetMembers() {
		ids = append(ids, m.GetInstanceId())
		require.True(t, proto.Equal(&typesv1.Location{Account: target.Account, Region: target.Region}, m.GetLocation()))
		require.Equal(t, "amazon-linux-2023", m.GetOsFamily())
		require.Equal(t, typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE, m.GetStatus())
	}
	require.Equal(t, f.waveIDs(t, "2"), ids, "the instances tagged PatchWave=2, discovered at the provider")
	require.Len(t, started.GetPins(), 1)
	require.True(t, proto.Equal(&typesv1.BaselinePin{OsFamily: "amazon-linux-2023", BaselineId: "b1", Version: 1, PatchIds: []string{"p1", "p2"}}, started.GetPins()[0]))
	require.Equal(t, int32(2), started.GetWave())
	require.True(t, proto.Equal(&typesv1.JobPolicy{RebootPolicy: typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS,
		InstanceTimeout: durationpb.New(45 * time.Minute)}, started.GetPolicy()),
		"the wave's rollout policy decides reboot, timeout and auto-rollback; got %v", started.GetPolicy())
	require.True(t, proto.Equal(&typesv1.DispatchLimits{MaxInFlight: 1, ErrorBudget: 1}, started.GetLimits()),
		"10%% of 3 is 1 in flight, 5%% is a budget of 1 (rounded up); no window is open: %v", started.GetLimits())
}

func TestMembershipReportsEveryInstance(t *testing.T) {
	f := newFixtureWith(t, store.NewMemory(), account(4, 1))
	acc := f.cloud.Target("acme").Account
	for _, spec := range []cloudsim.InstanceSpec{
		{Account: acc, Count: 2, Stopped: true, OSFamily: "amazon-linux-2023", Tags: map[string]string{"PatchWave": "1"}},
		{Account: acc, Count: 1, NoAgent: true, OSFamily: "amazon-linux-2023", Tags: map[string]string{"PatchWave": "1"}},
		{Account: acc, Count: 3, OSFamily: "windows-server-2022", Tags: map[string]string{"PatchWave": "1"}},
	} {
		_, err := f.cloud.Sim.AddInstances(spec)
		require.NoError(t, err)
	}
	f.ready(t)
	run, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "acme", Wave: 1})
	require.NoError(t, err)
	started := payloads[*eventsv1.RunStarted](f.feed(t, true))[0]
	require.True(t, proto.Equal(&typesv1.MembershipCounts{Total: 10, Eligible: 4, Stopped: 2, NoAgent: 1, NoBaseline: 3, Chunks: 1}, started.GetMembership()),
		"%v", started.GetMembership())

	got, err := f.app.GetRun(t.Context(), domain.RunRef{Tenant: "acme", RunID: run.ID})
	require.NoError(t, err)
	counts := got.JobCounts()
	require.Equal(t, map[typesv1.JobState]int{
		typesv1.JobState_JOB_STATE_PENDING: 4, typesv1.JobState_JOB_STATE_MISSED: 2, typesv1.JobState_JOB_STATE_SKIPPED: 4,
	}, counts, "stopped instances are MISSED, agentless and unpinned ones SKIPPED; none is dropped")

	jobs, next, err := f.app.ListRunJobs(t.Context(), app.JobsQuery{Ref: domain.RunRef{Tenant: "acme", RunID: run.ID},
		States: []typesv1.JobState{typesv1.JobState_JOB_STATE_MISSED}})
	require.NoError(t, err)
	require.Empty(t, next)
	require.Len(t, jobs, 2)
	for _, j := range jobs {
		require.Equal(t, typesv1.MemberStatus_MEMBER_STATUS_STOPPED, j.Member.GetStatus())
	}
}

func TestAWaveWithoutARolloutPolicyTakesTheConfiguredJobPolicy(t *testing.T) {
	f := newFixtureWith(t, store.NewMemory(), account(2, 1))
	f.ready(t)
	_, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "acme", Wave: 1})
	require.NoError(t, err)
	started := payloads[*eventsv1.RunStarted](f.pub.take())
	require.Len(t, started, 1)
	require.True(t, proto.Equal(policy, started[0].GetPolicy()))
}

func TestStartRunWithoutInstancesCompletesAtOnce(t *testing.T) {
	f := newFixtureWith(t, store.NewMemory(), account(4, 1))
	f.ready(t)
	run, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "acme", Wave: 2})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, run.State)
	evs := f.pub.take()
	require.Len(t, evs, 2)
	done := payloads[*eventsv1.RunCompleted](evs)
	require.Len(t, done, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, done[0].GetState())
	require.Zero(t, done[0].GetTotal())
}

func TestALargeWaveTravelsInChunks(t *testing.T) {
	f := newFixtureWith(t, store.NewMemory(), account(2500, 1))
	f.ready(t)
	run, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "acme", Wave: 1})
	require.NoError(t, err)
	require.Equal(t, 2500, run.Total)
	evs := f.pub.take()
	chunks := payloads[*eventsv1.RunMembership](evs)
	require.Len(t, chunks, 3)
	seen := map[string]bool{}
	for i, c := range chunks {
		require.Equal(t, int32(i), c.GetChunk())
		require.LessOrEqual(t, len(c.GetMembers()), domain.MaxChunk)
		data, err := events.Marshal(evs[i])
		require.NoError(t, err)
		require.Less(t, len(data), 256<<10, "a chunk event is well under 1 MiB")
		for _, m := range c.GetMembers() {
			seen[m.GetInstanceId()] = true
		}
	}
	require.Len(t, seen, 2500, "every instance once")
	startedEv := evs[len(evs)-1]
	data, err := events.Marshal(startedEv)
	require.NoError(t, err)
	require.Less(t, len(data), 4<<10, "RunStarted does not grow with the wave")
}

func TestStartRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, f *fixture)
		cmd     domain.StartRun
		is      error
		message string
	}{
		{"a wave above the absolute limit is refused before anything else", func(*testing.T, *fixture) {}, domain.StartRun{Tenant: "acme", Wave: 11},
			domain.ErrInvalidArgument, "wave: must be from 1 to 10, got 11"},
		{"a wave above the tenant's limit is refused before anything else", func(*testing.T, *fixture) {}, domain.StartRun{Tenant: "acme", Wave: 7},
			domain.ErrInvalidArgument, "wave: must be from 1 to 3 (the tenant's wave limit), got 7"},
		{"a tenant that is not in the design is not found", func(*testing.T, *fixture) {}, domain.StartRun{Tenant: "nobody", Wave: 1},
			domain.ErrNotFound, "tenant nobody is not in the service design"},
		{"a wave that is not defined is a failed precondition", func(*testing.T, *fixture) {}, domain.StartRun{Tenant: "acme", Wave: 3},
			domain.ErrFailedPrecondition, "wave 3 is not defined"},
		{"an unpublished baseline is a failed precondition", func(t *testing.T, f *fixture) { f.ready(t) },
			domain.StartRun{Tenant: "acme", Wave: 1, BaselineID: "b9"}, domain.ErrFailedPrecondition, "baseline b9 is not published"},
		{"no baseline at all is a failed precondition", func(t *testing.T, f *fixture) {
			require.NoError(t, f.app.BaselinesCaughtUp(t.Context()))
			require.NoError(t, f.app.RunsCaughtUp(t.Context()))
		}, domain.StartRun{Tenant: "acme", Wave: 1}, domain.ErrFailedPrecondition, "no baseline is published"},
		{"a tenant without cloud accounts is a failed precondition", func(t *testing.T, f *fixture) { f.ready(t) },
			domain.StartRun{Tenant: "globex", Wave: 1}, domain.ErrFailedPrecondition, "no accounts"},
		{"a fleet that keeps throttling is unavailable", func(t *testing.T, f *fixture) {
			f.ready(t)
			f.cloud.Throttle(t, "DescribeInstances", 100)
		}, domain.StartRun{Tenant: "acme", Wave: 1}, domain.ErrUnavailable, "discover instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc := account(0, 0)
			if strings.Contains(tt.name, "throttling") {
				acc = account(4, 1)
			}
			f := newFixtureWith(t, store.NewMemory(), acc)
			tt.setup(t, f)
			_, err := f.app.StartRun(t.Context(), tt.cmd)
			require.ErrorIs(t, err, tt.is)
			require.ErrorContains(t, err, tt.message)
			require.Empty(t, f.pub.take(), "nothing is published")
		})
	}
}

func TestQueriesWaitForTheReadModels(t *testing.T) {
	f := newFixture(t, store.NewMemory())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := f.app.ListRuns(ctx, "acme")
	require.ErrorIs(t, err, domain.ErrUnavailable)
}

func TestStartRunWithRequestIDReturnsTheSameRun(t *testing.T) {
	f := newFixtureWith(t, store.NewMemory(), account(4, 1))
	f.ready(t)
	cmd := domain.StartRun{Tenant: "acme", Wave: 1, RequestID: "change-42"}
	first, err := f.app.StartRun(t.Context(), cmd)
	require.NoError(t, err)
	require.Equal(t, domain.RunIDForRequest("acme", 1, "change-42"), first.ID)
	// The runs projection sees the events; the retry then answers from the read model.
	require.Len(t, f.feed(t, true), 2)
	again, err := f.app.StartRun(t.Context(), cmd)
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, 4, again.Total)
	require.Empty(t, f.pub.take(), "a retried request publishes nothing")
}

// controlled starts a run of acme's wave 1 (n instances) under policy p and feeds its start.
func controlled(t *testing.T, n int, p *typesv1.RolloutPolicy, w *domain.Window) (*fixture, domain.Run) {
	t.Helper()
	f := newFixtureWith(t, store.NewMemory(), account(n, 1))
	f.design.policies[1] = p
	f.design.window = w
	f.ready(t)
	run, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "acme", Wave: 1})
	require.NoError(t, err)
	f.feed(t, true)
	return f, run
}

func (f *fixture) run(t *testing.T, id string) domain.Run {
	t.Helper()
	r, err := f.app.GetRun(t.Context(), domain.RunRef{Tenant: "acme", RunID: id})
	require.NoError(t, err)
	return r
}

func TestTheControllerReleasesUnderMaxConcurrency(t *testing.T) {
	f, run := controlled(t, 10, &typesv1.RolloutPolicy{MaxConcurrency: count(3), ErrorBudget: count(10)}, nil)
	all := f.waveIDs(t, "1")
	released := jobIDs(f.step(t))
	require.Equal(t, all[:3], released, "the first three in membership order")
	require.Empty(t, f.step(t), "nothing more while three are in flight")
	require.Equal(t, 3, f.run(t, run.ID).InFlight())

	f.end(t, run.ID, all[1], "ok")
	next := jobIDs(f.step(t))
	require.Equal(t, all[3:4], next, "an outcome frees one slot")
	f.end(t, run.ID, all[0], "fail")
	f.end(t, run.ID, all[2], "snapfail")
	require.Equal(t, all[4:6], jobIDs(f.step(t)))

	maxInFlight := 0
	done := map[string]bool{all[0]: true, all[1]: true, all[2]: true}
	var completed []*eventsv1.RunCompleted
	for len(completed) == 0 {
		r := f.run(t, run.ID)
		maxInFlight = max(maxInFlight, r.InFlight())
		for _, id := range all {
			if !done[id] && slices.Contains(f.requested(t, run.ID), id) {
				done[id] = true
				f.end(t, run.ID, id, "ok")
				break
			}
		}
		completed = payloads[*eventsv1.RunCompleted](f.step(t))
	}
	require.LessOrEqual(t, maxInFlight, 3)
	require.Len(t, completed, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, completed[0].GetState())
	require.Equal(t, []int32{10, 8, 2, 1}, []int32{completed[0].GetTotal(), completed[0].GetSucceeded(), completed[0].GetFailed(), completed[0].GetSnapshotFailed()})
	require.Empty(t, f.step(t), "a completed run is left alone")
}

// requested lists the instances of a run whose job was released.
func (f *fixture) requested(t *testing.T, runID string) []string {
	t.Helper()
	jobs, _, err := f.app.ListRunJobs(t.Context(), app.JobsQuery{Ref: domain.RunRef{Tenant: "acme", RunID: runID}, PageSize: 1000,
		States: []typesv1.JobState{typesv1.JobState_JOB_STATE_SNAPSHOTTING, typesv1.JobState_JOB_STATE_INSTALLING}})
	require.NoError(t, err)
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.Member.GetInstanceId())
	}
	return ids
}

func count(n int32) *typesv1.Amount { return &typesv1.Amount{Value: &typesv1.Amount_Count{Count: n}} }

func TestTheErrorBudgetHaltsTheRun(t *testing.T) {
	f, run := controlled(t, 10, &typesv1.RolloutPolicy{MaxConcurrency: count(4), ErrorBudget: count(1)}, nil)
	all := f.waveIDs(t, "1")
	require.Equal(t, all[:4], jobIDs(f.step(t)))
	f.end(t, run.ID, all[0], "fail")
	require.Equal(t, all[4:5], jobIDs(f.step(t)), "one failure is within the budget")
	f.end(t, run.ID, all[1], "timeout")
	evs := f.step(t)
	require.Len(t, payloads[*eventsv1.RunHalted](evs), 1, "the second failure exceeds the budget of 1")
	require.Empty(t, jobIDs(evs), "a halted run releases nothing")
	r := f.run(t, run.ID)
	require.Equal(t, typesv1.RunState_RUN_STATE_HALTED, r.State)
	require.Equal(t, 5, r.Skipped(), "the jobs not released are skipped")

	_, err := f.app.CancelRun(t.Context(), app.RunControl{Ref: domain.RunRef{Tenant: "acme", RunID: run.ID}, Actor: "op"})
	require.ErrorIs(t, err, domain.ErrFailedPrecondition)
	require.ErrorContains(t, err, "is HALTED")

	for _, id := range all[2:5] {
		require.Empty(t, payloads[*eventsv1.RunCompleted](f.step(t)), "not complete while jobs are in flight")
		f.end(t, run.ID, id, "ok")
	}
	done := payloads[*eventsv1.RunCompleted](f.step(t))
	require.Len(t, done, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_HALTED, done[0].GetState())
	require.Equal(t, []int32{3, 2, 5}, []int32{done[0].GetSucceeded(), done[0].GetFailed(), done[0].GetSkipped()})

	// The failed instances run again, with the same pin, in a new run.
	again, err := f.app.RerunFailed(t.Context(), app.RunControl{Ref: domain.RunRef{Tenant: "acme", RunID: run.ID}, Actor: "op", RequestID: "retry-1"})
	require.NoError(t, err)
	require.Equal(t, 2, again.Total)
	require.Equal(t, run.ID, again.Detail.RerunOf)
	require.Equal(t, r.Detail.Pins, again.Detail.Pins)
	f.feed(t, true)
	rerun, err := f.app.RerunFailed(t.Context(), app.RunControl{Ref: domain.RunRef{Tenant: "acme", RunID: run.ID}, Actor: "op", RequestID: "retry-1"})
	require.NoError(t, err)
	require.Equal(t, again.ID, rerun.ID, "the same request gives the same run")
	require.ElementsMatch(t, all[:2], jobIDs(f.step(t)))
}

func TestDispatchStopsAtTheCutoff(t *testing.T) {
	w := &domain.Window{End: t0.Add(2 * time.Hour)}
	f, run := controlled(t, 6, &typesv1.RolloutPolicy{MaxConcurrency: count(2), Cutoff: "30m"}, w)
	r := f.run(t, run.ID)
	require.Equal(t, t0.Add(90*time.Minute), r.Detail.Limits.StopAt)
	policy, err := f.app.GetRun(t.Context(), domain.RunRef{Tenant: "acme", RunID: run.ID})
	require.NoError(t, err)
	require.Contains(t, string(policy.Detail.Policy), `"instanceTimeout":"7200s"`, "no installation outlives the window")
	all := f.waveIDs(t, "1")
	require.Equal(t, all[:2], jobIDs(f.step(t)))
	f.at(t0.Add(89 * time.Minute))
	f.end(t, run.ID, all[0], "ok")
	require.Equal(t, all[2:3], jobIDs(f.step(t)), "before the cutoff a slot is refilled")
	f.at(t0.Add(90 * time.Minute))
	f.end(t, run.ID, all[1], "ok")
	evs := f.step(t)
	require.Empty(t, jobIDs(evs), "no instance starts within the cutoff")
	stopped := payloads[*eventsv1.RunDispatchStopped](evs)
	require.Len(t, stopped, 1)
	require.Equal(t, "cutoff 30m0s before the window end", stopped[0].GetReason())
	f.end(t, run.ID, all[2], "ok")
	done := payloads[*eventsv1.RunCompleted](f.step(t))
	require.Len(t, done, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, done[0].GetState(), "the rest was not patched")
	require.Equal(t, []int32{3, 0, 3}, []int32{done[0].GetSucceeded(), done[0].GetFailed(), done[0].GetSkipped()})

	_, err = f.app.RerunFailed(t.Context(), app.RunControl{Ref: domain.RunRef{Tenant: "acme", RunID: run.ID}, Actor: "op"})
	require.ErrorIs(t, err, domain.ErrFailedPrecondition)
	require.ErrorContains(t, err, "is COMPLETED_WITH_ERRORS and its window closed for new jobs")
}

func TestDispatchStopsAtAFreezeInsideTheWindow(t *testing.T) {
	w := &domain.Window{End: t0.Add(4 * time.Hour), FreezeStart: t0.Add(time.Hour), FreezeNote: "release-freeze"}
	f, run := controlled(t, 4, &typesv1.RolloutPolicy{MaxConcurrency: count(1), Cutoff: "30m"}, w)
	all := f.waveIDs(t, "1")
	require.Equal(t, all[:1], jobIDs(f.step(t)))
	f.at(t0.Add(time.Hour))
	evs := f.step(t)
	stopped := payloads[*eventsv1.RunDispatchStopped](evs)
	require.Len(t, stopped, 1, "the stop comes by the clock, without an outcome")
	require.Equal(t, "freeze release-freeze", stopped[0].GetReason())
	f.end(t, run.ID, all[0], "ok")
	require.Empty(t, jobIDs(f.step(t)))
	r := f.run(t, run.ID)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, r.State)
	require.Equal(t, 3, r.Skipped())
}

func TestPauseResumeAndCancel(t *testing.T) {
	f, run := controlled(t, 6, &typesv1.RolloutPolicy{MaxConcurrency: count(2)}, nil)
	ref := domain.RunRef{Tenant: "acme", RunID: run.ID}
	all := f.waveIDs(t, "1")
	require.Equal(t, all[:2], jobIDs(f.step(t)))

	_, err := f.app.ResumeRun(t.Context(), app.RunControl{Ref: ref, Actor: "op"})
	require.ErrorIs(t, err, domain.ErrFailedPrecondition, "a run that is not paused is not resumed")
	require.ErrorContains(t, err, "RUNNING and not paused")
	paused, err := f.app.PauseRun(t.Context(), app.RunControl{Ref: ref, Actor: "op", Reason: "change review"})
	require.NoError(t, err)
	require.True(t, paused.Paused)
	pe := f.feed(t, true)
	require.Len(t, payloads[*eventsv1.RunPaused](pe), 1)
	require.Equal(t, "op", payloads[*eventsv1.RunPaused](pe)[0].GetActor())
	_, err = f.app.PauseRun(t.Context(), app.RunControl{Ref: ref, Actor: "op"})
	require.ErrorContains(t, err, "is RUNNING and paused")

	f.end(t, run.ID, all[0], "ok")
	require.Empty(t, jobIDs(f.step(t)), "a paused run releases nothing")
	_, err = f.app.ResumeRun(t.Context(), app.RunControl{Ref: ref, Actor: "op"})
	require.NoError(t, err)
	f.at(t0.Add(time.Second))
	f.feed(t, true)
	require.Equal(t, all[2:3], jobIDs(f.step(t)), "resumed: the freed slot is used")

	cancelled, err := f.app.CancelRun(t.Context(), app.RunControl{Ref: ref, Actor: "op", Reason: "wrong baseline"})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_CANCELLED, cancelled.State)
	f.feed(t, true)
	f.end(t, run.ID, all[1], "ok")
	require.Empty(t, jobIDs(f.step(t)), "a cancelled run releases nothing")
	f.end(t, run.ID, all[2], "fail")
	done := payloads[*eventsv1.RunCompleted](f.step(t))
	require.Len(t, done, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_CANCELLED, done[0].GetState())
	require.Equal(t, int32(3), done[0].GetSkipped())

	_, err = f.app.CancelRun(t.Context(), app.RunControl{Ref: ref, Actor: "op"})
	require.ErrorIs(t, err, domain.ErrFailedPrecondition)
	require.ErrorContains(t, err, "run "+run.ID+" is CANCELLED: cannot go to CANCELLED")
	_, err = f.app.PauseRun(t.Context(), app.RunControl{Ref: ref, Actor: "op"})
	require.ErrorContains(t, err, "is CANCELLED")
	_, err = f.app.RerunFailed(t.Context(), app.RunControl{Ref: ref, Actor: "op"})
	require.ErrorContains(t, err, "is CANCELLED: cannot go to re-run")
}

func TestListRunJobsPagesAndFilters(t *testing.T) {
	f, run := controlled(t, 7, &typesv1.RolloutPolicy{MaxConcurrency: count(3)}, nil)
	ref := domain.RunRef{Tenant: "acme", RunID: run.ID}
	all := f.waveIDs(t, "1")
	f.step(t)
	f.end(t, run.ID, all[0], "ok")
	f.end(t, run.ID, all[1], "fail")

	var got []string
	token := ""
	for {
		page, next, err := f.app.ListRunJobs(t.Context(), app.JobsQuery{Ref: ref, PageSize: 3, PageToken: token})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 3)
		for _, j := range page {
			got = append(got, j.Member.GetInstanceId())
		}
		if next == "" {
			break
		}
		token = next
	}
	require.Equal(t, all, got, "every job once, by instance id")

	states := map[string]typesv1.JobState{}
	page, _, err := f.app.ListRunJobs(t.Context(), app.JobsQuery{Ref: ref})
	require.NoError(t, err)
	for _, j := range page {
		states[j.Member.GetInstanceId()] = j.State
		require.Equal(t, "b1", j.BaselineID)
	}
	require.Equal(t, typesv1.JobState_JOB_STATE_SUCCEEDED, states[all[0]])
	require.Equal(t, typesv1.JobState_JOB_STATE_FAILED, states[all[1]])
	require.Equal(t, typesv1.JobState_JOB_STATE_SNAPSHOTTING, states[all[2]])
	require.Equal(t, typesv1.JobState_JOB_STATE_PENDING, states[all[6]])

	failed, _, err := f.app.ListRunJobs(t.Context(), app.JobsQuery{Ref: ref, States: []typesv1.JobState{typesv1.JobState_JOB_STATE_FAILED}})
	require.NoError(t, err)
	require.Len(t, failed, 1)

	_, _, err = f.app.ListRunJobs(t.Context(), app.JobsQuery{Ref: ref, PageSize: 5000, States: []typesv1.JobState{99}})
	require.ErrorIs(t, err, domain.ErrInvalidArgument)
	require.ErrorContains(t, err, "page_size: must be from 1 to 1000")
	require.ErrorContains(t, err, "states[0]: must be a job state")
}

func TestRunCompletionFromOlderEvents(t *testing.T) {
	// A RunStarted from before chunks lists its instances, and its jobs were requested at once.
	started := &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1", Wave: 1, BaselineId: "b1",
		InstanceIds: []string{"i-1", "i-2", "i-3"}, StartedAt: timestamppb.New(t0)}
	feed := func(f *fixture, live bool) {
		f.apply(t, f.app.ApplyRun, "acme", "run-1", started, live)
		for _, id := range []string{"i-1", "i-2", "i-3"} {
			f.apply(t, f.app.ApplyRun, "acme", "run-1/"+id, &eventsv1.JobRequested{Tenant: "acme", RunId: "run-1", InstanceId: id}, live)
		}
		f.apply(t, f.app.ApplyRun, "acme", "run-1/i-1", &eventsv1.InstallSucceeded{Tenant: "acme", RunId: "run-1", InstanceId: "i-1"}, live)
		f.apply(t, f.app.ApplyRun, "acme", "run-1/i-2", &eventsv1.InstallFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-2"}, live)
		f.apply(t, f.app.ApplyRun, "acme", "run-1/i-3", &eventsv1.SnapshotFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-3"}, live)
	}

	t.Run("a replay completes the run when it catches up", func(t *testing.T) {
		f := newFixture(t, store.NewMemory())
		feed(f, false)
		require.Empty(t, f.pub.take(), "nothing is published while replaying")
		f.ready(t)
		done := payloads[*eventsv1.RunCompleted](f.step(t))
		require.Len(t, done, 1)
		require.Equal(t, "run-1", done[0].GetRunId())
		require.Equal(t, []int32{3, 1, 2}, []int32{done[0].GetTotal(), done[0].GetSucceeded(), done[0].GetFailed()})
		require.Empty(t, f.step(t), "once")
	})

	t.Run("a replayed run that has its RunCompleted is left alone", func(t *testing.T) {
		f := newFixture(t, store.NewMemory())
		feed(f, false)
		f.apply(t, f.app.ApplyRun, "acme", "run-1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-1",
			State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, CompletedAt: timestamppb.New(t0)}, false)
		f.ready(t)
		require.Empty(t, f.step(t))
	})

	t.Run("unknown runs are not found", func(t *testing.T) {
		f := newFixture(t, store.NewMemory())
		f.ready(t)
		_, err := f.app.GetRun(t.Context(), domain.RunRef{Tenant: "acme", RunID: "run-404"})
		require.ErrorIs(t, err, domain.ErrNotFound)
	})
}

func TestTimedOutJobsAreCountedApart(t *testing.T) {
	f, run := controlled(t, 2, &typesv1.RolloutPolicy{MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 100}}, ErrorBudget: count(5)}, nil)
	all := f.waveIDs(t, "1")
	require.Equal(t, all, jobIDs(f.step(t)), "without a limit every job is released at once")
	f.end(t, run.ID, all[0], "ok")
	f.end(t, run.ID, all[1], "timeout")
	done := payloads[*eventsv1.RunCompleted](f.step(t))
	require.Len(t, done, 1)
	require.Equal(t, []int32{2, 1, 1, 1}, []int32{done[0].GetTotal(), done[0].GetSucceeded(), done[0].GetFailed(), done[0].GetTimedOut()},
		"total, succeeded, failed (timeouts included), timed out")
	r := f.run(t, run.ID)
	require.Equal(t, 1, r.TimedOut)
	require.Zero(t, r.Failed, "a timeout is not an install failure")
}

func TestAReleaseLostInACrashIsRepaired(t *testing.T) {
	f, run := controlled(t, 5, &typesv1.RolloutPolicy{MaxConcurrency: count(2)}, nil)
	all := f.waveIDs(t, "1")
	// The controller published, then died before the stream had the jobs: a new controller
	// (another application on the same read model) releases them again.
	f.app.StepOpenRuns(t.Context())
	lost := f.pub.take()
	require.Equal(t, all[:2], jobIDs(lost))
	f.app = app.New(app.Config{Policy: policy}, app.Deps{
		Fleet: f.cloud.Fleet, Design: f.design, Repo: adapters.New(f.st),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: func() time.Time { return *f.now.Load() },
	})
	f.app.Attach(f.pub)
	require.NoError(t, f.app.BaselinesCaughtUp(t.Context()))
	require.NoError(t, f.app.RunsCaughtUp(t.Context()))
	again := f.step(t)
	require.Equal(t, all[:2], jobIDs(again), "the same jobs (same event ids), and no more than the limit")
	require.Equal(t, lost[0].ID, again[0].ID)
	require.Equal(t, 2, f.run(t, run.ID).InFlight())
}

func TestAWaveAboveTheOldLimitStartsAndReleasesUnderItsLimit(t *testing.T) {
	const n = 20500 // the old one-event limit was 20,000
	f, run := controlled(t, n, &typesv1.RolloutPolicy{MaxConcurrency: count(1000)}, nil)
	require.Equal(t, n, run.Total)
	r := f.run(t, run.ID)
	require.Equal(t, 21, r.Detail.Chunks)
	require.Len(t, jobIDs(f.step(t)), 1000, "the first thousand")
	require.Empty(t, f.step(t))
}

func TestARunIsNotCompletedWhileItsJobsAreOnTheirWay(t *testing.T) {
	w := &domain.Window{End: t0.Add(time.Hour)}
	f, run := controlled(t, 4, &typesv1.RolloutPolicy{MaxConcurrency: count(2)}, w)
	f.app.StepOpenRuns(t.Context())
	released := f.pub.take()
	require.Len(t, jobIDs(released), 2)
	// The stop comes before the read model has the released jobs.
	f.at(t0.Add(time.Hour))
	f.app.StepOpenRuns(t.Context())
	evs := f.feed(t, true)
	require.Len(t, payloads[*eventsv1.RunDispatchStopped](evs), 1)
	require.Empty(t, payloads[*eventsv1.RunCompleted](evs), "two jobs are in flight")
	for _, ev := range released {
		f.seq++
		ev.Sequence = f.seq
		require.NoError(t, f.app.ApplyRun(t.Context(), ev, true))
	}
	for _, id := range jobIDs(released) {
		require.Empty(t, payloads[*eventsv1.RunCompleted](f.step(t)))
		f.end(t, run.ID, id, "ok")
	}
	done := payloads[*eventsv1.RunCompleted](f.step(t))
	require.Len(t, done, 1)
	require.Equal(t, []int32{2, 2}, []int32{done[0].GetSucceeded(), done[0].GetSkipped()})
}

// readyB and feedB are ready and feed for benchmarks.
func (f *fixture) readyB(b *testing.B) {
	b.Helper()
	ev, err := events.New("", "b1", &eventsv1.BaselinePublished{BaselineId: "b1", OsFamily: "amazon-linux-2023", Version: 1, PublishedAt: timestamppb.New(t0)})
	require.NoError(b, err)
	f.seq++
	ev.Sequence = f.seq
	require.NoError(b, f.app.ApplyBaseline(b.Context(), ev, false))
	require.NoError(b, f.app.BaselinesCaughtUp(b.Context()))
	require.NoError(b, f.app.RunsCaughtUp(b.Context()))
}

func (f *fixture) feedB(b *testing.B) []*events.Event {
	b.Helper()
	evs := f.pub.take()
	for _, ev := range evs {
		f.seq++
		ev.Sequence = f.seq
		require.NoError(b, f.app.ApplyRun(b.Context(), ev, true))
	}
	return evs
}

// outcome is a job's success, as an event.
func outcome(tb testing.TB, runID, id string) *events.Event {
	ev, err := events.New("acme", runID+"/"+id, &eventsv1.InstallSucceeded{Tenant: "acme", RunId: runID, InstanceId: id})
	require.NoError(tb, err)
	return ev
}
