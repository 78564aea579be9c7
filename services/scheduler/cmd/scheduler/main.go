// Command scheduler runs the Patchwave scheduler service on its own: it connects to NATS, keeps
// its read models in Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), and serves
// patchwave.scheduler.v1.SchedulerService over gRPC. The fleet is simulated (simfleet) until the
// AWS adapter lands.
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
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/services/scheduler"
)

func main() {
	log := obs.NewLogger(os.Stderr, scheduler.Name, slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, log, config.OS())
	stop()
	if err != nil {
		log.Error("scheduler stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, env config.Env) error {
	natsURL := env.String("PATCHWAVE_NATS_URL", "nats://127.0.0.1:4222")
	redisAddr, redisPassword := env.String("PATCHWAVE_REDIS_ADDR", ""), env.String("PATCHWAVE_REDIS_PASSWORD", "")
	grpcAddr := env.String("PATCHWAVE_GRPC_ADDR", "127.0.0.1:9102")
	opsAddr := env.String("PATCHWAVE_OPS_ADDR", "127.0.0.1:9202")
	fleetState := env.String("PATCHWAVE_SIMFLEET_STATE", "")
	cfg := scheduler.Config{TagKey: env.String("PATCHWAVE_TAG_KEY", "PatchWave")}
	var err error
	if cfg.MaxWaves, err = env.Int("PATCHWAVE_MAX_WAVES", 3); err != nil {
		return err
	}
	log.Info("config", "nats_url", config.MaskURL(natsURL), "redis_addr", redisAddr, "redis_password", config.Mask(redisPassword),
		"grpc_addr", grpcAddr, "ops_addr", opsAddr, "simfleet_state", fleetState, "tag_key", cfg.TagKey, "max_waves", cfg.MaxWaves)

	nc, err := nats.Connect(natsURL, nats.Name("patchwave-scheduler"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", config.MaskURL(natsURL), err)
	}
	defer nc.Close()
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
	svc, err := scheduler.New(cfg, scheduler.Deps{Fleet: fleet, Store: st, Logger: log})
	if err != nil {
		return err
	}
	h, err := host.New(ctx, host.Config{Name: scheduler.Name, Conn: nc, Logger: log, GRPCAddr: grpcAddr, OpsAddr: opsAddr}, svc)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}
