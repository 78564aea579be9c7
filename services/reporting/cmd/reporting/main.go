// Command reporting runs the Patchwave reporting service on its own: it connects to NATS,
// projects the tenant event stream into its compliance read model in Redis (or in memory when
// PATCHWAVE_REDIS_ADDR is empty), and serves patchwave.reporting.v1.ReportingService over gRPC.
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
	"github.com/patchwave/patchwave/services/reporting"
)

func main() {
	log := obs.NewLogger(os.Stderr, reporting.Name, slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, log, config.OS())
	stop()
	if err != nil {
		log.Error("reporting stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, env config.Env) error {
	natsURL := env.String("PATCHWAVE_NATS_URL", "nats://127.0.0.1:4222")
	redisAddr, redisPassword := env.String("PATCHWAVE_REDIS_ADDR", ""), env.String("PATCHWAVE_REDIS_PASSWORD", "")
	grpcAddr := env.String("PATCHWAVE_GRPC_ADDR", "127.0.0.1:9106")
	opsAddr := env.String("PATCHWAVE_OPS_ADDR", "127.0.0.1:9206")
	log.Info("config", "nats_url", config.MaskURL(natsURL), "redis_addr", redisAddr, "redis_password", config.Mask(redisPassword),
		"grpc_addr", grpcAddr, "ops_addr", opsAddr)

	nc, err := nats.Connect(natsURL, nats.Name("patchwave-reporting"), nats.MaxReconnects(-1))
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
	svc, err := reporting.New(reporting.Config{}, reporting.Deps{Store: st, Logger: log})
	if err != nil {
		return err
	}
	h, err := host.New(ctx, host.Config{Name: reporting.Name, Conn: nc, Logger: log, GRPCAddr: grpcAddr, OpsAddr: opsAddr}, svc)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}
