package snapshotter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/snapshotter"
)

func TestEveryJobGetsOneSnapshotSetTrackedToItsOutcome(t *testing.T) {
	h := newHarness(t, 10, func(c *cloudsim.Config) { c.Timing.Snapshot = 150 * time.Millisecond })
	r := h.start(t, snapshotter.Config{})
	policy := &typesv1.JobPolicy{RebootPolicy: typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS}
	instances := h.InstanceIDs()
	h.jobs(t, "run-1", instances, policy)

	h.WaitCount(t, "snapshot.started", 10)
	for _, id := range instances {
		require.Equal(t, int64(1), h.Calls(id, "ec2:CreateSnapshots"), "instance %s snapshotted once", id)
	}
	checks0 := stagetest.Metric(t, r.reg, "patchwave_bus_tracker_checks_total", map[string]string{"tracker": snapshotter.TrackerSnapshots})
	h.Cloud.Sim.ResetStats()
	h.WaitCount(t, "snapshot.created", 10)
	checks1 := stagetest.Metric(t, r.reg, "patchwave_bus_tracker_checks_total", map[string]string{"tracker": snapshotter.TrackerSnapshots})
	require.LessOrEqual(t, float64(h.Cloud.Calls("DescribeSnapshots")), checks1-checks0+1,
		"one DescribeSnapshots per check for the ten sets, not one per set")

	for _, ev := range h.Read(t, "snapshot.created") {
		sc := ev.Data.(*eventsv1.SnapshotCreated)
		require.Equal(t, provider.SnapshotSetID(tenant, "run-1", sc.GetInstanceId()), sc.GetSnapshotId())
		require.Equal(t, "al2023-v7", sc.GetBaselineId())
		require.Equal(t, []string{"ALAS-2024-001", "ALAS-2024-007"}, sc.GetPatchIds())
		require.Equal(t, h.Location().GetAccount(), sc.GetLocation().GetAccount(), "the location is carried downstream")
		require.Equal(t, typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS, sc.GetPolicy().GetRebootPolicy(), "the policy is carried downstream")
	}
	got, err := h.Cloud.Fleet.GetSnapshots(t.Context(), h.Target(), []string{provider.SnapshotSetID(tenant, "run-1", instances[0])})
	require.NoError(t, err)
	require.Equal(t, provider.SnapshotCompleted, got[provider.SnapshotSetID(tenant, "run-1", instances[0])].State)

	// The same jobs again (a scheduler replaying its run): nothing is snapshotted twice.
	h.jobs(t, "run-1", instances, policy)
	require.Eventually(t, func() bool { return h.drained(t, snapshotter.HandlerTakeSnapshot, snapshotter.TrackerSnapshots) }, eventually, tick)
	require.Zero(t, h.Cloud.Calls("CreateSnapshots"), "no set is taken again")
	require.Equal(t, 10, h.Count(t, "snapshot.created"))
	require.Zero(t, h.Count(t, "snapshot.failed"))
}

func TestSnapshotsThatCannotBeTakenAreFailureOutcomesNamingWhy(t *testing.T) {
	tests := []struct {
		name   string
		sim    func(*cloudsim.Config)
		setup  func(t *testing.T, h *harness, id string)
		noLoc  bool
		reason string
	}{
		{"a snapshot that ends in error", func(c *cloudsim.Config) { c.Faults.SnapshotErrorRate = 1 }, nil, false, "failed"},
		{"a terminated instance", nil, func(t *testing.T, h *harness, id string) {
			require.NoError(t, h.Cloud.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultTerminateInstance, InstanceID: id}))
		}, false, "create snapshot set"},
		{"a job without a location", nil, nil, true, "the job names no location"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 1, tt.sim)
			h.start(t, snapshotter.Config{})
			id := h.InstanceIDs()[0]
			if tt.setup != nil {
				tt.setup(t, h, id)
			}
			if tt.noLoc {
				h.Publish(t, "run-1/"+id, &eventsv1.JobRequested{Tenant: tenant, RunId: "run-1", InstanceId: id})
			} else {
				h.jobs(t, "run-1", []string{id}, nil)
			}
			h.WaitCount(t, "snapshot.failed", 1)
			failed := h.Read(t, "snapshot.failed")[0].Data.(*eventsv1.SnapshotFailed)
			require.Contains(t, failed.GetReason(), tt.reason)
			require.Zero(t, h.Count(t, "snapshot.created"))
		})
	}
}

func TestASnapshotNotCompletedWithinTheTimeoutFails(t *testing.T) {
	h := newHarness(t, 2, func(c *cloudsim.Config) { c.Timing.Snapshot = time.Hour })
	h.start(t, snapshotter.Config{SnapshotTimeout: 30 * time.Minute})
	h.jobs(t, "run-1", h.InstanceIDs(), nil)
	h.WaitCount(t, "snapshot.started", 2)
	h.Clock.Advance(29 * time.Minute)
	require.Never(t, func() bool { return h.Count(t, "snapshot.failed") > 0 }, 200*time.Millisecond, tick, "still within the timeout")
	h.Clock.Advance(2 * time.Minute)
	h.WaitCount(t, "snapshot.failed", 2)
	for _, ev := range h.Read(t, "snapshot.failed") {
		require.Contains(t, ev.Data.(*eventsv1.SnapshotFailed).GetReason(), "not completed within 30m0s of its start")
	}
	require.Zero(t, h.Count(t, "snapshot.created"))
}

// A job whose cloud calls keep being throttled is dead-lettered after its deliveries, and the
// dead-letter hook first gives it a SnapshotFailed naming why, so its run does not wait for it
// (patchd's TestACloudThatKeepsThrottlingStillCompletesTheRun shows the run completing).
func TestAJobWhoseCloudCallsKeepFailingEndsInAFailureOutcome(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.start(t, snapshotter.Config{})
	require.NoError(t, h.Cloud.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "CreateSnapshots", Rate: 1}))
	h.jobs(t, "run-1", h.InstanceIDs(), nil)

	h.WaitCount(t, "snapshot.failed", 3)
	for _, ev := range h.Read(t, "snapshot.failed") {
		reason := ev.Data.(*eventsv1.SnapshotFailed).GetReason()
		require.Regexp(t, `^dead-lettered after 8 attempts: create snapshot set of i-[0-9a-f]+: .*[Tt]hrottl`, reason)
	}
	require.Equal(t, 3, stagetest.CountEvents(t, h.JS, "DLQ", "dlq.snapshotter.TakeSnapshotOnJobRequested"))
	require.Zero(t, h.Count(t, "snapshot.started"))
}

// A snapshotter replica stopped while it tracks pending sets hands them back; another replica
// resumes tracking. Every job ends with exactly one outcome and one snapshot set.
func TestAReplicaStoppedWhileTrackingHandsItsSnapshotsToAnother(t *testing.T) {
	cloudClock := testkit.NewClock(time.Now())
	h := newHarness(t, 20, func(c *cloudsim.Config) {
		c.Clock, c.Timing.Snapshot = cloudClock.Now, 10*time.Minute
	})
	first := h.start(t, snapshotter.Config{})
	instances := h.InstanceIDs()
	h.jobs(t, "run-1", instances, nil)
	h.WaitCount(t, "snapshot.started", 20)
	first.stop()
	require.Zero(t, h.Count(t, "snapshot.created"), "the sets are still pending")

	h.start(t, snapshotter.Config{})
	cloudClock.Advance(10 * time.Minute)
	h.WaitCount(t, "snapshot.created", 20)
	require.Eventually(t, func() bool { return h.drained(t, snapshotter.HandlerTakeSnapshot, snapshotter.TrackerSnapshots) }, eventually, tick)
	seen := map[string]int{}
	for _, ev := range h.Read(t, "snapshot.created") {
		seen[ev.Data.(*eventsv1.SnapshotCreated).GetInstanceId()]++
	}
	for _, id := range instances {
		require.Equal(t, 1, seen[id], "one outcome for %s", id)
		require.Equal(t, int64(1), h.Calls(id, "ec2:CreateSnapshots"), "one snapshot set for %s", id)
	}
	require.Zero(t, h.Count(t, "snapshot.failed"))
}

// One replica keeps many snapshot operations in flight: every set is pending at once, held by
// the tracker (its gauge shows them all), and read back with one DescribeSnapshots per 200 sets
// per check. The figures for 10,000 are in BenchmarkSnapshotter10000InFlight.
func TestOneReplicaHoldsEveryPendingSnapshotAtOnce(t *testing.T) {
	const n = 400
	cloudClock := testkit.NewClock(time.Now())
	h := newHarness(t, n, func(c *cloudsim.Config) { c.Clock, c.Timing.Snapshot = cloudClock.Now, 10*time.Minute })
	r := h.start(t, snapshotter.Config{MaxTracked: n, PollInterval: 100 * time.Millisecond})
	h.jobs(t, "run-1", h.InstanceIDs(), nil)
	h.WaitCount(t, "snapshot.started", n)
	held := map[string]string{"tracker": snapshotter.TrackerSnapshots}
	require.Eventually(t, func() bool {
		return stagetest.Metric(t, r.reg, "patchwave_bus_tracker_held", held) == n
	}, eventually, tick, "every pending set is held by the one replica")
	checks0 := stagetest.Metric(t, r.reg, "patchwave_bus_tracker_checks_total", held)
	h.Cloud.Sim.ResetStats()
	require.Eventually(t, func() bool {
		return stagetest.Metric(t, r.reg, "patchwave_bus_tracker_checks_total", held) >= checks0+3
	}, eventually, tick)
	checks := stagetest.Metric(t, r.reg, "patchwave_bus_tracker_checks_total", held) - checks0
	calls := float64(h.Cloud.Calls("DescribeSnapshots"))
	require.LessOrEqual(t, calls, (checks+1)*n/200, "at most one DescribeSnapshots per 200 sets per check")
	t.Logf("%d sets held; %.0f checks made %.0f DescribeSnapshots calls (max in flight %d)", n, checks, calls,
		h.Cloud.Sim.Stats().Operations["ec2:DescribeSnapshots"].MaxInFlight)
	require.Zero(t, h.Count(t, "snapshot.created"))

	cloudClock.Advance(10 * time.Minute)
	h.WaitCount(t, "snapshot.created", n)
	require.Eventually(t, func() bool { return stagetest.Metric(t, r.reg, "patchwave_bus_tracker_held", held) == 0 }, eventually, tick)
}

func TestConfigIsValidated(t *testing.T) {
	tests := []struct {
		name  string
		cfg   snapshotter.Config
		field string
	}{
		{"a negative timeout is refused", snapshotter.Config{SnapshotTimeout: -time.Second}, "SnapshotTimeout"},
		{"a poll longer than the timeout is refused", snapshotter.Config{SnapshotTimeout: time.Second, PollInterval: time.Minute}, "PollInterval 1m0s: must not exceed SnapshotTimeout"},
		{"too many workers are refused", snapshotter.Config{Concurrency: 100000}, "Concurrency 100000: must be from 1 to 4096"},
		{"a batch larger than a call takes is refused", snapshotter.Config{BatchSize: 5000}, "BatchSize 5000"},
		{"a negative retention is refused", snapshotter.Config{Retention: -time.Hour}, "Retention"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := snapshotter.New(tt.cfg, snapshotter.Deps{})
			require.ErrorContains(t, err, tt.field)
			require.ErrorContains(t, err, "Fleet: required")
			require.ErrorContains(t, err, "Store: required")
		})
	}
	_, err := snapshotter.New(snapshotter.Config{}, snapshotter.Deps{Fleet: newHarness(t, 0, nil).Cloud.Fleet, Store: store.NewMemory()})
	require.NoError(t, err)
}
