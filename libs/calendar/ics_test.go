package calendar_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/calendar"
)

// parseFile reads an .ics file from testdata.
func parseFile(t *testing.T, name, defaultZone string) ([]calendar.Freeze, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	return calendar.ParseICS(f, defaultZone)
}

func TestParseICSWeeklyRuleWithExdates(t *testing.T) {
	freezes, err := parseFile(t, "weekly.ics", "")
	require.NoError(t, err)
	require.Len(t, freezes, 2, "the cancelled event is left out")

	weekly := freezes[0]
	require.Equal(t, "month-end-close@example.com", weekly.ID)
	require.Equal(t, "Month-end close, finance systems", weekly.Name)
	require.Equal(t, calendar.PolicySkip, weekly.Policy)
	require.Equal(t, "Europe/Berlin", weekly.TimeZone)
	require.Equal(t, "2027-01-04T20:00:00", weekly.DTStart)
	require.Equal(t, 12*time.Hour, weekly.Duration)
	require.Equal(t, "FREQ=WEEKLY;BYDAY=MO;UNTIL=20271231T235959Z", weekly.RRule, "the folded line is unfolded")
	require.Equal(t, []string{"2027-02-08T20:00:00", "2027-02-15T20:00:00", "2027-04-05T20:00:00"}, weekly.ExDates)

	release := freezes[1]
	require.Equal(t, "UTC", release.TimeZone)
	require.Equal(t, 3*time.Hour, release.Duration)
	require.Empty(t, release.RRule)

	// Against Patch Tuesday (02:00-06:00 Berlin): every Monday night freezes the Tuesday after,
	// except the EXDATEs; the release night also holds March; the rule ends with 2027.
	occ, err := calendar.Occurrences(patchTuesday(), calendar.Options{Freezes: freezes}, utc(2027, 1, 1, 0, 0), 13)
	require.NoError(t, err)
	got := map[string]calendar.Status{}
	for _, o := range occ {
		got[o.Key] = o.Status
	}
	require.Equal(t, calendar.StatusSkippedFrozen, got["2027-01"])
	require.Equal(t, calendar.StatusScheduled, got["2027-02"], "EXDATE 8 February")
	require.Equal(t, calendar.StatusSkippedFrozen, got["2027-04"], "5 April is excluded, but Patch Tuesday is the 13th")
	require.Equal(t, calendar.StatusScheduled, got["2028-01"], "UNTIL ended the rule")
	require.Equal(t, []string{"month-end-close@example.com", "release@example.com"}, occ[2].Freezes)
}

func TestParseICSAllDayEvents(t *testing.T) {
	freezes, err := parseFile(t, "allday.ics", "Europe/Berlin")
	require.NoError(t, err)
	byID := map[string]calendar.Freeze{}
	for _, f := range freezes {
		require.Equal(t, "America/New_York", f.TimeZone, "X-WR-TIMEZONE is the calendar's zone")
		byID[f.ID] = f
	}
	require.Len(t, byID, 4)

	instances := func(id string, from, to time.Time) []calendar.Interval {
		in, err := byID[id].Instances(from, to)
		require.NoError(t, err)
		return in
	}
	require.Equal(t, []calendar.Interval{{Start: utc(2027, 11, 25, 5, 0), End: utc(2027, 11, 27, 5, 0)}},
		instances("thanksgiving", utc(2027, 1, 1, 0, 0), time.Time{}), "DTEND;VALUE=DATE is exclusive")
	require.Equal(t, []calendar.Interval{{Start: utc(2027, 3, 14, 5, 0), End: utc(2027, 3, 15, 4, 0)}},
		instances("spring-day", utc(2027, 1, 1, 0, 0), time.Time{}), "P1D is a nominal day: 23 hours on the spring day")
	var quarterEnds []string
	for _, in := range instances("quarter-end", utc(2027, 1, 1, 0, 0), utc(2028, 1, 1, 0, 0)) {
		quarterEnds = append(quarterEnds, in.Start.In(zone(t, "America/New_York")).Format(time.DateOnly))
		require.Equal(t, 24*time.Hour, in.End.Sub(in.Start), "an all-day event without an end is one day")
	}
	require.Equal(t, []string{"2027-03-31", "2027-12-31"}, quarterEnds,
		"EXDATE;VALUE=DATE removes June; the RECURRENCE-ID event replaces September")
	moved := byID["quarter-end@20270930"]
	require.Equal(t, "2027-10-01", moved.DTStart)
	require.Equal(t, "Quarter end moved", moved.Name)
}

func TestParseICSUsesTheGivenZoneForFloatingTimes(t *testing.T) {
	freezes, err := parseFile(t, "broken/floating-without-zone.ics", "Asia/Kolkata")
	require.NoError(t, err)
	require.Len(t, freezes, 1)
	in, err := freezes[0].Instances(utc(2026, 1, 1, 0, 0), time.Time{})
	require.NoError(t, err)
	require.Equal(t, []calendar.Interval{{Start: utc(2026, 12, 31, 18, 30), End: utc(2026, 12, 31, 19, 30)}}, in)
}

func TestParseICSErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, file, zone, rule string
	}{
		{"a file that is not iCalendar", "broken/not-ics.txt", "", "line 1 (This is not a calendar): not an iCalendar file: expected BEGIN:VCALENDAR"},
		{"an empty file", "broken/empty.ics", "", "line 1: not an iCalendar file: it is empty"},
		{"a line without a colon", "broken/no-colon.ics", "", "line 6 (this line has no colon): malformed content line: missing colon"},
		{"a parameter without a value", "broken/param-without-value.ics", "", "line 5 (DTSTART;TZID=Europe/Berlin20270101T000000): malformed content line"},
		{"an END that does not match", "broken/wrong-end.ics", "", `line 7 (END:VTODO): malformed component: expected END property for "VEVENT"`},
		{"a component never closed", "broken/unclosed.ics", "", "line 3 (BEGIN:VEVENT): BEGIN:VEVENT is never closed"},
		{"a Windows zone name", "broken/windows-tzid.ics", "", "line 5 (DTSTART;TZID=W. Europe Standard Time:20270101T000000): DTSTART TZID must be an IANA time zone name"},
		{"an RRULE that does not parse", "broken/bad-rrule.ics", "", "line 7 (RRULE:FREQ=WEEKLY;BYDAY=FUNDAY): must be an RFC 5545 recurrence rule"},
		{"a DTSTART that is not a date-time", "broken/bad-dtstart.ics", "", "line 5 (DTSTART:2027-01-01 00:00): DTSTART must be a DATE (YYYYMMDD) or DATE-TIME"},
		{"an event without an end", "broken/no-end.ics", "", "line 5 (DTSTART:20270101T000000Z): an event with a DATE-TIME DTSTART needs DTEND or DURATION"},
		{"a DURATION that is not one", "broken/bad-duration.ics", "", "line 6 (DURATION:1 hour): DURATION must be a positive RFC 5545 duration"},
		{"an RDATE", "broken/rdate.ics", "", "line 7 (RDATE:20270201T000000Z): RDATE is not supported"},
		{"a floating time without a zone", "broken/floating-without-zone.ics", "", "line 5 (DTSTART:20270101T000000): a floating or all-day DTSTART needs the calendar's zone"},
		{"an end before the start", "broken/end-before-start.ics", "", "line 6 (DTEND:20261231T000000Z): DTEND must be after DTSTART"},
		{"an EXDATE that is not a date-time", "broken/bad-exdate.ics", "", `line 7 (EXDATE:20270108T000000Z,someday): EXDATE must be a DATE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			freezes, err := parseFile(t, tc.file, tc.zone)
			require.Nil(t, freezes)
			requireViolation(t, err, "ics", tc.rule)
		})
	}
	t.Run("an unknown default zone", func(t *testing.T) {
		_, err := calendar.ParseICS(strings.NewReader("BEGIN:VCALENDAR\nEND:VCALENDAR\n"), "Europe/Atlantis")
		requireViolation(t, err, "defaultZone", "IANA time zone")
	})
	t.Run("a file too large", func(t *testing.T) {
		big := "BEGIN:VCALENDAR\n" + strings.Repeat("X-PAD:"+strings.Repeat("x", 70)+"\n", calendar.MaxICSBytes/77+1)
		_, err := calendar.ParseICS(strings.NewReader(big), "")
		requireViolation(t, err, "ics", "at most")
	})
}
