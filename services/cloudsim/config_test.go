package cloudsim_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

func TestConfigValidationNamesEveryProblem(t *testing.T) {
	_, err := cloudsim.New(cloudsim.Config{
		ProviderAccountID: "12",
		Timing:            cloudsim.Timing{Snapshot: -time.Second},
		Faults: cloudsim.FaultConfig{PatchFailureRate: 2,
			Operations: map[string]cloudsim.OperationFaults{"Explode": {}, "ec2:DescribeInstances": {ThrottleRate: -1}}},
		Accounts: []cloudsim.AccountConfig{
			{ID: "111111111111", Tenant: "acme", Regions: []string{"mars-1"}, OSMix: map[string]float64{"plan9": 1}},
			{ID: "111111111111", Tenant: "", AgentlessFraction: 1.5},
		},
	})
	require.Error(t, err)
	for _, want := range []string{
		`ProviderAccountID "12": must be 12 digits`,
		"Timing.Snapshot -1s: must be >= 0",
		"Faults.PatchFailureRate 2: must be from 0 to 1",
		`Faults.Operations "Explode": unknown operation`,
		`Faults.Operations["ec2:DescribeInstances"].ThrottleRate -1`,
		`Accounts[0]: Regions "mars-1"`,
		`OSMix "plan9": unknown OS family`,
		"Accounts[1]: Tenant: required",
		"AgentlessFraction 1.5: must be from 0 to 1",
		`Accounts[1].ID "111111111111": must be unique`,
	} {
		require.ErrorContains(t, err, want)
	}
}
