package calendar

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teambition/rrule-go"

	"github.com/patchwave/patchwave/libs/apierr"
)

// Policy says what a freeze does to an occurrence whose window starts inside it.
type Policy string

// Freeze policies.
const (
	// PolicySkip skips the occurrence (SKIPPED_FROZEN).
	PolicySkip Policy = "skip"
	// PolicyDefer moves it to the next free window within the freeze's DeferDays (DEFERRED),
	// or skips it when there is none.
	PolicyDefer Policy = "defer"
)

// Limits of freezes.
const (
	// MaxDeferDays is the longest deferral, in days.
	MaxDeferDays = 30
	// MaxCount is the largest COUNT of a recurrence rule (counting starts at DTSTART, so a
	// larger count would make every question expand the rule from its beginning).
	MaxCount = 1000
	// MaxFreezeLength is the longest instance of a recurring or local freeze.
	MaxFreezeLength = 366 * 24 * time.Hour
	// MaxHorizon is the longest span Freeze.Instances lists.
	MaxHorizon = 5 * 366 * 24 * time.Hour
)

// Freeze is a change-freeze window of a tenant (or a global one of the provider). It is one of:
//
//   - one-off: the instants [Start, End);
//   - local: instances starting at the wall-clock time DTStart in TimeZone, repeated by RRule
//     when it is set, minus ExDates, each lasting Days nominal days plus Duration.
type Freeze struct {
	// ID names the freeze in occurrences. Required, unique within Options.Freezes.
	ID string
	// Name is for people; optional.
	Name string
	// Policy is PolicySkip or PolicyDefer. Required.
	Policy Policy
	// DeferDays is 1..30 with PolicyDefer, and 0 with PolicySkip.
	DeferDays int
	// Start is a one-off freeze's first instant.
	Start time.Time
	// End is a one-off freeze's end (exclusive), after Start.
	End time.Time
	// RRule is an RFC 5545 recurrence rule such as "FREQ=WEEKLY;BYDAY=SA,SU" (an "RRULE:"
	// prefix is accepted); optional. FREQ is DAILY, WEEKLY, MONTHLY or YEARLY; COUNT is at most
	// MaxCount; UNTIL is a UTC ("...Z") or local date-time or a date.
	RRule string
	// DTStart is the first instance's wall-clock start in TimeZone: "2027-12-20T18:00",
	// "2027-12-20T18:00:00", "20271220T180000", or a date ("2027-12-24", "20271224") meaning
	// 00:00. Required for a local freeze.
	DTStart string
	// TimeZone is an IANA zone name. Required for a local freeze.
	TimeZone string
	// Days is each instance's nominal length in whole days (wall clock: from 00:00 to 00:00,
	// 23 or 25 hours on a DST day), added before Duration.
	Days int
	// Duration is each instance's exact length beyond Days. Days and Duration together are
	// more than zero and at most MaxFreezeLength.
	Duration time.Duration
	// ExDates are instance starts to leave out, in DTStart's forms; a date leaves out every
	// instance starting on that date.
	ExDates []string
}

// Interval is the half-open range of instants [Start, End).
type Interval struct {
	Start, End time.Time
}

// Validate checks every field and returns a *apierr.ValidationError naming each bad field
// ("freeze.policy", "freeze.rrule", ...) with its rule, or nil.
func (f Freeze) Validate() error {
	_, err := f.compile("freeze.")
	return err
}

// Bounded reports whether the freeze has finitely many instances: one-off, without RRule, or
// with a COUNT or an UNTIL. It is false for an invalid freeze.
func (f Freeze) Bounded() bool {
	c, err := f.compile("freeze.")
	return err == nil && c.bounded()
}

// Instances lists the freeze's instances that overlap [from, to), in order of start. A rule
// without COUNT or UNTIL needs a horizon: to must then be set. The span is at most MaxHorizon.
// The expansion starts near from, not at DTSTART (except for a COUNT, which is at most
// MaxCount instances), so asking about next month costs the same for a rule from 2020.
func (f Freeze) Instances(from, to time.Time) ([]Interval, error) {
	c, err := f.compile("freeze.")
	if err != nil {
		return nil, err
	}
	if to.IsZero() {
		if !c.bounded() {
			return nil, fieldError("freeze.rrule",
				"a rule without COUNT or UNTIL never ends: a horizon is required (set the end of the span to list)")
		}
		to = c.lastEnd()
	}
	if !to.After(from) {
		return nil, nil
	}
	if to.Sub(from) > MaxHorizon {
		return nil, fieldError("to", fmt.Sprintf("the span listed is at most 5 years, got %s to %s",
			from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)))
	}
	return c.overlapping(from, to, nil), nil
}

// compiledFreezes memoizes compiled freezes by content: a tenant's freezes are asked about
// for each of its waves and on every scheduling pass, and parsing a rule costs more than
// answering with it. It is cleared when it reaches maxCompiled entries, so it stays bounded
// however freezes change. A cfreeze is never modified after compile, so sharing is safe.
var (
	compiledFreezes sync.Map // cacheKey -> *cfreeze
	compiledCount   atomic.Int64
)

// maxCompiled bounds compiledFreezes.
const maxCompiled = 1 << 16

// cachedCompile is compile, memoized for valid freezes; prefix is called only on a miss.
func (f Freeze) cachedCompile(prefix func() string) (*cfreeze, error) {
	key := f.cacheKey()
	if c, ok := compiledFreezes.Load(key); ok {
		return c.(*cfreeze), nil
	}
	c, err := f.compile(prefix())
	if err != nil {
		return nil, err
	}
	if compiledCount.Add(1) > maxCompiled {
		compiledFreezes.Clear()
		compiledCount.Store(0)
	}
	compiledFreezes.Store(key, c)
	return c, nil
}

// cacheKey is every field of f that compile reads, separated by NUL bytes.
func (f Freeze) cacheKey() string {
	n := len(f.ID) + len(f.Policy) + len(f.RRule) + len(f.DTStart) + len(f.TimeZone) + 80
	for _, s := range f.ExDates {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range []string{f.ID, string(f.Policy), f.RRule, f.DTStart, f.TimeZone} {
		b = append(append(b, s...), 0)
	}
	for _, i := range []int64{int64(f.DeferDays), f.Start.UnixNano(), f.End.UnixNano(), int64(f.Days), int64(f.Duration)} {
		b = append(strconv.AppendInt(b, i, 36), 0)
	}
	b = append(b, boolByte(f.Start.IsZero()), boolByte(f.End.IsZero()), 0)
	for _, s := range f.ExDates {
		b = append(append(b, s...), 1)
	}
	return string(b)
}

// boolByte is '1' for true and '0' for false.
func boolByte(v bool) byte {
	if v {
		return '1'
	}
	return '0'
}

// cfreeze is a validated, prepared freeze.
type cfreeze struct {
	f       *Freeze
	oneOff  bool
	loc     *time.Location
	dtstart int64          // wall seconds
	opt     *rrule.ROption // floating (UTC) wall-clock rule with every default explicit; nil without RRule
	written rrule.ROption  // opt before monthlyForm (the tests expand it to check opt)
	until   time.Time      // the rule's UNTIL as an instant; zero when none
	exTimes map[int64]bool // wall seconds
	exDates map[date]bool
	days    int
	dur     time.Duration
	maxLen  time.Duration // an upper bound of an instance's length

	memoMu sync.Mutex
	memo   map[int][]int64 // wall month index -> the rule's instance starts (wall seconds) in it
}

// maxMemoMonths bounds a freeze's memo of expanded months.
const maxMemoMonths = 36

// localLayouts are the accepted forms of DTStart and ExDates.
var localLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "20060102T150405", "2006-01-02", "20060102"}

// parseLocal reads a local date-time in one of localLayouts; dateOnly is true for a date.
func parseLocal(s string) (w int64, dateOnly bool, ok bool) {
	for _, l := range localLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.Unix(), !strings.Contains(l, "15"), true
		}
	}
	return 0, false, false
}

// localRule states the forms parseLocal accepts.
const localRule = "must be a local date-time YYYY-MM-DDTHH:MM[:SS] (or YYYYMMDDTHHMMSS, or a date)"

// compile validates f, naming fields with prefix ("freeze." or "options.freezes[i].").
func (f Freeze) compile(prefix string) (*cfreeze, error) {
	var v apierr.Violations
	c := &cfreeze{f: &f, days: f.Days, dur: f.Duration}
	if strings.TrimSpace(f.ID) == "" {
		v.Add(prefix+"id", "must not be empty")
	}
	switch f.Policy {
	case PolicySkip:
		if f.DeferDays != 0 {
			v.Add(prefix+"deferDays", fmt.Sprintf("must be 0 with policy skip, got %d", f.DeferDays))
		}
	case PolicyDefer:
		if f.DeferDays < 1 || f.DeferDays > MaxDeferDays {
			v.Add(prefix+"deferDays", fmt.Sprintf("must be from 1 to 30 days with policy defer, got %d", f.DeferDays))
		}
	default:
		v.Add(prefix+"policy", fmt.Sprintf("must be skip or defer, got %q", f.Policy))
	}
	c.oneOff = f.RRule == "" && f.DTStart == ""
	if c.oneOff {
		c.compileOneOff(prefix, &v)
	} else {
		c.compileLocal(prefix, &v)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// compileOneOff checks a one-off freeze.
func (c *cfreeze) compileOneOff(prefix string, v *apierr.Violations) {
	f := c.f
	switch {
	case f.Start.IsZero():
		v.Add(prefix+"start", "must be set for a one-off freeze (or set dtStart and timeZone for a local one)")
	case f.End.IsZero():
		v.Add(prefix+"end", "must be set for a one-off freeze")
	case !f.End.After(f.Start):
		v.Add(prefix+"end", fmt.Sprintf("must be after start %s, got %s",
			f.Start.UTC().Format(time.RFC3339), f.End.UTC().Format(time.RFC3339)))
	}
	if f.TimeZone != "" || f.Days != 0 || f.Duration != 0 || len(f.ExDates) > 0 {
		v.Add(prefix+"dtStart", "must be set with timeZone, days, duration or exDates (a one-off freeze has only start and end)")
	}
}

// compileLocal checks a local (possibly recurring) freeze and prepares its rule.
func (c *cfreeze) compileLocal(prefix string, v *apierr.Violations) {
	f := c.f
	if !f.Start.IsZero() || !f.End.IsZero() {
		v.Add(prefix+"start", "must be empty for a freeze with dtStart (start and end are for a one-off freeze)")
	}
	loc, err := loadLocation(f.TimeZone)
	if err != nil {
		v.Add(prefix+"timeZone", "must be an IANA time zone name such as Europe/Berlin: "+err.Error())
	}
	c.loc = loc
	w, _, ok := parseLocal(f.DTStart)
	switch {
	case f.DTStart == "":
		v.Add(prefix+"dtStart", "must be set for a recurring freeze")
	case !ok:
		v.Add(prefix+"dtStart", fmt.Sprintf("%s, got %q", localRule, f.DTStart))
	}
	c.dtstart = w
	length := time.Duration(f.Days)*24*time.Hour + f.Duration
	switch {
	case f.Days < 0:
		v.Add(prefix+"days", fmt.Sprintf("must not be negative, got %d", f.Days))
	case f.Duration < 0:
		v.Add(prefix+"duration", fmt.Sprintf("must not be negative, got %s", f.Duration))
	case length <= 0:
		v.Add(prefix+"duration", "an instance must last more than zero: set days or duration")
	case length > MaxFreezeLength:
		v.Add(prefix+"duration", fmt.Sprintf("an instance lasts at most 366 days, got %d days + %s", f.Days, f.Duration))
	}
	c.maxLen = time.Duration(f.Days)*25*time.Hour + f.Duration + time.Hour
	c.exTimes, c.exDates = map[int64]bool{}, map[date]bool{}
	for i, s := range f.ExDates {
		ew, dateOnly, ok := parseLocal(s)
		switch {
		case !ok:
			v.Add(fmt.Sprintf("%sexDates[%d]", prefix, i), fmt.Sprintf("%s, got %q", localRule, s))
		case dateOnly:
			c.exDates[civilOf(ew).date()] = true
		default:
			c.exTimes[ew] = true
		}
	}
	if f.RRule != "" && ok && loc != nil {
		c.compileRule(prefix, v)
	}
}

// date is c's date.
func (c civil) date() date { return date{c.Year, c.Month, c.Day} }

// compileRule parses the RRULE into a floating wall-clock rule with every default explicit.
func (c *cfreeze) compileRule(prefix string, v *apierr.Violations) {
	f := c.f
	field := prefix + "rrule"
	text := strings.ToUpper(strings.TrimSpace(f.RRule))
	text = strings.TrimPrefix(text, "RRULE:")
	bad := func(why string) {
		v.Add(field, fmt.Sprintf("must be an RFC 5545 recurrence rule such as FREQ=WEEKLY;BYDAY=SA,SU: %s, got %q", why, f.RRule))
	}
	if strings.ContainsAny(text, "\r\n") || strings.Contains(text, "DTSTART") {
		bad("one RRULE line without DTSTART (DTSTART is the dtStart field)")
		return
	}
	opt, err := rrule.StrToROptionInLocation(text, c.loc)
	if err != nil {
		bad(err.Error())
		return
	}
	switch opt.Freq {
	case rrule.DAILY, rrule.WEEKLY, rrule.MONTHLY, rrule.YEARLY:
	default:
		bad("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY, got " + opt.Freq.String())
		return
	}
	if opt.Interval < 0 {
		bad(fmt.Sprintf("INTERVAL must be at least 1, got %d", opt.Interval))
		return
	}
	if opt.Count != 0 && !opt.Until.IsZero() {
		bad("COUNT and UNTIL must not both be set")
		return
	}
	if opt.Count < 0 || opt.Count > MaxCount {
		bad(fmt.Sprintf("COUNT must be from 1 to %d, got %d", MaxCount, opt.Count))
		return
	}
	if opt.Interval == 0 {
		opt.Interval = 1
	}
	opt.Dtstart = time.Unix(c.dtstart, 0).UTC()
	if !opt.Until.IsZero() {
		c.until = opt.Until
		if len(strings.SplitN(strings.SplitN(text, "UNTIL=", 2)[1], ";", 2)[0]) == len("20060102") {
			// A date UNTIL includes that whole day.
			c.until = resolveWall(c.loc, wallOf(opt.Until, c.loc)+86400-1).At
		}
		// The floating rule runs a day past UNTIL; instances are cut by instant.
		opt.Until = time.Unix(wallOf(c.until, c.loc)+86400, 0).UTC()
	}
	explicitDefaults(opt)
	if _, err := rrule.NewRRule(*opt); err != nil {
		bad(err.Error())
		return
	}
	c.written = *opt
	c.opt = new(monthlyForm(*opt))
}

// monthlyForm is a yearly rule rewritten as the monthly rule with the same instances, where
// that is exact: every year and only some months (INTERVAL=1 and BYMONTH), and nothing that
// counts within the year (BYSETPOS, BYWEEKNO, BYYEARDAY, BYEASTER). rrule-go builds a day set
// of a whole year for each period of a yearly rule; a monthly one costs a month per period.
// With BYMONTH, a yearly rule's BYDAY=2TU already means the second Tuesday of each month.
func monthlyForm(opt rrule.ROption) rrule.ROption {
	if opt.Freq != rrule.YEARLY || opt.Interval != 1 || len(opt.Bymonth) == 0 ||
		len(opt.Bysetpos) > 0 || len(opt.Byweekno) > 0 || len(opt.Byyearday) > 0 || len(opt.Byeaster) > 0 {
		return opt
	}
	opt.Freq = rrule.MONTHLY
	return opt
}

// wallOf is instant t as wall seconds in loc.
func wallOf(t time.Time, loc *time.Location) int64 {
	_, off := t.In(loc).Zone()
	return t.Unix() + int64(off)
}

// pyWeekdays are rrule-go's weekdays, Monday first.
var pyWeekdays = []rrule.Weekday{rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU}

// explicitDefaults writes into opt the values rrule-go would take from DTSTART, so that the
// rule means the same from any later DTSTART at the start of one of its periods.
func explicitDefaults(opt *rrule.ROption) {
	ds := opt.Dtstart
	if len(opt.Byweekno) == 0 && len(opt.Byyearday) == 0 && len(opt.Bymonthday) == 0 &&
		len(opt.Byweekday) == 0 && len(opt.Byeaster) == 0 {
		switch opt.Freq {
		case rrule.YEARLY:
			if len(opt.Bymonth) == 0 {
				opt.Bymonth = []int{int(ds.Month())}
			}
			opt.Bymonthday = []int{ds.Day()}
		case rrule.MONTHLY:
			opt.Bymonthday = []int{ds.Day()}
		case rrule.WEEKLY:
			opt.Byweekday = []rrule.Weekday{pyWeekdays[(int(ds.Weekday())+6)%7]}
		}
	}
	if len(opt.Byhour) == 0 {
		opt.Byhour = []int{ds.Hour()}
	}
	if len(opt.Byminute) == 0 {
		opt.Byminute = []int{ds.Minute()}
	}
	if len(opt.Bysecond) == 0 {
		opt.Bysecond = []int{ds.Second()}
	}
}

// rebased is opt with DTSTART moved to the start of the last of its periods (by FREQ and
// INTERVAL) that begins at or before lo, so that expanding from it yields the same instances
// from lo on as expanding from the original DTSTART. A rule with COUNT is never moved.
func rebased(opt rrule.ROption, lo time.Time) rrule.ROption {
	ds := opt.Dtstart
	if opt.Count != 0 || !lo.After(ds) {
		return opt
	}
	iv := opt.Interval
	day0 := time.Date(ds.Year(), ds.Month(), ds.Day(), 0, 0, 0, 0, time.UTC)
	days := int(lo.Sub(day0) / (24 * time.Hour))
	var start time.Time
	switch opt.Freq {
	case rrule.DAILY:
		k := days / iv * iv
		if k <= 0 {
			return opt
		}
		start = day0.AddDate(0, 0, k)
	case rrule.WEEKLY:
		k := days / 7 / iv * iv
		if k <= 0 {
			return opt
		}
		start = day0.AddDate(0, 0, 7*k)
		// Back to the week's first day (WKST), where the original's periods begin.
		back := ((int(start.Weekday())+6)%7 - opt.Wkst.Day() + 7) % 7
		start = start.AddDate(0, 0, -back)
	case rrule.MONTHLY:
		k := ((lo.Year()-ds.Year())*12 + int(lo.Month()) - int(ds.Month())) / iv * iv
		if k <= 0 {
			return opt
		}
		start = time.Date(ds.Year(), ds.Month()+time.Month(k), 1, 0, 0, 0, 0, time.UTC)
	case rrule.YEARLY:
		k := (lo.Year() - ds.Year()) / iv * iv
		if k <= 0 {
			return opt
		}
		start = time.Date(ds.Year()+k, 1, 1, 0, 0, 0, 0, time.UTC)
	default:
		return opt
	}
	opt.Dtstart = start
	return opt
}

// bounded reports whether c has finitely many instances.
func (c *cfreeze) bounded() bool {
	return c.oneOff || c.opt == nil || c.opt.Count != 0 || !c.until.IsZero()
}

// lastEnd is an instant after every instance of a bounded freeze.
func (c *cfreeze) lastEnd() time.Time {
	switch {
	case c.oneOff:
		return c.f.End
	case c.opt == nil:
		return c.instance(c.dtstart).End
	case !c.until.IsZero():
		return c.until.Add(c.maxLen)
	}
	r, _ := rrule.NewRRule(*c.opt)
	last := c.dtstart
	next := r.Iterator()
	for t, ok := next(); ok; t, ok = next() {
		last = t.Unix()
	}
	return c.instance(last).End
}

// appendInstance appends to dst the instance starting at wall seconds w if it is not an
// EXDATE, does not start after UNTIL, and overlaps [from, to).
func (c *cfreeze) appendInstance(dst []Interval, w int64, from, to time.Time) []Interval {
	if c.excluded(w) {
		return dst
	}
	in := c.instance(w)
	if !c.until.IsZero() && in.Start.After(c.until) {
		return dst
	}
	if in.Start.Before(to) && in.End.After(from) {
		dst = append(dst, in)
	}
	return dst
}

// wallMonth is the index (year*12 + month-1) of the month of wall seconds w.
func wallMonth(w int64) int {
	t := time.Unix(w, 0).UTC()
	return t.Year()*12 + int(t.Month()) - 1
}

// startsIn lists the starts (wall seconds) of the rule's instances in wall month mi, EXDATEs
// left out. The rule is expanded from the start of the month's period (rebased), never from a
// DTSTART years ago, and each month once: the result is memoized, since the waves of a tenant,
// and every tenant for a provider's freeze, ask about the same months.
func (c *cfreeze) startsIn(mi int) []int64 {
	c.memoMu.Lock()
	starts, ok := c.memo[mi]
	c.memoMu.Unlock()
	if ok {
		return starts
	}
	lo := time.Date(mi/12, time.Month(mi%12+1), 1, 0, 0, 0, 0, time.UTC)
	hi := lo.AddDate(0, 1, 0)
	r, err := rrule.NewRRule(rebased(*c.opt, lo))
	if err != nil {
		return nil // not reachable: compileRule built the same rule
	}
	next := r.Iterator()
	for t, ok := next(); ok && t.Before(hi); t, ok = next() {
		if w := t.Unix(); !t.Before(lo) && !c.excluded(w) {
			starts = append(starts, w)
		}
	}
	c.memoMu.Lock()
	if c.memo == nil || len(c.memo) >= maxMemoMonths {
		c.memo = make(map[int][]int64, 4)
	}
	c.memo[mi] = starts
	c.memoMu.Unlock()
	return starts
}

// instance is the instance starting at wall seconds w.
func (c *cfreeze) instance(w int64) Interval {
	start := resolveWall(c.loc, w).At
	end := start
	if c.days > 0 {
		end = resolveWall(c.loc, w+int64(c.days)*86400).At
	}
	return Interval{Start: start, End: end.Add(c.dur)}
}

// excluded reports whether the instance starting at wall seconds w is an EXDATE.
func (c *cfreeze) excluded(w int64) bool {
	return c.exTimes[w] || (len(c.exDates) > 0 && c.exDates[civilOf(w).date()])
}

// overlapping appends to dst the instances that overlap [from, to), in order of start.
// A recurring rule is expanded over the wall-clock months from a little before from (the
// longest instance and a day for the zone's offset) to a day after to, each month memoized.
func (c *cfreeze) overlapping(from, to time.Time, dst []Interval) []Interval {
	if c.oneOff {
		if c.f.Start.Before(to) && c.f.End.After(from) {
			dst = append(dst, Interval{Start: c.f.Start.UTC(), End: c.f.End.UTC()})
		}
		return dst
	}
	if c.opt == nil {
		return c.appendInstance(dst, c.dtstart, from, to)
	}
	// Wall clock and instant differ by less than a day.
	lo := from.Add(-c.maxLen).Unix() - 86400
	hi := to.Unix() + 86400
	for mi := wallMonth(lo); mi <= wallMonth(hi); mi++ {
		for _, w := range c.startsIn(mi) {
			if w >= lo && w <= hi {
				dst = c.appendInstance(dst, w, from, to)
			}
		}
	}
	return dst
}
