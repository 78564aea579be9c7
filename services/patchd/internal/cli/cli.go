// Package cli parses patchd's flags and runs the daemon, with the demo cycle on request.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/demo"
)

// Run parses args and runs patchd until ctx is done (or, with -demo and without -serve, until
// the demo cycle is over).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("patchd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dataDir     = fs.String("data-dir", ".data/patchd", "directory for the JetStream store and the simulated fleet")
		fresh       = fs.Bool("fresh", false, "delete the data directory first")
		httpAddr    = fs.String("http", "127.0.0.1:8080", "REST API listen address")
		opsAddr     = fs.String("ops", "127.0.0.1:9090", "ops listen address (/metrics, /livez, /readyz); - disables")
		natsPort    = fs.Int("nats-port", 4222, "embedded NATS port on 127.0.0.1 (-1: random)")
		tenant      = fs.String("tenant", "acme", "tenant of the emulated AWS account")
		instances   = fs.Int("instances", 300, "emulated instances, generated when the emulator has no state yet")
		waves       = fs.Int("waves", 3, "waves the emulated instances are tagged into")
		failureRate = fs.Float64("failure-rate", 0.01, "share of (instance, patch) installs that fail (deterministic per instance and patch)")
		latency     = fs.Duration("latency", 300*time.Millisecond, "how long an emulated snapshot or command takes")
		runDemo     = fs.Bool("demo", false, "run one patch cycle over every wave and print the results")
		serve       = fs.Bool("serve", false, "with -demo: keep serving after the cycle")
		cycle       = fs.String("cycle", "", "with -demo: cycle id (default: from the current month); the same id resumes a cycle")
		logLevel    = fs.String("log-level", "warn", "log level: debug, info, warn, error")
		memLimit    = fs.String("memory-limit", "", "the process's soft memory limit (e.g. 768MiB, 1GiB, off; default GOMEMLIMIT, else 768MiB)")
		gcPercent   = fs.String("gc-percent", "", "the process's GC percent (e.g. 100, 200, off; default GOGC, else 200; the memory limit bounds the heap it lets grow)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := patchd.SetMemoryLimit(*memLimit); err != nil {
		return fmt.Errorf("-memory-limit: %w", err)
	}
	if _, err := patchd.SetGCPercent(*gcPercent); err != nil {
		return fmt.Errorf("-gc-percent: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: must be debug, info, warn or error", *logLevel)
	}
	log := obs.NewLogger(stderr, "patchd", level)
	if *fresh {
		if err := os.RemoveAll(*dataDir); err != nil {
			return fmt.Errorf("-fresh: %w", err)
		}
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		return fmt.Errorf("-data-dir: %w", err)
	}
	// The demo cycle starts its waves itself: without -serve the scheduler does not also fire
	// them (a wave whose window happens to be open would run twice).
	var fireInterval time.Duration
	if *runDemo && !*serve {
		fireInterval = -1
	}
	d, err := patchd.New(ctx, patchd.Config{
		DataDir: *dataDir, NATSPort: *natsPort, HTTPAddr: *httpAddr, OpsAddr: *opsAddr, Logger: log,
		Cloud: cloudsim.Config{
			Timing: cloudsim.Timing{Snapshot: *latency, Command: *latency, ReplaceRootVolume: *latency},
			Faults: cloudsim.FaultConfig{PatchFailureRate: *failureRate},
		},
		Tenant: *tenant, Instances: *instances, Waves: *waves,
		FireInterval: fireInterval,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "patchd: REST API %s, NATS %s (credentials: %s), data %s\n",
		d.URL(), d.NATSURL(), d.CredsFile(natsauth.UserAdmin), *dataDir)
	keyFile := patchd.OperatorKeyFile(*dataDir)
	if d.OperatorKeyCreated() {
		fmt.Fprintf(stdout, "patchd: wrote a new operator API key to %s (mode 0600)\n", keyFile)
	}
	fmt.Fprintf(stdout, "patchd: every request needs a credential: Authorization: Bearer $(cat %s)\n", keyFile)
	if !*runDemo {
		if err := d.Run(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "patchd: stopped")
		return nil
	}
	if *cycle == "" {
		*cycle = "demo-" + time.Now().UTC().Format("2006-01")
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return d.Run(gctx) })
	g.Go(func() error {
		if err := d.Ready(gctx); err != nil {
			return err
		}
		_, err := demo.Run(gctx, demo.Config{
			BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: *tenant, Waves: *waves, CycleID: *cycle, Out: stdout,
		})
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if *serve {
			fmt.Fprintf(stdout, "\nServing on %s until Ctrl-C (try: curl -H \"Authorization: Bearer $(cat %s)\" %s/v1/tenants/%s/compliance)\n",
				d.URL(), keyFile, d.URL(), *tenant)
			return nil
		}
		stop()
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return nil
	}
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		fmt.Fprintln(stdout, "patchd: stopped")
		return nil
	}
	return err
}
