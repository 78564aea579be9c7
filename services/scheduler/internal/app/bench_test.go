package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/app"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// BenchmarkControllerRun takes a whole run through the controller and the runs projection on
// the in-memory store, without the stages: every released job ends at once, and the
// controller releases the next ones as the limit allows. It reports the controller's cost per
// job, with and without a limit of 1,000 in flight:
//
//	cd services/scheduler && go test -run '^$' -bench ControllerRun -benchtime 1x ./internal/app/
func BenchmarkControllerRun(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		for _, limit := range []int32{0, 1000} {
			b.Run(fmt.Sprintf("instances=%d/max_in_flight=%d", n, limit), func(b *testing.B) {
				for range b.N {
					benchRun(b, n, limit)
				}
			})
		}
	}
}

func benchRun(b *testing.B, n int, limit int32) {
	b.StopTimer()
	f := newFixture(b, store.NewMemory())
	p := &typesv1.RolloutPolicy{ErrorBudget: count(0), MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 100}}}
	if limit > 0 {
		p.MaxConcurrency = count(limit)
	}
	f.design.policies[1] = p
	f.readyB(b)
	members := make([]*typesv1.Member, n)
	for i := range members {
		members[i] = &typesv1.Member{InstanceId: fmt.Sprintf("i-%017x", i), Location: &typesv1.Location{Account: "111111111111", Region: "eu-central-1"},
			OsFamily: "amazon-linux-2023", Status: typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE}
	}
	ctx := b.Context()
	b.StartTimer()
	start := time.Now()
	run, err := f.app.Start(ctx, app.StartSpec{Tenant: "acme", Wave: 1, Pins: []domain.Pin{{OSFamily: "amazon-linux-2023", BaselineID: "b1", Version: 1}}, Members: members})
	require.NoError(b, err)
	f.feedB(b)
	steps, maxInFlight := 0, 0
	for {
		f.app.StepOpenRuns(ctx)
		steps++
		evs := f.feedB(b)
		if len(payloads[*eventsv1.RunCompleted](evs)) > 0 {
			break
		}
		jobs := payloads[*eventsv1.JobRequested](evs)
		r, err := f.app.GetRun(ctx, domain.RunRef{Tenant: "acme", RunID: run.ID})
		require.NoError(b, err)
		maxInFlight = max(maxInFlight, r.InFlight())
		for _, j := range jobs {
			f.seq++
			ev := outcome(b, run.ID, j.GetInstanceId())
			ev.Sequence = f.seq
			require.NoError(b, f.app.ApplyRun(ctx, ev, true))
		}
		require.NotEmpty(b, jobs, "a step of a run with jobs left releases some")
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if limit > 0 {
		require.LessOrEqual(b, maxInFlight, int(limit))
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/job")
	b.ReportMetric(float64(steps), "steps")
	b.ReportMetric(float64(maxInFlight), "max_in_flight")
}
