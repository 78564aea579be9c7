package calendar_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/teambition/rrule-go"

	"github.com/patchwave/patchwave/libs/calendar"
)

// The oracle computes a schedule's windows another way, sharing no code with the package:
// the anchor dates come from an RFC 5545 rule (FREQ=MONTHLY;BYDAY=2TU or -1TU) expanded by
// rrule-go, the offset is added with time.AddDate, and each wall-clock time is resolved by
// scanning the zone minute by minute.

// oracleZone knows the range of a zone's UTC offsets, found by sampling it hour by hour.
type oracleZone struct {
	loc            *time.Location
	minOff, maxOff time.Duration
}

func newOracleZone(t *testing.T, name string, from, to time.Time) oracleZone {
	z := oracleZone{loc: zone(t, name), minOff: 24 * time.Hour, maxOff: -24 * time.Hour}
	for at := from; at.Before(to); at = at.Add(time.Hour) {
		_, off := at.In(z.loc).Zone()
		d := time.Duration(off) * time.Second
		z.minOff, z.maxOff = min(z.minOff, d), max(z.maxOff, d)
	}
	return z
}

// wall is the wall clock of instant at in the zone, as a zone-less time.
func (z oracleZone) wall(at time.Time) time.Time {
	l := at.In(z.loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
}

// resolve is RFC 5545's reading of wall-clock time w: the first instant whose wall clock is w;
// if there is none (a gap), w read with the offset in force just before the wall clock jumps
// over it.
func (z oracleZone) resolve(w time.Time) time.Time {
	lo := w.Add(-z.maxOff - time.Hour)
	hi := w.Add(-z.minOff + time.Hour)
	for at := lo; !at.After(hi); at = at.Add(time.Minute) {
		if z.wall(at).Equal(w) {
			return at
		}
	}
	for at := lo; !at.After(hi); at = at.Add(time.Minute) {
		if z.wall(at.Add(time.Minute)).After(w) {
			_, off := at.In(z.loc).Zone()
			return w.Add(-time.Duration(off) * time.Second)
		}
	}
	panic(fmt.Sprintf("oracle: %s cannot be placed in %s", w, z.loc))
}

// oracleWindow is one expected window.
type oracleWindow struct {
	key        string
	start, end time.Time
}

// oracleWindows lists n windows of s, anchored from the month of first on.
func oracleWindows(t *testing.T, z oracleZone, s calendar.Schedule, first time.Time, n int) []oracleWindow {
	byday := fmt.Sprintf("%d%s", s.WeekOfMonth, []string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}[s.DayOfWeek])
	rule, err := rrule.StrToRRule(fmt.Sprintf("FREQ=MONTHLY;BYDAY=%s;COUNT=%d", byday, n))
	require.NoError(t, err)
	rule.DTStart(time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC))
	var out []oracleWindow
	for _, anchor := range rule.All() {
		day := anchor.AddDate(0, 0, s.OffsetDays)
		start := time.Date(day.Year(), day.Month(), day.Day(), s.Start.Hour, s.Start.Minute, 0, 0, time.UTC)
		end := time.Date(day.Year(), day.Month(), day.Day(), s.End.Hour, s.End.Minute, 0, 0, time.UTC)
		if !end.After(start) {
			end = end.AddDate(0, 0, 1)
		}
		out = append(out, oracleWindow{key: anchor.Format("2006-01"), start: z.resolve(start), end: z.resolve(end)})
	}
	return out
}

func TestOccurrencesMatchAnIndependentRFC5545Oracle(t *testing.T) {
	t.Parallel()
	zones := []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
		"Asia/Kolkata", "Pacific/Chatham", "Europe/London", "America/Sao_Paulo", "UTC"}
	from, to := utc(2025, 10, 1, 0, 0), utc(2031, 3, 1, 0, 0)
	oz := map[string]oracleZone{}
	for _, name := range zones {
		oz[name] = newOracleZone(t, name, from.AddDate(0, -3, 0), to.AddDate(0, 3, 0))
	}
	rng := rand.New(rand.NewPCG(2027, 1))
	// Times near the transitions of these zones are the interesting ones.
	hours := []int{0, 1, 2, 3, 4, 22, 23}
	// The (week, day) of each zone's transitions, to aim half of the schedules at them.
	nights := map[string][][2]int{
		"Europe/Berlin": {{calendar.Last, 0}}, "Europe/London": {{calendar.Last, 0}},
		"America/New_York": {{2, 0}, {1, 0}}, "Australia/Lord_Howe": {{1, 0}},
		"America/Santiago": {{1, 0}, {1, 6}}, "Pacific/Chatham": {{1, 0}, {calendar.Last, 0}},
	}
	const schedules, months = 200, 60
	checked, changed := 0, 0
	for i := 0; i < schedules; i++ {
		s := calendar.Schedule{
			WeekOfMonth: []int{1, 2, 3, 4, calendar.Last}[rng.IntN(5)],
			DayOfWeek:   time.Weekday(rng.IntN(7)),
			TimeZone:    zones[rng.IntN(len(zones))],
		}
		if n := nights[s.TimeZone]; len(n) > 0 && rng.IntN(2) == 0 {
			night := n[rng.IntN(len(n))]
			s.WeekOfMonth, s.DayOfWeek = night[0], time.Weekday(night[1])
		} else if rng.IntN(2) == 0 {
			s.OffsetDays = rng.IntN(61) - 30
		}
		pick := func() calendar.Clock {
			if rng.IntN(3) == 0 {
				return calendar.Clock{Hour: rng.IntN(24), Minute: rng.IntN(60)}
			}
			return calendar.Clock{Hour: hours[rng.IntN(len(hours))], Minute: []int{0, 15, 30, 45}[rng.IntN(4)]}
		}
		s.Start, s.End = pick(), pick()
		require.NoError(t, s.Validate())

		want := oracleWindows(t, oz[s.TimeZone], s, from, months)
		got, err := calendar.Occurrences(s, calendar.Options{}, want[0].start.Add(-time.Minute), months)
		require.NoError(t, err)
		require.Len(t, got, months)
		for j, w := range want {
			g := got[j]
			desc := fmt.Sprintf("%+v occurrence %s", s, w.key)
			require.Equal(t, w.key, g.Key, desc)
			require.Equal(t, w.start, g.Start, desc+" start (oracle %s, got %s)", w.start.In(oz[s.TimeZone].loc), g.Start.In(oz[s.TimeZone].loc))
			require.Equal(t, w.end, g.End, desc+" end (oracle %s, got %s)", w.end.In(oz[s.TimeZone].loc), g.End.In(oz[s.TimeZone].loc))
			require.Equal(t, g.End.Sub(g.Start), g.Duration, desc)
			checked++
			if g.Duration != g.NominalDuration || g.Note != "" {
				require.NotEmpty(t, g.Note, desc+": a window changed by DST says so")
				changed++
			}
		}
	}
	t.Logf("%d occurrences checked minute for minute, %d of them changed by DST", checked, changed)
	require.Greater(t, changed, 100, "the random schedules must hit DST nights")
}
