// Command gateway runs the Patchwave REST API on its own: it serves the HTTP routes of
// proto/api_config.yaml and /openapi.json, and forwards each call to the scheduler, reporting
// and catalog gRPC services. /livez, /readyz and /metrics are on the ops address.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/services/gateway"
)

func main() {
	log := obs.NewLogger(os.Stderr, gateway.Name, slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, log, config.OS())
	stop()
	if err != nil {
		log.Error("gateway stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, env config.Env) error {
	opsAddr := env.String("PATCHWAVE_OPS_ADDR", "127.0.0.1:9207")
	// PATCHWAVE_BACKEND points every route at one gRPC server; without it each service is
	// reached at its own default address.
	backend := env.String("PATCHWAVE_BACKEND", "")
	target := func(key, def string) string {
		if backend != "" {
			def = backend
		}
		return env.String(key, def)
	}
	cfg := gateway.Config{
		Addr:            env.String("PATCHWAVE_HTTP_ADDR", "127.0.0.1:8080"),
		Backend:         backend,
		SchedulerTarget: target("PATCHWAVE_SCHEDULER_TARGET", "127.0.0.1:9102"),
		ReportingTarget: target("PATCHWAVE_REPORTING_TARGET", "127.0.0.1:9106"),
		CatalogTarget:   target("PATCHWAVE_CATALOG_TARGET", "127.0.0.1:9101"),
		Logger:          log,
	}
	log.Info("config", "ops_addr", opsAddr, "http_addr", cfg.Addr,
		"scheduler_target", cfg.SchedulerTarget, "reporting_target", cfg.ReportingTarget, "catalog_target", cfg.CatalogTarget)

	gw, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	h, err := host.New(ctx, host.Config{Name: gateway.Name, Logger: log, OpsAddr: opsAddr}, gw)
	if err != nil {
		_ = gw.Close()
		return err
	}
	return h.Run(ctx)
}
