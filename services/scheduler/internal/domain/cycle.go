package domain

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// A tenant's cycle is the set of its waves' occurrences that share one occurrence key: the
// anchor month "YYYY-MM" of libs/calendar (wave 1 on the second Tuesday of January and wave 3
// eleven days later are both cycle "2027-01", wherever an offset or a deferral puts them). The
// first run of a cycle to fire (or an operator's "patch now" in it) pins one baseline version
// per OS family; every run of the cycle installs that pin (docs/decisions.md).

// CyclePin is a tenant cycle's pin, stored once (claimed with a KV create).
type CyclePin struct {
	Tenant string `json:"tenant"`
	Cycle  string `json:"cycle"`
	Pins   []Pin  `json:"pins"`
	// RunID is the run whose firing pinned the cycle.
	RunID    string    `json:"run_id"`
	PinnedAt time.Time `json:"pinned_at"`
	// Announced is set once its CyclePinned event is stored; a reader of a pin without it
	// publishes the event (a crash between the pin and its event).
	Announced bool `json:"announced,omitempty"`
}

// ChoosePins is the pin of a new cycle: per OS family, the newest published baseline that is
// not an emergency one (highest version, then latest publication, then id), sorted by family.
// Without any, the cycle cannot be pinned (ErrFailedPrecondition).
func ChoosePins(published []Baseline) ([]Pin, error) {
	best := map[string]Baseline{}
	for _, b := range published {
		if b.Emergency {
			continue
		}
		cur, ok := best[b.OSFamily]
		if !ok || newer(b, cur) {
			best[b.OSFamily] = b
		}
	}
	if len(best) == 0 {
		return nil, fmt.Errorf("%w: no baseline is published: the cycle has nothing to pin", ErrFailedPrecondition)
	}
	out := make([]Pin, 0, len(best))
	for fam, b := range best {
		out = append(out, Pin{OSFamily: fam, BaselineID: b.ID, Version: b.Version, PatchIDs: b.PatchIDs})
	}
	slices.SortFunc(out, func(x, y Pin) int { return cmp.Compare(x.OSFamily, y.OSFamily) })
	return out, nil
}

func newer(a, b Baseline) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	if !a.PublishedAt.Equal(b.PublishedAt) {
		return a.PublishedAt.After(b.PublishedAt)
	}
	return a.ID > b.ID
}

// Unapproved lists the pinned baselines the tenant has not approved, in pin order; approved
// answers whether the tenant's last decision on a baseline is an approval.
func Unapproved(pins []Pin, approved func(baselineID string) bool) []string {
	var out []string
	for _, p := range pins {
		if !approved(p.BaselineID) {
			out = append(out, p.BaselineID)
		}
	}
	return out
}

// PinIDs are the baseline ids of a pin, in pin order.
func PinIDs(pins []Pin) []string {
	out := make([]string, len(pins))
	for i, p := range pins {
		out[i] = p.BaselineID
	}
	return out
}
