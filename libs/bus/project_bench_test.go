package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// projectionCount is how many projections of one bus read the events, as a service in patchd
// has (the snapshotter has five, the installer four).
const projectionCount = 6

// BenchmarkProjections measures a bus whose projectionCount projections read the same events,
// first while they are live (published after the bus runs), then as a catch-up of what is
// stored (a restart). It reports the process's CPU per event (user + system) and never asserts
// a time:
//
//	go test -run '^$' -bench Projections -benchtime 3x ./bus/
func BenchmarkProjections(b *testing.B) {
	nc, js := benchStreams(b)
	var liveCPU, replayCPU time.Duration
	var n int
	b.ResetTimer()
	for i := range b.N {
		tenant := fmt.Sprintf("proj%d", i)
		var applied atomic.Int64
		bb := projectionBus(b, nc, tenant, &applied)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- bb.Run(ctx) }()
		<-bb.Running()
		before := cpuTime()
		seedN(b, js, tenant, relayMsgs)
		for applied.Load() < projectionCount*relayMsgs {
			time.Sleep(time.Millisecond)
		}
		liveCPU += cpuTime() - before
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}

		// A restart: every projection reads the stored events again from 0.
		applied.Store(0)
		bb = projectionBus(b, nc, tenant, &applied)
		ctx, cancel = context.WithCancel(context.Background())
		before = cpuTime()
		go func() { done <- bb.Run(ctx) }()
		<-bb.Running()
		replayCPU += cpuTime() - before
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		n += relayMsgs
	}
	b.StopTimer()
	b.ReportMetric(float64(liveCPU.Microseconds())/float64(n), "live-cpu-µs/event")
	b.ReportMetric(float64(replayCPU.Microseconds())/float64(n), "replay-cpu-µs/event")
}

// projectionBus is a bus with projectionCount projections of tenant's JobRequested events.
func projectionBus(b *testing.B, nc *nats.Conn, tenant string, applied *atomic.Int64) *bus.Bus {
	b.Helper()
	bb, err := bus.New(b.Context(), bus.Config{Service: "bench", Conn: nc})
	if err != nil {
		b.Fatal(err)
	}
	for p := range projectionCount {
		err := bb.Project(bus.ProjectionSpec{
			Name:     fmt.Sprintf("P%d", p),
			Subjects: []string{events.TenantSubject(tenant, "job", "requested")},
			Apply: func(_ context.Context, ev *events.Event, _ bool) error {
				if _, ok := ev.Data.(*eventsv1.JobRequested); ok {
					applied.Add(1)
				}
				return nil
			},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return bb
}

// cpuTime is the process's user and system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
