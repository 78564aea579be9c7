package calendar

import (
	"fmt"
	"strconv"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
)

// Clock is a wall-clock time of day, to the minute, in 24-hour form: 00:00 to 23:59.
type Clock struct {
	// Hour is 0..23.
	Hour int
	// Minute is 0..59.
	Minute int
}

// clockRule is the rule every wall-clock time in the API follows.
const clockRule = "must be a 24-hour wall-clock time HH:MM from 00:00 to 23:59"

// ParseClock reads "HH:MM" (24-hour, two digits each, 00:00 to 23:59). Its error states the
// rule and the value ("must be a 24-hour wall-clock time HH:MM from 00:00 to 23:59, got
// \"25:00\"") and matches apierr.ErrInvalidArgument; the caller adds the field name.
func ParseClock(s string) (Clock, error) {
	bad := ruleError(fmt.Sprintf("%s, got %q", clockRule, s))
	if len(s) != 5 || s[2] != ':' {
		return Clock{}, bad
	}
	h, herr := strconv.Atoi(s[:2])
	m, merr := strconv.Atoi(s[3:])
	if herr != nil || merr != nil || s[0] == '+' || s[0] == '-' || s[3] == '+' || s[3] == '-' {
		return Clock{}, bad
	}
	c := Clock{Hour: h, Minute: m}
	if !c.valid() {
		return Clock{}, bad
	}
	return c, nil
}

// String is the clock as "HH:MM".
func (c Clock) String() string { return fmt.Sprintf("%02d:%02d", c.Hour, c.Minute) }

// valid reports whether c is within 00:00..23:59.
func (c Clock) valid() bool { return c.Hour >= 0 && c.Hour <= 23 && c.Minute >= 0 && c.Minute <= 59 }

// minutes is the number of minutes since midnight.
func (c Clock) minutes() int { return c.Hour*60 + c.Minute }

// MaxWindow is the longest maintenance window (nominal, wall clock).
const MaxWindow = 24 * time.Hour

// EndFromDuration converts a window given as a duration (the REST API's "duration", in Go's
// time.ParseDuration form such as "4h" or "1h30m", whole minutes, 1m to 24h) into the end
// wall-clock time a Schedule carries: start + duration on the wall clock, so "4h" from 22:00
// ends at 02:00 the next day and "24h" ends at the start time (a whole day). A bad duration is
// a *apierr.ValidationError on "schedule.duration".
func EndFromDuration(start Clock, duration string) (Clock, error) {
	d, err := time.ParseDuration(duration)
	switch {
	case err != nil:
		return Clock{}, fieldError("schedule.duration",
			fmt.Sprintf("must be a duration such as \"4h\" or \"1h30m\", got %q", duration))
	case d < time.Minute || d > MaxWindow:
		return Clock{}, fieldError("schedule.duration",
			fmt.Sprintf("a window lasts from 1m to 24h, got %q", duration))
	case d%time.Minute != 0:
		return Clock{}, fieldError("schedule.duration",
			fmt.Sprintf("must be whole minutes, got %q", duration))
	}
	end := (start.minutes() + int(d/time.Minute)) % (24 * 60)
	return Clock{Hour: end / 60, Minute: end % 60}, nil
}

// ruleError is an error that states a rule; it matches apierr.ErrInvalidArgument.
type ruleError string

// Error is the rule.
func (e ruleError) Error() string { return string(e) }

// Is makes errors.Is(err, apierr.ErrInvalidArgument) true.
func (e ruleError) Is(target error) bool { return target == apierr.ErrInvalidArgument }

// fieldError is a *apierr.ValidationError with one violation.
func fieldError(field, rule string) error {
	var v apierr.Violations
	v.Add(field, rule)
	return v.Err()
}
