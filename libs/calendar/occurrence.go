package calendar

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
)

// Status is what becomes of an occurrence.
type Status string

// Occurrence statuses; the package comment gives their precedence.
const (
	// StatusScheduled runs in its nominal window (possibly with DispatchStopAt).
	StatusScheduled Status = "SCHEDULED"
	// StatusSkippedFrozen is not run: its window starts in a freeze with policy skip, or in one
	// with policy defer and no free window was found in time.
	StatusSkippedFrozen Status = "SKIPPED_FROZEN"
	// StatusDeferred runs in a later window (Start, End) instead of its nominal one.
	StatusDeferred Status = "DEFERRED"
	// StatusOverridden runs in its nominal window although freezes apply: an emergency override.
	StatusOverridden Status = "OVERRIDDEN"
	// StatusSkippedPaused is not run: the wave is paused.
	StatusSkippedPaused Status = "SKIPPED_PAUSED"
	// StatusSkippedByRequest is not run: its key was asked to be skipped.
	StatusSkippedByRequest Status = "SKIPPED_BY_REQUEST"
	// StatusSkippedOutsideValidity is not run: its date is outside the schedule's validity
	// dates. Only ByKey returns it.
	StatusSkippedOutsideValidity Status = "SKIPPED_OUTSIDE_VALIDITY"
)

// Skipped reports whether the occurrence is not run.
func (s Status) Skipped() bool { return strings.HasPrefix(string(s), "SKIPPED_") }

// MaxOccurrences is the most occurrences one call lists.
const MaxOccurrences = 1000

// Options is the state around a schedule that changes its occurrences.
type Options struct {
	// Paused makes every occurrence SKIPPED_PAUSED.
	Paused bool
	// SkipKeys are occurrence keys ("2027-01") to skip: "skip the next occurrence".
	SkipKeys []string
	// Overrides maps an occurrence key to the reason of an emergency override, which makes that
	// occurrence ignore every freeze. The reason is required (it is audited).
	Overrides map[string]string
	// Freezes are the tenant's and the provider's freezes.
	Freezes []Freeze
}

// Occurrence is one window of one wave, with freezes applied.
type Occurrence struct {
	// Key names the occurrence: its anchor month "YYYY-MM". Run ids derive from it.
	Key string
	// Start and End are the window to run in (UTC): the nominal window, or the later one for a
	// DEFERRED occurrence. For a skipped occurrence, the nominal window.
	Start, End time.Time
	// OriginalStart and OriginalEnd are the nominal window (UTC), before any deferral.
	OriginalStart, OriginalEnd time.Time
	// Status is what becomes of the occurrence.
	Status Status
	// NominalDuration is the window's wall-clock length (End - Start on the wall clock).
	NominalDuration time.Duration
	// Duration is End - Start: NominalDuration, or an hour (30 minutes) less or more when the
	// clocks change inside the window.
	Duration time.Duration
	// Note says, for people, how DST changed the window (for Start and End); empty otherwise.
	Note string
	// DispatchStopAt is set when a freeze starts inside the window: no VM may start from then
	// on. Zero otherwise.
	DispatchStopAt time.Time
	// Freezes are the ids of the freezes that overlap the nominal window, in Options order.
	Freezes []string
	// Reason explains a status other than SCHEDULED, or a DispatchStopAt (the override's
	// reason for OVERRIDDEN).
	Reason string
}

// Occurrences lists the next count (1..MaxOccurrences) occurrences whose window (Start, End,
// after any deferral) ends after from, with freezes applied, in key order (which is the order
// of their nominal starts). It lists fewer when the validity dates end first.
func Occurrences(s Schedule, o Options, from time.Time, count int) ([]Occurrence, error) {
	if count < 1 || count > MaxOccurrences {
		return nil, fieldError("count", fmt.Sprintf("must be from 1 to %d, got %d", MaxOccurrences, count))
	}
	e, err := newEngine(s, o)
	if err != nil {
		return nil, err
	}
	return e.list(from, count), nil
}

// Next is the first occurrence whose window ends after after (so a window in progress is
// next), and false when the validity dates leave none.
func Next(s Schedule, o Options, after time.Time) (Occurrence, bool, error) {
	occ, err := Occurrences(s, o, after, 1)
	if err != nil || len(occ) == 0 {
		return Occurrence{}, false, err
	}
	return occ[0], true, nil
}

// ByKey is the occurrence with key ("YYYY-MM"), as Occurrences would list it, or with status
// SKIPPED_OUTSIDE_VALIDITY when its date is outside the validity dates.
func ByKey(s Schedule, o Options, key string) (Occurrence, error) {
	m, ok := parseKey(key)
	if !ok {
		return Occurrence{}, fieldError("key", fmt.Sprintf("must be an occurrence key YYYY-MM, got %q", key))
	}
	e, err := newEngine(s, o)
	if err != nil {
		return Occurrence{}, err
	}
	return e.occurrence(m), nil
}

// engine answers questions about one schedule under one set of options.
type engine struct {
	p        *plan
	o        Options
	freezes  []*cfreeze
	skip     map[string]bool
	maxDefer int
}

// newEngine validates s and o and prepares them.
func newEngine(s Schedule, o Options) (*engine, error) {
	p, err := s.compile()
	var v apierr.Violations
	v = appendViolations(v, err)
	e := &engine{p: p, o: o, skip: make(map[string]bool, len(o.SkipKeys))}
	for i, k := range o.SkipKeys {
		if _, ok := parseKey(k); !ok {
			v.Add(fmt.Sprintf("options.skipKeys[%d]", i), fmt.Sprintf("must be an occurrence key YYYY-MM, got %q", k))
		}
		e.skip[k] = true
	}
	for k, reason := range o.Overrides {
		if _, ok := parseKey(k); !ok {
			v.Add(fmt.Sprintf("options.overrides[%s]", k), "the key must be an occurrence key YYYY-MM")
		} else if strings.TrimSpace(reason) == "" {
			v.Add(fmt.Sprintf("options.overrides[%s]", k), "an emergency override needs a reason")
		}
	}
	ids := make(map[string]int, len(o.Freezes))
	for i, f := range o.Freezes {
		prefix := func() string { return fmt.Sprintf("options.freezes[%d].", i) }
		c, err := f.cachedCompile(prefix)
		if err != nil {
			v = appendViolations(v, err)
			continue
		}
		if j, dup := ids[f.ID]; dup {
			v.Add(prefix()+"id", fmt.Sprintf("must be unique, %q is also freezes[%d]", f.ID, j))
		}
		ids[f.ID] = i
		e.freezes = append(e.freezes, c)
		e.maxDefer = max(e.maxDefer, f.DeferDays)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return e, nil
}

// appendViolations appends the violations of a *apierr.ValidationError err to v.
func appendViolations(v apierr.Violations, err error) apierr.Violations {
	var ve *apierr.ValidationError
	if errors.As(err, &ve) {
		return append(v, ve.Violations...)
	}
	if err != nil {
		v.Add("options", err.Error()) // not reached: compile reports violations only
	}
	return v
}

// list is Occurrences after validation.
func (e *engine) list(from time.Time, count int) []Occurrence {
	m := e.p.monthOf(from).add(-3)
	if e.p.from != nil {
		m = latest(m, month{e.p.from.Year, e.p.from.Month}.add(-2))
	}
	// The latest an occurrence's effective window can end after its nominal start.
	reach := time.Duration(e.maxDefer+2) * 24 * time.Hour
	var out []Occurrence
	for i := 0; len(out) < count && i < 12*10000; i, m = i+1, m.add(1) {
		d := e.p.occurrenceDate(m)
		if e.p.till != nil && e.p.till.before(d) {
			break
		}
		if !e.p.valid(d) {
			continue
		}
		if w := e.p.windowOn(d); !w.Start.Add(reach).After(from) {
			continue
		}
		if occ := e.occurrence(m); occ.End.After(from) {
			out = append(out, occ)
		}
	}
	return out
}

// latest is the later of two months.
func latest(a, b month) month {
	if b.Year > a.Year || b.Year == a.Year && b.Month > a.Month {
		return b
	}
	return a
}

// occurrence computes the occurrence anchored in m.
func (e *engine) occurrence(m month) Occurrence {
	d := e.p.occurrenceDate(m)
	w := e.p.windowOn(d)
	occ := e.withWindow(Occurrence{
		Key: m.key(), OriginalStart: w.Start, OriginalEnd: w.End,
		Status: StatusScheduled, NominalDuration: e.p.nominal,
	}, w)
	if !e.p.valid(d) {
		occ.Status = StatusSkippedOutsideValidity
		occ.Reason = fmt.Sprintf("%s is outside the schedule's validity dates (%s to %s)", d, orOpen(e.p.from), orOpen(e.p.till))
		return occ
	}

	// Which freezes overlap the nominal window, and how.
	var blockSkip, blockDefer []string
	deferDays := 0
	var stopAt time.Time
	var stopBy string
	var buf []Interval
	for _, c := range e.freezes {
		buf = c.overlapping(w.Start, w.End, buf[:0])
		if len(buf) == 0 {
			continue
		}
		occ.Freezes = append(occ.Freezes, c.f.ID)
		for _, in := range buf {
			switch {
			case !in.Start.After(w.Start) && c.f.Policy == PolicySkip:
				blockSkip = appendOnce(blockSkip, c.f.ID)
			case !in.Start.After(w.Start):
				blockDefer = appendOnce(blockDefer, c.f.ID)
				if deferDays == 0 || c.f.DeferDays < deferDays {
					deferDays = c.f.DeferDays
				}
			case stopAt.IsZero() || in.Start.Before(stopAt):
				stopAt, stopBy = in.Start, c.f.ID
			}
		}
	}

	reason, override := e.o.Overrides[occ.Key]
	switch {
	case e.o.Paused:
		occ.Status, occ.Reason = StatusSkippedPaused, "the wave is paused"
	case e.skip[occ.Key]:
		occ.Status, occ.Reason = StatusSkippedByRequest, "skipped on request (skip next occurrence)"
	case override && len(occ.Freezes) > 0:
		occ.Status, occ.Reason = StatusOverridden, reason
	case override:
	case len(blockSkip) > 0:
		occ.Status = StatusSkippedFrozen
		occ.Reason = fmt.Sprintf("the window starts in freeze %s (policy skip)", quoteList(blockSkip))
	case len(blockDefer) > 0:
		occ = e.deferred(occ, d, deferDays, blockDefer)
	case !stopAt.IsZero():
		occ.DispatchStopAt = stopAt
		occ.Reason = fmt.Sprintf("freeze %q starts at %s inside the window: dispatch stops then",
			stopBy, stopAt.In(e.p.loc).Format("2006-01-02 15:04 MST"))
	}
	return occ
}

// withWindow sets occ's window to w.
func (e *engine) withWindow(occ Occurrence, w window) Occurrence {
	occ.Start, occ.End = w.Start, w.End
	occ.Duration = w.End.Sub(w.Start)
	occ.Note = e.p.note(w)
	return occ
}

// deferred moves occ (on date d) to the first later day, within days, whose whole window
// overlaps no freeze; or skips it.
func (e *engine) deferred(occ Occurrence, d date, days int, by []string) Occurrence {
	last := e.p.windowOn(d.addDays(days))
	busy := make([][]Interval, len(e.freezes))
	for i, c := range e.freezes {
		busy[i] = c.overlapping(occ.OriginalEnd, last.End, nil)
	}
	for k := 1; k <= days; k++ {
		w := e.p.windowOn(d.addDays(k))
		if free(busy, w) {
			occ = e.withWindow(occ, w)
			occ.Status = StatusDeferred
			occ.Reason = fmt.Sprintf("deferred by %d day(s) from %s: the window starts in freeze %s (policy defer)",
				k, occ.OriginalStart.In(e.p.loc).Format("2006-01-02 15:04 MST"), quoteList(by))
			return occ
		}
	}
	occ.Status = StatusSkippedFrozen
	occ.Reason = fmt.Sprintf("the window starts in freeze %s (policy defer) and no whole %s window at %s is free of freezes in the %d day(s) after",
		quoteList(by), shortDuration(e.p.nominal), e.p.s.Start, days)
	return occ
}

// free reports whether w overlaps none of the intervals.
func free(busy [][]Interval, w window) bool {
	for _, list := range busy {
		for _, in := range list {
			if in.Start.Before(w.End) && in.End.After(w.Start) {
				return false
			}
		}
	}
	return true
}

// appendOnce appends s unless list already ends with it.
func appendOnce(list []string, s string) []string {
	if len(list) > 0 && list[len(list)-1] == s {
		return list
	}
	return append(list, s)
}

// quoteList is `"a"` or `"a", "b"`.
func quoteList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}

// orOpen is d as a string, or "open" when nil.
func orOpen(d *date) string {
	if d == nil {
		return "open"
	}
	return d.String()
}
