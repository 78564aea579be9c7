// Command installer runs the Patchwave installer service on its own: it connects to NATS, keeps
// its idempotency marks in Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), and installs
// each snapshotted job's patch set through the configured fleet provider
// (libs/provider/fleets: PATCHWAVE_PROVIDER, PATCHWAVE_AWS_*), the one the snapshotter uses.
package main

import (
	"context"
	"os"
	"time"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider/fleets"
	"github.com/patchwave/patchwave/services/installer"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: installer.Name, OpsAddr: "127.0.0.1:9204", Build: build}, config.OS(), os.Stderr))
}

// build reads the installer's variables and builds it on the configured fleet.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	var cfg installer.Config
	var err error
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"PATCHWAVE_INSTALL_TIMEOUT", &cfg.InstallTimeout}, {"PATCHWAVE_POLL_INTERVAL", &cfg.PollInterval},
		{"PATCHWAVE_HEALTH_GRACE", &cfg.HealthGrace}, {"PATCHWAVE_BATCH_LINGER", &cfg.BatchLinger},
		{"PATCHWAVE_SCAN_TIMEOUT", &cfg.ScanTimeout},
	} {
		if *d.dst, err = env.Duration(d.name, 0); err != nil {
			return nil, nil, err
		}
	}
	for _, n := range []struct {
		name string
		dst  *int
	}{
		{"PATCHWAVE_CONCURRENCY", &cfg.Concurrency}, {"PATCHWAVE_MAX_TRACKED", &cfg.MaxTracked}, {"PATCHWAVE_BATCH_SIZE", &cfg.BatchSize},
	} {
		if *n.dst, err = env.Int(n.name, 0); err != nil {
			return nil, nil, err
		}
	}
	fleet, err := fleets.FromEnv(env, fleets.Options{Accounts: fleets.DesignAccounts(env, deps), Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	svc, err := installer.New(cfg, installer.Deps{Fleet: fleet, Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	cfg = svc.Config() // with its defaults
	return svc, []any{"provider", fleet.Provider, "aws_endpoint", env.String(fleets.EnvEndpoint, ""),
		"install_timeout", cfg.InstallTimeout, "poll_interval", cfg.PollInterval, "concurrency", cfg.Concurrency,
		"max_tracked", cfg.MaxTracked, "health_grace", cfg.HealthGrace}, nil
}
