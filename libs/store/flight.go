package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ErrPriorNotApplied is the error of a commit of a batch begun after a commit under way
// (NewBatchAfter) when that commit did not apply: the batch was folded on writes the base does
// not have, so it writes nothing.
var ErrPriorNotApplied = errors.New("store: the commit this batch follows did not apply")

// Flight is a Batch's commit under way (Batch.Start). Its writes go to the base in the
// background while the next batch, begun with NewBatchAfter, is applied on a view of the base
// that answers with them; that batch commits only after this one applied.
type Flight struct {
	base Store
	// known and blind are the batch's view when it started, its last writes included: read
	// only from then on.
	known map[string]*memValue
	blind map[string][]Write

	done    chan struct{}
	applied bool
	err     error
}

// Wait waits for the commit to end and reports, as Commit does, whether it applied. It may be
// called any number of times.
func (f *Flight) Wait() (bool, error) {
	<-f.done
	return f.applied, f.err
}

// Done is closed once the commit has ended.
func (f *Flight) Done() <-chan struct{} { return f.done }

// Start begins committing the pending writes and extra as Commit does, in the background, and
// returns at once; the Flight reports the outcome. The batch is empty afterwards. Start takes
// extra's values: the caller must not change them afterwards. A batch begun after a commit
// under way waits for it first (a Flight that fails with ErrPriorNotApplied when it did not
// apply).
func (b *Batch) Start(ctx context.Context, guard string, want []byte, extra ...Write) *Flight {
	f := &Flight{base: b.base, done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.settleAfter(); err != nil {
		b.reset()
		f.err = err
		close(f.done)
		return f
	}
	b.absorb(extra)
	ws := b.take(extra)
	f.known, f.blind = b.known, b.blind
	b.reset()
	if len(ws) == 0 {
		f.applied = true
		close(f.done)
		return f
	}
	up := b.base.(Updater)
	go func() {
		defer close(f.done)
		f.applied, f.err = up.Update(ctx, guard, want, ws...)
	}()
	return f
}

// Flush writes the pending writes and extra as Commit does, but after a write that applied the
// batch keeps the values it knows (the base holds them now), so the keys it read are not read
// again; it takes extra's values. After a guard that failed or an error the batch is empty.
func (b *Batch) Flush(ctx context.Context, guard string, want []byte, extra ...Write) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.settleAfter(); err != nil {
		b.reset()
		return false, err
	}
	b.absorb(extra)
	ws := b.take(extra)
	known := b.known
	b.reset()
	if len(ws) == 0 {
		b.known = known
		return true, nil
	}
	ok, err := b.base.(Updater).Update(ctx, guard, want, ws...)
	if ok && err == nil {
		b.known = known
	}
	return ok, err
}

// NewBatchAfter returns an empty batch over f's base that reads through f: a key f writes reads
// as f leaves it, whether or not f's commit reached the base yet. Its commits (Commit, Start,
// Flush) wait for f first, and write nothing, failing with ErrPriorNotApplied, when f did not
// apply.
func NewBatchAfter(f *Flight) *Batch {
	b := &Batch{base: f.base, read: &flightView{f: f}, after: f}
	b.reset()
	return b
}

// settleAfter waits for the commit the batch follows, if any, and reads the base alone from
// then on; it fails when that commit did not apply. The caller holds mu.
func (b *Batch) settleAfter() error {
	if b.after == nil {
		return nil
	}
	f := b.after
	b.after, b.read = nil, b.base
	ok, err := f.Wait()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPriorNotApplied, err)
	}
	if !ok {
		return fmt.Errorf("%w: its guard failed", ErrPriorNotApplied)
	}
	return nil
}

// absorb applies ws, writes the batch does not record (Commit's extra), to the values the batch
// knows, taking their values; a write to a key the batch does not know is kept blind. The
// caller holds mu.
func (b *Batch) absorb(ws []Write) {
	sets := 0
	for _, w := range ws {
		if w.Op == OpSet {
			sets++
		}
	}
	strs := make([]memValue, sets) // the set values in one allocation (a batch's records)
	for _, w := range ws {
		switch w.Op {
		case OpSet:
			delete(b.blind, w.Key)
			strs[0] = memValue{kind: kindString, str: w.Value}
			b.known[w.Key] = &strs[0]
			strs = strs[1:]
		case OpDelete:
			delete(b.blind, w.Key)
			b.known[w.Key] = nil
		case OpSAdd, OpSRem, OpHSet:
			v, ok := b.known[w.Key]
			if !ok {
				b.blind[w.Key] = append(b.blind[w.Key], w)
				continue
			}
			nv, err := applyTo(v, w)
			if err != nil {
				// A write of the wrong type fails the commit itself; the value is not known.
				delete(b.known, w.Key)
				continue
			}
			b.known[w.Key] = nv
		}
	}
}

// flightView is a read-only Store: the base as a commit under way leaves it.
type flightView struct{ f *Flight }

var (
	_ Store       = (*flightView)(nil)
	_ MultiGetter = (*flightView)(nil)
	_ MultiCarder = (*flightView)(nil)
)

var errReadOnly = errors.New("store: a view of a commit under way is read only")

// value returns key's value as kind k as the flight leaves it, and whether the flight wrote
// the key (when not, the base has it as it is). The value is shared: callers copy what they
// keep, except strings, which nothing changes in place.
func (v *flightView) value(ctx context.Context, key string, k kind) (*memValue, bool, error) {
	if x, ok := v.f.known[key]; ok {
		if x != nil && x.kind != k {
			return nil, true, ErrWrongType
		}
		return x, true, nil
	}
	ws := v.f.blind[key]
	if len(ws) == 0 {
		return nil, false, nil
	}
	bk := kindSet
	if ws[0].Op == OpHSet {
		bk = kindHash
	}
	x, err := readValue(ctx, v.f.base, key, bk)
	if err != nil {
		return nil, true, err
	}
	for _, w := range ws {
		if x, err = applyTo(x, w); err != nil {
			return nil, true, err
		}
	}
	if x != nil && x.kind != k {
		return nil, true, ErrWrongType
	}
	return x, true, nil
}

// touched says whether the flight wrote key.
func (v *flightView) touched(key string) bool {
	if _, ok := v.f.known[key]; ok {
		return true
	}
	return len(v.f.blind[key]) > 0
}

// Get implements Store.
func (v *flightView) Get(ctx context.Context, key string) ([]byte, bool, error) {
	x, touched, err := v.value(ctx, key, kindString)
	if err != nil {
		return nil, false, err
	}
	if !touched {
		return v.f.base.Get(ctx, key)
	}
	if x == nil {
		return nil, false, nil
	}
	return x.str, true, nil
}

// GetMany implements MultiGetter: the keys the flight wrote from it, the others in one round
// trip to the base (a key of another type reads as absent, as MGET does).
func (v *flightView) GetMany(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	var rest []string
	var at []int
	for i, k := range keys {
		if !v.touched(k) {
			rest, at = append(rest, k), append(at, i)
			continue
		}
		if x := v.f.known[k]; x != nil && x.kind == kindString {
			values[i], found[i] = x.str, true
		}
		// Blind writes are set and hash writes: not a string.
	}
	if len(rest) == 0 {
		return values, found, nil
	}
	mg, ok := v.f.base.(MultiGetter)
	if !ok {
		for j, k := range rest {
			s, ok, err := v.f.base.Get(ctx, k)
			if errors.Is(err, ErrWrongType) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			values[at[j]], found[at[j]] = s, ok
		}
		return values, found, nil
	}
	vs, fs, err := mg.GetMany(ctx, rest)
	if err != nil {
		return nil, nil, err
	}
	for j := range rest {
		values[at[j]], found[at[j]] = vs[j], fs[j]
	}
	return values, found, nil
}

// SMembers implements Store.
func (v *flightView) SMembers(ctx context.Context, key string) ([]string, error) {
	x, touched, err := v.value(ctx, key, kindSet)
	if err != nil {
		return nil, err
	}
	if !touched {
		return v.f.base.SMembers(ctx, key)
	}
	if x == nil {
		return []string{}, nil
	}
	return slices.Sorted(maps.Keys(x.set)), nil
}

// SIsMember implements Store.
func (v *flightView) SIsMember(ctx context.Context, key, member string) (bool, error) {
	x, touched, err := v.value(ctx, key, kindSet)
	if err != nil {
		return false, err
	}
	if !touched {
		return v.f.base.SIsMember(ctx, key, member)
	}
	if x == nil {
		return false, nil
	}
	_, ok := x.set[member]
	return ok, nil
}

// SCard implements Store.
func (v *flightView) SCard(ctx context.Context, key string) (int, error) {
	x, touched, err := v.value(ctx, key, kindSet)
	if err != nil {
		return 0, err
	}
	if !touched {
		return v.f.base.SCard(ctx, key)
	}
	if x == nil {
		return 0, nil
	}
	return len(x.set), nil
}

// SCardMany implements MultiCarder: the sets the flight wrote from it, the others in one round
// trip to the base.
func (v *flightView) SCardMany(ctx context.Context, keys []string) ([]int, error) {
	out := make([]int, len(keys))
	var rest []string
	var at []int
	for i, k := range keys {
		if !v.touched(k) {
			rest, at = append(rest, k), append(at, i)
			continue
		}
		n, err := v.SCard(ctx, k)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	if len(rest) == 0 {
		return out, nil
	}
	ns, err := scardMany(ctx, v.f.base, rest)
	if err != nil {
		return nil, err
	}
	for j, n := range ns {
		out[at[j]] = n
	}
	return out, nil
}

// SMembersSCardMany implements MultiCarder.
func (v *flightView) SMembersSCardMany(ctx context.Context, set string, keys []string) ([]string, []int, error) {
	return membersThenCards(ctx, v, set, keys)
}

// HGetAll implements Store.
func (v *flightView) HGetAll(ctx context.Context, key string) (map[string][]byte, error) {
	x, touched, err := v.value(ctx, key, kindHash)
	if err != nil {
		return nil, err
	}
	if !touched {
		return v.f.base.HGetAll(ctx, key)
	}
	out := map[string][]byte{}
	if x != nil {
		for f, b := range x.hash {
			out[f] = cloneBytes(b)
		}
	}
	return out, nil
}

// Keys implements Store: the base's keys with the flight's writes applied.
func (v *flightView) Keys(ctx context.Context, prefix string) ([]string, error) {
	ks, err := v.f.base.Keys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(ks))
	for _, k := range ks {
		set[k] = true
	}
	for k, x := range v.f.known {
		if strings.HasPrefix(k, prefix) {
			set[k] = x != nil
		}
	}
	for k := range v.f.blind {
		if strings.HasPrefix(k, prefix) {
			set[k] = true
		}
	}
	out := make([]string, 0, len(set))
	for k, ok := range set {
		if ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Set is not supported: the view is read only (as are the other writes below).
func (v *flightView) Set(context.Context, string, []byte) error { return errReadOnly }

// SetNX is not supported.
func (v *flightView) SetNX(context.Context, string, []byte) (bool, error) { return false, errReadOnly }

// Delete is not supported.
func (v *flightView) Delete(context.Context, ...string) error { return errReadOnly }

// SAdd is not supported.
func (v *flightView) SAdd(context.Context, string, ...string) (int, error) { return 0, errReadOnly }

// SRem is not supported.
func (v *flightView) SRem(context.Context, string, ...string) (int, error) { return 0, errReadOnly }

// HSet is not supported.
func (v *flightView) HSet(context.Context, string, map[string][]byte) error { return errReadOnly }

// IncrBy is not supported.
func (v *flightView) IncrBy(context.Context, string, int64) (int64, error) { return 0, errReadOnly }

// FlushPrefix is not supported.
func (v *flightView) FlushPrefix(context.Context, string) error { return errReadOnly }

// Close implements Store; the base stays open.
func (v *flightView) Close() error { return nil }
