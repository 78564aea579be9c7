package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// runsModel is a read model: runs started per tenant, with what the projection reported.
type runsModel struct {
	mu        sync.Mutex
	runs      map[string][]string // tenant -> run ids in stream order
	seqs      []uint64
	live      []bool
	caughtUp  atomic.Int32
	appliedAt int // how many events were applied when CaughtUp ran
}

func newRunsModel() *runsModel { return &runsModel{runs: map[string][]string{}} }

func (m *runsModel) spec(name string, checkpoint uint64) bus.ProjectionSpec {
	return bus.ProjectionSpec{
		Name:     name,
		Subjects: []string{events.Pattern[*eventsv1.RunStarted]()},
		Checkpoint: func(context.Context) (uint64, error) {
			return checkpoint, nil
		},
		Apply: func(_ context.Context, ev *events.Event, live bool) error {
			rs, ok := ev.Data.(*eventsv1.RunStarted)
			if !ok {
				return bus.Permanent(fmt.Errorf("unexpected %s", ev.Type))
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			m.runs[ev.Tenant] = append(m.runs[ev.Tenant], rs.GetRunId())
			m.seqs = append(m.seqs, ev.Sequence)
			m.live = append(m.live, live)
			return nil
		},
		CaughtUp: func(context.Context) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.caughtUp.Add(1)
			m.appliedAt = len(m.seqs)
			return nil
		},
	}
}

func (m *runsModel) snapshot() (map[string][]string, []uint64, []bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	runs := map[string][]string{}
	for k, v := range m.runs {
		runs[k] = append([]string(nil), v...)
	}
	return runs, append([]uint64(nil), m.seqs...), append([]bool(nil), m.live...)
}

func (m *runsModel) applied() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seqs)
}

// seedRuns publishes n RunStarted events over two tenants, with other events in between.
func seedRuns(t *testing.T, b *bus.Bus, n int) {
	t.Helper()
	var evs []*events.Event
	for i := range n {
		tenant := []string{"acme", "globex"}[i%2]
		evs = append(evs, runStarted(t, tenant, fmt.Sprintf("run-%d", i)))
		evs = append(evs, jobRequested(t, tenant, fmt.Sprintf("run-%d", i), "i-1"))
	}
	require.NoError(t, b.Publish(t.Context(), evs...))
}

func TestProjectionReplayFromZeroGivesTheSameReadModel(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 50)

	first := newRunsModel()
	b1 := newBus(t, e.config(t, "reader"))
	require.NoError(t, b1.Project(first.spec("Runs", 0)))
	r1 := start(t, b1)
	runs1, seqs1, live1 := first.snapshot()
	require.Len(t, seqs1, 50, "Running waits for the catch-up")
	require.Len(t, runs1["acme"], 25)
	require.Equal(t, "run-0", runs1["acme"][0])
	for _, l := range live1 {
		require.False(t, l, "events stored before start are not live")
	}
	require.Equal(t, int32(1), first.caughtUp.Load())
	require.Equal(t, 50, first.appliedAt, "CaughtUp runs after the last stored event")

	// A live event.
	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "run-live")))
	require.Eventually(t, func() bool { return first.applied() == 51 }, eventually, tick)
	_, _, live1 = first.snapshot()
	require.True(t, live1[50], "an event published after catch-up is live")
	require.Equal(t, int32(1), first.caughtUp.Load(), "CaughtUp is called once")
	require.NoError(t, r1.stop(t))

	second := newRunsModel()
	b2 := newBus(t, e.config(t, "reader"))
	require.NoError(t, b2.Project(second.spec("Runs", 0)))
	start(t, b2)
	runs2, seqs2, _ := second.snapshot()
	runs1, seqs1, _ = first.snapshot()
	require.Equal(t, runs1, runs2, "a replay rebuilds the same read model")
	require.Equal(t, seqs1, seqs2)
	require.Equal(t, int32(1), second.caughtUp.Load())
}

func TestProjectionResumesAfterItsCheckpoint(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 10)

	full := newRunsModel()
	b1 := newBus(t, e.config(t, "reader"))
	require.NoError(t, b1.Project(full.spec("Runs", 0)))
	r1 := start(t, b1)
	_, seqs, _ := full.snapshot()
	require.NoError(t, r1.stop(t))

	checkpoint := seqs[5] // six events applied
	resumed := newRunsModel()
	b2 := newBus(t, e.config(t, "reader"))
	require.NoError(t, b2.Project(resumed.spec("Runs", checkpoint)))
	start(t, b2)
	_, got, live := resumed.snapshot()
	require.Equal(t, seqs[6:], got, "only the events after the checkpoint")
	for _, l := range live {
		require.False(t, l)
	}
	require.Equal(t, int32(1), resumed.caughtUp.Load())
}

func TestProjectionWithCheckpointAtTheEndIsCaughtUpAtOnce(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 3)
	last := e.msgs(t, events.StreamTenant, "patch.>")
	m := newRunsModel()
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(m.spec("Runs", last[len(last)-1].Sequence)))
	start(t, b)
	require.Equal(t, int32(1), m.caughtUp.Load())
	require.Zero(t, m.applied())

	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "later")))
	require.Eventually(t, func() bool { return m.applied() == 1 }, eventually, tick)
	_, _, live := m.snapshot()
	require.True(t, live[0])
}

func TestProjectionOverAFilterWithNothingStoredCatchesUp(t *testing.T) {
	tests := []struct {
		name     string
		subjects []string
	}{
		{"a filter no stored event matches", []string{events.Pattern[*eventsv1.BaselineApproved]()}},
		{"an empty stream", []string{events.Pattern[*eventsv1.BaselinePublished]()}},
		{"several filters none of which match", []string{"patch.nobody.>", "patch.*.notification.sent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			pub := newBus(t, e.config(t, "scheduler"))
			seedRuns(t, pub, 5)
			var caught atomic.Int32
			var applied atomic.Int32
			b := newBus(t, e.config(t, "reader"))
			require.NoError(t, b.Project(bus.ProjectionSpec{
				Name: "Empty", Subjects: tt.subjects,
				Apply:    func(context.Context, *events.Event, bool) error { applied.Add(1); return nil },
				CaughtUp: func(context.Context) error { caught.Add(1); return nil },
			}))
			begin := time.Now()
			start(t, b)
			require.Less(t, time.Since(begin), 5*time.Second)
			require.Equal(t, int32(1), caught.Load())
			require.Zero(t, applied.Load())
		})
	}
}

// The last stored event may not match the filter: the projection is caught up after the last
// one that does.
func TestProjectionCatchesUpWhenTheStreamEndsWithOtherEvents(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 5) // ends with a JobRequested
	m := newRunsModel()
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(m.spec("Runs", 0)))
	start(t, b)
	require.Equal(t, 5, m.applied())
	require.Equal(t, 5, m.appliedAt)
}

func TestHandlersStartOnlyAfterProjectionsCaughtUp(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	const n = 400
	seedRuns(t, pub, n)

	m := newRunsModel()
	b := newBus(t, e.config(t, "reader"))
	spec := m.spec("Runs", 0)
	apply := spec.Apply
	var applyCalls atomic.Int32
	spec.Apply = func(ctx context.Context, ev *events.Event, live bool) error {
		// The first attempt of some events fails: retried in place, never skipped.
		if applyCalls.Add(1)%97 == 0 {
			return errBoom
		}
		return apply(ctx, ev, live)
	}
	require.NoError(t, b.Project(spec))
	seen := make(chan int, n)
	require.NoError(t, bus.Handle(b, "ObserveOnJobRequested", func(context.Context, *events.Event, *eventsv1.JobRequested) error {
		seen <- m.applied()
		return nil
	}))
	start(t, b)
	for range n {
		select {
		case got := <-seen:
			require.Equal(t, n, got, "the handler sees the whole read model")
		case <-time.After(eventually):
			t.Fatal("handler not called")
		}
	}
	runs, _, _ := m.snapshot()
	require.Len(t, runs["acme"], n/2)
	require.Equal(t, expectedRuns(n, 0), runs["acme"], "every event applied once, in order")
}

func expectedRuns(n, parity int) []string {
	var out []string
	for i := range n {
		if i%2 == parity {
			out = append(out, fmt.Sprintf("run-%d", i))
		}
	}
	return out
}

func TestProjectionSkipsPermanentFailuresAndMalformedMessages(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "run-1")))
	_, err := e.js.Publish(t.Context(), "patch.acme.run.started", []byte("not an event"))
	require.NoError(t, err)
	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "skip-me"), runStarted(t, "acme", "run-2")))

	var mu sync.Mutex
	var got []string
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(bus.ProjectionSpec{
		Name: "Runs", Subjects: []string{"patch.acme.run.started"},
		Apply: func(_ context.Context, ev *events.Event, _ bool) error {
			if ev.Key == "skip-me" {
				return bus.Permanent(errBoom)
			}
			mu.Lock()
			got = append(got, ev.Key)
			mu.Unlock()
			return nil
		},
	}))
	start(t, b)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"run-1", "run-2"}, got)
}

func TestProjectionCaughtUpErrorStopsRun(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(bus.ProjectionSpec{
		Name: "Broken", Subjects: []string{"patch.>"},
		Apply:    func(context.Context, *events.Event, bool) error { return nil },
		CaughtUp: func(context.Context) error { return errBoom },
	}))
	r := startNoWait(t, b)
	select {
	case err := <-r.done:
		require.ErrorIs(t, err, errBoom)
		r.done <- err
	case <-time.After(eventually):
		t.Fatal("Run did not fail")
	}
	require.Error(t, b.Ready(t.Context()))
}

func TestProjectionCheckpointErrorStopsRun(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(bus.ProjectionSpec{
		Name: "Broken", Subjects: []string{"patch.>"},
		Checkpoint: func(context.Context) (uint64, error) { return 0, errBoom },
		Apply:      func(context.Context, *events.Event, bool) error { return nil },
	}))
	err := b.Run(t.Context())
	require.ErrorIs(t, err, errBoom)
	require.ErrorContains(t, err, "checkpoint")
}

func TestProjectionSurvivesAServerRestart(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 4)
	m := newRunsModel()
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(m.spec("Runs", 0)))
	start(t, b)
	require.Equal(t, 4, m.applied())

	e.srv.Restart(t)
	require.Eventually(t, e.nc.IsConnected, eventually, tick)
	require.Eventually(t, func() bool { return pub.Publish(t.Context(), runStarted(t, "acme", "after-restart")) == nil }, eventually, 100*time.Millisecond)
	require.Eventually(t, func() bool { return m.applied() == 5 }, 30*time.Second, tick)
	runs, seqs, _ := m.snapshot()
	require.Equal(t, "after-restart", runs["acme"][len(runs["acme"])-1])
	require.True(t, slicesSortedUnique(seqs), "no event applied twice: %v", seqs)
}

func slicesSortedUnique(s []uint64) bool {
	for i := 1; i < len(s); i++ {
		if s[i] <= s[i-1] {
			return false
		}
	}
	return true
}

func TestAProjectionReplaysFromItsCheckpointWhenAskedOrWhenApplySaysSo(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 6)

	m := newRunsModel()
	replay := make(chan struct{}, 1)
	spec := m.spec("Runs", 0)
	spec.Replay = replay
	apply := spec.Apply
	var failOnce atomic.Bool
	spec.Apply = func(ctx context.Context, ev *events.Event, live bool) error {
		if rs, ok := ev.Data.(*eventsv1.RunStarted); ok && rs.GetRunId() == "run-boom" && failOnce.CompareAndSwap(false, true) {
			return fmt.Errorf("store emptied: %w", bus.ErrReplay)
		}
		return apply(ctx, ev, live)
	}
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(spec))
	start(t, b)
	require.Equal(t, 6, m.applied())

	replay <- struct{}{}
	require.Eventually(t, func() bool { return m.applied() == 12 }, eventually, tick, "a replay applies the stream again from the checkpoint (0)")
	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "run-boom")))
	require.Eventually(t, func() bool { return m.applied() == 19 }, eventually, tick, "ErrReplay from Apply replays too, the failed event included")
	require.Equal(t, int32(1), m.caughtUp.Load(), "CaughtUp is called once")
}

func TestABatchingProjectionGetsTheStreamInOrderInBatches(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 1200)

	var mu sync.Mutex
	var seqs []uint64
	var sizes []int
	var mixed bool
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(bus.ProjectionSpec{
		Name: "Batches", Subjects: []string{events.Pattern[*eventsv1.RunStarted]()}, BatchSize: 500,
		ApplyBatch: func(_ context.Context, evs []*events.Event, live bool) error {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range evs {
				seqs = append(seqs, ev.Sequence)
			}
			sizes = append(sizes, len(evs))
			mixed = mixed || (live && len(seqs) <= 1200)
			return nil
		},
	}))
	start(t, b)
	mu.Lock()
	require.Len(t, seqs, 1200, "Running waits for the catch-up")
	require.True(t, slices.IsSorted(seqs))
	require.LessOrEqual(t, len(sizes), 10, "stored events come in batches: %v", sizes)
	for _, n := range sizes {
		require.LessOrEqual(t, n, 500)
	}
	mu.Unlock()
	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "run-live")))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seqs) == 1201 }, eventually, tick)
	mu.Lock()
	require.False(t, mixed, "no batch mixes replayed and live events")
	mu.Unlock()
}

// The projections of a bus on one stream read it through one ordered consumer, and each keeps
// its own checkpoint, catch-up, batches and replays.
func TestProjectionsOfABusShareAConsumerAndEachKeepsItsCheckpoint(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 6) // RunStarted and JobRequested, over acme and globex
	stored := e.msgs(t, events.StreamTenant, "patch.>")
	require.Len(t, stored, 12)

	all := newRunsModel()      // RunStarted from the start
	resumed := newRunsModel()  // RunStarted after the third
	jobs := newRunsModel()     // JobRequested and RunStarted
	wide := newRunsModel()     // one tenant's everything: overlaps the others, its own group
	atTheEnd := newRunsModel() // checkpoint at the end: caught up at once
	replay := make(chan struct{}, 1)
	specAll := all.spec("All", 0)
	specAll.Replay = replay
	specResumed := resumed.spec("Resumed", stored[4].Sequence)
	specJobs := jobs.spec("Jobs", 0)
	specJobs.Subjects = []string{events.Pattern[*eventsv1.JobRequested](), events.Pattern[*eventsv1.RunStarted]()}
	specJobs.Apply = func(_ context.Context, ev *events.Event, live bool) error {
		jobs.mu.Lock()
		defer jobs.mu.Unlock()
		jobs.seqs = append(jobs.seqs, ev.Sequence)
		jobs.live = append(jobs.live, live)
		return nil
	}
	specWide := wide.spec("Wide", 0)
	specWide.Subjects = []string{"patch.acme.>"}
	specWide.Apply = func(_ context.Context, ev *events.Event, live bool) error {
		require.Equal(t, "acme", ev.Tenant)
		wide.mu.Lock()
		defer wide.mu.Unlock()
		wide.seqs = append(wide.seqs, ev.Sequence)
		wide.live = append(wide.live, live)
		return nil
	}
	specEnd := atTheEnd.spec("AtTheEnd", stored[11].Sequence)

	b := newBus(t, e.config(t, "reader"))
	for _, s := range []bus.ProjectionSpec{specAll, specResumed, specJobs, specWide, specEnd} {
		require.NoError(t, b.Project(s))
	}
	s, err := e.js.Stream(t.Context(), events.StreamTenant)
	require.NoError(t, err)
	before, err := s.Info(t.Context())
	require.NoError(t, err)
	start(t, b)
	after, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, after.State.Consumers-before.State.Consumers, "one ordered consumer for the four that merge, one for the overlapping filter")

	seqsOf := func(from int, step int) []uint64 {
		var out []uint64
		for i := from; i < len(stored); i += step {
			out = append(out, stored[i].Sequence)
		}
		return out
	}
	_, got, _ := all.snapshot()
	require.Equal(t, seqsOf(0, 2), got)
	_, got, _ = resumed.snapshot()
	require.Equal(t, seqsOf(6, 2), got, "only what follows its checkpoint")
	_, got, _ = jobs.snapshot()
	require.Equal(t, seqsOf(0, 1), got)
	_, got, _ = wide.snapshot()
	require.Equal(t, []uint64{stored[0].Sequence, stored[1].Sequence, stored[4].Sequence, stored[5].Sequence, stored[8].Sequence, stored[9].Sequence}, got, "acme's runs and jobs")
	require.Zero(t, atTheEnd.applied())
	for _, m := range []*runsModel{all, resumed, atTheEnd} {
		require.Equal(t, int32(1), m.caughtUp.Load())
		require.Equal(t, m.applied(), m.appliedAt, "CaughtUp runs after exactly the stored events")
	}

	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "run-live")))
	require.Eventually(t, func() bool {
		return all.applied() == 7 && resumed.applied() == 4 && jobs.applied() == 13 && wide.applied() == 7 && atTheEnd.applied() == 1
	}, eventually, tick)
	for _, m := range []*runsModel{all, resumed, jobs, wide, atTheEnd} {
		_, _, live := m.snapshot()
		require.True(t, live[len(live)-1], "a new event is live")
		require.False(t, m.applied() > 1 && live[len(live)-2] && m != atTheEnd, "a stored one is not")
	}

	// A replay of one projection reads the stream again for it alone.
	replay <- struct{}{}
	require.Eventually(t, func() bool { return all.applied() == 14 }, eventually, tick)
	require.NoError(t, pub.Publish(t.Context(), jobRequested(t, "globex", "run-live", "i-9"), runStarted(t, "globex", "run-after")))
	require.Eventually(t, func() bool { return jobs.applied() == 15 && all.applied() == 15 }, eventually, tick)
	require.Equal(t, 4+1, resumed.applied(), "the others go on from where they were")
	require.Equal(t, 7, wide.applied())
	_, got, live := all.snapshot()
	require.Equal(t, got[:7], got[7:14], "the replay reads from the checkpoint (0) again")
	require.Equal(t, []bool{false, false, false, false, false, false, false, true}, live[7:], "replayed events are not live, a new one is")
	require.Equal(t, int32(1), all.caughtUp.Load(), "CaughtUp is called once")
}

// A group of projections reads the stream from where its members have something to read, not
// from the oldest checkpoint among them: a projection whose subjects are quiet, or have never had
// a message, does not make a restarted service read the whole stream again.
func TestAGroupReadsOnlyWhatItsProjectionsHaveStillToApply(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 50) // RunStarted and JobRequested alternating
	stored := e.msgs(t, events.StreamTenant, "patch.>")
	require.Len(t, stored, 100)

	runs := newRunsModel() // has applied everything
	jobs := newRunsModel() // has applied the job requests up to stored[89]
	quiet := newRunsModel()
	specRuns := runs.spec("Runs", stored[99].Sequence)
	specJobs := jobs.spec("Jobs", stored[89].Sequence)
	specJobs.Subjects = []string{events.Pattern[*eventsv1.JobRequested]()}
	specJobs.Apply = func(_ context.Context, ev *events.Event, live bool) error {
		jobs.mu.Lock()
		defer jobs.mu.Unlock()
		jobs.seqs = append(jobs.seqs, ev.Sequence)
		jobs.live = append(jobs.live, live)
		return nil
	}
	specQuiet := quiet.spec("Quiet", 0) // nothing was ever stored on its subject
	specQuiet.Subjects = []string{events.Pattern[*eventsv1.RunCompleted]()}

	cfg := e.config(t, "reporting")
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b := newBus(t, cfg)
	for _, s := range []bus.ProjectionSpec{specRuns, specJobs, specQuiet} {
		require.NoError(t, b.Project(s))
	}
	start(t, b)

	_, got, _ := jobs.snapshot()
	require.Equal(t, []uint64{stored[91].Sequence, stored[93].Sequence, stored[95].Sequence, stored[97].Sequence, stored[99].Sequence}, got)
	require.Zero(t, runs.applied())
	require.Zero(t, quiet.applied())
	for _, m := range []*runsModel{runs, jobs, quiet} {
		require.Equal(t, int32(1), m.caughtUp.Load())
	}
	require.InDelta(t, 9, counterValue(t, reg, "patchwave_bus_projection_read_total"), 0,
		"the group starts after stored[90], before the first job request Jobs has not applied, not at Quiet's checkpoint 0")

	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "run-live")))
	require.Eventually(t, func() bool { return runs.applied() == 1 }, eventually, tick)
	require.InDelta(t, 10, counterValue(t, reg, "patchwave_bus_projection_read_total"), 0)
}

// TestAPipelinedProjectionIsSettledBeforeItCountsAsCaughtUp: an ApplyBatch that returns with
// its write under way (a pipelined replay) is settled before CaughtUp, even when Settle fails
// at first (it is retried), and again whenever no batch waits, so an idle projection has
// nothing under way.
func TestAPipelinedProjectionIsSettledBeforeItCountsAsCaughtUp(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 1200)

	var mu sync.Mutex
	var applied, settled, settleCalls int
	underwayAtCaughtUp := -1
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(bus.ProjectionSpec{
		Name: "Pipelined", Subjects: []string{events.Pattern[*eventsv1.RunStarted]()}, BatchSize: 500,
		ApplyBatch: func(_ context.Context, evs []*events.Event, _ bool) error {
			mu.Lock()
			defer mu.Unlock()
			applied += len(evs) // under way until Settle
			return nil
		},
		Settle: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			settleCalls++
			if settleCalls == 1 && applied > settled {
				return errors.New("redis: connection reset")
			}
			settled = applied
			return nil
		},
		CaughtUp: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			underwayAtCaughtUp = applied - settled
			return nil
		},
	}))
	start(t, b)
	mu.Lock()
	require.Equal(t, 1200, applied)
	require.Equal(t, 1200, settled, "Running waits for the settled catch-up")
	require.Zero(t, underwayAtCaughtUp, "CaughtUp is called once nothing is under way")
	mu.Unlock()

	require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", "run-live")))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return settled == 1201 }, eventually, tick,
		"an idle projection is settled")
}

// A service's projections read through an ordered consumer named after the service, and the
// events they decode go through the process's decode cache.
func TestProjectionGroupsConsumerIsNamedAfterTheServiceAndDecodesThroughTheCache(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	seedRuns(t, pub, 10)

	first, second := newRunsModel(), newRunsModel()
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(first.spec("Runs", 0)))
	require.NoError(t, b.Project(second.spec("RunsAgain", 0)))
	start(t, b)
	require.Equal(t, 10, first.applied())
	require.Equal(t, 10, second.applied())
	// A replay decodes on its own (it would only push live events out of the cache); live
	// events go through the cache.
	hits0, misses0 := bus.DecodeStats()
	for i := range 5 {
		require.NoError(t, pub.Publish(t.Context(), runStarted(t, "acme", fmt.Sprintf("run-live-%d", i))))
	}
	require.Eventually(t, func() bool { return first.applied() == 15 && second.applied() == 15 }, eventually, tick)

	stream, err := e.js.Stream(t.Context(), events.StreamTenant)
	require.NoError(t, err)
	var names []string
	for ci := range stream.ListConsumers(t.Context()).Info() {
		names = append(names, ci.Name)
	}
	require.Len(t, names, 1, "one ordered consumer for the group: %v", names)
	require.True(t, strings.HasPrefix(names[0], "reader_projections_"), names[0])
	hits, misses := bus.DecodeStats()
	require.GreaterOrEqual(t, (hits-hits0)+(misses-misses0), uint64(5), "every live event read is looked up in the cache")
}
