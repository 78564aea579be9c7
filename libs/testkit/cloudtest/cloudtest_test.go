package cloudtest_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/services/cloudsim"
)

func TestStartServesTheDefaultAccountToTheAdapter(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	require.Len(t, insts, 10)
	require.Equal(t, provider.Target{Tenant: "acme", Account: "111111111111", Region: "eu-central-1"}, env.Target("acme"))
	require.Equal(t, 1, env.Calls("DescribeInstances"))
	require.Equal(t, 1, env.Calls("ec2:DescribeInstances"))

	out, err := env.EC2(t, env.Target("acme")).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
	require.NoError(t, err, "the raw EC2 client reaches the same account")
	require.NotEmpty(t, out.Reservations)
}

func TestThrottleRefusesTheNextCalls(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	env.Throttle(t, "DescribeInstances", 10)
	err := env.Fleet.DiscoverInstances(t.Context(), provider.DiscoverQuery{Tenant: "acme"}, func([]provider.Instance) error { return nil })
	require.ErrorIs(t, err, provider.ErrThrottled)
	require.Equal(t, 3, env.Calls("DescribeInstances"), "the kit's adapter makes 3 attempts")
}

func TestOptionsSetAccountsAndTheEmulator(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{
		Accounts: []cloudsim.AccountConfig{{ID: "222222222222", Tenant: "globex", Regions: []string{"us-east-1", "eu-west-1"}, Instances: 4}},
		Sim:      func(c *cloudsim.Config) { c.Seed = 42 },
	})
	targets, err := env.Fleet.Targets(t.Context(), "globex")
	require.NoError(t, err)
	require.Len(t, targets, 2)
	require.Len(t, env.Discover(t, provider.DiscoverQuery{Tenant: "globex"}), 4)
}
