package calendar

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/teambition/rrule-go"
)

// fullOverlapping is overlapping without the rebasing and the monthly form: the rule as
// written, expanded from its DTSTART.
func (c *cfreeze) fullOverlapping(from, to time.Time) []Interval {
	var out []Interval
	r, err := rrule.NewRRule(c.written)
	if err != nil {
		panic(err)
	}
	next := r.Iterator()
	for t, ok := next(); ok; t, ok = next() {
		if t.Unix() > to.Unix()+2*86400 {
			break
		}
		out = c.appendInstance(out, t.Unix(), from, to)
	}
	return out
}

func TestRebasedExpansionEqualsExpansionFromDTSTART(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5545, 7))
	days := []string{"MO", "TU", "WE", "TH", "FR", "SA", "SU"}
	randRule := func() string {
		freq := []string{"DAILY", "WEEKLY", "MONTHLY", "YEARLY", "YEARLY"}[rng.IntN(5)]
		parts := []string{"FREQ=" + freq}
		if rng.IntN(2) == 0 {
			parts = append(parts, fmt.Sprintf("INTERVAL=%d", 1+rng.IntN(4)))
		}
		if rng.IntN(3) == 0 {
			parts = append(parts, "WKST="+days[rng.IntN(7)])
		}
		switch rng.IntN(6) {
		case 0:
			parts = append(parts, "BYDAY="+days[rng.IntN(7)]+","+days[rng.IntN(7)])
		case 1:
			if freq == "MONTHLY" || freq == "YEARLY" {
				parts = append(parts, fmt.Sprintf("BYDAY=%d%s", []int{1, 2, -1}[rng.IntN(3)], days[rng.IntN(7)]))
			}
		case 2:
			parts = append(parts, fmt.Sprintf("BYMONTHDAY=%d,%d", 1+rng.IntN(28), -1-rng.IntN(3)))
		case 3:
			parts = append(parts, fmt.Sprintf("BYMONTH=%d,%d", 1+rng.IntN(12), 1+rng.IntN(12)))
			if rng.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf("BYDAY=%d%s", []int{1, 2, -1}[rng.IntN(3)], days[rng.IntN(7)]))
			}
		case 4:
			parts = append(parts, "BYDAY=MO,TU,WE,TH,FR", fmt.Sprintf("BYSETPOS=%d", []int{1, -1, 2}[rng.IntN(3)]))
		}
		if rng.IntN(3) == 0 {
			parts = append(parts, fmt.Sprintf("BYHOUR=%d,%d", rng.IntN(24), rng.IntN(24)))
		}
		if rng.IntN(8) == 0 {
			parts = append(parts, "UNTIL=20311231T000000Z")
		}
		return strings.Join(parts, ";")
	}
	zones := []string{"Europe/Berlin", "America/Santiago", "Pacific/Chatham", "UTC"}
	compared, nonEmpty := 0, 0
	for i := 0; i < 150; i++ {
		dt := time.Date(2021+rng.IntN(5), time.Month(1+rng.IntN(12)), 1+rng.IntN(31), rng.IntN(24), rng.IntN(4)*15, 0, 0, time.UTC)
		f := Freeze{ID: "f", Policy: PolicySkip, RRule: randRule(), DTStart: dt.Format("2006-01-02T15:04"),
			TimeZone: zones[rng.IntN(len(zones))], Days: rng.IntN(3), Duration: time.Duration(1+rng.IntN(20)) * time.Hour}
		c, err := f.compile("freeze.")
		require.NoError(t, err, f.RRule)
		for j := 0; j < 4; j++ {
			from := time.Date(2026+rng.IntN(3), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), 0, 0, 0, time.UTC)
			to := from.Add(time.Duration(1+rng.IntN(40*24)) * time.Hour)
			want := c.fullOverlapping(from, to)
			got := c.overlapping(from, to, nil)
			require.Equal(t, want, got, "%s from %s (%s) over %s..%s", f.RRule, f.DTStart, f.TimeZone, from, to)
			compared++
			if len(got) > 0 {
				nonEmpty++
			}
		}
	}
	t.Logf("%d windows compared, %d with instances", compared, nonEmpty)
	require.Greater(t, nonEmpty, compared/3)
}

func TestResolveWallIsTheFirstInstantOrTheGapRule(t *testing.T) {
	t.Parallel()
	// For every five minutes of two years, the resolved instant reads back as the wall clock, unless
	// the wall clock is in a gap, where it is exactly the gap's size later.
	for _, name := range []string{"Europe/Berlin", "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago"} {
		loc, err := loadLocation(name)
		require.NoError(t, err)
		start := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
		gaps, twice := 0, 0
		for w := start; w < start+2*366*86400; w += 5 * 60 {
			r := resolveWall(loc, w)
			back := wallOf(r.At, loc)
			switch r.Kind {
			case wallNormal:
				require.Equal(t, w, back, "%s %s", name, civilOf(w))
			case wallTwice:
				require.Equal(t, w, back)
				twice++
			case wallGap:
				require.Greater(t, back, w)
				require.LessOrEqual(t, back-w, int64(3600))
				gaps++
			}
			if r.Kind == wallTwice {
				// No earlier instant has this wall clock.
				for d := int64(60); d <= 3600; d += 60 {
					require.NotEqual(t, w, wallOf(time.Unix(r.At.Unix()-d, 0), loc))
				}
			}
		}
		require.Positive(t, gaps, name)
		require.Positive(t, twice, name)
	}
}
