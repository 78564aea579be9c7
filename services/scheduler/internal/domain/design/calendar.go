package design

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/calendar"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Preview bounds: how many occurrences a preview lists.
const (
	DefaultPreviewCount = 12
	MaxPreviewCount     = 100
)

// GlobalFreezePrefix starts the id of a provider-wide freeze among a wave's freezes, so that it
// never collides with one of the tenant's (freeze ids have no '/').
const GlobalFreezePrefix = "provider/"

var weekdays = map[string]time.Weekday{
	"SUNDAY": time.Sunday, "MONDAY": time.Monday, "TUESDAY": time.Tuesday, "WEDNESDAY": time.Wednesday,
	"THURSDAY": time.Thursday, "FRIDAY": time.Friday, "SATURDAY": time.Saturday,
}

// addAll adds err's violations to v with their "from" prefix replaced by "to"; an error that is
// not a validation error is added under field to (trimmed of its dot) with its text.
func addAll(v *apierr.Violations, err error, from, to string) {
	if err == nil {
		return
	}
	var verr *apierr.ValidationError
	if !errors.As(err, &verr) {
		v.Add(strings.TrimSuffix(to, "."), err.Error())
		return
	}
	for _, x := range verr.Violations {
		v.Add(to+strings.TrimPrefix(x.Field, from), x.Rule)
	}
}

// ToSchedule converts an API schedule into the calendar's, checking every field (fields named
// "schedule.weekOfMonth" and so on), and returns the form it is stored in as well: the day of
// the week in upper case and an end time (a duration is converted to the end time it gives).
func ToSchedule(s *typesv1.Schedule) (calendar.Schedule, *typesv1.Schedule, error) {
	var v apierr.Violations
	cs := calendar.Schedule{
		WeekOfMonth: int(s.GetWeekOfMonth()), OffsetDays: int(s.GetOffsetDays()), TimeZone: s.GetTimeZone(),
		ValidFrom: s.GetValidFrom(), ValidUntil: s.GetValidUntil(),
	}
	day := strings.ToUpper(s.GetDayOfWeek())
	if wd, ok := weekdays[day]; ok {
		cs.DayOfWeek = wd
	} else {
		v.Add("schedule.dayOfWeek", fmt.Sprintf("must be MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY or SUNDAY, got %q", s.GetDayOfWeek()))
	}
	startOK := false
	if s.GetStartTime() == "" {
		v.Add("schedule.startTime", "is required: a 24-hour wall-clock time HH:MM")
	} else if c, err := calendar.ParseClock(s.GetStartTime()); err != nil {
		v.Add("schedule.startTime", err.Error())
	} else {
		cs.Start, startOK = c, true
	}
	switch {
	case s.GetEndTime() != "" && s.GetDuration() != "":
		v.Add("schedule.duration", "give endTime or duration, not both")
	case s.GetEndTime() != "":
		if c, err := calendar.ParseClock(s.GetEndTime()); err != nil {
			v.Add("schedule.endTime", err.Error())
		} else {
			cs.End = c
		}
	case s.GetDuration() != "":
		if startOK {
			end, err := calendar.EndFromDuration(cs.Start, s.GetDuration())
			addAll(&v, err, "", "")
			cs.End = end
		}
	default:
		v.Add("schedule.endTime", "is required: a 24-hour wall-clock time HH:MM (or give duration, such as \"4h\")")
	}
	addAll(&v, cs.Validate(), "", "")
	if err := v.Err(); err != nil {
		return calendar.Schedule{}, nil, err
	}
	return cs, &typesv1.Schedule{
		WeekOfMonth: s.GetWeekOfMonth(), DayOfWeek: day, OffsetDays: s.GetOffsetDays(),
		StartTime: cs.Start.String(), EndTime: cs.End.String(), TimeZone: s.GetTimeZone(),
		ValidFrom: s.GetValidFrom(), ValidUntil: s.GetValidUntil(),
	}, nil
}

// normalizeSchedule is ToSchedule with its violations named under prefix ("schedule." for a
// wave's body, "operations[0].putWave.schedule." in a service request).
func normalizeSchedule(v *apierr.Violations, prefix string, s *typesv1.Schedule) *typesv1.Schedule {
	_, n, err := ToSchedule(s)
	addAll(v, err, "schedule.", prefix)
	return n
}

// Window is the nominal (wall-clock) length of a stored schedule's window: end - start, plus a
// day when the end is at or before the start. It is 0 for a schedule that does not parse.
func Window(s *typesv1.Schedule) time.Duration {
	start, err1 := calendar.ParseClock(s.GetStartTime())
	end, err2 := calendar.ParseClock(s.GetEndTime())
	if err1 != nil || err2 != nil {
		return 0
	}
	mins := (end.Hour*60 + end.Minute) - (start.Hour*60 + start.Minute)
	if mins <= 0 {
		mins += 24 * 60
	}
	return time.Duration(mins) * time.Minute
}

// ToFreeze converts an API freeze into the calendar's, checking it (fields named "freeze.id",
// "freeze.rrule" and so on).
func ToFreeze(f *typesv1.Freeze) (calendar.Freeze, error) {
	var v apierr.Violations
	cf := calendar.Freeze{
		ID: f.GetId(), Name: f.GetName(), DeferDays: int(f.GetDeferDays()), RRule: f.GetRrule(),
		DTStart: f.GetDtStart(), TimeZone: f.GetTimeZone(), Days: int(f.GetDays()), ExDates: f.GetExDates(),
	}
	switch f.GetPolicy() {
	case typesv1.FreezePolicy_FREEZE_POLICY_UNSPECIFIED, typesv1.FreezePolicy_FREEZE_POLICY_SKIP:
		cf.Policy = calendar.PolicySkip
	case typesv1.FreezePolicy_FREEZE_POLICY_DEFER:
		cf.Policy = calendar.PolicyDefer
	default:
		v.Add("freeze.policy", fmt.Sprintf("must be FREEZE_POLICY_SKIP or FREEZE_POLICY_DEFER, got %d", f.GetPolicy()))
		cf.Policy = calendar.PolicySkip
	}
	if f.GetStart() != nil {
		cf.Start = f.GetStart().AsTime()
	}
	if f.GetEnd() != nil {
		cf.End = f.GetEnd().AsTime()
	}
	if f.GetDuration() != "" {
		d, err := time.ParseDuration(f.GetDuration())
		if err != nil {
			v.Add("freeze.duration", fmt.Sprintf("must be a duration such as \"12h\" or \"90m\", got %q", f.GetDuration()))
		} else {
			cf.Duration = d
		}
	}
	if n := len(f.GetExDates()); n > MaxExDates {
		v.Add("freeze.exDates", fmt.Sprintf("must list at most %d dates, got %d", MaxExDates, n))
	}
	if len(v) == 0 {
		addAll(&v, cf.Validate(), "", "")
	}
	if err := v.Err(); err != nil {
		return calendar.Freeze{}, err
	}
	return cf, nil
}

// normalizeFreeze checks a freeze (violations named under prefix) and returns it as stored:
// policy explicit, duration canonical, source set.
func normalizeFreeze(v *apierr.Violations, prefix string, f *typesv1.Freeze, source string) *typesv1.Freeze {
	n := proto.Clone(f).(*typesv1.Freeze)
	n.Source = source
	if n.Policy == typesv1.FreezePolicy_FREEZE_POLICY_UNSPECIFIED {
		n.Policy = typesv1.FreezePolicy_FREEZE_POLICY_SKIP
	}
	checkID(v, prefix+"id", n.GetId())
	checkText(v, prefix+"name", n.GetName(), 200, false)
	if len(*v) > 0 {
		return n
	}
	cf, err := ToFreeze(n)
	addAll(v, err, "freeze.", prefix)
	if err == nil && cf.Duration != 0 {
		n.Duration = FormatDuration(cf.Duration)
	}
	return n
}

// FromCalendar is a calendar freeze as the API shows it.
func FromCalendar(cf calendar.Freeze) *typesv1.Freeze {
	f := &typesv1.Freeze{
		Id: cf.ID, Name: cf.Name, DeferDays: int32(cf.DeferDays), Rrule: cf.RRule, DtStart: cf.DTStart,
		TimeZone: cf.TimeZone, Days: int32(cf.Days), ExDates: cf.ExDates,
		Policy: typesv1.FreezePolicy_FREEZE_POLICY_SKIP,
	}
	if cf.Policy == calendar.PolicyDefer {
		f.Policy = typesv1.FreezePolicy_FREEZE_POLICY_DEFER
	}
	if !cf.Start.IsZero() {
		f.Start = timestamppb.New(cf.Start)
	}
	if !cf.End.IsZero() {
		f.End = timestamppb.New(cf.End)
	}
	if cf.Duration != 0 {
		f.Duration = FormatDuration(cf.Duration)
	}
	return f
}

// ICSFreezes reads an iCalendar import into the freezes it gives, as stored (source "ics",
// the import's policy). Violations are named under prefix: the file's problems under "ics"
// (with the line that broke, as the calendar reports it), the policy's under "policy" and
// "deferDays".
func ICSFreezes(prefix string, imp *typesv1.IcsImport) ([]*typesv1.Freeze, error) {
	var v apierr.Violations
	out := importICS(&v, prefix, imp)
	return out, v.Err()
}

func importICS(v *apierr.Violations, prefix string, imp *typesv1.IcsImport) []*typesv1.Freeze {
	switch n := len(imp.GetIcs()); {
	case n == 0:
		v.Add(prefix+"ics", "is required: the text of an iCalendar (RFC 5545) file")
		return nil
	case n > MaxICSBytes:
		v.Add(prefix+"ics", fmt.Sprintf("must be at most %d KiB, got %d bytes", MaxICSBytes>>10, n))
		return nil
	}
	zone := imp.GetTimeZone()
	if zone == "" {
		zone = "UTC"
	}
	parsed, err := calendar.ParseICS(strings.NewReader(imp.GetIcs()), zone)
	if err != nil {
		// Every problem of the file is the import's "ics" field's; the rule says where.
		var verr *apierr.ValidationError
		if !errors.As(err, &verr) {
			v.Add(prefix+"ics", err.Error())
			return nil
		}
		for _, x := range verr.Violations {
			switch x.Field {
			case "defaultZone":
				v.Add(prefix+"timeZone", x.Rule)
			case "", "ics":
				v.Add(prefix+"ics", x.Rule)
			default:
				v.Add(prefix+"ics", x.Field+": "+x.Rule)
			}
		}
		return nil
	}
	out := make([]*typesv1.Freeze, 0, len(parsed))
	seen := map[string]int{}
	for i, cf := range parsed {
		f := FromCalendar(cf)
		f.Id = icsID(cf.ID)
		f.Policy, f.DeferDays = imp.GetPolicy(), imp.GetDeferDays()
		if j, dup := seen[f.GetId()]; dup {
			v.Add(prefix+"ics", fmt.Sprintf("events %d and %d have the same id %q (their UIDs)", j+1, i+1, f.GetId()))
			continue
		}
		seen[f.GetId()] = i
		var fv apierr.Violations
		n := normalizeFreeze(&fv, "freeze.", f, "ics")
		for _, x := range fv {
			switch x.Field {
			case "freeze.policy", "freeze.deferDays":
				v.Add(prefix+strings.TrimPrefix(x.Field, "freeze."), x.Rule)
			default:
				v.Add(prefix+"ics", fmt.Sprintf("event %d (%s): %s: %s", i+1, f.GetId(), strings.TrimPrefix(x.Field, "freeze."), x.Rule))
			}
		}
		out = append(out, n)
	}
	if len(*v) > 0 {
		return nil
	}
	return out
}

// icsID is the freeze id of an imported event: its UID when that is a valid id, else the UID
// in lower case with every other character replaced by '-', cut to 40, and 8 hex digits of the
// UID's SHA-256 (so "Event-1@example.com" is "event-1-example.com-1a2b3c4d"). It is the same on
// every import of the same file, so a re-import replaces the freezes it made.
func icsID(uid string) string {
	if idPattern.MatchString(uid) {
		return uid
	}
	b := []byte(strings.ToLower(uid))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			b[i] = '-'
		}
	}
	base := strings.Trim(string(b), "-._")
	if len(base) > 40 {
		base = base[:40]
	}
	sum := sha256.Sum256([]byte(uid))
	if base == "" {
		return "ics-" + hex.EncodeToString(sum[:4])
	}
	return base + "-" + hex.EncodeToString(sum[:4])
}

// WaveCalendar is what the calendar needs to list a stored wave's occurrences: its schedule,
// and as options its pause, skipped keys, the tenant's overrides of the wave, and the
// tenant's and the provider's freezes (the provider's ids prefixed by GlobalFreezePrefix).
func WaveCalendar(doc *typesv1.TenantDesign, global *typesv1.GlobalDesign, w *typesv1.Wave) (calendar.Schedule, calendar.Options, error) {
	s, _, err := ToSchedule(w.GetSchedule())
	if err != nil {
		return calendar.Schedule{}, calendar.Options{}, fmt.Errorf("stored wave %d: %w", w.GetNumber(), err)
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
	add := func(f *typesv1.Freeze, prefix string) error {
		cf, err := ToFreeze(f)
		if err != nil {
			return fmt.Errorf("stored freeze %s%s: %w", prefix, f.GetId(), err)
		}
		cf.ID = prefix + cf.ID
		o.Freezes = append(o.Freezes, cf)
		return nil
	}
	for _, f := range doc.GetFreezes() {
		if err := add(f, ""); err != nil {
			return calendar.Schedule{}, calendar.Options{}, err
		}
	}
	for _, f := range global.GetFreezes() {
		if err := add(f, GlobalFreezePrefix); err != nil {
			return calendar.Schedule{}, calendar.Options{}, err
		}
	}
	return s, o, nil
}

// PreviewCalendar checks the input of a schedule preview (the schedule, and freezes named
// "freezes[i].*"; a freeze without an id is "freeze-<i+1>") and converts it.
func PreviewCalendar(s *typesv1.Schedule, freezes []*typesv1.Freeze) (calendar.Schedule, calendar.Options, error) {
	var v apierr.Violations
	var cs calendar.Schedule
	if s == nil {
		v.Add("schedule", "is required")
	} else {
		var err error
		cs, _, err = ToSchedule(s)
		addAll(&v, err, "", "")
	}
	var o calendar.Options
	seen := map[string]int{}
	for i, f := range freezes {
		prefix := fmt.Sprintf("freezes[%d].", i)
		if f.GetId() == "" {
			f = proto.Clone(f).(*typesv1.Freeze)
			f.Id = fmt.Sprintf("freeze-%d", i+1)
		}
		if j, dup := seen[f.GetId()]; dup {
			v.Add(prefix+"id", fmt.Sprintf("must be unique, %q is also freezes[%d]", f.GetId(), j))
			continue
		}
		seen[f.GetId()] = i
		cf, err := ToFreeze(f)
		addAll(&v, err, "freeze.", prefix)
		o.Freezes = append(o.Freezes, cf)
	}
	if err := v.Err(); err != nil {
		return calendar.Schedule{}, calendar.Options{}, err
	}
	return cs, o, nil
}

// PreviewCount checks a preview's count: 0 means DefaultPreviewCount, else 1..MaxPreviewCount.
func PreviewCount(count int32) (int, error) {
	if count == 0 {
		return DefaultPreviewCount, nil
	}
	if count < 1 || count > MaxPreviewCount {
		var v apierr.Violations
		v.Add("count", fmt.Sprintf("must be from 1 to %d occurrences (0 means %d), got %d", MaxPreviewCount, DefaultPreviewCount, count))
		return 0, v.Err()
	}
	return int(count), nil
}

// FreezeInstances lists a stored freeze's instances overlapping [from, to). A freeze that
// never ends (an RRULE without COUNT or UNTIL) needs to: without it the error is on "to"; the
// span is at most five years (calendar.MaxHorizon).
func FreezeInstances(f *typesv1.Freeze, from, to time.Time) ([]calendar.Interval, error) {
	cf, err := ToFreeze(f)
	if err != nil {
		return nil, fmt.Errorf("stored freeze %s: %w", f.GetId(), err)
	}
	var v apierr.Violations
	switch {
	case to.IsZero() && !cf.Bounded():
		v.Add("to", fmt.Sprintf("is required: freeze %q repeats by a rule without COUNT or UNTIL (%s), so it never ends; give the end of the span to list", f.GetId(), f.GetRrule()))
	case !to.IsZero() && !to.After(from):
		v.Add("to", fmt.Sprintf("must be after from (%s), got %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return cf.Instances(from, to)
}
