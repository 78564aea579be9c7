package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/app"
)

// faulty is a Redis store whose Updates the test can hold (gate) or fail (fail says, for the
// n-th Update from 1, the error it returns instead of writing).
type faulty struct {
	store.Store
	mu    sync.Mutex
	calls int
	fail  func(n int) error
	// lose says, for the n-th Update, to report an error after writing (a reply lost).
	lose func(n int) bool
	// before, when set, runs before the n-th Update.
	before func(n int)
	gate   chan struct{}
}

func (f *faulty) Update(ctx context.Context, guard string, want []byte, ws ...store.Write) (bool, error) {
	f.mu.Lock()
	f.calls++
	n, fail, gate, before := f.calls, f.fail, f.gate, f.before
	f.mu.Unlock()
	if before != nil {
		before(n)
	}
	if gate != nil {
		<-gate
	}
	if fail != nil {
		if err := fail(n); err != nil {
			return false, err
		}
	}
	ok, err := f.Store.(store.Updater).Update(ctx, guard, want, ws...)
	if err == nil && f.lose != nil && f.lose(n) {
		return false, errors.New("redis update: i/o timeout")
	}
	return ok, err
}

func (f *faulty) GetMany(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	return f.Store.(store.MultiGetter).GetMany(ctx, keys)
}

func (f *faulty) SCardMany(ctx context.Context, keys []string) ([]int, error) {
	return f.Store.(store.MultiCarder).SCardMany(ctx, keys)
}

func (f *faulty) SMembersSCardMany(ctx context.Context, set string, keys []string) ([]string, []int, error) {
	return f.Store.(store.MultiCarder).SMembersSCardMany(ctx, set, keys)
}

func appOver(st store.Store) *app.Application {
	return app.New(adapters.New(st), tenants, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })
}

// fleetEvents is a cycle of two runs, 40 and 25 instances, each installed (every seventh
// failed), in batches of 9 events: the runs' instances span batches, and a batch changes
// instances the batch before it wrote.
func fleetEvents(t *testing.T) [][]*events.Event {
	t.Helper()
	var evs []*events.Event
	seq := uint64(0)
	add := func(e *events.Event) { evs = append(evs, e) }
	for r, n := range []int{40, 25} {
		run := fmt.Sprintf("r%d", r+1)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("i-%d-%02d", r, i)
		}
		seq++
		add(ev(t, seq, started(run, int32(r+1), ids...)))
		for i, id := range ids {
			seq++
			if i%7 == 0 {
				add(ev(t, seq, failed(run, int32(r+1), id, "p1")))
			} else {
				add(ev(t, seq, succeeded(run, int32(r+1), id, "p1", "p2")))
			}
		}
		// A second outcome for a few: the instance changes again in a later batch.
		for _, id := range ids[:5] {
			seq++
			add(ev(t, seq, succeeded(run, int32(r+1), id, "p1", "p2")))
		}
	}
	var batches [][]*events.Event
	for i := 0; i < len(evs); i += 9 {
		batches = append(batches, evs[i:min(i+9, len(evs))])
	}
	return batches
}

func eventCount(batches [][]*events.Event) int {
	n := 0
	for _, b := range batches {
		n += len(b)
	}
	return n
}

// dump reads every key of a store with its value, whatever its type.
func dump(t *testing.T, st store.Store) map[string]any {
	t.Helper()
	ctx := t.Context()
	keys, err := st.Keys(ctx, "")
	require.NoError(t, err)
	out := map[string]any{}
	for _, k := range keys {
		if v, found, err := st.Get(ctx, k); err == nil {
			require.True(t, found, k)
			out[k] = string(v)
			continue
		} else if !errors.Is(err, store.ErrWrongType) {
			require.NoError(t, err)
		}
		if ms, err := st.SMembers(ctx, k); err == nil {
			out[k] = ms
			continue
		}
		h, err := st.HGetAll(ctx, k)
		require.NoError(t, err, k)
		out[k] = h
	}
	return out
}

// reference applies the batches one by one, live (each committed before the next), into a
// fresh namespace of client, and returns what that wrote.
func reference(t *testing.T, client *goredis.Client, batches [][]*events.Event) map[string]any {
	t.Helper()
	st := store.NewRedisFromClient(client, "ref:")
	a := appOver(st)
	for _, b := range batches {
		require.NoError(t, a.ApplyBatch(t.Context(), b, true))
	}
	require.Equal(t, eventCount(batches), a.Applied())
	return dump(t, st)
}

// settle settles a until it succeeds, as the bus does (it retries errors).
func settle(t *testing.T, a *app.Application) {
	t.Helper()
	for range 5 {
		if err := a.Settle(t.Context()); err == nil {
			return
		}
	}
	t.Fatal("settle kept failing")
}

// TestAPipelinedReplayWritesWhatOneBatchAtATimeWrites: replayed batches are applied while the
// commit before them is under way; the read model they leave is key for key and value for value
// the one batches committed one at a time leave, and every event counts once.
func TestAPipelinedReplayWritesWhatOneBatchAtATimeWrites(t *testing.T) {
	client := testkit.StartRedis(t).Client(t)
	batches := fleetEvents(t)
	want := reference(t, client, batches)

	st := store.NewRedisFromClient(client, "pipe:")
	a := appOver(st)
	for _, b := range batches {
		require.NoError(t, a.ApplyBatch(t.Context(), b, false))
	}
	require.NoError(t, a.CaughtUp(t.Context()))
	require.Equal(t, eventCount(batches), a.Applied())
	require.Equal(t, want, dump(t, st))
}

// TestACommitThatFailsIsAppliedAgain: a replayed batch whose commit fails (a transient Redis
// error) while the next batch is folded on its writes loses nothing: its events are applied
// again, with the next batch's, and the read model is the one of a run without failures; so is
// it when the last commit fails, which Settle makes good.
func TestACommitThatFailsIsAppliedAgain(t *testing.T) {
	client := testkit.StartRedis(t).Client(t)
	batches := fleetEvents(t)
	want := reference(t, client, batches)
	for name, failAt := range map[string]int{"a commit in the middle": 3, "the last commit": len(batches)} {
		t.Run(name, func(t *testing.T) {
			st := &faulty{Store: store.NewRedisFromClient(client, name+":")}
			st.fail = func(n int) error {
				if n == failAt {
					return errors.New("redis update: connection reset by peer")
				}
				return nil
			}
			a := appOver(st)
			for _, b := range batches {
				require.NoError(t, a.ApplyBatch(t.Context(), b, false))
			}
			settle(t, a)
			require.GreaterOrEqual(t, st.calls, failAt, "the commit failed")
			require.NoError(t, a.CaughtUp(t.Context()))
			require.Equal(t, eventCount(batches), a.Applied())
			require.Equal(t, want, dump(t, st.Store))
		})
	}
	t.Run("a commit that applied but lost its reply", func(t *testing.T) {
		st := &faulty{Store: store.NewRedisFromClient(client, "lost:")}
		st.lose = func(n int) bool { return n == 2 || n == len(batches) }
		a := appOver(st)
		for _, b := range batches {
			require.NoError(t, a.ApplyBatch(t.Context(), b, false))
		}
		settle(t, a)
		require.Equal(t, eventCount(batches), a.Applied(), "its events count once")
		require.Equal(t, len(batches), st.calls, "and are not applied again")
		require.Equal(t, want, dump(t, st.Store))
	})
}

// TestACommitThatTimesOutIsAppliedAgainOnce: a replayed batch's MULTI/EXEC that redis-server
// answers later than the client's read timeout (the server paused, as one that gets no CPU is)
// fails with the timeout; its events are applied again, once, and the read model is the one of
// a run without timeouts.
func TestACommitThatTimesOutIsAppliedAgainOnce(t *testing.T) {
	srv := testkit.StartRedis(t)
	client := srv.Client(t)
	batches := fleetEvents(t)
	want := reference(t, client, batches)

	impatient := goredis.NewClient(store.RedisOptions(store.RedisConfig{Addr: srv.Addr(), ReadTimeout: 50 * time.Millisecond}))
	t.Cleanup(func() { _ = impatient.Close() })
	st := &faulty{Store: store.NewRedisFromClient(impatient, "late:")}
	const lateAt = 3
	st.before = func(n int) {
		switch n {
		case lateAt: // every write waits 300 ms: this commit's reply comes too late
			require.NoError(t, client.Do(t.Context(), "client", "pause", "300", "write").Err())
		case lateAt + 1: // the next commit is sent once the server writes again
			require.NoError(t, srv.Client(t).Set(t.Context(), "probe", "1", 0).Err())
		}
	}
	a := appOver(st)
	for _, b := range batches {
		require.NoError(t, a.ApplyBatch(t.Context(), b, false))
	}
	settle(t, a)
	require.NoError(t, a.CaughtUp(t.Context()))
	require.Equal(t, 1, a.Reapplied(), "the late commit was applied again")
	require.Equal(t, eventCount(batches), a.Applied(), "every event counts once")
	require.Equal(t, want, dump(t, st.Store))
}

// TestAReplicaAheadOfACommitUnderWay: while a replica's replayed batch is being committed,
// another replica over the same Redis applies further: the first one's guard fails, and it
// skips what the other applied and applies the rest on the other's data. Both leave the read
// model one replica leaves.
func TestAReplicaAheadOfACommitUnderWay(t *testing.T) {
	client := testkit.StartRedis(t).Client(t)
	batches := fleetEvents(t)
	want := reference(t, client, batches)

	gate := make(chan struct{})
	one := &faulty{Store: store.NewRedisFromClient(client, "shared:"), gate: gate}
	a := appOver(one)
	b := appOver(store.NewRedisFromClient(client, "shared:"))
	require.NoError(t, a.ApplyBatch(t.Context(), batches[0], false)) // under way, held at the gate
	require.NoError(t, b.ApplyBatch(t.Context(), batches[0], true))
	require.NoError(t, b.ApplyBatch(t.Context(), batches[1], true))
	require.NoError(t, b.ApplyBatch(t.Context(), batches[2][:4], true))
	close(gate)
	for _, batch := range batches[1:] {
		require.NoError(t, a.ApplyBatch(t.Context(), batch, false))
	}
	settle(t, a)
	require.Equal(t, want, dump(t, one.Store))
	require.Equal(t, eventCount(batches)-(len(batches[0])+len(batches[1])+4), a.Applied(),
		"the first replica committed only what the other had not")
}

// TestAFlushUnderACommitUnderWayReplays: the store is flushed while a replayed batch's commit
// is under way: its guard fails, the checkpoint is gone, and the projection asks for a replay.
func TestAFlushUnderACommitUnderWayReplays(t *testing.T) {
	client := testkit.StartRedis(t).Client(t)
	batches := fleetEvents(t)
	st := &faulty{Store: store.NewRedisFromClient(client, "flush:")}
	a := appOver(st)
	require.NoError(t, a.ApplyBatch(t.Context(), batches[0], true))
	gate := make(chan struct{})
	st.mu.Lock()
	st.gate = gate
	st.mu.Unlock()
	require.NoError(t, a.ApplyBatch(t.Context(), batches[1], false))
	require.NoError(t, st.FlushPrefix(t.Context(), ""))
	close(gate)
	err := a.ApplyBatch(t.Context(), batches[2], false)
	require.ErrorIs(t, err, bus.ErrReplay)

	// The replay: from the checkpoint (none), every batch again.
	cp, err := a.Checkpoint(t.Context())
	require.NoError(t, err)
	require.Zero(t, cp)
	for _, b := range batches {
		require.NoError(t, a.ApplyBatch(t.Context(), b, false))
	}
	settle(t, a)
	require.Equal(t, reference(t, client, batches), dump(t, st.Store))
}

// TestCaughtUpMeansCommitted: CaughtUp returns only once the last replayed batch is in Redis,
// with the count of every event; a live batch after replayed ones is committed when
// ApplyBatch returns.
func TestCaughtUpMeansCommitted(t *testing.T) {
	client := testkit.StartRedis(t).Client(t)
	batches := fleetEvents(t)
	gate := make(chan struct{})
	st := &faulty{Store: store.NewRedisFromClient(client, "cu:"), gate: gate}
	a := appOver(st)
	replayed, live := batches[:len(batches)-1], batches[len(batches)-1]
	close(gate) // every commit but the last goes through
	for _, b := range replayed[:len(replayed)-1] {
		require.NoError(t, a.ApplyBatch(t.Context(), b, false))
	}
	require.NoError(t, a.Settle(t.Context())) // nothing under way holds the gate below
	hold := make(chan struct{})
	st.mu.Lock()
	st.gate = hold
	st.mu.Unlock()
	last := replayed[len(replayed)-1]
	require.NoError(t, a.ApplyBatch(t.Context(), last, false))

	caughtUp := make(chan error, 1)
	go func() { caughtUp <- a.CaughtUp(context.Background()) }()
	close(hold)
	require.NoError(t, <-caughtUp)
	cp, _, err := st.Get(t.Context(), "reporting:checkpoint")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(last[len(last)-1].Sequence), string(cp), "the last replayed batch is committed")
	require.Equal(t, eventCount(replayed), a.Applied())

	require.NoError(t, a.ApplyBatch(t.Context(), live, true))
	cp, _, err = st.Get(t.Context(), "reporting:checkpoint")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(live[len(live)-1].Sequence), string(cp), "a live batch is committed when ApplyBatch returns")
	require.Equal(t, eventCount(batches), a.Applied())
}

// TestAHugeReplayedBatchWritesAheadOfItsCommitAfterTheOneUnderWay: a replayed batch whose
// run.started names more instances than a batch holds writes them ahead of its commit, once
// the commit under way before it applied; the read model is the one of batches one at a time.
func TestAHugeReplayedBatchWritesAheadOfItsCommitAfterTheOneUnderWay(t *testing.T) {
	client := testkit.StartRedis(t).Client(t)
	ids := make([]string, 30_001)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%05d", i)
	}
	batches := [][]*events.Event{
		{ev(t, 1, started("r1", 1, ids[:10]...)), ev(t, 2, succeeded("r1", 1, ids[0], "p1"))},
		{ev(t, 3, started("r2", 2, ids...)), ev(t, 4, failed("r2", 2, ids[0], "p1")), ev(t, 5, succeeded("r2", 2, ids[30_000], "p1"))},
		{ev(t, 6, succeeded("r2", 2, ids[1], "p1"))},
	}
	want := reference(t, client, batches)
	st := &faulty{Store: store.NewRedisFromClient(client, "huge:")}
	a := appOver(st)
	for _, b := range batches {
		require.NoError(t, a.ApplyBatch(t.Context(), b, false))
	}
	settle(t, a)
	require.Equal(t, 4, st.calls, "three commits and one write ahead")
	require.Equal(t, eventCount(batches), a.Applied())
	require.Equal(t, want, dump(t, st.Store))
}
