package store

import (
	"maps"
	"slices"
)

// smallSetMax is the most members a Memory set keeps as a sorted slice; a set that grows past
// it becomes a map. Most of patchd's sets have one member (the runs of an instance, the
// instances of one outcome in one run chunk), and a one-member Go map costs about five
// times a one-element slice; a slice of up to eight is searched as fast as a map is hashed.
const smallSetMax = 8

// memSet is one Memory set: its members in small, sorted, until they are more than
// smallSetMax, then in big (and small is nil). It never goes back to a slice: a set that
// grew once is likely to grow again, and a shrinking one is about to be deleted.
type memSet struct {
	small []string
	big   map[string]struct{}
}

// newMemSet returns an empty set with room for n members.
func newMemSet(n int) *memSet {
	if n > smallSetMax {
		return &memSet{big: make(map[string]struct{}, n)}
	}
	return &memSet{small: make([]string, 0, n)}
}

// add adds member and reports whether it was new.
func (s *memSet) add(member string) bool {
	if s.big != nil {
		if _, ok := s.big[member]; ok {
			return false
		}
		s.big[member] = struct{}{}
		return true
	}
	i, found := slices.BinarySearch(s.small, member)
	if found {
		return false
	}
	if len(s.small) < smallSetMax {
		s.small = slices.Insert(s.small, i, member)
		return true
	}
	s.big = make(map[string]struct{}, 2*smallSetMax)
	for _, m := range s.small {
		s.big[m] = struct{}{}
	}
	s.big[member] = struct{}{}
	s.small = nil
	return true
}

// remove removes member and reports whether it was there.
func (s *memSet) remove(member string) bool {
	if s.big != nil {
		if _, ok := s.big[member]; !ok {
			return false
		}
		delete(s.big, member)
		return true
	}
	i, found := slices.BinarySearch(s.small, member)
	if !found {
		return false
	}
	s.small = slices.Delete(s.small, i, i+1)
	return true
}

// has reports whether member is in the set.
func (s *memSet) has(member string) bool {
	if s.big != nil {
		_, ok := s.big[member]
		return ok
	}
	_, found := slices.BinarySearch(s.small, member)
	return found
}

// len is the number of members; a nil set is empty.
func (s *memSet) len() int {
	switch {
	case s == nil:
		return 0
	case s.big != nil:
		return len(s.big)
	}
	return len(s.small)
}

// sorted returns a sorted copy of the members, never nil; a nil set is empty.
func (s *memSet) sorted() []string {
	switch {
	case s == nil:
		return []string{}
	case s.big != nil:
		return slices.Sorted(maps.Keys(s.big))
	}
	return append(make([]string, 0, len(s.small)), s.small...)
}
