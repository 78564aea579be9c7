package awsfleet

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/ratelimit"
)

// Service names, as the limits and metrics name them.
const (
	ServiceEC2 = "ec2"
	ServiceSSM = "ssm"
	ServiceS3  = "s3"
	ServiceSTS = "sts"
)

// Config configures the adapter. Every field is optional unless it says otherwise.
type Config struct {
	// Accounts resolves each tenant's accounts (role ARN, external id, regions). Required.
	Accounts provider.Accounts

	// Endpoint is one base URL for every service (EC2, SSM, STS, S3), as cloudsim serves them,
	// e.g. "http://127.0.0.1:4566". Default empty: the real AWS endpoints of each region.
	Endpoint string
	// AccessKeyID and SecretAccessKey are the provider's own static credentials, the ones that
	// assume the tenants' roles. Both or neither; default: the SDK's default credential chain
	// (environment, shared config, instance or pod role).
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken goes with temporary static credentials. Default empty.
	SessionToken string
	// Region is the provider's own region, the one STS is called in. Default "us-east-1".
	Region string
	// RoleSessionName names the sessions of assumed roles (CloudTrail shows it in the tenant's
	// account). Default "patchwave".
	RoleSessionName string

	// Retry configures the SDK's retryer.
	Retry RetryConfig
	// Limits are the call rates per account and service. Default DefaultLimits().
	Limits Limits
	// Limiter hands out the permits. Default: a ratelimit.Memory of this adapter alone; give a
	// ratelimit.Redis to share the budget with every process calling the same accounts.
	Limiter ratelimit.Limiter
	// HTTP tunes the HTTP client every service client shares.
	HTTP HTTPConfig
	// InstallLists says where install override lists are put.
	InstallLists InstallListConfig
	// Concurrency is how many AWS calls one Fleet method makes at once when it needs several
	// (DescribeInstanceInformation per 50 instances, one CreateSnapshots per instance, ...).
	// Default 16.
	Concurrency int

	// Logger is optional. Default: discard.
	Logger *slog.Logger
	// Registerer receives the adapter's metrics. Default: none registered.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// RetryConfig configures the SDK's standard retryer, which retries throttling, 5xx and transport
// errors with exponential backoff and jitter.
type RetryConfig struct {
	// MaxAttempts is how many attempts a call gets in all, >= 1. Default 5.
	MaxAttempts int
	// MaxBackoff caps the delay between attempts. Default 20s (the SDK's).
	MaxBackoff time.Duration
}

// Limits are the rates per account and service. EC2 and SSM have separate request budgets on
// AWS (per account and region; we budget per account, which is stricter), S3 and STS are
// called rarely.
type Limits struct {
	EC2 ratelimit.Limit
	SSM ratelimit.Limit
	S3  ratelimit.Limit
	STS ratelimit.Limit
}

// DefaultLimits are below AWS's default request rates for the calls the adapter makes
// (EC2 describe calls 100/s with a bucket of 100, mutating calls less; SSM 10-40/s per API).
func DefaultLimits() Limits {
	return Limits{
		EC2: ratelimit.Limit{Rate: 50, Burst: 100},
		SSM: ratelimit.Limit{Rate: 20, Burst: 40},
		S3:  ratelimit.Limit{Rate: 50, Burst: 100},
		STS: ratelimit.Limit{Rate: 10, Burst: 20},
	}
}

func (l Limits) of(service string) ratelimit.Limit {
	switch service {
	case ServiceEC2:
		return l.EC2
	case ServiceSSM:
		return l.SSM
	case ServiceS3:
		return l.S3
	}
	return l.STS
}

// HTTPConfig tunes the shared HTTP client. The adapter may make thousands of calls per second to
// one endpoint, so it keeps many connections alive.
type HTTPConfig struct {
	// MaxIdleConnsPerHost is how many idle keep-alive connections are kept per host.
	// Default 256.
	MaxIdleConnsPerHost int
	// MaxIdleConns is how many idle connections are kept in all. Default 1024.
	MaxIdleConns int
	// IdleConnTimeout closes connections idle for longer. Default 90s.
	IdleConnTimeout time.Duration
	// Timeout bounds one HTTP attempt. Default 30s.
	Timeout time.Duration
}

// InstallListConfig says where the install override lists go: one S3 bucket per tenant
// account and region (SSM reads the list with the instance's role, in the instance's account).
type InstallListConfig struct {
	// Bucket is the bucket name template; "{account}" and "{region}" are replaced.
	// Default "patchwave-install-lists-{account}-{region}".
	Bucket string
	// Prefix is the key prefix of the lists. Default "install-lists/".
	Prefix string
}

// DefaultBucket is InstallListConfig.Bucket's default.
const DefaultBucket = "patchwave-install-lists-{account}-{region}"

func (c *Config) setDefaults() {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.RoleSessionName == "" {
		c.RoleSessionName = "patchwave"
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = 5
	}
	if c.Retry.MaxBackoff == 0 {
		c.Retry.MaxBackoff = 20 * time.Second
	}
	if c.Limits == (Limits{}) {
		c.Limits = DefaultLimits()
	}
	if c.Limiter == nil {
		c.Limiter = ratelimit.NewMemory()
	}
	if c.HTTP.MaxIdleConnsPerHost == 0 {
		c.HTTP.MaxIdleConnsPerHost = 256
	}
	if c.HTTP.MaxIdleConns == 0 {
		c.HTTP.MaxIdleConns = 1024
	}
	if c.HTTP.IdleConnTimeout == 0 {
		c.HTTP.IdleConnTimeout = 90 * time.Second
	}
	if c.HTTP.Timeout == 0 {
		c.HTTP.Timeout = 30 * time.Second
	}
	if c.InstallLists.Bucket == "" {
		c.InstallLists.Bucket = DefaultBucket
	}
	if c.InstallLists.Prefix == "" {
		c.InstallLists.Prefix = "install-lists/"
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// bucketPattern is S3's rule for bucket names (3-63 lower-case letters, digits, dots, hyphens).
var bucketPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Validate reports every problem with the configuration (after defaults).
func (c Config) Validate() error {
	var errs []error
	bad := func(field, rule string) { errs = append(errs, fmt.Errorf("awsfleet: %s %s", field, rule)) }
	if c.Accounts == nil {
		bad("Accounts", "is required")
	}
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("Endpoint", fmt.Sprintf("must be an http(s) URL such as http://127.0.0.1:4566, got %q", c.Endpoint))
		}
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		bad("AccessKeyID/SecretAccessKey", "must be given both or neither")
	}
	if c.Retry.MaxAttempts < 1 {
		bad("Retry.MaxAttempts", fmt.Sprintf("must be >= 1, got %d", c.Retry.MaxAttempts))
	}
	if c.Retry.MaxBackoff < 0 {
		bad("Retry.MaxBackoff", fmt.Sprintf("must be >= 0, got %s", c.Retry.MaxBackoff))
	}
	for name, l := range map[string]ratelimit.Limit{"EC2": c.Limits.EC2, "SSM": c.Limits.SSM, "S3": c.Limits.S3, "STS": c.Limits.STS} {
		if err := l.Validate(); err != nil {
			bad("Limits."+name, err.Error())
		}
	}
	if c.HTTP.MaxIdleConnsPerHost < 1 || c.HTTP.MaxIdleConns < 1 {
		bad("HTTP.MaxIdleConns/MaxIdleConnsPerHost", "must be >= 1")
	}
	if c.HTTP.IdleConnTimeout < 0 || c.HTTP.Timeout < 0 {
		bad("HTTP.IdleConnTimeout/Timeout", "must be >= 0")
	}
	sample := strings.NewReplacer("{account}", "111111111111", "{region}", "eu-central-1").Replace(c.InstallLists.Bucket)
	if !bucketPattern.MatchString(sample) || strings.Contains(sample, "..") {
		bad("InstallLists.Bucket", fmt.Sprintf("must make an S3 bucket name (3-63 of a-z 0-9 . -) with {account} and {region} filled in, got %q", c.InstallLists.Bucket))
	}
	if c.Concurrency < 1 {
		bad("Concurrency", fmt.Sprintf("must be >= 1, got %d", c.Concurrency))
	}
	return errors.Join(errs...)
}

// LogValue shows the configuration with secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("secret_access_key", config.Mask(c.SecretAccessKey)),
		slog.String("session_token", config.Mask(c.SessionToken)),
		slog.String("region", c.Region),
		slog.Int("max_attempts", c.Retry.MaxAttempts),
		slog.Duration("max_backoff", c.Retry.MaxBackoff),
		slog.String("limit_ec2", c.Limits.EC2.String()),
		slog.String("limit_ssm", c.Limits.SSM.String()),
		slog.String("limit_s3", c.Limits.S3.String()),
		slog.String("limit_sts", c.Limits.STS.String()),
		slog.String("install_list_bucket", c.InstallLists.Bucket),
		slog.Int("concurrency", c.Concurrency),
	)
}

func (c Config) bucket(account, region string) string {
	return strings.NewReplacer("{account}", account, "{region}", region).Replace(c.InstallLists.Bucket)
}
