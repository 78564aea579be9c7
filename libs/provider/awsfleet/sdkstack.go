package awsfleet

import (
	"context"
	"os"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	"github.com/aws/smithy-go/middleware"
)

// The SDK builds every call's middleware stack anew and runs each step of it, whether the
// step has anything to do or not. Two things here cut what a call does for nothing on the
// EC2 and SSM clients (the calls a wave makes per instance and per batch), through the SDK's
// own options: the steps that never act for the adapter are removed from the stack, and the
// endpoint, which the SDK's rules work out again on every call from parameters that do not
// change, is resolved once per set of parameters. docs/performance.md "AWS SDK middleware per
// call (sdkmw)" has the figures.

// removeIdleSteps is a stack option that removes the SDK steps that do nothing for the
// adapter's calls. What each did, and why the adapter does not need it:
//
//   - RecursionDetection (Build) copies the _X_AMZN_TRACE_ID variable into the
//     X-Amzn-Trace-Id header when the process runs in AWS Lambda; elsewhere it reads two
//     variables and passes the request on. It is removed only when AWS_LAMBDA_FUNCTION_NAME
//     is unset when the clients are built (see lambdaEnv), so what is sent does not change.
//   - RequestResponseLogger (Deserialize) logs requests and responses when the client has a
//     ClientLogMode; the adapter's clients have none.
//   - disableHTTPS (Finalize) rewrites the endpoint's scheme to http when
//     EndpointOptions.DisableHTTPS is set; the adapter never sets it (cloudsim's endpoint is
//     given as http:// in Config.Endpoint).
//   - InterceptBeforeRetryLoop and InterceptAttempt (Finalize) call the client's
//     interceptors; the adapter's clients have none (the SDK adds the other interceptor
//     steps only when there are some, these two always).
//
// A step that is absent (another SDK version) is left alone: TestAdapterStacksHaveTheSteps
// lists the steps the adapter's calls run, so an SDK upgrade that renames or adds one fails
// it rather than slipping by.
func removeIdleSteps(lambda bool) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		if !lambda {
			_, _ = s.Build.Remove("RecursionDetection")
		}
		_, _ = s.Deserialize.Remove("RequestResponseLogger")
		_, _ = s.Finalize.Remove("disableHTTPS")
		_, _ = s.Finalize.Remove("InterceptBeforeRetryLoop")
		_, _ = s.Finalize.Remove("InterceptAttempt")
		return nil
	}
}

// lambdaEnv reports whether the process runs in AWS Lambda, where the SDK's
// RecursionDetection step has work to do.
func lambdaEnv() bool {
	_, ok := os.LookupEnv("AWS_LAMBDA_FUNCTION_NAME")
	return ok
}

// endpointKey is the value of the endpoint parameters of EC2 and SSM (the same four, as
// pointers in the SDK's EndpointParameters; TestEndpointParametersAreTheFourTheCacheKeys
// fails if an SDK upgrade adds one).
type endpointKey struct {
	region, endpoint       string
	hasRegion, hasEndpoint bool
	// dualStack and fips are 0 when unset, else 1 for false and 2 for true.
	dualStack, fips int8
}

func tristate(b *bool) int8 {
	switch {
	case b == nil:
		return 0
	case *b:
		return 2
	}
	return 1
}

func keyOf(region *string, dualStack, fips *bool, endpoint *string) endpointKey {
	k := endpointKey{dualStack: tristate(dualStack), fips: tristate(fips)}
	if region != nil {
		k.region, k.hasRegion = *region, true
	}
	if endpoint != nil {
		k.endpoint, k.hasEndpoint = *endpoint, true
	}
	return k
}

func ec2EndpointKey(p ec2.EndpointParameters) endpointKey {
	return keyOf(p.Region, p.UseDualStack, p.UseFIPS, p.Endpoint)
}

func ssmEndpointKey(p ssm.EndpointParameters) endpointKey {
	return keyOf(p.Region, p.UseDualStack, p.UseFIPS, p.Endpoint)
}

// maxCachedEndpoints bounds a cache: one client's calls give one set of parameters (its
// region, endpoint and options), so a few entries are plenty; past the bound the SDK's
// resolver answers uncached.
const maxCachedEndpoints = 8

// cachedEndpoints is an EndpointResolverV2 that remembers the SDK's resolver's answers by
// their parameters. The SDK's resolver runs the service's endpoint rules on every call (string
// checks, partition look-up, a URL parse and the properties of the auth schemes), and for a
// client's calls the parameters, and so the answer, are always the same: the rules depend on
// nothing else. Errors are not remembered. The endpoint is handed out as a copy of its struct;
// its header and property maps are shared, and the SDK's middleware only reads them.
type cachedEndpoints[P any] struct {
	resolve func(context.Context, P) (smithyendpoints.Endpoint, error)
	key     func(P) endpointKey

	mu   sync.RWMutex
	seen map[endpointKey]smithyendpoints.Endpoint
}

func newCachedEndpoints[P any](resolve func(context.Context, P) (smithyendpoints.Endpoint, error), key func(P) endpointKey) *cachedEndpoints[P] {
	return &cachedEndpoints[P]{resolve: resolve, key: key, seen: make(map[endpointKey]smithyendpoints.Endpoint)}
}

// ResolveEndpoint returns the endpoint for p, from the cache when p was resolved before.
func (c *cachedEndpoints[P]) ResolveEndpoint(ctx context.Context, p P) (smithyendpoints.Endpoint, error) {
	k := c.key(p)
	c.mu.RLock()
	e, ok := c.seen[k]
	c.mu.RUnlock()
	if ok {
		return e, nil
	}
	e, err := c.resolve(ctx, p)
	if err != nil {
		return e, err
	}
	c.mu.Lock()
	if len(c.seen) < maxCachedEndpoints {
		c.seen[k] = e
	}
	c.mu.Unlock()
	return e, nil
}
