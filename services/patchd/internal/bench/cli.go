package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/services/patchd"
)

// Main parses patchbench's flags and runs the bench.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if ran, err := Child(ctx, stdout); ran {
		return err
	}
	fs := flag.NewFlagSet("patchbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		instances   = fs.Int("instances", 10000, "instances of each wave")
		waves       = fs.Int("waves", 1, "waves of -instances each, run one after the other")
		concurrency = fs.Int("max-concurrency", 0, "each wave's rollout max_concurrency (a count; 0: the whole wave); takes effect where the run engine enforces it")
		failureRate = fs.Float64("failure-rate", 0, "share of (instance, patch) installs that fail")
		poll        = fs.Duration("poll", 0, "poll interval of the snapshotter's and installer's trackers (0: patchd's default)")
		dataDir     = fs.String("data-dir", "", "patchd's data directory, empty or absent (default: a temporary directory, removed afterwards)")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of the waves to this file (go tool pprof -top <file>)")
		memProfile  = fs.String("memprofile", "", "write an allocation profile to this file when the waves end, before the floor (every allocation since start, setup's too; go tool pprof -sample_index=alloc_space -top <file>)")
		heapProfile = fs.String("heapprofile", "", "write a heap profile taken at the largest live heap during the waves to this file (go tool pprof -sample_index=inuse_space -top <file>)")
		cloudProc   = fs.Bool("cloudsim-process", false, "run cloudsim in a process of its own, so patchd's peak RSS is measured without the emulator (whose own peak RSS is printed beside); default in-process, as patchd runs it")
		cloudProf   = fs.String("cloudsim-cpuprofile", "", "with -cloudsim-process: the emulator's process writes its CPU profile to this file, from when it serves (its fleet built) until it stops (go tool pprof -top <file>)")
		cloudGC     = fs.Int("cloudsim-gogc", 200, "with -cloudsim-process: the emulator's process's GC percent (as GOGC; -1: off; 0: Go's, GOGC else 100). Its heap is mostly the fleet, which every cycle marks again, and it is a bench tool: 200 marks half as often as Go's 100 for a few hundred MiB more")
		floorRuns   = fs.Int("floor-runs", 3, "how many times the raw JetStream floor runs (the fastest counts)")
		timeout     = fs.Duration("timeout", 30*time.Minute, "give up on a wave after this long")
		logLevel    = fs.String("log-level", "error", "patchd's log level: debug, info, warn, error")
		dailyScan   = fs.String("daily-scan", "off", "reporting's daily compliance scan, a UTC time of day HH:MM (as PATCHWAVE_DAILY_SCAN_AT) or off: on, a tenant not scanned today is due as soon as the time has passed, so the waves also scan every instance whose job has ended")
		memLimit    = fs.String("memory-limit", "", "the process's soft memory limit, as patchd's -memory-limit (e.g. 768MiB, off; default GOMEMLIMIT, else patchd's default, with the emulator in the process or not, as patchd runs)")
		gcPercent   = fs.String("gc-percent", "", "the process's GC percent, as patchd's -gc-percent (e.g. 100, 200, off; default GOGC, else patchd's default); the emulator's process keeps the runtime's")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	limit, err := patchd.SetMemoryLimit(*memLimit)
	if err != nil {
		return fmt.Errorf("-memory-limit: %w", err)
	}
	if _, err := patchd.SetGCPercent(*gcPercent); err != nil {
		return fmt.Errorf("-gc-percent: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: must be debug, info, warn or error", *logLevel)
	}
	cfg := Config{
		Instances: *instances, Waves: *waves, MaxConcurrency: *concurrency, FailureRate: *failureRate,
		PollInterval: *poll, DataDir: *dataDir, Out: stdout, Timeout: *timeout, FloorRuns: *floorRuns,
		Logger: obs.NewLogger(stderr, "patchd", level), CloudProcess: *cloudProc, Stderr: stderr, MemoryLimit: limit,
		DailyScanAt: *dailyScan, CloudCPUProfile: *cloudProf, CloudGCPercent: *cloudGC,
	}
	if cfg.CloudCPUProfile != "" && !cfg.CloudProcess {
		return fmt.Errorf("-cloudsim-cpuprofile needs -cloudsim-process (in-process, -cpuprofile covers the emulator)")
	}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "patchbench-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		cfg.DataDir = dir
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer func() { _ = f.Close() }()
		cfg.CPUProfile = f
	}
	if *heapProfile != "" {
		f, err := os.Create(*heapProfile)
		if err != nil {
			return fmt.Errorf("-heapprofile: %w", err)
		}
		defer func() { _ = f.Close() }()
		cfg.HeapProfile = f
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return fmt.Errorf("-memprofile: %w", err)
		}
		defer func() { _ = f.Close() }()
		cfg.AllocProfile = f
	}
	_, err = Run(ctx, cfg)
	return err
}
