// Command scheduler runs the Patchwave scheduler service on its own: it connects to NATS, keeps
// its read models in Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), and serves
// patchwave.scheduler.v1.SchedulerService over gRPC. The fleet is simulated (simfleet) until the
// AWS adapter lands.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/services/scheduler"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: scheduler.Name, GRPCAddr: "127.0.0.1:9102", OpsAddr: "127.0.0.1:9202", Build: build},
		config.OS(), os.Stderr))
}

// build reads the scheduler's variables and builds it on a simulated fleet.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	fleetState := env.String("PATCHWAVE_SIMFLEET_STATE", "")
	cfg := scheduler.Config{TagKey: env.String("PATCHWAVE_TAG_KEY", "PatchWave")}
	var err error
	if cfg.MaxWaves, err = env.Int("PATCHWAVE_MAX_WAVES", 3); err != nil {
		return nil, nil, err
	}
	fleet, err := simfleet.New(simfleet.Config{StatePath: fleetState})
	if err != nil {
		return nil, nil, err
	}
	svc, err := scheduler.New(cfg, scheduler.Deps{Fleet: fleet, Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	return svc, []any{"simfleet_state", fleetState, "tag_key", cfg.TagKey, "max_waves", cfg.MaxWaves}, nil
}
