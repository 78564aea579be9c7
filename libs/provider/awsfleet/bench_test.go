package awsfleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/services/cloudsim"
)

// BenchmarkAdapter measures AWS calls per second through the adapter against an in-process
// cloudsim of 5,000 instances (client, emulator and SDK share the machine's cores, so the
// figures are a floor for the adapter and a ceiling for the emulator). Run:
//
//	cd libs && go test -run '^$' -bench Adapter -benchtime 3s ./provider/awsfleet/
//
// Each sub-benchmark reports calls/s (AWS API calls, from the adapter's own metrics) and
// instances/s where the call is about instances.
func BenchmarkAdapter(b *testing.B) {
	reg := prometheus.NewRegistry()
	env := cloudtest.Start(b, cloudtest.Options{
		Accounts: []cloudsim.AccountConfig{func() cloudsim.AccountConfig {
			a := cloudtest.DefaultAccount()
			a.Instances = 5000
			return a
		}()},
		Fleet: func(c *awsfleet.Config) { c.Registerer = reg; c.Concurrency = 32 },
	})
	tg := env.Target("acme")
	insts := env.Discover(b, provider.DiscoverQuery{Tenant: "acme"})
	require.NotEmpty(b, insts)
	ids100 := ids(insts[:100])

	run := func(b *testing.B, perOp int, op func(ctx context.Context) error) {
		before := totalCalls(b, reg)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		})
		secs := b.Elapsed().Seconds()
		b.ReportMetric(float64(totalCalls(b, reg)-before)/secs, "calls/s")
		if perOp > 0 {
			b.ReportMetric(float64(perOp*b.N)/secs, "instances/s")
		}
	}
	b.Run("CheckHealth/100", func(b *testing.B) {
		run(b, 100, func(ctx context.Context) error {
			_, err := env.Fleet.CheckHealth(ctx, tg, ids100)
			return err
		})
	})
	b.Run("DiscoverInstances/5000", func(b *testing.B) {
		run(b, len(insts), func(ctx context.Context) error {
			return env.Fleet.DiscoverInstances(ctx, provider.DiscoverQuery{Tenant: "acme"}, func([]provider.Instance) error { return nil })
		})
	})
	var mu sync.Mutex
	n := 0
	b.Run("CreateSnapshots/50", func(b *testing.B) {
		run(b, 50, func(ctx context.Context) error {
			mu.Lock()
			n++
			run := fmt.Sprintf("bench-%d", n)
			mu.Unlock()
			reqs := make([]provider.SnapshotRequest, 50)
			for i := range reqs {
				reqs[i] = provider.SnapshotRequest{Tenant: "acme", RunID: run, InstanceID: insts[i].ID}
			}
			_, err := env.Fleet.CreateSnapshots(ctx, tg, reqs)
			return err
		})
	})
	// GetSnapshots/50 is the tracker's poll: 50 sets of one run, read by their set tags.
	polled := make([]provider.SnapshotRequest, 50)
	for i := range polled {
		polled[i] = provider.SnapshotRequest{Tenant: "acme", RunID: "bench-poll", InstanceID: insts[i].ID}
	}
	created, err := env.Fleet.CreateSnapshots(context.Background(), tg, polled)
	require.NoError(b, err)
	setIDs := make([]string, len(created))
	for i, r := range created {
		require.NoError(b, r.Err)
		setIDs[i] = r.Snapshot.ID
	}
	b.Run("GetSnapshots/50", func(b *testing.B) {
		run(b, 50, func(ctx context.Context) error {
			got, err := env.Fleet.GetSnapshots(ctx, tg, setIDs)
			if err == nil && len(got) != len(setIDs) {
				err = fmt.Errorf("read %d of %d sets", len(got), len(setIDs))
			}
			return err
		})
	})
	b.Run("Install/50", func(b *testing.B) {
		run(b, 50, func(ctx context.Context) error {
			mu.Lock()
			n++
			run := fmt.Sprintf("bench-%d", n)
			mu.Unlock()
			reqs := make([]provider.InstallRequest, 50)
			for i := range reqs {
				reqs[i] = installReq(run, insts[i].ID, "openssl")
			}
			res, err := env.Fleet.Install(ctx, tg, reqs)
			if err == nil && res[0].Err != nil {
				err = res[0].Err
			}
			return err
		})
	})
}

func totalCalls(b *testing.B, reg *prometheus.Registry) int {
	b.Helper()
	mfs, err := reg.Gather()
	require.NoError(b, err)
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "patchwave_aws_calls_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return int(total)
}
