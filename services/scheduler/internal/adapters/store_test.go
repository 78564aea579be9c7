package adapters_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/adapters"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// stores runs a test against the memory store and a real redis-server.
func stores(t *testing.T, test func(t *testing.T, repo *adapters.Store)) {
	t.Run("memory", func(t *testing.T) { test(t, adapters.New(store.NewMemory())) })
	t.Run("redis", func(t *testing.T) {
		r := testkit.StartRedis(t)
		st := store.NewRedisFromClient(r.Client(t), "test:")
		test(t, adapters.New(st))
	})
}

var t0 = time.Date(2026, 11, 23, 15, 48, 0, 0, time.UTC)

func TestBaselines(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		_, ok, err := repo.Baseline(ctx, "b1")
		require.NoError(t, err)
		require.False(t, ok, "an unknown baseline is not found")

		b1 := domain.Baseline{ID: "b1", OSFamily: "amazon-linux-2023", Version: 1, PatchIDs: []string{"p1", "p2"}, PublishedAt: t0}
		b2 := domain.Baseline{ID: "b2", OSFamily: "amazon-linux-2023", Version: 2, PatchIDs: []string{"p3"}, PublishedAt: t0.Add(time.Hour)}
		require.NoError(t, repo.PutBaseline(ctx, b1))
		require.NoError(t, repo.PutBaseline(ctx, b2))
		require.NoError(t, repo.PutBaseline(ctx, b1), "a repeat is harmless")

		got, ok, err := repo.Baseline(ctx, "b1")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, b1, got)
		all, err := repo.Baselines(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, []domain.Baseline{b1, b2}, all)
	})
}

func TestRunReadModel(t *testing.T) {
	started := domain.Run{Tenant: "acme", ID: "run-1", Wave: 2, BaselineID: "b1", Total: 3, StartedAt: t0}
	tests := []struct {
		name string
		// completedFirst applies run.completed before run.started, as a lagging replica may.
		completedFirst bool
	}{
		{"started then completed", false},
		{"completed then started", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stores(t, func(t *testing.T, repo *adapters.Store) {
				ctx := t.Context()
				complete := func() {
					require.NoError(t, repo.RunCompleted(ctx, "acme", "run-1", typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, t0.Add(time.Hour)))
				}
				if tt.completedFirst {
					complete()
				}
				require.NoError(t, repo.RunStarted(ctx, started))
				if !tt.completedFirst {
					complete()
				}
				r, ok, err := repo.Run(ctx, "acme", "run-1")
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, r.State)
				require.Equal(t, t0.Add(time.Hour), r.CompletedAt)
				require.Equal(t, 3, r.Total)
				require.Equal(t, int32(2), r.Wave)
			})
		})
	}
}

func TestOutcomesAreIdempotent(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		require.NoError(t, repo.RunStarted(ctx, domain.Run{Tenant: "acme", ID: "run-1", Wave: 1, Total: 3, StartedAt: t0}))
		for range 2 { // a replay applies everything again
			require.NoError(t, repo.AddOutcome(ctx, "acme", "run-1", "i-1", domain.OutcomeSnapshotted))
			require.NoError(t, repo.AddOutcome(ctx, "acme", "run-1", "i-1", domain.OutcomeSucceeded))
			require.NoError(t, repo.AddOutcome(ctx, "acme", "run-1", "i-2", domain.OutcomeSnapshotted))
			require.NoError(t, repo.AddOutcome(ctx, "acme", "run-1", "i-2", domain.OutcomeFailed))
			require.NoError(t, repo.AddOutcome(ctx, "acme", "run-1", "i-3", domain.OutcomeSnapshotFailed))
		}
		r, ok, err := repo.Run(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, domain.Run{
			Tenant: "acme", ID: "run-1", Wave: 1, State: typesv1.RunState_RUN_STATE_RUNNING, Total: 3,
			Snapshotted: 2, Succeeded: 1, Failed: 1, SnapshotFailed: 1, StartedAt: t0,
		}, r)
		done, err := repo.Done(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.Equal(t, 3, done)

		_, ok, err = repo.Run(ctx, "acme", "run-unknown")
		require.NoError(t, err)
		require.False(t, ok)
	})
}

func TestRunsNewestFirstAndOpenIndex(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		for i, id := range []string{"run-b", "run-a", "run-c"} {
			require.NoError(t, repo.RunStarted(ctx, domain.Run{Tenant: "acme", ID: id, Wave: 1, StartedAt: t0.Add(time.Duration(i) * time.Minute)}))
		}
		require.NoError(t, repo.RunStarted(ctx, domain.Run{Tenant: "other", ID: "run-x", Wave: 1, StartedAt: t0}))
		runs, err := repo.Runs(ctx, "acme")
		require.NoError(t, err)
		var ids []string
		for _, r := range runs {
			ids = append(ids, r.ID)
		}
		require.Equal(t, []string{"run-c", "run-a", "run-b"}, ids)

		none, err := repo.Runs(ctx, "nobody")
		require.NoError(t, err)
		require.Empty(t, none)

		require.NoError(t, repo.RunCompleted(ctx, "acme", "run-a", typesv1.RunState_RUN_STATE_COMPLETED, t0))
		require.NoError(t, repo.UnindexOpen(ctx, "other", "run-x"))
		open, err := repo.OpenRuns(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, []domain.RunRef{{Tenant: "acme", RunID: "run-b"}, {Tenant: "acme", RunID: "run-c"}}, open)
	})
}

func TestJobBookkeepingAndCheckpoints(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		require.NoError(t, repo.RunStarted(ctx, domain.Run{Tenant: "acme", ID: "run-1", Wave: 1, Total: 3, StartedAt: t0,
			Detail: domain.RunDetail{Eligible: 3, MembershipID: "m1", Chunks: 1, Limits: domain.Limits{MaxInFlight: 2, ErrorBudget: 1, StopAt: t0.Add(time.Hour), StopReason: "cutoff"},
				Pins: []domain.Pin{{OSFamily: "amazon-linux-2023", BaselineID: "b1", Version: 1, PatchIDs: []string{"p1"}}}}}))
		require.NoError(t, repo.PutChunk(ctx, "acme", "run-1", "m1", 0, []byte("chunk")))
		data, ok, err := repo.Chunk(ctx, "acme", "run-1", "m1", 0)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, []byte("chunk"), data)
		_, ok, err = repo.Chunk(ctx, "acme", "run-1", "other", 0)
		require.NoError(t, err)
		require.False(t, ok, "another membership's chunk is not this one")

		for _, id := range []string{"i-1", "i-2", "i-1"} {
			require.NoError(t, repo.AddRequested(ctx, "acme", "run-1", id))
		}
		ids, err := repo.RequestedIDs(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"i-1", "i-2"}, ids, "a repeated job counts once")
		require.NoError(t, repo.AddOutcome(ctx, "acme", "run-1", "i-1", domain.OutcomeFailed))
		failed, err := repo.OutcomeIDs(ctx, "acme", "run-1", domain.OutcomeFailed)
		require.NoError(t, err)
		require.Equal(t, []string{"i-1"}, failed)

		r, ok, err := repo.Run(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, 2, r.Requested)
		require.Equal(t, 1, r.Failed)
		require.Equal(t, "cutoff", r.Detail.Limits.StopReason)
		require.Equal(t, t0.Add(time.Hour), r.Detail.Limits.StopAt)
		require.Equal(t, "b1", r.Detail.Pins[0].BaselineID)
		require.False(t, r.Paused)

		// Pauses and resumes applied in any order: the latest by stream sequence wins.
		require.NoError(t, repo.RunControl(ctx, "acme", "run-1", domain.ControlResumed, 20, t0))
		require.NoError(t, repo.RunControl(ctx, "acme", "run-1", domain.ControlPaused, 10, t0))
		r, _, err = repo.Run(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.False(t, r.Paused, "a resume after the pause wins")
		require.NoError(t, repo.RunControl(ctx, "acme", "run-1", domain.ControlPaused, 30, t0))
		r, _, err = repo.Run(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.True(t, r.Paused)
		require.NoError(t, repo.RunControl(ctx, "acme", "run-1", domain.ControlStopped, 31, t0))
		require.NoError(t, repo.RunControl(ctx, "acme", "run-1", domain.ControlHalted, 32, t0))
		require.NoError(t, repo.RunControl(ctx, "acme", "run-1", domain.ControlCancelled, 33, t0))
		r, _, err = repo.Run(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.True(t, r.Stopped)
		require.Equal(t, typesv1.RunState_RUN_STATE_HALTED, r.State, "halted first: a later cancel does not change it")

		cp, err := repo.Checkpoint(ctx, "runs")
		require.NoError(t, err)
		require.Zero(t, cp)
		require.NoError(t, repo.SetCheckpoint(ctx, "runs", 42))
		cp, err = repo.Checkpoint(ctx, "runs")
		require.NoError(t, err)
		require.Equal(t, uint64(42), cp)
	})
}
