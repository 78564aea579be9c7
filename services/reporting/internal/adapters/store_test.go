package adapters_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// stores runs a test against the memory store and a real redis-server.
func stores(t *testing.T, test func(t *testing.T, repo *adapters.Store)) {
	t.Run("memory", func(t *testing.T) { test(t, adapters.New(store.NewMemory())) })
	t.Run("redis", func(t *testing.T) {
		test(t, adapters.New(store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "test:")))
	})
}

func TestInstancesMoveBetweenBuckets(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		prev, found, err := repo.Instance(ctx, "acme", "i-1")
		require.NoError(t, err)
		require.False(t, found)
		require.Equal(t, domain.Instance{Tenant: "acme", ID: "i-1"}, prev)

		in, _ := prev.InScope(1, "run-1", 5)
		require.NoError(t, repo.SaveInstance(ctx, prev, false, in))
		other := domain.Instance{Tenant: "acme", ID: "i-2"}
		o2, _ := other.InScope(1, "run-1", 5)
		require.NoError(t, repo.SaveInstance(ctx, other, false, o2))

		got, found, err := repo.Instance(ctx, "acme", "i-1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, in, got)

		ok, _ := got.Assess(typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT, 1, "run-1", 9)
		for range 2 { // applying the same change twice is harmless
			require.NoError(t, repo.SaveInstance(ctx, got, true, ok))
		}
		moved, _ := ok.InScope(2, "run-2", 12)
		require.NoError(t, repo.SaveInstance(ctx, ok, true, moved))

		cov, err := repo.Coverage(ctx, "acme")
		require.NoError(t, err)
		report := domain.NewReport("acme", cov)
		require.Equal(t, domain.Coverage{InScope: 2, Compliant: 1, Unknown: 1}, report.Total)
		require.Equal(t, []domain.WaveCoverage{
			{Wave: 1, Coverage: domain.Coverage{InScope: 1, Unknown: 1}},
			{Wave: 2, Coverage: domain.Coverage{InScope: 1, Compliant: 1}},
		}, report.Waves)

		none, err := repo.Coverage(ctx, "nobody")
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

func TestFailedPatchesAreReplacedAndCleared(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		first := []domain.FailedPatch{
			{PatchID: "p1", InstanceID: "i-1", Wave: 1, RunID: "run-1", Error: "conflict"},
			{PatchID: "p2", InstanceID: "i-1", Wave: 1, RunID: "run-1", Error: "conflict"},
		}
		require.NoError(t, repo.ReplaceFailedPatches(ctx, "acme", "i-1", first))
		require.NoError(t, repo.ReplaceFailedPatches(ctx, "acme", "i-2", []domain.FailedPatch{{PatchID: "p9", InstanceID: "i-2", Wave: 2, RunID: "run-2", Error: "x"}}))
		got, err := repo.FailedPatches(ctx, "acme")
		require.NoError(t, err)
		require.ElementsMatch(t, append(first, domain.FailedPatch{PatchID: "p9", InstanceID: "i-2", Wave: 2, RunID: "run-2", Error: "x"}), got)

		second := []domain.FailedPatch{{PatchID: "p3", InstanceID: "i-1", Wave: 1, RunID: "run-3", Error: "disk full"}}
		require.NoError(t, repo.ReplaceFailedPatches(ctx, "acme", "i-1", second))
		require.NoError(t, repo.ReplaceFailedPatches(ctx, "acme", "i-2", nil))
		got, err = repo.FailedPatches(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, second, got)

		cp, err := repo.Checkpoint(ctx)
		require.NoError(t, err)
		require.Zero(t, cp)
		require.NoError(t, repo.SetCheckpoint(ctx, 77))
		cp, err = repo.Checkpoint(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(77), cp)
	})
}
