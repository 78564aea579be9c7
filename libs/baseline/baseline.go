// Package baseline holds the one meaning of "newest baseline" that every service uses: within
// one OS family, the baseline with the highest version. The catalog assigns versions per OS
// family and refuses a second baseline with a family and version already published, so two
// baselines of a family never share a version and "newest" is never a tie. Publication time
// plays no part: a clock that goes backwards, or a late replay, cannot change the answer.
//
// The package is pure (no infrastructure), so the catalog and the scheduler share it.
package baseline

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Ref identifies one published baseline version.
type Ref struct {
	// ID is the baseline id, e.g. "al2023-2026.11".
	ID string
	// OSFamily, e.g. "amazon-linux-2023".
	OSFamily string
	// Version counts the OS family's baselines from 1.
	Version int32
}

// ErrNoBaseline is returned when no baseline of the family is published.
var ErrNoBaseline = errors.New("no baseline is published")

// ErrFamilyRequired is returned when no OS family is named and several are published, so
// "newest" would mean nothing.
var ErrFamilyRequired = errors.New("several OS families are published: name the OS family or the baseline")

// Compare orders refs by OS family, then version, then id (the id only breaks ties the
// catalog never lets happen, so the order stays total for any input).
func Compare(a, b Ref) int {
	return cmp.Or(strings.Compare(a.OSFamily, b.OSFamily), cmp.Compare(a.Version, b.Version), strings.Compare(a.ID, b.ID))
}

// Newest returns the index in items of the newest baseline of family: the highest version.
// An empty family means the only family published; with several it is ErrFamilyRequired.
func Newest[T any](items []T, ref func(T) Ref, family string) (int, error) {
	best := -1
	for i, it := range items {
		r := ref(it)
		if family == "" && best >= 0 && r.OSFamily != ref(items[best]).OSFamily {
			return -1, ErrFamilyRequired
		}
		if family != "" && r.OSFamily != family {
			continue
		}
		if best < 0 || Compare(r, ref(items[best])) > 0 {
			best = i
		}
	}
	if best < 0 {
		if family != "" {
			return -1, fmt.Errorf("%w for OS family %q", ErrNoBaseline, family)
		}
		return -1, ErrNoBaseline
	}
	return best, nil
}

// SortNewestFirst sorts items by OS family, and within a family newest (highest version)
// first: the order of a baseline listing.
func SortNewestFirst[T any](items []T, ref func(T) Ref) {
	slices.SortStableFunc(items, func(x, y T) int {
		a, b := ref(x), ref(y)
		if c := strings.Compare(a.OSFamily, b.OSFamily); c != 0 {
			return c
		}
		return -Compare(a, b)
	})
}
