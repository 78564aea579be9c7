package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/baseline"
)

// Baseline is a published, immutable set of certified patches that a run pins.
type Baseline struct {
	ID          string    `json:"id"`
	OSFamily    string    `json:"os_family"`
	Version     int32     `json:"version"`
	PatchIDs    []string  `json:"patch_ids"`
	PublishedAt time.Time `json:"published_at"`
	// Emergency marks an out-of-band baseline, which a cycle never pins by itself.
	Emergency bool `json:"emergency,omitempty"`
}

// ref is the shared identity of a baseline version for libs/baseline.
func ref(b Baseline) baseline.Ref {
	return baseline.Ref{ID: b.ID, OSFamily: b.OSFamily, Version: b.Version}
}

// ResolveBaseline picks the baseline a run pins: the one named by id, which must be
// published, or the newest when id is empty. "Newest" is libs/baseline's rule, the catalog's
// too: the highest version of the OS family (with several families published, a run must name
// its baseline). Either failure is ErrFailedPrecondition.
func ResolveBaseline(id string, published []Baseline) (Baseline, error) {
	if id == "" {
		i, err := baseline.Newest(published, ref, "")
		if err != nil {
			return Baseline{}, fmt.Errorf("%w: %w", ErrFailedPrecondition, err)
		}
		return published[i], nil
	}
	for _, b := range published {
		if b.ID == id {
			return b, nil
		}
	}
	return Baseline{}, fmt.Errorf("%w: baseline %s is not published", ErrFailedPrecondition, id)
}

// Pin is the baseline one OS family installs in a run.
type Pin struct {
	OSFamily   string   `json:"os_family"`
	BaselineID string   `json:"baseline_id"`
	Version    int32    `json:"version"`
	PatchIDs   []string `json:"patch_ids,omitempty"`
}

// ResolvePins picks the baseline of every OS family a run installs: the newest published
// version of each family (libs/baseline's rule), except that a named baseline id, which must
// be published, is its family's pin. Nothing published is ErrFailedPrecondition. The pins are
// sorted by OS family.
func ResolvePins(id string, published []Baseline) ([]Pin, error) {
	if len(published) == 0 {
		return nil, fmt.Errorf("%w: no baseline is published", ErrFailedPrecondition)
	}
	var named *Baseline
	if id != "" {
		for i := range published {
			if published[i].ID == id {
				named = &published[i]
			}
		}
		if named == nil {
			return nil, fmt.Errorf("%w: baseline %s is not published", ErrFailedPrecondition, id)
		}
	}
	families := map[string]bool{}
	for _, b := range published {
		families[b.OSFamily] = true
	}
	pins := make([]Pin, 0, len(families))
	for f := range families {
		var b Baseline
		if named != nil && named.OSFamily == f {
			b = *named
		} else {
			i, err := baseline.Newest(published, ref, f)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrFailedPrecondition, err)
			}
			b = published[i]
		}
		pins = append(pins, Pin{OSFamily: f, BaselineID: b.ID, Version: b.Version, PatchIDs: b.PatchIDs})
	}
	slices.SortFunc(pins, func(a, b Pin) int { return strings.Compare(a.OSFamily, b.OSFamily) })
	return pins, nil
}
