// Command installer runs the Patchwave installer service on its own: it connects to NATS,
// keeps its idempotency marks in Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), and
// installs each snapshotted job's patch set. The fleet is simulated (simfleet) until the AWS
// adapter lands; it must be the fleet the snapshotter uses, or every job is refused.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/services/installer"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: installer.Name, OpsAddr: "127.0.0.1:9204", Build: build}, config.OS(), os.Stderr))
}

// build reads the installer's variables and builds it on a simulated fleet.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	fleetState := env.String("PATCHWAVE_SIMFLEET_STATE", "")
	cfg := installer.Config{RebootPolicy: provider.RebootPolicy(env.String("PATCHWAVE_REBOOT_POLICY", ""))}
	var err error
	if cfg.InstallTimeout, err = env.Duration("PATCHWAVE_INSTALL_TIMEOUT", 0); err != nil {
		return nil, nil, err
	}
	if cfg.PollInterval, err = env.Duration("PATCHWAVE_POLL_INTERVAL", 0); err != nil {
		return nil, nil, err
	}
	if cfg.Concurrency, err = env.Int("PATCHWAVE_CONCURRENCY", 0); err != nil {
		return nil, nil, err
	}
	fleet, err := simfleet.New(simfleet.Config{StatePath: fleetState})
	if err != nil {
		return nil, nil, err
	}
	svc, err := installer.New(cfg, installer.Deps{Fleet: fleet, Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	cfg = svc.Config() // with its defaults
	return svc, []any{"simfleet_state", fleetState, "install_timeout", cfg.InstallTimeout,
		"poll_interval", cfg.PollInterval, "reboot_policy", cfg.RebootPolicy, "concurrency", cfg.Concurrency}, nil
}
