package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// trackedOps is how many operations one tracker replica holds in BenchmarkTrackerHolds10000.
const trackedOps = 10000

// BenchmarkTrackerHolds10000 has one replica's tracker hold 10,000 "operation started" events at
// once (MaxHeld 10,000), check them every 50 ms while they "run", then finish them all. It
// reports how long taking them all in took, the checks per second with 10,000 held, the heap
// growth per held message, and how long releasing them took. It never asserts a time:
//
//	go test -run '^$' -bench TrackerHolds -benchtime 1x ./bus/
func BenchmarkTrackerHolds10000(b *testing.B) {
	nc, js := benchStreams(b)
	for i := range b.N {
		tenant := fmt.Sprintf("track-%d", i)
		seedN(b, js, tenant, trackedOps)
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()

		var finish atomic.Bool
		var held, checks, done, measureUntil atomic.Int64
		allHeld, measured, allDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		bs, err := bus.New(b.Context(), bus.Config{Service: "bench", Conn: nc, SkipStreamSetup: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), FetchBatch: 500})
		if err != nil {
			b.Fatal(err)
		}
		if err := bs.Track(bus.TrackerSpec{
			Name: fmt.Sprintf("TrackOps%d", i), Subjects: []string{events.DefFor[*eventsv1.JobRequested]().PatternFor(tenant)},
			// Every held message at every tick (no check backoff), so that the checks with all
			// 10,000 held can be counted.
			MaxHeld: trackedOps, PollInterval: 50 * time.Millisecond, MaxCheckInterval: 50 * time.Millisecond,
			Check: func(_ context.Context, hs []*bus.Held) error {
				n := checks.Add(1)
				if held.Swap(int64(len(hs))) < trackedOps && len(hs) == trackedOps {
					measureUntil.Store(n + 20)
					close(allHeld)
				}
				if until := measureUntil.Load(); until > 0 && n == until {
					close(measured)
				}
				if !finish.Load() {
					return nil
				}
				for _, h := range hs {
					h.Done()
				}
				if done.Add(int64(len(hs))) == trackedOps {
					close(allDone)
				}
				return nil
			},
		}); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		begin := time.Now()
		go func() { stopped <- bs.Run(ctx) }()
		wait := func(ch chan struct{}, what string) {
			select {
			case <-ch:
			case err := <-stopped:
				b.Fatalf("bus stopped: %v", err)
			case <-time.After(5 * time.Minute):
				b.Fatalf("%s: held %d, done %d", what, held.Load(), done.Load())
			}
		}
		wait(allHeld, "not all held")
		heldAfter := time.Since(begin)
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		t0 := time.Now()
		wait(measured, "no 20 checks with everything held")
		checkRate := 20 / time.Since(t0).Seconds()
		finish.Store(true)
		releaseStart := time.Now()
		wait(allDone, "not all done")
		released := time.Since(releaseStart)
		b.StopTimer()
		cancel()
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(heldAfter.Seconds(), "s-to-hold-10k")
		b.ReportMetric(checkRate, "checks/s-at-10k")
		b.ReportMetric(float64(int64(during.HeapInuse)-int64(before.HeapInuse))/trackedOps, "heap-B/held")
		b.ReportMetric(released.Seconds(), "s-to-release-10k")
		b.StartTimer()
	}
}

// BenchmarkTrackerLongOperations10000 has one replica's tracker hold 10,000 operations that never
// finish for 4 s at a 50 ms poll (the tracker's default check backoff) and reports how many
// held messages its checks were handed per second over the last 2 s, and the CPU seconds of the
// process over those 2 s: what following long operations costs as the number in flight grows.
//
//	go test -run '^$' -bench TrackerLongOperations -benchtime 1x ./bus/
func BenchmarkTrackerLongOperations10000(b *testing.B) {
	nc, js := benchStreams(b)
	for i := range b.N {
		tenant := fmt.Sprintf("long-%d", i)
		seedN(b, js, tenant, trackedOps)
		var handed atomic.Int64
		bs, err := bus.New(b.Context(), bus.Config{Service: "bench", Conn: nc, SkipStreamSetup: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), FetchBatch: 500})
		if err != nil {
			b.Fatal(err)
		}
		if err := bs.Track(bus.TrackerSpec{
			Name: fmt.Sprintf("TrackLong%d", i), Subjects: []string{events.DefFor[*eventsv1.JobRequested]().PatternFor(tenant)},
			MaxHeld: trackedOps, PollInterval: 50 * time.Millisecond,
			Check: func(_ context.Context, hs []*bus.Held) error {
				handed.Add(int64(len(hs)))
				return nil
			},
		}); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- bs.Run(ctx) }()
		time.Sleep(2 * time.Second)
		h0, cpu0, t0 := handed.Load(), processCPU(b), time.Now()
		time.Sleep(2 * time.Second)
		rate := float64(handed.Load()-h0) / time.Since(t0).Seconds()
		cpu := processCPU(b) - cpu0
		cancel()
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rate, "held-checked/s")
		b.ReportMetric(cpu.Seconds(), "cpu-s-per-2s")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
