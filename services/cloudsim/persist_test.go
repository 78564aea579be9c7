package cloudsim_test

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

// worldView is what a client sees of an account, to compare before and after a restart.
type worldView struct {
	Instances   []string
	Wave9       []string
	Snapshots   map[string]string
	Invocations map[string]string
	Patches     map[string]map[string]string
	Tasks       map[string]string
	Object      string
}

func viewOf(t *testing.T, c clients, ids []string) worldView {
	t.Helper()
	v := worldView{Snapshots: map[string]string{}, Invocations: map[string]string{}, Patches: map[string]map[string]string{}, Tasks: map[string]string{}}
	v.Instances, _ = describeAll(t, c.ec2, &ec2.DescribeInstancesInput{})
	v.Wave9, _ = describeAll(t, c.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{tagFilter("PatchWave", "9")}})
	snaps, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	require.NoError(t, err)
	for _, s := range snaps.Snapshots {
		v.Snapshots[*s.SnapshotId] = string(s.State) + " " + *s.Progress + " " + tagValue(s.Tags, "run")
	}
	invs, err := c.ssm.ListCommandInvocations(t.Context(), &ssm.ListCommandInvocationsInput{})
	require.NoError(t, err)
	for _, x := range invs.CommandInvocations {
		v.Invocations[*x.CommandId+"/"+*x.InstanceId] = string(x.Status)
	}
	for _, id := range ids {
		m := map[string]string{}
		for p, s := range patchStates(t, c, id) {
			m[p] = string(s)
		}
		v.Patches[id] = m
	}
	tasks, err := c.ec2.DescribeReplaceRootVolumeTasks(t.Context(), &ec2.DescribeReplaceRootVolumeTasksInput{})
	require.NoError(t, err)
	for _, x := range tasks.ReplaceRootVolumeTasks {
		v.Tasks[*x.ReplaceRootVolumeTaskId] = string(x.TaskState)
	}
	obj, err := c.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("acme-lists"), Key: aws.String("p.yaml")})
	require.NoError(t, err)
	b, err := io.ReadAll(obj.Body)
	require.NoError(t, err)
	obj.Body.Close()
	v.Object = string(b)
	return v
}

func TestStateSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	cfg := cloudsim.Config{StateDir: dir, CheckpointEvery: 40, Clock: clock.Now,
		Timing:   cloudsim.Timing{Snapshot: 10 * time.Minute, Command: 10 * time.Minute, ReplaceRootVolume: 10 * time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(20)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	tenant := tenantConfig(t, srv, acmeID)
	c := newClients(tenant)
	ids := srv.InstanceIDs(acmeID, region)

	_, err = c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: ids[:3], Tags: []ec2types.Tag{{Key: aws.String("PatchWave"), Value: aws.String("9")}}})
	require.NoError(t, err)
	for _, id := range ids[:4] {
		_, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)},
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{{Key: aws.String("run"), Value: aws.String("r1")}}}}})
		require.NoError(t, err)
	}
	list := putOverrideList(t, c, "acme-lists", "p.yaml", "KB1", "KB2")
	done := sendPatch(t, c, ids[:2], "Install", "NoReboot", list, nil)
	clock.Advance(10 * time.Minute) // the first install is done, the snapshots complete
	sendPatch(t, c, ids[2:4], "Install", "NoReboot", list, nil)
	_, err = c.ec2.CreateReplaceRootVolumeTask(t.Context(), &ec2.CreateReplaceRootVolumeTaskInput{InstanceId: aws.String(ids[5]), ClientToken: aws.String("t1")})
	require.NoError(t, err)
	clock.Advance(3 * time.Minute) // the second install and the task are half way
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: ids[19]}))

	before := viewOf(t, c, ids[:6])
	require.Equal(t, "Success", before.Invocations[done+"/"+ids[0]])
	require.Equal(t, "INSTALLED", before.Patches[ids[0]]["KB1"])
	require.Len(t, before.Wave9, 3)
	require.NoError(t, srv.Close())

	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	sort.Strings(files)
	require.Len(t, files, 2, "compaction keeps one checkpoint and its log: %v", files)

	// Reopen with another configuration: the stored state wins.
	cfg.Accounts = []cloudsim.AccountConfig{acmeConfig(3)}
	cfg.Addr = ""
	again, err := cloudsim.New(cfg)
	require.NoError(t, err)
	again.Start()
	t.Cleanup(func() { require.NoError(t, again.Close()) })
	key, secret := srv.ProviderCredentials()
	key2, secret2 := again.ProviderCredentials()
	require.Equal(t, key, key2)
	require.Equal(t, secret, secret2)

	creds, err := tenant.Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	c2 := newClients(awsConfig(again, creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken))
	after := viewOf(t, c2, ids[:6])
	require.Equal(t, before, after, "the same state after a restart, session credentials included")
	info, _ := again.Instance(ids[19])
	require.Equal(t, "stopped", info.State)

	clock.Advance(10 * time.Minute) // what was in progress finishes after the restart
	later := viewOf(t, c2, ids[:6])
	require.Equal(t, "INSTALLED", later.Patches[ids[2]]["KB2"])
	for _, s := range later.Tasks {
		require.Equal(t, "succeeded", s)
	}
}

func TestATornLogLineIsIgnored(t *testing.T) {
	dir := t.TempDir()
	cfg := cloudsim.Config{StateDir: dir, Accounts: []cloudsim.AccountConfig{acmeConfig(2)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	_, err = c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: ids[:1], Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	require.NoError(t, err)
	require.NoError(t, srv.Close())

	logs, err := filepath.Glob(filepath.Join(dir, "log-*.jsonl"))
	require.NoError(t, err)
	require.Len(t, logs, 1)
	tearLog(t, logs[0], ids[0]) // a crash in the middle of a write

	again, err := cloudsim.New(cfg)
	require.NoError(t, err)
	info, ok := again.Instance(ids[0])
	require.True(t, ok)
	require.Equal(t, "v", info.Tags["k"])
	require.NoError(t, again.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultImpair, InstanceID: ids[0]}))
	require.NoError(t, again.Close())

	third, err := cloudsim.New(cfg)
	require.NoError(t, err, "writes after a torn line start on a line of their own")
	t.Cleanup(func() { require.NoError(t, third.Close()) })
	info, _ = third.Instance(ids[0])
	require.Equal(t, "impaired", info.InstanceCheck)
}

// TestReadsWriteTheLogOnlyWhenATransitionIsDue: a read that changes nothing leaves the state
// log as it was; a read that meets a due transition (a stop that has ended) applies it and logs
// it, and the change survives a restart.
func TestReadsWriteTheLogOnlyWhenATransitionIsDue(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	cfg := cloudsim.Config{StateDir: dir, Clock: clock.Now, Timing: cloudsim.Timing{StateChange: time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(3)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	state := func() string {
		out, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: ids[:1]})
		require.NoError(t, err)
		require.Len(t, out.Reservations, 1)
		return string(out.Reservations[0].Instances[0].State.Name)
	}
	logSize := func() int64 {
		logs, err := filepath.Glob(filepath.Join(dir, "log-*.jsonl"))
		require.NoError(t, err)
		require.Len(t, logs, 1)
		fi, err := os.Stat(logs[0])
		require.NoError(t, err)
		return fi.Size()
	}
	require.Equal(t, "running", state()) // the session is assumed (and logged) here
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: ids[0]}))
	before := logSize()
	require.Equal(t, "stopping", state())
	_, err = c.ssm.DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{})
	require.NoError(t, err)
	require.Equal(t, before, logSize(), "reads that change nothing do not write the log")

	clock.Advance(2 * time.Minute)
	require.Equal(t, "stopped", state())
	require.Greater(t, logSize(), before, "the read applied the stop's end and logged it")
	require.NoError(t, srv.Close())

	cfg.Addr = ""
	again, err := cloudsim.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, again.Close()) })
	info, ok := again.Instance(ids[0])
	require.True(t, ok)
	require.Equal(t, "stopped", info.State)
}

// Calls that change the world at once queue their records under the lock and write them after
// it (one write may carry several calls' records), while checkpoints replace the log: after a
// restart every last change is there.
func TestConcurrentChangesSurviveARestartAcrossCheckpoints(t *testing.T) {
	dir := t.TempDir()
	cfg := cloudsim.Config{StateDir: dir, CheckpointEvery: 25, Accounts: []cloudsim.AccountConfig{acmeConfig(40)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	const rounds = 6
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for i, id := range ids {
		wg.Go(func() {
			for r := range rounds {
				// Each instance's tag ends at its last round; a snapshot per round is deleted
				// again in the even rounds.
				if _, err := c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: []string{id},
					Tags: []ec2types.Tag{{Key: aws.String("round"), Value: aws.String(strconv.Itoa(r))}}}); err != nil {
					errs <- err
					return
				}
				out, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{
					InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id), ExcludeBootVolume: aws.Bool(i%2 == 1)},
					TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
						Tags: []ec2types.Tag{{Key: aws.String("of"), Value: aws.String(id)}}}}})
				if err != nil {
					errs <- err
					return
				}
				if r%2 == 0 {
					for _, s := range out.Snapshots {
						if _, err := c.ec2.DeleteSnapshot(t.Context(), &ec2.DeleteSnapshotInput{SnapshotId: s.SnapshotId}); err != nil {
							errs <- err
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	state := func(c clients) (tags map[string]string, snaps []string) {
		tags = map[string]string{}
		out, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: ids})
		require.NoError(t, err)
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				tags[*in.InstanceId] = tagValue(in.Tags, "round")
			}
		}
		snapOut, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
		require.NoError(t, err)
		for _, s := range snapOut.Snapshots {
			snaps = append(snaps, *s.SnapshotId+" "+tagValue(s.Tags, "of"))
		}
		sort.Strings(snaps)
		return tags, snaps
	}
	tagsBefore, snapsBefore := state(c)
	for _, id := range ids {
		require.Equal(t, strconv.Itoa(rounds-1), tagsBefore[id])
	}
	require.NotEmpty(t, snapsBefore)
	require.NoError(t, srv.Close())

	again := startServer(t, cfg)
	tagsAfter, snapsAfter := state(newClients(tenantConfig(t, again, acmeID)))
	require.Equal(t, tagsBefore, tagsAfter)
	require.Equal(t, snapsBefore, snapsAfter)
}
