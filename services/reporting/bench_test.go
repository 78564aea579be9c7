package reporting_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting"
)

// benchFleet is the benchmark's fleet: one tenant, its instances over 3 waves and 2 OS
// families, runs of 10,000 instances each.
const (
	benchFleet = 100_000
	benchRun   = 10_000
)

// rebuildProfile writes a CPU profile of the rebuild alone (not of the publishing before it
// nor of the summary after it): go test -bench Compliance -args -rebuild-cpuprofile cpu.prof.
var rebuildProfile = flag.String("rebuild-cpuprofile", "", "write a CPU profile of BenchmarkCompliance's rebuild to this file")

// rebuildOnly stops BenchmarkCompliance after the rebuild: no summary under load (which takes
// 10 s and builds the load generator), for A/B runs of the rebuild alone.
var rebuildOnly = flag.Bool("rebuild-only", false, "run only BenchmarkCompliance's rebuild, not the summary under load")

// BenchmarkCompliance is the compliance benchmark (make bench-compliance). It fills the stream
// with a cycle of a 100,000-instance tenant (run.started in runs of 10,000, then per instance
// install.started and install.succeeded or install.failed with per-patch results: 200,010
// events), then:
//
//   - rebuild: the time Rebuild takes to replay the stream into an empty Redis, and the events
//     per second it applied;
//   - summary under load: a reporting service over that read model answers GetCompliance to a
//     load generator in a second process (cmd/compliance-loadgen) at 200 calls/s for 10 s, over
//     gRPC with mutual TLS; it reports p50 and p99 latency and the achieved rate.
//
// Figures only: nothing here fails on time.
func BenchmarkCompliance(b *testing.B) {
	ctx := b.Context()
	nc := testkit.StartNATS(b).Connect(b)
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	designtest.PutTenant(b, js, "acme", nil)
	redis := testkit.StartRedis(b)
	// As reporting -rebuild's client does (store.NewRedis): its read timeout is sized for a
	// replayed batch's commit.
	client := goredis.NewClient(store.RedisOptions(store.RedisConfig{Addr: redis.Addr()}))
	b.Cleanup(func() { _ = client.Close() })
	st := store.NewRedisFromClient(client, "patchwave:reporting:")

	start := time.Now()
	published := publishFleet(b, nc)
	b.Logf("published %d events in %s", published, time.Since(start).Round(time.Millisecond))

	var stats reporting.RebuildStats
	// As the rebuild command does: a replay allocates a lot and keeps little.
	gc := debug.SetGCPercent(reporting.RebuildGCPercent)
	if *rebuildProfile != "" {
		f, err := os.Create(*rebuildProfile)
		require.NoError(b, err)
		defer f.Close()
		require.NoError(b, pprof.StartCPUProfile(f))
	}
	cpu0, sys0 := cpuTime()
	rcpu0 := redisCPU(b, client)
	b.ResetTimer()
	for range b.N {
		stats, err = reporting.Rebuild(ctx, reporting.RebuildConfig{Conn: nc, Store: st})
		require.NoError(b, err)
	}
	b.StopTimer()
	if *rebuildProfile != "" {
		pprof.StopCPUProfile()
	}
	cpu1, sys1 := cpuTime()
	cpu, sys := (cpu1-cpu0)/time.Duration(b.N), (sys1-sys0)/time.Duration(b.N)
	rcpu := (redisCPU(b, client) - rcpu0) / time.Duration(b.N)
	rate := float64(stats.Events) / stats.Took.Seconds()
	b.ReportMetric(rate, "rebuild-events/s")
	b.ReportMetric(float64(stats.Events)/cpu.Seconds(), "rebuild-events/cpu-s")
	b.ReportMetric(float64(stats.Events)/(cpu+rcpu).Seconds(), "rebuild-events/cpu-s-with-redis")
	fmt.Printf("compliance rebuild: %d events replayed into Redis in %s: %.0f events/s; %s of CPU in this process (%s of it system; embedded nats-server included): %.0f events per CPU-second; "+
		"redis-server %s of CPU: %.0f events per CPU-second of both; %d commits applied again\n",
		stats.Events, stats.Took.Round(time.Millisecond), rate, cpu.Round(time.Millisecond), sys.Round(time.Millisecond), float64(stats.Events)/cpu.Seconds(),
		rcpu.Round(time.Millisecond), float64(stats.Events)/(cpu+rcpu).Seconds(), stats.Reapplied)
	if *rebuildOnly {
		return
	}
	// The service below is a running reporting service, not the rebuild command: its GOGC,
	// and none of the rebuild's garbage.
	debug.SetGCPercent(gc)
	runtime.GC()

	// The summary under load, from a second process.
	svc, err := reporting.New(reporting.Config{DailyScanAt: "off"}, reporting.Deps{Store: st})
	require.NoError(b, err)
	pki := stagetest.PKI(b)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h, err := host.New(hctx, host.Config{Name: "bench-reporting", Conn: nc, GRPCAddr: "127.0.0.1:0",
		GRPCTLS: stagetest.ServerTLS(b, pki[mtls.Services])}, svc)
	require.NoError(b, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	require.NoError(b, h.Ready(hctx))
	bin := filepath.Join(b.TempDir(), "compliance-loadgen")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/compliance-loadgen")
	build.Stderr = os.Stderr
	require.NoError(b, build.Run())
	gw := pki[mtls.Gateway]
	var out bytes.Buffer
	load := exec.CommandContext(ctx, bin, "-addr", h.GRPCAddr(), "-ca", gw.CA, "-cert", gw.Cert, "-key", gw.Key,
		"-tenant", "acme", "-rate", "200", "-duration", "10s")
	load.Stdout, load.Stderr = &out, os.Stderr
	var gc0, gc1 debug.GCStats
	debug.ReadGCStats(&gc0)
	require.NoError(b, load.Run())
	debug.ReadGCStats(&gc1)
	var res struct {
		Calls  int     `json:"calls"`
		Errors int     `json:"errors"`
		Rate   float64 `json:"rate"`
		P50    float64 `json:"p50_ms"`
		P99    float64 `json:"p99_ms"`
		Max    float64 `json:"max_ms"`
		Late   float64 `json:"max_late_ms"`
	}
	require.NoError(b, json.Unmarshal(out.Bytes(), &res), out.String())
	b.ReportMetric(res.P50, "summary-p50-ms")
	b.ReportMetric(res.P99, "summary-p99-ms")
	b.ReportMetric(res.Rate, "summary-calls/s")
	// The serving process's collections while it answered, and their longest pause.
	gcs := gc1.NumGC - gc0.NumGC
	var pause time.Duration
	for _, p := range gc1.Pause[:min(int(gcs), len(gc1.Pause))] {
		pause = max(pause, p)
	}
	fmt.Printf("compliance summary, %d instances of one tenant: %d calls at %.1f/s from a second process, %d errors: p50 %.2f ms, p99 %.2f ms, max %.2f ms; "+
		"the serving process collected garbage %d times meanwhile, longest pause %s; the generator sent a call at most %.2f ms late\n",
		benchFleet, res.Calls, res.Rate, res.Errors, res.P50, res.P99, res.Max, gcs, pause, res.Late)
	cancel()
	require.NoError(b, <-done)
}

// cpuTime is the CPU time this process used so far: user and system together, and the system
// part alone (page faults of a growing heap, reads and writes of sockets and files).
func cpuTime() (total, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
}

// redisCPU is the CPU time (user and system) the redis-server used so far (INFO cpu).
func redisCPU(b *testing.B, client *goredis.Client) time.Duration {
	b.Helper()
	info, err := client.Info(b.Context(), "cpu").Result()
	require.NoError(b, err)
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(b, err, line)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// publishFleet publishes the benchmark cycle and returns how many events it published.
func publishFleet(b *testing.B, nc *nats.Conn) int {
	b.Helper()
	sched := stagetest.Publisher(b, nc, "scheduler")
	inst := stagetest.Publisher(b, nc, "installer")
	patches := []string{"ALAS-1", "ALAS-2", "ALAS-3", "ALAS-4"}
	n := 0
	at := timestamppb.New(time.Date(2026, 11, 10, 2, 0, 0, 0, time.UTC))
	for r := range benchFleet / benchRun {
		run := fmt.Sprintf("run-%d", r)
		ids := make([]string, benchRun)
		for i := range ids {
			ids[i] = fmt.Sprintf("i-%06d", r*benchRun+i)
		}
		ev := events.MustNew("acme", run, &eventsv1.RunStarted{Tenant: "acme", RunId: run, Wave: int32(1 + r%3), StartedAt: at,
			Groups: []*typesv1.InstanceGroup{{Location: &typesv1.Location{Account: "111111111111", Region: "eu-central-1"}, InstanceIds: ids}}})
		require.NoError(b, sched.Publish(b.Context(), ev))
		n++
		var batch []*events.Event
		flush := func() {
			require.NoError(b, inst.Publish(b.Context(), batch...))
			n += len(batch)
			batch = batch[:0]
		}
		for i, id := range ids {
			key := run + "/" + id
			batch = append(batch, events.MustNew("acme", key, &eventsv1.InstallStarted{Tenant: "acme", RunId: run, Wave: int32(1 + r%3), InstanceId: id}))
			results := make([]*typesv1.PatchResult, len(patches))
			for j, p := range patches {
				results[j] = &typesv1.PatchResult{PatchId: p, State: typesv1.PatchState_PATCH_STATE_INSTALLED}
			}
			if i%20 == 0 {
				results[1] = &typesv1.PatchResult{PatchId: patches[1], State: typesv1.PatchState_PATCH_STATE_FAILED, Error: "conflict"}
				batch = append(batch, events.MustNew("acme", key, &eventsv1.InstallFailed{Tenant: "acme", RunId: run, Wave: int32(1 + r%3),
					InstanceId: id, Reason: "1 patch failed", Results: results}))
			} else {
				batch = append(batch, events.MustNew("acme", key, &eventsv1.InstallSucceeded{Tenant: "acme", RunId: run, Wave: int32(1 + r%3),
					InstanceId: id, Results: results}))
			}
			if len(batch) >= 2000 {
				flush()
			}
		}
		flush()
	}
	return n
}
