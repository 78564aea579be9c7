package installer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/installer"
)

func TestEveryJobIsInstalledOnceInCommandsOfAtMost50WithPerPatchResults(t *testing.T) {
	h := newHarness(t, 60, nil)
	h.start(t, installer.Config{})
	ids := h.InstanceIDs()
	h.job(t, "run-1", ids, nil)

	h.WaitCount(t, "install.succeeded", 60)
	require.Zero(t, h.Count(t, "install.failed"))
	require.GreaterOrEqual(t, h.Cloud.Calls("SendCommand"), 2, "60 instances need two commands at least (SSM takes 50)")
	for _, id := range ids {
		require.Equal(t, int64(1), h.Calls(id, "ssm:SendCommand"), "one command invocation for %s", id)
	}
	started := map[string]*eventsv1.InstallStarted{}
	for _, ev := range h.Read(t, "install.started") {
		m := ev.Data.(*eventsv1.InstallStarted)
		started[m.GetInstanceId()] = m
		require.NotEmpty(t, m.GetCommandId())
		require.Equal(t, provider.InstallationID(m.GetCommandId(), m.GetInstanceId()), m.GetInstallationId())
		require.Equal(t, 2*time.Hour, m.GetDeadline().AsTime().Sub(m.GetStartedAt().AsTime()), "the default per-instance timeout")
	}
	require.Len(t, started, 60)
	for _, ev := range h.Read(t, "install.succeeded") {
		m := ev.Data.(*eventsv1.InstallSucceeded)
		require.Equal(t, started[m.GetInstanceId()].GetInstallationId(), m.GetInstallationId())
		require.Equal(t, typesv1.JobState_JOB_STATE_SUCCEEDED, m.GetJobState())
		require.True(t, m.GetHealthy(), m.GetHealthDetail())
		require.Len(t, m.GetResults(), len(patches))
		for i, r := range m.GetResults() {
			require.Equal(t, patches[i], r.GetPatchId())
			require.Equal(t, typesv1.PatchState_PATCH_STATE_INSTALLED, r.GetState(), "exactly the baseline's patches are installed")
		}
	}
	inst, ok := h.Cloud.Sim.Instance(ids[0])
	require.True(t, ok)
	require.Equal(t, "INSTALLED", inst.Patches[patches[0]])
	// Clean installs are settled by their patch summaries (50 instances per call), not by a
	// per-patch read of each instance.
	require.Zero(t, h.Cloud.Calls("DescribeInstancePatches"), "no per-patch read for a clean install")
	require.Positive(t, h.Cloud.Calls("DescribeInstancePatchStates"))
	for _, id := range ids {
		require.Equal(t, int64(1), h.Calls(id, "ssm:DescribeInstancePatchStates"), "one summary read for %s", id)
	}
}

func TestAFailedInstallCarriesPerPatchResultsAndNamesTheFailedPatches(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.start(t, installer.Config{})
	ids := h.InstanceIDs()
	require.NoError(t, h.Cloud.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultFailNextInstall, InstanceID: ids[1], Count: 1}))
	h.job(t, "run-1", ids, nil)

	h.WaitCount(t, "install.succeeded", 2)
	h.WaitCount(t, "install.failed", 1)
	f := h.Read(t, "install.failed")[0].Data.(*eventsv1.InstallFailed)
	require.Equal(t, ids[1], f.GetInstanceId())
	require.Equal(t, typesv1.JobState_JOB_STATE_FAILED, f.GetJobState())
	require.NotEmpty(t, f.GetInstallationId())
	require.Len(t, f.GetResults(), len(patches), "per-patch results of the failed install")
	var failed []string
	for _, r := range f.GetResults() {
		if r.GetState() == typesv1.PatchState_PATCH_STATE_FAILED {
			failed = append(failed, r.GetPatchId())
		}
	}
	require.NotEmpty(t, failed)
	require.Contains(t, f.GetReason(), "failed: "+strings.Join(failed, ", "), "the reason names the failed patches")
	require.Equal(t, int64(1), h.Calls(ids[1], "ssm:DescribeInstancePatches"), "the failed install's patches are read")
}

// No snapshot, no install: a SnapshotCreated naming another instance's set, or a set the
// provider never took, is refused with an InstallFailed, and nothing is sent to the instance.
func TestNoInstallWithoutTheRunsCompletedSnapshot(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.start(t, installer.Config{})
	ids := h.InstanceIDs()
	h.snapshot(t, "run-1", ids[:2])
	forged := provider.SnapshotSetID(tenant, "run-1", ids[1])
	h.created(t, "run-1", ids[:1], nil, func(string) string { return forged }) // names instance 1's set
	h.created(t, "run-1", ids[2:], nil, nil)                                   // never snapshotted

	h.WaitCount(t, "install.failed", 2)
	reasons := map[string]string{}
	for _, ev := range h.Read(t, "install.failed") {
		m := ev.Data.(*eventsv1.InstallFailed)
		reasons[m.GetInstanceId()] = m.GetReason()
		require.Empty(t, m.GetInstallationId(), "nothing was installed")
	}
	require.Contains(t, reasons[ids[0]], "no completed pre-patch snapshot for this run: the event names snapshot "+forged)
	require.Contains(t, reasons[ids[2]], "no completed pre-patch snapshot for this run: the provider has no snapshot set")
	require.Eventually(t, h.drainedFn(t), eventually, tick)
	require.Zero(t, h.Calls(ids[0], "ssm:SendCommand"), "no command for the forged job")
	require.Zero(t, h.Calls(ids[2], "ssm:SendCommand"), "no command without a snapshot")
	require.Zero(t, h.Count(t, "install.started"))
}

func (h *harness) drainedFn(t *testing.T) func() bool { return func() bool { return h.drained(t) } }

func TestRebootPolicies(t *testing.T) {
	tests := []struct {
		name     string
		policy   typesv1.RebootPolicy
		reboot   time.Duration
		reboots  int64
		state    typesv1.JobState
		patch    typesv1.PatchState
		rebooted bool
	}{
		{"always reboots after the install", typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS, 0, 1,
			typesv1.JobState_JOB_STATE_SUCCEEDED, typesv1.PatchState_PATCH_STATE_INSTALLED, true},
		{"always: the rebooting instance is waited for, not failed", typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS, 500 * time.Millisecond, 1,
			typesv1.JobState_JOB_STATE_SUCCEEDED, typesv1.PatchState_PATCH_STATE_INSTALLED, true},
		{"never leaves patches pending a reboot", typesv1.RebootPolicy_REBOOT_POLICY_NEVER, 0, 0,
			typesv1.JobState_JOB_STATE_SUCCEEDED_PENDING_REBOOT, typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT, false},
		{"if-required: the document reboots within the command, the installer does not", typesv1.RebootPolicy_REBOOT_POLICY_IF_REQUIRED, 500 * time.Millisecond, 0,
			typesv1.JobState_JOB_STATE_SUCCEEDED, typesv1.PatchState_PATCH_STATE_INSTALLED, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 2, func(c *cloudsim.Config) { c.RebootRequiredRate, c.Timing.Reboot = 1, tt.reboot })
			h.start(t, installer.Config{})
			ids := h.InstanceIDs()
			h.job(t, "run-1", ids, &typesv1.JobPolicy{RebootPolicy: tt.policy})

			h.WaitCount(t, "install.succeeded", 2)
			require.Zero(t, h.Count(t, "install.failed"), "a reboot never marks a good install failed")
			if tt.reboot > 0 && tt.reboots > 0 {
				// The health check saw the instance rebooting and waited.
				for _, ev := range h.Read(t, "install.succeeded") {
					require.Contains(t, ev.Data.(*eventsv1.InstallSucceeded).GetHealthDetail(), "agent online")
				}
			}
			for _, ev := range h.Read(t, "install.succeeded") {
				m := ev.Data.(*eventsv1.InstallSucceeded)
				require.Equal(t, tt.state, m.GetJobState())
				require.Equal(t, tt.state == typesv1.JobState_JOB_STATE_SUCCEEDED_PENDING_REBOOT, m.GetRebootPending())
				require.Equal(t, tt.rebooted, m.GetRebooted(), m.GetHealthDetail())
				require.True(t, m.GetHealthy())
				for _, r := range m.GetResults() {
					require.Equal(t, tt.patch, r.GetState(), r.GetPatchId())
				}
			}
			for _, id := range ids {
				require.Equal(t, tt.reboots, h.Calls(id, "ec2:RebootInstances"), "RebootInstances for %s", id)
			}
		})
	}
}

// An installation that outlives the job's per-instance timeout is cancelled at the provider
// and ends TIMED_OUT.
func TestAnInstallPastItsTimeoutIsCancelledAndTimedOut(t *testing.T) {
	h := newHarness(t, 2, func(c *cloudsim.Config) { c.Timing.Command = time.Hour })
	h.start(t, installer.Config{})
	ids := h.InstanceIDs()
	h.job(t, "run-1", ids, &typesv1.JobPolicy{InstanceTimeout: durationpb.New(20 * time.Minute)})
	h.WaitCount(t, "install.started", 2)
	h.Clock.Advance(19 * time.Minute)
	require.Never(t, func() bool { return h.Count(t, "install.failed") > 0 }, 200*time.Millisecond, tick, "within the timeout")
	h.Clock.Advance(2 * time.Minute)

	h.WaitCount(t, "install.failed", 2)
	for _, ev := range h.Read(t, "install.failed") {
		m := ev.Data.(*eventsv1.InstallFailed)
		require.Equal(t, typesv1.JobState_JOB_STATE_TIMED_OUT, m.GetJobState())
		require.Contains(t, m.GetReason(), "did not finish within the per-instance timeout of 20m0s; cancelled")
	}
	for _, id := range ids {
		require.Equal(t, int64(1), h.Calls(id, "ssm:CancelCommand"), "the command is cancelled for %s", id)
	}
	require.Zero(t, h.Count(t, "install.succeeded"))
}

func TestAnInstanceWithoutAnAgentFailsNamingIt(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.start(t, installer.Config{})
	noAgent, err := h.Cloud.Sim.AddInstances(cloudsim.InstanceSpec{Account: h.Target().Account, NoAgent: true})
	require.NoError(t, err)
	h.job(t, "run-1", noAgent, nil)
	h.WaitCount(t, "install.failed", 1)
	reason := h.Read(t, "install.failed")[0].Data.(*eventsv1.InstallFailed).GetReason()
	require.Contains(t, strings.ToLower(reason), "agent")
	require.Zero(t, h.Count(t, "install.succeeded"))
}

// A job whose SendCommand keeps being throttled is dead-lettered after its deliveries; the
// dead-letter hook publishes its InstallFailed naming why first.
func TestAJobWhoseInstallKeepsBeingThrottledEndsInAFailureOutcome(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.start(t, installer.Config{})
	ids := h.InstanceIDs()
	require.NoError(t, h.Cloud.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "SendCommand", Rate: 1}))
	h.job(t, "run-1", ids, nil)
	h.WaitCount(t, "install.failed", 2)
	for _, ev := range h.Read(t, "install.failed") {
		require.Regexp(t, `^dead-lettered after 8 attempts: install on i-[0-9a-f]+: .*[Tt]hrottl`, ev.Data.(*eventsv1.InstallFailed).GetReason())
	}
	require.Zero(t, h.Count(t, "install.started"))
}

// An installer replica stopped while it tracks running installations hands them back; another
// resumes. Every job ends in exactly one outcome and got exactly one command invocation.
func TestAReplicaStoppedWhileTrackingHandsItsInstallationsToAnother(t *testing.T) {
	cloudClock := testkit.NewClock(time.Now())
	h := newHarness(t, 20, func(c *cloudsim.Config) { c.Clock, c.Timing.Command = cloudClock.Now, 10*time.Minute })
	first := h.start(t, installer.Config{})
	ids := h.InstanceIDs()
	h.job(t, "run-1", ids, nil)
	h.WaitCount(t, "install.started", 20)
	first.stop()
	require.Zero(t, h.Count(t, "install.succeeded"), "still running")

	h.start(t, installer.Config{})
	cloudClock.Advance(10 * time.Minute)
	h.WaitCount(t, "install.succeeded", 20)
	require.Eventually(t, h.drainedFn(t), eventually, tick)
	seen := map[string]int{}
	for _, ev := range h.Read(t, "install.succeeded") {
		seen[ev.Data.(*eventsv1.InstallSucceeded).GetInstanceId()]++
	}
	for _, id := range ids {
		require.Equal(t, 1, seen[id], "one outcome for %s", id)
		require.Equal(t, int64(1), h.Calls(id, "ssm:SendCommand"), "one command invocation for %s", id)
	}
	require.Zero(t, h.Count(t, "install.failed"))
}

func TestConfigIsValidated(t *testing.T) {
	tests := []struct {
		name  string
		cfg   installer.Config
		field string
	}{
		{"a batch larger than SSM takes is refused", installer.Config{BatchSize: 51}, "BatchSize 51: must be from 1 to 50"},
		{"a negative timeout is refused", installer.Config{InstallTimeout: -time.Second}, "InstallTimeout"},
		{"a poll longer than the timeout is refused", installer.Config{InstallTimeout: time.Second, PollInterval: time.Minute}, "PollInterval 1m0s: must not exceed InstallTimeout"},
		{"a negative health grace is refused", installer.Config{HealthGrace: -time.Second}, "HealthGrace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := installer.New(tt.cfg, installer.Deps{})
			require.ErrorContains(t, err, tt.field)
			require.ErrorContains(t, err, "Fleet: required")
		})
	}
	svc, err := installer.New(installer.Config{}, installer.Deps{Fleet: newHarness(t, 0, nil).Cloud.Fleet, Store: store.NewMemory()})
	require.NoError(t, err)
	require.Equal(t, "installer", svc.Name())
}
