package cloudsim_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
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

// BenchmarkWaveMemory measures cloudsim's live heap per instance after one wave as patchd runs
// it: a fleet (CLOUDSIM_MEM_INSTANCES, default 100,000) at zero latency, every instance
// snapshotted with the adapter's five tags (one CreateSnapshots each) and patched with an
// install list of eight patches (one SendCommand per 50 instances), every invocation read
// once (ListCommandInvocations per command). It reports the heap in use after a GC before the
// wave (the fleet) and after it (fleet, snapshots, commands), in MiB and bytes per instance;
// CLOUDSIM_MEM_PROFILE names a file for the heap profile after the wave.
//
//	go test -run '^$' -bench '^BenchmarkWaveMemory$' -benchtime 1x ./services/cloudsim
func BenchmarkWaveMemory(b *testing.B) {
	n := 100_000
	if v := os.Getenv("CLOUDSIM_MEM_INSTANCES"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err, "CLOUDSIM_MEM_INSTANCES")
	}
	for b.Loop() {
		srv, err := cloudsim.New(cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(n)}})
		require.NoError(b, err)
		srv.Start()
		fleetHeap := liveHeap()
		c := newClients(tenantConfig(b, srv, acmeID))
		ids := srv.InstanceIDs(acmeID, region)
		ctx := b.Context()

		_, err = c.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("lists")})
		require.NoError(b, err)
		var list bytes.Buffer
		list.WriteString("patches:\n")
		for i := range 8 {
			fmt.Fprintf(&list, "  - id: \"pkg-%d.x86_64\"\n", i)
		}
		_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("lists"), Key: aws.String("l.yaml"), Body: bytes.NewReader(list.Bytes())})
		require.NoError(b, err)

		start := time.Now()
		parallel(b, len(ids), func(i int) error {
			id := ids[i]
			_, err := c.ec2.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{
				InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)},
				Description:           aws.String("patchwave pre-patch snapshot run=run-1 instance=" + id),
				TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{
					{Key: aws.String("patchwave:tenant"), Value: aws.String("acme")},
					{Key: aws.String("patchwave:run"), Value: aws.String("run-1")},
					{Key: aws.String("patchwave:instance"), Value: aws.String(id)},
					{Key: aws.String("patchwave:snapshot-set"), Value: aws.String("snapset-" + id)},
					{Key: aws.String("patchwave:attempt"), Value: aws.String("0123456789abcdef")},
				}}},
			})
			if isCode(err, "IncorrectInstanceState") {
				return nil // a stopped instance
			}
			return err
		})
		batches := (len(ids) + 49) / 50
		commands := make([]string, batches)
		parallel(b, batches, func(i int) error {
			out, err := c.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"),
				InstanceIds: ids[i*50 : min(len(ids), (i+1)*50)], Comment: aws.String("patchwave run=run-1"),
				Parameters: map[string][]string{"Operation": {"Install"}, "RebootOption": {"NoReboot"},
					"InstallOverrideList": {"s3://lists/l.yaml"}}})
			if err == nil {
				commands[i] = aws.ToString(out.Command.CommandId)
			}
			return err
		})
		parallel(b, batches, func(i int) error {
			_, err := c.ssm.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{CommandId: aws.String(commands[i]), Details: true})
			return err
		})
		elapsed := time.Since(start)
		waveHeap := liveHeap()
		if path := os.Getenv("CLOUDSIM_MEM_PROFILE"); path != "" {
			f, err := os.Create(path)
			require.NoError(b, err)
			require.NoError(b, pprof.WriteHeapProfile(f))
			require.NoError(b, f.Close())
		}
		b.ReportMetric(float64(fleetHeap)/(1<<20), "fleet-MiB")
		b.ReportMetric(float64(waveHeap)/(1<<20), "wave-MiB")
		b.ReportMetric(float64(waveHeap)/float64(n), "B/instance")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "instances/s")
		runtime.KeepAlive(srv)
		require.NoError(b, srv.Close())
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// parallel calls fn for 0..n-1 from 32 goroutines and fails the benchmark on the first error.
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		b.Fatal(err)
	}
}
