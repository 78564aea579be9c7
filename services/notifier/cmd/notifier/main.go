// Command notifier runs the Patchwave notifier service on its own: it connects to NATS, keeps
// its delivery log and idempotency marks in Redis (or in memory when PATCHWAVE_REDIS_ADDR is
// empty), and notifies every install, snapshot and run outcome through the delivery log and,
// when PATCHWAVE_WEBHOOK_URL is set, a webhook.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/services/notifier"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: notifier.Name, OpsAddr: "127.0.0.1:9205", Build: build}, config.OS(), os.Stderr))
}

// build reads the notifier's variables and builds it.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	cfg := notifier.Config{WebhookURL: env.String("PATCHWAVE_WEBHOOK_URL", "")}
	var err error
	if cfg.WebhookTimeout, err = env.Duration("PATCHWAVE_WEBHOOK_TIMEOUT", 0); err != nil {
		return nil, nil, err
	}
	if cfg.MaxAttempts, err = env.Int("PATCHWAVE_NOTIFY_MAX_ATTEMPTS", 0); err != nil {
		return nil, nil, err
	}
	if cfg.Concurrency, err = env.Int("PATCHWAVE_CONCURRENCY", 0); err != nil {
		return nil, nil, err
	}
	svc, err := notifier.New(cfg, notifier.Deps{Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	cfg = svc.Config() // with its defaults
	return svc, []any{"webhook_url", config.Mask(cfg.WebhookURL), "webhook_timeout", cfg.WebhookTimeout,
		"max_attempts", cfg.MaxAttempts, "concurrency", cfg.Concurrency, "channels", svc.Channels()}, nil
}
