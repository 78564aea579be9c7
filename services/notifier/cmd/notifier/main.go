// Command notifier runs the Patchwave notifier service on its own: it connects to NATS, keeps
// its delivery log and idempotency marks in Redis (or in memory when PATCHWAVE_REDIS_ADDR is
// empty), and notifies every install, snapshot and run outcome through the delivery log and,
// when PATCHWAVE_WEBHOOK_URL is set, a webhook.
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
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/services/notifier"
)

func main() {
	log := obs.NewLogger(os.Stderr, notifier.Name, slog.LevelInfo)
	if err := run(log, config.OS()); err != nil {
		log.Error("notifier stopped", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, env config.Env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	natsURL := env.String("PATCHWAVE_NATS_URL", "nats://127.0.0.1:4222")
	redisAddr, redisPassword := env.String("PATCHWAVE_REDIS_ADDR", ""), env.String("PATCHWAVE_REDIS_PASSWORD", "")
	grpcAddr := env.String("PATCHWAVE_GRPC_ADDR", "")
	opsAddr := env.String("PATCHWAVE_OPS_ADDR", "127.0.0.1:9205")
	cfg := notifier.Config{WebhookURL: env.String("PATCHWAVE_WEBHOOK_URL", "")}
	var err error
	if cfg.WebhookTimeout, err = env.Duration("PATCHWAVE_WEBHOOK_TIMEOUT", 0); err != nil {
		return err
	}
	if cfg.MaxAttempts, err = env.Int("PATCHWAVE_NOTIFY_MAX_ATTEMPTS", 0); err != nil {
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
	svc, err := notifier.New(cfg, notifier.Deps{Store: st, Logger: log})
	if err != nil {
		return err
	}
	cfg = svc.Config()
	log.Info("config", "nats_url", config.MaskURL(natsURL), "redis_addr", redisAddr, "redis_password", config.Mask(redisPassword),
		"grpc_addr", grpcAddr, "ops_addr", opsAddr, "webhook_url", config.Mask(cfg.WebhookURL), "webhook_timeout", cfg.WebhookTimeout,
		"max_attempts", cfg.MaxAttempts, "concurrency", cfg.Concurrency, "channels", svc.Channels())
	nc, err := nats.Connect(natsURL, nats.Name("patchwave-notifier"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", config.MaskURL(natsURL), err)
	}
	defer nc.Close()
	h, err := host.New(ctx, host.Config{Name: notifier.Name, Conn: nc, Logger: log, GRPCAddr: grpcAddr, OpsAddr: opsAddr}, svc)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}
