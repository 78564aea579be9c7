package cloudsim_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

// BenchmarkCheckpointCallWait measures how long cheap calls wait while the state store writes
// a checkpoint of a 100,000-instance world. Two probes run in a loop: a read (DescribeInstances
// of one instance) and a change (CreateTags on one instance). The fleet's first flush logs every
// instance, so the changes cross CheckpointEvery (n+100) after about a hundred calls; the probes
// go on until the next generation's checkpoint is in place and the older one removed. It
// reports the longest and the 99th percentile latency of each probe, and the time from the
// start to the old generation's removal. It uses only the package's API, so that the same file
// measures any version. Run it with -benchtime=1x.
func BenchmarkCheckpointCallWait(b *testing.B) {
	const n = 100_000
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		cfg := cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(n)}, StateDir: dir, CheckpointEvery: n + 100,
			Timing: cloudsim.Timing{Snapshot: time.Minute, Command: time.Minute}}
		srv, err := cloudsim.New(cfg)
		require.NoError(b, err)
		srv.Start()
		c := newClients(tenantConfig(b, srv, acmeID))
		ids := srv.InstanceIDs(acmeID, region)
		b.StartTimer()

		start := time.Now()
		var stop atomic.Bool
		var reads, writes []time.Duration
		var wg sync.WaitGroup
		wg.Go(func() {
			in := &ec2.DescribeInstancesInput{InstanceIds: ids[:1]}
			for !stop.Load() {
				t := time.Now()
				if _, err := c.ec2.DescribeInstances(b.Context(), in); err != nil {
					b.Error(err)
					return
				}
				reads = append(reads, time.Since(t))
			}
		})
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				t := time.Now()
				if _, err := c.ec2.CreateTags(b.Context(), &ec2.CreateTagsInput{Resources: ids[n-1:],
					Tags: []ec2types.Tag{{Key: aws.String("probe"), Value: aws.String(strconv.Itoa(i))}}}); err != nil {
					b.Error(err)
					return
				}
				writes = append(writes, time.Since(t))
			}
		})
		for !checkpointed(b, dir) {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		stop.Store(true)
		wg.Wait()
		b.StopTimer()
		require.NoError(b, srv.Close())
		require.NotEmpty(b, reads)
		require.NotEmpty(b, writes)
		for _, p := range []struct {
			name string
			lat  []time.Duration
		}{{"read", reads}, {"write", writes}} {
			slices.Sort(p.lat)
			b.ReportMetric(float64(p.lat[len(p.lat)-1])/1e6, p.name+"-max-ms")
			b.ReportMetric(float64(p.lat[len(p.lat)*99/100])/1e6, p.name+"-p99-ms")
		}
		b.ReportMetric(took.Seconds(), "checkpoint-s")
		b.StartTimer()
	}
}

// checkpointed tells whether generation 2's checkpoint is complete and generation 1's files
// are gone.
func checkpointed(b *testing.B, dir string) bool {
	b.Helper()
	if _, err := os.Stat(filepath.Join(dir, "checkpoint-00000002.jsonl")); err != nil {
		return false
	}
	old, err := filepath.Glob(filepath.Join(dir, "*-00000001.jsonl"))
	require.NoError(b, err)
	return len(old) == 0
}
