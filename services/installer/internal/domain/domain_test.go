package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/installer/internal/domain"
)

func TestNoSnapshotNoInstall(t *testing.T) {
	set := provider.SnapshotSetID("acme", "run-1", "i-1")
	other := provider.SnapshotSetID("acme", "run-1", "i-2")
	completed := provider.Snapshot{ID: set, RunID: "run-1", InstanceID: "i-1", State: provider.SnapshotCompleted}
	tests := []struct {
		name  string
		named string
		snap  provider.Snapshot
		found bool
		want  string
	}{
		{"the run's completed set named by the event is installed", set, completed, true, ""},
		{"an event naming no snapshot is refused", "", completed, true, "names no snapshot"},
		{"an event naming another instance's set is refused", other, completed, true, "the event names snapshot " + other},
		{"a set the provider does not have is refused", set, provider.Snapshot{}, false, "has no snapshot set " + set},
		{"a pending set is refused", set, provider.Snapshot{ID: set, State: provider.SnapshotPending}, true, "is pending"},
		{"a set in error is refused", set, provider.Snapshot{ID: set, State: provider.SnapshotError}, true, "is error"},
		{"a set of another run is refused", set, provider.Snapshot{ID: set, RunID: "run-0", InstanceID: "i-1", State: provider.SnapshotCompleted}, true, "belongs to run run-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.CheckSnapshot("acme", "run-1", "i-1", tt.named, tt.snap, tt.found)
			if tt.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, domain.RefusalPrefix)
			require.Contains(t, got, tt.want)
		})
	}
}

func TestResultsFollowTheRequestedPatches(t *testing.T) {
	out, pending, failed := domain.Results([]string{"KB1", "KB2", "KB3", "KB4"}, []provider.PatchResult{
		{PatchID: "KB1", State: provider.PatchInstalled},
		{PatchID: "KB2", State: provider.PatchInstalledPendingReboot},
		{PatchID: "KB3", State: provider.PatchFailed, Error: "exit 1"},
		{PatchID: "KB9", State: provider.PatchInstalled},
	})
	require.True(t, pending)
	require.Equal(t, []string{"KB3"}, failed)
	require.Len(t, out, 4, "one result per requested patch, none for others")
	require.Equal(t, typesv1.PatchState_PATCH_STATE_INSTALLED, out[0].GetState())
	require.Equal(t, typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT, out[1].GetState())
	require.Equal(t, "exit 1", out[2].GetError())
	require.Equal(t, typesv1.PatchState_PATCH_STATE_MISSING, out[3].GetState(), "a patch the agent did not report was not installed")

	reason := domain.FailureReason(provider.Installation{ID: "cmd/i-1", State: provider.InstallFailed, Error: "Failed"}, failed)
	require.Equal(t, "installation cmd/i-1 failed: 1 patch(es) failed: KB3 (Failed)", reason)
	require.Equal(t, typesv1.JobState_JOB_STATE_TIMED_OUT, domain.JobStateOf(provider.InstallTimedOut))
	require.Equal(t, typesv1.JobState_JOB_STATE_FAILED, domain.JobStateOf(provider.InstallCancelled))
}

func TestAHealthCheckWaitsThroughARebootWithinTheGrace(t *testing.T) {
	now := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	grace := now.Add(time.Minute)
	rebooting := provider.Health{State: provider.InstanceRunning, Agent: provider.AgentConnectionLost, Initializing: true}
	healthy := provider.Health{Healthy: true, State: provider.InstanceRunning, Agent: provider.AgentOnline}
	stopped := provider.Health{State: provider.InstanceStopped, Agent: provider.AgentConnectionLost}
	tests := []struct {
		name  string
		h     provider.Health
		found bool
		at    time.Time
		want  domain.Verdict
	}{
		{"a healthy instance passes", healthy, true, now, domain.Healthy},
		{"a rebooting instance is waited for", rebooting, true, now, domain.Wait},
		{"a stopped instance is waited for within the grace", stopped, true, now, domain.Wait},
		{"a rebooting instance fails after the grace", rebooting, true, grace, domain.Unhealthy},
		{"an unknown instance fails after the grace", provider.Health{}, false, grace, domain.Unhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, domain.Judge(tt.h, tt.found, tt.at, grace))
		})
	}
	require.True(t, domain.Rebooting(rebooting))
	require.False(t, domain.Rebooting(healthy))
	require.Equal(t, "state running, agent connection-lost, status checks initializing", domain.HealthDetail(rebooting, true))
}

func TestAPatchSummarySettlesOnlyAnInstallThatInstalledEveryListedPatch(t *testing.T) {
	start := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	in := provider.Installation{ID: "cmd/i-1", State: provider.InstallSucceeded, StartedAt: start}
	patches := []string{"KB1", "KB2"}
	clean := provider.PatchSummary{InstanceID: "i-1", Operation: provider.PatchOperationInstall, StartedAt: start,
		EndedAt: start.Add(time.Minute), Installed: 2}
	require.True(t, domain.SettledBySummary(in, patches, clean, true))
	later := clean
	later.Operation, later.StartedAt = provider.PatchOperationScan, start.Add(time.Minute)
	require.True(t, domain.SettledBySummary(in, patches, later, true), "a later scan that finds every patch installed")
	require.Equal(t, []*typesv1.PatchResult{
		{PatchId: "KB1", State: typesv1.PatchState_PATCH_STATE_INSTALLED},
		{PatchId: "KB2", State: typesv1.PatchState_PATCH_STATE_INSTALLED},
	}, domain.InstalledResults(patches))

	not := map[string]func(s *provider.PatchSummary){
		"a failed patch":          func(s *provider.PatchSummary) { s.Failed = 1 },
		"a missing patch":         func(s *provider.PatchSummary) { s.Missing = 1 },
		"a patch pending reboot":  func(s *provider.PatchSummary) { s.InstalledPendingReboot = 1 },
		"an installed-other":      func(s *provider.PatchSummary) { s.InstalledOther = 1 },
		"a rejected patch":        func(s *provider.PatchSummary) { s.InstalledRejected = 1 },
		"a not-applicable patch":  func(s *provider.PatchSummary) { s.NotApplicable = 1 },
		"fewer installed":         func(s *provider.PatchSummary) { s.Installed = 1 },
		"an older operation":      func(s *provider.PatchSummary) { s.StartedAt = start.Add(-time.Second) },
		"an unfinished operation": func(s *provider.PatchSummary) { s.EndedAt = time.Time{} },
	}
	for name, mutate := range not {
		s := clean
		mutate(&s)
		require.False(t, domain.SettledBySummary(in, patches, s, true), name)
	}
	require.False(t, domain.SettledBySummary(in, patches, clean, false), "no summary")
	require.False(t, domain.SettledBySummary(in, nil, clean, true), "no patch list: every reported patch is the result")
	require.False(t, domain.SettledBySummary(provider.Installation{}, patches, clean, true), "no start time")
}
