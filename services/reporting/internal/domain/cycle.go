package domain

import (
	"slices"
	"time"
)

// A tenant's cycle is its patch month: the scheduler's occurrence key "YYYY-MM" (the anchor
// month of libs/calendar). The cycle's first run pins one baseline version per OS family
// (cycle.pinned) and every wave of the cycle installs that pin, so compliance within a cycle
// is measured against it. Reporting follows the cycle as the stream tells it: the newest
// cycle pinned, or, once an event of a later UTC month arrives, that month, not pinned yet.
//
// The baseline that applies to an instance (ApplicableFamily) is its OS family's pin in the
// tenant's current cycle; for a cycle not pinned yet, or a family the pin does not name, the
// newest baseline the tenant approved for the family (what a run would pin now, so a new month
// measures against what its waves will install). Within a pinned cycle a baseline approved
// after the pin changes nothing until the next cycle.

// Pin is the baseline version a cycle pinned for one OS family.
type Pin struct {
	OSFamily   string `json:"f"`
	BaselineID string `json:"id"`
	Version    int32  `json:"v"`
}

// Cycle is a tenant's current cycle as reporting knows it.
type Cycle struct {
	// Key is the cycle ("YYYY-MM"); empty before the tenant's first event with a time.
	Key string `json:"k"`
	// Pins is the cycle's pin, sorted by OS family; empty until cycle.pinned.
	Pins []Pin `json:"p,omitempty"`
	// RunID is the run whose firing pinned the cycle, PinnedAt when.
	RunID    string    `json:"r,omitempty"`
	PinnedAt time.Time `json:"t,omitzero"`
}

// CycleOf is the cycle key of a time: its UTC month.
func CycleOf(t time.Time) string { return t.UTC().Format("2006-01") }

// Pinned says whether the cycle has its pin.
func (c Cycle) Pinned() bool { return len(c.Pins) > 0 }

// Pin returns the cycle's pin of an OS family.
func (c Cycle) Pin(family string) (Pin, bool) {
	for _, p := range c.Pins {
		if p.OSFamily == family {
			return p, true
		}
	}
	return Pin{}, false
}

// At returns the cycle in force at t: c, or the later cycle of t's month, not pinned yet.
func (c Cycle) At(t time.Time) Cycle {
	if t.IsZero() {
		return c
	}
	if k := CycleOf(t); k > c.Key {
		return Cycle{Key: k}
	}
	return c
}

// WithPin returns the cycle after a cycle.pinned of cycle key: the pinned cycle when it is the
// current one or a later one (a wave with a negative day offset can pin next month's cycle
// early), and whether it changed; a pin of an earlier cycle changes nothing.
func (c Cycle) WithPin(key string, pins []Pin, runID string, at time.Time) (Cycle, bool) {
	if key == "" || key < c.Key {
		return c, false
	}
	pins = slices.Clone(pins)
	slices.SortFunc(pins, func(a, b Pin) int {
		switch {
		case a.OSFamily < b.OSFamily:
			return -1
		case a.OSFamily > b.OSFamily:
			return 1
		}
		return 0
	})
	next := Cycle{Key: key, Pins: pins, RunID: runID, PinnedAt: at.UTC()}
	if key == c.Key && slices.Equal(c.Pins, next.Pins) {
		return c, false
	}
	return next, true
}

// ApplicableFamily returns the id of the baseline an OS family is measured against in cycle c:
// the family's pin, else the newest baseline the tenant approved for it (approved, "" if none).
func (c Cycle) ApplicableFamily(family, approved string) string {
	if p, ok := c.Pin(family); ok {
		return p.BaselineID
	}
	return approved
}
