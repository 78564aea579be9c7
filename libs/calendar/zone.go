package calendar

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// locations caches loaded time zones: time.LoadLocation reads the zone database on every call,
// far too slow for 30,000 waves. A process sees a few hundred zones at most.
var locations sync.Map // string -> *time.Location

// loadLocation is time.LoadLocation with a cache. It refuses "" and "Local", which would make
// results depend on the machine; "UTC" is allowed.
func loadLocation(name string) (*time.Location, error) {
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	if name == "" || name == "Local" || strings.EqualFold(name, "local") {
		return nil, fmt.Errorf("%q is not an IANA time zone name", name)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown IANA time zone %q", name)
	}
	locations.Store(name, l)
	return l, nil
}

// civil is a calendar date and wall-clock time, to the second, without a zone.
type civil struct {
	Year  int
	Month time.Month
	Day   int
	Hour  int
	Min   int
	Sec   int
}

// wallSeconds is c as seconds since 1970-01-01 00:00 of the wall clock.
func (c civil) wallSeconds() int64 {
	return time.Date(c.Year, c.Month, c.Day, c.Hour, c.Min, c.Sec, 0, time.UTC).Unix()
}

// civilOf is the civil date and time of wall-clock seconds w.
func civilOf(w int64) civil {
	t := time.Unix(w, 0).UTC()
	y, m, d := t.Date()
	return civil{Year: y, Month: m, Day: d, Hour: t.Hour(), Min: t.Minute(), Sec: t.Second()}
}

// wallKind says how a wall-clock time maps to instants on its date.
type wallKind int

const (
	wallNormal wallKind = iota // exactly one instant
	wallGap                    // none (spring forward): read with the offset before the gap
	wallTwice                  // two instants (fall back): the first is used
)

// resolved is a wall-clock time resolved to an instant in a zone, with what happened.
type resolved struct {
	At   time.Time
	Kind wallKind
}

// resolveWall maps wall-clock seconds w in loc to an instant by RFC 5545: a time in a
// spring-forward gap is read with the UTC offset in force before the gap, a time that occurs
// twice is its first occurrence.
//
// It walks the zone's periods of constant offset (time.Time.ZoneBounds) over two days before
// and after w: the first period that holds w - offset gives the first occurrence; a boundary
// whose local time jumps over w is a gap.
func resolveWall(loc *time.Location, w int64) resolved {
	seg := time.Unix(w-2*86400, 0).In(loc)
	for {
		_, off := seg.Zone()
		start, end := seg.ZoneBounds()
		t := w - int64(off)
		if (start.IsZero() || t >= start.Unix()) && (end.IsZero() || t < end.Unix()) {
			kind := wallNormal
			if !end.IsZero() {
				// A second instant exists when the next period's offset also reads as w.
				_, off2 := end.In(loc).Zone()
				if t2 := w - int64(off2); off2 < off && t2 >= end.Unix() {
					kind = wallTwice
				}
			}
			return resolved{At: time.Unix(t, 0).UTC(), Kind: kind}
		}
		if end.IsZero() || end.Unix() > w+2*86400 {
			// Not reachable for real zones (offsets are within a day); be total anyway.
			return resolved{At: time.Unix(t, 0).UTC(), Kind: wallNormal}
		}
		next := end.In(loc)
		_, off2 := next.Zone()
		if off2 > off && end.Unix()+int64(off) <= w && w < end.Unix()+int64(off2) {
			return resolved{At: time.Unix(w-int64(off), 0).UTC(), Kind: wallGap}
		}
		seg = next
	}
}

// resolveCivil is resolveWall for a civil date and time.
func resolveCivil(loc *time.Location, c civil) resolved { return resolveWall(loc, c.wallSeconds()) }

// transition is one change of UTC offset.
type transition struct {
	At       time.Time // the instant of the change
	From, To int       // offsets before and after, in seconds
}

// transitions lists the offset changes in (from, to], at most a few.
func transitions(loc *time.Location, from, to time.Time) []transition {
	var out []transition
	t := from.In(loc)
	for i := 0; i < 8; i++ {
		_, end := t.ZoneBounds()
		if end.IsZero() || end.After(to) {
			return out
		}
		_, off := t.Zone()
		next := end.In(loc)
		_, off2 := next.Zone()
		if off2 != off {
			out = append(out, transition{At: end, From: off, To: off2})
		}
		t = next
	}
	return out
}

// dstNote describes how a window [start, end) in loc differs from its nominal length because
// of offset changes, and how its ends were resolved. It is empty on an ordinary day.
func dstNote(loc *time.Location, start, end time.Time, nominal time.Duration, rs, re resolved) string {
	var parts []string
	if diff := end.Sub(start) - nominal; diff != 0 {
		word := "longer"
		if diff < 0 {
			word, diff = "shorter", -diff
		}
		parts = append(parts, fmt.Sprintf("window is %s %s", shortDuration(diff), word))
		var changes []string
		from := start.Add(-time.Second)
		if rs.Kind == wallGap {
			from = start.Add(-3 * time.Hour) // the change that moved the start
		}
		for _, tr := range transitions(loc, from, end) {
			local := tr.At.Add(time.Duration(tr.From) * time.Second).UTC().Format("15:04")
			dir := "forward"
			if tr.To < tr.From {
				dir = "back"
			}
			changes = append(changes, fmt.Sprintf("clocks go %s at %s", dir, local))
		}
		if len(changes) > 0 {
			parts[0] += ": " + strings.Join(changes, ", ")
		}
	}
	for _, e := range []struct {
		what string
		r    resolved
	}{{"start", rs}, {"end", re}} {
		local := e.r.At.In(loc)
		switch e.r.Kind {
		case wallGap:
			parts = append(parts, fmt.Sprintf("%s time does not exist on %s and is read as %s %s",
				e.what, local.Format(time.DateOnly), local.Format("15:04"), zoneAbbrev(local)))
		case wallTwice:
			parts = append(parts, fmt.Sprintf("%s time occurs twice on %s; the first (%s %s) is used",
				e.what, local.Format(time.DateOnly), local.Format("15:04"), zoneAbbrev(local)))
		}
	}
	return strings.Join(parts, "; ")
}

// zoneAbbrev is t's zone abbreviation, or its UTC offset where the zone has none.
func zoneAbbrev(t time.Time) string {
	name, _ := t.Zone()
	if name == "" || name[0] == '+' || name[0] == '-' {
		return "UTC" + t.Format("-07:00")
	}
	return name
}

// shortDuration formats d as "1h", "30m" or "1h30m".
func shortDuration(d time.Duration) string {
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h > 0 && m > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case h > 0:
		return fmt.Sprintf("%dh", h)
	default:
		return fmt.Sprintf("%dm", m)
	}
}
