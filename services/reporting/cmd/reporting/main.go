// Command reporting runs the Patchwave reporting service on its own: it connects to NATS,
// projects the tenant and catalog event streams into its compliance read model in Redis (or in
// memory when PATCHWAVE_REDIS_ADDR is empty), serves patchwave.reporting.v1.ReportingService
// over gRPC, and requests the daily assessment (scan) of every tenant's in-scope instances.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/services/reporting"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-rebuild" || os.Args[1] == "--rebuild") {
		os.Exit(rebuild(config.OS(), os.Stderr))
	}
	os.Exit(host.RunCommand(host.Command{Name: reporting.Name, GRPCAddr: "127.0.0.1:9106", OpsAddr: "127.0.0.1:9206", Build: build},
		config.OS(), os.Stderr))
}

// build builds the reporting service from PATCHWAVE_DAILY_SCAN_AT, PATCHWAVE_SCAN_DURING_FREEZE,
// PATCHWAVE_SCAN_TICK and PATCHWAVE_SCAN_RELEASE_TICK.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	cfg := reporting.Config{DailyScanAt: env.String("PATCHWAVE_DAILY_SCAN_AT", "")}
	var err error
	if cfg.ScanDuringFreeze, err = env.Bool("PATCHWAVE_SCAN_DURING_FREEZE", false); err != nil {
		return nil, nil, err
	}
	if cfg.ScanTick, err = env.Duration("PATCHWAVE_SCAN_TICK", 0); err != nil {
		return nil, nil, err
	}
	if cfg.ScanReleaseTick, err = env.Duration("PATCHWAVE_SCAN_RELEASE_TICK", 0); err != nil {
		return nil, nil, err
	}
	svc, err := reporting.New(cfg, reporting.Deps{Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	return svc, []any{"daily_scan_at", cfg.DailyScanAt, "scan_during_freeze", cfg.ScanDuringFreeze}, nil
}

// rebuild is "reporting -rebuild": it replays the streams into fresh read models in the Redis
// of PATCHWAVE_REDIS_ADDR (keys under patchwave:reporting:), with the NATS connection of
// PATCHWAVE_NATS_URL and PATCHWAVE_NATS_CREDS, prints what it did and exits. A running service
// on the same Redis may keep running.
func rebuild(env config.Env, stderr io.Writer) int {
	log := obs.NewLogger(stderr, reporting.Name, 0)
	debug.SetGCPercent(reporting.RebuildGCPercent)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := func() error {
		addr := env.String("PATCHWAVE_REDIS_ADDR", "")
		if addr == "" {
			return errors.New("PATCHWAVE_REDIS_ADDR: required to rebuild (a memory store is rebuilt at every start)")
		}
		st, err := store.NewRedis(store.RedisConfig{Addr: addr, Password: env.String("PATCHWAVE_REDIS_PASSWORD", ""), Prefix: "patchwave:" + reporting.Name + ":"})
		if err != nil {
			return err
		}
		defer func() { _ = st.Close() }()
		opts := []nats.Option{nats.Name("patchwave-reporting-rebuild")}
		if creds := env.String("PATCHWAVE_NATS_CREDS", ""); creds != "" {
			opts = append(opts, natsauth.ConnectOptions(creds, reporting.Name)...)
		}
		nc, err := nats.Connect(env.String("PATCHWAVE_NATS_URL", nats.DefaultURL), opts...)
		if err != nil {
			return fmt.Errorf("connect nats: %w", err)
		}
		defer nc.Close()
		stats, err := reporting.Rebuild(ctx, reporting.RebuildConfig{Conn: nc, Store: st, Logger: log})
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "reporting rebuilt: %d compliance events in %s (%.0f events/s)\n", stats.Events, stats.Took, float64(stats.Events)/stats.Took.Seconds())
		return nil
	}()
	if err != nil {
		log.Error("rebuild failed", "error", err)
		return 1
	}
	return 0
}
