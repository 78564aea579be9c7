package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// WriteOp is the kind of one write of an Update.
type WriteOp int

// Write operations.
const (
	// OpSet sets the string Value at Key.
	OpSet WriteOp = iota + 1
	// OpDelete deletes Key.
	OpDelete
	// OpSAdd adds Members to the set at Key.
	OpSAdd
	// OpSRem removes Members from the set at Key.
	OpSRem
	// OpHSet sets Fields of the hash at Key.
	OpHSet
)

// Write is one write of an Update.
type Write struct {
	Op      WriteOp
	Key     string
	Value   []byte
	Members []string
	Fields  map[string][]byte
}

// SetW sets the string at key (SetW, DelW, SAddW, SRemW and HSetW build writes).
func SetW(key string, value []byte) Write { return Write{Op: OpSet, Key: key, Value: value} }

// DelW deletes key.
func DelW(key string) Write { return Write{Op: OpDelete, Key: key} }

// SAddW adds members to the set at key.
func SAddW(key string, members ...string) Write { return Write{Op: OpSAdd, Key: key, Members: members} }

// SRemW removes members from the set at key.
func SRemW(key string, members ...string) Write { return Write{Op: OpSRem, Key: key, Members: members} }

// HSetW sets fields of the hash at key.
func HSetW(key string, fields map[string][]byte) Write {
	return Write{Op: OpHSet, Key: key, Fields: fields}
}

// Updater is implemented by stores that apply a group of writes atomically, guarded by the
// value of one string key: Update applies writes, all or none, only if the string at guard
// equals want (want nil: guard is absent), and reports whether it did. Nothing else sees
// some of the writes without the others. Memory, Redis (WATCH + MULTI/EXEC) and Prefixed
// views of them implement it.
type Updater interface {
	Update(ctx context.Context, guard string, want []byte, writes ...Write) (applied bool, err error)
}

var (
	_ Updater = (*Memory)(nil)
	_ Updater = (*Redis)(nil)
	_ Updater = (*prefixed)(nil)
)

func validWrite(w Write) error {
	switch w.Op {
	case OpSet, OpDelete, OpSAdd, OpSRem, OpHSet:
		return nil
	}
	return fmt.Errorf("store: write %d on %q: unknown operation", w.Op, w.Key)
}

// Update implements Updater under the store's lock. A write to a key of the wrong kind fails
// the whole update before anything is written.
func (m *Memory) Update(_ context.Context, guard string, want []byte, writes ...Write) (applied bool, err error) {
	err = m.write(func() error {
		g, ok, err := m.str(guard)
		if err != nil {
			return err
		}
		if (want == nil) != !ok || (ok && g != string(want)) {
			return nil
		}
		for _, w := range writes {
			if err := validWrite(w); err != nil {
				return err
			}
			var want kind
			switch w.Op {
			case OpSAdd, OpSRem:
				want = kindSet
			case OpHSet:
				want = kindHash
			default:
				continue
			}
			if err := m.check(w.Key, want); err != nil {
				return err
			}
		}
		for _, w := range writes {
			m.apply(w)
		}
		applied = true
		return nil
	})
	return applied, err
}

// apply performs one checked write; the caller holds the lock.
func (m *Memory) apply(w Write) {
	switch w.Op {
	case OpSet:
		m.drop(w.Key)
		m.strs[w.Key] = string(w.Value)
	case OpDelete:
		m.drop(w.Key)
	case OpSAdd:
		if len(w.Members) == 0 {
			return
		}
		set := m.sets[w.Key]
		if set == nil {
			set = newMemSet(len(w.Members))
			m.sets[w.Key] = set
		}
		for _, s := range w.Members {
			set.add(s)
		}
	case OpSRem:
		set := m.sets[w.Key]
		if set == nil {
			return
		}
		for _, s := range w.Members {
			set.remove(s)
		}
		if set.len() == 0 {
			delete(m.sets, w.Key)
		}
	case OpHSet:
		if len(w.Fields) == 0 {
			return
		}
		h := m.hashes[w.Key]
		if h == nil {
			h = make(map[string]string, len(w.Fields))
			m.hashes[w.Key] = h
		}
		for f, b := range w.Fields {
			h[f] = string(b)
		}
	}
}

// msetMax bounds the keys of one MSET of an Update.
const msetMax = 1000

// Update implements Updater with WATCH on guard and the writes in one MULTI/EXEC; a guard
// changed between the read and EXEC is reported as not applied.
func (r *Redis) Update(ctx context.Context, guard string, want []byte, writes ...Write) (bool, error) {
	if err := r.check(); err != nil {
		return false, err
	}
	for _, w := range writes {
		if err := validWrite(w); err != nil {
			return false, err
		}
	}
	applied := false
	gk := r.key(guard)
	err := r.client.Watch(ctx, func(tx *redis.Tx) error {
		// WATCH and GET in one round trip (then MULTI/EXEC in one more): EXEC releases the
		// watch, and a guard that does not match releases it with UNWATCH.
		var get *redis.StringCmd
		_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, "watch", gk)
			get = p.Get(ctx, gk)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		got, err := get.Bytes()
		var match bool
		switch {
		case errors.Is(err, redis.Nil):
			match = want == nil
		case err != nil:
			return err
		default:
			match = want != nil && bytes.Equal(got, want)
		}
		if !match {
			return tx.Unwatch(ctx).Err()
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < len(writes); i++ {
				w := writes[i]
				k := r.key(w.Key)
				switch w.Op {
				case OpSet:
					// A run of sets is one MSET (of at most msetMax keys): what a batch of
					// records costs is then mostly their bytes.
					j := i + 1
					for j < len(writes) && writes[j].Op == OpSet && j-i < msetMax {
						j++
					}
					if j == i+1 {
						p.Set(ctx, k, w.Value, 0)
						continue
					}
					args := make([]any, 0, 2*(j-i))
					for _, x := range writes[i:j] {
						args = append(args, r.key(x.Key), x.Value)
					}
					p.MSet(ctx, args...)
					i = j - 1
				case OpDelete:
					p.Del(ctx, k)
				case OpSAdd:
					if len(w.Members) > 0 {
						p.SAdd(ctx, k, toAny(w.Members)...)
					}
				case OpSRem:
					if len(w.Members) > 0 {
						p.SRem(ctx, k, toAny(w.Members)...)
					}
				case OpHSet:
					if len(w.Fields) > 0 {
						args := make([]any, 0, 2*len(w.Fields))
						for f, v := range w.Fields {
							args = append(args, f, v)
						}
						p.HSet(ctx, k, args...)
					}
				}
			}
			return nil
		})
		if err == nil {
			applied = true
		}
		return err
	})
	if errors.Is(err, redis.TxFailedErr) {
		return false, nil
	}
	if err != nil {
		return false, mapRedisErr("update", err)
	}
	return applied, nil
}

// Update implements Updater when the inner store does.
func (p *prefixed) Update(ctx context.Context, guard string, want []byte, writes ...Write) (bool, error) {
	if err := p.open(); err != nil {
		return false, err
	}
	u, ok := p.inner.(Updater)
	if !ok {
		return false, errors.New("store: the inner store does not implement Updater")
	}
	full := make([]Write, len(writes))
	for i, w := range writes {
		w.Key = p.key(w.Key)
		full[i] = w
	}
	return u.Update(ctx, p.key(guard), want, full...)
}
