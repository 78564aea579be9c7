// Command installer runs the Patchwave installer service on its own: it connects to NATS,
// keeps its idempotency marks in Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), and
// installs each snapshotted job's patch set. The fleet is simulated (simfleet) until the AWS
// adapter lands; it must be the fleet the snapshotter uses, or every job is refused.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/obs"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/services/installer"
)

func main() {
	log := obs.NewLogger(os.Stderr, installer.Name, slog.LevelInfo)
	if err := run(log, config.OS()); err != nil {
		log.Error("installer stopped", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, env config.Env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	natsURL := env.String("PATCHWAVE_NATS_URL", "nats://127.0.0.1:4222")
	redisAddr, redisPassword := env.String("PATCHWAVE_REDIS_ADDR", ""), env.String("PATCHWAVE_REDIS_PASSWORD", "")
	grpcAddr := env.String("PATCHWAVE_GRPC_ADDR", "")
	opsAddr := env.String("PATCHWAVE_OPS_ADDR", "127.0.0.1:9204")
	fleetState := env.String("PATCHWAVE_SIMFLEET_STATE", "")
	cfg := installer.Config{RebootPolicy: provider.RebootPolicy(env.String("PATCHWAVE_REBOOT_POLICY", ""))}
	var err error
	if cfg.InstallTimeout, err = env.Duration("PATCHWAVE_INSTALL_TIMEOUT", 0); err != nil {
		return err
	}
	if cfg.PollInterval, err = env.Duration("PATCHWAVE_POLL_INTERVAL", 0); err != nil {
		return err
	}
	if cfg.Concurrency, err = env.Int("PATCHWAVE_CONCURRENCY", 0); err != nil {
		return err
	}
	var st store.Store = store.NewMemory()
	if redisAddr != "" {
		if st, err = store.NewRedis(store.RedisConfig{Addr: redisAddr, Password: redisPassword, Prefix: "patchwave:"}); err != nil {
			return err
		}
	}
	defer func() { _ = st.Close() }()
	fleet, err := simfleet.New(simfleet.Config{StatePath: fleetState})
	if err != nil {
		return err
	}
	svc, err := installer.New(cfg, installer.Deps{Fleet: fleet, Store: st, Logger: log})
	if err != nil {
		return err
	}
	cfg = svc.Config()
	log.Info("config", "nats_url", config.MaskURL(natsURL), "redis_addr", redisAddr, "redis_password", config.Mask(redisPassword),
		"grpc_addr", grpcAddr, "ops_addr", opsAddr, "simfleet_state", fleetState, "install_timeout", cfg.InstallTimeout,
		"poll_interval", cfg.PollInterval, "reboot_policy", cfg.RebootPolicy, "concurrency", cfg.Concurrency)
	nc, err := nats.Connect(natsURL, nats.Name("patchwave-installer"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", config.MaskURL(natsURL), err)
	}
	defer nc.Close()
	h, err := host.New(ctx, host.Config{Name: installer.Name, Conn: nc, Logger: log, GRPCAddr: grpcAddr, OpsAddr: opsAddr}, svc)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}
