package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// MultiGetter is implemented by stores that read many strings in one round trip (MGET).
type MultiGetter interface {
	// GetMany returns the string value of each key ("found" false for an absent key).
	GetMany(ctx context.Context, keys []string) (values [][]byte, found []bool, err error)
}

var (
	_ MultiGetter = (*Memory)(nil)
	_ MultiGetter = (*Redis)(nil)
	_ MultiGetter = (*prefixed)(nil)
)

// GetMany implements MultiGetter.
func (m *Memory) GetMany(_ context.Context, keys []string) ([][]byte, []bool, error) {
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	err := m.read(func() error {
		for i, k := range keys {
			v, ok, err := m.str(k)
			if err != nil {
				return err
			}
			if ok {
				values[i], found[i] = []byte(v), true
			}
		}
		return nil
	})
	return values, found, err
}

// GetMany implements MultiGetter with MGET (a key of another type reads as absent, as MGET
// does).
func (r *Redis) GetMany(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	if err := r.check(); err != nil {
		return nil, nil, err
	}
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	if len(keys) == 0 {
		return values, found, nil
	}
	got, err := r.client.MGet(ctx, r.keys(keys)...).Result()
	if err != nil {
		return nil, nil, mapRedisErr("mget", err)
	}
	for i, v := range got {
		if s, ok := v.(string); ok {
			values[i], found[i] = []byte(s), true
		}
	}
	return values, found, nil
}

// GetMany implements MultiGetter when the inner store does.
func (p *prefixed) GetMany(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	if err := p.open(); err != nil {
		return nil, nil, err
	}
	mg, ok := p.inner.(MultiGetter)
	if !ok {
		return nil, nil, errors.New("store: the inner store does not implement MultiGetter")
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = p.key(k)
	}
	return mg.GetMany(ctx, full)
}

// MultiCarder is implemented by stores that count the members of many sets in one round trip
// (pipelined SCARDs).
type MultiCarder interface {
	// SCardMany returns the number of members of the set at each key (0 for an absent key).
	SCardMany(ctx context.Context, keys []string) ([]int, error)
	// SMembersSCardMany returns the members of the set at set, sorted, and the number of
	// members of the set at each of keys, read together.
	SMembersSCardMany(ctx context.Context, set string, keys []string) ([]string, []int, error)
}

var (
	_ MultiCarder = (*Memory)(nil)
	_ MultiCarder = (*Redis)(nil)
	_ MultiCarder = (*prefixed)(nil)
	_ MultiCarder = (*Batch)(nil)
)

// SCardMany implements MultiCarder.
func (m *Memory) SCardMany(_ context.Context, keys []string) ([]int, error) {
	out := make([]int, len(keys))
	err := m.read(func() error {
		for i, k := range keys {
			if err := m.check(k, kindSet); err != nil {
				return err
			}
			out[i] = m.sets[k].len()
		}
		return nil
	})
	return out, err
}

// SMembersSCardMany implements MultiCarder.
func (m *Memory) SMembersSCardMany(ctx context.Context, set string, keys []string) ([]string, []int, error) {
	return membersThenCards(ctx, m, set, keys)
}

// membersThenCards is SMembersSCardMany as two reads of st: the members of set, then the
// number of members of each of keys (Memory, Batch and the in-flight view answer it so).
func membersThenCards(ctx context.Context, st interface {
	SMembers(ctx context.Context, key string) ([]string, error)
	SCardMany(ctx context.Context, keys []string) ([]int, error)
}, set string, keys []string) ([]string, []int, error) {
	ms, err := st.SMembers(ctx, set)
	if err != nil {
		return nil, nil, err
	}
	ns, err := st.SCardMany(ctx, keys)
	return ms, ns, err
}

// SMembersSCardMany implements MultiCarder with one pipeline.
func (r *Redis) SMembersSCardMany(ctx context.Context, set string, keys []string) ([]string, []int, error) {
	if err := r.check(); err != nil {
		return nil, nil, err
	}
	var members *redis.StringSliceCmd
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		members = p.SMembers(ctx, r.key(set))
		for i, k := range keys {
			cmds[i] = p.SCard(ctx, r.key(k))
		}
		return nil
	})
	if err != nil {
		return nil, nil, mapRedisErr("smembers", err)
	}
	ms := members.Val()
	slices.Sort(ms)
	out := make([]int, len(keys))
	for i, c := range cmds {
		out[i] = int(c.Val())
	}
	return ms, out, nil
}

// SCardMany implements MultiCarder with one pipeline of SCARDs.
func (r *Redis) SCardMany(ctx context.Context, keys []string) ([]int, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	out := make([]int, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.SCard(ctx, r.key(k))
		}
		return nil
	})
	if err != nil {
		return nil, mapRedisErr("scard", err)
	}
	for i, c := range cmds {
		out[i] = int(c.Val())
	}
	return out, nil
}

// SCardMany implements MultiCarder, one SCard at a time when the inner store does not.
func (p *prefixed) SCardMany(ctx context.Context, keys []string) ([]int, error) {
	if err := p.open(); err != nil {
		return nil, err
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = p.key(k)
	}
	return scardMany(ctx, p.inner, full)
}

// SMembersSCardMany implements MultiCarder.
func (p *prefixed) SMembersSCardMany(ctx context.Context, set string, keys []string) ([]string, []int, error) {
	if err := p.open(); err != nil {
		return nil, nil, err
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = p.key(k)
	}
	if mc, ok := p.inner.(MultiCarder); ok {
		return mc.SMembersSCardMany(ctx, p.key(set), full)
	}
	ms, err := p.inner.SMembers(ctx, p.key(set))
	if err != nil {
		return nil, nil, err
	}
	ns, err := scardMany(ctx, p.inner, full)
	return ms, ns, err
}

// scardMany counts the sets with st's SCardMany, or one SCard at a time.
func scardMany(ctx context.Context, st Store, keys []string) ([]int, error) {
	if mc, ok := st.(MultiCarder); ok {
		return mc.SCardMany(ctx, keys)
	}
	out := make([]int, len(keys))
	for i, k := range keys {
		n, err := st.SCard(ctx, k)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// SMembersSCardMany implements MultiCarder.
func (b *Batch) SMembersSCardMany(ctx context.Context, set string, keys []string) ([]string, []int, error) {
	return membersThenCards(ctx, b, set, keys)
}

// SCardMany implements MultiCarder: the sets the batch wrote are counted from its view, the
// others in one round trip to the base.
func (b *Batch) SCardMany(ctx context.Context, keys []string) ([]int, error) {
	out := make([]int, len(keys))
	var base []string
	var at []int
	for i, k := range keys {
		b.mu.Lock()
		_, known := b.known[k]
		blind := len(b.blind[k])
		b.mu.Unlock()
		if known || blind > 0 {
			n, err := b.SCard(ctx, k)
			if err != nil {
				return nil, err
			}
			out[i] = n
			continue
		}
		base = append(base, k)
		at = append(at, i)
	}
	if len(base) == 0 {
		return out, nil
	}
	ns, err := scardMany(ctx, b.read, base)
	if err != nil {
		return nil, err
	}
	for j, n := range ns {
		out[at[j]] = n
	}
	return out, nil
}

// Batch is a Store that keeps its writes in memory over a base store, reads seeing them (a key
// is read from the base once, then its value is known), until Commit writes them all in one
// guarded Update (one MULTI/EXEC on Redis). A read model applies a batch of events through it
// and commits once, with its checkpoint, so the whole batch is one round trip and one atomic
// write. Start commits in the background instead, and NewBatchAfter begins the next batch on
// a view that answers with the writes under way, so a read model folds batch N+1 while batch
// N's MULTI/EXEC is in flight. A Batch is for one goroutine at a time; its Close does not close
// the base.
type Batch struct {
	base Store
	// read is where the batch reads what it does not know: base, or, for a batch begun after a
	// commit under way (NewBatchAfter), a view of base with that commit's writes; after is that
	// commit, which this batch's commits wait for.
	read  Store
	after *Flight

	mu     sync.Mutex
	known  map[string]*memValue // keys whose value is known; a nil value is absent
	blind  map[string][]Write   // writes to keys not read yet, applied when they are
	writes []Write
	byKey  map[string][]int // indexes in writes of each key's writes
	// added holds the members an SAdd of this batch put in each set (and no SRem or Delete
	// took out since), so adding them again writes nothing.
	added map[string]map[string]struct{}
}

// NewBatch returns an empty batch over base, which must implement Updater.
func NewBatch(base Store) (*Batch, error) {
	if _, ok := base.(Updater); !ok {
		return nil, errors.New("store: a Batch needs a base store that implements Updater")
	}
	b := &Batch{base: base, read: base}
	b.reset()
	return b, nil
}

func (b *Batch) reset() {
	b.known, b.blind, b.writes, b.byKey = map[string]*memValue{}, map[string][]Write{}, nil, map[string][]int{}
	b.added = map[string]map[string]struct{}{}
}

// Pending is how many writes wait for Commit.
func (b *Batch) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.writes)
}

// Discard forgets every write and every value read.
func (b *Batch) Discard() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reset()
}

// Commit writes the pending writes and extra, all or none, if the string at guard in the base
// equals want (nil: absent), and reports whether it did. Either way the batch is empty
// afterwards (a caller whose guard failed reads again). A batch begun after a commit under way
// (NewBatchAfter) waits for it first, and fails with ErrPriorNotApplied, writing nothing, when
// that commit did not apply.
func (b *Batch) Commit(ctx context.Context, guard string, want []byte, extra ...Write) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.settleAfter(); err != nil {
		b.reset()
		return false, err
	}
	ws := b.take(extra)
	b.reset()
	if len(ws) == 0 {
		return true, nil
	}
	return b.base.(Updater).Update(ctx, guard, want, ws...)
}

// take returns the pending writes, merged, followed by extra. A key's writes keep their
// order; a run of set adds, set removals or hash sets of one key is merged into one write (one
// SADD of every member the batch added), so a batch of thousands of instances moving between a
// few sets is a few commands. Writes to different keys are independent, so merging a key's
// write into its earlier one reorders nothing that matters. The caller holds mu.
func (b *Batch) take(extra []Write) []Write {
	if len(b.writes) == 0 {
		return extra
	}
	ws := make([]Write, 0, len(b.writes)+len(extra))
	lastAt := make(map[string]int, len(b.byKey)) // index in ws of each key's last write
	var owned map[int]bool                       // ws entries whose Members or Fields the batch made
	for _, w := range b.writes {
		if w.Op == 0 {
			continue
		}
		if i, ok := lastAt[w.Key]; ok && ws[i].Op == w.Op {
			if owned == nil {
				owned = map[int]bool{}
			}
			switch w.Op {
			case OpSAdd, OpSRem:
				if !owned[i] {
					ws[i].Members = slices.Clone(ws[i].Members)
					owned[i] = true
				}
				ws[i].Members = append(ws[i].Members, w.Members...)
				continue
			case OpHSet:
				if !owned[i] {
					ws[i].Fields = maps.Clone(ws[i].Fields)
					owned[i] = true
				}
				maps.Copy(ws[i].Fields, w.Fields)
				continue
			}
		}
		lastAt[w.Key] = len(ws)
		ws = append(ws, w)
	}
	return append(ws, extra...)
}

// Prefetch reads the string keys from the base in one round trip (when it is a MultiGetter)
// so later Gets of them cost nothing.
func (b *Batch) Prefetch(ctx context.Context, keys []string) error {
	b.mu.Lock()
	var todo []string
	for _, k := range keys {
		if _, ok := b.known[k]; !ok && len(b.blind[k]) == 0 {
			todo = append(todo, k)
		}
	}
	b.mu.Unlock()
	mg, ok := b.read.(MultiGetter)
	if !ok || len(todo) == 0 {
		return nil
	}
	slices.Sort(todo)
	todo = slices.Compact(todo)
	values, found, err := mg.GetMany(ctx, todo)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.known) == 0 {
		b.known = make(map[string]*memValue, len(todo)) // a batch's reads, without regrowing
	}
	vals := make([]memValue, len(todo)) // one allocation for the batch's values
	for i, k := range todo {
		if _, ok := b.known[k]; ok {
			continue
		}
		if found[i] {
			vals[i] = memValue{kind: kindString, str: values[i]}
			b.known[k] = &vals[i]
		} else {
			b.known[k] = nil
		}
	}
	return nil
}

// record appends a write; a Set or Delete replaces the key's earlier writes.
func (b *Batch) record(w Write) {
	if w.Op == OpSet || w.Op == OpDelete {
		for _, i := range b.byKey[w.Key] {
			b.writes[i].Op = 0
		}
		b.byKey[w.Key] = b.byKey[w.Key][:0]
	}
	b.byKey[w.Key] = append(b.byKey[w.Key], len(b.writes))
	b.writes = append(b.writes, w)
}

// write records w and applies it to the known value, or keeps it blind.
func (b *Batch) write(w Write) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch w.Op {
	case OpSAdd:
		set := b.added[w.Key]
		fresh := w.Members[:0:0]
		for _, m := range w.Members {
			if _, ok := set[m]; !ok {
				fresh = append(fresh, m)
			}
		}
		if len(fresh) == 0 {
			return nil // added by this batch already
		}
		w.Members = fresh
		if set == nil {
			set = map[string]struct{}{}
			b.added[w.Key] = set
		}
		for _, m := range fresh {
			set[m] = struct{}{}
		}
	case OpSRem:
		for _, m := range w.Members {
			delete(b.added[w.Key], m)
		}
	case OpSet, OpDelete:
		delete(b.added, w.Key)
	}
	if w.Op == OpSet || w.Op == OpDelete {
		delete(b.blind, w.Key)
		b.known[w.Key] = nil
		if w.Op == OpSet {
			b.known[w.Key] = &memValue{kind: kindString, str: cloneBytes(w.Value)}
		}
		b.record(w)
		return nil
	}
	if v, ok := b.known[w.Key]; ok {
		nv, err := applyTo(v, w)
		if err != nil {
			return err
		}
		b.known[w.Key] = nv
	} else {
		b.blind[w.Key] = append(b.blind[w.Key], w)
	}
	b.record(w)
	return nil
}

// applyTo returns v (nil: absent) after w, a set or hash write.
func applyTo(v *memValue, w Write) (*memValue, error) {
	want := kindSet
	if w.Op == OpHSet {
		want = kindHash
	}
	if v != nil && v.kind != want {
		return nil, ErrWrongType
	}
	if v == nil {
		v = &memValue{kind: want, set: map[string]struct{}{}, hash: map[string][]byte{}}
	}
	switch w.Op {
	case OpSAdd:
		for _, m := range w.Members {
			v.set[m] = struct{}{}
		}
	case OpSRem:
		for _, m := range w.Members {
			delete(v.set, m)
		}
	case OpHSet:
		for f, x := range w.Fields {
			v.hash[f] = cloneBytes(x)
		}
	}
	if (v.kind == kindSet && len(v.set) == 0) || (v.kind == kindHash && len(v.hash) == 0) {
		return nil, nil
	}
	return v, nil
}

// load returns the value of key as of the batch, reading the base once (as kind k).
func (b *Batch) load(ctx context.Context, key string, k kind) (*memValue, error) {
	b.mu.Lock()
	v, ok := b.known[key]
	b.mu.Unlock()
	if ok {
		if v != nil && v.kind != k {
			return nil, ErrWrongType
		}
		return v, nil
	}
	base, err := readValue(ctx, b.read, key, k)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.known[key]; ok { // read meanwhile
		return v, nil
	}
	for _, w := range b.blind[key] {
		var err error
		if base, err = applyTo(base, w); err != nil {
			return nil, err
		}
	}
	delete(b.blind, key)
	b.known[key] = base
	return base, nil
}

// readValue reads the value of key from st as kind k (nil: absent).
func readValue(ctx context.Context, st Store, key string, k kind) (*memValue, error) {
	switch k {
	case kindString:
		s, found, err := st.Get(ctx, key)
		if err != nil || !found {
			return nil, err
		}
		return &memValue{kind: kindString, str: s}, nil
	case kindSet:
		ms, err := st.SMembers(ctx, key)
		if err != nil || len(ms) == 0 {
			return nil, err
		}
		v := &memValue{kind: kindSet, set: make(map[string]struct{}, len(ms))}
		for _, m := range ms {
			v.set[m] = struct{}{}
		}
		return v, nil
	case kindHash:
		h, err := st.HGetAll(ctx, key)
		if err != nil || len(h) == 0 {
			return nil, err
		}
		return &memValue{kind: kindHash, hash: h}, nil
	}
	return nil, fmt.Errorf("store: read %q: unknown kind %d", key, k)
}

// Get implements Store.
func (b *Batch) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := b.load(ctx, key, kindString)
	if err != nil || v == nil {
		return nil, false, err
	}
	return cloneBytes(v.str), true, nil
}

// Set implements Store.
func (b *Batch) Set(_ context.Context, key string, value []byte) error {
	return b.write(SetW(key, value))
}

// SetNX implements Store (it reads the key).
func (b *Batch) SetNX(ctx context.Context, key string, value []byte) (bool, error) {
	b.mu.Lock()
	v, ok := b.known[key]
	b.mu.Unlock()
	if !ok {
		s, found, err := b.read.Get(ctx, key)
		if err != nil {
			return false, err
		}
		if found {
			v = &memValue{kind: kindString, str: s}
		}
	}
	if v != nil {
		return false, nil
	}
	return true, b.write(SetW(key, value))
}

// Delete implements Store.
func (b *Batch) Delete(_ context.Context, keys ...string) error {
	for _, k := range keys {
		if err := b.write(DelW(k)); err != nil {
			return err
		}
	}
	return nil
}

// SAdd implements Store; the count is of members new to the batch's view when the set was
// read, else of all members.
func (b *Batch) SAdd(_ context.Context, key string, members ...string) (int, error) {
	if len(members) == 0 {
		return 0, nil
	}
	return len(members), b.write(SAddW(key, members...))
}

// SRem implements Store (the count is of the members named).
func (b *Batch) SRem(_ context.Context, key string, members ...string) (int, error) {
	if len(members) == 0 {
		return 0, nil
	}
	return len(members), b.write(SRemW(key, members...))
}

// SMembers implements Store.
func (b *Batch) SMembers(ctx context.Context, key string) ([]string, error) {
	v, err := b.load(ctx, key, kindSet)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return []string{}, nil
	}
	return slices.Sorted(maps.Keys(v.set)), nil
}

// SIsMember implements Store.
func (b *Batch) SIsMember(ctx context.Context, key, member string) (bool, error) {
	v, err := b.load(ctx, key, kindSet)
	if err != nil || v == nil {
		return false, err
	}
	_, ok := v.set[member]
	return ok, nil
}

// SCard implements Store.
func (b *Batch) SCard(ctx context.Context, key string) (int, error) {
	b.mu.Lock()
	_, known := b.known[key]
	blind := len(b.blind[key])
	b.mu.Unlock()
	if !known && blind == 0 {
		return b.read.SCard(ctx, key) // untouched by the batch: no need to read the members
	}
	v, err := b.load(ctx, key, kindSet)
	if err != nil || v == nil {
		return 0, err
	}
	return len(v.set), nil
}

// HSet implements Store.
func (b *Batch) HSet(_ context.Context, key string, fields map[string][]byte) error {
	if len(fields) == 0 {
		return nil
	}
	return b.write(HSetW(key, maps.Clone(fields)))
}

// HGetAll implements Store.
func (b *Batch) HGetAll(ctx context.Context, key string) (map[string][]byte, error) {
	v, err := b.load(ctx, key, kindHash)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	if v != nil {
		for f, x := range v.hash {
			out[f] = cloneBytes(x)
		}
	}
	return out, nil
}

// IncrBy implements Store (it reads the key).
func (b *Batch) IncrBy(ctx context.Context, key string, n int64) (int64, error) {
	v, err := b.load(ctx, key, kindString)
	if err != nil {
		return 0, err
	}
	var cur int64
	if v != nil {
		if cur, err = strconv.ParseInt(string(v.str), 10, 64); err != nil {
			return 0, ErrNotInteger
		}
	}
	cur += n
	return cur, b.write(SetW(key, []byte(strconv.FormatInt(cur, 10))))
}

// Keys implements Store: the base's keys with the batch's writes applied.
func (b *Batch) Keys(ctx context.Context, prefix string) ([]string, error) {
	ks, err := b.read.Keys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, k := range ks {
		set[k] = true
	}
	b.mu.Lock()
	for k, v := range b.known {
		if strings.HasPrefix(k, prefix) {
			set[k] = v != nil
		}
	}
	for k := range b.blind {
		if strings.HasPrefix(k, prefix) {
			set[k] = true
		}
	}
	b.mu.Unlock()
	out := make([]string, 0, len(set))
	for k, ok := range set {
		if ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// FlushPrefix is not supported inside a batch.
func (b *Batch) FlushPrefix(context.Context, string) error {
	return fmt.Errorf("store: FlushPrefix inside a batch: %w", errors.ErrUnsupported)
}

// Close implements Store; it discards the batch and leaves the base open.
func (b *Batch) Close() error {
	b.Discard()
	return nil
}

var _ Store = (*Batch)(nil)
