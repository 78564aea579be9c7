package scheduler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler"
)

// BenchmarkFiringTick measures a replica's firing tick over 100 tenants of 3 waves each (300
// waves, an embedded NATS). The waves are paused, so at their window the first tick decides
// all 300 occurrences (a KV create and an event each): reported as cold-ms. Every later tick
// finds them decided: the steady state between windows, reported per wave (ns/wave).
//
//	go test -run '^$' -bench BenchmarkFiringTick -benchtime 100x ./services/scheduler
func BenchmarkFiringTick(b *testing.B) {
	const tenants, waves = 100, 3
	n := testkit.StartNATS(b)
	nc := n.Connect(b)
	cloud := cloudtest.Start(b, cloudtest.Options{})
	clk := &clock{t: beforeCycle}
	svc, err := scheduler.New(scheduler.Config{FireInterval: -1}, scheduler.Deps{Fleet: cloud.Fleet, Store: store.NewMemory(), Clock: clk.now})
	require.NoError(b, err)
	conn, _ := stagetest.RunGRPCComponent(b, nc, svc)
	design := designv1.NewDesignServiceClient(conn)
	ctx := b.Context()
	for i := range tenants {
		tenant := fmt.Sprintf("t%03d", i)
		_, err := design.PutTenant(ctx, &designv1.PutTenantRequest{Tenant: tenant, Settings: &typesv1.Tenant{DisplayName: tenant}})
		require.NoError(b, err)
		for w := int32(1); w <= waves; w++ {
			_, err := design.PutWave(ctx, &designv1.PutWaveRequest{Tenant: tenant, Wave: w, Definition: &typesv1.Wave{Paused: true, Schedule: &typesv1.Schedule{
				WeekOfMonth: 2, DayOfWeek: "TUESDAY", OffsetDays: w, StartTime: "02:00", EndTime: "06:00", TimeZone: "Europe/Berlin",
			}}})
			require.NoError(b, err)
		}
	}
	require.Eventually(b, func() bool { return len(svc.View().Tenants()) == tenants }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(b, func() bool { return svc.Fire(ctx) == nil }, 30*time.Second, 10*time.Millisecond)
	clk.set(time.Date(2026, 12, 11, 12, 0, 0, 0, time.UTC)) // after every wave's window opened
	start := time.Now()
	require.NoError(b, svc.Fire(ctx))
	cold := time.Since(start)
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	s, err := js.Stream(ctx, events.StreamTenant)
	require.NoError(b, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("patch.*.run.skipped"))
	require.NoError(b, err)
	skipped := uint64(0)
	for _, c := range info.State.Subjects {
		skipped += c
	}
	require.EqualValues(b, tenants*waves, skipped, "the cold tick decided every occurrence")
	b.ResetTimer()
	for range b.N {
		if err := svc.Fire(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(tenants*waves), "ns/wave")
	b.ReportMetric(float64(cold.Milliseconds()), "cold-ms")
}
