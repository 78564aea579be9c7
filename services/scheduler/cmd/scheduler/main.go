// Command scheduler runs the Patchwave scheduler service on its own: it connects to NATS, keeps
// its read models in Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), keeps the service
// design in JetStream KV, discovers instances through the configured fleet provider
// (libs/provider/fleets: PATCHWAVE_PROVIDER, PATCHWAVE_AWS_*), and serves
// patchwave.scheduler.v1.SchedulerService and patchwave.design.v1.DesignService over gRPC.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/fleets"
	"github.com/patchwave/patchwave/services/scheduler"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: scheduler.Name, GRPCAddr: "127.0.0.1:9102", OpsAddr: "127.0.0.1:9202", Build: build},
		config.OS(), os.Stderr))
}

// build reads the scheduler's variables and builds it on the configured fleet.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	cfg := scheduler.Config{RebootPolicy: provider.RebootPolicy(env.String("PATCHWAVE_REBOOT_POLICY", ""))}
	var err error
	if cfg.DesignReplicas, err = env.Int("PATCHWAVE_DESIGN_REPLICAS", 1); err != nil {
		return nil, nil, err
	}
	if cfg.InstanceTimeout, err = env.Duration("PATCHWAVE_INSTANCE_TIMEOUT", 0); err != nil {
		return nil, nil, err
	}
	if cfg.AutoRollback, err = env.Bool("PATCHWAVE_AUTO_ROLLBACK", false); err != nil {
		return nil, nil, err
	}
	if cfg.FireInterval, err = env.Duration("PATCHWAVE_FIRE_INTERVAL", 0); err != nil {
		return nil, nil, err
	}
	if cfg.FireLease, err = env.Duration("PATCHWAVE_FIRE_LEASE", 0); err != nil {
		return nil, nil, err
	}
	if cfg.FireLookback, err = env.Duration("PATCHWAVE_FIRE_LOOKBACK", 0); err != nil {
		return nil, nil, err
	}
	fleet, err := fleets.FromEnv(env, fleets.Options{Accounts: fleets.DesignAccounts(env, deps), Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	svc, err := scheduler.New(cfg, scheduler.Deps{Fleet: fleet, Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	return svc, []any{"provider", fleet.Provider, "aws_endpoint", env.String(fleets.EnvEndpoint, ""), "design_replicas", cfg.DesignReplicas,
		"reboot_policy", cfg.RebootPolicy, "instance_timeout", cfg.InstanceTimeout, "auto_rollback", cfg.AutoRollback,
		"fire_interval", cfg.FireInterval, "fire_lease", cfg.FireLease}, nil
}
