package awsfleet_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/services/cloudsim"
)

// BenchmarkDiscover walks a whole fleet with DiscoverInstances against an in-process cloudsim
// (AWSFLEET_DISCOVER_INSTANCES instances, default 10,000; the adapter's concurrency 64 as in
// patchd) and reports, per walk, the seconds until the first page reached the caller and until
// the last, the AWS calls, and per instance the calls, allocations and CPU (client and
// emulator together: they share the process). Run:
//
//	cd libs && AWSFLEET_DISCOVER_INSTANCES=100000 go test -run '^$' -bench '^BenchmarkDiscover$' -benchtime 3x -benchmem ./provider/awsfleet/
func BenchmarkDiscover(b *testing.B) {
	n := 10000
	if v := os.Getenv("AWSFLEET_DISCOVER_INSTANCES"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err, "AWSFLEET_DISCOVER_INSTANCES")
	}
	reg := prometheus.NewRegistry()
	env := cloudtest.Start(b, cloudtest.Options{
		Accounts: []cloudsim.AccountConfig{func() cloudsim.AccountConfig {
			a := cloudtest.DefaultAccount()
			a.Instances = n
			return a
		}()},
		Fleet: func(c *awsfleet.Config) { c.Registerer = reg; c.Concurrency = 64 },
	})
	q := provider.DiscoverQuery{Tenant: "acme", IncludeStopped: true}
	// One walk first: credentials, connections.
	require.NoError(b, env.Fleet.DiscoverInstances(context.Background(), q, func([]provider.Instance) error { return nil }))
	var first, last time.Duration
	found := 0
	before := totalCalls(b, reg)
	cpu0 := cpuSeconds()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		got := 0
		err := env.Fleet.DiscoverInstances(context.Background(), q, func(page []provider.Instance) error {
			if got == 0 {
				first += time.Since(start)
			}
			got += len(page)
			return nil
		})
		require.NoError(b, err)
		last += time.Since(start)
		found = got
	}
	b.StopTimer()
	require.Equal(b, n, found, "every instance found")
	calls := float64(totalCalls(b, reg) - before)
	ops := float64(b.N)
	b.ReportMetric(first.Seconds()/ops, "s-first-page")
	b.ReportMetric(last.Seconds()/ops, "s-walk")
	b.ReportMetric(calls/ops, "calls/op")
	b.ReportMetric(calls/ops/float64(n), "calls/instance")
	b.ReportMetric((cpuSeconds()-cpu0)/ops/float64(n)*1e6, "cpu-us/instance")
}

// cpuSeconds is the process's user and system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
