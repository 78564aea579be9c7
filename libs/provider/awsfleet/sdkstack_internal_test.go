package awsfleet

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	"github.com/stretchr/testify/require"
)

// countingResolver is the SDK's EC2 endpoint resolver, counting its calls.
type countingResolver struct {
	calls atomic.Int64
	sdk   ec2.EndpointResolverV2
}

func (c *countingResolver) resolve(ctx context.Context, p ec2.EndpointParameters) (smithyendpoints.Endpoint, error) {
	c.calls.Add(1)
	return c.sdk.ResolveEndpoint(ctx, p)
}

func TestCachedEndpointsAnswerAsTheSDKsResolverOncePerParameters(t *testing.T) {
	sdk := ec2.NewDefaultEndpointResolverV2()
	cases := []struct {
		name   string
		params ec2.EndpointParameters
	}{
		{"cloudsim's endpoint", ec2.EndpointParameters{Region: aws.String("eu-central-1"), Endpoint: aws.String("http://127.0.0.1:4566"),
			UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false)}},
		{"AWS's regional endpoint", ec2.EndpointParameters{Region: aws.String("eu-central-1"), UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false)}},
		{"another region", ec2.EndpointParameters{Region: aws.String("us-west-2"), UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false)}},
		{"FIPS", ec2.EndpointParameters{Region: aws.String("us-west-2"), UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(true)}},
		{"dual-stack", ec2.EndpointParameters{Region: aws.String("us-west-2"), UseDualStack: aws.Bool(true), UseFIPS: aws.Bool(false)}},
		{"options left unset", ec2.EndpointParameters{Region: aws.String("us-west-2")}},
		{"a China region", ec2.EndpointParameters{Region: aws.String("cn-north-1"), UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false)}},
	}
	counting := &countingResolver{sdk: sdk}
	cache := newCachedEndpoints(counting.resolve, ec2EndpointKey)
	for round := range 3 {
		for _, c := range cases {
			want, err := sdk.ResolveEndpoint(t.Context(), c.params)
			require.NoError(t, err, c.name)
			got, err := cache.ResolveEndpoint(t.Context(), c.params)
			require.NoError(t, err, c.name)
			require.Equal(t, want, got, "%s, round %d", c.name, round+1)
		}
	}
	require.EqualValues(t, len(cases), counting.calls.Load(), "each set of parameters is resolved by the SDK once")

	got, err := cache.ResolveEndpoint(t.Context(), cases[0].params)
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:4566", got.URI.String())
	got.URI.Path = "/changed"
	again, err := cache.ResolveEndpoint(t.Context(), cases[0].params)
	require.NoError(t, err)
	require.Empty(t, again.URI.Path, "a caller changing its endpoint's URI does not change the cached one")
}

func TestCachedEndpointsDoNotKeepErrors(t *testing.T) {
	counting := &countingResolver{sdk: ec2.NewDefaultEndpointResolverV2()}
	cache := newCachedEndpoints(counting.resolve, ec2EndpointKey)
	// The EC2 rules refuse FIPS with a custom endpoint.
	bad := ec2.EndpointParameters{Region: aws.String("us-east-1"), Endpoint: aws.String("http://127.0.0.1:4566"),
		UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(true)}
	for range 2 {
		_, err := cache.ResolveEndpoint(t.Context(), bad)
		require.ErrorContains(t, err, "FIPS")
	}
	require.EqualValues(t, 2, counting.calls.Load(), "an error is asked again")
}

func TestCachedEndpointsKeepAFewAndResolveTheRestUncached(t *testing.T) {
	counting := &countingResolver{sdk: ec2.NewDefaultEndpointResolverV2()}
	cache := newCachedEndpoints(counting.resolve, ec2EndpointKey)
	regions := []string{"us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-west-3",
		"eu-central-1", "eu-north-1", "ap-south-1"}
	for range 2 {
		for _, r := range regions {
			_, err := cache.ResolveEndpoint(t.Context(), ec2.EndpointParameters{Region: aws.String(r)})
			require.NoError(t, err)
		}
	}
	require.EqualValues(t, len(regions)+len(regions)-maxCachedEndpoints, counting.calls.Load(),
		"the first %d are kept, the others asked each time", maxCachedEndpoints)
}

func TestCachedEndpointsAreSafeForConcurrentCalls(t *testing.T) {
	counting := &countingResolver{sdk: ec2.NewDefaultEndpointResolverV2()}
	cache := newCachedEndpoints(counting.resolve, ec2EndpointKey)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			region := []string{"us-east-1", "eu-central-1"}[i%2]
			for range 100 {
				e, err := cache.ResolveEndpoint(context.Background(), ec2.EndpointParameters{Region: aws.String(region)})
				if err != nil || e.URI.Host != "ec2."+region+".amazonaws.com" {
					t.Errorf("resolved %s for %s: %v", e.URI.Host, region, err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, counting.calls.Load(), int64(8), "at most one resolution per caller before the cache has the region")
}

// TestEndpointParametersAreTheFourTheCacheKeys fails when an SDK upgrade gives EC2's or SSM's
// endpoint rules a parameter endpointKey does not hold: the cache would then answer two calls
// with different parameters alike.
func TestEndpointParametersAreTheFourTheCacheKeys(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[ec2.EndpointParameters](), reflect.TypeFor[ssm.EndpointParameters]()} {
		var fields []string
		for i := range typ.NumField() {
			fields = append(fields, typ.Field(i).Name)
		}
		require.ElementsMatch(t, []string{"Region", "UseDualStack", "UseFIPS", "Endpoint"}, fields,
			"%s changed: teach endpointKey (sdkstack.go) the new parameters", typ)
	}
	require.NotEqual(t, ssmEndpointKey(ssm.EndpointParameters{UseFIPS: aws.Bool(false)}), ssmEndpointKey(ssm.EndpointParameters{}),
		"an unset option is not the option set to false")
	require.NotEqual(t, ec2EndpointKey(ec2.EndpointParameters{Endpoint: aws.String("")}), ec2EndpointKey(ec2.EndpointParameters{}),
		"an empty endpoint is not an unset one")
}

// BenchmarkEndpointResolution compares the SDK's EC2 endpoint resolver, which runs the rules
// on every call, with the adapter's cache of its answers, for cloudsim's endpoint and for
// AWS's regional one. Run:
//
//	cd libs/provider/awsfleet && go test -run '^$' -bench EndpointResolution -benchmem .
func BenchmarkEndpointResolution(b *testing.B) {
	sdk := ec2.NewDefaultEndpointResolverV2()
	for _, c := range []struct {
		name   string
		params ec2.EndpointParameters
	}{
		{"cloudsim", ec2.EndpointParameters{Region: aws.String("eu-central-1"), Endpoint: aws.String("http://127.0.0.1:4566"),
			UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false)}},
		{"aws", ec2.EndpointParameters{Region: aws.String("eu-central-1"), UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false)}},
	} {
		for _, r := range []struct {
			name     string
			resolver ec2.EndpointResolverV2
		}{{"sdk", sdk}, {"cached", newCachedEndpoints(sdk.ResolveEndpoint, ec2EndpointKey)}} {
			b.Run(c.name+"/"+r.name, func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := r.resolver.ResolveEndpoint(ctx, c.params); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
