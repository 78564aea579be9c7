package store

import (
	"context"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Memory is an in-process Store for patchd and tests. The zero value is not
// usable; create one with NewMemory. It is safe for concurrent use.
type Memory struct {
	mu     sync.RWMutex
	data   map[string]*memValue
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

// memValue holds one key's value; only the field matching kind is used.
type memValue struct {
	kind kind
	str  []byte
	set  map[string]struct{}
	hash map[string][]byte
}

// NewMemory returns an empty in-memory store. Every Memory is its own
// namespace; to share one between several users, wrap it with Prefixed.
func NewMemory() *Memory {
	return &Memory{data: make(map[string]*memValue)}
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

// lookup returns the value at key if it holds k; absent keys return nil.
func (m *Memory) lookup(key string, k kind) (*memValue, error) {
	v, ok := m.data[key]
	if !ok {
		return nil, nil
	}
	if v.kind != k {
		return nil, ErrWrongType
	}
	return v, nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (value []byte, found bool, err error) {
	err = m.read(func() error {
		v, err := m.lookup(key, kindString)
		if err != nil || v == nil {
			return err
		}
		value, found = cloneBytes(v.str), true
		return nil
	})
	return value, found, err
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key string, value []byte) error {
	return m.write(func() error {
		m.data[key] = &memValue{kind: kindString, str: cloneBytes(value)}
		return nil
	})
}

// SetNX implements Store.
func (m *Memory) SetNX(_ context.Context, key string, value []byte) (set bool, err error) {
	err = m.write(func() error {
		if _, ok := m.data[key]; ok {
			return nil
		}
		m.data[key] = &memValue{kind: kindString, str: cloneBytes(value)}
		set = true
		return nil
	})
	return set, err
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, keys ...string) error {
	return m.write(func() error {
		for _, k := range keys {
			delete(m.data, k)
		}
		return nil
	})
}

// SAdd implements Store.
func (m *Memory) SAdd(_ context.Context, key string, members ...string) (added int, err error) {
	err = m.write(func() error {
		v, err := m.lookup(key, kindSet)
		if err != nil || len(members) == 0 {
			return err
		}
		if v == nil {
			v = &memValue{kind: kindSet, set: make(map[string]struct{}, len(members))}
			m.data[key] = v
		}
		for _, mem := range members {
			if _, ok := v.set[mem]; !ok {
				v.set[mem] = struct{}{}
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
		v, err := m.lookup(key, kindSet)
		if err != nil || v == nil {
			return err
		}
		for _, mem := range members {
			if _, ok := v.set[mem]; ok {
				delete(v.set, mem)
				removed++
			}
		}
		if len(v.set) == 0 {
			delete(m.data, key)
		}
		return nil
	})
	return removed, err
}

// SMembers implements Store.
func (m *Memory) SMembers(_ context.Context, key string) (members []string, err error) {
	err = m.read(func() error {
		v, err := m.lookup(key, kindSet)
		if err != nil {
			return err
		}
		members = []string{}
		if v != nil {
			members = slices.Sorted(maps.Keys(v.set))
		}
		return nil
	})
	return members, err
}

// SIsMember implements Store.
func (m *Memory) SIsMember(_ context.Context, key, member string) (is bool, err error) {
	err = m.read(func() error {
		v, err := m.lookup(key, kindSet)
		if err != nil || v == nil {
			return err
		}
		_, is = v.set[member]
		return nil
	})
	return is, err
}

// SCard implements Store.
func (m *Memory) SCard(_ context.Context, key string) (n int, err error) {
	err = m.read(func() error {
		v, err := m.lookup(key, kindSet)
		if err != nil || v == nil {
			return err
		}
		n = len(v.set)
		return nil
	})
	return n, err
}

// HSet implements Store.
func (m *Memory) HSet(_ context.Context, key string, fields map[string][]byte) error {
	return m.write(func() error {
		v, err := m.lookup(key, kindHash)
		if err != nil || len(fields) == 0 {
			return err
		}
		if v == nil {
			v = &memValue{kind: kindHash, hash: make(map[string][]byte, len(fields))}
			m.data[key] = v
		}
		for f, val := range fields {
			v.hash[f] = cloneBytes(val)
		}
		return nil
	})
}

// HGetAll implements Store.
func (m *Memory) HGetAll(_ context.Context, key string) (fields map[string][]byte, err error) {
	err = m.read(func() error {
		v, err := m.lookup(key, kindHash)
		if err != nil {
			return err
		}
		fields = make(map[string][]byte)
		if v != nil {
			for f, val := range v.hash {
				fields[f] = cloneBytes(val)
			}
		}
		return nil
	})
	return fields, err
}

// IncrBy implements Store.
func (m *Memory) IncrBy(_ context.Context, key string, n int64) (result int64, err error) {
	err = m.write(func() error {
		v, err := m.lookup(key, kindString)
		if err != nil {
			return err
		}
		var cur int64
		if v != nil {
			cur, err = parseRedisInt(v.str)
			if err != nil {
				return err
			}
		}
		if (n > 0 && cur > math.MaxInt64-n) || (n < 0 && cur < math.MinInt64-n) {
			return ErrNotInteger
		}
		result = cur + n
		m.data[key] = &memValue{kind: kindString, str: strconv.AppendInt(nil, result, 10)}
		return nil
	})
	return result, err
}

// parseRedisInt parses a value the way Redis's INCRBY does: a plain decimal
// integer with no spaces and no leading plus sign or zeros.
func parseRedisInt(b []byte) (int64, error) {
	s := string(b)
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
		for k := range m.data {
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
		for k := range m.data {
			if strings.HasPrefix(k, prefix) {
				delete(m.data, k)
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
	m.data = nil
	return nil
}

// cloneBytes copies b so callers cannot change stored values; unlike
// slices.Clone it never returns nil, so an empty value stays "found".
func cloneBytes(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}
