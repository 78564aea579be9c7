// Package storetest is the contract every store.Store implementation must
// meet. Each implementation's tests call Run with a constructor, so the
// in-memory and Redis stores are held to the same behaviour, Redis's own.
package storetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
)

// Run runs the contract suite. newStore must return an empty store each
// time it is called; Run closes it when the subtest ends.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	for _, tc := range contract {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, t.Context(), open(t))
		})
	}
}

type contractCase struct {
	name string
	run  func(t *testing.T, ctx context.Context, s store.Store)
}

var contract = []contractCase{
	{"Get of an absent key is not found", func(t *testing.T, ctx context.Context, s store.Store) {
		v, found, err := s.Get(ctx, "absent")
		require.NoError(t, err)
		require.False(t, found)
		require.Nil(t, v)
	}},
	{"Set then Get returns the value", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "k", []byte("v1")))
		requireString(t, ctx, s, "k", "v1")
	}},
	{"Set replaces the value", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "k", []byte("v1")))
		require.NoError(t, s.Set(ctx, "k", []byte("v2")))
		requireString(t, ctx, s, "k", "v2")
	}},
	{"an empty value is found", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "k", []byte{}))
		v, found, err := s.Get(ctx, "k")
		require.NoError(t, err)
		require.True(t, found)
		require.Empty(t, v)
	}},
	{"binary values round-trip byte for byte", func(t *testing.T, ctx context.Context, s store.Store) {
		bin := []byte{0x00, 0xff, 0xfe, '\n', 0x80, 0x00}
		require.NoError(t, s.Set(ctx, "bin", bin))
		require.NoError(t, s.HSet(ctx, "h", map[string][]byte{"f": bin}))
		v, _, err := s.Get(ctx, "bin")
		require.NoError(t, err)
		require.Equal(t, bin, v)
		h, err := s.HGetAll(ctx, "h")
		require.NoError(t, err)
		require.Equal(t, bin, h["f"])
	}},
	{"changing a slice after Set or Get does not change the stored value", func(t *testing.T, ctx context.Context, s store.Store) {
		in := []byte("abc")
		require.NoError(t, s.Set(ctx, "k", in))
		in[0] = 'X'
		out, _, err := s.Get(ctx, "k")
		require.NoError(t, err)
		out[1] = 'Y'
		requireString(t, ctx, s, "k", "abc")
	}},
	{"Set replaces a set or a hash", func(t *testing.T, ctx context.Context, s store.Store) {
		_, err := s.SAdd(ctx, "set", "a")
		require.NoError(t, err)
		require.NoError(t, s.HSet(ctx, "hash", map[string][]byte{"f": []byte("1")}))
		require.NoError(t, s.Set(ctx, "set", []byte("now a string")))
		require.NoError(t, s.Set(ctx, "hash", []byte("also a string")))
		requireString(t, ctx, s, "set", "now a string")
		requireString(t, ctx, s, "hash", "also a string")
	}},
	{"SetNX sets an absent key once and keeps the first value", func(t *testing.T, ctx context.Context, s store.Store) {
		set, err := s.SetNX(ctx, "mark", []byte("first"))
		require.NoError(t, err)
		require.True(t, set)
		set, err = s.SetNX(ctx, "mark", []byte("second"))
		require.NoError(t, err)
		require.False(t, set)
		requireString(t, ctx, s, "mark", "first")
	}},
	{"SetNX does not touch a key of another type", func(t *testing.T, ctx context.Context, s store.Store) {
		_, err := s.SAdd(ctx, "set", "a")
		require.NoError(t, err)
		set, err := s.SetNX(ctx, "set", []byte("x"))
		require.NoError(t, err)
		require.False(t, set)
		requireMembers(t, ctx, s, "set", "a")
	}},
	{"Delete removes keys of every type and ignores absent ones", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "str", []byte("1")))
		_, err := s.SAdd(ctx, "set", "a")
		require.NoError(t, err)
		require.NoError(t, s.HSet(ctx, "hash", map[string][]byte{"f": []byte("1")}))
		require.NoError(t, s.Set(ctx, "keep", []byte("1")))

		require.NoError(t, s.Delete(ctx, "str", "set", "hash", "absent"))
		require.NoError(t, s.Delete(ctx))

		requireKeys(t, ctx, s, "", "keep")
	}},
	{"SAdd counts only new members", func(t *testing.T, ctx context.Context, s store.Store) {
		tests := []struct {
			name    string
			members []string
			want    int
		}{
			{"new members are counted", []string{"b", "a"}, 2},
			{"an existing member is not counted", []string{"a", "c"}, 1},
			{"a member repeated in one call counts once", []string{"d", "d"}, 1},
			{"no members adds nothing", nil, 0},
		}
		for _, tt := range tests {
			added, err := s.SAdd(ctx, "set", tt.members...)
			require.NoError(t, err, tt.name)
			require.Equal(t, tt.want, added, tt.name)
		}
		requireMembers(t, ctx, s, "set", "a", "b", "c", "d")
	}},
	{"SAdd with no members creates no key", func(t *testing.T, ctx context.Context, s store.Store) {
		added, err := s.SAdd(ctx, "set")
		require.NoError(t, err)
		require.Zero(t, added)
		requireKeys(t, ctx, s, "")
	}},
	{"SRem counts only present members", func(t *testing.T, ctx context.Context, s store.Store) {
		_, err := s.SAdd(ctx, "set", "a", "b", "c")
		require.NoError(t, err)
		removed, err := s.SRem(ctx, "set", "a", "x")
		require.NoError(t, err)
		require.Equal(t, 1, removed)
		removed, err = s.SRem(ctx, "absent", "a")
		require.NoError(t, err)
		require.Zero(t, removed)
		requireMembers(t, ctx, s, "set", "b", "c")
	}},
	{"removing the last member deletes the set", func(t *testing.T, ctx context.Context, s store.Store) {
		_, err := s.SAdd(ctx, "set", "a")
		require.NoError(t, err)
		_, err = s.SRem(ctx, "set", "a")
		require.NoError(t, err)
		requireKeys(t, ctx, s, "")
		n, err := s.SCard(ctx, "set")
		require.NoError(t, err)
		require.Zero(t, n)
		require.NoError(t, s.HSet(ctx, "set", map[string][]byte{"f": nil}), "the key is free for another type")
	}},
	{"SMembers is sorted ascending and empty for an absent key", func(t *testing.T, ctx context.Context, s store.Store) {
		_, err := s.SAdd(ctx, "set", "wave-3", "i-0b", "i-0a", "10", "9")
		require.NoError(t, err)
		requireMembers(t, ctx, s, "set", "10", "9", "i-0a", "i-0b", "wave-3")
		requireMembers(t, ctx, s, "absent")
	}},
	{"SIsMember and SCard see the set", func(t *testing.T, ctx context.Context, s store.Store) {
		_, err := s.SAdd(ctx, "set", "a", "b")
		require.NoError(t, err)
		tests := []struct {
			name, key, member string
			want              bool
		}{
			{"a member is a member", "set", "a", true},
			{"a non-member is not", "set", "z", false},
			{"nothing is a member of an absent set", "absent", "a", false},
		}
		for _, tt := range tests {
			is, err := s.SIsMember(ctx, tt.key, tt.member)
			require.NoError(t, err, tt.name)
			require.Equal(t, tt.want, is, tt.name)
		}
		n, err := s.SCard(ctx, "set")
		require.NoError(t, err)
		require.Equal(t, 2, n)
		n, err = s.SCard(ctx, "absent")
		require.NoError(t, err)
		require.Zero(t, n)
	}},
	{"HSet merges fields and HGetAll returns them all", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.HSet(ctx, "h", map[string][]byte{"status": []byte("pending"), "wave": []byte("1")}))
		require.NoError(t, s.HSet(ctx, "h", map[string][]byte{"status": []byte("done"), "empty": {}}))
		require.NoError(t, s.HSet(ctx, "h", nil))
		h, err := s.HGetAll(ctx, "h")
		require.NoError(t, err)
		require.Len(t, h, 3)
		require.Equal(t, "done", string(h["status"]))
		require.Equal(t, "1", string(h["wave"]))
		require.Empty(t, h["empty"])
	}},
	{"HGetAll of an absent key is empty", func(t *testing.T, ctx context.Context, s store.Store) {
		h, err := s.HGetAll(ctx, "absent")
		require.NoError(t, err)
		require.Empty(t, h)
	}},
	{"IncrBy counts from zero and stores a decimal string", func(t *testing.T, ctx context.Context, s store.Store) {
		tests := []struct {
			name string
			n    int64
			want int64
		}{
			{"an absent key starts at zero", 5, 5},
			{"a positive step adds", 3, 8},
			{"a negative step subtracts", -10, -2},
			{"a zero step reads the value", 0, -2},
		}
		for _, tt := range tests {
			got, err := s.IncrBy(ctx, "n", tt.n)
			require.NoError(t, err, tt.name)
			require.Equal(t, tt.want, got, tt.name)
		}
		requireString(t, ctx, s, "n", "-2")
	}},
	{"IncrBy adds to an integer written with Set", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "n", []byte("41")))
		got, err := s.IncrBy(ctx, "n", 1)
		require.NoError(t, err)
		require.Equal(t, int64(42), got)
	}},
	{"IncrBy rejects values that are not integers and overflows", func(t *testing.T, ctx context.Context, s store.Store) {
		tests := []struct {
			name  string
			value string
			n     int64
		}{
			{"text is not an integer", "abc", 1},
			{"a decimal fraction is not an integer", "1.5", 1},
			{"an empty value is not an integer", "", 1},
			{"overflow past the largest int64 fails", strconv.FormatInt(math.MaxInt64, 10), 1},
			{"overflow past the smallest int64 fails", strconv.FormatInt(math.MinInt64, 10), -1},
		}
		for _, tt := range tests {
			require.NoError(t, s.Set(ctx, "n", []byte(tt.value)), tt.name)
			_, err := s.IncrBy(ctx, "n", tt.n)
			require.ErrorIs(t, err, store.ErrNotInteger, tt.name)
			requireString(t, ctx, s, "n", tt.value)
		}
	}},
	{"using a key as the wrong type fails with ErrWrongType", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "str", []byte("1")))
		_, err := s.SAdd(ctx, "set", "a")
		require.NoError(t, err)
		require.NoError(t, s.HSet(ctx, "hash", map[string][]byte{"f": []byte("1")}))

		type op struct {
			name string
			call func(key string) error
		}
		stringOps := []op{
			{"Get", func(k string) error { _, _, err := s.Get(ctx, k); return err }},
			{"IncrBy", func(k string) error { _, err := s.IncrBy(ctx, k, 1); return err }},
		}
		setOps := []op{
			{"SAdd", func(k string) error { _, err := s.SAdd(ctx, k, "x"); return err }},
			{"SAdd with no members", func(k string) error { _, err := s.SAdd(ctx, k); return err }},
			{"SRem", func(k string) error { _, err := s.SRem(ctx, k, "x"); return err }},
			{"SRem with no members", func(k string) error { _, err := s.SRem(ctx, k); return err }},
			{"SMembers", func(k string) error { _, err := s.SMembers(ctx, k); return err }},
			{"SIsMember", func(k string) error { _, err := s.SIsMember(ctx, k, "x"); return err }},
			{"SCard", func(k string) error { _, err := s.SCard(ctx, k); return err }},
		}
		hashOps := []op{
			{"HSet", func(k string) error { return s.HSet(ctx, k, map[string][]byte{"g": nil}) }},
			{"HSet with no fields", func(k string) error { return s.HSet(ctx, k, nil) }},
			{"HGetAll", func(k string) error { _, err := s.HGetAll(ctx, k); return err }},
		}
		tests := []struct {
			key string
			ops []op
		}{
			{"str", append(append([]op{}, setOps...), hashOps...)},
			{"set", append(append([]op{}, stringOps...), hashOps...)},
			{"hash", append(append([]op{}, stringOps...), setOps...)},
		}
		for _, tt := range tests {
			for _, o := range tt.ops {
				require.ErrorIs(t, o.call(tt.key), store.ErrWrongType, "%s on the %s key", o.name, tt.key)
			}
		}
		requireString(t, ctx, s, "str", "1")
		requireMembers(t, ctx, s, "set", "a")
	}},
	{"Keys lists keys of every type with the prefix, sorted", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "run:2", []byte("x")))
		_, err := s.SAdd(ctx, "run:1:hosts", "h")
		require.NoError(t, err)
		require.NoError(t, s.HSet(ctx, "run:10", map[string][]byte{"f": nil}))
		require.NoError(t, s.Set(ctx, "other", []byte("x")))
		require.NoError(t, s.Set(ctx, "ru", []byte("x")))

		requireKeys(t, ctx, s, "run:", "run:10", "run:1:hosts", "run:2")
		requireKeys(t, ctx, s, "", "other", "ru", "run:10", "run:1:hosts", "run:2")
		requireKeys(t, ctx, s, "nothing:")
	}},
	{"Keys and FlushPrefix take glob characters in the prefix literally", func(t *testing.T, ctx context.Context, s store.Store) {
		for _, k := range []string{"a*b", "a*c", "axb", `a?\z`, "a[1]", "a1"} {
			require.NoError(t, s.Set(ctx, k, []byte("x")))
		}
		requireKeys(t, ctx, s, "a*", "a*b", "a*c")
		requireKeys(t, ctx, s, "a?", `a?\z`)
		requireKeys(t, ctx, s, `a?\`, `a?\z`)
		requireKeys(t, ctx, s, "a[", "a[1]")
		require.NoError(t, s.FlushPrefix(ctx, "a*"))
		requireKeys(t, ctx, s, "", "a1", `a?\z`, "a[1]", "axb")
	}},
	{"FlushPrefix deletes only keys with the prefix", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "rm:proj:a", []byte("x")))
		_, err := s.SAdd(ctx, "rm:proj:b", "m")
		require.NoError(t, err)
		require.NoError(t, s.HSet(ctx, "rm:proj:c", map[string][]byte{"f": nil}))
		require.NoError(t, s.Set(ctx, "rm:other", []byte("x")))
		require.NoError(t, s.Set(ctx, "idem:1", []byte("x")))

		require.NoError(t, s.FlushPrefix(ctx, "rm:proj:"))
		requireKeys(t, ctx, s, "", "idem:1", "rm:other")
		require.NoError(t, s.FlushPrefix(ctx, "absent:"))
		requireKeys(t, ctx, s, "", "idem:1", "rm:other")
	}},
	{"FlushPrefix with an empty prefix deletes everything", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "a", []byte("x")))
		_, err := s.SAdd(ctx, "b", "m")
		require.NoError(t, err)
		require.NoError(t, s.FlushPrefix(ctx, ""))
		requireKeys(t, ctx, s, "")
	}},
	{"Keys and FlushPrefix handle more keys than one scan batch", func(t *testing.T, ctx context.Context, s store.Store) {
		const n = 1234
		want := make([]string, 0, n)
		for i := range n {
			k := fmt.Sprintf("many:%05d", i)
			want = append(want, k)
			require.NoError(t, s.Set(ctx, k, []byte("x")))
		}
		require.NoError(t, s.Set(ctx, "few:1", []byte("x")))
		keys, err := s.Keys(ctx, "many:")
		require.NoError(t, err)
		require.Equal(t, want, keys)
		require.NoError(t, s.FlushPrefix(ctx, "many:"))
		requireKeys(t, ctx, s, "", "few:1")
	}},
	{"parallel SAdd and IncrBy give exact totals", func(t *testing.T, ctx context.Context, s store.Store) {
		const workers, perWorker = 8, 50
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := range perWorker {
					if _, err := s.SAdd(ctx, "hosts", fmt.Sprintf("w%d-%d", w, i), "shared"); err != nil {
						errs <- err
						return
					}
					if _, err := s.IncrBy(ctx, "done", 1); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		n, err := s.SCard(ctx, "hosts")
		require.NoError(t, err)
		require.Equal(t, workers*perWorker+1, n)
		total, err := s.IncrBy(ctx, "done", 0)
		require.NoError(t, err)
		require.Equal(t, int64(workers*perWorker), total)
	}},
	{"parallel SetNX on one key has exactly one winner", func(t *testing.T, ctx context.Context, s store.Store) {
		const workers = 16
		var wg sync.WaitGroup
		wins := make(chan int, workers)
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				set, err := s.SetNX(ctx, "mark", []byte(strconv.Itoa(w)))
				if err != nil {
					errs <- err
					return
				}
				if set {
					wins <- w
				}
			})
		}
		wg.Wait()
		close(wins)
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		var winners []int
		for w := range wins {
			winners = append(winners, w)
		}
		require.Len(t, winners, 1)
		requireString(t, ctx, s, "mark", strconv.Itoa(winners[0]))
	}},
	{"every method fails with ErrClosed after Close and Close is idempotent", func(t *testing.T, ctx context.Context, s store.Store) {
		require.NoError(t, s.Set(ctx, "k", []byte("v")))
		require.NoError(t, s.Close())
		require.NoError(t, s.Close())

		calls := map[string]func() error{
			"Get":         func() error { _, _, err := s.Get(ctx, "k"); return err },
			"Set":         func() error { return s.Set(ctx, "k", nil) },
			"SetNX":       func() error { _, err := s.SetNX(ctx, "k", nil); return err },
			"Delete":      func() error { return s.Delete(ctx, "k") },
			"SAdd":        func() error { _, err := s.SAdd(ctx, "s", "a"); return err },
			"SRem":        func() error { _, err := s.SRem(ctx, "s", "a"); return err },
			"SMembers":    func() error { _, err := s.SMembers(ctx, "s"); return err },
			"SIsMember":   func() error { _, err := s.SIsMember(ctx, "s", "a"); return err },
			"SCard":       func() error { _, err := s.SCard(ctx, "s"); return err },
			"HSet":        func() error { return s.HSet(ctx, "h", map[string][]byte{"f": nil}) },
			"HGetAll":     func() error { _, err := s.HGetAll(ctx, "h"); return err },
			"IncrBy":      func() error { _, err := s.IncrBy(ctx, "n", 1); return err },
			"Keys":        func() error { _, err := s.Keys(ctx, ""); return err },
			"FlushPrefix": func() error { return s.FlushPrefix(ctx, "") },
		}
		for name, call := range calls {
			require.ErrorIs(t, call(), store.ErrClosed, name)
		}
	}},
	{"Update applies its writes only while the guard holds", func(t *testing.T, ctx context.Context, s store.Store) {
		u, ok := s.(store.Updater)
		require.True(t, ok, "the store implements store.Updater")
		writes := func(seq string) []store.Write {
			return []store.Write{
				store.SetW("seq", []byte(seq)), store.SAddW("set", "a", "b"), store.HSetW("h", map[string][]byte{"f": []byte(seq)}),
			}
		}
		applied, err := u.Update(ctx, "seq", []byte("1"), writes("2")...)
		require.NoError(t, err)
		require.False(t, applied, "the guard is absent, not 1")
		requireKeys(t, ctx, s, "")
		applied, err = u.Update(ctx, "seq", nil, writes("1")...)
		require.NoError(t, err)
		require.True(t, applied, "absent guard, as wanted")
		requireString(t, ctx, s, "seq", "1")
		requireMembers(t, ctx, s, "set", "a", "b")
		applied, err = u.Update(ctx, "seq", []byte("1"), store.SetW("seq", []byte("2")), store.SRemW("set", "a"), store.DelW("h"))
		require.NoError(t, err)
		require.True(t, applied)
		requireString(t, ctx, s, "seq", "2")
		requireMembers(t, ctx, s, "set", "b")
		requireKeys(t, ctx, s, "", "seq", "set")
		applied, err = u.Update(ctx, "seq", []byte("1"), store.SetW("seq", []byte("3")))
		require.NoError(t, err)
		require.False(t, applied, "a stale guard writes nothing")
		requireString(t, ctx, s, "seq", "2")
	}},
	{"sets keep their members exactly as they grow past a handful and shrink to none", func(t *testing.T, ctx context.Context, s store.Store) {
		// The in-memory store keeps small sets in another form than large ones; members are
		// added one at a time (and again), then removed, checking the whole set at each step.
		want := map[string]bool{}
		check := func(step string) {
			t.Helper()
			members := make([]string, 0, len(want))
			for m := range want {
				members = append(members, m)
			}
			slices.Sort(members)
			requireMembers(t, ctx, s, "grow", members...)
			n, err := s.SCard(ctx, "grow")
			require.NoError(t, err)
			require.Equal(t, len(want), n, step)
			for _, m := range []string{"m03", "m11", "m19", "absent"} {
				is, err := s.SIsMember(ctx, "grow", m)
				require.NoError(t, err)
				require.Equal(t, want[m], is, "%s: is %s a member", step, m)
			}
		}
		order := []int{7, 3, 19, 0, 11, 5, 14, 2, 9, 17, 1, 13, 6, 18, 4, 10, 16, 8, 15, 12}
		for i, k := range order {
			m := fmt.Sprintf("m%02d", k)
			added, err := s.SAdd(ctx, "grow", m)
			require.NoError(t, err)
			require.Equal(t, 1, added, "add %s", m)
			want[m] = true
			again, err := s.SAdd(ctx, "grow", m, fmt.Sprintf("m%02d", order[i/2]))
			require.NoError(t, err)
			require.Zero(t, again, "%s and an earlier member again", m)
			check(fmt.Sprintf("after adding %d members", i+1))
		}
		for i := len(order) - 1; i >= 0; i-- {
			m := fmt.Sprintf("m%02d", order[(i*7)%len(order)]) // 7 and 20 are coprime: each once
			removed, err := s.SRem(ctx, "grow", m, "absent")
			require.NoError(t, err)
			require.Equal(t, 1, removed, "remove %s", m)
			delete(want, m)
			check(fmt.Sprintf("with %d members left", len(want)))
		}
		requireKeys(t, ctx, s, "grow")

		u, ok := s.(store.Updater)
		if !ok {
			return
		}
		many := make([]string, 12)
		for i := range many {
			many[i] = fmt.Sprintf("u%02d", 11-i)
		}
		applied, err := u.Update(ctx, "guard", nil, store.SAddW("bulk", many[:3]...), store.SAddW("bulk", many...))
		require.NoError(t, err)
		require.True(t, applied)
		slices.Sort(many)
		requireMembers(t, ctx, s, "bulk", many...)
		applied, err = u.Update(ctx, "guard", nil, store.SRemW("bulk", many[2:]...))
		require.NoError(t, err)
		require.True(t, applied)
		requireMembers(t, ctx, s, "bulk", many[:2]...)
		n, err := s.SCard(ctx, "bulk")
		require.NoError(t, err)
		require.Equal(t, 2, n)
	}},
}

func requireString(t *testing.T, ctx context.Context, s store.Store, key, want string) {
	t.Helper()
	v, found, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.True(t, found, "key %q", key)
	require.Equal(t, want, string(v), "key %q", key)
}

func requireMembers(t *testing.T, ctx context.Context, s store.Store, key string, want ...string) {
	t.Helper()
	got, err := s.SMembers(ctx, key)
	require.NoError(t, err)
	if len(want) == 0 {
		require.Empty(t, got, "members of %q", key)
		return
	}
	require.Equal(t, want, got, "members of %q", key)
}

func requireKeys(t *testing.T, ctx context.Context, s store.Store, prefix string, want ...string) {
	t.Helper()
	got, err := s.Keys(ctx, prefix)
	require.NoError(t, err)
	if len(want) == 0 {
		require.Empty(t, got, "keys with prefix %q", prefix)
		return
	}
	require.Equal(t, want, got, "keys with prefix %q", prefix)
}
