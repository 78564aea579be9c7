package app_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

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
	app   *app.Application
	pub   *recorder
	fleet *simfleet.Fleet
	seq   uint64
}

func newFixture(t *testing.T, st store.Store) *fixture {
	t.Helper()
	fleet, err := simfleet.New(simfleet.Config{})
	require.NoError(t, err)
	a := app.New(app.Config{TagKey: "PatchWave", MaxWaves: 3, MaxRunInstances: 100}, app.Deps{
		Fleet: fleet, Repo: adapters.New(st), Marks: idem.New(st, "scheduler-jobs"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: func() time.Time { return t0 },
	})
	pub := &recorder{}
	a.Attach(pub)
	return &fixture{app: a, pub: pub, fleet: fleet}
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

func TestStartRun(t *testing.T) {
	f := newFixture(t, store.NewMemory())
	require.NoError(t, f.fleet.Populate("acme", 6, 2))
	f.ready(t)

	run, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "acme", Wave: 2})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_RUNNING, run.State)
	require.Equal(t, 3, run.Total)
	require.Equal(t, "b1", run.BaselineID)
	require.Regexp(t, `^run-20261123T154800Z-[0-9a-f]{6}$`, run.ID)

	evs := f.pub.take()
	require.Len(t, evs, 1)
	started := evs[0].Data.(*eventsv1.RunStarted)
	require.Equal(t, "patch.acme.run.started/"+run.ID, evs[0].ID)
	require.Equal(t, []string{"i-acme-0002", "i-acme-0004", "i-acme-0006"}, started.GetInstanceIds())
	require.Equal(t, []string{"p1", "p2"}, started.GetPatchIds())
	require.Equal(t, int32(2), started.GetWave())
}

func TestStartRunWithoutInstancesCompletesAtOnce(t *testing.T) {
	f := newFixture(t, store.NewMemory())
	f.ready(t)
	run, err := f.app.StartRun(t.Context(), domain.StartRun{Tenant: "empty", Wave: 1})
	require.NoError(t, err)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, run.State)
	evs := f.pub.take()
	require.Len(t, evs, 2)
	done := payloads[*eventsv1.RunCompleted](evs)
	require.Len(t, done, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, done[0].GetState())
	require.Zero(t, done[0].GetTotal())
}

func TestStartRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, f *fixture)
		cmd     domain.StartRun
		is      error
		message string
	}{
		{"a bad wave is refused before anything else", func(*testing.T, *fixture) {}, domain.StartRun{Tenant: "acme", Wave: 7},
			domain.ErrInvalidArgument, "wave: must be from 1 to 3, got 7"},
		{"an unpublished baseline is a failed precondition", func(t *testing.T, f *fixture) { f.ready(t) },
			domain.StartRun{Tenant: "acme", Wave: 1, BaselineID: "b9"}, domain.ErrFailedPrecondition, "baseline b9 is not published"},
		{"no baseline at all is a failed precondition", func(t *testing.T, f *fixture) {
			require.NoError(t, f.app.BaselinesCaughtUp(t.Context()))
			require.NoError(t, f.app.RunsCaughtUp(t.Context()))
		}, domain.StartRun{Tenant: "acme", Wave: 1}, domain.ErrFailedPrecondition, "no baseline is published yet"},
		{"too many instances for one run is a failed precondition", func(t *testing.T, f *fixture) {
			require.NoError(t, f.fleet.Populate("acme", 101, 1))
			f.ready(t)
		}, domain.StartRun{Tenant: "acme", Wave: 1}, domain.ErrFailedPrecondition, "has 101 running instances"},
		{"a fleet that does not answer is unavailable", func(t *testing.T, f *fixture) {
			f.ready(t)
			f.fleet.FailNext(simfleet.OpDiscoverInstances, throttled{})
		}, domain.StartRun{Tenant: "acme", Wave: 1}, domain.ErrUnavailable, "discover instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, store.NewMemory())
			tt.setup(t, f)
			_, err := f.app.StartRun(t.Context(), tt.cmd)
			require.ErrorIs(t, err, tt.is)
			require.ErrorContains(t, err, tt.message)
			require.Empty(t, f.pub.take(), "nothing is published")
		})
	}
}

type throttled struct{}

func (throttled) Error() string   { return "request limit exceeded" }
func (throttled) Retryable() bool { return true }

func TestQueriesWaitForTheReadModels(t *testing.T) {
	f := newFixture(t, store.NewMemory())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := f.app.ListRuns(ctx, "acme")
	require.ErrorIs(t, err, domain.ErrUnavailable)
}

func TestStartRunWithRequestIDReturnsTheSameRun(t *testing.T) {
	f := newFixture(t, store.NewMemory())
	require.NoError(t, f.fleet.Populate("acme", 4, 1))
	f.ready(t)
	cmd := domain.StartRun{Tenant: "acme", Wave: 1, RequestID: "change-42"}
	first, err := f.app.StartRun(t.Context(), cmd)
	require.NoError(t, err)
	require.Equal(t, domain.RunIDForRequest("acme", 1, "change-42"), first.ID)
	evs := f.pub.take()
	require.Len(t, evs, 1)
	// The runs projection sees the RunStarted; the retry then answers from the read model.
	f.apply(t, f.app.ApplyRun, "acme", first.ID, evs[0].Data, true)
	again, err := f.app.StartRun(t.Context(), cmd)
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, 4, again.Total)
	require.Empty(t, f.pub.take(), "a retried request publishes nothing")
}

func TestRunCompletion(t *testing.T) {
	started := &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1", Wave: 1, BaselineId: "b1",
		InstanceIds: []string{"i-1", "i-2", "i-3"}, StartedAt: timestamppb.New(t0)}
	outcomes := []proto.Message{
		&eventsv1.SnapshotCreated{Tenant: "acme", RunId: "run-1", InstanceId: "i-1"},
		&eventsv1.InstallSucceeded{Tenant: "acme", RunId: "run-1", InstanceId: "i-1"},
		&eventsv1.SnapshotCreated{Tenant: "acme", RunId: "run-1", InstanceId: "i-2"},
		&eventsv1.InstallFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-2"},
		&eventsv1.SnapshotFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-3"},
	}
	keys := []string{"run-1/i-1", "run-1/i-1", "run-1/i-2", "run-1/i-2", "run-1/i-3"}

	t.Run("live outcomes complete the run once", func(t *testing.T) {
		f := newFixture(t, store.NewMemory())
		f.ready(t)
		f.apply(t, f.app.ApplyRun, "acme", "run-1", started, true)
		for i, m := range outcomes {
			f.apply(t, f.app.ApplyRun, "acme", keys[i], m, true)
			if i < len(outcomes)-1 {
				require.Empty(t, f.pub.take(), "not complete after outcome %d", i)
			}
		}
		done := payloads[*eventsv1.RunCompleted](f.pub.take())
		require.Len(t, done, 1)
		require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, done[0].GetState())
		require.Equal(t, []int32{3, 1, 2}, []int32{done[0].GetTotal(), done[0].GetSucceeded(), done[0].GetFailed()})

		// The RunCompleted comes back through the stream; a redelivered outcome changes nothing.
		f.apply(t, f.app.ApplyRun, "acme", "run-1", done[0], true)
		f.apply(t, f.app.ApplyRun, "acme", keys[4], outcomes[4], true)
		require.Empty(t, f.pub.take())
		run, err := f.app.GetRun(t.Context(), domain.RunRef{Tenant: "acme", RunID: "run-1"})
		require.NoError(t, err)
		require.Equal(t, domain.Run{
			Tenant: "acme", ID: "run-1", Wave: 1, BaselineID: "b1", State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
			Total: 3, Snapshotted: 2, Succeeded: 1, Failed: 1, SnapshotFailed: 1, StartedAt: t0, CompletedAt: t0,
		}, run)
	})

	t.Run("a replay completes the run when it catches up", func(t *testing.T) {
		f := newFixture(t, store.NewMemory())
		f.apply(t, f.app.ApplyRun, "acme", "run-1", started, false)
		for i, m := range outcomes {
			f.apply(t, f.app.ApplyRun, "acme", keys[i], m, false)
		}
		require.Empty(t, f.pub.take(), "nothing is published while replaying")
		require.NoError(t, f.app.RunsCaughtUp(t.Context()))
		done := payloads[*eventsv1.RunCompleted](f.pub.take())
		require.Len(t, done, 1)
		require.Equal(t, "run-1", done[0].GetRunId())
	})

	t.Run("a replayed run that has its RunCompleted is left alone", func(t *testing.T) {
		f := newFixture(t, store.NewMemory())
		f.apply(t, f.app.ApplyRun, "acme", "run-1", started, false)
		for i, m := range outcomes {
			f.apply(t, f.app.ApplyRun, "acme", keys[i], m, false)
		}
		f.apply(t, f.app.ApplyRun, "acme", "run-1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-1",
			State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, CompletedAt: timestamppb.New(t0)}, false)
		require.NoError(t, f.app.RunsCaughtUp(t.Context()))
		require.Empty(t, f.pub.take())
	})

	t.Run("unknown runs are not found", func(t *testing.T) {
		f := newFixture(t, store.NewMemory())
		f.ready(t)
		_, err := f.app.GetRun(t.Context(), domain.RunRef{Tenant: "acme", RunID: "run-404"})
		require.ErrorIs(t, err, domain.ErrNotFound)
	})
}

func TestRequestJobs(t *testing.T) {
	ctx := t.Context()
	started := &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1", Wave: 2, BaselineId: "b1",
		InstanceIds: []string{"i-2", "i-1", "i-2"}, PatchIds: []string{"p1"}}
	ev, err := events.New("acme", "run-1", started)
	require.NoError(t, err)

	f := newFixture(t, store.NewMemory())
	require.NoError(t, f.app.RequestJobs(ctx, ev, started))
	evs := f.pub.take()
	require.Len(t, evs, 2, "one job per distinct instance")
	require.Equal(t, "patch.acme.job.requested/run-1/i-1", evs[0].ID)
	job := evs[1].Data.(*eventsv1.JobRequested)
	require.True(t, proto.Equal(&eventsv1.JobRequested{Tenant: "acme", RunId: "run-1", Wave: 2, InstanceId: "i-2",
		BaselineId: "b1", PatchIds: []string{"p1"}}, job))

	require.NoError(t, f.app.RequestJobs(ctx, ev, started))
	require.Empty(t, f.pub.take(), "a redelivered RunStarted requests nothing again")
}

func TestJobMarksRebuild(t *testing.T) {
	started := &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1", Wave: 1, InstanceIds: []string{"i-1", "i-2", "i-3"}}
	job := func(id string) *eventsv1.JobRequested {
		return &eventsv1.JobRequested{Tenant: "acme", RunId: "run-1", Wave: 1, InstanceId: id}
	}
	ev, err := events.New("acme", "run-1", started)
	require.NoError(t, err)

	tests := []struct {
		name string
		jobs []string
		// want is the jobs RequestJobs publishes after the rebuild.
		want int
	}{
		{"every job in the stream marks the run", []string{"i-1", "i-2", "i-3"}, 0},
		{"repeated jobs count once", []string{"i-1", "i-1", "i-3", "i-2"}, 0},
		{"a publish cut short leaves the run unmarked", []string{"i-1", "i-3"}, 3},
		{"no job at all leaves the run unmarked", nil, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, store.NewMemory())
			f.apply(t, f.app.ApplyJobMark, "acme", "run-1", started, false)
			for _, id := range tt.jobs {
				f.apply(t, f.app.ApplyJobMark, "acme", "run-1/"+id, job(id), false)
			}
			require.NoError(t, f.app.RequestJobs(t.Context(), ev, started))
			require.Len(t, f.pub.take(), tt.want)
		})
	}

	t.Run("the bookkeeping is dropped once the run is marked", func(t *testing.T) {
		st := store.NewMemory()
		f := newFixture(t, st)
		f.apply(t, f.app.ApplyJobMark, "acme", "run-1", started, true)
		f.apply(t, f.app.ApplyJobMark, "acme", "run-1/i-1", job("i-1"), true)
		// RequestJobs runs while the projection is live, then the rest of the jobs arrive.
		require.NoError(t, f.app.RequestJobs(t.Context(), ev, started))
		for _, id := range []string{"i-2", "i-3"} {
			f.apply(t, f.app.ApplyJobMark, "acme", "run-1/"+id, job(id), true)
		}
		keys, err := st.Keys(t.Context(), "scheduler:jobs:")
		require.NoError(t, err)
		require.Empty(t, keys)
		marked, err := idem.New(st, "scheduler-jobs").Done(t.Context(), "acme/run-1")
		require.NoError(t, err)
		require.True(t, marked)
	})
}
