// Command snapshotter runs the Patchwave snapshotter service on its own: it connects to NATS,
// keeps its idempotency marks and read models in Redis (or in memory when PATCHWAVE_REDIS_ADDR
// is empty), snapshots every requested job's instance before it is patched through the
// configured fleet provider (libs/provider/fleets: PATCHWAVE_PROVIDER, PATCHWAVE_AWS_*), deletes
// snapshots by retention, and serves patchwave.snapshotter.v1.RestoreService over gRPC.
package main

import (
	"context"
	"os"
	"time"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider/fleets"
	"github.com/patchwave/patchwave/services/snapshotter"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: snapshotter.Name, GRPCAddr: "127.0.0.1:9103", OpsAddr: "127.0.0.1:9203", Build: build},
		config.OS(), os.Stderr))
}

// build reads the snapshotter's variables and builds it on the configured fleet.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	var cfg snapshotter.Config
	var err error
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"PATCHWAVE_SNAPSHOT_TIMEOUT", &cfg.SnapshotTimeout}, {"PATCHWAVE_POLL_INTERVAL", &cfg.PollInterval},
		{"PATCHWAVE_RETENTION", &cfg.Retention}, {"PATCHWAVE_SWEEP_INTERVAL", &cfg.SweepInterval},
		{"PATCHWAVE_RESTORE_TIMEOUT", &cfg.RestoreTimeout}, {"PATCHWAVE_BATCH_LINGER", &cfg.BatchLinger},
	} {
		if *d.dst, err = env.Duration(d.name, 0); err != nil {
			return nil, nil, err
		}
	}
	for _, n := range []struct {
		name string
		dst  *int
	}{
		{"PATCHWAVE_CONCURRENCY", &cfg.Concurrency}, {"PATCHWAVE_MAX_TRACKED", &cfg.MaxTracked},
		{"PATCHWAVE_BATCH_SIZE", &cfg.BatchSize}, {"PATCHWAVE_DELETE_BATCH", &cfg.DeleteBatch},
	} {
		if *n.dst, err = env.Int(n.name, 0); err != nil {
			return nil, nil, err
		}
	}
	fleet, err := fleets.FromEnv(env, fleets.Options{Accounts: fleets.DesignAccounts(env, deps), Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	svc, err := snapshotter.New(cfg, snapshotter.Deps{Fleet: fleet, Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	cfg = svc.Config() // with its defaults
	return svc, []any{"provider", fleet.Provider, "aws_endpoint", env.String(fleets.EnvEndpoint, ""),
		"snapshot_timeout", cfg.SnapshotTimeout, "poll_interval", cfg.PollInterval, "concurrency", cfg.Concurrency,
		"max_tracked", cfg.MaxTracked, "retention", cfg.Retention, "restore_timeout", cfg.RestoreTimeout}, nil
}
