// Command snapshotter runs the Patchwave snapshotter service on its own: it connects to NATS,
// keeps its idempotency marks in Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), and
// snapshots every requested job's instance before it is patched. The fleet is simulated
// (simfleet) until the AWS adapter lands.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/services/snapshotter"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: snapshotter.Name, OpsAddr: "127.0.0.1:9203", Build: build}, config.OS(), os.Stderr))
}

// build reads the snapshotter's variables and builds it on a simulated fleet.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	fleetState := env.String("PATCHWAVE_SIMFLEET_STATE", "")
	var cfg snapshotter.Config
	var err error
	if cfg.SnapshotTimeout, err = env.Duration("PATCHWAVE_SNAPSHOT_TIMEOUT", 0); err != nil {
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
	svc, err := snapshotter.New(cfg, snapshotter.Deps{Fleet: fleet, Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	cfg = svc.Config() // with its defaults
	return svc, []any{"simfleet_state", fleetState, "snapshot_timeout", cfg.SnapshotTimeout,
		"poll_interval", cfg.PollInterval, "concurrency", cfg.Concurrency}, nil
}
