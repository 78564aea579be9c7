// Package designcal reads a stored wave of the service design into libs/calendar's schedule
// and options. It is a package of its own so that readers of the design that do not need the
// calendar (and its RRULE and iCalendar dependencies) do not import it.
package designcal

import (
	"fmt"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/calendar"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// GlobalFreezePrefix starts the id of a provider-wide freeze among a wave's freezes (as the
// scheduler names them), so it never collides with one of the tenant's.
const GlobalFreezePrefix = "provider/"

var weekdays = map[string]time.Weekday{
	"SUNDAY": time.Sunday, "MONDAY": time.Monday, "TUESDAY": time.Tuesday, "WEDNESDAY": time.Wednesday,
	"THURSDAY": time.Thursday, "FRIDAY": time.Friday, "SATURDAY": time.Saturday,
}

// WaveCalendar reads a stored wave (as the scheduler stores it: day of week in upper case, an
// end time) into what libs/calendar needs to list its occurrences: its schedule, and as options
// its pause, skipped keys, the tenant's overrides of the wave and the tenant's and provider's
// freezes. It is for readers of the design (the notifier's reminders); the scheduler, which
// validates what it stores, has its own checking conversion.
func WaveCalendar(doc *typesv1.TenantDesign, global *typesv1.GlobalDesign, w *typesv1.Wave) (calendar.Schedule, calendar.Options, error) {
	s := w.GetSchedule()
	cs := calendar.Schedule{
		WeekOfMonth: int(s.GetWeekOfMonth()), OffsetDays: int(s.GetOffsetDays()), TimeZone: s.GetTimeZone(),
		ValidFrom: s.GetValidFrom(), ValidUntil: s.GetValidUntil(),
	}
	day, ok := weekdays[strings.ToUpper(s.GetDayOfWeek())]
	if !ok {
		return calendar.Schedule{}, calendar.Options{}, fmt.Errorf("wave %d: day of week %q", w.GetNumber(), s.GetDayOfWeek())
	}
	cs.DayOfWeek = day
	var err error
	if cs.Start, err = calendar.ParseClock(s.GetStartTime()); err != nil {
		return calendar.Schedule{}, calendar.Options{}, fmt.Errorf("wave %d: start: %w", w.GetNumber(), err)
	}
	switch {
	case s.GetEndTime() != "":
		cs.End, err = calendar.ParseClock(s.GetEndTime())
	default:
		cs.End, err = calendar.EndFromDuration(cs.Start, s.GetDuration())
	}
	if err != nil {
		return calendar.Schedule{}, calendar.Options{}, fmt.Errorf("wave %d: end: %w", w.GetNumber(), err)
	}
	if err := cs.Validate(); err != nil {
		return calendar.Schedule{}, calendar.Options{}, fmt.Errorf("wave %d: %w", w.GetNumber(), err)
	}
	o := calendar.Options{Paused: w.GetPaused(), SkipKeys: w.GetSkipKeys()}
	for _, ov := range doc.GetOverrides() {
		if ov.GetWave() == w.GetNumber() {
			if o.Overrides == nil {
				o.Overrides = map[string]string{}
			}
			o.Overrides[ov.GetKey()] = ov.GetReason()
		}
	}
	for _, f := range doc.GetFreezes() {
		o.Freezes = append(o.Freezes, freezeOf(f, ""))
	}
	for _, f := range global.GetFreezes() {
		o.Freezes = append(o.Freezes, freezeOf(f, GlobalFreezePrefix))
	}
	return cs, o, nil
}

func freezeOf(f *typesv1.Freeze, prefix string) calendar.Freeze {
	cf := calendar.Freeze{
		ID: prefix + f.GetId(), Name: f.GetName(), DeferDays: int(f.GetDeferDays()), RRule: f.GetRrule(),
		DTStart: f.GetDtStart(), TimeZone: f.GetTimeZone(), Days: int(f.GetDays()), ExDates: f.GetExDates(),
		Policy: calendar.PolicySkip,
	}
	if f.GetPolicy() == typesv1.FreezePolicy_FREEZE_POLICY_DEFER {
		cf.Policy = calendar.PolicyDefer
	}
	if f.GetStart() != nil {
		cf.Start = f.GetStart().AsTime()
	}
	if f.GetEnd() != nil {
		cf.End = f.GetEnd().AsTime()
	}
	if d, err := time.ParseDuration(f.GetDuration()); err == nil {
		cf.Duration = d
	}
	return cf
}
