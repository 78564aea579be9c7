package domain

import (
	"fmt"
	"time"
)

// Baseline is a published, immutable set of certified patches that a run pins.
type Baseline struct {
	ID          string    `json:"id"`
	OSFamily    string    `json:"os_family"`
	Version     int32     `json:"version"`
	PatchIDs    []string  `json:"patch_ids"`
	PublishedAt time.Time `json:"published_at"`
}

// Newer reports whether b was published after o: later PublishedAt, then higher Version, then
// greater ID, so the order is total and "newest" never depends on the order of a listing.
func (b Baseline) Newer(o Baseline) bool {
	if !b.PublishedAt.Equal(o.PublishedAt) {
		return b.PublishedAt.After(o.PublishedAt)
	}
	if b.Version != o.Version {
		return b.Version > o.Version
	}
	return b.ID > o.ID
}

// Newest returns the newest baseline of bs; false when bs is empty.
func Newest(bs []Baseline) (Baseline, bool) {
	if len(bs) == 0 {
		return Baseline{}, false
	}
	n := bs[0]
	for _, b := range bs[1:] {
		if b.Newer(n) {
			n = b
		}
	}
	return n, true
}

// ResolveBaseline picks the baseline a run pins: the one named by id, which must be
// published, or the newest when id is empty. Either failure is ErrFailedPrecondition.
func ResolveBaseline(id string, published []Baseline) (Baseline, error) {
	if id == "" {
		b, ok := Newest(published)
		if !ok {
			return Baseline{}, fmt.Errorf("%w: no baseline is published yet", ErrFailedPrecondition)
		}
		return b, nil
	}
	for _, b := range published {
		if b.ID == id {
			return b, nil
		}
	}
	return Baseline{}, fmt.Errorf("%w: baseline %s is not published", ErrFailedPrecondition, id)
}
