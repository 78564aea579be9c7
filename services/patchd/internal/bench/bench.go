// Package bench measures one or more waves through patchd's real wiring: every service, the
// embedded JetStream server, the AWS adapter against an in-process cloudsim at zero latency and
// in-memory read models, as patchd runs them. The tenant is prepared through the REST API as
// the demo does (service design, keys, an approved baseline), each wave's run is started through
// the API and its end is seen in the events (run.completed, then every consumer of the event
// stream caught up), never by sleeping. The same server then runs the raw JetStream floor
// (libs/benchkit.Floor) with as many events as the waves produced, and the ratio of the two is
// the figure that counts on a shared machine. Nothing here asserts a time.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/benchkit"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/demo"
	"github.com/patchwave/patchwave/services/reporting"
)

// Tenant is the bench's tenant.
const Tenant = "bench"

// Config configures a bench run.
type Config struct {
	// Instances is the number of instances of each wave. Required, 1..MaxInstances.
	Instances int
	// Waves is how many waves of Instances run, one after the other. Optional, default 1,
	// at most 10.
	Waves int
	// MaxConcurrency is each wave's rollout max_concurrency (a count) in the service design.
	// Optional, default Instances (the whole wave at once). It is the design's field: it takes
	// effect where the run engine enforces it.
	MaxConcurrency int
	// DataDir is patchd's data directory; it must be empty or absent. Required.
	DataDir string
	// FailureRate is the share of (instance, patch) installs cloudsim fails. Optional.
	FailureRate float64
	// PollInterval of the snapshotter's and installer's trackers. Optional, patchd's default.
	PollInterval time.Duration
	// CPUProfile, if set, receives a CPU profile of the waves (not of the setup or the floor).
	CPUProfile io.Writer
	// HeapProfile, if set, receives a heap profile taken when the live heap was at its largest
	// during the waves (sampled every second).
	HeapProfile io.Writer
	// AllocProfile, if set, receives the allocation profile when the waves end, before the
	// floor: every allocation since the process started, so setup's too, the floor's not.
	AllocProfile io.Writer
	// Out receives the report; its last line is Result.Line. Required.
	Out io.Writer
	// Logger for patchd. Optional, default discards.
	Logger *slog.Logger
	// Timeout bounds each wave. Optional, default 30 minutes.
	Timeout time.Duration
	// FloorRuns is how many times the floor runs; the fastest counts (it is a floor, and on a
	// shared machine one short run can lose seconds to a neighbour's burst). Optional,
	// default 3.
	FloorRuns int
	// CloudProcess runs the emulator in a process of its own (a child of the bench), so the
	// peak RSS of patchd is measured without it; its own peak RSS is reported beside.
	// Optional, default in-process (as patchd runs it).
	CloudProcess bool
	// CloudCPUProfile, with CloudProcess, is the file the emulator's process writes its CPU
	// profile to, from when it serves (its fleet built) until it stops: the waves, the floor
	// (when cloudsim is idle) and the few calls of the setup. Optional.
	CloudCPUProfile string
	// CloudGCPercent, with CloudProcess, is the emulator process's GC percent (as GOGC;
	// negative: off). Optional, default 0: Go's (GOGC, else 100).
	CloudGCPercent int
	// Stderr receives the emulator process's log. Optional, default discards.
	Stderr io.Writer
	// MemoryLimit is the soft memory limit the process runs with, for the report (the caller
	// sets it: patchd.SetMemoryLimit). Optional.
	MemoryLimit int64
	// DailyScanAt is reporting's daily assessment time (UTC "HH:MM"), as patchd's
	// PATCHWAVE_DAILY_SCAN_AT. Optional, default "off": a tenant not yet scanned today is due
	// at once once the time has passed, so with the daily scan on, a wave also runs a scan of
	// every instance whose job has ended (42,000 to 58,000 scans in a 100,000 wave), and how
	// many depends on the hour the bench runs; off, waves compare cleanly.
	DailyScanAt string
}

// MaxInstances bounds the instances of one wave (the emulator's ceiling).
const MaxInstances = 1_000_000

func (c *Config) setDefaults() {
	if c.Waves == 0 {
		c.Waves = 1
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = c.Instances
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Minute
	}
	if c.FloorRuns == 0 {
		c.FloorRuns = 3
	}
	if c.DailyScanAt == "" {
		c.DailyScanAt = "off"
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Instances < 1 || c.Instances > MaxInstances {
		errs = append(errs, fmt.Errorf("instances %d: must be from 1 to %d", c.Instances, MaxInstances))
	}
	if c.Waves < 1 || c.Waves > 10 {
		errs = append(errs, fmt.Errorf("waves %d: must be from 1 to 10", c.Waves))
	}
	if c.MaxConcurrency < 1 || c.MaxConcurrency > 100_000 {
		errs = append(errs, fmt.Errorf("max-concurrency %d: must be from 1 to 100000 (the design's count)", c.MaxConcurrency))
	}
	if c.FailureRate < 0 || c.FailureRate > 1 {
		errs = append(errs, fmt.Errorf("failure-rate %g: must be from 0 to 1", c.FailureRate))
	}
	if c.FloorRuns < 1 || c.FloorRuns > 20 {
		errs = append(errs, fmt.Errorf("floor-runs %d: must be from 1 to 20", c.FloorRuns))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: required"))
	}
	if c.DailyScanAt != "off" {
		if _, err := time.Parse("15:04", c.DailyScanAt); err != nil {
			errs = append(errs, fmt.Errorf("daily-scan %q: must be a UTC time of day HH:MM or off", c.DailyScanAt))
		}
	}
	if c.Out == nil {
		errs = append(errs, errors.New("Out: required"))
	}
	return errors.Join(errs...)
}

// Result is what a bench run measured.
type Result struct {
	// Instances is the number of instances of all waves.
	Instances int
	// Runs are the final states of the waves' runs.
	Runs []*schedulerv1.Run
	// Wall is the time of the waves, from each StartRun call to the moment its run completed and
	// every consumer of the event stream had caught up, summed over waves.
	Wall time.Duration
	// Events is the number of events the waves stored in the tenant stream.
	Events int
	// Stages are the per-stage times of every wave, in order.
	Stages []Stage
	// Floor is the fastest of the floor runs: the raw JetStream pipeline with about as many
	// events, on the same server.
	Floor benchkit.FloorResult
	// FloorWalls are the wall times of every floor run, in order.
	FloorWalls []time.Duration
	// CPU and FloorCPU are the process's CPU time (user and system) during the waves and
	// during the floor (its least over the runs): on a shared machine they move less than
	// wall times.
	CPU, FloorCPU time.Duration
	// Deliveries are what each consumer of the tenant stream was delivered during the waves.
	Deliveries []Delivery
	// DecodeHits and DecodeMisses are the process's decode cache lookups during the waves:
	// misses are the events decoded, hits the deliveries that reused a decoded event.
	DecodeHits, DecodeMisses uint64
	// BusCounters are patchd's bus counters (handler calls, tracker checks and outcomes) during
	// the waves, keyed "<metric> <labels>".
	BusCounters map[string]float64
	// CloudCalls counts the emulator's calls per operation during the waves.
	CloudCalls map[string]int64
	// MaxBusy is the most instances the emulator had a patching operation in progress for at
	// once during the waves (bounded by the waves' max concurrency).
	MaxBusy int64
	// PeakRSSMiB is patchd's peak resident set up to the end of the waves (before the floor):
	// the bench's process, where patchd, its embedded server and, unless CloudProcess,
	// cloudsim live. PeakRSSFloorMiB is the same process's peak after the floor ran too.
	PeakRSSMiB, PeakRSSFloorMiB float64
	// CloudRSSMiB is the emulator process's peak resident set (CloudProcess only).
	CloudRSSMiB float64
	// CloudCPU is the user and system CPU the emulator's process used during the waves
	// (CloudProcess only; 10 ms resolution): what serving the waves' calls costs cloudsim,
	// apart from patchd.
	CloudCPU time.Duration
	// Scans are the compliance scans the waves ran beside their jobs (none unless the daily
	// scan is on).
	Scans Scans
	// PeakLiveMiB is the largest live heap a GC left during the waves (sampled every
	// second) and EndLiveMiB the live heap after a GC when they ended: what patchd (and an
	// in-process emulator) keeps.
	PeakLiveMiB, EndLiveMiB float64
	// AllocBytes and AllocObjects are what the process allocated on the heap during the waves
	// (the runtime's cumulative counters): with the emulator in its own process, patchd's
	// garbage, what its GC has to collect.
	AllocBytes, AllocObjects uint64
	// GCCycles is how many GC cycles the process finished during the waves: with the same
	// allocations, fewer cycles is what a higher GC percent or memory limit buys.
	GCCycles uint64
}

// Scans counts the scan events the waves stored: assessments ordered (one per tenant and
// scan) and instances scanned or failed.
type Scans struct {
	Ordered, Completed, Failed int
}

func scansOf(stages []Stage) Scans {
	var sc Scans
	for _, s := range stages {
		switch s.Name {
		case "scan.ordered":
			sc.Ordered += s.Events
		case "scan.completed":
			sc.Completed += s.Events
		case "scan.failed":
			sc.Failed += s.Events
		}
	}
	return sc
}

// Ratio is Wall over the floor's wall time.
func (r Result) Ratio() float64 {
	if r.Floor.Wall <= 0 {
		return 0
	}
	return r.Wall.Seconds() / r.Floor.Wall.Seconds()
}

// Line is the report's last line, for scripts.
func (r Result) Line() string {
	line := fmt.Sprintf("ratio=%.2f instances=%d wall_s=%.2f floor_s=%.2f peak_rss_mib=%.0f",
		r.Ratio(), r.Instances, r.Wall.Seconds(), r.Floor.Wall.Seconds(), r.PeakRSSMiB)
	if r.CloudRSSMiB > 0 {
		line += fmt.Sprintf(" cloudsim_rss_mib=%.0f", r.CloudRSSMiB)
	}
	return line
}

// Stage is one stage of a wave: when (from the StartRun call) its first and last event arrived.
type Stage struct {
	Wave   int
	Name   string
	Events int
	First  time.Duration
	Last   time.Duration
}

// Run prepares patchd, runs the waves and the floor, and prints the report.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("bench: data-dir %s: must be empty (each bench starts from nothing)", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("bench: data-dir: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pcfg := patchd.Config{
		DataDir: cfg.DataDir, NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "-", Logger: cfg.Logger,
		Cloud:  cloudsim.Config{Faults: cloudsim.FaultConfig{PatchFailureRate: cfg.FailureRate}},
		Tenant: Tenant, Instances: cfg.Instances * cfg.Waves, Waves: cfg.Waves, PollInterval: cfg.PollInterval,
		// The bench starts its waves itself; the scheduler does not fire them too.
		FireInterval: -1,
		Reporting:    reporting.Config{DailyScanAt: cfg.DailyScanAt},
	}
	var cs cloudStats
	if cfg.CloudProcess {
		stderr := cfg.Stderr
		if stderr == nil {
			stderr = io.Discard
		}
		p, err := startCloudProc(ctx, childConfig{
			StateDir: filepath.Join(cfg.DataDir, "cloudsim"), Tenant: Tenant, Instances: pcfg.Instances, Waves: cfg.Waves,
			FailureRate: cfg.FailureRate, CPUProfile: cfg.CloudCPUProfile, GCPercent: cfg.CloudGCPercent,
		}, stderr)
		if err != nil {
			return nil, err
		}
		defer p.close()
		pcfg.RemoteCloud, cs = p.remote, p
	}
	d, err := patchd.New(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		cs = inProcess{d.Cloud()}
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	res, err := run(ctx, cfg, d, cs)
	cancel()
	if rerr := <-runErr; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
		err = fmt.Errorf("patchd: %w", rerr)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// cloudStats are the emulator's counters, wherever it runs.
type cloudStats interface {
	resetStats(ctx context.Context) error
	stats(ctx context.Context) (cloudsim.Stats, error)
}

type inProcess struct{ sim *cloudsim.Server }

func (p inProcess) resetStats(context.Context) error { p.sim.ResetStats(); return nil }

func (p inProcess) stats(context.Context) (cloudsim.Stats, error) { return p.sim.Stats(), nil }

func (p *cloudProc) resetStats(ctx context.Context) error {
	return p.admin(ctx, http.MethodPost, "stats/reset", nil)
}

func (p *cloudProc) stats(ctx context.Context) (cloudsim.Stats, error) {
	var st cloudsim.Stats
	err := p.admin(ctx, http.MethodGet, "stats", &st)
	return st, err
}

func run(ctx context.Context, cfg Config, d *patchd.Daemon, cs cloudStats) (*Result, error) {
	if err := d.Ready(ctx); err != nil {
		return nil, err
	}
	where := "in-process"
	if cfg.CloudProcess {
		where = "in its own process"
	}
	limit := "none"
	if cfg.MemoryLimit > 0 && cfg.MemoryLimit < math.MaxInt64 {
		limit = fmt.Sprintf("%d MiB", cfg.MemoryLimit>>20)
	}
	gogc := "off"
	if p := patchd.GCPercent(); p >= 0 {
		gogc = strconv.Itoa(p)
	}
	fmt.Fprintf(cfg.Out, "patchbench: %d wave(s) of %d instances, max concurrency %d, failure rate %g, cloudsim at zero latency (%s), memory limit %s, GC percent %s, daily scan %s\n",
		cfg.Waves, cfg.Instances, cfg.MaxConcurrency, cfg.FailureRate, where, limit, gogc, cfg.DailyScanAt)
	sess, err := demo.Prepare(ctx, demo.Config{
		BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: Tenant, Waves: cfg.Waves, CycleID: "bench", Out: io.Discard,
		// StartRun discovers the whole wave before it answers: about 30 s at 100,000 instances on
		// a quiet machine, minutes on a loaded one.
		Client: &http.Client{Timeout: 15 * time.Minute},
		Policy: func(int) *typesv1.RolloutPolicy {
			return &typesv1.RolloutPolicy{
				MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Count{Count: int32(cfg.MaxConcurrency)}},
				ErrorBudget:    &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 100}},
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	js, err := jetstream.New(d.Conn())
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, events.StreamTenant)
	if err != nil {
		return nil, err
	}
	w, err := watch(d.Conn())
	if err != nil {
		return nil, err
	}
	defer w.close()

	res := &Result{Instances: cfg.Instances * cfg.Waves}
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	if err := cs.resetStats(ctx); err != nil {
		return nil, err
	}
	delivered0, err := consumerDeliveries(ctx, stream)
	if err != nil {
		return nil, err
	}
	hits0, misses0 := bus.DecodeStats()
	heap := watchHeap(ctx, cfg.HeapProfile != nil)
	bus0, err := busCounters(d.Metrics())
	if err != nil {
		return nil, err
	}
	cloudCPU0, err := cloudCPU(cs)
	if err != nil {
		return nil, err
	}
	alloc0 := readAllocs()
	cpu0 := cpuTime()
	for wave := 1; wave <= cfg.Waves; wave++ {
		r, stages, events, wall, err := runWave(ctx, cfg, sess, stream, w, wave)
		if err != nil {
			if cfg.CPUProfile != nil {
				pprof.StopCPUProfile()
			}
			return nil, fmt.Errorf("wave %d: %w", wave, err)
		}
		res.Runs = append(res.Runs, r)
		res.Stages = append(res.Stages, stages...)
		res.Events += events
		res.Wall += wall
	}
	res.CPU = cpuTime() - cpu0
	cloudCPU1, err := cloudCPU(cs)
	if err != nil {
		return nil, err
	}
	res.CloudCPU = cloudCPU1 - cloudCPU0
	alloc := readAllocs()
	res.AllocBytes, res.AllocObjects = alloc.bytes-alloc0.bytes, alloc.objects-alloc0.objects
	res.GCCycles = alloc.cycles - alloc0.cycles
	res.Scans = scansOf(res.Stages)
	delivered, err := consumerDeliveries(ctx, stream)
	if err != nil {
		return nil, err
	}
	res.Deliveries = deliveriesSince(delivered0, delivered)
	hits, misses := bus.DecodeStats()
	res.DecodeHits, res.DecodeMisses = hits-hits0, misses-misses0
	bus1, err := busCounters(d.Metrics())
	if err != nil {
		return nil, err
	}
	res.BusCounters = counterDelta(bus0, bus1)
	res.CloudCalls = map[string]int64{}
	cloudStats, err := cs.stats(ctx)
	if err != nil {
		return nil, err
	}
	for op, st := range cloudStats.Operations {
		res.CloudCalls[op] = st.Calls
	}
	res.MaxBusy = cloudStats.Busy.MaxInFlight
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if res.PeakRSSMiB, err = benchkit.PeakRSSMiB("self"); err != nil {
		return nil, err
	}
	if p, ok := cs.(*cloudProc); ok {
		if res.CloudRSSMiB, err = benchkit.PeakRSSMiB(p.pid()); err != nil {
			return nil, err
		}
	}
	res.PeakLiveMiB, res.EndLiveMiB = heap.stop()
	if cfg.HeapProfile != nil {
		if _, err := cfg.HeapProfile.Write(heap.profile()); err != nil {
			return nil, fmt.Errorf("heap profile: %w", err)
		}
	}
	if cfg.AllocProfile != nil {
		if err := pprof.Lookup("allocs").WriteTo(cfg.AllocProfile, 0); err != nil {
			return nil, fmt.Errorf("allocation profile: %w", err)
		}
	}

	// The floor: as many events as the waves stored, through raw nats.go relays on the same
	// server, in a stream of its own configured as the tenant stream is.
	perInstance := float64(res.Events) / float64(res.Instances)
	stages := max(1, int(math.Round(perInstance))-1)
	for i := range cfg.FloorRuns {
		cpu0 = cpuTime()
		f, err := floor(ctx, js, stream, res.Instances, stages)
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		if c := cpuTime() - cpu0; i == 0 || c < res.FloorCPU {
			res.FloorCPU = c
		}
		if i == 0 || f.Wall < res.Floor.Wall {
			res.Floor = f
		}
		res.FloorWalls = append(res.FloorWalls, f.Wall)
	}
	if res.PeakRSSFloorMiB, err = benchkit.PeakRSSMiB("self"); err != nil {
		return nil, err
	}
	report(cfg.Out, res, perInstance, stages, cfg.DailyScanAt)
	return res, nil
}

// runWave runs one wave and returns its run, stages, events and wall time.
func runWave(ctx context.Context, cfg Config, sess *demo.Session, stream jetstream.Stream, w *watcher, wave int) (*schedulerv1.Run, []Stage, int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	before, err := stream.Info(ctx)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	w.reset()
	start := time.Now()
	w.begin(start)
	r, err := sess.StartRun(ctx, int32(wave))
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("start run: %w", err)
	}
	if int(r.GetTotal()) != cfg.Instances {
		return nil, nil, 0, 0, fmt.Errorf("run %s has %d instances, want %d", r.GetRunId(), r.GetTotal(), cfg.Instances)
	}
	fmt.Fprintf(cfg.Out, "wave %d: run %s started, %d instances\n", wave, r.GetRunId(), r.GetTotal())
	// The run's end is its RunCompleted event; the GetRun poll every few seconds only guards
	// against a missed core-NATS message and prints progress.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, nil, 0, 0, fmt.Errorf("run %s did not complete: %w", r.GetRunId(), ctx.Err())
		case id := <-w.completed:
			done = id == r.GetRunId()
		case <-tick.C:
			got, err := sess.GetRun(ctx, r.GetRunId())
			var apiErr *demo.APIError
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
				// StartRun answers once the run is published; the scheduler's read model
				// may not have applied it yet (100 membership chunks at 100,000 instances).
				fmt.Fprintf(cfg.Out, "  %5.1fs: run not in the scheduler's read model yet\n", time.Since(start).Seconds())
				continue
			}
			if err != nil {
				return nil, nil, 0, 0, err
			}
			done = finished(got.GetState())
			fmt.Fprintf(cfg.Out, "  %5.1fs: %d snapshotted, %d succeeded, %d failed, %d snapshot failures of %d\n",
				time.Since(start).Seconds(), got.GetSnapshotted(), got.GetSucceeded(), got.GetFailed(), got.GetSnapshotFailed(), got.GetTotal())
		}
	}
	completed := time.Since(start)
	// Then every consumer of the tenant stream (reporting's projections, the notifier, the
	// services' own read models) has processed everything the wave stored.
	if err := caughtUp(ctx, stream); err != nil {
		return nil, nil, 0, 0, err
	}
	wall := time.Since(start)
	after, err := stream.Info(ctx)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	got, err := finalRun(ctx, sess, r.GetRunId())
	if err != nil {
		return nil, nil, 0, 0, err
	}
	stages := w.stages(wave)
	stages = append(stages,
		Stage{Wave: wave, Name: "run completed", Events: 1, First: completed, Last: completed},
		Stage{Wave: wave, Name: caughtUpStage, First: completed, Last: wall})
	fmt.Fprintf(cfg.Out, "wave %d: %s: %d succeeded, %d failed, %d snapshot failures of %d in %.2fs\n", wave,
		strings.TrimPrefix(got.GetState().String(), "RUN_STATE_"), got.GetSucceeded(), got.GetFailed(), got.GetSnapshotFailed(), got.GetTotal(), wall.Seconds())
	return got, stages, int(after.State.LastSeq - before.State.LastSeq), wall, nil
}

// finalRun reads the run once the scheduler's read model shows it ended. The RunCompleted
// event that ended the wait comes from the stream, and the stream's consumers being caught up
// means delivered, not applied: the read model (a projection) may still answer RUNNING for a
// moment. It waits until ctx ends, so a run that never ends in the read model is an error.
func finalRun(ctx context.Context, sess *demo.Session, runID string) (*schedulerv1.Run, error) {
	for {
		got, err := sess.GetRun(ctx, runID)
		if err != nil {
			return nil, err
		}
		if finished(got.GetState()) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("run %s ended, but the scheduler's read model still shows it %s: %w",
				runID, strings.TrimPrefix(got.GetState().String(), "RUN_STATE_"), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func finished(s typesv1.RunState) bool {
	switch s {
	case typesv1.RunState_RUN_STATE_COMPLETED, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
		typesv1.RunState_RUN_STATE_HALTED, typesv1.RunState_RUN_STATE_CANCELLED:
		return true
	}
	return false
}

// caughtUp waits until no consumer of the stream has a message pending or unacknowledged.
func caughtUp(ctx context.Context, stream jetstream.Stream) error {
	for {
		busy := ""
		l := stream.ListConsumers(ctx)
		for ci := range l.Info() {
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				busy = ci.Name
			}
		}
		if err := l.Err(); err != nil {
			return fmt.Errorf("list consumers: %w", err)
		}
		if busy == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consumer %s did not catch up: %w", busy, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// watcher follows the tenant's events on a core NATS subscription: when each kind of event
// first and last arrived, and the ids of completed runs.
type watcher struct {
	sub       *nats.Subscription
	completed chan string
	mu        sync.Mutex
	start     time.Time
	kinds     map[string]*Stage
}

func watch(nc *nats.Conn) (*watcher, error) {
	w := &watcher{completed: make(chan string, 16), kinds: map[string]*Stage{}}
	prefix := events.RootTenant + "." + Tenant + "."
	sub, err := nc.Subscribe(events.TenantSubject(Tenant, "*", "*"), func(m *nats.Msg) {
		now := time.Now()
		kind := strings.TrimPrefix(m.Subject, prefix)
		w.mu.Lock()
		at := now.Sub(w.start)
		s := w.kinds[kind]
		if s == nil {
			s = &Stage{Name: kind, First: at}
			w.kinds[kind] = s
		}
		s.Events++
		s.Last = at
		w.mu.Unlock()
		if kind == "run.completed" {
			var env struct {
				Subject string `json:"subject"`
			}
			if json.Unmarshal(m.Data, &env) == nil {
				select {
				case w.completed <- env.Subject:
				default:
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	w.sub = sub
	return w, nil
}

func (w *watcher) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.kinds)
	for len(w.completed) > 0 {
		<-w.completed
	}
}

func (w *watcher) begin(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start = t
}

// caughtUpStage is the stage from run.completed to every consumer of the stream (reporting's
// projections, the notifier, the read models) having caught up.
const caughtUpStage = "all consumers caught up"

// order is the order of the pipeline's events in the report.
var order = []string{"run.started", "job.requested", "snapshot.started", "snapshot.created", "snapshot.failed",
	"install.started", "install.succeeded", "install.failed", "notification.sent", "notification.failed"}

func (w *watcher) stages(wave int) []Stage {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Stage
	for _, s := range w.kinds {
		if s.Name == "run.completed" {
			continue
		}
		c := *s
		c.Wave = wave
		out = append(out, c)
	}
	rank := func(name string) int {
		if i := slices.Index(order, name); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortFunc(out, func(a, b Stage) int {
		if d := rank(a.Name) - rank(b.Name); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func (w *watcher) close() { _ = w.sub.Unsubscribe() }

// floorStream is the floor's own stream, made like the tenant stream and deleted afterwards, so
// no service's consumer sees the floor's messages.
const floorStream = "BENCH_FLOOR"

func floor(ctx context.Context, js jetstream.JetStream, tenant jetstream.Stream, instances, stages int) (benchkit.FloorResult, error) {
	info, err := tenant.Info(ctx)
	if err != nil {
		return benchkit.FloorResult{}, err
	}
	sc := info.Config
	sc.Name, sc.Subjects, sc.Description = floorStream, []string{"benchfloor.>"}, "patchbench's floor, deleted after the bench"
	sc.Sources, sc.Mirror = nil, nil
	if _, err := js.CreateStream(ctx, sc); err != nil {
		return benchkit.FloorResult{}, fmt.Errorf("stream %s: %w", floorStream, err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), floorStream) }()
	return benchkit.Floor(ctx, benchkit.FloorConfig{
		JS: js, Stream: floorStream, SubjectPrefix: "benchfloor.run", Instances: instances, Stages: stages,
	})
}

func report(out io.Writer, res *Result, perInstance float64, stages int, dailyScan string) {
	fmt.Fprintf(out, "\nstages (seconds from the StartRun call; first and last event of each kind)\n")
	fmt.Fprintf(out, "  %-4s %-22s %8s %8s %8s\n", "wave", "stage", "events", "first_s", "last_s")
	for _, s := range res.Stages {
		fmt.Fprintf(out, "  %-4d %-22s %8d %8.2f %8.2f\n", s.Wave, s.Name, s.Events, s.First.Seconds(), s.Last.Seconds())
	}
	fmt.Fprintf(out, "\nstage times (seconds)\n")
	fmt.Fprintf(out, "  %-4s %9s %9s %11s %9s\n", "wave", "snapshot", "install", "completion", "catch-up")
	for _, p := range phases(res.Stages) {
		fmt.Fprintf(out, "  %-4d %9.2f %9.2f %11.2f %9.2f\n", p.wave, p.snapshot.Seconds(), p.install.Seconds(), p.completion.Seconds(), p.catchUp.Seconds())
	}
	fmt.Fprintf(out, "  snapshot: first job.requested to last snapshot outcome; install: first snapshot.created to last install outcome;\n")
	fmt.Fprintf(out, "  completion: last install outcome to run.completed; catch-up: run.completed to every consumer (reporting, notifier) caught up\n")
	fmt.Fprintf(out, "\ncloud calls during the waves (cloudsim's counters)\n")
	ops := slices.Sorted(maps.Keys(res.CloudCalls))
	var total int64
	for _, op := range ops {
		fmt.Fprintf(out, "  %-40s %8d\n", op, res.CloudCalls[op])
		total += res.CloudCalls[op]
	}
	fmt.Fprintf(out, "  %-40s %8d (%.2f per instance)\n", "total", total, float64(total)/float64(res.Instances))
	fmt.Fprintf(out, "  %-40s %8d (cloudsim's busy figure, bounded by the waves' max concurrency; 0 at zero latency, where operations take no time)\n", "instances busy at once, at most", res.MaxBusy)
	fmt.Fprintf(out, "  %-40s %8d ordered, %d instances scanned, %d failed (daily scan %s)\n", "compliance scans during the waves",
		res.Scans.Ordered, res.Scans.Completed, res.Scans.Failed, dailyScan)
	reportDeliveries(out, res.Deliveries, res.Instances)
	fmt.Fprintf(out, "  %-52s %9d decoded, %d reused (%.2f decodes per stored event)\n", "decode cache", res.DecodeMisses, res.DecodeHits,
		float64(res.DecodeMisses)/float64(max(res.Events, 1)))
	printBusCounters(out, res.BusCounters, res.Instances)
	fmt.Fprintf(out, "\ninstances  %d\n", res.Instances)
	fmt.Fprintf(out, "events     %d (%.2f per instance)\n", res.Events, perInstance)
	fmt.Fprintf(out, "wall       %.2fs, %.0f events/s\n", res.Wall.Seconds(), float64(res.Events)/res.Wall.Seconds())
	walls := make([]string, len(res.FloorWalls))
	for i, w := range res.FloorWalls {
		walls[i] = fmt.Sprintf("%.2f", w.Seconds())
	}
	fmt.Fprintf(out, "floor      %.2fs, %.0f events/s (raw nats.go: %d instances through %d relay stages, %d events, same server; fastest of %s s)\n",
		res.Floor.Wall.Seconds(), res.Floor.EventsPerSecond(), res.Instances, stages, res.Floor.Events, strings.Join(walls, ", "))
	fmt.Fprintf(out, "cpu        waves %.2fs, floor %.2fs (user+system of the process; ratio %.2f)",
		res.CPU.Seconds(), res.FloorCPU.Seconds(), res.CPU.Seconds()/max(res.FloorCPU.Seconds(), 1e-9))
	if res.CloudCPU > 0 {
		fmt.Fprintf(out, "; cloudsim's process %.2fs during the waves", res.CloudCPU.Seconds())
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "ratio      %.2f\n", res.Ratio())
	fmt.Fprintf(out, "allocated  %.0f MiB during the waves, %.1f KiB and %.0f objects per instance\n",
		float64(res.AllocBytes)/(1<<20), float64(res.AllocBytes)/1024/float64(res.Instances), float64(res.AllocObjects)/float64(res.Instances))
	fmt.Fprintf(out, "gc         %d cycles during the waves, %.0f MiB allocated per cycle\n",
		res.GCCycles, float64(res.AllocBytes)/(1<<20)/float64(max(res.GCCycles, 1)))
	fmt.Fprintf(out, "live heap  %.0f MiB at most during the waves, %.0f MiB when they ended (after a GC)\n", res.PeakLiveMiB, res.EndLiveMiB)
	fmt.Fprintf(out, "peak rss   %.0f MiB patchd during the waves (%.0f MiB with the floor after them)", res.PeakRSSMiB, res.PeakRSSFloorMiB)
	if res.CloudRSSMiB > 0 {
		fmt.Fprintf(out, ", cloudsim's process %.0f MiB", res.CloudRSSMiB)
	} else {
		fmt.Fprintf(out, ", cloudsim in the same process")
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, res.Line())
}

// cloudCPU is the emulator's process's CPU time so far; 0 when it runs in this process (its
// CPU is then part of cpuTime's).
func cloudCPU(cs cloudStats) (time.Duration, error) {
	p, ok := cs.(*cloudProc)
	if !ok {
		return 0, nil
	}
	return benchkit.CPUTime(p.pid())
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type phase struct {
	wave                                   int
	snapshot, install, completion, catchUp time.Duration
}

// phases derives each wave's stage times from its events' first and last arrivals.
func phases(stages []Stage) []phase {
	var out []phase
	at := map[int]map[string]Stage{}
	var waves []int
	for _, s := range stages {
		if at[s.Wave] == nil {
			at[s.Wave] = map[string]Stage{}
			waves = append(waves, s.Wave)
		}
		at[s.Wave][s.Name] = s
	}
	last := func(m map[string]Stage, names ...string) time.Duration {
		var l time.Duration
		for _, n := range names {
			if s, ok := m[n]; ok && s.Last > l {
				l = s.Last
			}
		}
		return l
	}
	for _, w := range waves {
		m := at[w]
		snapEnd := last(m, "snapshot.created", "snapshot.failed")
		instEnd := last(m, "install.succeeded", "install.failed", "snapshot.failed")
		done := m["run completed"].Last
		out = append(out, phase{
			wave: w, snapshot: snapEnd - m["job.requested"].First, install: instEnd - m["snapshot.created"].First,
			completion: done - instEnd, catchUp: m[caughtUpStage].Last - done,
		})
	}
	return out
}
