// Command gateway runs the Patchwave REST API on its own: it serves the HTTP routes of
// proto/api_config.yaml and /openapi.json, and forwards each call to the scheduler, reporting
// and catalog gRPC services. /livez, /readyz and /metrics are on the ops address.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/services/gateway"
)

func main() {
	// The gateway neither handles events nor keeps state: no NATS, no store, no gRPC server.
	os.Exit(host.RunCommand(host.Command{Name: gateway.Name, OpsAddr: "127.0.0.1:9207", NoNATS: true, Build: build},
		config.OS(), os.Stderr))
}

// build reads the gateway's variables and builds it.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
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
		Logger:          deps.Logger,
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return gw, []any{"http_addr", cfg.Addr, "scheduler_target", cfg.SchedulerTarget,
		"reporting_target", cfg.ReportingTarget, "catalog_target", cfg.CatalogTarget}, nil
}
