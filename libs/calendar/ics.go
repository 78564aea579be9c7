package calendar

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"

	"github.com/patchwave/patchwave/libs/apierr"
)

// Limits of ParseICS.
const (
	// MaxICSBytes is the largest iCalendar file ParseICS reads.
	MaxICSBytes = 4 << 20
	// MaxICSEvents is the most events one file may hold.
	MaxICSEvents = 1000
)

// ParseICS reads the VEVENTs of an iCalendar file (RFC 5545) as freezes, each with policy skip
// (the caller sets Policy and DeferDays for the import):
//
//   - ID is the UID (made unique with "#2", "#3" if repeated; "event-N" without one), Name the
//     SUMMARY. Cancelled events (STATUS:CANCELLED) are left out.
//   - DTSTART with TZID (an IANA name), in UTC ("...Z"), floating, or a date (an all-day
//     event). Floating times and dates are in the calendar's zone: its X-WR-TIMEZONE, else
//     defaultZone. The end is DTEND (a date-time gives an exact duration, a date whole days),
//     DURATION (weeks and days nominal, hours to seconds exact), or one day for an all-day
//     event.
//   - RRULE and EXDATE (comma lists, each with its own TZID or VALUE=DATE) become the freeze's
//     rule and exceptions. An event with a RECURRENCE-ID replaces one instance of the event with
//     the same UID: that instance becomes an EXDATE of it, and the event a freeze of its own.
//     RDATE is refused rather than ignored.
//
// Every error is a *apierr.ValidationError on field "ics" whose rule begins with the line
// that broke: `line 7 (DTSTART;TZID=Mars/Olympus:20270101T000000): TZID must be an IANA time
// zone name`.
func ParseICS(r io.Reader, defaultZone string) ([]Freeze, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxICSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read iCalendar file: %w", err)
	}
	if len(data) > MaxICSBytes {
		return nil, fieldError("ics", fmt.Sprintf("the file is at most %d bytes", MaxICSBytes))
	}
	if defaultZone != "" {
		if _, err := loadLocation(defaultZone); err != nil {
			return nil, fieldError("defaultZone", "must be an IANA time zone name such as Europe/Berlin: "+err.Error())
		}
	}
	sc := scanICS(data)
	cals, err := decodeICS(data, sc)
	if err != nil {
		return nil, err
	}
	p := &icsParser{sc: sc, defaultZone: defaultZone, ids: map[string]int{}}
	for i, cal := range cals {
		p.calendar(cal, sc.calendars[i])
	}
	p.applyRecurrenceIDs()
	if err := p.v.Err(); err != nil {
		return nil, err
	}
	return p.out, nil
}

// scanned is what a light pass over the file finds: where each component and property is.
type scanned struct {
	lines     []string // logical (unfolded) lines
	lineNo    []int    // the physical line where each logical line starts (1-based)
	ends      []int    // the byte offset after each logical line
	calendars []*scannedComp
	unclosed  *scannedComp // the innermost component without END, if any
}

// scannedComp is one component's position.
type scannedComp struct {
	name     string
	begin    int              // line number of BEGIN
	props    map[string][]int // property name -> line numbers, in order
	children []*scannedComp
}

// scanICS unfolds the lines of data and records where components and properties are.
func scanICS(data []byte) *scanned {
	sc := &scanned{}
	var stack []*scannedComp
	phys, off := 0, 0
	for off < len(data) {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		line := strings.TrimRight(string(data[off:next]), "\r\n")
		phys++
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(sc.lines) > 0 {
			sc.lines[len(sc.lines)-1] += line[1:]
			sc.ends[len(sc.ends)-1] = next
		} else {
			sc.lines = append(sc.lines, line)
			sc.lineNo = append(sc.lineNo, phys)
			sc.ends = append(sc.ends, next)
		}
		off = next
	}
	for i, l := range sc.lines {
		name, value, _ := strings.Cut(l, ":")
		name, _, _ = strings.Cut(name, ";")
		name = strings.ToUpper(name)
		switch {
		case name == "BEGIN":
			c := &scannedComp{name: strings.ToUpper(value), begin: sc.lineNo[i], props: map[string][]int{}}
			if len(stack) == 0 {
				if c.name == ical.CompCalendar {
					sc.calendars = append(sc.calendars, c)
				}
			} else {
				top := stack[len(stack)-1]
				top.children = append(top.children, c)
			}
			stack = append(stack, c)
		case name == "END" && len(stack) > 0:
			stack = stack[:len(stack)-1]
		case len(stack) > 0 && name != "":
			top := stack[len(stack)-1]
			top.props[name] = append(top.props[name], sc.lineNo[i])
		}
	}
	if len(stack) > 0 {
		sc.unclosed = stack[len(stack)-1]
	}
	return sc
}

// lineAtOffset is the physical line number of the logical line that ends at or before off.
func (sc *scanned) lineAtOffset(off int) (int, string) {
	for i, end := range sc.ends {
		if end >= off {
			return sc.lineNo[i], sc.lines[i]
		}
	}
	if n := len(sc.lines); n > 0 {
		return sc.lineNo[n-1], sc.lines[n-1]
	}
	return 1, ""
}

// text is logical line starting at physical line n, shortened for an error message.
func (sc *scanned) text(n int) string {
	for i, ln := range sc.lineNo {
		if ln == n {
			return shorten(sc.lines[i])
		}
	}
	return ""
}

// shorten cuts s to 80 characters.
func shorten(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// icsError is the error for line n of the file.
func (sc *scanned) icsError(n int, rule string) error {
	return fieldError("ics", sc.lineRule(n, rule))
}

// lineRule is rule prefixed with line n and its text.
func (sc *scanned) lineRule(n int, rule string) string {
	if t := sc.text(n); t != "" {
		return fmt.Sprintf("line %d (%s): %s", n, t, rule)
	}
	return fmt.Sprintf("line %d: %s", n, rule)
}

// decodeICS decodes every VCALENDAR in data with go-ical and names the line of any error.
func decodeICS(data []byte, sc *scanned) (cals []*ical.Calendar, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fieldError("ics", "line 1: not an iCalendar file: it is empty (expected BEGIN:VCALENDAR)")
	}
	if first := strings.ToUpper(strings.TrimSpace(sc.lines[firstNonEmpty(sc.lines)])); first != "BEGIN:VCALENDAR" {
		n := sc.lineNo[firstNonEmpty(sc.lines)]
		return nil, sc.icsError(n, "not an iCalendar file: expected BEGIN:VCALENDAR")
	}
	under := bytes.NewReader(data)
	br := bufio.NewReaderSize(under, 4096) // go-ical keeps a *bufio.Reader of this size as is
	dec := ical.NewDecoder(br)
	consumed := func() int { return len(data) - under.Len() - br.Buffered() }
	defer func() {
		// go-ical panics on some malformed parameters (for example a line ending inside one).
		if r := recover(); r != nil {
			n, _ := sc.lineAtOffset(consumed())
			cals, err = nil, sc.icsError(n, "malformed content line: expected ':' between the parameters and the value")
		}
	}()
	for {
		cal, derr := dec.Decode()
		switch {
		case errors.Is(derr, io.EOF) && sc.unclosed != nil:
			return nil, sc.icsError(sc.unclosed.begin,
				fmt.Sprintf("BEGIN:%s is never closed (the file ends before END:%s)", sc.unclosed.name, sc.unclosed.name))
		case errors.Is(derr, io.EOF):
			if len(cals) == 0 {
				return nil, fieldError("ics", "line 1: not an iCalendar file: no VCALENDAR")
			}
			return cals, nil
		case derr != nil:
			n, _ := sc.lineAtOffset(consumed())
			return nil, sc.icsError(n, strings.TrimPrefix(derr.Error(), "ical: "))
		}
		cals = append(cals, cal)
		if len(cals) > len(sc.calendars) {
			return nil, fieldError("ics", "the file's components could not be matched to its lines")
		}
	}
}

// firstNonEmpty is the index of the first non-blank line (0 if none).
func firstNonEmpty(lines []string) int {
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			return i
		}
	}
	return 0
}

// icsParser turns decoded events into freezes, collecting violations.
type icsParser struct {
	sc          *scanned
	defaultZone string
	v           apierr.Violations
	out         []Freeze
	events      int
	ids         map[string]int // freeze id -> index in out
	overrides   []recurrenceID
}

// recurrenceID is an event that replaces one instance of another.
type recurrenceID struct {
	uid  string
	at   time.Time // the replaced instance's start
	line int
}

// calendar reads one VCALENDAR.
func (p *icsParser) calendar(cal *ical.Calendar, sc *scannedComp) {
	zone := p.defaultZone
	if prop := cal.Props.Get("X-WR-TIMEZONE"); prop != nil {
		line := firstLine(sc, "X-WR-TIMEZONE", 0)
		if _, err := loadLocation(prop.Value); err != nil {
			p.v.Add("ics", p.sc.lineRule(line, "X-WR-TIMEZONE must be an IANA time zone name: "+err.Error()))
			return
		}
		zone = prop.Value
	}
	var scEvents []*scannedComp
	for _, c := range sc.children {
		if c.name == ical.CompEvent {
			scEvents = append(scEvents, c)
		}
	}
	for i, ev := range cal.Events() {
		if i >= len(scEvents) {
			p.v.Add("ics", "the file's events could not be matched to its lines")
			return
		}
		p.events++
		if p.events > MaxICSEvents {
			p.v.Add("ics", p.sc.lineRule(scEvents[i].begin, fmt.Sprintf("a file holds at most %d events", MaxICSEvents)))
			return
		}
		p.event(ev, scEvents[i], zone)
	}
}

// firstLine is the line of the i-th property name in c, or c's BEGIN line.
func firstLine(c *scannedComp, name string, i int) int {
	if lines := c.props[name]; i < len(lines) {
		return lines[i]
	}
	return c.begin
}

// icsTime is a DATE or DATE-TIME value.
type icsTime struct {
	wall     int64 // wall seconds (UTC seconds when utc)
	dateOnly bool
	utc      bool
	tzid     string
}

// icsTimeRule states what a DATE-TIME value looks like.
const icsTimeRule = "must be a DATE (YYYYMMDD) or DATE-TIME (YYYYMMDDTHHMMSS, with Z for UTC)"

// parseICSTime reads one value of prop.
func parseICSTime(prop ical.Prop, value string) (icsTime, error) {
	t := icsTime{tzid: prop.Params.Get(ical.PropTimezoneID)}
	var layout string
	switch vt := strings.ToUpper(prop.Params.Get(ical.ParamValue)); {
	case vt == "DATE" || vt == "" && len(value) == 8:
		layout, t.dateOnly = "20060102", true
	case (vt == "DATE-TIME" || vt == "") && len(value) == 16 && strings.HasSuffix(value, "Z"):
		layout, t.utc = "20060102T150405Z", true
	case (vt == "DATE-TIME" || vt == "") && len(value) == 15:
		layout = "20060102T150405"
	default:
		return t, fmt.Errorf("%s, got %q", icsTimeRule, value)
	}
	v, err := time.Parse(layout, value)
	if err != nil {
		return t, fmt.Errorf("%s, got %q", icsTimeRule, value)
	}
	t.wall = v.Unix()
	if t.tzid != "" && (t.utc || t.dateOnly) {
		return t, fmt.Errorf("TZID is only for a local DATE-TIME, got %q with TZID=%s", value, t.tzid)
	}
	if t.tzid != "" {
		if _, err := loadLocation(t.tzid); err != nil {
			return t, fmt.Errorf("TZID must be an IANA time zone name (the VTIMEZONE blocks are not read): %w", err)
		}
	}
	return t, nil
}

// zone is the zone t is in: "UTC", its TZID, or the calendar's zone.
func (t icsTime) zone(calZone string) string {
	switch {
	case t.utc:
		return "UTC"
	case t.tzid != "":
		return t.tzid
	}
	return calZone
}

// instant is t as an instant, reading local times in calZone.
func (t icsTime) instant(calZone string) time.Time {
	if t.utc {
		return time.Unix(t.wall, 0).UTC()
	}
	loc, _ := loadLocation(t.zone(calZone))
	return resolveWall(loc, t.wall).At
}

// durationRE is an RFC 5545 DURATION.
var durationRE = regexp.MustCompile(`^\+?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// parseICSDuration reads a DURATION into nominal days and exact time.
func parseICSDuration(s string) (days int, exact time.Duration, err error) {
	m := durationRE.FindStringSubmatch(strings.ToUpper(s))
	if m == nil || s == "P" || strings.HasSuffix(strings.ToUpper(s), "T") {
		return 0, 0, fmt.Errorf("DURATION must be a positive RFC 5545 duration such as PT4H or P1D, got %q", s)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	days = n(1)*7 + n(2)
	exact = time.Duration(n(3))*time.Hour + time.Duration(n(4))*time.Minute + time.Duration(n(5))*time.Second
	return days, exact, nil
}

// event reads one VEVENT into a freeze.
func (p *icsParser) event(ev ical.Event, sc *scannedComp, calZone string) {
	fail := func(prop string, rule string) {
		p.v.Add("ics", p.sc.lineRule(firstLine(sc, prop, 0), rule))
	}
	if st := ev.Props.Get(ical.PropStatus); st != nil && strings.EqualFold(st.Value, "CANCELLED") {
		return
	}
	if ev.Props.Get(ical.PropRecurrenceDates) != nil {
		fail(ical.PropRecurrenceDates, "RDATE is not supported: list the dates as events of their own, or use RRULE")
		return
	}
	startProp := ev.Props.Get(ical.PropDateTimeStart)
	if startProp == nil {
		fail("BEGIN", "a VEVENT needs DTSTART")
		return
	}
	start, err := parseICSTime(*startProp, startProp.Value)
	if err != nil {
		fail(ical.PropDateTimeStart, "DTSTART "+err.Error())
		return
	}
	zone := start.zone(calZone)
	if zone == "" {
		fail(ical.PropDateTimeStart, "a floating or all-day DTSTART needs the calendar's zone: set X-WR-TIMEZONE or pass a default zone")
		return
	}
	f := Freeze{Policy: PolicySkip, TimeZone: zone}
	if s, err := ev.Props.Text(ical.PropSummary); err == nil {
		f.Name = s
	}
	if start.dateOnly {
		f.DTStart = time.Unix(start.wall, 0).UTC().Format(time.DateOnly)
	} else {
		f.DTStart = time.Unix(start.wall, 0).UTC().Format("2006-01-02T15:04:05")
	}
	if !p.length(ev, sc, start, calZone, &f) {
		return
	}
	if rr := ev.Props.Get(ical.PropRecurrenceRule); rr != nil {
		f.RRule = rr.Value
	}
	for i, ex := range ev.Props.Values(ical.PropExceptionDates) {
		for _, value := range strings.Split(ex.Value, ",") {
			t, err := parseICSTime(ex, value)
			if err != nil {
				p.v.Add("ics", p.sc.lineRule(firstLine(sc, ical.PropExceptionDates, i), "EXDATE "+err.Error()))
				return
			}
			f.ExDates = append(f.ExDates, exDateIn(t, f.TimeZone, calZone))
		}
	}
	uid := ""
	if prop := ev.Props.Get(ical.PropUID); prop != nil {
		uid = prop.Value
	}
	if rid := ev.Props.Get(ical.PropRecurrenceID); rid != nil {
		t, err := parseICSTime(*rid, rid.Value)
		if err != nil {
			fail(ical.PropRecurrenceID, "RECURRENCE-ID "+err.Error())
			return
		}
		if uid == "" {
			fail(ical.PropRecurrenceID, "an event with RECURRENCE-ID needs the UID of the event it changes")
			return
		}
		p.overrides = append(p.overrides, recurrenceID{uid: uid, at: t.instant(calZone), line: firstLine(sc, ical.PropRecurrenceID, 0)})
		uid += "@" + rid.Value
	}
	f.ID = p.uniqueID(uid)
	if _, err := f.compile("freeze."); err != nil {
		var ve *apierr.ValidationError
		if errors.As(err, &ve) {
			for _, viol := range ve.Violations {
				p.v.Add("ics", p.sc.lineRule(firstLine(sc, icsPropOf(viol.Field), 0), viol.Rule))
			}
		}
		return
	}
	p.ids[f.ID] = len(p.out)
	p.out = append(p.out, f)
}

// length sets f's Days and Duration from DTEND, DURATION or the all-day default.
func (p *icsParser) length(ev ical.Event, sc *scannedComp, start icsTime, calZone string, f *Freeze) bool {
	fail := func(prop string, rule string) bool {
		p.v.Add("ics", p.sc.lineRule(firstLine(sc, prop, 0), rule))
		return false
	}
	endProp, durProp := ev.Props.Get(ical.PropDateTimeEnd), ev.Props.Get(ical.PropDuration)
	switch {
	case endProp != nil && durProp != nil:
		return fail(ical.PropDuration, "an event has DTEND or DURATION, not both")
	case endProp != nil:
		end, err := parseICSTime(*endProp, endProp.Value)
		if err != nil {
			return fail(ical.PropDateTimeEnd, "DTEND "+err.Error())
		}
		if end.dateOnly != start.dateOnly {
			return fail(ical.PropDateTimeEnd, "DTEND must be a DATE when DTSTART is one, and a DATE-TIME otherwise")
		}
		if start.dateOnly {
			f.Days = int((end.wall - start.wall) / 86400)
			if f.Days <= 0 {
				return fail(ical.PropDateTimeEnd, "DTEND must be after DTSTART")
			}
			return true
		}
		f.Duration = end.instant(calZone).Sub(start.instant(calZone))
		if f.Duration <= 0 {
			return fail(ical.PropDateTimeEnd, "DTEND must be after DTSTART")
		}
	case durProp != nil:
		days, exact, err := parseICSDuration(durProp.Value)
		if err != nil {
			return fail(ical.PropDuration, err.Error())
		}
		f.Days, f.Duration = days, exact
	case start.dateOnly:
		f.Days = 1
	default:
		return fail(ical.PropDateTimeStart, "an event with a DATE-TIME DTSTART needs DTEND or DURATION to block anything")
	}
	return true
}

// exDateIn is t as a local ExDate of a freeze in zone.
func exDateIn(t icsTime, zone, calZone string) string {
	if t.dateOnly {
		return time.Unix(t.wall, 0).UTC().Format(time.DateOnly)
	}
	wall := t.wall
	if t.zone(calZone) != zone {
		loc, _ := loadLocation(zone)
		wall = wallOf(t.instant(calZone), loc)
	}
	return time.Unix(wall, 0).UTC().Format("2006-01-02T15:04:05")
}

// icsPropOf is the iCalendar property a Freeze field comes from.
func icsPropOf(field string) string {
	switch strings.TrimPrefix(field, "freeze.") {
	case "rrule":
		return ical.PropRecurrenceRule
	case "days", "duration":
		return ical.PropDateTimeEnd
	case "timeZone", "dtStart":
		return ical.PropDateTimeStart
	}
	if strings.HasPrefix(field, "freeze.exDates") {
		return ical.PropExceptionDates
	}
	return "BEGIN"
}

// uniqueID is uid, or "event-N", made unique among the freezes read so far.
func (p *icsParser) uniqueID(uid string) string {
	if uid == "" {
		uid = fmt.Sprintf("event-%d", p.events)
	}
	id := uid
	for n := 2; ; n++ {
		if _, taken := p.ids[id]; !taken {
			return id
		}
		id = fmt.Sprintf("%s#%d", uid, n)
	}
}

// applyRecurrenceIDs turns each replaced instance into an EXDATE of its event.
func (p *icsParser) applyRecurrenceIDs() {
	for _, r := range p.overrides {
		i, ok := p.ids[r.uid]
		if !ok {
			p.v.Add("ics", p.sc.lineRule(r.line, fmt.Sprintf("RECURRENCE-ID changes an instance of event %q, which is not in the file", r.uid)))
			continue
		}
		f := &p.out[i]
		loc, _ := loadLocation(f.TimeZone)
		f.ExDates = append(f.ExDates, time.Unix(wallOf(r.at, loc), 0).UTC().Format("2006-01-02T15:04:05"))
	}
}
