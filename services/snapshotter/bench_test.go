package snapshotter_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/snapshotter"
)

// BenchmarkSnapshotter10000InFlight runs one snapshotter replica with 10,000 jobs against an
// in-process cloudsim whose snapshots stay pending (its clock stands still): every set is
// started, then held by the one replica at once, then the emulator's clock moves and every set
// completes. It reports how long starting and completing took, the DescribeSnapshots calls per
// check with 10,000 held, the highest number of calls in flight at the emulator, and the heap
// in use per held snapshot (of the whole process, the in-process emulator's state included). It
// never asserts a time:
//
//	go test -run '^$' -bench Snapshotter10000 -benchtime 1x .
func BenchmarkSnapshotter10000InFlight(b *testing.B) {
	const n = 10000
	for range b.N {
		b.StopTimer()
		cloudClock := testkit.NewClock(time.Now())
		h := &harness{Stage: cloudtest.NewStage(b, "scheduler", n, func(c *cloudsim.Config) {
			c.Clock, c.Timing.Snapshot = cloudClock.Now, 10*time.Minute
		})}
		svc, err := snapshotter.New(snapshotter.Config{MaxTracked: n, PollInterval: 500 * time.Millisecond, Concurrency: 1000},
			snapshotter.Deps{Fleet: h.Cloud.Fleet, Store: store.NewMemory(), Clock: h.Clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		stagetest.RunWithMetrics(b, h.NC, svc, reg)
		ids := h.InstanceIDs()
		evs := make([]*events.Event, len(ids))
		for i, id := range ids {
			evs[i] = events.MustNew(tenant, "run-1/"+id, &eventsv1.JobRequested{Tenant: tenant, RunId: "run-1", Wave: 1, InstanceId: id,
				BaselineId: "b1", PatchIds: []string{"p1"}, Location: h.Location()})
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()

		begin := time.Now()
		if err := h.In.Publish(b.Context(), evs...); err != nil {
			b.Fatal(err)
		}
		held := map[string]string{"tracker": snapshotter.TrackerSnapshots}
		waitFor(b, func() bool { return stagetest.Metric(b, reg, "patchwave_bus_tracker_held", held) == n }, "all held")
		started := time.Since(begin)
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		h.Cloud.Sim.ResetStats()
		checks0 := stagetest.Metric(b, reg, "patchwave_bus_tracker_checks_total", held)
		waitFor(b, func() bool { return stagetest.Metric(b, reg, "patchwave_bus_tracker_checks_total", held) >= checks0+4 }, "four checks")
		checks := stagetest.Metric(b, reg, "patchwave_bus_tracker_checks_total", held) - checks0
		describes := float64(h.Cloud.Calls("DescribeSnapshots"))

		completeBegin := time.Now()
		cloudClock.Advance(10 * time.Minute)
		waitFor(b, func() bool { return h.Count(b, "snapshot.created") == n }, "all created")
		completed := time.Since(completeBegin)
		b.StopTimer()
		b.ReportMetric(started.Seconds(), "s-to-start-and-hold-10k")
		b.ReportMetric(completed.Seconds(), "s-to-complete-10k")
		b.ReportMetric(describes/checks, "DescribeSnapshots/check")
		b.ReportMetric(float64(h.Cloud.Sim.Stats().Operations["ec2:DescribeSnapshots"].MaxInFlight), "max-describes-in-flight")
		b.ReportMetric(float64(int64(during.HeapInuse)-int64(before.HeapInuse))/n, "heap-B/held")
		b.StartTimer()
	}
}

// waitFor polls cond until it holds, for up to 10 minutes.
func waitFor(b *testing.B, cond func() bool, what string) {
	b.Helper()
	deadline := time.After(10 * time.Minute)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-deadline:
			b.Fatalf("%s: not within 10 minutes", what)
		case <-t.C:
		}
	}
}
