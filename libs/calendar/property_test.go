package calendar_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/calendar"
)

// randomFreezes makes n freezes around 2027: one-off ranges and local rules, both policies.
func randomFreezes(rng *rand.Rand, n int, tz string) []calendar.Freeze {
	var out []calendar.Freeze
	for i := 0; i < n; i++ {
		f := calendar.Freeze{ID: fmt.Sprintf("f%d", i), Policy: calendar.PolicySkip}
		if rng.IntN(2) == 0 {
			f.Policy, f.DeferDays = calendar.PolicyDefer, 1+rng.IntN(10)
		}
		switch rng.IntN(3) {
		case 0:
			start := utc(2027, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), 15*rng.IntN(4))
			f.Start, f.End = start, start.Add(time.Duration(1+rng.IntN(96))*time.Hour)
		case 1:
			f.RRule = []string{"FREQ=WEEKLY;BYDAY=MO", "FREQ=WEEKLY;BYDAY=SA,SU", "FREQ=MONTHLY;BYMONTHDAY=1,15",
				"FREQ=MONTHLY;BYDAY=-1FR", "FREQ=DAILY;INTERVAL=9", "FREQ=YEARLY;BYMONTH=3,10;BYDAY=-1SU"}[rng.IntN(6)]
			f.DTStart = fmt.Sprintf("2026-%02d-%02dT%02d:%02d", 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), 30*rng.IntN(2))
			f.TimeZone, f.Duration = tz, time.Duration(1+rng.IntN(30))*time.Hour
			if rng.IntN(3) == 0 {
				f.ExDates = []string{"2027-06-07T" + f.DTStart[11:]}
			}
		default:
			f.RRule = "FREQ=YEARLY"
			f.DTStart = fmt.Sprintf("2025-%02d-%02d", 1+rng.IntN(12), 1+rng.IntN(28))
			f.TimeZone, f.Days = tz, 1+rng.IntN(3)
		}
		out = append(out, f)
	}
	return out
}

func TestFreezeRulesHoldForRandomSchedules(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 2027))
	zones := []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "Pacific/Chatham"}
	seen := map[calendar.Status]int{}
	stops := 0
	for i := 0; i < 150; i++ {
		tz := zones[rng.IntN(len(zones))]
		s := calendar.Schedule{WeekOfMonth: []int{1, 2, 3, 4, calendar.Last}[rng.IntN(5)], DayOfWeek: time.Weekday(rng.IntN(7)),
			OffsetDays: rng.IntN(61) - 30, Start: calendar.Clock{Hour: rng.IntN(24), Minute: 15 * rng.IntN(4)},
			End: calendar.Clock{Hour: rng.IntN(24), Minute: 30 * rng.IntN(2)}, TimeZone: tz}
		o := calendar.Options{Freezes: randomFreezes(rng, 1+rng.IntN(5), tz), Overrides: map[string]string{}}
		for k := 0; k < 2; k++ {
			o.SkipKeys = append(o.SkipKeys, fmt.Sprintf("2027-%02d", 1+rng.IntN(12)))
			o.Overrides[fmt.Sprintf("2027-%02d", 1+rng.IntN(12))] = "emergency"
		}
		from := utc(2027, 1, 1, 0, 0)
		got, err := calendar.Occurrences(s, o, from, 12)
		require.NoError(t, err)
		plain, err := calendar.Occurrences(s, calendar.Options{}, from.AddDate(0, 0, -40), 14)
		require.NoError(t, err)
		nominal := map[string]calendar.Occurrence{}
		for _, p := range plain {
			nominal[p.Key] = p
		}
		loc := zone(t, tz)
		for j, occ := range got {
			desc := fmt.Sprintf("schedule %+v options %+v occurrence %s", s, o, occ.Key)
			if j > 0 {
				require.True(t, occ.OriginalStart.After(got[j-1].OriginalStart), desc)
			}
			p, ok := nominal[occ.Key]
			require.True(t, ok, desc)
			require.Equal(t, p.Start, occ.OriginalStart, desc+": freezes do not move the nominal window")
			require.Equal(t, p.End, occ.OriginalEnd, desc)
			require.True(t, occ.End.After(from), desc)
			require.Equal(t, occ.End.Sub(occ.Start), occ.Duration, desc)
			byKey, err := calendar.ByKey(s, o, occ.Key)
			require.NoError(t, err)
			require.Equal(t, occ, byKey, desc)

			// What the freezes' own instances say.
			var overlapping, blockSkip, blockDefer []string
			minDefer := 0
			var stopAt time.Time
			busy := []calendar.Interval{}
			for _, f := range o.Freezes {
				in, err := f.Instances(occ.OriginalStart.AddDate(0, 0, -5), occ.OriginalStart.AddDate(0, 0, 15))
				require.NoError(t, err)
				busy = append(busy, in...)
				for _, x := range in {
					if !x.Start.Before(occ.OriginalEnd) || !x.End.After(occ.OriginalStart) {
						continue
					}
					if !slices.Contains(overlapping, f.ID) {
						overlapping = append(overlapping, f.ID)
					}
					switch {
					case x.Start.After(occ.OriginalStart):
						if stopAt.IsZero() || x.Start.Before(stopAt) {
							stopAt = x.Start
						}
					case f.Policy == calendar.PolicySkip:
						blockSkip = append(blockSkip, f.ID)
					default:
						blockDefer = append(blockDefer, f.ID)
						if minDefer == 0 || f.DeferDays < minDefer {
							minDefer = f.DeferDays
						}
					}
				}
			}
			require.Equal(t, overlapping, occ.Freezes, desc)
			_, overridden := o.Overrides[occ.Key]
			want := calendar.StatusScheduled
			switch {
			case slices.Contains(o.SkipKeys, occ.Key):
				want = calendar.StatusSkippedByRequest
			case overridden && len(overlapping) > 0:
				want = calendar.StatusOverridden
			case overridden:
			case len(blockSkip) > 0:
				want = calendar.StatusSkippedFrozen
			case len(blockDefer) > 0:
				want = calendar.StatusDeferred // or skipped, checked below
			}
			if want == calendar.StatusDeferred && occ.Status == calendar.StatusSkippedFrozen {
				require.Contains(t, occ.Reason, "no whole", desc)
				want = calendar.StatusSkippedFrozen
			}
			require.Equal(t, want, occ.Status, desc)
			seen[occ.Status]++
			switch occ.Status {
			case calendar.StatusDeferred:
				for _, x := range busy {
					require.False(t, x.Start.Before(occ.End) && x.End.After(occ.Start), desc+": a deferred window is free of freezes")
				}
				days := occ.Start.In(loc).YearDay() - occ.OriginalStart.In(loc).YearDay()
				if days < 0 {
					days += 365
				}
				require.True(t, days >= 1 && days <= minDefer, desc+": deferred %d days, at most %d", days, minDefer)
				if !strings.Contains(occ.Note, "start time does not exist") {
					require.Equal(t, s.Start.String(), occ.Start.In(loc).Format("15:04"), desc+": the same wall-clock start")
				}
				require.Zero(t, occ.DispatchStopAt, desc)
			case calendar.StatusScheduled:
				require.Equal(t, stopAt, occ.DispatchStopAt, desc)
				if !stopAt.IsZero() {
					stops++
				}
				require.Equal(t, occ.OriginalStart, occ.Start, desc)
			default:
				require.Zero(t, occ.DispatchStopAt, desc)
				require.Equal(t, occ.OriginalStart, occ.Start, desc)
				require.NotEmpty(t, occ.Reason, desc)
			}
		}
	}
	t.Logf("statuses %v, %d with DispatchStopAt", seen, stops)
	for _, st := range []calendar.Status{calendar.StatusScheduled, calendar.StatusDeferred, calendar.StatusSkippedFrozen,
		calendar.StatusOverridden, calendar.StatusSkippedByRequest} {
		require.Positive(t, seen[st], "the generator must reach %s", st)
	}
	require.Positive(t, stops)
}

func TestConcurrentCallersShareMemoizedFreezes(t *testing.T) {
	// The memo of compiled freezes and expanded months is shared; callers on many goroutines
	// (run with -race) get the same answers as one caller.
	now := utc(2027, 4, 20, 9, 0)
	waves, opts := fleetOfTenants(30, now)
	want := make([]calendar.Occurrence, len(waves))
	for i := range waves {
		occ, ok, err := calendar.Next(waves[i], opts[i], now)
		require.NoError(t, err)
		require.True(t, ok)
		want[i] = occ
	}
	calendar.ForgetCompiledFreezes()
	got := make([][]calendar.Occurrence, 4)
	var wg sync.WaitGroup
	for g := range got {
		got[g] = make([]calendar.Occurrence, len(waves))
		wg.Go(func() {
			for i := range waves {
				occ, _, err := calendar.Next(waves[i], opts[i], now)
				if err == nil {
					got[g][i] = occ
				}
			}
		})
	}
	wg.Wait()
	for g := range got {
		require.Equal(t, want, got[g])
	}
}
