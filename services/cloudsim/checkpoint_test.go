package cloudsim_test

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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

// fullView is everything a client sees of the tenant's world: every instance (state and tags),
// every snapshot (state, progress and tags), every command invocation (status) and the objects
// of the bucket acme-lists (ETag), if there is one.
func fullView(t *testing.T, c clients) map[string]string {
	t.Helper()
	v := map[string]string{}
	ip := ec2.NewDescribeInstancesPaginator(c.ec2, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(1000)})
	for ip.HasMorePages() {
		out, err := ip.NextPage(t.Context())
		require.NoError(t, err)
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				v["instance "+*in.InstanceId] = string(in.State.Name) + " " + tagList(in.Tags)
			}
		}
	}
	sp := ec2.NewDescribeSnapshotsPaginator(c.ec2, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	for sp.HasMorePages() {
		out, err := sp.NextPage(t.Context())
		require.NoError(t, err)
		for _, s := range out.Snapshots {
			v["snapshot "+*s.SnapshotId] = string(s.State) + " " + *s.Progress + " " + tagList(s.Tags)
		}
	}
	cp := ssm.NewListCommandInvocationsPaginator(c.ssm, &ssm.ListCommandInvocationsInput{})
	for cp.HasMorePages() {
		out, err := cp.NextPage(t.Context())
		require.NoError(t, err)
		for _, x := range out.CommandInvocations {
			v["invocation "+*x.CommandId+"/"+*x.InstanceId] = string(x.Status)
		}
	}
	objs, err := c.s3.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String("acme-lists")})
	if !isCode(err, "NoSuchBucket") {
		require.NoError(t, err)
		for _, o := range objs.Contents {
			v["object "+*o.Key] = *o.ETag
		}
	}
	return v
}

func tagList(tags []ec2types.Tag) string {
	var kv []string
	for _, t := range tags {
		kv = append(kv, *t.Key+"="+*t.Value)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// stateFiles lists the state directory's file names, sorted.
func stateFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// copyState copies the state directory's files as they are: what a crash at this moment leaves.
func copyState(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	for _, name := range stateFiles(t, from) {
		data, err := os.ReadFile(filepath.Join(from, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, name), data, 0o600))
	}
	return to
}

// tearLog appends the first half of an instance's record to a log, as a crash in the middle of
// a write leaves it.
func tearLog(t *testing.T, path, instanceID string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = f.WriteString(`{"k":"instance","id":"` + instanceID + `","v":{"id":`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// holdCheckpoint makes the server's next checkpoint stop after its first chunk until release
// is closed; entered is closed when it has stopped there.
func holdCheckpoint(srv *cloudsim.Server) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	cloudsim.SetCheckpointHook(srv, func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	})
	return entered, release
}

func tagAll(t *testing.T, c clients, ids []string, key, value string) {
	t.Helper()
	for i := 0; i < len(ids); i += 1000 {
		_, err := c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: ids[i:min(i+1000, len(ids))],
			Tags: []ec2types.Tag{{Key: aws.String(key), Value: aws.String(value)}}})
		require.NoError(t, err)
	}
}

// While a checkpoint is being written, calls that change, create and delete entities are
// served; the world after a restart is exactly the final one, and a crash while the checkpoint
// was unfinished (its temporary file, the old generation and the new log on disk, the new log
// ending in a torn line) recovers the whole world as it was at the crash.
func TestCallsAreServedWhileACheckpointIsWritten(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	const n = 2500 // the checkpoint has a few chunks
	require.Greater(t, n, 2*cloudsim.CheckpointChunk)
	// The fleet's first flush logs n instances and a few more records; tagging every instance
	// crosses CheckpointEvery.
	cfg := cloudsim.Config{StateDir: dir, CheckpointEvery: n + 500, Clock: clock.Now,
		Timing:   cloudsim.Timing{Snapshot: time.Hour, Command: time.Hour},
		Accounts: []cloudsim.AccountConfig{acmeConfig(n)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	require.Len(t, ids, n)
	var snaps []string
	for _, id := range ids[:10] {
		out, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)}})
		require.NoError(t, err)
		for _, s := range out.Snapshots {
			snaps = append(snaps, *s.SnapshotId)
		}
	}
	for _, key := range []string{"keep.yaml", "change.yaml", "drop.yaml"} {
		putOverrideList(t, c, "acme-lists", key, "KB1")
	}
	require.Equal(t, []string{"checkpoint-00000001.jsonl", "log-00000001.jsonl"}, stateFiles(t, dir))

	entered, release := holdCheckpoint(srv)
	tagAll(t, c, ids, "phase", "before") // starts the checkpoint of generation 2
	<-entered
	require.Equal(t, []string{"checkpoint-00000001.jsonl", "checkpoint-00000002.jsonl.tmp", "log-00000001.jsonl", "log-00000002.jsonl"},
		stateFiles(t, dir), "the checkpoint is under way, appends go to the new log")

	// The checkpoint writer is stopped between two chunks: these calls change entities it has
	// written and entities it has not reached, delete some, and make new ones (S3 objects
	// included).
	tagAll(t, c, ids[:n/2], "phase", "during")
	_, err = c.ec2.DeleteTags(t.Context(), &ec2.DeleteTagsInput{Resources: ids[n/2 : n/2+100], Tags: []ec2types.Tag{{Key: aws.String("phase")}}})
	require.NoError(t, err)
	for _, id := range snaps[:len(snaps)/2] {
		_, err := c.ec2.DeleteSnapshot(t.Context(), &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		require.NoError(t, err)
	}
	_, err = c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(ids[n-1])},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{{Key: aws.String("made"), Value: aws.String("during")}}}}})
	require.NoError(t, err)
	sendPatch(t, c, ids[:5], "Install", "NoReboot", "", nil)
	added, err := srv.AddInstances(cloudsim.InstanceSpec{Account: acmeID, Count: 3, Tags: map[string]string{"added": "during"}})
	require.NoError(t, err)
	require.Len(t, added, 3)
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: ids[n-2]}))
	putOverrideList(t, c, "acme-lists", "change.yaml", "KB2")
	putOverrideList(t, c, "acme-lists", "new.yaml", "KB3")
	_, err = c.s3.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String("acme-lists"), Key: aws.String("drop.yaml")})
	require.NoError(t, err)

	atCrash := fullView(t, c)
	kinds := map[string]int{}
	for k := range atCrash {
		kinds[strings.Fields(k)[0]]++
	}
	require.Equal(t, n+3, kinds["instance"])
	require.Equal(t, 5, kinds["invocation"])
	require.Greater(t, kinds["snapshot"], len(snaps)-len(snaps)/2)
	require.Equal(t, 3, kinds["object"])
	crashDir := copyState(t, dir)

	close(release)
	cloudsim.WaitCheckpoint(srv)
	require.Equal(t, []string{"checkpoint-00000002.jsonl", "log-00000002.jsonl"}, stateFiles(t, dir),
		"the complete checkpoint replaced generation 1")
	tagAll(t, c, ids[:10], "phase", "after")
	final := fullView(t, c)
	require.NotEqual(t, atCrash, final)
	require.NoError(t, srv.Close())

	cfg.Addr = ""
	again := startServer(t, cfg)
	require.Equal(t, final, fullView(t, newClients(tenantConfig(t, again, acmeID))))

	// The crash left the checkpoint's temporary file; it also tore the new log's last line.
	tearLog(t, filepath.Join(crashDir, "log-00000002.jsonl"), ids[0])
	crashCfg := cfg
	crashCfg.StateDir = crashDir
	crashed, err := cloudsim.New(crashCfg)
	require.NoError(t, err)
	require.Equal(t, []string{"checkpoint-00000001.jsonl", "log-00000001.jsonl", "log-00000002.jsonl"}, stateFiles(t, crashDir),
		"checkpoint 1 and both logs are kept, the temporary file is gone")
	crashed.Start()
	require.Equal(t, atCrash, fullView(t, newClients(tenantConfig(t, crashed, acmeID))))
	// Both logs count towards the next checkpoint: the first change (the session) started it.
	cloudsim.WaitCheckpoint(crashed)
	require.Equal(t, []string{"checkpoint-00000003.jsonl", "log-00000003.jsonl"}, stateFiles(t, crashDir))
	require.NoError(t, crashed.Close())

	crashedAgain := startServer(t, crashCfg)
	require.Equal(t, atCrash, fullView(t, newClients(tenantConfig(t, crashedAgain, acmeID))))
}

// A checkpoint starts only when the one before it is done, and a later one replaces the
// generations before it; the world survives each.
func TestCheckpointsRunOneAtATime(t *testing.T) {
	dir := t.TempDir()
	const n = 1500
	cfg := cloudsim.Config{StateDir: dir, CheckpointEvery: n + 100, Accounts: []cloudsim.AccountConfig{acmeConfig(n)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)

	entered, release := holdCheckpoint(srv)
	tagAll(t, c, ids, "round", "1") // starts the checkpoint of generation 2
	<-entered
	tagAll(t, c, ids, "round", "2") // the new log is over CheckpointEvery already
	tagAll(t, c, ids, "round", "3")
	require.Equal(t, []string{"checkpoint-00000001.jsonl", "checkpoint-00000002.jsonl.tmp", "log-00000001.jsonl", "log-00000002.jsonl"},
		stateFiles(t, dir), "no second checkpoint while the first is being written")
	close(release)
	cloudsim.WaitCheckpoint(srv)
	require.Equal(t, []string{"checkpoint-00000002.jsonl", "log-00000002.jsonl"}, stateFiles(t, dir))

	tagAll(t, c, ids[:1], "round", "4") // the next change finds the log long enough
	cloudsim.WaitCheckpoint(srv)
	require.Equal(t, []string{"checkpoint-00000003.jsonl", "log-00000003.jsonl"}, stateFiles(t, dir))
	tagAll(t, c, ids[1:2], "round", "5")
	want := fullView(t, c)
	require.Contains(t, want["instance "+ids[1]], "round=5")
	require.Contains(t, want["instance "+ids[2]], "round=3")
	require.NoError(t, srv.Close())

	cfg.Addr = ""
	again := startServer(t, cfg)
	require.Equal(t, want, fullView(t, newClients(tenantConfig(t, again, acmeID))))
}

// Only the newest log can end in a torn line: one in an older log means the state directory was
// damaged, and loading it fails rather than dropping what follows.
func TestATornLineInAnOlderLogFailsTheLoad(t *testing.T) {
	dir := t.TempDir()
	const n = 1500
	cfg := cloudsim.Config{StateDir: dir, CheckpointEvery: n + 100, Accounts: []cloudsim.AccountConfig{acmeConfig(n)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	entered, release := holdCheckpoint(srv)
	tagAll(t, c, ids, "round", "1")
	<-entered
	crashDir := copyState(t, dir)
	close(release)
	require.NoError(t, srv.Close())

	tearLog(t, filepath.Join(crashDir, "log-00000001.jsonl"), ids[0])
	cfg.StateDir, cfg.Addr = crashDir, ""
	_, err = cloudsim.New(cfg)
	require.ErrorContains(t, err, "log-00000001.jsonl: truncated")
}

// By default (CheckpointEvery 0) a checkpoint is due once the logs hold CheckpointGrowth times
// as many records as the newest checkpoint has entities (and at least a minimum, lowered here
// from 200,000 so that a small world shows the rule): the logs may grow with the world instead
// of the whole world being written again after every fixed number of changes. A restart counts
// the loaded checkpoint's entities the same way.
func TestCheckpointsAreDueByTheWorldsSize(t *testing.T) {
	dir := t.TempDir()
	const n = 1500
	cfg := cloudsim.Config{StateDir: dir, Accounts: []cloudsim.AccountConfig{acmeConfig(n)}}
	srv, err := cloudsim.New(cfg)
	require.NoError(t, err)
	srv.Start()
	due, records := cloudsim.CheckpointDue(srv)
	require.Equal(t, 200000, due, "a fresh state directory's checkpoint is empty: the minimum counts")
	require.GreaterOrEqual(t, records, n, "the generated fleet is in the first log")
	cloudsim.SetCheckpointMinimum(srv, 100)
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)

	tagAll(t, c, ids, "round", "1") // the session made above already started the checkpoint
	cloudsim.WaitCheckpoint(srv)
	require.Equal(t, []string{"checkpoint-00000002.jsonl", "log-00000002.jsonl"}, stateFiles(t, dir))
	due, records = cloudsim.CheckpointDue(srv)
	g := cloudsim.CheckpointGrowth
	require.GreaterOrEqual(t, due, g*n, "CheckpointGrowth times the checkpoint's instances, accounts and sessions")
	require.LessOrEqual(t, due, g*(n+10))
	require.Equal(t, n, records, "round 1 went to the new log")

	round := 1
	for ; records+n < due; due, records = cloudsim.CheckpointDue(srv) {
		round++
		tagAll(t, c, ids, "round", strconv.Itoa(round)) // one record per instance
		cloudsim.WaitCheckpoint(srv)
		require.Equal(t, []string{"checkpoint-00000002.jsonl", "log-00000002.jsonl"}, stateFiles(t, dir),
			"%d records, %d due: no checkpoint yet", records+n, due)
	}
	require.GreaterOrEqual(t, round, g-1, "the logs grew to about CheckpointGrowth times the checkpoint")

	round++
	tagAll(t, c, ids, "round", strconv.Itoa(round)) // over due
	cloudsim.WaitCheckpoint(srv)
	require.Equal(t, []string{"checkpoint-00000003.jsonl", "log-00000003.jsonl"}, stateFiles(t, dir))
	want := fullView(t, c)
	require.Contains(t, want["instance "+ids[n-1]], "round="+strconv.Itoa(round))
	require.NoError(t, srv.Close())

	cfg.Addr = ""
	again := startServer(t, cfg)
	require.Equal(t, want, fullView(t, newClients(tenantConfig(t, again, acmeID))))
	cloudsim.SetCheckpointMinimum(again, 100)
	due, _ = cloudsim.CheckpointDue(again)
	require.GreaterOrEqual(t, due, g*n, "the loaded checkpoint's entities count")
}
