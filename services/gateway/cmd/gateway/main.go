// Command gateway runs the Patchwave REST API on its own: it serves the HTTP routes of
// proto/api_config.yaml and /openapi.json, authenticates and authorizes every call, and
// forwards it over mutual TLS to the scheduler, reporting and catalog gRPC services. It keeps
// API keys in JetStream KV and audits changes as events, so it connects to NATS. /livez,
// /readyz and /metrics are on the ops address.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/services/gateway"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: gateway.Name, OpsAddr: "127.0.0.1:9207", Build: build}, config.OS(), os.Stderr))
}

// build reads the gateway's variables and builds it.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	// PATCHWAVE_BACKEND points every route at one gRPC server; without it each service is
	// reached at its own default address.
	backend := env.String("PATCHWAVE_BACKEND", "")
	target := func(key, def string) string {
		if backend != "" {
			def = backend
		}
		return env.String(key, def)
	}
	cfg := gateway.Config{
		Addr:            env.String("PATCHWAVE_HTTP_ADDR", "127.0.0.1:8080"),
		Backend:         backend,
		SchedulerTarget: target("PATCHWAVE_SCHEDULER_TARGET", "127.0.0.1:9102"),
		ReportingTarget: target("PATCHWAVE_REPORTING_TARGET", "127.0.0.1:9106"),
		CatalogTarget:   target("PATCHWAVE_CATALOG_TARGET", "127.0.0.1:9101"),
		RestoreTarget:   target("PATCHWAVE_RESTORE_TARGET", "127.0.0.1:9103"),
		NotifierTarget:  target("PATCHWAVE_NOTIFIER_TARGET", "127.0.0.1:9105"),
		Logger:          deps.Logger,
		ServicesTLS:     deps.TLS,
		TLSCertFile:     env.String("PATCHWAVE_HTTP_TLS_CERT", ""),
		TLSKeyFile:      env.String("PATCHWAVE_HTTP_TLS_KEY", ""),
		OperatorKeyFile: env.String("PATCHWAVE_OPERATOR_KEY_FILE", ""),
		LocalJWT: gateway.LocalJWT{
			Issuer: env.String("PATCHWAVE_JWT_ISSUER", ""), Audience: env.String("PATCHWAVE_JWT_AUDIENCE", ""),
		},
		OIDC: gateway.OIDC{
			Issuer: env.String("PATCHWAVE_OIDC_ISSUER", ""), Audience: env.String("PATCHWAVE_OIDC_AUDIENCE", ""),
			JWKSURL: env.String("PATCHWAVE_OIDC_JWKS_URL", ""),
		},
	}
	// The service design is served by the scheduler unless told otherwise.
	cfg.DesignTarget = env.String("PATCHWAVE_DESIGN_TARGET", cfg.SchedulerTarget)
	var err error
	if f := env.String("PATCHWAVE_JWT_HS256_KEY_FILE", ""); f != "" {
		if cfg.LocalJWT.Key, err = os.ReadFile(f); err != nil {
			return nil, nil, fmt.Errorf("PATCHWAVE_JWT_HS256_KEY_FILE: %w", err)
		}
	}
	if cfg.ClockSkew, err = env.Duration("PATCHWAVE_JWT_CLOCK_SKEW", 0); err != nil {
		return nil, nil, err
	}
	rps, err := env.Float("PATCHWAVE_RATE_LIMIT", 50)
	if err != nil {
		return nil, nil, err
	}
	burst, err := env.Int("PATCHWAVE_RATE_BURST", 100)
	if err != nil {
		return nil, nil, err
	}
	cfg.RateLimit = ratelimit.Limit{Rate: rps, Burst: burst}
	maxBody, err := env.Int("PATCHWAVE_MAX_BODY", 1<<20)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxBody = int64(maxBody)
	limiter := "memory"
	// With Redis, every gateway replica shares each credential's budget.
	if addr := env.String("PATCHWAVE_REDIS_ADDR", ""); addr != "" {
		rl, err := ratelimit.NewRedis(ratelimit.RedisConfig{
			Client: redis.NewClient(&redis.Options{Addr: addr, Password: env.String("PATCHWAVE_REDIS_PASSWORD", "")}),
			Prefix: "patchwave:gateway:ratelimit:",
		})
		if err != nil {
			return nil, nil, err
		}
		cfg.Limiter, limiter = rl, "redis"
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return gw, []any{"http_addr", cfg.Addr, "scheduler_target", cfg.SchedulerTarget,
		"reporting_target", cfg.ReportingTarget, "catalog_target", cfg.CatalogTarget, "design_target", cfg.DesignTarget,
		"restore_target", cfg.RestoreTarget, "notifier_target", cfg.NotifierTarget,
		"https", cfg.TLSCertFile != "", "jwt_hs256", len(cfg.LocalJWT.Key) > 0, "oidc_issuer", cfg.OIDC.Issuer,
		"rate_limit", cfg.RateLimit.String(), "rate_limiter", limiter, "operator_key_file", cfg.OperatorKeyFile}, nil
}
