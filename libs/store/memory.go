package store

import (
	"context"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Memory is an in-process Store for patchd and tests. The zero value is not
// usable; create one with NewMemory. It is safe for concurrent use.
//
// It holds a key in one map per kind, values as Go strings: a key costs its map
// slot and its bytes, with no per-key header, so patchd's read models and marks
// (millions of keys at 100,000 instances) stay compact. A set of up to eight members is a
// sorted slice, a larger one a map (memSet).
type Memory struct {
	mu     sync.RWMutex
	strs   map[string]string
	sets   map[string]*memSet
	hashes map[string]map[string]string
	closed bool
}

var _ Store = (*Memory)(nil)

// kind is the Redis type a key holds.
type kind int

const (
	kindString kind = iota + 1
	kindSet
	kindHash
)

// memValue is one key's value as a Batch keeps it; only the field matching kind is used.
type memValue struct {
	kind kind
	str  []byte
	set  map[string]struct{}
	hash map[string][]byte
}

// NewMemory returns an empty in-memory store. Every Memory is its own
// namespace; to share one between several users, wrap it with Prefixed.
func NewMemory() *Memory {
	return &Memory{strs: map[string]string{}, sets: map[string]*memSet{}, hashes: map[string]map[string]string{}}
}

// read runs f under the read lock, failing when the store is closed.
func (m *Memory) read(f func() error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return f()
}

// write runs f under the write lock, failing when the store is closed.
func (m *Memory) write(f func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return f()
}

// kindOf returns the kind key holds, 0 when it is absent; the lock is held.
func (m *Memory) kindOf(key string) kind {
	if _, ok := m.strs[key]; ok {
		return kindString
	}
	if _, ok := m.sets[key]; ok {
		return kindSet
	}
	if _, ok := m.hashes[key]; ok {
		return kindHash
	}
	return 0
}

// check fails with ErrWrongType when key holds another kind than k; the lock is held.
func (m *Memory) check(key string, k kind) error {
	if got := m.kindOf(key); got != 0 && got != k {
		return ErrWrongType
	}
	return nil
}

// str returns the string at key; the lock is held.
func (m *Memory) str(key string) (string, bool, error) {
	if err := m.check(key, kindString); err != nil {
		return "", false, err
	}
	v, ok := m.strs[key]
	return v, ok, nil
}

// drop removes key whatever it holds; the lock is held.
func (m *Memory) drop(key string) {
	delete(m.strs, key)
	delete(m.sets, key)
	delete(m.hashes, key)
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (value []byte, found bool, err error) {
	err = m.read(func() error {
		v, ok, err := m.str(key)
		if err != nil || !ok {
			return err
		}
		value, found = append(make([]byte, 0, len(v)), v...), true
		return nil
	})
	return value, found, err
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key string, value []byte) error {
	return m.write(func() error {
		m.drop(key)
		m.strs[key] = string(value)
		return nil
	})
}

// SetNX implements Store.
func (m *Memory) SetNX(_ context.Context, key string, value []byte) (set bool, err error) {
	err = m.write(func() error {
		if m.kindOf(key) != 0 {
			return nil
		}
		m.strs[key] = string(value)
		set = true
		return nil
	})
	return set, err
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, keys ...string) error {
	return m.write(func() error {
		for _, k := range keys {
			m.drop(k)
		}
		return nil
	})
}

// SAdd implements Store.
func (m *Memory) SAdd(_ context.Context, key string, members ...string) (added int, err error) {
	err = m.write(func() error {
		if err := m.check(key, kindSet); err != nil || len(members) == 0 {
			return err
		}
		set := m.sets[key]
		if set == nil {
			set = newMemSet(len(members))
			m.sets[key] = set
		}
		for _, mem := range members {
			if set.add(mem) {
				added++
			}
		}
		return nil
	})
	return added, err
}

// SRem implements Store.
func (m *Memory) SRem(_ context.Context, key string, members ...string) (removed int, err error) {
	err = m.write(func() error {
		if err := m.check(key, kindSet); err != nil {
			return err
		}
		set := m.sets[key]
		if set == nil {
			return nil
		}
		for _, mem := range members {
			if set.remove(mem) {
				removed++
			}
		}
		if set.len() == 0 {
			delete(m.sets, key)
		}
		return nil
	})
	return removed, err
}

// SMembers implements Store.
func (m *Memory) SMembers(_ context.Context, key string) (members []string, err error) {
	err = m.read(func() error {
		if err := m.check(key, kindSet); err != nil {
			return err
		}
		members = m.sets[key].sorted()
		return nil
	})
	return members, err
}

// SIsMember implements Store.
func (m *Memory) SIsMember(_ context.Context, key, member string) (is bool, err error) {
	err = m.read(func() error {
		if err := m.check(key, kindSet); err != nil {
			return err
		}
		if set := m.sets[key]; set != nil {
			is = set.has(member)
		}
		return nil
	})
	return is, err
}

// SCard implements Store.
func (m *Memory) SCard(_ context.Context, key string) (n int, err error) {
	err = m.read(func() error {
		if err := m.check(key, kindSet); err != nil {
			return err
		}
		n = m.sets[key].len()
		return nil
	})
	return n, err
}

// HSet implements Store.
func (m *Memory) HSet(_ context.Context, key string, fields map[string][]byte) error {
	return m.write(func() error {
		if err := m.check(key, kindHash); err != nil || len(fields) == 0 {
			return err
		}
		h := m.hashes[key]
		if h == nil {
			h = make(map[string]string, len(fields))
			m.hashes[key] = h
		}
		for f, val := range fields {
			h[f] = string(val)
		}
		return nil
	})
}

// HGetAll implements Store.
func (m *Memory) HGetAll(_ context.Context, key string) (fields map[string][]byte, err error) {
	err = m.read(func() error {
		if err := m.check(key, kindHash); err != nil {
			return err
		}
		h := m.hashes[key]
		fields = make(map[string][]byte, len(h))
		for f, val := range h {
			fields[f] = append(make([]byte, 0, len(val)), val...)
		}
		return nil
	})
	return fields, err
}

// IncrBy implements Store.
func (m *Memory) IncrBy(_ context.Context, key string, n int64) (result int64, err error) {
	err = m.write(func() error {
		v, ok, err := m.str(key)
		if err != nil {
			return err
		}
		var cur int64
		if ok {
			cur, err = parseRedisInt(v)
			if err != nil {
				return err
			}
		}
		if (n > 0 && cur > math.MaxInt64-n) || (n < 0 && cur < math.MinInt64-n) {
			return ErrNotInteger
		}
		result = cur + n
		m.strs[key] = strconv.FormatInt(result, 10)
		return nil
	})
	return result, err
}

// parseRedisInt parses a value the way Redis's INCRBY does: a plain decimal
// integer with no spaces and no leading plus sign or zeros.
func parseRedisInt(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != s {
		return 0, ErrNotInteger
	}
	return n, nil
}

// Keys implements Store.
func (m *Memory) Keys(_ context.Context, prefix string) (keys []string, err error) {
	err = m.read(func() error {
		keys = []string{}
		for k := range m.keys() {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return nil
	})
	return keys, err
}

// FlushPrefix implements Store.
func (m *Memory) FlushPrefix(_ context.Context, prefix string) error {
	return m.write(func() error {
		for k := range m.keys() {
			if strings.HasPrefix(k, prefix) {
				m.drop(k)
			}
		}
		return nil
	})
}

// Close implements Store: it drops every key.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.strs, m.sets, m.hashes = nil, nil, nil
	return nil
}

// keys yields every key; the lock is held (deleting the yielded key is allowed).
func (m *Memory) keys() iter.Seq[string] {
	return func(yield func(string) bool) {
		for k := range m.strs {
			if !yield(k) {
				return
			}
		}
		for k := range m.sets {
			if !yield(k) {
				return
			}
		}
		for k := range m.hashes {
			if !yield(k) {
				return
			}
		}
	}
}

// cloneBytes copies b so callers cannot change stored values; unlike
// slices.Clone it never returns nil, so an empty value stays "found".
func cloneBytes(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}
