package calendar_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/calendar"
)

func TestWindowsOnDSTNights(t *testing.T) {
	clock := func(h, m int) calendar.Clock { return calendar.Clock{Hour: h, Minute: m} }
	for _, tc := range []struct {
		name               string
		zone               string
		week               int
		day                time.Weekday
		offset             int
		start, end         calendar.Clock
		key                string
		wantStart, wantEnd time.Time
		wantNominal        time.Duration
		wantNote           string
	}{
		// Europe/Berlin: forward 2027-03-28 02:00 CET -> 03:00 CEST; back 2027-10-31 03:00 CEST -> 02:00 CET.
		{"Berlin: a window across the spring gap is 1h shorter", "Europe/Berlin", calendar.Last, time.Sunday, 0,
			clock(1, 0), clock(5, 0), "2027-03", utc(2027, 3, 28, 0, 0), utc(2027, 3, 28, 3, 0), 4 * time.Hour,
			"window is 1h shorter: clocks go forward at 02:00"},
		{"Berlin: 02:30 in the spring gap is 03:30 CEST", "Europe/Berlin", calendar.Last, time.Sunday, 0,
			clock(2, 30), clock(6, 0), "2027-03", utc(2027, 3, 28, 1, 30), utc(2027, 3, 28, 4, 0), 3*time.Hour + 30*time.Minute,
			"start time does not exist on 2027-03-28 and is read as 03:30 CEST"},
		{"Berlin: an end in the spring gap is read with the offset before it", "Europe/Berlin", calendar.Last, time.Sunday, 0,
			clock(0, 0), clock(2, 30), "2027-03", utc(2027, 3, 27, 23, 0), utc(2027, 3, 28, 1, 30), 2*time.Hour + 30*time.Minute,
			"end time does not exist on 2027-03-28 and is read as 03:30 CEST"},
		{"Berlin: a window across the fall overlap is 1h longer", "Europe/Berlin", calendar.Last, time.Sunday, 0,
			clock(1, 0), clock(5, 0), "2027-10", utc(2027, 10, 30, 23, 0), utc(2027, 10, 31, 4, 0), 4 * time.Hour,
			"window is 1h longer: clocks go back at 03:00"},
		{"Berlin: 02:30 on the fall night is its first occurrence, in CEST", "Europe/Berlin", calendar.Last, time.Sunday, 0,
			clock(2, 30), clock(4, 0), "2027-10", utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 3, 0), 90 * time.Minute,
			"start time occurs twice on 2027-10-31; the first (02:30 CEST) is used"},
		{"Berlin: a whole day over the spring night lasts 23 hours", "Europe/Berlin", calendar.Last, time.Saturday, 0,
			clock(22, 0), clock(22, 0), "2027-03", utc(2027, 3, 27, 21, 0), utc(2027, 3, 28, 20, 0), 24 * time.Hour,
			"window is 1h shorter: clocks go forward at 02:00"},
		// America/New_York: forward 2027-03-14 02:00 EST -> 03:00 EDT; back 2027-11-07 02:00 EDT -> 01:00 EST.
		{"New York: a window across the spring gap is 1h shorter", "America/New_York", 2, time.Sunday, 0,
			clock(1, 30), clock(3, 30), "2027-03", utc(2027, 3, 14, 6, 30), utc(2027, 3, 14, 7, 30), 2 * time.Hour,
			"window is 1h shorter: clocks go forward at 02:00"},
		{"New York: 02:30 in the spring gap is 03:30 EDT (Go's time.Date says 01:30 EST)", "America/New_York", 2, time.Tuesday, 5,
			clock(2, 30), clock(4, 0), "2027-03", utc(2027, 3, 14, 7, 30), utc(2027, 3, 14, 8, 0), 90 * time.Minute,
			"start time does not exist on 2027-03-14 and is read as 03:30 EDT"},
		{"New York: 01:30 on the fall night is its first occurrence, in EDT", "America/New_York", 1, time.Sunday, 0,
			clock(1, 30), clock(2, 30), "2027-11", utc(2027, 11, 7, 5, 30), utc(2027, 11, 7, 7, 30), time.Hour,
			"window is 1h longer: clocks go back at 02:00; start time occurs twice on 2027-11-07; the first (01:30 EDT) is used"},
		// Australia/Lord_Howe: back 2027-04-04 02:00 (+11) -> 01:30 (+10:30); forward 2027-10-03 02:00 -> 02:30.
		{"Lord Howe: a window across the autumn overlap is 30m longer", "Australia/Lord_Howe", 1, time.Sunday, 0,
			clock(1, 0), clock(5, 0), "2027-04", utc(2027, 4, 3, 14, 0), utc(2027, 4, 3, 18, 30), 4 * time.Hour,
			"window is 30m longer: clocks go back at 02:00"},
		{"Lord Howe: 01:45 on the autumn night is its first occurrence", "Australia/Lord_Howe", 1, time.Sunday, 0,
			clock(1, 45), clock(3, 0), "2027-04", utc(2027, 4, 3, 14, 45), utc(2027, 4, 3, 16, 30), 75 * time.Minute,
			"the first (01:45 UTC+11:00) is used"},
		{"Lord Howe: 02:15 in the spring gap is 02:45 (+11)", "Australia/Lord_Howe", 1, time.Sunday, 0,
			clock(2, 15), clock(4, 0), "2027-10", utc(2027, 10, 2, 15, 45), utc(2027, 10, 2, 17, 0), 105 * time.Minute,
			"window is 30m shorter: clocks go forward at 02:00; start time does not exist on 2027-10-03 and is read as 02:45 UTC+11:00"},
		// America/Santiago (southern hemisphere): back 2027-04-04 00:00 (-03) -> 2027-04-03 23:00 (-04);
		// forward 2027-09-05 00:00 (-04) -> 01:00 (-03).
		{"Santiago: 00:30 in the spring gap at midnight is 01:30 (-03)", "America/Santiago", 1, time.Sunday, 0,
			clock(0, 30), clock(4, 0), "2027-09", utc(2027, 9, 5, 4, 30), utc(2027, 9, 5, 7, 0), 210 * time.Minute,
			"window is 1h shorter: clocks go forward at 00:00"},
		{"Santiago: an overnight window from the autumn overlap starts at its first occurrence", "America/Santiago", 1, time.Saturday, 0,
			clock(23, 30), clock(1, 0), "2027-04", utc(2027, 4, 4, 2, 30), utc(2027, 4, 4, 5, 0), 90 * time.Minute,
			"window is 1h longer: clocks go back at 00:00; start time occurs twice on 2027-04-03"},
		// Asia/Kolkata: +05:30 all year.
		{"Kolkata: an overnight window is plain", "Asia/Kolkata", 2, time.Tuesday, 0,
			clock(22, 0), clock(2, 0), "2027-03", utc(2027, 3, 9, 16, 30), utc(2027, 3, 9, 20, 30), 4 * time.Hour, ""},
		// Pacific/Chatham: back 2027-04-04 03:45 (+13:45) -> 02:45 (+12:45); forward 2027-09-26 02:45 -> 03:45.
		{"Chatham: 03:00 on the autumn night is its first occurrence", "Pacific/Chatham", 1, time.Sunday, 0,
			clock(3, 0), clock(5, 0), "2027-04", utc(2027, 4, 3, 13, 15), utc(2027, 4, 3, 16, 15), 2 * time.Hour,
			"window is 1h longer: clocks go back at 03:45"},
		{"Chatham: 03:00 in the spring gap is 04:00 (+13:45)", "Pacific/Chatham", calendar.Last, time.Sunday, 0,
			clock(3, 0), clock(5, 0), "2027-09", utc(2027, 9, 25, 14, 15), utc(2027, 9, 25, 15, 15), 2 * time.Hour,
			"read as 04:00 UTC+13:45"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := calendar.Schedule{WeekOfMonth: tc.week, DayOfWeek: tc.day, OffsetDays: tc.offset,
				Start: tc.start, End: tc.end, TimeZone: tc.zone}
			occ, err := calendar.ByKey(s, calendar.Options{}, tc.key)
			require.NoError(t, err)
			require.Equal(t, tc.wantStart, occ.Start, "start")
			require.Equal(t, tc.wantEnd, occ.End, "end")
			require.Equal(t, tc.wantNominal, occ.NominalDuration, "nominal duration")
			require.Equal(t, tc.wantEnd.Sub(tc.wantStart), occ.Duration, "duration")
			require.Equal(t, time.UTC, occ.Start.Location())
			if tc.wantNote == "" {
				require.Empty(t, occ.Note)
			} else {
				require.Contains(t, occ.Note, tc.wantNote)
			}
			// The month before is an ordinary night: no note, the nominal length.
			prev, err := calendar.ByKey(s, calendar.Options{}, tc.wantStart.AddDate(0, -2, 0).Format("2006-01"))
			require.NoError(t, err)
			require.Empty(t, prev.Note)
			require.Equal(t, prev.NominalDuration, prev.Duration)
		})
	}
}
