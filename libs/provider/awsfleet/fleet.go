package awsfleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsratelimit "github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/patchwave/patchwave/libs/provider"
)

// Fleet is the AWS adapter: a provider.Fleet over EC2, SSM, S3 and STS. Build it with New.
type Fleet struct {
	cfg     Config
	base    aws.Config
	sts     *sts.Client
	metrics *metrics

	// workers run parallel's loops (goroutines kept between calls).
	workers *workers

	mu      sync.Mutex
	clients map[clientKey]*clients
	// creds holds one credentials cache per role (account, role, external id), shared by the
	// role's client sets in every region: one AssumeRole serves them all.
	creds map[clientKey]*aws.CredentialsCache

	// installLists remembers the install lists known to be in S3 (bucket/key), so each is
	// checked with HeadObject once per process.
	installLists sync.Map
	// buckets remembers the buckets known to exist.
	buckets sync.Map
}

var _ provider.Fleet = (*Fleet)(nil)

// clientKey identifies one client set: an account's role in one region. The role and external
// id are part of the key, so a changed account configuration gets new credentials.
type clientKey struct {
	account, region, role, externalID string
}

// clients is the client set of one (account, region), built once and reused.
type clients struct {
	account provider.Account
	region  string
	ec2     *ec2.Client
	ssm     *ssm.Client
	s3      *s3.Client
}

// New builds the adapter. It makes no AWS call: credentials are fetched on first use.
func New(cfg Config) (*Fleet, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	base := aws.Config{
		Region:     cfg.Region,
		HTTPClient: NewHTTPClient(cfg.HTTP),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.Retry.MaxAttempts
				o.MaxBackoff = cfg.Retry.MaxBackoff
				// The per-account limiter paces calls; the SDK's client-side retry quota
				// would only fail calls early under a throttling burst.
				o.RateLimiter = awsratelimit.None
			})
		},
	}
	if cfg.AccessKeyID != "" {
		base.Credentials = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	} else {
		def, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(cfg.Region))
		if err != nil {
			return nil, fmt.Errorf("awsfleet: load the default AWS credential chain: %w", err)
		}
		base.Credentials = def.Credentials
	}
	f := &Fleet{cfg: cfg, base: base, metrics: m, workers: newWorkers(), clients: make(map[clientKey]*clients), creds: make(map[clientKey]*aws.CredentialsCache)}
	f.sts = sts.NewFromConfig(base, func(o *sts.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.APIOptions = append(o.APIOptions, f.middleware("provider", ServiceSTS))
	})
	cfg.Logger.Info("aws fleet adapter configured", "config", cfg)
	return f, nil
}

// clientsFor returns the client set of a target after checking that the target's account and
// region are the tenant's: a target naming another tenant's account is not found.
func (f *Fleet) clientsFor(ctx context.Context, t provider.Target) (*clients, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	accs, err := f.cfg.Accounts.Accounts(ctx, t.Tenant)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t, err)
	}
	i := slices.IndexFunc(accs, func(a provider.Account) bool {
		return a.Provider == provider.ProviderAWS && a.ID == t.Account && a.HasRegion(t.Region)
	})
	if i < 0 {
		return nil, fmt.Errorf("target %s: %w: account %s region %s is not one of tenant %s's", t, provider.ErrNotFound, t.Account, t.Region, t.Tenant)
	}
	return f.clientSet(accs[i], t.Region), nil
}

// clientsForIDs checks the ids a batched call is given (none empty or repeated, named as
// field) and returns the target's client set.
func (f *Fleet) clientsForIDs(ctx context.Context, t provider.Target, field string, ids []string) (*clients, error) {
	if err := provider.ValidateIDs(field, ids); err != nil {
		return nil, err
	}
	return f.clientsFor(ctx, t)
}

func (f *Fleet) clientSet(acc provider.Account, region string) *clients {
	key := clientKey{account: acc.ID, region: region, role: acc.RoleARN, externalID: acc.ExternalID}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[key]; ok {
		return c
	}
	roleKey := clientKey{account: acc.ID, role: acc.RoleARN, externalID: acc.ExternalID}
	creds, ok := f.creds[roleKey]
	if !ok {
		assume := stscreds.NewAssumeRoleProvider(f.sts, acc.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = f.cfg.RoleSessionName
			if acc.ExternalID != "" {
				o.ExternalID = aws.String(acc.ExternalID)
			}
		})
		creds = aws.NewCredentialsCache(roleCredentials{inner: assume, role: acc.RoleARN, account: acc.ID},
			func(o *aws.CredentialsCacheOptions) {
				o.ExpiryWindow = 5 * time.Minute
				o.ExpiryWindowJitterFrac = 0.5
			})
		f.creds[roleKey] = creds
	}
	cfg := f.base.Copy()
	cfg.Region = region
	cfg.Credentials = creds
	endpoint := func() *string {
		if f.cfg.Endpoint == "" {
			return nil
		}
		return aws.String(f.cfg.Endpoint)
	}
	// The EC2 and SSM clients make a wave's calls (one CreateSnapshots per instance, the rest
	// per batch): their stacks lose the steps that do nothing for the adapter and their
	// endpoints are resolved once (sdkstack.go).
	idle := removeIdleSteps(lambdaEnv())
	c := &clients{
		account: acc,
		region:  region,
		ec2: ec2.NewFromConfig(cfg, func(o *ec2.Options) {
			o.BaseEndpoint = endpoint()
			o.EndpointResolverV2 = newCachedEndpoints(o.EndpointResolverV2.ResolveEndpoint, ec2EndpointKey)
			o.APIOptions = append(o.APIOptions, f.middleware(acc.ID, ServiceEC2), adapterEC2Decoders, leanEC2Serializers, idle)
		}),
		ssm: ssm.NewFromConfig(cfg, func(o *ssm.Options) {
			o.BaseEndpoint = endpoint()
			o.EndpointResolverV2 = newCachedEndpoints(o.EndpointResolverV2.ResolveEndpoint, ssmEndpointKey)
			o.APIOptions = append(o.APIOptions, f.middleware(acc.ID, ServiceSSM), idle)
		}),
		s3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint = endpoint()
			o.UsePathStyle = f.cfg.Endpoint != ""
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			o.APIOptions = append(o.APIOptions, f.middleware(acc.ID, ServiceS3))
		}),
	}
	f.clients[key] = c
	return c
}

// roleCredentials marks the errors of assuming a tenant's role, so they are reported as
// access denied naming the role and account, whatever call needed the credentials.
type roleCredentials struct {
	inner   aws.CredentialsProvider
	role    string
	account string
}

func (r roleCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := r.inner.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return c, &assumeRoleError{role: r.role, account: r.account, err: err}
	}
	return c, err
}

// Targets returns every (account, region) of the tenant's AWS accounts, sorted.
func (f *Fleet) Targets(ctx context.Context, tenant string) ([]provider.Target, error) {
	if err := provider.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	accs, err := f.cfg.Accounts.Accounts(ctx, tenant)
	if err != nil {
		return nil, fmt.Errorf("targets of tenant %s: %w", tenant, err)
	}
	var ts []provider.Target
	for _, a := range accs {
		if a.Provider != provider.ProviderAWS {
			continue
		}
		for _, r := range a.Regions {
			ts = append(ts, provider.Target{Tenant: tenant, Account: a.ID, Region: r})
		}
	}
	slices.SortFunc(ts, func(a, b provider.Target) int {
		if c := compare(a.Account, b.Account); c != 0 {
			return c
		}
		return compare(a.Region, b.Region)
	})
	return ts, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parallel runs fn for 0..n-1 with at most cfg.Concurrency at once, and returns the first error;
// that error cancels the context the other calls get (as errgroup.WithContext does), and every
// i still runs.
//
// A few workers take the indexes in turn rather than a goroutine per index: an SDK call runs
// some forty middlewares deep, and each fresh goroutine grew its stack to that depth, copying
// it several times (about 8% of the adapter's CPU in a wave's one-per-instance
// CreateSnapshots calls). A worker grows its stack once, and the workers are goroutines kept
// between calls of parallel (see workers), so most calls find a grown stack.
func (f *Fleet) parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		once  sync.Once
		first error
	)
	loop := func() {
		defer wg.Done()
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			if err := fn(ctx, i); err != nil {
				once.Do(func() {
					first = err
					cancel(err)
				})
			}
		}
	}
	k := min(n, f.cfg.Concurrency)
	wg.Add(k)
	for range k {
		f.workers.run(loop)
	}
	wg.Wait()
	return first
}

// workerIdle is how long a worker goroutine waits for more work before it exits.
const workerIdle = 5 * time.Second

// workers runs functions on goroutines that outlive them: a function goes to a worker waiting
// for work, else to a new goroutine, which then waits up to workerIdle for the next one. run
// never blocks and never queues, so nested calls of parallel cannot deadlock and as many
// functions run at once as are given.
//
// Why: a fresh goroutine starts with a small stack and grows it, copying it each time it
// doubles, to the depth of an SDK call; in a wave that was 0.18-0.27 s of CPU (6-8% of the AWS
// calls' client side), mostly the snapshot batches' workers, each making a few CreateSnapshots
// calls and then exiting. A kept worker has its stack grown already (the garbage collector may
// halve an idle one; it then grows once, not from the start).
type workers struct {
	ch chan func()
}

func newWorkers() *workers { return &workers{ch: make(chan func())} }

func (w *workers) run(fn func()) {
	select {
	case w.ch <- fn:
	default:
		go w.work(fn)
	}
}

func (w *workers) work(fn func()) {
	fn()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case fn := <-w.ch:
			fn()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		}
	}
}

// chunks splits ids into slices of at most size.
func chunks[T any](ids []T, size int) [][]T {
	var out [][]T
	for len(ids) > size {
		out = append(out, ids[:size:size])
		ids = ids[size:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}

// errJoin is errors.Join that keeps a lone error as itself.
func errJoin(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}
