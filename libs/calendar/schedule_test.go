package calendar_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/calendar"
)

func TestParseClock(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     calendar.Clock
		ok       bool
	}{
		{"midnight is 00:00", "00:00", calendar.Clock{}, true},
		{"the last minute is 23:59", "23:59", calendar.Clock{Hour: 23, Minute: 59}, true},
		{"two in the morning", "02:00", calendar.Clock{Hour: 2}, true},
		{"25:00 is not a time", "25:00", calendar.Clock{}, false},
		{"24:00 is not a time", "24:00", calendar.Clock{}, false},
		{"minute 60 is not a time", "12:60", calendar.Clock{}, false},
		{"one-digit hours are refused", "2:00", calendar.Clock{}, false},
		{"signs are refused", "+1:00", calendar.Clock{}, false},
		{"seconds are refused", "02:00:00", calendar.Clock{}, false},
		{"12-hour times are refused", "02:00 PM", calendar.Clock{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := calendar.ParseClock(tc.in)
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
				require.Equal(t, tc.in, got.String())
				return
			}
			require.ErrorIs(t, err, apierr.ErrInvalidArgument)
			require.ErrorContains(t, err, "24-hour wall-clock time HH:MM from 00:00 to 23:59")
			require.ErrorContains(t, err, tc.in)
		})
	}
}

func TestEndFromDuration(t *testing.T) {
	for _, tc := range []struct {
		name, start, duration, want string
	}{
		{"four hours from 02:00 end at 06:00", "02:00", "4h", "06:00"},
		{"a window may cross midnight", "22:00", "4h", "02:00"},
		{"24 hours end at the start time", "03:15", "24h", "03:15"},
		{"minutes are kept", "23:50", "1h30m", "01:20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, err := calendar.ParseClock(tc.start)
			require.NoError(t, err)
			end, err := calendar.EndFromDuration(start, tc.duration)
			require.NoError(t, err)
			require.Equal(t, tc.want, end.String())
		})
	}
}

// requireViolation asserts err is a *apierr.ValidationError with a violation on field whose
// rule contains rule.
func requireViolation(t *testing.T, err error, field, rule string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, apierr.ErrInvalidArgument)
	var ve *apierr.ValidationError
	require.ErrorAs(t, err, &ve, "%v is not a *apierr.ValidationError", err)
	for _, v := range ve.Violations {
		if v.Field == field {
			require.Contains(t, v.Rule, rule, "field %s", field)
			return
		}
	}
	require.Failf(t, "no violation on field", "want %s in %v", field, ve.Violations)
}

// patchTuesday is the second Tuesday, 02:00-06:00 in Berlin.
func patchTuesday() calendar.Schedule {
	return calendar.Schedule{WeekOfMonth: 2, DayOfWeek: time.Tuesday, Start: calendar.Clock{Hour: 2},
		End: calendar.Clock{Hour: 6}, TimeZone: "Europe/Berlin"}
}

func TestScheduleValidateNamesTheFieldAndTheRule(t *testing.T) {
	for _, tc := range []struct {
		name        string
		edit        func(*calendar.Schedule)
		field, rule string
	}{
		{"an unknown time zone", func(s *calendar.Schedule) { s.TimeZone = "Europe/Atlantis" }, "schedule.timeZone", "IANA time zone"},
		{"no time zone", func(s *calendar.Schedule) { s.TimeZone = "" }, "schedule.timeZone", "IANA time zone"},
		{"the machine's local zone", func(s *calendar.Schedule) { s.TimeZone = "Local" }, "schedule.timeZone", "IANA time zone"},
		{"week 0", func(s *calendar.Schedule) { s.WeekOfMonth = 0 }, "schedule.weekOfMonth", "must be 1, 2, 3, 4 or -1 (last), got 0"},
		{"week 5", func(s *calendar.Schedule) { s.WeekOfMonth = 5 }, "schedule.weekOfMonth", "must be 1, 2, 3, 4 or -1 (last), got 5"},
		{"offset 31", func(s *calendar.Schedule) { s.OffsetDays = 31 }, "schedule.offsetDays", "must be from -30 to +30 days, got 31"},
		{"offset -31", func(s *calendar.Schedule) { s.OffsetDays = -31 }, "schedule.offsetDays", "got -31"},
		{"day of week 7", func(s *calendar.Schedule) { s.DayOfWeek = 7 }, "schedule.dayOfWeek", "0 (Sunday) to 6 (Saturday)"},
		{"a start at 25:00", func(s *calendar.Schedule) { s.Start = calendar.Clock{Hour: 25} }, "schedule.startTime", "HH:MM from 00:00 to 23:59, got 25:00"},
		{"an end at 12:60", func(s *calendar.Schedule) { s.End = calendar.Clock{Hour: 12, Minute: 60} }, "schedule.endTime", "got 12:60"},
		{"a validity date that is not one", func(s *calendar.Schedule) { s.ValidFrom = "2027-02-30" }, "schedule.validFrom", "YYYY-MM-DD"},
		{"validity that ends before it starts", func(s *calendar.Schedule) { s.ValidFrom, s.ValidUntil = "2027-05-01", "2027-04-30" },
			"schedule.validUntil", "must not be before validFrom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := patchTuesday()
			tc.edit(&s)
			requireViolation(t, s.Validate(), tc.field, tc.rule)
			_, err := calendar.Occurrences(s, calendar.Options{}, utc(2027, 1, 1, 0, 0), 1)
			requireViolation(t, err, tc.field, tc.rule)
		})
	}
	t.Run("every problem is reported at once", func(t *testing.T) {
		s := calendar.Schedule{WeekOfMonth: 5, OffsetDays: 31, TimeZone: "Nowhere"}
		var ve *apierr.ValidationError
		require.ErrorAs(t, s.Validate(), &ve)
		require.Len(t, ve.Violations, 3)
	})
	t.Run("a window over 24 hours", func(t *testing.T) {
		_, err := calendar.EndFromDuration(calendar.Clock{Hour: 2}, "25h")
		requireViolation(t, err, "schedule.duration", "a window lasts from 1m to 24h")
		_, err = calendar.EndFromDuration(calendar.Clock{Hour: 2}, "0s")
		requireViolation(t, err, "schedule.duration", "from 1m to 24h")
		_, err = calendar.EndFromDuration(calendar.Clock{Hour: 2}, "four hours")
		requireViolation(t, err, "schedule.duration", "must be a duration such as")
		_, err = calendar.EndFromDuration(calendar.Clock{Hour: 2}, "90s")
		requireViolation(t, err, "schedule.duration", "whole minutes")
	})
	t.Run("a count out of range", func(t *testing.T) {
		_, err := calendar.Occurrences(patchTuesday(), calendar.Options{}, utc(2027, 1, 1, 0, 0), 0)
		requireViolation(t, err, "count", "from 1 to 1000")
	})
	t.Run("a key that is not one", func(t *testing.T) {
		_, err := calendar.ByKey(patchTuesday(), calendar.Options{}, "2027-1")
		requireViolation(t, err, "key", "YYYY-MM")
	})
	t.Run("options name their fields", func(t *testing.T) {
		_, _, err := calendar.Next(patchTuesday(), calendar.Options{SkipKeys: []string{"January"}}, utc(2027, 1, 1, 0, 0))
		requireViolation(t, err, "options.skipKeys[0]", "YYYY-MM")
		_, _, err = calendar.Next(patchTuesday(), calendar.Options{Overrides: map[string]string{"2027-01": " "}}, utc(2027, 1, 1, 0, 0))
		requireViolation(t, err, "options.overrides[2027-01]", "needs a reason")
		_, _, err = calendar.Next(patchTuesday(), calendar.Options{Freezes: []calendar.Freeze{{ID: "x", Policy: "maybe"}}}, utc(2027, 1, 1, 0, 0))
		requireViolation(t, err, "options.freezes[0].policy", "must be skip or defer")
	})
}

// localDates lists the local start dates of occurrences, and their keys.
func localDates(t *testing.T, s calendar.Schedule, from time.Time, n int) (dates, keys []string) {
	t.Helper()
	occ, err := calendar.Occurrences(s, calendar.Options{}, from, n)
	require.NoError(t, err)
	loc := zone(t, s.TimeZone)
	for _, o := range occ {
		dates = append(dates, o.Start.In(loc).Format(time.DateOnly))
		keys = append(keys, o.Key)
	}
	return dates, keys
}

func TestScheduleDates(t *testing.T) {
	tue := func(week, offset int) calendar.Schedule {
		s := patchTuesday()
		s.WeekOfMonth, s.OffsetDays = week, offset
		return s
	}
	sunday := func(week int) calendar.Schedule {
		s := patchTuesday()
		s.WeekOfMonth, s.DayOfWeek = week, time.Sunday
		return s
	}
	for _, tc := range []struct {
		name      string
		s         calendar.Schedule
		from      time.Time
		wantDates []string
		wantKeys  []string
	}{
		{"the second Tuesday is within days 8-14", tue(2, 0), utc(2027, 1, 1, 0, 0),
			[]string{"2027-01-12", "2027-02-09", "2027-03-09", "2027-04-13", "2027-05-11", "2027-06-08"},
			[]string{"2027-01", "2027-02", "2027-03", "2027-04", "2027-05", "2027-06"}},
		{"in a month with five Tuesdays the fourth is the fourth", tue(4, 0), utc(2027, 11, 1, 0, 0),
			[]string{"2027-11-23"}, []string{"2027-11"}},
		{"in a month with five Tuesdays the last is the fifth", tue(calendar.Last, 0), utc(2027, 11, 1, 0, 0),
			[]string{"2027-11-30"}, []string{"2027-11"}},
		{"in a month with five Sundays the last is the fifth", sunday(calendar.Last), utc(2027, 10, 1, 0, 0),
			[]string{"2027-10-31", "2027-11-28"}, []string{"2027-10", "2027-11"}},
		{"in a month with four Sundays the last is the fourth", sunday(4), utc(2027, 11, 1, 0, 0),
			[]string{"2027-11-28"}, []string{"2027-11"}},
		{"Patch Tuesday + 11 stays in January", tue(2, 11), utc(2027, 1, 1, 0, 0),
			[]string{"2027-01-23", "2027-02-20"}, []string{"2027-01", "2027-02"}},
		{"+30 crosses the month end and keeps the anchor month as key", tue(2, 30), utc(2027, 1, 8, 0, 0),
			[]string{"2027-02-11", "2027-03-11", "2027-04-08"}, []string{"2027-01", "2027-02", "2027-03"}},
		{"-30 crosses the year end backwards", tue(2, -30), utc(2026, 12, 1, 0, 0),
			[]string{"2026-12-13", "2027-01-10"}, []string{"2027-01", "2027-02"}},
		{"+30 from the last Tuesday of December lands in next year's January", tue(calendar.Last, 30), utc(2028, 1, 20, 0, 0),
			[]string{"2028-01-27", "2028-02-24"}, []string{"2027-12", "2028-01"}},
		{"the last Tuesday of February 2028 is the 29th", tue(calendar.Last, 0), utc(2028, 2, 1, 0, 0),
			[]string{"2028-02-29"}, []string{"2028-02"}},
		{"+21 from the second Tuesday of February 2028 is the 29th", tue(2, 21), utc(2028, 2, 2, 0, 0),
			[]string{"2028-02-29"}, []string{"2028-02"}},
		{"-7 from the first Tuesday of March 2028 is 29 February", tue(1, -7), utc(2028, 2, 20, 0, 0),
			[]string{"2028-02-29"}, []string{"2028-03"}},
		{"-28 from the last Tuesday of March 2028 is 29 February", tue(calendar.Last, -28), utc(2028, 2, 20, 0, 0),
			[]string{"2028-02-29"}, []string{"2028-03"}},
		{"-30 from the last Tuesday of March 2028 passes 29 February", tue(calendar.Last, -30), utc(2028, 2, 20, 0, 0),
			[]string{"2028-02-27"}, []string{"2028-03"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dates, keys := localDates(t, tc.s, tc.from, len(tc.wantDates))
			require.Equal(t, tc.wantDates, dates)
			require.Equal(t, tc.wantKeys, keys)
		})
	}
}

func TestValidityDates(t *testing.T) {
	s := patchTuesday()
	s.ValidFrom, s.ValidUntil = "2027-03-09", "2027-06-07"
	t.Run("occurrences start on validFrom and end before validUntil", func(t *testing.T) {
		dates, _ := localDates(t, s, utc(2026, 1, 1, 0, 0), 10)
		require.Equal(t, []string{"2027-03-09", "2027-04-13", "2027-05-11"}, dates) // 8 June is after
	})
	t.Run("validUntil is inclusive", func(t *testing.T) {
		s := s
		s.ValidUntil = "2027-06-08"
		dates, _ := localDates(t, s, utc(2027, 5, 20, 0, 0), 10)
		require.Equal(t, []string{"2027-06-08"}, dates)
	})
	t.Run("after validUntil there is no next occurrence", func(t *testing.T) {
		_, ok, err := calendar.Next(s, calendar.Options{}, utc(2027, 6, 1, 0, 0))
		require.NoError(t, err)
		require.False(t, ok)
	})
	t.Run("ByKey marks an occurrence outside the validity dates", func(t *testing.T) {
		occ, err := calendar.ByKey(s, calendar.Options{}, "2027-02")
		require.NoError(t, err)
		require.Equal(t, calendar.StatusSkippedOutsideValidity, occ.Status)
		require.Contains(t, occ.Reason, "2027-02-09 is outside the schedule's validity dates")
		require.True(t, occ.Status.Skipped())
		occ, err = calendar.ByKey(s, calendar.Options{}, "2027-04")
		require.NoError(t, err)
		require.Equal(t, calendar.StatusScheduled, occ.Status)
	})
	t.Run("validity is on the occurrence's date, after the offset", func(t *testing.T) {
		s := patchTuesday()
		s.OffsetDays, s.ValidFrom = 30, "2027-03-01"
		occ, err := calendar.Occurrences(s, calendar.Options{}, utc(2027, 1, 1, 0, 0), 1)
		require.NoError(t, err)
		require.Equal(t, "2027-02", occ[0].Key) // 9 February + 30 = 11 March
	})
	t.Run("a far validFrom is reached without walking the months before", func(t *testing.T) {
		s := patchTuesday()
		s.ValidFrom = "2900-01-01"
		occ, err := calendar.Occurrences(s, calendar.Options{}, utc(2027, 1, 1, 0, 0), 1)
		require.NoError(t, err)
		require.Equal(t, "2900-01", occ[0].Key)
	})
}

func TestNextAndOccurrencesAgree(t *testing.T) {
	s := patchTuesday()
	jan := utc(2027, 1, 12, 1, 0) // 02:00 CET
	for _, tc := range []struct {
		name  string
		after time.Time
		want  string
	}{
		{"before the window the month's occurrence is next", utc(2027, 1, 1, 0, 0), "2027-01"},
		{"at the window's start it is still next", jan, "2027-01"},
		{"inside the window it is still next", jan.Add(3 * time.Hour), "2027-01"},
		{"at the window's end the next month's is next", jan.Add(4 * time.Hour), "2027-02"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			occ, ok, err := calendar.Next(s, calendar.Options{}, tc.after)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, tc.want, occ.Key)
			list, err := calendar.Occurrences(s, calendar.Options{}, tc.after, 3)
			require.NoError(t, err)
			require.Equal(t, occ, list[0])
			byKey, err := calendar.ByKey(s, calendar.Options{}, tc.want)
			require.NoError(t, err)
			require.Equal(t, occ, byKey)
		})
	}
}
