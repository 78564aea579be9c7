// Package cloudtest starts an in-process cloudsim (services/cloudsim, Patchwave's AWS API
// emulator) on a random loopback port and returns it with an awsfleet adapter configured
// against it: static accounts taken from the emulator, a memory rate limiter with generous
// limits, fast retries. Both are closed when the test ends.
//
//	env := cloudtest.Start(t, cloudtest.Options{})        // tenant acme, 10 running instances
//	target := env.Target("acme")
//	err := env.Fleet.DiscoverInstances(ctx, provider.DiscoverQuery{Tenant: "acme"}, page)
//
// Options.Accounts sets up other tenants, accounts, regions, stopped and agent-less
// instances; env.Sim is the emulator itself (stats, fault injection, instances).
package cloudtest

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/services/cloudsim"
)

// DefaultAccount is the account Start sets up without Options.Accounts: tenant "acme", one
// region, 10 running instances with agents, in wave 1..3.
func DefaultAccount() cloudsim.AccountConfig {
	return cloudsim.AccountConfig{
		ID:         "111111111111",
		Tenant:     "acme",
		Regions:    []string{"eu-central-1"},
		RoleName:   "patchwave",
		ExternalID: "acme-external-id",
		Instances:  10,
		Waves:      3,
	}
}

// Options configures Start. Everything is optional.
type Options struct {
	// Accounts are the emulator's accounts. Default: DefaultAccount().
	Accounts []cloudsim.AccountConfig
	// Sim lets the test change the emulator's configuration (timing, faults, clock, seed)
	// before it starts. Accounts are already set.
	Sim func(*cloudsim.Config)
	// Fleet lets the test change the adapter's configuration before it is built.
	Fleet func(*awsfleet.Config)
}

// Env is a running emulator and an adapter against it.
type Env struct {
	// Sim is the emulator.
	Sim *cloudsim.Server
	// Fleet is the adapter.
	Fleet *awsfleet.Fleet
	// Accounts are the tenants' accounts as the adapter sees them (from the emulator).
	Accounts provider.StaticAccounts
	// Config is the adapter's configuration, for building more adapters (NewFleet).
	Config awsfleet.Config
}

// Start starts the emulator and builds the adapter; both end with the test.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	accs := opts.Accounts
	if len(accs) == 0 {
		accs = []cloudsim.AccountConfig{DefaultAccount()}
	}
	simCfg := cloudsim.Config{Addr: "127.0.0.1:0", Seed: 1, Accounts: accs}
	if opts.Sim != nil {
		opts.Sim(&simCfg)
	}
	sim, err := cloudsim.New(simCfg)
	require.NoError(t, err, "cloudtest: start cloudsim")
	t.Cleanup(func() { _ = sim.Close() })
	sim.Start()

	static := provider.StaticAccounts{}
	for _, a := range accs {
		info, ok := sim.Account(a.ID)
		require.True(t, ok, "cloudtest: cloudsim has no account %s", a.ID)
		static[info.Tenant] = append(static[info.Tenant], provider.Account{
			Provider:   provider.ProviderAWS,
			ID:         a.ID,
			RoleARN:    info.RoleARN,
			ExternalID: info.ExternalID,
			Regions:    info.Regions,
		})
	}
	key, secret := sim.ProviderCredentials()
	cfg := awsfleet.Config{
		Accounts:        static,
		Endpoint:        sim.URL(),
		AccessKeyID:     key,
		SecretAccessKey: secret,
		Region:          "us-east-1",
		// Fast retries, and limits no test reaches unless it sets its own.
		Retry:   awsfleet.RetryConfig{MaxAttempts: 3, MaxBackoff: 5e6},
		Limits:  generous(),
		Limiter: ratelimit.NewMemory(),
	}
	if opts.Fleet != nil {
		opts.Fleet(&cfg)
	}
	env := &Env{Sim: sim, Accounts: static, Config: cfg}
	env.Fleet = env.NewFleet(t, nil)
	return env
}

func generous() awsfleet.Limits {
	l := ratelimit.Limit{Rate: 1e6, Burst: 1e6}
	return awsfleet.Limits{EC2: l, SSM: l, S3: l, STS: l}
}

// NewFleet builds another adapter against the same emulator, from env.Config changed by
// mutate (say, to give it its own limiter).
func (e *Env) NewFleet(t testing.TB, mutate func(*awsfleet.Config)) *awsfleet.Fleet {
	t.Helper()
	cfg := e.Config
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := awsfleet.New(cfg)
	require.NoError(t, err, "cloudtest: build the adapter")
	return f
}

// Target is the tenant's first target (account and region).
func (e *Env) Target(tenant string) provider.Target {
	accs := e.Accounts[tenant]
	if len(accs) == 0 || len(accs[0].Regions) == 0 {
		panic("cloudtest: tenant " + tenant + " has no account")
	}
	return provider.Target{Tenant: tenant, Account: accs[0].ID, Region: accs[0].Regions[0]}
}

// Discover lists every instance of the tenant matching q (q.Tenant is set to tenant), all
// pages together.
func (e *Env) Discover(t testing.TB, q provider.DiscoverQuery) []provider.Instance {
	t.Helper()
	var all []provider.Instance
	err := e.Fleet.DiscoverInstances(t.Context(), q, func(page []provider.Instance) error {
		all = append(all, page...)
		return nil
	})
	require.NoError(t, err, "cloudtest: discover %+v", q)
	return all
}

// EC2 returns an EC2 client of the target's account (the tenant's role, assumed with the
// provider's credentials), for checking what the adapter did or doing what it does not.
func (e *Env) EC2(t testing.TB, tg provider.Target) *ec2.Client {
	t.Helper()
	return ec2.NewFromConfig(e.awsConfig(t, tg), func(o *ec2.Options) { o.BaseEndpoint = aws.String(e.Sim.URL()) })
}

// S3 returns an S3 client of the target's account, like EC2.
func (e *Env) S3(t testing.TB, tg provider.Target) *s3.Client {
	t.Helper()
	return s3.NewFromConfig(e.awsConfig(t, tg), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(e.Sim.URL())
		o.UsePathStyle = true
	})
}

func (e *Env) awsConfig(t testing.TB, tg provider.Target) aws.Config {
	t.Helper()
	var acc *provider.Account
	for i, a := range e.Accounts[tg.Tenant] {
		if a.ID == tg.Account {
			acc = &e.Accounts[tg.Tenant][i]
		}
	}
	require.NotNil(t, acc, "cloudtest: %s is not a target of the emulator", tg)
	key, secret := e.Sim.ProviderCredentials()
	base := aws.Config{Region: e.Config.Region, HTTPClient: awsfleet.NewHTTPClient(e.Config.HTTP),
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")}
	stsClient := sts.NewFromConfig(base, func(o *sts.Options) { o.BaseEndpoint = aws.String(e.Sim.URL()) })
	cfg := base.Copy()
	cfg.Region = tg.Region
	cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, acc.RoleARN, func(o *stscreds.AssumeRoleOptions) {
		if acc.ExternalID != "" {
			o.ExternalID = aws.String(acc.ExternalID)
		}
	}))
	return cfg
}

// Calls is how many calls of an operation ("DescribeInstances", or "ec2:DescribeInstances")
// the emulator received since start or the last ResetStats, answered or refused.
func (e *Env) Calls(op string) int {
	n := int64(0)
	for name, st := range e.Sim.Stats().Operations {
		if name == op || strings.HasSuffix(name, ":"+op) {
			n += st.Calls
		}
	}
	return int(n)
}

// Throttle makes the emulator refuse the next n calls of op with its service's throttling
// error (RequestLimitExceeded for EC2, ThrottlingException for SSM and STS).
func (e *Env) Throttle(t testing.TB, op string, n int) {
	t.Helper()
	require.NoError(t, e.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: op, Count: n}))
}
