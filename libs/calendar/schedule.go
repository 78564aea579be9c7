package calendar

import (
	"fmt"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
)

// Last is the WeekOfMonth that means the last such weekday of the month.
const Last = -1

// MaxOffsetDays is the largest offset, in days, either way.
const MaxOffsetDays = 30

// Schedule is one wave's monthly maintenance window. The package comment states its meaning.
type Schedule struct {
	// WeekOfMonth is 1..4, or Last (-1). Required.
	WeekOfMonth int
	// DayOfWeek is the weekday whose WeekOfMonth-th occurrence anchors the month.
	DayOfWeek time.Weekday
	// OffsetDays moves the date by -30..+30 calendar days; 0 by default.
	OffsetDays int
	// Start is the window's start, wall clock in TimeZone.
	Start Clock
	// End is the window's end, wall clock in TimeZone; at or before Start means the next day.
	// A duration converts to it with EndFromDuration.
	End Clock
	// TimeZone is an IANA time zone name such as "Europe/Berlin". Required.
	TimeZone string
	// ValidFrom is the first date, "YYYY-MM-DD" in TimeZone, with occurrences; optional.
	ValidFrom string
	// ValidUntil is the last date, "YYYY-MM-DD" in TimeZone, with occurrences; optional.
	ValidUntil string
}

// Validate checks every field and returns a *apierr.ValidationError naming each bad field
// ("schedule.weekOfMonth", "schedule.timeZone", "schedule.startTime", ...) with its rule, or nil.
func (s Schedule) Validate() error {
	_, err := s.compile()
	return err
}

// date is a calendar date without a zone.
type date struct {
	Year  int
	Month time.Month
	Day   int
}

// addDays is d moved by n calendar days.
func (d date) addDays(n int) date {
	y, m, dd := time.Date(d.Year, d.Month, d.Day+n, 12, 0, 0, 0, time.UTC).Date()
	return date{y, m, dd}
}

// before reports whether d is before e.
func (d date) before(e date) bool {
	if d.Year != e.Year {
		return d.Year < e.Year
	}
	if d.Month != e.Month {
		return d.Month < e.Month
	}
	return d.Day < e.Day
}

// at is the civil time c on d.
func (d date) at(c Clock) civil {
	return civil{Year: d.Year, Month: d.Month, Day: d.Day, Hour: c.Hour, Min: c.Minute}
}

// String is "YYYY-MM-DD".
func (d date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// parseDate reads "YYYY-MM-DD".
func parseDate(s string) (date, bool) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return date{}, false
	}
	y, m, d := t.Date()
	return date{y, m, d}, true
}

// month is a year and month: an occurrence's anchor.
type month struct {
	Year  int
	Month time.Month
}

// next is the month after m, or before it for n < 0.
func (m month) add(n int) month {
	i := m.Year*12 + int(m.Month) - 1 + n
	return month{Year: i / 12, Month: time.Month(i%12 + 1)}
}

// key is m as an occurrence key, "YYYY-MM".
func (m month) key() string { return fmt.Sprintf("%04d-%02d", m.Year, m.Month) }

// parseKey reads an occurrence key "YYYY-MM".
func parseKey(k string) (month, bool) {
	t, err := time.Parse("2006-01", k)
	if err != nil || len(k) != 7 {
		return month{}, false
	}
	return month{Year: t.Year(), Month: t.Month()}, true
}

// plan is a validated Schedule, ready to compute windows.
type plan struct {
	s          Schedule
	loc        *time.Location
	from, till *date // validity, inclusive; nil when open
	nominal    time.Duration
	overnight  bool // the window ends on the next date
}

// compile validates s and prepares it.
func (s Schedule) compile() (*plan, error) {
	var v apierr.Violations
	p := &plan{s: s}
	if s.WeekOfMonth != Last && (s.WeekOfMonth < 1 || s.WeekOfMonth > 4) {
		v.Add("schedule.weekOfMonth", fmt.Sprintf("must be 1, 2, 3, 4 or -1 (last), got %d", s.WeekOfMonth))
	}
	if s.DayOfWeek < time.Sunday || s.DayOfWeek > time.Saturday {
		v.Add("schedule.dayOfWeek", fmt.Sprintf("must be a day of the week 0 (Sunday) to 6 (Saturday), got %d", s.DayOfWeek))
	}
	if s.OffsetDays < -MaxOffsetDays || s.OffsetDays > MaxOffsetDays {
		v.Add("schedule.offsetDays", fmt.Sprintf("must be from -30 to +30 days, got %d", s.OffsetDays))
	}
	if !s.Start.valid() {
		v.Add("schedule.startTime", fmt.Sprintf("%s, got %02d:%02d", clockRule, s.Start.Hour, s.Start.Minute))
	}
	if !s.End.valid() {
		v.Add("schedule.endTime", fmt.Sprintf("%s, got %02d:%02d", clockRule, s.End.Hour, s.End.Minute))
	}
	loc, err := loadLocation(s.TimeZone)
	if err != nil {
		v.Add("schedule.timeZone", "must be an IANA time zone name such as Europe/Berlin: "+err.Error())
	}
	p.loc = loc
	for _, f := range []struct {
		field, value string
		dst          **date
	}{{"schedule.validFrom", s.ValidFrom, &p.from}, {"schedule.validUntil", s.ValidUntil, &p.till}} {
		if f.value == "" {
			continue
		}
		d, ok := parseDate(f.value)
		if !ok {
			v.Add(f.field, fmt.Sprintf("must be a date YYYY-MM-DD, got %q", f.value))
			continue
		}
		*f.dst = &d
	}
	if p.from != nil && p.till != nil && p.till.before(*p.from) {
		v.Add("schedule.validUntil", fmt.Sprintf("must not be before validFrom %s, got %s", p.from, p.till))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	mins := s.End.minutes() - s.Start.minutes()
	if mins <= 0 {
		mins += 24 * 60
		p.overnight = true
	}
	p.nominal = time.Duration(mins) * time.Minute
	return p, nil
}

// anchorDate is the date of the WeekOfMonth-th DayOfWeek of m.
func (p *plan) anchorDate(m month) date {
	if p.s.WeekOfMonth == Last {
		last := time.Date(m.Year, m.Month+1, 0, 12, 0, 0, 0, time.UTC)
		back := (int(last.Weekday()) - int(p.s.DayOfWeek) + 7) % 7
		return date{m.Year, m.Month, last.Day() - back}
	}
	first := time.Date(m.Year, m.Month, 1, 12, 0, 0, 0, time.UTC).Weekday()
	day := 1 + (int(p.s.DayOfWeek)-int(first)+7)%7 + 7*(p.s.WeekOfMonth-1)
	return date{m.Year, m.Month, day}
}

// occurrenceDate is the date of m's occurrence: the anchor date plus the offset.
func (p *plan) occurrenceDate(m month) date { return p.anchorDate(m).addDays(p.s.OffsetDays) }

// valid reports whether an occurrence on d is within the validity dates.
func (p *plan) valid(d date) bool {
	return (p.from == nil || !d.before(*p.from)) && (p.till == nil || !p.till.before(d))
}

// window is one resolved window: its instants and how its ends were read.
type window struct {
	Start, End time.Time
	rs, re     resolved
}

// windowOn is the window that starts at Start on d.
func (p *plan) windowOn(d date) window {
	rs := resolveCivil(p.loc, d.at(p.s.Start))
	endDate := d
	if p.overnight {
		endDate = d.addDays(1)
	}
	re := resolveCivil(p.loc, endDate.at(p.s.End))
	return window{Start: rs.At, End: re.At, rs: rs, re: re}
}

// note is w's DST note.
func (p *plan) note(w window) string { return dstNote(p.loc, w.Start, w.End, p.nominal, w.rs, w.re) }

// monthOf is the month of instant t in the schedule's zone.
func (p *plan) monthOf(t time.Time) month {
	l := t.In(p.loc)
	return month{Year: l.Year(), Month: l.Month()}
}
