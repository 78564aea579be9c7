package awsfleet_test

import (
	"context"
	"io"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/services/cloudsim"
)

func account(id, tenant string, instances int, mutate ...func(*cloudsim.AccountConfig)) cloudsim.AccountConfig {
	a := cloudtest.DefaultAccount()
	a.ID, a.Tenant, a.Instances, a.ExternalID = id, tenant, instances, tenant+"-ext"
	for _, m := range mutate {
		m(&a)
	}
	return a
}

func ids(insts []provider.Instance) []string {
	out := make([]string, len(insts))
	for i, in := range insts {
		out[i] = in.ID
	}
	return out
}

func running(insts []provider.Instance) []provider.Instance {
	var out []provider.Instance
	for _, in := range insts {
		if in.State == provider.InstanceRunning && in.Agent == provider.AgentOnline {
			out = append(out, in)
		}
	}
	return out
}

func TestTargetsListEveryAccountAndRegionOfTheTenant(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{
		account("111111111111", "acme", 2, func(a *cloudsim.AccountConfig) { a.Regions = []string{"eu-central-1", "us-east-1"} }),
		account("222222222222", "acme", 2),
		account("333333333333", "globex", 2),
	}})
	got, err := env.Fleet.Targets(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, []provider.Target{
		{Tenant: "acme", Account: "111111111111", Region: "eu-central-1"},
		{Tenant: "acme", Account: "111111111111", Region: "us-east-1"},
		{Tenant: "acme", Account: "222222222222", Region: "eu-central-1"},
	}, got)
	_, err = env.Fleet.Targets(t.Context(), "initech")
	require.ErrorIs(t, err, provider.ErrNotFound)

	// Discovery goes through every target, each page naming its account and region.
	where := map[string]int{}
	for _, in := range env.Discover(t, provider.DiscoverQuery{Tenant: "acme"}) {
		where[in.Account+"/"+in.Region]++
	}
	require.Equal(t, map[string]int{"111111111111/eu-central-1": 1, "111111111111/us-east-1": 1, "222222222222/eu-central-1": 2}, where)
	// Credentials: one AssumeRole per account, cached, whatever the regions and calls.
	env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	require.Equal(t, 2, env.Calls("AssumeRole"))
}

func TestDiscoverInstancesPagesThroughMoreThanAThousand(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{account("111111111111", "acme", 2300)}})
	var pages []int
	seen := map[string]bool{}
	err := env.Fleet.DiscoverInstances(t.Context(), provider.DiscoverQuery{Tenant: "acme"}, func(page []provider.Instance) error {
		pages = append(pages, len(page))
		require.True(t, sort.SliceIsSorted(page, func(i, j int) bool { return page[i].ID < page[j].ID }), "a page is sorted by id")
		for _, in := range page {
			require.False(t, seen[in.ID], "instance %s twice", in.ID)
			seen[in.ID] = true
			require.Equal(t, "111111111111", in.Account)
			require.Equal(t, "eu-central-1", in.Region)
			require.NotEmpty(t, in.VolumeIDs)
			require.NotEmpty(t, in.OSFamily)
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []int{1000, 1000, 300}, pages)
	require.Len(t, seen, 2300)
	require.Equal(t, 3, env.Calls("DescribeInstances"), "%+v", env.Sim.Stats().Operations["ec2:DescribeInstances"])
	require.Equal(t, 2300/50, env.Calls("DescribeInstanceInformation"), "agents are read 50 at a time")

	// Wave tags on all of them: 1,000 instances per CreateTags.
	all := make([]string, 0, len(seen))
	for id := range seen {
		all = append(all, id)
	}
	require.NoError(t, env.Fleet.TagInstances(t.Context(), env.Target("acme"), all, map[string]string{"PatchWave": "7"}))
	require.Equal(t, 3, env.Calls("CreateTags"))
	require.Len(t, env.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "7"}), 2300)
}

func TestDiscoverInstancesFiltersByTagAndState(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{
		account("111111111111", "acme", 60, func(a *cloudsim.AccountConfig) { a.StoppedFraction = 0.25; a.AgentlessFraction = 0.2 }),
	}})
	all := env.Discover(t, provider.DiscoverQuery{Tenant: "acme", IncludeStopped: true})
	require.Len(t, all, 60)
	var stopped, agentless int
	for _, in := range all {
		if in.State == provider.InstanceStopped {
			stopped++
		}
		if in.Agent == provider.AgentNone {
			agentless++
		}
	}
	require.Positive(t, stopped, "the account has stopped instances")
	require.Positive(t, agentless, "instances without an agent are reported with AgentNone")

	runningOnly := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	require.Len(t, runningOnly, 60-stopped, "stopped instances only with IncludeStopped")

	wave2 := env.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "2", IncludeStopped: true})
	require.NotEmpty(t, wave2)
	for _, in := range wave2 {
		require.Equal(t, "2", in.Tags["PatchWave"])
	}
	require.Len(t, env.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", IncludeStopped: true}), 60)
	require.Empty(t, env.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "NoSuchTag"}))

	err := env.Fleet.DiscoverInstances(t.Context(), provider.DiscoverQuery{Tenant: "acme", TagValue: "1"}, func([]provider.Instance) error { return nil })
	require.ErrorIs(t, err, provider.ErrInvalidArgument)
	require.ErrorContains(t, err, "TagValue needs TagKey")
}

func TestTagAndUntagInstances(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	some := ids(insts[:4])
	require.NoError(t, env.Fleet.TagInstances(t.Context(), tg, some, map[string]string{"PatchWave": "9", "Owner": "ops"}))
	got := env.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "9"})
	require.ElementsMatch(t, some, ids(got))
	require.Equal(t, "ops", got[0].Tags["Owner"])

	require.NoError(t, env.Fleet.UntagInstances(t.Context(), tg, some[:2], []string{"PatchWave"}))
	require.ElementsMatch(t, some[2:], ids(env.Discover(t, provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "9"})))

	err := env.Fleet.TagInstances(t.Context(), tg, some, map[string]string{"aws:name": "x"})
	require.ErrorIs(t, err, provider.ErrInvalidArgument)
	require.ErrorContains(t, err, `must not start with "aws:"`)
}

func snapshotReq(run, instance string) provider.SnapshotRequest {
	return provider.SnapshotRequest{Tenant: "acme", RunID: run, InstanceID: instance, Tags: map[string]string{"purpose": "pre-patch"}}
}

func TestCreateSnapshotsTakesEveryVolumeOnceAndFindsTheSetOnRetry(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{
		account("111111111111", "acme", 6, func(a *cloudsim.AccountConfig) { a.StoppedFraction = 0.5 }),
	}})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme", IncludeStopped: true})
	reqs := []provider.SnapshotRequest{
		snapshotReq("run-1", insts[0].ID),
		snapshotReq("run-1", insts[1].ID),
		snapshotReq("run-1", "i-0000000000000dead"),
		{Tenant: "acme", RunID: "", InstanceID: insts[2].ID},
		{Tenant: "acme", RunID: "run-1", InstanceID: insts[3].ID, Tags: map[string]string{"patchwave:run": "forged"}},
	}
	res, err := env.Fleet.CreateSnapshots(t.Context(), tg, reqs)
	require.NoError(t, err)
	require.Len(t, res, len(reqs))
	for i, in := range insts[:2] {
		require.NoError(t, res[i].Err)
		s := res[i].Snapshot
		require.Equal(t, provider.SnapshotSetID("acme", "run-1", in.ID), s.ID)
		require.Equal(t, in.ID, s.InstanceID)
		require.Equal(t, "run-1", s.RunID)
		require.Len(t, s.VolumeSnapshotIDs, len(in.VolumeIDs), "one snapshot per attached volume")
		require.Equal(t, s.VolumeSnapshotIDs[0], s.RootSnapshotID, "root volume first")
		require.Equal(t, map[string]string{"purpose": "pre-patch"}, s.Tags)
	}
	require.ErrorIs(t, res[2].Err, provider.ErrNotFound, "an instance that does not exist")
	require.ErrorIs(t, res[3].Err, provider.ErrInvalidArgument)
	require.ErrorContains(t, res[3].Err, "reqs[3]: invalid argument: RunID is required")
	require.ErrorIs(t, res[4].Err, provider.ErrInvalidArgument)
	require.Equal(t, 2, env.Calls("CreateSnapshots"), "stopped or running, both snapshotted; bad requests not")

	// A retry (a redelivered job) finds the sets and creates nothing.
	again, err := env.Fleet.CreateSnapshots(t.Context(), tg, reqs[:2])
	require.NoError(t, err)
	require.Equal(t, res[0].Snapshot.VolumeSnapshotIDs, again[0].Snapshot.VolumeSnapshotIDs)
	require.Equal(t, res[1].Snapshot.RootSnapshotID, again[1].Snapshot.RootSnapshotID)
	require.Equal(t, 2, env.Calls("CreateSnapshots"), "no second set")

	got, err := env.Fleet.GetSnapshots(t.Context(), tg, []string{res[0].Snapshot.ID, res[1].Snapshot.ID, "snapset-unknown"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	for _, s := range got {
		require.Equal(t, provider.SnapshotCompleted, s.State)
		require.Equal(t, 100, s.Progress)
		require.NotEmpty(t, s.RootSnapshotID)
	}

	require.NoError(t, env.Fleet.DeleteSnapshot(t.Context(), tg, res[0].Snapshot.ID))
	require.NoError(t, env.Fleet.DeleteSnapshot(t.Context(), tg, res[0].Snapshot.ID), "deleting a deleted set succeeds")
	got, err = env.Fleet.GetSnapshots(t.Context(), tg, []string{res[0].Snapshot.ID, res[1].Snapshot.ID})
	require.NoError(t, err)
	require.NotContains(t, got, res[0].Snapshot.ID)
	require.Contains(t, got, res[1].Snapshot.ID)
	require.Equal(t, len(insts[0].VolumeIDs), env.Calls("DeleteSnapshot"))
}

func TestSnapshotProgressIsAggregatedOverTheSet(t *testing.T) {
	clock := newClock()
	env := cloudtest.Start(t, cloudtest.Options{Sim: func(c *cloudsim.Config) {
		c.Clock = clock.Now
		c.Timing.Snapshot = 100 * time.Second
	}})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	res, err := env.Fleet.CreateSnapshots(t.Context(), tg, []provider.SnapshotRequest{snapshotReq("run-1", in.ID)})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.Equal(t, provider.SnapshotPending, res[0].Snapshot.State)

	clock.Advance(50 * time.Second)
	got, err := env.Fleet.GetSnapshots(t.Context(), tg, []string{res[0].Snapshot.ID})
	require.NoError(t, err)
	s := got[res[0].Snapshot.ID]
	require.Equal(t, provider.SnapshotPending, s.State)
	require.Positive(t, s.Progress)
	require.Less(t, s.Progress, 100)

	clock.Advance(60 * time.Second)
	got, err = env.Fleet.GetSnapshots(t.Context(), tg, []string{res[0].Snapshot.ID})
	require.NoError(t, err)
	require.Equal(t, provider.SnapshotCompleted, got[res[0].Snapshot.ID].State)
	require.Equal(t, 100, got[res[0].Snapshot.ID].Progress)
}

// rawEC2 is an EC2 client of the tenant's account, for what the adapter does not do itself.
func rawEC2(t *testing.T, env *cloudtest.Env, tg provider.Target) *ec2.Client {
	t.Helper()
	return env.EC2(t, tg)
}

// setSnapshots reads every volume snapshot carrying the set tag, duplicates included.
func setSnapshots(t *testing.T, c *ec2.Client, setID string) []ec2types.Snapshot {
	t.Helper()
	out, err := c.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []ec2types.Filter{{Name: aws.String("tag:" + awsfleet.TagSnapshotSet), Values: []string{setID}}},
	})
	require.NoError(t, err)
	return out.Snapshots
}

func attempts(snaps []ec2types.Snapshot) map[string]int {
	m := map[string]int{}
	for _, s := range snaps {
		for _, tag := range s.Tags {
			if aws.ToString(tag.Key) == awsfleet.TagAttempt {
				m[aws.ToString(tag.Value)]++
			}
		}
	}
	return m
}

func TestCreateSnapshotsRemovesADuplicateSetLeftByARacingCreator(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	first, err := env.Fleet.CreateSnapshots(t.Context(), tg, []provider.SnapshotRequest{snapshotReq("run-1", in.ID)})
	require.NoError(t, err)
	require.NoError(t, first[0].Err)
	set := first[0].Snapshot.ID
	require.False(t, first[0].Snapshot.CreatedAt.IsZero())

	// A second creator that did not see the first set took one too (same set tag, its own
	// attempt, started later). cloudsim's start times are in milliseconds, and a racer started
	// in the same millisecond would win on its attempt id, so it starts once the clock has
	// passed the first set's millisecond.
	for !time.Now().After(first[0].Snapshot.CreatedAt.Add(time.Millisecond)) {
		runtime.Gosched()
	}
	c := rawEC2(t, env, tg)
	_, err = c.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{
		InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(in.ID)},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{
			{Key: aws.String(awsfleet.TagTenant), Value: aws.String("acme")},
			{Key: aws.String(awsfleet.TagRun), Value: aws.String("run-1")},
			{Key: aws.String(awsfleet.TagInstance), Value: aws.String(in.ID)},
			{Key: aws.String(awsfleet.TagSnapshotSet), Value: aws.String(set)},
			{Key: aws.String(awsfleet.TagAttempt), Value: aws.String("0000-racer")},
		}}},
	})
	require.NoError(t, err)
	require.Len(t, attempts(setSnapshots(t, c, set)), 2)

	// Readers already agree on the first set.
	got, err := env.Fleet.GetSnapshots(t.Context(), tg, []string{set})
	require.NoError(t, err)
	require.Equal(t, first[0].Snapshot.VolumeSnapshotIDs, got[set].VolumeSnapshotIDs)

	// The next CreateSnapshots for the key keeps the first and deletes the duplicate.
	again, err := env.Fleet.CreateSnapshots(t.Context(), tg, []provider.SnapshotRequest{snapshotReq("run-1", in.ID)})
	require.NoError(t, err)
	require.Equal(t, first[0].Snapshot.VolumeSnapshotIDs, again[0].Snapshot.VolumeSnapshotIDs)
	left := attempts(setSnapshots(t, c, set))
	require.Len(t, left, 1)
	require.NotContains(t, left, "0000-racer")
}

func TestConcurrentCreateSnapshotsForOneSetLeaveOneSet(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Sim: func(c *cloudsim.Config) {
		// Both creators are inside CreateSnapshots at once.
		c.Faults.Operations = map[string]cloudsim.OperationFaults{"CreateSnapshots": {Latency: 200 * time.Millisecond}}
	}})
	tg := env.Target("acme")
	second := env.NewFleet(t, nil)
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	start := make(chan struct{})
	var wg sync.WaitGroup
	results := make([][]provider.SnapshotResult, 2)
	for i, f := range []*awsfleet.Fleet{env.Fleet, second} {
		wg.Go(func() {
			<-start
			res, err := f.CreateSnapshots(context.Background(), tg, []provider.SnapshotRequest{snapshotReq("run-1", in.ID)})
			if err == nil {
				results[i] = res
			}
		})
	}
	close(start)
	wg.Wait()
	for _, r := range results {
		require.Len(t, r, 1)
		require.NoError(t, r[0].Err)
	}
	set := results[0][0].Snapshot.ID
	snaps := setSnapshots(t, rawEC2(t, env, tg), set)
	require.Len(t, attempts(snaps), 1, "one set remains")
	require.Len(t, snaps, len(in.VolumeIDs))
	t.Logf("CreateSnapshots calls: %d (2 means the creators raced and one set was deleted)", env.Calls("CreateSnapshots"))
}

func installReq(run, instance string, patches ...string) provider.InstallRequest {
	return provider.InstallRequest{Tenant: "acme", RunID: run, InstanceID: instance, BaselineID: "al2023-2026.11", PatchIDs: patches}
}

func waitInstallations(t *testing.T, f provider.Fleet, tg provider.Target, ids []string) map[string]provider.Installation {
	t.Helper()
	var got map[string]provider.Installation
	require.Eventually(t, func() bool {
		var err error
		got, err = f.GetInstallations(t.Context(), tg, ids)
		require.NoError(t, err)
		for _, id := range ids {
			if !got[id].State.Terminal() {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	return got
}

func TestInstallSplitsIntoCommandsOfFiftyAndInstallsExactlyTheList(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{account("111111111111", "acme", 120)}})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	patches := []string{"openssl-3.0.8-1.amzn2023", "kernel-6.1.100-1.amzn2023"}
	reqs := make([]provider.InstallRequest, len(insts))
	for i, in := range insts {
		reqs[i] = installReq("run-7", in.ID, patches...)
	}
	res, err := env.Fleet.Install(t.Context(), tg, reqs)
	require.NoError(t, err)
	commands := map[string]int{}
	var installIDs []string
	for i, r := range res {
		require.NoError(t, r.Err)
		require.Equal(t, insts[i].ID, r.Installation.InstanceID)
		require.Equal(t, "run-7", r.Installation.RunID)
		commands[r.Installation.CommandID]++
		installIDs = append(installIDs, r.Installation.ID)
	}
	require.Len(t, commands, 3, "120 instances are three commands")
	require.Equal(t, 3, env.Calls("SendCommand"))
	require.Equal(t, 1, env.Calls("CreateBucket"), "the install-list bucket was missing")
	obj, err := env.S3(t, tg).GetObject(t.Context(), &s3.GetObjectInput{
		Bucket: aws.String("patchwave-install-lists-111111111111-eu-central-1"),
		Key:    aws.String(awsfleet.InstallListKey("install-lists/", "al2023-2026.11", patches)),
	})
	require.NoError(t, err, "the install list is in the account's bucket")
	body, err := io.ReadAll(obj.Body)
	require.NoError(t, err)
	require.Equal(t, string(awsfleet.InstallListYAML("al2023-2026.11", patches)), string(body))

	waitInstallations(t, env.Fleet, tg, installIDs)
	env.Sim.ResetStats()
	got, err := env.Fleet.GetInstallations(t.Context(), tg, installIDs)
	require.NoError(t, err)
	require.Len(t, got, 120)
	require.Equal(t, 3, env.Calls("ListCommandInvocations"), "120 installations are read with one call per command")
	for _, id := range installIDs {
		require.Equal(t, provider.InstallSucceeded, got[id].State, got[id].Error)
	}

	states, err := env.Fleet.PatchStates(t.Context(), tg, insts[0].ID, append([]string{"not-in-the-list"}, patches...))
	require.NoError(t, err)
	require.Len(t, states, 2, "exactly the listed patches were installed")
	for _, s := range states {
		require.Contains(t, patches, s.PatchID)
		require.Contains(t, []provider.PatchState{provider.PatchInstalled, provider.PatchInstalledPendingReboot}, s.State)
	}

	// The same list for the next run is not put again, nor looked for by the same process;
	// another process looks (HeadObject) and finds it.
	env.Sim.ResetStats()
	_, err = env.Fleet.Install(t.Context(), tg, []provider.InstallRequest{installReq("run-8", insts[0].ID, patches[1], patches[0])})
	require.NoError(t, err)
	require.Zero(t, env.Calls("PutObject")+env.Calls("HeadObject"))
	_, err = env.NewFleet(t, nil).Install(t.Context(), tg, []provider.InstallRequest{installReq("run-9", insts[0].ID, patches...)})
	require.NoError(t, err)
	require.Equal(t, 1, env.Calls("HeadObject"))
	require.Zero(t, env.Calls("PutObject"))
}

func TestInstallReportsBadInstancesInTheirResults(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{
		account("111111111111", "acme", 40, func(a *cloudsim.AccountConfig) { a.StoppedFraction = 0.2; a.AgentlessFraction = 0.2 }),
		account("222222222222", "globex", 1),
	}})
	tg := env.Target("acme")
	all := env.Discover(t, provider.DiscoverQuery{Tenant: "acme", IncludeStopped: true})
	var stopped, agentless, good string
	for _, in := range all {
		switch {
		case in.State == provider.InstanceStopped && stopped == "":
			stopped = in.ID
		case in.Agent == provider.AgentNone && in.State == provider.InstanceRunning && agentless == "":
			agentless = in.ID
		case in.State == provider.InstanceRunning && in.Agent == provider.AgentOnline && good == "":
			good = in.ID
		}
	}
	require.NotEmpty(t, stopped)
	require.NotEmpty(t, agentless)
	require.NotEmpty(t, good)
	foreign := env.Discover(t, provider.DiscoverQuery{Tenant: "globex"})[0].ID

	t.Run("a stopped and an agent-less instance get failed installations, the others succeed", func(t *testing.T) {
		env.Sim.ResetStats()
		res, err := env.Fleet.Install(t.Context(), tg, []provider.InstallRequest{
			installReq("run-1", good, "openssl"), installReq("run-1", stopped, "openssl"), installReq("run-1", agentless, "openssl"),
		})
		require.NoError(t, err)
		require.Equal(t, 1, env.Calls("SendCommand"), "one command for the three")
		var ids []string
		for _, r := range res {
			require.NoError(t, r.Err)
			ids = append(ids, r.Installation.ID)
		}
		got := waitInstallations(t, env.Fleet, tg, ids)
		require.Equal(t, provider.InstallSucceeded, got[res[0].Installation.ID].State)
		for _, r := range res[1:] {
			in := got[r.Installation.ID]
			require.Equal(t, provider.InstallFailed, in.State)
			require.Contains(t, in.Error, "Undeliverable")
		}
	})
	t.Run("a batch SSM refuses for one instance is resent without the bad ones", func(t *testing.T) {
		env.Sim.ResetStats()
		res, err := env.Fleet.Install(t.Context(), tg, []provider.InstallRequest{
			installReq("run-2", good, "openssl"), installReq("run-2", foreign, "openssl"),
			installReq("run-2", stopped, "openssl"), installReq("run-2", agentless, "openssl"),
		})
		require.NoError(t, err)
		require.Equal(t, 2, env.Calls("SendCommand"), "refused (another account's instance), then resent")
		require.NoError(t, res[0].Err)
		require.ErrorIs(t, res[1].Err, provider.ErrNotFound)
		require.ErrorIs(t, res[2].Err, provider.ErrInstanceNotRunning)
		require.ErrorIs(t, res[3].Err, awsfleet.ErrNoAgent)
		got := waitInstallations(t, env.Fleet, tg, []string{res[0].Installation.ID})
		require.Equal(t, provider.InstallSucceeded, got[res[0].Installation.ID].State)
	})
}

func TestFindInstallationsFindsTheRunsInstallationAfterACrash(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	res, err := env.Fleet.Install(t.Context(), tg, []provider.InstallRequest{installReq("run-1", insts[0].ID, "openssl"), installReq("run-1", insts[1].ID, "openssl")})
	require.NoError(t, err)
	_, err = env.Fleet.Install(t.Context(), tg, []provider.InstallRequest{installReq("run-2", insts[0].ID, "openssl")})
	require.NoError(t, err)

	// A new process (no memory of the first) finds run-1's installations by their comment.
	restarted := env.NewFleet(t, nil)
	found, err := restarted.FindInstallations(t.Context(), tg, "run-1", ids(insts[:3]))
	require.NoError(t, err)
	require.Len(t, found, 2)
	require.Equal(t, res[0].Installation.ID, found[insts[0].ID].ID)
	require.Equal(t, res[1].Installation.ID, found[insts[1].ID].ID)
	require.Equal(t, "run-1", found[insts[0].ID].RunID)
	require.NotContains(t, found, insts[2].ID)
}

func TestCancelInstallation(t *testing.T) {
	clock := newClock()
	env := cloudtest.Start(t, cloudtest.Options{Sim: func(c *cloudsim.Config) {
		c.Clock = clock.Now
		c.Timing.Command = time.Hour
	}})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	res, err := env.Fleet.Install(t.Context(), tg, []provider.InstallRequest{installReq("run-1", in.ID, "openssl")})
	require.NoError(t, err)
	id := res[0].Installation.ID
	got, err := env.Fleet.GetInstallations(t.Context(), tg, []string{id})
	require.NoError(t, err)
	require.Equal(t, provider.InstallInProgress, got[id].State)

	require.NoError(t, env.Fleet.CancelInstallation(t.Context(), tg, id))
	got = waitInstallations(t, env.Fleet, tg, []string{id})
	require.Equal(t, provider.InstallCancelled, got[id].State)
	require.NoError(t, env.Fleet.CancelInstallation(t.Context(), tg, id), "cancelling a terminal installation succeeds")
	require.NoError(t, env.Fleet.CancelInstallation(t.Context(), tg, "00000000-0000-0000-0000-000000000000/"+in.ID), "and an unknown one")
}

func TestScanReportsInstalledAndMissingPatches(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	res, err := env.Fleet.Install(t.Context(), tg, []provider.InstallRequest{installReq("run-1", in.ID, "openssl")})
	require.NoError(t, err)
	waitInstallations(t, env.Fleet, tg, []string{res[0].Installation.ID})

	scan, err := env.Fleet.Scan(t.Context(), tg, []provider.ScanRequest{{Tenant: "acme", ScanID: "scan-1", InstanceID: in.ID, BaselineID: "al2023-2026.11", PatchIDs: []string{"openssl", "curl"}}})
	require.NoError(t, err)
	require.NoError(t, scan[0].Err)
	waitInstallations(t, env.Fleet, tg, []string{scan[0].Installation.ID})
	states, err := env.Fleet.PatchStates(t.Context(), tg, in.ID, []string{"openssl", "curl"})
	require.NoError(t, err)
	byID := map[string]provider.PatchState{}
	for _, s := range states {
		byID[s.PatchID] = s.State
	}
	require.Equal(t, provider.PatchMissing, byID["curl"])
	require.Contains(t, []provider.PatchState{provider.PatchInstalled, provider.PatchInstalledPendingReboot}, byID["openssl"])
}

func TestRestoreFromSnapshotIsIdempotentPerRestoreKey(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	snaps, err := env.Fleet.CreateSnapshots(t.Context(), tg, []provider.SnapshotRequest{snapshotReq("run-1", insts[0].ID)})
	require.NoError(t, err)
	set := snaps[0].Snapshot.ID

	req := provider.RestoreRequest{Tenant: "acme", InstanceID: insts[0].ID, SnapshotID: set, RestoreKey: "restore-req-1"}
	r1, err := env.Fleet.RestoreFromSnapshot(t.Context(), tg, req)
	require.NoError(t, err)
	r2, err := env.Fleet.RestoreFromSnapshot(t.Context(), tg, req)
	require.NoError(t, err)
	require.Equal(t, r1.ID, r2.ID, "the same key restores once")
	require.Equal(t, set, r1.SnapshotID)

	req.RestoreKey = "restore-req-2"
	r3, err := env.Fleet.RestoreFromSnapshot(t.Context(), tg, req)
	require.NoError(t, err)
	require.NotEqual(t, r1.ID, r3.ID, "a new key restores again")

	var got map[string]provider.Restore
	require.Eventually(t, func() bool {
		got, err = env.Fleet.GetRestores(t.Context(), tg, []string{r1.ID, r3.ID, "replacevol-00000000000000000"})
		require.NoError(t, err)
		return got[r1.ID].State.Terminal() && got[r3.ID].State.Terminal()
	}, 10*time.Second, 5*time.Millisecond)
	require.Len(t, got, 2, "an unknown id is absent")
	require.Equal(t, provider.RestoreSucceeded, got[r1.ID].State)

	_, err = env.Fleet.RestoreFromSnapshot(t.Context(), tg, provider.RestoreRequest{Tenant: "acme", InstanceID: insts[1].ID, SnapshotID: set, RestoreKey: "k"})
	require.ErrorIs(t, err, provider.ErrInvalidArgument, "a snapshot of another instance")
	_, err = env.Fleet.RestoreFromSnapshot(t.Context(), tg, provider.RestoreRequest{Tenant: "acme", InstanceID: insts[0].ID, SnapshotID: "snapset-nope", RestoreKey: "k"})
	require.ErrorIs(t, err, provider.ErrNotFound)

	// A stopped instance cannot have its root volume replaced.
	require.NoError(t, env.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: insts[0].ID}))
	req.RestoreKey = "restore-req-3"
	_, err = env.Fleet.RestoreFromSnapshot(t.Context(), tg, req)
	require.ErrorIs(t, err, provider.ErrInstanceNotRunning)
	require.ErrorContains(t, err, "IncorrectInstanceState")
}

func TestRebootAndCheckHealth(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{
		account("111111111111", "acme", 30, func(a *cloudsim.AccountConfig) { a.StoppedFraction = 0.2; a.AgentlessFraction = 0.2 }),
	}})
	tg := env.Target("acme")
	all := env.Discover(t, provider.DiscoverQuery{Tenant: "acme", IncludeStopped: true})
	good := running(all)
	require.GreaterOrEqual(t, len(good), 2)
	var stopped, agentless string
	for _, in := range all {
		if in.State == provider.InstanceStopped && stopped == "" {
			stopped = in.ID
		}
		if in.State == provider.InstanceRunning && in.Agent == provider.AgentNone && agentless == "" {
			agentless = in.ID
		}
	}
	require.NotEmpty(t, stopped)
	require.NotEmpty(t, agentless)

	health, err := env.Fleet.CheckHealth(t.Context(), tg, []string{good[0].ID, stopped, agentless, "i-0000000000000dead"})
	require.NoError(t, err)
	require.Len(t, health, 3, "an unknown instance is absent")
	require.True(t, health[good[0].ID].Healthy, health[good[0].ID].Detail)
	require.False(t, health[stopped].Healthy)
	require.Equal(t, provider.InstanceStopped, health[stopped].State)
	require.False(t, health[agentless].Healthy)
	require.Equal(t, provider.AgentNone, health[agentless].Agent)

	// Agents the caller knows online are not asked for: one DescribeInstanceInformation fewer,
	// and the instance's state still comes from EC2 (a stopped one stays unhealthy).
	before := env.Calls("DescribeInstanceInformation")
	health, err = env.Fleet.CheckHealth(t.Context(), tg, []string{good[0].ID, stopped}, provider.WithAgentOnline(good[0].ID, stopped))
	require.NoError(t, err)
	require.Equal(t, before, env.Calls("DescribeInstanceInformation"), "no agent asked for")
	require.True(t, health[good[0].ID].Healthy, health[good[0].ID].Detail)
	require.Equal(t, provider.AgentOnline, health[good[0].ID].Agent)
	require.False(t, health[stopped].Healthy)
	require.Equal(t, provider.InstanceStopped, health[stopped].State)

	err = env.Fleet.Reboot(t.Context(), tg, []string{good[0].ID, stopped})
	require.ErrorIs(t, err, provider.ErrInstanceNotRunning)
	require.NoError(t, env.Fleet.Reboot(t.Context(), tg, ids(good[:2])))
	require.Equal(t, 2, env.Calls("RebootInstances"))
}

func TestARebootingInstanceIsInitializingUntilItIsBack(t *testing.T) {
	clock := newClock()
	env := cloudtest.Start(t, cloudtest.Options{Sim: func(c *cloudsim.Config) {
		c.Clock = clock.Now
		c.Timing.Reboot = time.Minute
	}})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	require.NoError(t, env.Fleet.Reboot(t.Context(), tg, []string{in.ID}))
	h, err := env.Fleet.CheckHealth(t.Context(), tg, []string{in.ID})
	require.NoError(t, err)
	require.False(t, h[in.ID].Healthy)
	require.True(t, h[in.ID].Initializing, h[in.ID].Detail)

	clock.Advance(2 * time.Minute)
	h, err = env.Fleet.CheckHealth(t.Context(), tg, []string{in.ID})
	require.NoError(t, err)
	require.True(t, h[in.ID].Healthy, h[in.ID].Detail)
	require.False(t, h[in.ID].Initializing)
}

func TestThrottlingIsRetriedAndWhenItLastsIsErrThrottled(t *testing.T) {
	reg := prometheus.NewRegistry()
	env := cloudtest.Start(t, cloudtest.Options{Fleet: func(c *awsfleet.Config) { c.Registerer = reg }})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]

	env.Throttle(t, "DescribeInstanceStatus", 2) // fewer than the 3 attempts
	health, err := env.Fleet.CheckHealth(t.Context(), tg, []string{in.ID})
	require.NoError(t, err, "two throttled attempts, the third succeeds")
	require.True(t, health[in.ID].Healthy)
	require.InDelta(t, 2, testutil.ToFloat64(metric(t, reg, "patchwave_aws_retries_total", "ec2", "DescribeInstanceStatus")), 0)
	require.InDelta(t, 2, testutil.ToFloat64(metric(t, reg, "patchwave_aws_throttles_total", "ec2", "DescribeInstanceStatus")), 0)

	env.Throttle(t, "DescribeInstanceStatus", 100)
	_, err = env.Fleet.CheckHealth(t.Context(), tg, []string{in.ID})
	require.ErrorIs(t, err, provider.ErrThrottled)
	require.True(t, provider.IsRetryable(err))
	require.ErrorContains(t, err, "ec2 DescribeInstanceStatus in account 111111111111")
	require.ErrorContains(t, err, "RequestLimitExceeded")
}

func TestAWrongExternalIDIsAccessDeniedNamingTheRole(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	acc := env.Accounts["acme"][0]
	acc.ExternalID = "not-the-external-id"
	f := env.NewFleet(t, func(c *awsfleet.Config) { c.Accounts = provider.StaticAccounts{"acme": {acc}} })
	_, err := f.CheckHealth(t.Context(), env.Target("acme"), []string{"i-0123456789abcdef0"})
	require.ErrorIs(t, err, provider.ErrAccessDenied)
	require.False(t, provider.IsRetryable(err))
	require.ErrorContains(t, err, acc.RoleARN)
	require.ErrorContains(t, err, "account "+acc.ID)
}

func TestTenantsAreIsolated(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{
		account("111111111111", "acme", 3),
		account("222222222222", "globex", 3),
	}})
	acme, globex := env.Target("acme"), env.Target("globex")
	globexInst := env.Discover(t, provider.DiscoverQuery{Tenant: "globex"})
	acmeInst := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	require.NotEqual(t, ids(acmeInst), ids(globexInst))
	for _, in := range acmeInst {
		require.Equal(t, "111111111111", in.Account)
	}

	// acme naming globex's account is refused before any AWS call.
	forged := provider.Target{Tenant: "acme", Account: globex.Account, Region: globex.Region}
	_, err := env.Fleet.CheckHealth(t.Context(), forged, ids(globexInst))
	require.ErrorIs(t, err, provider.ErrNotFound)
	// globex's instances are not visible through acme's account.
	health, err := env.Fleet.CheckHealth(t.Context(), acme, ids(globexInst))
	require.NoError(t, err)
	require.Empty(t, health)
	res, err := env.Fleet.CreateSnapshots(t.Context(), acme, []provider.SnapshotRequest{snapshotReq("run-1", globexInst[0].ID)})
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, provider.ErrNotFound)
	// A request for another tenant in acme's batch is refused.
	res, err = env.Fleet.CreateSnapshots(t.Context(), acme, []provider.SnapshotRequest{{Tenant: "globex", RunID: "r", InstanceID: globexInst[0].ID}})
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, provider.ErrInvalidArgument)
	// Snapshot sets of globex are not found through acme.
	gs, err := env.Fleet.CreateSnapshots(t.Context(), globex, []provider.SnapshotRequest{{Tenant: "globex", RunID: "r", InstanceID: globexInst[0].ID}})
	require.NoError(t, err)
	got, err := env.Fleet.GetSnapshots(t.Context(), acme, []string{gs[0].Snapshot.ID})
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestAdaptersSharingARedisLimiterShareOneBudget(t *testing.T) {
	srv := testkit.StartRedis(t)
	budget := ratelimit.Limit{Rate: 1.0 / 3600, Burst: 5} // no refill during the test
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	env.Sim.ResetStats()

	adapter := func(lim ratelimit.Limiter) *awsfleet.Fleet {
		return env.NewFleet(t, func(c *awsfleet.Config) {
			c.Limiter = lim
			c.Limits.EC2 = budget
		})
	}
	redisLimiter := func() ratelimit.Limiter {
		l, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: srv.Client(t), Prefix: t.Name() + ":"})
		require.NoError(t, err)
		return l
	}
	count := func(fleets ...*awsfleet.Fleet) (ok, throttled int) {
		for range 10 {
			for _, f := range fleets {
				// The next permit is an hour away: past the deadline, so the wait fails at once.
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				_, err := f.CheckHealth(ctx, tg, []string{in.ID})
				cancel()
				if err == nil {
					ok++
				} else {
					require.ErrorIs(t, err, provider.ErrThrottled)
					throttled++
				}
			}
		}
		return ok, throttled
	}

	ok, throttled := count(adapter(redisLimiter()), adapter(redisLimiter()))
	require.Equal(t, 5, ok, "two adapters on one Redis budget of 5 EC2 calls")
	require.Equal(t, 15, throttled)
	require.Equal(t, 5, env.Calls("DescribeInstanceStatus"), "cloudsim saw exactly the granted calls")
	// SSM has its own budget: the exhausted EC2 budget does not hold it up.
	_, err := adapter(redisLimiter()).PatchStates(t.Context(), tg, in.ID, nil)
	require.NoError(t, err)

	// The same with a memory limiter each: two budgets.
	env.Sim.ResetStats()
	ok, _ = count(adapter(ratelimit.NewMemory()), adapter(ratelimit.NewMemory()))
	require.Equal(t, 10, ok, "separate memory limiters are two budgets")
	require.Equal(t, 10, env.Calls("DescribeInstanceStatus"))
}

func TestRebootPolicyIsTheRebootOption(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Sim: func(c *cloudsim.Config) { c.RebootRequiredRate = 1 }})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	reqs := []provider.InstallRequest{
		installReq("run-1", insts[0].ID, "kernel"), installReq("run-1", insts[1].ID, "kernel"), installReq("run-1", insts[2].ID, "kernel"),
	}
	reqs[0].RebootPolicy = provider.RebootIfRequired
	reqs[1].RebootPolicy = provider.RebootNever
	reqs[2].RebootPolicy = provider.RebootAlways
	res, err := env.Fleet.Install(t.Context(), tg, reqs)
	require.NoError(t, err)
	require.Equal(t, 2, env.Calls("SendCommand"), "RebootIfNeeded and NoReboot are two commands")
	require.Equal(t, res[1].Installation.CommandID, res[2].Installation.CommandID, "never and always are both NoReboot")
	var ids []string
	for _, r := range res {
		require.NoError(t, r.Err)
		ids = append(ids, r.Installation.ID)
	}
	waitInstallations(t, env.Fleet, tg, ids)
	want := []provider.PatchState{provider.PatchInstalled, provider.PatchInstalledPendingReboot, provider.PatchInstalledPendingReboot}
	for i, in := range insts[:3] {
		states, err := env.Fleet.PatchStates(t.Context(), tg, in.ID, []string{"kernel"})
		require.NoError(t, err)
		require.Equal(t, []provider.PatchResult{{PatchID: "kernel", State: want[i]}}, states, "policy %s", reqs[i].RebootPolicy)
	}
	// always: the installer reboots after the successful install.
	require.NoError(t, env.Fleet.Reboot(t.Context(), tg, []string{insts[2].ID}))
	states, err := env.Fleet.PatchStates(t.Context(), tg, insts[2].ID, nil)
	require.NoError(t, err)
	require.Equal(t, []provider.PatchResult{{PatchID: "kernel", State: provider.PatchInstalled}}, states)
}

func TestServerErrorsAreRetriedAndWhenTheyLastAreRetryable(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	in := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})[0]
	require.NoError(t, env.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultError, Operation: "ssm:DescribeInstancePatches", Code: "InternalFailure", Count: 2}))
	_, err := env.Fleet.PatchStates(t.Context(), tg, in.ID, nil)
	require.NoError(t, err, "two 500s, then an answer")

	require.NoError(t, env.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultError, Operation: "ssm:DescribeInstancePatches", Code: "InternalFailure", Count: 100}))
	_, err = env.Fleet.PatchStates(t.Context(), tg, in.ID, nil)
	require.Error(t, err)
	require.True(t, provider.IsRetryable(err))
	require.NotErrorIs(t, err, provider.ErrThrottled)
	require.ErrorContains(t, err, "ssm DescribeInstancePatches in account 111111111111")
	env.Sim.ClearFaults()

	env.Throttle(t, "ssm:ListCommandInvocations", 100)
	_, err = env.Fleet.FindInstallations(t.Context(), tg, "run-1", []string{in.ID})
	require.ErrorIs(t, err, provider.ErrThrottled)
	require.ErrorContains(t, err, "ThrottlingException")
}

func metric(t *testing.T, reg *prometheus.Registry, name, service, op string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["service"] == service && labels["operation"] == op {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "copy"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("no %s{service=%q,operation=%q}", name, service, op)
	return nil
}

func newClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC))
}

func TestPatchSummariesCountTheLastOperationFiftyInstancesPerCall(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{account("111111111111", "acme", 120)},
		Sim: func(c *cloudsim.Config) { c.Faults.PatchFailureRate = 0; c.RebootRequiredRate = 0 }})
	tg := env.Target("acme")
	insts := running(env.Discover(t, provider.DiscoverQuery{Tenant: "acme"}))
	require.Greater(t, len(insts), 60)
	patches := []string{"openssl", "curl"}
	reqs := make([]provider.InstallRequest, len(insts))
	for i, in := range insts {
		reqs[i] = installReq("run-1", in.ID, patches...)
	}
	// The last instance fails its next install: its summary must not settle it.
	bad := insts[len(insts)-1].ID
	require.NoError(t, env.Sim.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultFailNextInstall, InstanceID: bad, Count: 1}))
	res, err := env.Fleet.Install(t.Context(), tg, reqs)
	require.NoError(t, err)
	var installIDs []string
	for _, r := range res {
		require.NoError(t, r.Err)
		installIDs = append(installIDs, r.Installation.ID)
	}
	waitInstallations(t, env.Fleet, tg, installIDs)
	got, err := env.Fleet.GetInstallations(t.Context(), tg, installIDs)
	require.NoError(t, err)

	env.Sim.ResetStats()
	sums, err := env.Fleet.PatchSummaries(t.Context(), tg, append(ids(insts), "i-0000000000000dead"))
	require.NoError(t, err)
	require.Equal(t, (len(insts)+1+49)/50, env.Calls("DescribeInstancePatchStates"), "50 instances per call")
	require.Len(t, sums, len(insts), "an unknown instance is absent")
	for i, in := range insts {
		s := sums[in.ID]
		inst := got[res[i].Installation.ID]
		require.Equal(t, provider.PatchOperationInstall, s.Operation)
		require.False(t, s.StartedAt.Before(inst.StartedAt), "the operation started after the command was sent")
		if in.ID == bad {
			require.Equal(t, 2, s.Failed)
			require.False(t, s.AllInstalled(inst.StartedAt, len(patches)))
			continue
		}
		require.Equal(t, provider.PatchSummary{InstanceID: in.ID, Operation: provider.PatchOperationInstall,
			StartedAt: s.StartedAt, EndedAt: s.EndedAt, Installed: 2}, s)
		require.True(t, s.AllInstalled(inst.StartedAt, len(patches)))
		require.False(t, s.AllInstalled(inst.StartedAt, 3), "fewer installed than listed")
		require.False(t, s.AllInstalled(s.StartedAt.Add(time.Second), 2), "an older operation")
	}

	// A scan that finds a patch missing is not all installed.
	scan, err := env.Fleet.Scan(t.Context(), tg, []provider.ScanRequest{{Tenant: "acme", ScanID: "scan-1", InstanceID: insts[0].ID,
		BaselineID: "al2023-2026.11", PatchIDs: []string{"openssl", "zlib"}}})
	require.NoError(t, err)
	require.NoError(t, scan[0].Err)
	waitInstallations(t, env.Fleet, tg, []string{scan[0].Installation.ID})
	sums, err = env.Fleet.PatchSummaries(t.Context(), tg, []string{insts[0].ID})
	require.NoError(t, err)
	require.Equal(t, provider.PatchOperationScan, sums[insts[0].ID].Operation)
	require.Equal(t, 1, sums[insts[0].ID].Missing)
	require.False(t, sums[insts[0].ID].AllInstalled(scan[0].Installation.StartedAt, 2))
}
