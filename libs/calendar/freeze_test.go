package calendar_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/calendar"
)

// oneOff is a one-off freeze.
func oneOff(id string, p calendar.Policy, days int, start, end time.Time) calendar.Freeze {
	return calendar.Freeze{ID: id, Policy: p, DeferDays: days, Start: start, End: end}
}

func TestFreezesApplyToOccurrences(t *testing.T) {
	// January 2027's Patch Tuesday window: 12 January 02:00-06:00 CET, 01:00-05:00 UTC.
	winStart, winEnd := utc(2027, 1, 12, 1, 0), utc(2027, 1, 12, 5, 0)
	skip, deferral := calendar.PolicySkip, calendar.PolicyDefer
	for _, tc := range []struct {
		name        string
		opts        calendar.Options
		status      calendar.Status
		start, end  time.Time // the window to run in; zero: the nominal one
		stopAt      time.Time
		freezes     []string
		reason      string
		nextMonthOK bool // February's occurrence is untouched
	}{
		{name: "no freeze: scheduled", status: calendar.StatusScheduled, nextMonthOK: true},
		{name: "a skip freeze around the start skips it",
			opts:   calendar.Options{Freezes: []calendar.Freeze{oneOff("jan", skip, 0, utc(2027, 1, 11, 0, 0), utc(2027, 1, 13, 0, 0))}},
			status: calendar.StatusSkippedFrozen, freezes: []string{"jan"}, reason: `starts in freeze "jan" (policy skip)`, nextMonthOK: true},
		{name: "a freeze that starts exactly at the window's start blocks it",
			opts:   calendar.Options{Freezes: []calendar.Freeze{oneOff("at", skip, 0, winStart, winStart.Add(time.Minute))}},
			status: calendar.StatusSkippedFrozen, freezes: []string{"at"}},
		{name: "a freeze that ends exactly at the window's start does not apply",
			opts:   calendar.Options{Freezes: []calendar.Freeze{oneOff("before", skip, 0, winStart.Add(-time.Hour), winStart)}},
			status: calendar.StatusScheduled},
		{name: "a freeze that starts exactly at the window's end does not apply",
			opts:   calendar.Options{Freezes: []calendar.Freeze{oneOff("after", skip, 0, winEnd, winEnd.Add(time.Hour))}},
			status: calendar.StatusScheduled},
		{name: "a freeze that starts mid-window stops dispatch at its start",
			opts:   calendar.Options{Freezes: []calendar.Freeze{oneOff("mid", skip, 0, utc(2027, 1, 12, 3, 0), utc(2027, 1, 13, 0, 0))}},
			status: calendar.StatusScheduled, stopAt: utc(2027, 1, 12, 3, 0), freezes: []string{"mid"}, reason: `freeze "mid" starts at 2027-01-12 04:00 CET`},
		{name: "of two freezes starting mid-window the earlier stops dispatch",
			opts: calendar.Options{Freezes: []calendar.Freeze{
				oneOff("late", skip, 0, utc(2027, 1, 12, 4, 0), utc(2027, 1, 13, 0, 0)),
				oneOff("early", deferral, 2, utc(2027, 1, 12, 2, 30), utc(2027, 1, 12, 3, 0))}},
			status: calendar.StatusScheduled, stopAt: utc(2027, 1, 12, 2, 30), freezes: []string{"late", "early"}},
		{name: "a defer freeze moves it to the same time on the next free day",
			opts:   calendar.Options{Freezes: []calendar.Freeze{oneOff("tue", deferral, 3, utc(2027, 1, 11, 23, 0), utc(2027, 1, 12, 23, 0))}},
			status: calendar.StatusDeferred, start: utc(2027, 1, 13, 1, 0), end: utc(2027, 1, 13, 5, 0), freezes: []string{"tue"},
			reason: `deferred by 1 day(s) from 2027-01-12 02:00 CET: the window starts in freeze "tue" (policy defer)`, nextMonthOK: true},
		{name: "a deferred window must be wholly outside every freeze",
			opts: calendar.Options{Freezes: []calendar.Freeze{
				oneOff("tue", deferral, 3, utc(2027, 1, 11, 23, 0), utc(2027, 1, 12, 23, 0)),
				oneOff("wed-blip", skip, 0, utc(2027, 1, 13, 4, 0), utc(2027, 1, 13, 4, 30))}},
			status: calendar.StatusDeferred, start: utc(2027, 1, 14, 1, 0), end: utc(2027, 1, 14, 5, 0), freezes: []string{"tue"},
			reason: "deferred by 2 day(s)"},
		{name: "a defer freeze longer than its defer days skips it and says why",
			opts:   calendar.Options{Freezes: []calendar.Freeze{oneOff("long", deferral, 2, utc(2027, 1, 11, 0, 0), utc(2027, 1, 14, 12, 0))}},
			status: calendar.StatusSkippedFrozen, freezes: []string{"long"},
			reason: `the window starts in freeze "long" (policy defer) and no whole 4h window at 02:00 is free of freezes in the 2 day(s) after`},
		{name: "skip beats defer when both hold the start, and both are named",
			opts: calendar.Options{Freezes: []calendar.Freeze{
				oneOff("d", deferral, 5, utc(2027, 1, 12, 0, 0), utc(2027, 1, 12, 6, 0)),
				oneOff("s", skip, 0, utc(2027, 1, 12, 0, 30), utc(2027, 1, 12, 2, 0))}},
			status: calendar.StatusSkippedFrozen, freezes: []string{"d", "s"}, reason: `freeze "s" (policy skip)`},
		{name: "of two defer freezes the fewer defer days win",
			opts: calendar.Options{Freezes: []calendar.Freeze{
				oneOff("d5", deferral, 5, utc(2027, 1, 12, 0, 0), utc(2027, 1, 13, 6, 0)),
				oneOff("d1", deferral, 1, utc(2027, 1, 12, 0, 0), utc(2027, 1, 12, 6, 0))}},
			status: calendar.StatusSkippedFrozen, freezes: []string{"d5", "d1"}, reason: "in the 1 day(s) after"},
		{name: "an override ignores every freeze and keeps the nominal window",
			opts: calendar.Options{
				Overrides: map[string]string{"2027-01": "CVE-2027-0001 exploited in the wild (CHG-42)"},
				Freezes: []calendar.Freeze{
					oneOff("s", skip, 0, utc(2027, 1, 12, 0, 0), utc(2027, 1, 12, 2, 0)),
					oneOff("mid", skip, 0, utc(2027, 1, 12, 3, 0), utc(2027, 1, 12, 4, 0))}},
			status: calendar.StatusOverridden, freezes: []string{"s", "mid"}, reason: "CVE-2027-0001 exploited in the wild (CHG-42)"},
		{name: "an override without a freeze is just scheduled",
			opts:   calendar.Options{Overrides: map[string]string{"2027-01": "urgent"}},
			status: calendar.StatusScheduled},
		{name: "a paused wave skips every occurrence",
			opts:   calendar.Options{Paused: true},
			status: calendar.StatusSkippedPaused, reason: "the wave is paused"},
		{name: "pausing beats an override",
			opts: calendar.Options{Paused: true, Overrides: map[string]string{"2027-01": "urgent"},
				Freezes: []calendar.Freeze{oneOff("s", skip, 0, utc(2027, 1, 12, 0, 0), utc(2027, 1, 12, 2, 0))}},
			status: calendar.StatusSkippedPaused, freezes: []string{"s"}},
		{name: "skip-next skips that occurrence only",
			opts:   calendar.Options{SkipKeys: []string{"2027-01"}},
			status: calendar.StatusSkippedByRequest, reason: "skipped on request", nextMonthOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			occ, err := calendar.Occurrences(patchTuesday(), tc.opts, utc(2027, 1, 1, 0, 0), 2)
			require.NoError(t, err)
			jan := occ[0]
			require.Equal(t, "2027-01", jan.Key)
			require.Equal(t, tc.status, jan.Status)
			require.Equal(t, winStart, jan.OriginalStart)
			require.Equal(t, winEnd, jan.OriginalEnd)
			start, end := tc.start, tc.end
			if start.IsZero() {
				start, end = winStart, winEnd
			}
			require.Equal(t, start, jan.Start)
			require.Equal(t, end, jan.End)
			require.Equal(t, end.Sub(start), jan.Duration)
			require.Equal(t, tc.stopAt, jan.DispatchStopAt)
			require.Equal(t, tc.freezes, jan.Freezes)
			require.Contains(t, jan.Reason, tc.reason)
			if tc.status != calendar.StatusScheduled {
				require.NotEmpty(t, jan.Reason, "a status other than SCHEDULED says why")
			}
			if tc.nextMonthOK {
				require.Equal(t, calendar.StatusScheduled, occ[1].Status)
				require.Empty(t, occ[1].Freezes)
			}
		})
	}
}

func TestRecurringFreezes(t *testing.T) {
	t.Run("a weekly RRULE in another zone with an EXDATE", func(t *testing.T) {
		// Monday 18:00 in New York for 12 hours covers the small hours of Tuesday in Berlin.
		f := calendar.Freeze{ID: "ny-weekly", Policy: calendar.PolicySkip, RRule: "FREQ=WEEKLY;BYDAY=MO",
			DTStart: "2026-01-05T18:00", TimeZone: "America/New_York", Duration: 12 * time.Hour,
			ExDates: []string{"2027-03-08T18:00"}}
		occ, err := calendar.Occurrences(patchTuesday(), calendar.Options{Freezes: []calendar.Freeze{f}}, utc(2027, 1, 1, 0, 0), 4)
		require.NoError(t, err)
		var statuses []calendar.Status
		for _, o := range occ {
			statuses = append(statuses, o.Status)
		}
		require.Equal(t, []calendar.Status{calendar.StatusSkippedFrozen, calendar.StatusSkippedFrozen,
			calendar.StatusScheduled, calendar.StatusSkippedFrozen}, statuses)
		require.Empty(t, occ[2].Freezes, "the EXDATE leaves March free")
	})
	t.Run("instances follow the DST rule of the freeze's zone", func(t *testing.T) {
		f := calendar.Freeze{ID: "sun", Policy: calendar.PolicySkip, RRule: "FREQ=WEEKLY;BYDAY=SU",
			DTStart: "2027-01-03T02:30", TimeZone: "Europe/Berlin", Duration: time.Hour}
		in, err := f.Instances(utc(2027, 3, 27, 0, 0), utc(2027, 3, 29, 0, 0))
		require.NoError(t, err)
		// 02:30 does not exist on 28 March: it is 03:30 CEST (01:30 UTC), not Go's time.Date.
		require.Equal(t, []calendar.Interval{{Start: utc(2027, 3, 28, 1, 30), End: utc(2027, 3, 28, 2, 30)}}, in)
		in, err = f.Instances(utc(2027, 10, 30, 0, 0), utc(2027, 11, 1, 0, 0))
		require.NoError(t, err)
		// 02:30 occurs twice on 31 October: the first, in CEST.
		require.Equal(t, []calendar.Interval{{Start: utc(2027, 10, 31, 0, 30), End: utc(2027, 10, 31, 1, 30)}}, in)
	})
	t.Run("days are nominal: an all-day freeze on the spring day lasts 23 hours", func(t *testing.T) {
		f := calendar.Freeze{ID: "day", Policy: calendar.PolicySkip, DTStart: "2027-03-28", TimeZone: "Europe/Berlin", Days: 1}
		in, err := f.Instances(utc(2027, 1, 1, 0, 0), time.Time{})
		require.NoError(t, err)
		require.Equal(t, []calendar.Interval{{Start: utc(2027, 3, 27, 23, 0), End: utc(2027, 3, 28, 22, 0)}}, in)
	})
	t.Run("a yearly freeze with a defer policy moves Patch Tuesday past it", func(t *testing.T) {
		// Last Tuesday of December 2027 is the 28th; the freeze is 24-28 December.
		s := patchTuesday()
		s.WeekOfMonth = calendar.Last
		f := calendar.Freeze{ID: "xmas", Policy: calendar.PolicyDefer, DeferDays: 7, RRule: "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24",
			DTStart: "2020-12-24", TimeZone: "Europe/Berlin", Days: 5}
		occ, err := calendar.ByKey(s, calendar.Options{Freezes: []calendar.Freeze{f}}, "2027-12")
		require.NoError(t, err)
		require.Equal(t, calendar.StatusDeferred, occ.Status)
		require.Equal(t, utc(2027, 12, 29, 1, 0), occ.Start)
		require.Equal(t, utc(2027, 12, 28, 1, 0), occ.OriginalStart)
	})
	t.Run("UNTIL and COUNT end a rule", func(t *testing.T) {
		until := calendar.Freeze{ID: "u", Policy: calendar.PolicySkip, RRule: "FREQ=DAILY;UNTIL=20270105T235959Z",
			DTStart: "2027-01-01T00:00", TimeZone: "UTC", Duration: time.Hour}
		in, err := until.Instances(utc(2026, 1, 1, 0, 0), time.Time{})
		require.NoError(t, err)
		require.Len(t, in, 5)
		require.True(t, until.Bounded())
		count := until
		count.RRule = "FREQ=WEEKLY;COUNT=3"
		in, err = count.Instances(utc(2026, 1, 1, 0, 0), time.Time{})
		require.NoError(t, err)
		require.Equal(t, utc(2027, 1, 15, 0, 0), in[2].Start)
		require.Len(t, in, 3)
		untilDate := until
		untilDate.RRule = "FREQ=DAILY;UNTIL=20270105"
		in, err = untilDate.Instances(utc(2026, 1, 1, 0, 0), time.Time{})
		require.NoError(t, err)
		require.Len(t, in, 5, "a date UNTIL includes its day")
	})
	t.Run("a rule from 2020 answers about 2030 the same as from near 2030", func(t *testing.T) {
		old := calendar.Freeze{ID: "o", Policy: calendar.PolicySkip, RRule: "FREQ=WEEKLY;INTERVAL=2;BYDAY=FR,SA",
			DTStart: "2020-01-03T20:00", TimeZone: "Europe/Berlin", Duration: 30 * time.Hour}
		in, err := old.Instances(utc(2030, 6, 1, 0, 0), utc(2030, 7, 1, 0, 0))
		require.NoError(t, err)
		require.NotEmpty(t, in)
		loc := zone(t, "Europe/Berlin")
		for _, i := range in {
			l := i.Start.In(loc)
			require.Contains(t, []time.Weekday{time.Friday, time.Saturday}, l.Weekday())
			require.Equal(t, 20, l.Hour())
			weeks := int(l.Sub(time.Date(2020, 1, 3, 20, 0, 0, 0, loc)).Hours()+12) / 24 / 7
			require.Zero(t, weeks%2, "every other week from DTSTART: %s", l)
		}
	})
}

func TestFreezeValidateNamesTheFieldAndTheRule(t *testing.T) {
	recurring := func(edit func(*calendar.Freeze)) calendar.Freeze {
		f := calendar.Freeze{ID: "f", Policy: calendar.PolicySkip, RRule: "FREQ=WEEKLY;BYDAY=SA",
			DTStart: "2027-01-02T00:00", TimeZone: "Europe/Berlin", Days: 2}
		edit(&f)
		return f
	}
	for _, tc := range []struct {
		name        string
		f           calendar.Freeze
		field, rule string
	}{
		{"an RRULE that does not parse", recurring(func(f *calendar.Freeze) { f.RRule = "FREQ=WEEKLY;BYDAY=XX" }),
			"freeze.rrule", `must be an RFC 5545 recurrence rule such as FREQ=WEEKLY;BYDAY=SA,SU: undefined weekday: XX, got "FREQ=WEEKLY;BYDAY=XX"`},
		{"an RRULE without FREQ", recurring(func(f *calendar.Freeze) { f.RRule = "BYDAY=SA" }), "freeze.rrule", "FREQ is required"},
		{"an hourly RRULE", recurring(func(f *calendar.Freeze) { f.RRule = "FREQ=HOURLY" }), "freeze.rrule", "FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY"},
		{"an RRULE with COUNT and UNTIL", recurring(func(f *calendar.Freeze) { f.RRule = "FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z" }),
			"freeze.rrule", "COUNT and UNTIL must not both be set"},
		{"an RRULE with a huge COUNT", recurring(func(f *calendar.Freeze) { f.RRule = "FREQ=DAILY;COUNT=100000" }), "freeze.rrule", "COUNT must be from 1 to 1000"},
		{"an RRULE with DTSTART in it", recurring(func(f *calendar.Freeze) { f.RRule = "DTSTART:20270101T000000\nRRULE:FREQ=DAILY" }),
			"freeze.rrule", "DTSTART is the dtStart field"},
		{"an RRULE with BYMONTH 13", recurring(func(f *calendar.Freeze) { f.RRule = "FREQ=YEARLY;BYMONTH=13" }), "freeze.rrule", "bymonth must be between 1 and 12"},
		{"an unknown freeze zone", recurring(func(f *calendar.Freeze) { f.TimeZone = "Mars/Olympus" }), "freeze.timeZone", "IANA time zone"},
		{"a DTSTART that is not a time", recurring(func(f *calendar.Freeze) { f.DTStart = "tomorrow" }), "freeze.dtStart", "must be a local date-time"},
		{"an EXDATE that is not a time", recurring(func(f *calendar.Freeze) { f.ExDates = []string{"2027-01-09T00:00", "soon"} }), "freeze.exDates[1]", `got "soon"`},
		{"an instance of no length", recurring(func(f *calendar.Freeze) { f.Days = 0 }), "freeze.duration", "must last more than zero"},
		{"an instance over a year", recurring(func(f *calendar.Freeze) { f.Days = 400 }), "freeze.duration", "at most 366 days"},
		{"no id", recurring(func(f *calendar.Freeze) { f.ID = "" }), "freeze.id", "must not be empty"},
		{"an unknown policy", recurring(func(f *calendar.Freeze) { f.Policy = "pause" }), "freeze.policy", `must be skip or defer, got "pause"`},
		{"defer without days", recurring(func(f *calendar.Freeze) { f.Policy = calendar.PolicyDefer }), "freeze.deferDays", "from 1 to 30 days"},
		{"defer for 31 days", recurring(func(f *calendar.Freeze) { f.Policy, f.DeferDays = calendar.PolicyDefer, 31 }), "freeze.deferDays", "got 31"},
		{"skip with defer days", recurring(func(f *calendar.Freeze) { f.DeferDays = 3 }), "freeze.deferDays", "must be 0 with policy skip"},
		{"a one-off freeze that ends before it starts", oneOff("o", calendar.PolicySkip, 0, utc(2027, 1, 2, 0, 0), utc(2027, 1, 1, 0, 0)),
			"freeze.end", "must be after start 2027-01-02T00:00:00Z"},
		{"a freeze with nothing", calendar.Freeze{ID: "x", Policy: calendar.PolicySkip}, "freeze.start", "must be set for a one-off freeze"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireViolation(t, tc.f.Validate(), tc.field, tc.rule)
			_, _, err := calendar.Next(patchTuesday(), calendar.Options{Freezes: []calendar.Freeze{tc.f}}, utc(2027, 1, 1, 0, 0))
			require.Error(t, err)
		})
	}
	t.Run("a rule that never ends needs a horizon", func(t *testing.T) {
		f := recurring(func(*calendar.Freeze) {})
		require.False(t, f.Bounded())
		_, err := f.Instances(utc(2027, 1, 1, 0, 0), time.Time{})
		requireViolation(t, err, "freeze.rrule", "a rule without COUNT or UNTIL never ends: a horizon is required")
		in, err := f.Instances(utc(2027, 1, 1, 0, 0), utc(2027, 2, 1, 0, 0))
		require.NoError(t, err)
		require.Len(t, in, 5) // 26-27 December 2026 ends on 28 December; 2, 9, 16, 23, 30 January
		_, err = f.Instances(utc(2027, 1, 1, 0, 0), utc(2037, 1, 1, 0, 0))
		requireViolation(t, err, "to", "at most 5 years")
	})
	t.Run("freeze ids are unique in options", func(t *testing.T) {
		f := recurring(func(*calendar.Freeze) {})
		_, _, err := calendar.Next(patchTuesday(), calendar.Options{Freezes: []calendar.Freeze{f, f}}, utc(2027, 1, 1, 0, 0))
		requireViolation(t, err, "options.freezes[1].id", "must be unique")
	})
}
