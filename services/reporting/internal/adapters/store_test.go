package adapters_test

import (
	"slices"
	"testing"
	"time"

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

var t0 = time.Date(2026, 11, 10, 3, 0, 0, 0, time.UTC)

func TestInstancesMoveBetweenBucketsAndIndexes(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		prev, found, err := repo.Instance(ctx, "acme", "i-1")
		require.NoError(t, err)
		require.False(t, found)
		require.Equal(t, domain.Instance{Tenant: "acme", ID: "i-1"}, prev)

		b := &domain.Baseline{ID: "b1", Patches: []domain.BaselinePatch{{ID: "p1"}, {ID: "p2"}}}
		in, _ := prev.InScope(1, "run-1", "b1", "al2023", 5)
		in = in.Evaluate(b, 5)
		require.NoError(t, repo.SaveInstance(ctx, prev, false, in))
		other := domain.Instance{Tenant: "acme", ID: "i-2"}
		o2, _ := other.InScope(1, "run-1", "", "", 5)
		require.NoError(t, repo.SaveInstance(ctx, other, false, o2.Evaluate(nil, 5)))

		got, found, err := repo.Instance(ctx, "acme", "i-1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, in, got)

		failedOne, _ := got.Assess(domain.Assessment{Outcome: domain.OutcomeInstallFailed, RunID: "run-1", At: t0,
			Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_FAILED, Error: "x"}}}, 9)
		failedOne = failedOne.Evaluate(b, 9)
		for range 2 { // applying the same change twice is harmless
			require.NoError(t, repo.SaveInstance(ctx, got, true, failedOne))
		}
		ids, err := repo.FailedInstances(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, []string{"i-1"}, ids)
		for p, want := range map[string]int{"p1": 1, "p2": 1} {
			n, err := repo.MissingCount(ctx, "acme", p)
			require.NoError(t, err)
			require.Equal(t, want, n, p)
		}

		fixed, _ := failedOne.Assess(domain.Assessment{Outcome: domain.OutcomeInstalled, RunID: "run-2", At: t0,
			Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_INSTALLED}, {PatchId: "p2", State: typesv1.PatchState_PATCH_STATE_INSTALLED}}}, 12)
		moved, _ := fixed.InScope(2, "run-2", "b1", "al2023", 13)
		moved = moved.Evaluate(b, 13)
		require.NoError(t, repo.SaveInstance(ctx, failedOne, true, moved))
		ids, err = repo.FailedInstances(ctx, "acme")
		require.NoError(t, err)
		require.Empty(t, ids)
		n, err := repo.MissingCount(ctx, "acme", "p1")
		require.NoError(t, err)
		require.Zero(t, n)

		groups, err := repo.Groups(ctx, "acme")
		require.NoError(t, err)
		require.ElementsMatch(t, []domain.Group{{Wave: 1, OSFamily: "al2023"}, {Wave: 1, OSFamily: "unknown"}, {Wave: 2, OSFamily: "al2023"}}, groups)
		count := func(g domain.Group, s typesv1.ComplianceState) int {
			n, err := repo.Count(ctx, "acme", g, s)
			require.NoError(t, err)
			return n
		}
		require.Zero(t, count(domain.Group{Wave: 1, OSFamily: "al2023"}, typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT))
		require.Equal(t, 1, count(domain.Group{Wave: 2, OSFamily: "al2023"}, typesv1.ComplianceState_COMPLIANCE_STATE_COMPLIANT))
		require.Equal(t, 1, count(domain.Group{Wave: 1, OSFamily: "unknown"}, typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN))
		fam, err := repo.FamilyInstances(ctx, "acme", "al2023")
		require.NoError(t, err)
		require.Equal(t, []string{"i-1"}, fam)

		none, err := repo.Groups(ctx, "nobody")
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

func TestCatalogHistoryAndRuns(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		b := domain.Baseline{ID: "b1", OSFamily: "al2023", Version: 3, PublishedAt: t0,
			Patches: []domain.BaselinePatch{{ID: "p1", Severity: typesv1.Severity_SEVERITY_CRITICAL}}}
		require.NoError(t, repo.PutBaseline(ctx, b))
		got, found, err := repo.Baseline(ctx, "b1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, b, got)
		require.NoError(t, repo.PutCertifiedAt(ctx, "p1", t0))
		at, found, err := repo.CertifiedAt(ctx, "p1")
		require.NoError(t, err)
		require.True(t, found)
		require.True(t, t0.Equal(at))
		ap := domain.Approval{BaselineID: "b1", OSFamily: "al2023", Version: 3, At: t0}
		require.NoError(t, repo.PutApproval(ctx, "acme", ap))
		gotAp, found, err := repo.Approval(ctx, "acme", "al2023")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, ap, gotAp)

		for _, day := range []string{"2026-11-02", "2026-10-30"} {
			require.NoError(t, repo.PutSnapshot(ctx, "acme", domain.Snapshot{Kind: "day", Key: day, At: t0,
				Report: domain.Report{Tenant: "acme", Total: domain.Coverage{InScope: 1}, Waves: []domain.WaveCoverage{}, Families: []domain.FamilyCoverage{}}}))
		}
		snaps, err := repo.Snapshots(ctx, "acme", "day")
		require.NoError(t, err)
		require.Len(t, snaps, 2)
		require.Equal(t, "2026-10-30", snaps[0].Key)
		require.NoError(t, repo.SetLastDay(ctx, "acme", "2026-11-02"))
		last, err := repo.LastDay(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, "2026-11-02", last)

		run := domain.Run{RunID: "r1", Wave: 1, State: typesv1.RunState_RUN_STATE_RUNNING, StartedAt: t0, Total: 2}
		require.NoError(t, repo.PutRun(ctx, "acme", run))
		gotRun, found, err := repo.Run(ctx, "acme", "r1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, run, gotRun)
		require.NoError(t, repo.SetJobStates(ctx, "acme", "r1", map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_PENDING, "i-2": typesv1.JobState_JOB_STATE_PENDING}))
		require.NoError(t, repo.SetJobStates(ctx, "acme", "r1", map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_FAILED}))
		jobs, err := repo.JobStates(ctx, "acme", "r1")
		require.NoError(t, err)
		require.Equal(t, map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_FAILED, "i-2": typesv1.JobState_JOB_STATE_PENDING}, jobs)

		cp, err := repo.Checkpoint(ctx)
		require.NoError(t, err)
		require.Zero(t, cp)
		require.NoError(t, repo.SetCheckpoint(ctx, 77))
		require.NoError(t, repo.SetCatalogCheckpoint(ctx, 7))
		cp, err = repo.Checkpoint(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(77), cp)
		cp, err = repo.CatalogCheckpoint(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(7), cp)
	})
}

// stores2 is stores with the store under the repository, to flush it.
func stores2(t *testing.T, test func(t *testing.T, st store.Store, repo *adapters.Store)) {
	t.Run("memory", func(t *testing.T) {
		st := store.NewMemory()
		test(t, st, adapters.New(st))
	})
	t.Run("redis", func(t *testing.T) {
		st := store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "test:")
		test(t, st, adapters.New(st))
	})
}

func save(t *testing.T, repo domain.Repository, id string, wave int32, family string, seq uint64) {
	t.Helper()
	ctx := t.Context()
	prev, found, err := repo.Instance(ctx, "acme", id)
	require.NoError(t, err)
	next, _ := prev.InScope(wave, "run-1", "", family, seq)
	require.NoError(t, repo.SaveInstance(ctx, prev, found, next.Evaluate(nil, seq)))
}

// The summary's counts (groups and buckets read together) follow new groups and a flush.
func TestCountsFollowTheBuckets(t *testing.T) {
	stores2(t, func(t *testing.T, st store.Store, repo *adapters.Store) {
		ctx := t.Context()
		states := domain.States
		unknownAt := slices.Index(states, typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN)
		counts := func() map[domain.Group]int {
			gcs, err := repo.Counts(ctx, "acme", states)
			require.NoError(t, err)
			out := map[domain.Group]int{}
			for _, g := range gcs {
				require.Len(t, g.Counts, len(states))
				for i, n := range g.Counts {
					want, err := repo.Count(ctx, "acme", g.Group, states[i])
					require.NoError(t, err)
					require.Equal(t, want, n, "%v %v", g.Group, states[i])
				}
				out[g.Group] = g.Counts[unknownAt]
			}
			return out
		}
		require.Empty(t, counts())
		save(t, repo, "i-1", 1, "al2023", 1)
		save(t, repo, "i-2", 1, "al2023", 2)
		require.Equal(t, map[domain.Group]int{{Wave: 1, OSFamily: "al2023"}: 2}, counts())
		save(t, repo, "i-3", 2, "windows", 3) // a new group
		save(t, repo, "i-2", 2, "windows", 4) // moves to it
		require.Equal(t, map[domain.Group]int{{Wave: 1, OSFamily: "al2023"}: 1, {Wave: 2, OSFamily: "windows"}: 2}, counts())
		require.NoError(t, st.FlushPrefix(ctx, "reporting:"))
		require.Empty(t, counts())
		save(t, repo, "i-9", 3, "", 5)
		require.Equal(t, map[domain.Group]int{{Wave: 3, OSFamily: "unknown"}: 1}, counts())
	})
}

// A unit of work folds the saves of an instance: its indexes move once, from what the batch
// found to its last save, and an index read inside the batch sees every save before it.
func TestAUnitOfWorkFoldsItsSaves(t *testing.T) {
	stores2(t, func(t *testing.T, st store.Store, repo *adapters.Store) {
		ctx := t.Context()
		save(t, repo, "i-1", 1, "al2023", 1)
		uow, err := repo.Begin()
		require.NoError(t, err)
		require.NoError(t, uow.Prefetch(ctx, []domain.InstanceRef{{Tenant: "acme", ID: "i-1"}, {Tenant: "acme", ID: "i-2"}}))
		save(t, uow, "i-1", 2, "al2023", 2)
		save(t, uow, "i-2", 2, "al2023", 3)
		fam, err := uow.FamilyInstances(ctx, "acme", "al2023") // a read inside the batch
		require.NoError(t, err)
		require.Equal(t, []string{"i-1", "i-2"}, fam)
		require.NoError(t, repo.SetJobStates(ctx, "acme", "run-1", map[string]typesv1.JobState{"i-9": typesv1.JobState_JOB_STATE_SUCCEEDED}))
		require.NoError(t, uow.SetJobStates(ctx, "acme", "run-1", map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_PENDING, "i-2": typesv1.JobState_JOB_STATE_PENDING}))
		require.NoError(t, uow.SetJobStates(ctx, "acme", "run-1", map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_INSTALLING}))
		jobs, err := uow.JobStates(ctx, "acme", "run-1") // a read inside the batch
		require.NoError(t, err)
		require.Equal(t, map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_INSTALLING, "i-2": typesv1.JobState_JOB_STATE_PENDING,
			"i-9": typesv1.JobState_JOB_STATE_SUCCEEDED}, jobs)
		require.NoError(t, uow.SetJobStates(ctx, "acme", "run-1", map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_SUCCEEDED}))
		save(t, uow, "i-1", 3, "windows", 4)
		save(t, uow, "i-2", 3, "windows", 5)
		ok, err := uow.Commit(ctx, 0, 5)
		require.NoError(t, err)
		require.True(t, ok)

		for fam, want := range map[string][]string{"al2023": {}, "windows": {"i-1", "i-2"}} {
			got, err := repo.FamilyInstances(ctx, "acme", fam)
			require.NoError(t, err)
			require.Equal(t, want, got, fam)
		}
		for g, want := range map[domain.Group][]string{{Wave: 1, OSFamily: "al2023"}: {}, {Wave: 2, OSFamily: "al2023"}: {},
			{Wave: 3, OSFamily: "windows"}: {"i-1", "i-2"}} {
			got, err := repo.Members(ctx, "acme", g, typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN)
			require.NoError(t, err)
			require.Equal(t, want, got, "%v", g)
		}
		in, found, err := repo.Instance(ctx, "acme", "i-2")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, uint64(5), in.Seq)
		require.Equal(t, int32(3), in.Wave)
		cp, err := repo.Checkpoint(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(5), cp)
		jobs, err = repo.JobStates(ctx, "acme", "run-1")
		require.NoError(t, err)
		require.Equal(t, map[string]typesv1.JobState{"i-1": typesv1.JobState_JOB_STATE_SUCCEEDED, "i-2": typesv1.JobState_JOB_STATE_PENDING,
			"i-9": typesv1.JobState_JOB_STATE_SUCCEEDED}, jobs)
	})
}

// TestAUnitBegunAfterACommitStartsFromItsInstances: a unit begun after a commit under way
// finds the instances that commit writes as it writes them (handed on decoded); a second unit
// begun after the same commit, the first given up, finds them so too, not as the first left
// them; and its own commit moves the indexes from there.
func TestAUnitBegunAfterACommitStartsFromItsInstances(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		first, err := repo.Begin()
		require.NoError(t, err)
		save(t, first, "i-1", 1, "al2023", 1)
		c := first.Start(ctx, 0, 1)

		given, err := repo.BeginAfter(c)
		require.NoError(t, err)
		require.NoError(t, given.Prefetch(ctx, []domain.InstanceRef{{Tenant: "acme", ID: "i-1"}}))
		in, found, err := given.Instance(ctx, "acme", "i-1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, int32(1), in.Wave)
		save(t, given, "i-1", 2, "windows", 2) // given up: never committed

		next, err := repo.BeginAfter(c)
		require.NoError(t, err)
		in, found, err = next.Instance(ctx, "acme", "i-1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, int32(1), in.Wave, "as the commit writes it")
		require.Equal(t, uint64(1), in.Seq)
		save(t, next, "i-1", 3, "windows", 3)
		ok, err := next.Commit(ctx, 1, 3)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = c.Wait()
		require.NoError(t, err)
		require.True(t, ok)

		for g, want := range map[domain.Group][]string{{Wave: 1, OSFamily: "al2023"}: {}, {Wave: 2, OSFamily: "windows"}: {},
			{Wave: 3, OSFamily: "windows"}: {"i-1"}} {
			got, err := repo.Members(ctx, "acme", g, typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN)
			require.NoError(t, err)
			require.Equal(t, want, got, "%v", g)
		}
		in, _, err = repo.Instance(ctx, "acme", "i-1")
		require.NoError(t, err)
		require.Equal(t, uint64(3), in.Seq)
	})
}
