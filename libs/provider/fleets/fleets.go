// Package fleets builds the configured provider.Fleet from environment variables, so every
// service selects and configures its cloud provider in one place.
//
// # Variables
//
//	PATCHWAVE_PROVIDER                 provider: "aws" (the default; the only one so far)
//	PATCHWAVE_AWS_ENDPOINT_URL         one base URL for EC2, SSM, STS and S3, e.g. cloudsim's
//	                                   http://127.0.0.1:4566; empty: the real AWS endpoints
//	PATCHWAVE_AWS_ACCESS_KEY_ID        the provider's own credentials (they assume the tenants'
//	PATCHWAVE_AWS_SECRET_ACCESS_KEY    roles); both or neither; neither: the SDK's default chain
//	PATCHWAVE_AWS_SESSION_TOKEN        optional, with temporary credentials
//	PATCHWAVE_AWS_REGION               the provider's region (STS); default us-east-1
//	PATCHWAVE_AWS_ACCOUNTS             tenant -> accounts, JSON (provider.ParseStaticAccounts):
//	                                   {"acme":[{"provider":"aws","id":"111111111111",
//	                                   "roleArn":"arn:aws:iam::111111111111:role/patchwave",
//	                                   "externalId":"...","regions":["eu-central-1"]}]}
//	                                   required unless Options.Accounts is given; the services
//	                                   take them from the service design (DesignAccounts) when
//	                                   it is empty
//	PATCHWAVE_AWS_MAX_ATTEMPTS         attempts per call, default 5
//	PATCHWAVE_AWS_MAX_BACKOFF          longest delay between attempts, default 20s
//	PATCHWAVE_AWS_EC2_RATE, _EC2_BURST per-account EC2 calls per second and burst (50, 100)
//	PATCHWAVE_AWS_SSM_RATE, _SSM_BURST per-account SSM calls (20, 40)
//	PATCHWAVE_AWS_S3_RATE,  _S3_BURST  per-account S3 calls (50, 100)
//	PATCHWAVE_AWS_STS_RATE, _STS_BURST STS calls (10, 20)
//	PATCHWAVE_AWS_INSTALL_LIST_BUCKET  bucket name template, default
//	                                   patchwave-install-lists-{account}-{region}
//	PATCHWAVE_AWS_MAX_IDLE_CONNS_PER_HOST  keep-alive connections per host, default 256
//	PATCHWAVE_AWS_CONCURRENCY          AWS calls one Fleet method makes at once, default 16
//	PATCHWAVE_REDIS_ADDR               when set, the rate limits are shared through this Redis
//	PATCHWAVE_REDIS_PASSWORD           (ratelimit.Redis) by every process; else per process
//
// The limiter's keys ("patchwave:ratelimit:aws/<account>/<service>") are the same in every
// service, unlike the services' own Redis keys: the snapshotter, the installer and the
// scheduler calling one account share that account's budget, as they share it on AWS.
//
// A variable that does not parse is an error naming it.
package fleets

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/ratelimit"
)

// Environment variable names.
const (
	EnvProvider           = "PATCHWAVE_PROVIDER"
	EnvEndpoint           = "PATCHWAVE_AWS_ENDPOINT_URL"
	EnvAccessKeyID        = "PATCHWAVE_AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey    = "PATCHWAVE_AWS_SECRET_ACCESS_KEY" //nolint:gosec // G101: the name of the variable, not a credential
	EnvSessionToken       = "PATCHWAVE_AWS_SESSION_TOKEN"     //nolint:gosec // G101: the name of the variable, not a credential
	EnvRegion             = "PATCHWAVE_AWS_REGION"
	EnvAccounts           = "PATCHWAVE_AWS_ACCOUNTS"
	EnvMaxAttempts        = "PATCHWAVE_AWS_MAX_ATTEMPTS"
	EnvMaxBackoff         = "PATCHWAVE_AWS_MAX_BACKOFF"
	EnvInstallListBucket  = "PATCHWAVE_AWS_INSTALL_LIST_BUCKET"
	EnvMaxIdleConnsPerHst = "PATCHWAVE_AWS_MAX_IDLE_CONNS_PER_HOST"
	EnvConcurrency        = "PATCHWAVE_AWS_CONCURRENCY"
	EnvRedisAddr          = "PATCHWAVE_REDIS_ADDR"
	EnvRedisPassword      = "PATCHWAVE_REDIS_PASSWORD" //nolint:gosec // G101: the name of the variable, not a credential
)

// Options are what the caller gives besides the environment.
type Options struct {
	// Accounts overrides PATCHWAVE_AWS_ACCOUNTS (the service design's KV-backed accounts).
	// Optional.
	Accounts provider.Accounts
	// Logger is optional.
	Logger *slog.Logger
	// Registerer receives the adapter's metrics. Optional.
	Registerer prometheus.Registerer
	// Redis, when given, is the Redis the shared limiter uses instead of a client of its own
	// to PATCHWAVE_REDIS_ADDR (say, the service's store client). Optional.
	Redis redis.UniversalClient
}

// Fleet is the configured fleet and what it holds open.
type Fleet struct {
	provider.Fleet
	// Provider is the selected provider's name.
	Provider string
	// Limiter is the rate limiter the fleet's calls wait on: a ratelimit.Redis with Redis,
	// else a ratelimit.Memory.
	Limiter ratelimit.Limiter
	redis   *redis.Client
}

// Close releases what the fleet holds (the Redis client of a shared limiter).
func (f *Fleet) Close() error {
	if f.redis != nil {
		return f.redis.Close()
	}
	return nil
}

// FromEnv builds the fleet PATCHWAVE_PROVIDER names, configured from env. Every problem is
// reported at once, each naming its variable.
func FromEnv(env config.Env, opts Options) (*Fleet, error) {
	name := strings.ToLower(strings.TrimSpace(env.String(EnvProvider, provider.ProviderAWS)))
	if name != provider.ProviderAWS {
		return nil, fmt.Errorf("fleets: %s=%q: expected %q (the only provider so far)", EnvProvider, name, provider.ProviderAWS)
	}
	cfg, redisOpts, err := AWSConfig(env)
	if opts.Accounts != nil {
		cfg.Accounts = opts.Accounts
		err = dropAccountsError(err)
	}
	if err != nil {
		return nil, err
	}
	cfg.Logger = opts.Logger
	cfg.Registerer = opts.Registerer
	out := &Fleet{Provider: name}
	client := opts.Redis
	if client == nil && redisOpts != nil {
		out.redis = redis.NewClient(redisOpts)
		client = out.redis
	}
	if client != nil {
		lim, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: client})
		if err != nil {
			_ = out.Close()
			return nil, err
		}
		cfg.Limiter = lim
	}
	if cfg.Limiter == nil {
		cfg.Limiter = ratelimit.NewMemory()
	}
	out.Limiter = cfg.Limiter
	f, err := awsfleet.New(cfg)
	if err != nil {
		_ = out.Close()
		return nil, err
	}
	out.Fleet = f
	return out, nil
}

// errNoAccounts marks the missing PATCHWAVE_AWS_ACCOUNTS, which Options.Accounts replaces.
var errNoAccounts = fmt.Errorf("fleets: %s is required (tenant -> accounts JSON)", EnvAccounts)

func dropAccountsError(err error) error {
	if err == nil {
		return nil
	}
	var kept []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, errNoAccounts) {
				kept = append(kept, e)
			}
		}
		return errors.Join(kept...)
	}
	if errors.Is(err, errNoAccounts) {
		return nil
	}
	return err
}

// AWSConfig reads the AWS adapter's configuration from env, and the Redis options of the
// shared limiter when PATCHWAVE_REDIS_ADDR is set (nil otherwise). The limiter itself is left
// to the caller.
func AWSConfig(env config.Env) (awsfleet.Config, *redis.Options, error) {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	def := awsfleet.DefaultLimits()
	cfg := awsfleet.Config{
		Endpoint:        env.String(EnvEndpoint, ""),
		AccessKeyID:     env.String(EnvAccessKeyID, ""),
		SecretAccessKey: env.String(EnvSecretAccessKey, ""),
		SessionToken:    env.String(EnvSessionToken, ""),
		Region:          env.String(EnvRegion, ""),
		InstallLists:    awsfleet.InstallListConfig{Bucket: env.String(EnvInstallListBucket, "")},
	}
	var err error
	cfg.Retry.MaxAttempts, err = env.Int(EnvMaxAttempts, 5)
	keep(err)
	cfg.Retry.MaxBackoff, err = env.Duration(EnvMaxBackoff, 0)
	keep(err)
	cfg.HTTP.MaxIdleConnsPerHost, err = env.Int(EnvMaxIdleConnsPerHst, 0)
	keep(err)
	cfg.Concurrency, err = env.Int(EnvConcurrency, 0)
	keep(err)
	limit := func(service string, d ratelimit.Limit) ratelimit.Limit {
		prefix := "PATCHWAVE_AWS_" + strings.ToUpper(service)
		r, err := env.Float(prefix+"_RATE", d.Rate)
		keep(err)
		b, err := env.Int(prefix+"_BURST", d.Burst)
		keep(err)
		l := ratelimit.Limit{Rate: r, Burst: b}
		if err := l.Validate(); err != nil {
			keep(fmt.Errorf("fleets: %s_RATE/%s_BURST: %w", prefix, prefix, err))
		}
		return l
	}
	cfg.Limits = awsfleet.Limits{
		EC2: limit(awsfleet.ServiceEC2, def.EC2),
		SSM: limit(awsfleet.ServiceSSM, def.SSM),
		S3:  limit(awsfleet.ServiceS3, def.S3),
		STS: limit(awsfleet.ServiceSTS, def.STS),
	}
	if raw := env.String(EnvAccounts, ""); strings.TrimSpace(raw) == "" {
		keep(errNoAccounts)
	} else if accs, err := provider.ParseStaticAccounts([]byte(raw)); err != nil {
		keep(fmt.Errorf("fleets: %s: %w", EnvAccounts, err))
	} else {
		cfg.Accounts = accs
	}
	if cfg.Endpoint != "" {
		if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			keep(&config.ParseError{Key: EnvEndpoint, Value: cfg.Endpoint, Expected: "an http(s) URL such as http://127.0.0.1:4566"})
		}
	}
	positive := func(key string, v, least int) {
		if v < least {
			keep(&config.ParseError{Key: key, Value: strconv.Itoa(v), Expected: fmt.Sprintf("a whole number >= %d", least)})
		}
	}
	positive(EnvMaxAttempts, cfg.Retry.MaxAttempts, 1)
	positive(EnvMaxIdleConnsPerHst, cfg.HTTP.MaxIdleConnsPerHost, 0)
	positive(EnvConcurrency, cfg.Concurrency, 0)
	if cfg.Retry.MaxBackoff < 0 {
		keep(&config.ParseError{Key: EnvMaxBackoff, Value: cfg.Retry.MaxBackoff.String(), Expected: "a duration >= 0"})
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		keep(fmt.Errorf("fleets: %s and %s must be set both or neither", EnvAccessKeyID, EnvSecretAccessKey))
	}
	var ropts *redis.Options
	if addr := env.String(EnvRedisAddr, ""); addr != "" {
		ropts = &redis.Options{Addr: addr, Password: env.String(EnvRedisPassword, "")}
	}
	return cfg, ropts, errors.Join(errs...)
}
