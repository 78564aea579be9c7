// Package kvstore keeps the catalog's state in JetStream KV buckets: each value is the
// protobuf JSON of one message, every write is compare-and-set on the key's revision, and each
// bucket is mirrored in memory by a KV watcher (the read model a replica lists and filters
// from). Sync waits until the mirror has applied everything the bucket held when Sync was
// called, so a query never answers from a model that lags behind a write it could have seen.
package kvstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
)

// ErrConflict is a compare-and-set that lost: the key exists (Create) or moved on (Update).
// It wraps apierr.ErrFailedPrecondition.
var ErrConflict = fmt.Errorf("%w: the value changed meanwhile (revision conflict)", apierr.ErrFailedPrecondition)

var (
	marshal   = protojson.MarshalOptions{}
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// Entry is one value and the revision it was written at.
type Entry[T proto.Message] struct {
	Key      string
	Value    T
	Revision uint64
}

// Bucket is one KV bucket of T values with its in-memory mirror.
type Bucket[T proto.Message] struct {
	kv   jetstream.KeyValue
	name string
	newT func() T

	mu      sync.Mutex
	changed *sync.Cond
	items   map[string]Entry[T]
	applied uint64 // highest revision applied to the mirror
	ready   chan struct{}
	err     error
	// onChange, when set, is called (outside mu) for every value applied to the mirror.
	onChange func(key string, prev, next *Entry[T])
	// compact, when set, trims a value before the mirror keeps it (after onChange saw it whole).
	compact func(T) T
}

// Config describes a bucket.
type Config struct {
	// Name of the bucket. Required.
	Name string
	// Description for operators.
	Description string
	// History kept per key, 1..64 (default 1).
	History uint8
	// Replicas, default 1.
	Replicas int
	// Storage, default file.
	Storage jetstream.StorageType
}

// Open creates (or updates) the bucket and returns it; call Run to mirror it.
func Open[T proto.Message](ctx context.Context, js jetstream.JetStream, cfg Config, newT func() T) (*Bucket[T], error) {
	if cfg.History == 0 {
		cfg.History = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: cfg.Name, Description: cfg.Description, History: cfg.History,
		Replicas: cfg.Replicas, Storage: cfg.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", cfg.Name, err)
	}
	b := &Bucket[T]{kv: kv, name: cfg.Name, newT: newT, items: map[string]Entry[T]{}, ready: make(chan struct{})}
	b.changed = sync.NewCond(&b.mu)
	return b, nil
}

// OnChange registers fn, called for every change the mirror applies (old nil for a new key, new
// nil for a deletion), in revision order. It must be called before Run.
func (b *Bucket[T]) OnChange(fn func(key string, prev, next *Entry[T])) { b.onChange = fn }

// Compact registers fn, which trims each value before the mirror keeps it (onChange still sees
// it whole): the mirror serves lists, Get reads the whole value from the bucket. It must be
// called before Run.
func (b *Bucket[T]) Compact(fn func(T) T) { b.compact = fn }

// Name returns the bucket's name.
func (b *Bucket[T]) Name() string { return b.name }

// Run mirrors the bucket until ctx is done.
func (b *Bucket[T]) Run(ctx context.Context) error {
	w, err := b.kv.WatchAll(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return b.fail(fmt.Errorf("watch %s: %w", b.name, err))
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return b.fail(fmt.Errorf("watch %s: stopped", b.name))
			}
			if e == nil {
				b.mu.Lock()
				select {
				case <-b.ready:
				default:
					close(b.ready)
				}
				b.changed.Broadcast()
				b.mu.Unlock()
				continue
			}
			if err := b.apply(e); err != nil {
				return b.fail(err)
			}
		}
	}
}

func (b *Bucket[T]) fail(err error) error {
	b.mu.Lock()
	b.err = err
	b.changed.Broadcast()
	b.mu.Unlock()
	return err
}

func (b *Bucket[T]) apply(e jetstream.KeyValueEntry) error {
	var next *Entry[T]
	if e.Operation() == jetstream.KeyValuePut {
		v := b.newT()
		if err := unmarshal.Unmarshal(e.Value(), v); err != nil {
			return fmt.Errorf("bucket %s key %s revision %d: %w", b.name, e.Key(), e.Revision(), err)
		}
		next = &Entry[T]{Key: e.Key(), Value: v, Revision: e.Revision()}
	}
	b.mu.Lock()
	var prev *Entry[T]
	if old, ok := b.items[e.Key()]; ok {
		prev = &old
	}
	b.mu.Unlock()
	if b.onChange != nil {
		b.onChange(e.Key(), prev, next)
	}
	b.mu.Lock()
	if next != nil {
		kept := *next
		if b.compact != nil {
			kept.Value = b.compact(kept.Value)
		}
		b.items[e.Key()] = kept
	} else {
		delete(b.items, e.Key())
	}
	b.applied = max(b.applied, e.Revision())
	b.changed.Broadcast()
	b.mu.Unlock()
	return nil
}

// Ready returns once the mirror holds every value the bucket had when Run started.
func (b *Bucket[T]) Ready(ctx context.Context) error {
	select {
	case <-b.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: the %s read model is loading: %w", apierr.ErrUnavailable, b.name, ctx.Err())
	}
}

// Sync waits until the mirror has applied every write the bucket holds now.
func (b *Bucket[T]) Sync(ctx context.Context) error {
	if err := b.Ready(ctx); err != nil {
		return err
	}
	st, err := b.kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("%w: bucket %s status: %w", apierr.ErrUnavailable, b.name, err)
	}
	last := st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	return b.WaitFor(ctx, last)
}

// WaitFor waits until the mirror has applied revision rev.
func (b *Bucket[T]) WaitFor(ctx context.Context, rev uint64) error {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.changed.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.applied < rev && b.err == nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: the %s read model is behind (revision %d of %d): %w", apierr.ErrUnavailable, b.name, b.applied, rev, ctx.Err())
		}
		b.changed.Wait()
	}
	return b.err
}

// Snapshot returns the mirror's entries sorted by key.
func (b *Bucket[T]) Snapshot() []Entry[T] {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := slices.Sorted(maps.Keys(b.items))
	out := make([]Entry[T], len(keys))
	for i, k := range keys {
		out[i] = b.items[k]
	}
	return out
}

// Cached returns the mirror's entry for key.
func (b *Bucket[T]) Cached(key string) (Entry[T], bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.items[key]
	return e, ok
}

// Get reads key from the bucket itself (not the mirror). found is false for a missing key.
func (b *Bucket[T]) Get(ctx context.Context, key string) (e Entry[T], found bool, err error) {
	kve, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Entry[T]{}, false, nil
	}
	if err != nil {
		return Entry[T]{}, false, fmt.Errorf("%w: get %s/%s: %w", apierr.ErrUnavailable, b.name, key, err)
	}
	v := b.newT()
	if err := unmarshal.Unmarshal(kve.Value(), v); err != nil {
		return Entry[T]{}, false, fmt.Errorf("decode %s/%s: %w", b.name, key, err)
	}
	return Entry[T]{Key: key, Value: v, Revision: kve.Revision()}, true, nil
}

// History returns every kept revision of key, oldest first.
func (b *Bucket[T]) History(ctx context.Context, key string) ([]Entry[T], error) {
	hist, err := b.kv.History(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history %s/%s: %w", b.name, key, err)
	}
	var out []Entry[T]
	for _, kve := range hist {
		if kve.Operation() != jetstream.KeyValuePut {
			continue
		}
		v := b.newT()
		if err := unmarshal.Unmarshal(kve.Value(), v); err != nil {
			return nil, fmt.Errorf("decode %s/%s@%d: %w", b.name, key, kve.Revision(), err)
		}
		out = append(out, Entry[T]{Key: key, Value: v, Revision: kve.Revision()})
	}
	return out, nil
}

// Create stores v under a new key; ErrConflict when the key exists.
func (b *Bucket[T]) Create(ctx context.Context, key string, v T) (uint64, error) {
	data, err := marshal.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", b.name, key, err)
	}
	rev, err := b.kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("create %s/%s: %w", b.name, key, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: create %s/%s: %w", apierr.ErrUnavailable, b.name, key, err)
	}
	return rev, nil
}

// Update replaces key's value if its revision is still rev; ErrConflict otherwise.
func (b *Bucket[T]) Update(ctx context.Context, key string, v T, rev uint64) (uint64, error) {
	data, err := marshal.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", b.name, key, err)
	}
	next, err := b.kv.Update(ctx, key, data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("update %s/%s at revision %d: %w", b.name, key, rev, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: update %s/%s: %w", apierr.ErrUnavailable, b.name, key, err)
	}
	return next, nil
}

// Put creates or updates key: Create when rev is 0, Update otherwise.
func (b *Bucket[T]) Put(ctx context.Context, key string, v T, rev uint64) (uint64, error) {
	if rev == 0 {
		return b.Create(ctx, key, v)
	}
	return b.Update(ctx, key, v, rev)
}

// Delete removes key if its revision is still rev.
func (b *Bucket[T]) Delete(ctx context.Context, key string, rev uint64) error {
	err := b.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("delete %s/%s at revision %d: %w", b.name, key, rev, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%w: delete %s/%s: %w", apierr.ErrUnavailable, b.name, key, err)
	}
	return nil
}

// Timeout bounds one bucket operation made outside a caller's deadline.
const Timeout = 10 * time.Second
