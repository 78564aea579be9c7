package cloudsim

import (
	"encoding/base64"
	"sort"
	"strconv"
)

// ordered is an entity with a position in creation order: indexes keep entities sorted by it, and
// page tokens name the last position returned, so a page costs O(log n + page) whatever the size
// of the fleet.
type ordered interface {
	comparable
	order() uint64
}

// ordSet is a set of entities sorted by creation order. New entities have the highest order, so
// adding one is an append; a tag added to an old entity is a binary-search insert.
type ordSet[T ordered] struct {
	items []T
}

// search is the index of the first item whose order is >= ord.
func (s *ordSet[T]) search(ord uint64) int {
	return sort.Search(len(s.items), func(i int) bool { return s.items[i].order() >= ord })
}

func (s *ordSet[T]) add(x T) {
	n := len(s.items)
	if n == 0 || s.items[n-1].order() < x.order() {
		s.items = append(s.items, x)
		return
	}
	i := s.search(x.order())
	if i < n && s.items[i] == x {
		return
	}
	var zero T
	s.items = append(s.items, zero)
	copy(s.items[i+1:], s.items[i:])
	s.items[i] = x
}

func (s *ordSet[T]) remove(x T) {
	i := s.search(x.order())
	if i < len(s.items) && s.items[i] == x {
		s.items = append(s.items[:i], s.items[i+1:]...)
	}
}

func (s *ordSet[T]) len() int {
	if s == nil {
		return 0
	}
	return len(s.items)
}

// indexAdd adds x to the set under key, creating the set.
func indexAdd[K comparable, T ordered](m map[K]*ordSet[T], key K, x T) {
	indexSet(m, key).add(x)
}

// indexSet is the set under key, created when there is none.
func indexSet[K comparable, T ordered](m map[K]*ordSet[T], key K) *ordSet[T] {
	s := m[key]
	if s == nil {
		s = &ordSet[T]{}
		m[key] = s
	}
	return s
}

// indexRemove removes x from the set under key, dropping an empty set.
func indexRemove[K comparable, T ordered](m map[K]*ordSet[T], key K, x T) {
	if s := m[key]; s != nil {
		s.remove(x)
		if len(s.items) == 0 {
			delete(m, key)
		}
	}
}

// page walks the union of sources in creation order, from the first position after `after`,
// and returns up to limit items (limit <= 0: no limit) that match. more tells whether the walk
// stopped on a full page with candidates left; the next page starts after the last item.
func page[T ordered](sources []*ordSet[T], after uint64, limit int, match func(T) bool) (out []T, more bool) {
	pos := make([]int, len(sources))
	for i, s := range sources {
		if s != nil {
			pos[i] = s.search(after + 1)
		}
	}
	var last uint64
	for {
		best := -1
		for i, s := range sources {
			if s == nil || pos[i] >= len(s.items) {
				continue
			}
			if best < 0 || s.items[pos[i]].order() < sources[best].items[pos[best]].order() {
				best = i
			}
		}
		if best < 0 {
			return out, false
		}
		if limit > 0 && len(out) == limit {
			return out, true
		}
		x := sources[best].items[pos[best]]
		pos[best]++
		if x.order() == last {
			continue // the same entity in two sources
		}
		last = x.order()
		if match(x) {
			out = append(out, x)
		}
	}
}

// pageToken and parseToken carry the last position of a page; the prefix ties a token to the
// kind of listing it came from.
func pageToken(prefix string, ord uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(prefix + ":" + strconv.FormatUint(ord, 10)))
}

func parseToken(prefix, token string) (uint64, bool) {
	if token == "" {
		return 0, true
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) <= len(prefix)+1 || string(b[:len(prefix)+1]) != prefix+":" {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[len(prefix)+1:]), 10, 64)
	return n, err == nil
}
