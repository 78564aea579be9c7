package calendar_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/calendar"
)

// fleetOfTenants builds n tenants, each with three waves and five freezes: two one-off
// (a release night and a two-week year-end range) and three recurring (a weekly weekend,
// a monthly month-end close with a defer policy, and a yearly holiday dating from 2020).
func fleetOfTenants(n int, now time.Time) (waves []calendar.Schedule, opts []calendar.Options) {
	rng := rand.New(rand.NewPCG(10000, 3))
	zones := []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "Pacific/Chatham"}
	for i := 0; i < n; i++ {
		tz := zones[i%len(zones)]
		day := now.AddDate(0, 0, rng.IntN(60))
		id := func(name string) string { return fmt.Sprintf("t%05d-%s", i, name) } // every tenant's freezes are its own
		freezes := []calendar.Freeze{
			{ID: id("release"), Policy: calendar.PolicySkip, Start: day, End: day.Add(6 * time.Hour)},
			{ID: id("year-end"), Policy: calendar.PolicyDefer, DeferDays: 10, Start: time.Date(now.Year(), 12, 18, 0, 0, 0, 0, time.UTC),
				End: time.Date(now.Year()+1, 1, 2, 0, 0, 0, 0, time.UTC)},
			{ID: id("weekend"), Policy: calendar.PolicyDefer, DeferDays: 3, RRule: "FREQ=WEEKLY;BYDAY=SA", DTStart: "2024-01-06T00:00",
				TimeZone: tz, Days: 2},
			{ID: id("month-end"), Policy: calendar.PolicySkip, RRule: "FREQ=MONTHLY;BYMONTHDAY=-1", DTStart: "2023-01-31T18:00",
				TimeZone: tz, Duration: 30 * time.Hour},
			{ID: id("holiday"), Policy: calendar.PolicyDefer, DeferDays: 7, RRule: "FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1", DTStart: "2020-05-01",
				TimeZone: tz, Days: 1, ExDates: []string{"2026-05-01"}},
		}
		o := calendar.Options{Freezes: freezes}
		for w := 1; w <= 3; w++ {
			waves = append(waves, calendar.Schedule{
				WeekOfMonth: []int{1, 2, 3, 4, calendar.Last}[rng.IntN(5)], DayOfWeek: time.Weekday(rng.IntN(7)),
				OffsetDays: rng.IntN(21) - 10, Start: calendar.Clock{Hour: rng.IntN(24), Minute: 15 * rng.IntN(4)},
				End: calendar.Clock{Hour: rng.IntN(24)}, TimeZone: tz,
			})
			opts = append(opts, o)
		}
	}
	return waves, opts
}

// BenchmarkNextOccurrence10kTenants asks for the next occurrence of 10,000 tenants x 3 waves,
// each tenant with 5 freezes of its own, on two goroutines (the machine's two cores), and
// reports the time for the whole fleet: "cold" parses every freeze's rule again in each pass
// (as after a restart), "warm" finds them in the memo of compiled freezes (every later pass).
func BenchmarkNextOccurrence10kTenants(b *testing.B) {
	now := utc(2027, 4, 20, 9, 0)
	waves, opts := fleetOfTenants(10000, now)
	b.Run("cold", func(b *testing.B) { benchmarkFleet(b, now, waves, opts, true) })
	b.Run("warm", func(b *testing.B) { benchmarkFleet(b, now, waves, opts, false) })
}

func benchmarkFleet(b *testing.B, now time.Time, waves []calendar.Schedule, opts []calendar.Options, cold bool) {
	const workers = 2
	var statuses sync.Map
	calendar.ForgetCompiledFreezes()
	for b.Loop() {
		if cold {
			calendar.ForgetCompiledFreezes()
		}
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(waves); i += workers {
					occ, ok, err := calendar.Next(waves[i], opts[i], now)
					if err != nil || !ok {
						panic(fmt.Sprintf("wave %d: %v %v", i, ok, err))
					}
					statuses.Store(i, occ.Status)
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/30k-waves")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(waves)), "ns/wave")
	counts := map[calendar.Status]int{}
	statuses.Range(func(_, v any) bool { counts[v.(calendar.Status)]++; return true })
	b.Logf("%d waves: %v", len(waves), counts)
}

func TestBenchmarkFleetIsValid(t *testing.T) {
	now := utc(2027, 4, 20, 9, 0)
	waves, opts := fleetOfTenants(20, now)
	seen := map[calendar.Status]bool{}
	for i := range waves {
		occ, err := calendar.Occurrences(waves[i], opts[i], now, 12)
		require.NoError(t, err)
		for _, o := range occ {
			seen[o.Status] = true
		}
	}
	require.True(t, seen[calendar.StatusScheduled] && seen[calendar.StatusDeferred] && seen[calendar.StatusSkippedFrozen],
		"the benchmark's freezes schedule, defer and skip: %v", seen)
}
