package cloudsim_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

func TestInjectedThrottlingAndErrors(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: twoTenants(),
		Faults: cloudsim.FaultConfig{Operations: map[string]cloudsim.OperationFaults{"ssm:ListCommands": {ThrottleRate: 1}}}})
	acme := newClients(tenantConfig(t, srv, acmeID))
	globex := newClients(tenantConfig(t, srv, globexID))
	describe := func(c clients) error {
		_, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
		return err
	}

	t.Run("a throttle for the next calls of one account", func(t *testing.T) {
		require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "DescribeInstances", Count: 2, Account: acmeID}))
		require.NoError(t, describe(globex), "other accounts are not throttled")
		requireAPIError(t, describe(acme), "RequestLimitExceeded", 503)
		requireAPIError(t, describe(acme), "RequestLimitExceeded", 503)
		require.NoError(t, describe(acme), "the count is spent")
	})
	t.Run("SSM and STS throttle with ThrottlingException", func(t *testing.T) {
		require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "ssm:*", Count: 1}))
		_, err := acme.ssm.DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{})
		requireAPIError(t, err, "ThrottlingException", 400)
		require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "sts:AssumeRole", Count: 1}))
		acct, _ := srv.Account(acmeID)
		_, err = sts.NewFromConfig(providerConfig(srv)).AssumeRole(t.Context(), &sts.AssumeRoleInput{RoleArn: aws.String(acct.RoleARN),
			RoleSessionName: aws.String("x1"), ExternalId: aws.String(acct.ExternalID)})
		requireAPIError(t, err, "ThrottlingException", 400)
	})
	t.Run("a configured throttle rate", func(t *testing.T) {
		_, err := acme.ssm.ListCommands(t.Context(), &ssm.ListCommandsInput{})
		requireAPIError(t, err, "ThrottlingException", 400)
	})
	t.Run("an injected error code with its status", func(t *testing.T) {
		for _, f := range []struct {
			fault  cloudsim.Fault
			code   string
			status int
		}{
			{cloudsim.Fault{Kind: cloudsim.FaultError, Operation: "ec2:DescribeInstances", Count: 1}, "InternalError", 500},
			{cloudsim.Fault{Kind: cloudsim.FaultError, Operation: "DescribeInstances", Count: 1, Code: "UnauthorizedOperation"}, "UnauthorizedOperation", 403},
			{cloudsim.Fault{Kind: cloudsim.FaultError, Operation: "DescribeInstances", Count: 1, Code: "Unavailable", Status: 503}, "Unavailable", 503},
		} {
			require.NoError(t, srv.InjectFault(f.fault))
			requireAPIError(t, describe(acme), f.code, f.status)
		}
		require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultError, Operation: "SendCommand", Count: 1}))
		_, err := acme.ssm.SendCommand(t.Context(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"),
			InstanceIds: srv.InstanceIDs(acmeID, region)[:1], Parameters: map[string][]string{"Operation": {"Scan"}}})
		requireAPIError(t, err, "InternalFailure", 500)
	})
	t.Run("clearing faults stops them", func(t *testing.T) {
		require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "*", Rate: 1}))
		requireAPIError(t, describe(acme), "RequestLimitExceeded", 503)
		require.Len(t, srv.Faults(), 1)
		srv.ClearFaults()
		require.NoError(t, describe(acme))
	})
	t.Run("bad faults are refused naming the field", func(t *testing.T) {
		err := srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "Nope", Count: 1})
		require.ErrorContains(t, err, "operation \"Nope\"")
		require.ErrorContains(t, srv.InjectFault(cloudsim.Fault{Kind: "explode"}), "kind \"explode\"")
		require.ErrorContains(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultDropAgent}), "instance_id")
	})
}

func TestStatsCountCallsAndTheHighestConcurrency(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(3)},
		Faults: cloudsim.FaultConfig{Operations: map[string]cloudsim.OperationFaults{"DescribeInstanceStatus": {Latency: 2 * time.Second}}}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	srv.ResetStats()

	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := c.ec2.DescribeInstanceStatus(t.Context(), &ec2.DescribeInstanceStatusInput{})
			require.NoError(t, err)
		})
	}
	waitFor(t, t.Context(), func() bool { return srv.Stats().Operations["ec2:DescribeInstanceStatus"].InFlight == n })
	wg.Wait()
	st := srv.Stats().Operations["ec2:DescribeInstanceStatus"]
	require.Equal(t, cloudsim.OperationStats{Calls: n, OK: n, InFlight: 0, MaxInFlight: n}, st)

	_, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	require.Error(t, err)
	_, err = c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(ids[0])}})
	require.NoError(t, err)
	st = srv.Stats().Operations["ec2:DescribeInstances"]
	require.Equal(t, map[string]int64{"InvalidInstanceID.NotFound": 1}, st.Errors)
	require.Equal(t, map[string]int64{"ec2:CreateSnapshots": 1}, srv.InstanceStats(ids[0]))

	t.Run("the admin API serves the same figures", func(t *testing.T) {
		var stats cloudsim.Stats
		getJSON(t, srv.URL()+"/_cloudsim/stats", &stats)
		require.Equal(t, int64(n), stats.Operations["ec2:DescribeInstanceStatus"].MaxInFlight)
		var inst struct {
			Operations map[string]int64 `json:"operations"`
		}
		getJSON(t, srv.URL()+"/_cloudsim/stats/instances/"+ids[0], &inst)
		require.Equal(t, int64(1), inst.Operations["ec2:CreateSnapshots"])
		postJSON(t, srv.URL()+"/_cloudsim/stats/reset", nil, http.StatusOK, nil)
		getJSON(t, srv.URL()+"/_cloudsim/stats", &stats)
		require.Zero(t, stats.Operations["ec2:DescribeInstanceStatus"].Calls)
	})
}

func TestAdminAPI(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(2)}})
	c := newClients(tenantConfig(t, srv, acmeID))

	var accounts struct {
		Provider map[string]string      `json:"provider"`
		Accounts []cloudsim.AccountInfo `json:"accounts"`
	}
	getJSON(t, srv.URL()+"/_cloudsim/accounts", &accounts)
	key, _ := srv.ProviderCredentials()
	require.Equal(t, key, accounts.Provider["access_key_id"])
	require.Len(t, accounts.Accounts, 1)
	require.Equal(t, "acme", accounts.Accounts[0].Tenant)
	require.Equal(t, 2, accounts.Accounts[0].Instances)

	var added struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	postJSON(t, srv.URL()+"/_cloudsim/instances", cloudsim.InstanceSpec{Account: acmeID, Count: 3, OSFamily: "rhel-9",
		Tags: map[string]string{"PatchWave": "2"}, InstalledPatches: []string{"kernel"}}, http.StatusCreated, &added)
	require.Len(t, added.InstanceIDs, 3)
	var info cloudsim.InstanceInfo
	getJSON(t, srv.URL()+"/_cloudsim/instances/"+added.InstanceIDs[0], &info)
	require.Equal(t, "rhel-9", info.OSFamily)
	require.Equal(t, "rhel-9", info.Tags["OSFamily"])
	require.Equal(t, "INSTALLED", info.Patches["kernel"])

	postJSON(t, srv.URL()+"/_cloudsim/faults", cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: added.InstanceIDs[0]}, http.StatusOK, nil)
	getJSON(t, srv.URL()+"/_cloudsim/instances/"+added.InstanceIDs[0], &info)
	require.Equal(t, "stopped", info.State)
	postJSON(t, srv.URL()+"/_cloudsim/faults", cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "DescribeInstances", Count: 1}, http.StatusOK, nil)
	_, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
	requireAPIError(t, err, "RequestLimitExceeded", 503)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL()+"/_cloudsim/faults", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	t.Run("bad input is a 400 naming the field", func(t *testing.T) {
		var e struct {
			Error string `json:"error"`
		}
		postJSON(t, srv.URL()+"/_cloudsim/instances", cloudsim.InstanceSpec{Account: acmeID, OSFamily: "plan9"}, http.StatusBadRequest, &e)
		require.Contains(t, e.Error, "os_family")
		postJSON(t, srv.URL()+"/_cloudsim/instances", map[string]any{"acount": acmeID}, http.StatusBadRequest, &e)
		require.Contains(t, e.Error, "acount")
		postJSON(t, srv.URL()+"/_cloudsim/faults", cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "DescribeInstances"}, http.StatusBadRequest, &e)
		require.Contains(t, e.Error, "count or rate")
		getJSON404(t, srv.URL()+"/_cloudsim/instances/i-0123456789abcdef0")
	})
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

func getJSON404(t *testing.T, url string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func postJSON(t *testing.T, url string, body any, status int, out any) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(raw))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, status, resp.StatusCode)
	if out != nil {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
	}
}

func TestConcurrentCallsKeepTheStateConsistent(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Timing: cloudsim.Timing{Snapshot: time.Minute, Command: time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(40)}, StateDir: t.TempDir(), CheckpointEvery: 100})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				id := ids[(g*10+i)%len(ids)]
				_, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)}})
				require.NoError(t, err)
				_, err = c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: []string{id},
					Tags: []ec2types.Tag{{Key: aws.String("g"), Value: aws.String(strconv.Itoa(g))}}})
				require.NoError(t, err)
				_, err = c.ssm.SendCommand(t.Context(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"),
					InstanceIds: []string{id}, Parameters: map[string][]string{"Operation": {"Scan"}}})
				require.NoError(t, err)
				_, err = c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{tagFilter("g", strconv.Itoa(g))}})
				require.NoError(t, err)
				clock.Advance(time.Second)
			}
		})
	}
	wg.Wait()
	st := srv.Stats().Operations
	require.Equal(t, int64(80), st["ec2:CreateSnapshots"].OK)
	require.Equal(t, int64(80), st["ssm:SendCommand"].OK)
	tagged, _ := describeAll(t, c.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{"g"}}}})
	require.Len(t, tagged, 40)
	invs := 0
	p := ssm.NewListCommandInvocationsPaginator(c.ssm, &ssm.ListCommandInvocationsInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		require.NoError(t, err)
		invs += len(out.CommandInvocations)
	}
	require.Equal(t, 80, invs)
}

func TestRunTimeLatencyRatesAndSnapshotFaults(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(2)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	snapshot := func() ec2types.SnapshotState {
		out, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(ids[0])}})
		require.NoError(t, err)
		for _, s := range out.Snapshots[1:] {
			require.Equal(t, out.Snapshots[0].State, s.State, "every volume of the call")
		}
		return out.Snapshots[0].State
	}

	postJSON(t, srv.URL()+"/_cloudsim/faults", cloudsim.Fault{Kind: cloudsim.FaultFailNextSnapshot, InstanceID: ids[0]}, http.StatusOK, nil)
	require.Equal(t, ec2types.SnapshotStateError, snapshot())
	require.Equal(t, ec2types.SnapshotStateCompleted, snapshot(), "only the next one fails")

	one := 1.0
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultSetRates, SnapshotErrorRate: &one, PatchFailureRate: &one}))
	require.Equal(t, ec2types.SnapshotStateError, snapshot())
	cmd := sendPatch(t, c, ids[1:], "Install", "NoReboot", putOverrideList(t, c, "acme-lists", "x.yaml", "KB1"), nil)
	require.Equal(t, ssmtypes.CommandInvocationStatusFailed, invocation(t, c, cmd, ids[1]).Status)

	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultLatency, Operation: "ec2:DescribeSnapshots", Latency: "1s"}))
	done := make(chan error, 1)
	go func() {
		_, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{})
		done <- err
	}()
	waitFor(t, t.Context(), func() bool { return srv.Stats().Operations["ec2:DescribeSnapshots"].InFlight == 1 })
	require.NoError(t, <-done)
	srv.ClearFaults()
	_, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{})
	require.NoError(t, err)

	require.ErrorContains(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultLatency, Operation: "DescribeSnapshots", Latency: "soon"}), "latency \"soon\"")
	require.ErrorContains(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultSetRates}), "at least one")
}

func TestStatsCountTheInstancesBusyWithAnOperation(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(3)}, Clock: clock.Now,
		Timing: cloudsim.Timing{Snapshot: 10 * time.Minute}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	snap := func(id string) {
		t.Helper()
		_, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)}})
		require.NoError(t, err)
	}
	snap(ids[0])
	snap(ids[1])
	snap(ids[1])
	require.Equal(t, cloudsim.BusyStats{InFlight: 2, MaxInFlight: 2}, srv.Stats().Busy, "an instance counts once however many operations it has")
	clock.Advance(10 * time.Minute)
	require.Equal(t, cloudsim.BusyStats{InFlight: 0, MaxInFlight: 2}, srv.Stats().Busy, "the snapshots ended")
	snap(ids[2])
	require.Equal(t, cloudsim.BusyStats{InFlight: 1, MaxInFlight: 2}, srv.Stats().Busy)
	srv.ResetStats()
	require.Equal(t, cloudsim.BusyStats{InFlight: 1, MaxInFlight: 1}, srv.Stats().Busy, "a reset starts the maximum from what is busy now")
	var stats cloudsim.Stats
	getJSON(t, srv.URL()+"/_cloudsim/stats", &stats)
	require.Equal(t, int64(1), stats.Busy.InFlight, "the admin API serves it")
}
