// Package calendar computes, exactly and without reading a clock, when a patch wave's
// maintenance windows are and what change freezes do to them. It is pure: it imports only the
// standard library, libs/apierr (for field errors), rrule-go (RFC 5545 recurrence rules, for
// freezes) and go-ical (iCalendar files). Every function takes the instants it needs.
//
// # Schedule
//
// A Schedule is one wave's monthly maintenance window: a week of the month (1..4, or -1 for
// the last), a day of the week, an optional offset of -30..+30 days, a start and an end
// wall-clock time (HH:MM, 24-hour) in an IANA time zone, and optional validity dates.
//
//   - "Second Tuesday" is the second Tuesday of the month, always one of days 8-14 (the
//     clouds' meaning); "first" is one of days 1-7, "third" 15-21, "fourth" 22-28, and "last"
//     (-1) is the last one of the month, the fifth in a month with five. In a month with five
//     Tuesdays "fourth" is still the fourth.
//   - That weekday's month is the occurrence's anchor month. The offset moves the date by whole
//     calendar days, across month and year ends (29 February included), before the wall-clock
//     times are applied: "second Tuesday + 11" of January 2027 is 12 January + 11 = 23 January;
//     with -30 the occurrence anchored in February can fall in January.
//   - The window starts at Start on that date and ends at End on the same date, or on the next
//     date when End is at or before Start (so 22:00-02:00 crosses midnight, and equal times are
//     a whole day). The nominal length is therefore 1 minute to 24 hours. A window given as a
//     duration (the REST API's "duration": "4h", at most 24h) is converted once with
//     EndFromDuration into the end wall-clock time: the package has one representation, the
//     end time, so a window "of 4 hours" from 01:00 ends at 05:00 local time, which is 3 hours
//     on a spring-forward night like any other window.
//   - ValidFrom and ValidUntil are dates in the schedule's zone, both inclusive, compared with
//     the occurrence's date (the anchor date plus the offset, before any deferral). There are
//     no occurrences outside them: Occurrences and Next do not list such an occurrence, and
//     ByKey reports it as SKIPPED_OUTSIDE_VALIDITY.
//
// # Daylight saving time (RFC 5545)
//
// Start and end are wall-clock times. A time that does not exist on that date (the
// spring-forward gap) is read with the UTC offset in force before the gap, so 02:30 on the
// Berlin spring-forward night is 03:30 CEST (01:30 UTC); a time that occurs twice (fall back)
// means its first occurrence, so 02:30 on the Berlin fall-back night is 02:30 CEST. A window can
// therefore be an hour (30 minutes on Lord Howe Island) shorter or longer on those nights: the
// Occurrence carries the NominalDuration (wall clock), the actual Duration (End - Start) and a
// Note such as "window is 1h shorter: clocks go forward at 02:00". Go's time.Date does not
// follow this rule (it reads 02:30 on New York's spring-forward night as 01:30 EST, and 02:30
// on Berlin's fall-back night as 02:30 CET); this package resolves wall-clock times itself.
//
// # Occurrence keys and order
//
// An occurrence's Key is its anchor month, "YYYY-MM" ("2027-01" for the occurrence anchored on
// the second Tuesday of January 2027, wherever the offset or a deferral puts it). The run
// engine derives run ids from (tenant, wave, key), so the key survives every change of the
// schedule that keeps it monthly: start or end time, offset, week of month, day of week and
// time zone all keep the key, which names "this wave's window of that month's patch cycle".
// A changed offset can move a month's occurrence into the past; it is then not listed again.
// Occurrences are listed in key order, which is also the order of their nominal starts (the
// offset is the same for every month); a deferred occurrence keeps its place in that order.
//
// # Change freezes
//
// A Freeze is either a one-off range [Start, End) of instants, or local instances: a DTStart
// wall-clock time in an IANA zone, repeated by an RFC 5545 RRULE (optional) minus EXDATEs, each
// lasting Days nominal days (wall clock, as RFC 5545's "P1D") plus Duration exact time. Freezes
// are imported from iCalendar files with ParseICS. Recurrence instances follow the same DST rule
// as windows. A rule without COUNT or UNTIL never ends, which is allowed: every question the
// package answers has its own horizon, and a rule is only ever expanded over the wall-clock
// months a question touches (an occurrence's window, less the longest instance and a day,
// plus its deferral period), each from the start of that month's period of the rule, never
// from DTSTART over years. Expanded months and compiled freezes are memoized (bounded), since
// a tenant's waves, and all tenants for a provider's freeze, ask about the same months.
// Freeze.Instances, the only function that lists a freeze's instances, requires an end (its
// horizon, at most five years) for a rule that never ends. A COUNT is limited to MaxCount,
// because counting has to start at DTSTART. FREQ is DAILY, WEEKLY, MONTHLY or YEARLY (an
// hourly freeze rule is refused: rrule-go's sub-daily rules misbehave across DST). DTSTART
// should be an instance of its rule, as RFC 5545 asks; one that is not is not an instance.
//
// A freeze applies to an occurrence when it overlaps the window:
//
//   - A freeze instance that contains the window's start (start <= window start < end) blocks
//     the occurrence: by the freeze's Policy it is SKIPPED_FROZEN ("skip"), or DEFERRED
//     ("defer" within DeferDays, 1..30): moved to the same wall-clock start time on the first
//     later day, at most DeferDays calendar days after the original date, whose whole window
//     (computed like the original one, from Start and End on that day) overlaps no freeze at
//     all. If there is none the occurrence is SKIPPED_FROZEN and Reason says why.
//   - A freeze that starts inside the window (window start < freeze start < window end) keeps
//     the occurrence but sets DispatchStopAt to the earliest such freeze start: no VM may start
//     from then on, as at the cutoff.
//   - When several freezes block an occurrence the strictest wins: skip beats defer, and among
//     defers the smallest DeferDays is used. Freezes lists the id of every freeze that overlaps
//     the nominal window, in the order of Options.Freezes.
//   - An emergency override for one occurrence (Options.Overrides, by key, with a reason)
//     ignores every freeze for it: the occurrence keeps its nominal window, without
//     DispatchStopAt, and is OVERRIDDEN when a freeze would have applied.
//
// # Statuses
//
// In order of precedence: SKIPPED_PAUSED (the wave is paused), SKIPPED_BY_REQUEST (its key is in
// Options.SkipKeys: "skip the next occurrence"), OVERRIDDEN, SKIPPED_FROZEN, DEFERRED,
// SCHEDULED. SKIPPED_OUTSIDE_VALIDITY is only returned by ByKey. Skipped occurrences are listed
// (a preview marks them), with the nominal window.
//
// # API
//
//	ParseClock("02:00")                        // Clock{2, 0}; "25:00" is an error naming the rule
//	EndFromDuration(start, "4h")               // the end wall-clock time of a 4-hour window
//	Schedule.Validate(), Freeze.Validate()     // *apierr.ValidationError, fields as in the REST API
//	ParseICS(r, "Europe/Berlin")               // freezes from an iCalendar file
//	Occurrences(s, o, from, count)             // the next count occurrences whose window ends after from
//	Next(s, o, after)                          // the first of those, and false when there is none
//	ByKey(s, o, "2027-01")                     // one occurrence by key, e.g. when a run is fired
//	Freeze.Instances(from, to)                 // a freeze's instances overlapping [from, to)
//
// Field names in errors are the REST API's JSON names: "schedule.weekOfMonth",
// "schedule.dayOfWeek", "schedule.offsetDays", "schedule.startTime", "schedule.endTime",
// "schedule.duration", "schedule.timeZone", "schedule.validFrom", "schedule.validUntil";
// "freeze.id", "freeze.policy", "freeze.deferDays", "freeze.start", "freeze.end",
// "freeze.rrule", "freeze.dtStart", "freeze.timeZone", "freeze.duration", "freeze.days",
// "freeze.exDates[i]"; "options.skipKeys[i]", "options.overrides[key]", "count".
package calendar
