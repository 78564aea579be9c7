// Command notifier runs the Patchwave notifier service on its own: it connects to NATS, keeps
// subscriptions and deliveries in its JetStream KV buckets and the run-failures read model in
// Redis (or in memory when PATCHWAVE_REDIS_ADDR is empty), serves NotifierService on
// PATCHWAVE_GRPC_ADDR, and delivers notifications through webhooks, Slack, e-mail and SNS.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/services/notifier"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: notifier.Name, OpsAddr: "127.0.0.1:9205", Build: build}, config.OS(), os.Stderr))
}

// build reads the notifier's variables and builds it.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	cfg := notifier.Config{
		PublicURL: env.String("PATCHWAVE_PUBLIC_URL", ""),
		SMTP: notifier.SMTP{
			Host: env.String("PATCHWAVE_SMTP_HOST", ""), TLS: env.String("PATCHWAVE_SMTP_TLS", ""),
			Username: env.String("PATCHWAVE_SMTP_USERNAME", ""), Password: env.String("PATCHWAVE_SMTP_PASSWORD", ""),
			From: env.String("PATCHWAVE_SMTP_FROM", ""),
		},
		SNS: notifier.SNS{
			Region: env.String("PATCHWAVE_SNS_REGION", ""), Endpoint: env.String("PATCHWAVE_SNS_ENDPOINT", ""),
			AccessKeyID: env.String("PATCHWAVE_SNS_ACCESS_KEY_ID", ""), SecretAccessKey: env.String("PATCHWAVE_SNS_SECRET_ACCESS_KEY", ""),
		},
	}
	for _, s := range strings.FieldsFunc(env.String("PATCHWAVE_NOTIFY_ALLOW_NETWORKS", ""), func(r rune) bool { return r == ',' || r == ' ' }) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, nil, fmt.Errorf("PATCHWAVE_NOTIFY_ALLOW_NETWORKS: %q: must be a CIDR prefix such as 10.0.0.0/8", s)
		}
		cfg.AllowNetworks = append(cfg.AllowNetworks, p)
	}
	var err error
	if cfg.HTTPTimeout, err = env.Duration("PATCHWAVE_NOTIFY_HTTP_TIMEOUT", 0); err != nil {
		return nil, nil, err
	}
	if cfg.RetryInitial, err = env.Duration("PATCHWAVE_NOTIFY_RETRY_INITIAL", 0); err != nil {
		return nil, nil, err
	}
	if cfg.RetryMax, err = env.Duration("PATCHWAVE_NOTIFY_RETRY_MAX", 0); err != nil {
		return nil, nil, err
	}
	if cfg.MaxAttempts, err = env.Int("PATCHWAVE_NOTIFY_MAX_ATTEMPTS", 0); err != nil {
		return nil, nil, err
	}
	if cfg.Concurrency, err = env.Int("PATCHWAVE_CONCURRENCY", 0); err != nil {
		return nil, nil, err
	}
	if cfg.SendConcurrency, err = env.Int("PATCHWAVE_NOTIFY_SEND_CONCURRENCY", 0); err != nil {
		return nil, nil, err
	}
	if cfg.KVReplicas, err = env.Int("PATCHWAVE_KV_REPLICAS", 0); err != nil {
		return nil, nil, err
	}
	if cfg.SMTP.Port, err = env.Int("PATCHWAVE_SMTP_PORT", 0); err != nil {
		return nil, nil, err
	}
	svc, err := notifier.New(cfg, notifier.Deps{Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	cfg = svc.Config() // with its defaults
	return svc, []any{"public_url", cfg.PublicURL, "allow_networks", cfg.AllowNetworks, "http_timeout", cfg.HTTPTimeout,
		"retry_initial", cfg.RetryInitial, "retry_max", cfg.RetryMax, "max_attempts", cfg.MaxAttempts,
		"concurrency", cfg.Concurrency, "send_concurrency", cfg.SendConcurrency,
		"smtp_host", cfg.SMTP.Host, "smtp_port", cfg.SMTP.Port, "smtp_tls", cfg.SMTP.TLS, "smtp_username", cfg.SMTP.Username,
		"smtp_password", config.Mask(cfg.SMTP.Password), "smtp_from", cfg.SMTP.From,
		"sns_region", cfg.SNS.Region, "sns_endpoint", cfg.SNS.Endpoint, "sns_access_key_id", cfg.SNS.AccessKeyID,
		"sns_secret_access_key", config.Mask(cfg.SNS.SecretAccessKey)}, nil
}
