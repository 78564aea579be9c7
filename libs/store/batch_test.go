package store_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
)

func TestABatchReadsItsOwnWritesAndCommitsThemAtOnce(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return store.NewMemory() },
		"redis":  func(t *testing.T) store.Store { return store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "b:") },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			base := open(t)
			require.NoError(t, base.Set(ctx, "cp", []byte("7")))
			_, err := base.SAdd(ctx, "s", "a", "b")
			require.NoError(t, err)
			require.NoError(t, base.Set(ctx, "k1", []byte("old")))

			b, err := store.NewBatch(base)
			require.NoError(t, err)
			require.NoError(t, b.Prefetch(ctx, []string{"k1", "k2"}))
			_, err = b.SAdd(ctx, "s", "c") // blind: the set is not read yet
			require.NoError(t, err)
			_, err = b.SRem(ctx, "s", "a")
			require.NoError(t, err)
			require.NoError(t, b.Set(ctx, "k1", []byte("v1")))
			require.NoError(t, b.Set(ctx, "k1", []byte("v2")))
			require.NoError(t, b.HSet(ctx, "h", map[string][]byte{"f": []byte("x")}))
			got, found, err := b.Get(ctx, "k1")
			require.NoError(t, err)
			require.True(t, found)
			require.Equal(t, "v2", string(got))
			_, found, err = b.Get(ctx, "k2")
			require.NoError(t, err)
			require.False(t, found)
			ms, err := b.SMembers(ctx, "s")
			require.NoError(t, err)
			require.Equal(t, []string{"b", "c"}, ms, "the base's members with the batch's writes")
			n, err := b.SCard(ctx, "s")
			require.NoError(t, err)
			require.Equal(t, 2, n)
			keys, err := b.Keys(ctx, "")
			require.NoError(t, err)
			require.Equal(t, []string{"cp", "h", "k1", "s"}, keys)

			// Nothing reached the base yet.
			v, _, err := base.Get(ctx, "k1")
			require.NoError(t, err)
			require.Equal(t, "old", string(v))

			ok, err := b.Commit(ctx, "cp", []byte("6"))
			require.NoError(t, err)
			require.False(t, ok, "a stale guard commits nothing")
			require.Zero(t, b.Pending())
			v, _, err = base.Get(ctx, "k1")
			require.NoError(t, err)
			require.Equal(t, "old", string(v))

			require.NoError(t, b.Set(ctx, "k1", []byte("v2")))
			_, err = b.SAdd(ctx, "s", "c")
			require.NoError(t, err)
			ok, err = b.Commit(ctx, "cp", []byte("7"), store.SetW("cp", []byte("9")))
			require.NoError(t, err)
			require.True(t, ok)
			v, _, err = base.Get(ctx, "k1")
			require.NoError(t, err)
			require.Equal(t, "v2", string(v))
			v, _, err = base.Get(ctx, "cp")
			require.NoError(t, err)
			require.Equal(t, "9", string(v))
			ms, err = base.SMembers(ctx, "s")
			require.NoError(t, err)
			require.Equal(t, []string{"a", "b", "c"}, ms)
		})
	}
}

// A batch's set moves of many members keep each key's order (an add after a removal of the
// same member wins) however they are merged, and SCardMany counts sets in and out of a batch.
func TestABatchMergesSetWritesInOrderAndCountsManySets(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.Store{
		"memory":   func(*testing.T) store.Store { return store.NewMemory() },
		"redis":    func(t *testing.T) store.Store { return store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "b:") },
		"prefixed": func(*testing.T) store.Store { return store.Prefixed(store.NewMemory(), "p:") },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			base := open(t)
			_, err := base.SAdd(ctx, "old", "x0", "x1", "x2")
			require.NoError(t, err)
			b, err := store.NewBatch(base)
			require.NoError(t, err)
			for _, m := range []string{"x0", "x1", "x2"} {
				_, err = b.SRem(ctx, "old", m)
				require.NoError(t, err)
				_, err = b.SAdd(ctx, "new", m)
				require.NoError(t, err)
			}
			_, err = b.SAdd(ctx, "old", "x1") // back again, after its removal
			require.NoError(t, err)
			_, err = b.SRem(ctx, "new", "x2")
			require.NoError(t, err)
			require.NoError(t, b.HSet(ctx, "h", map[string][]byte{"a": []byte("1")}))
			require.NoError(t, b.HSet(ctx, "h", map[string][]byte{"b": []byte("2"), "a": []byte("3")}))

			ns, err := b.SCardMany(ctx, []string{"old", "new", "absent"})
			require.NoError(t, err)
			require.Equal(t, []int{1, 2, 0}, ns)
			ok, err := b.Commit(ctx, "cp", nil)
			require.NoError(t, err)
			require.True(t, ok)

			ms, err := base.SMembers(ctx, "old")
			require.NoError(t, err)
			require.Equal(t, []string{"x1"}, ms)
			ms, err = base.SMembers(ctx, "new")
			require.NoError(t, err)
			require.Equal(t, []string{"x0", "x1"}, ms)
			h, err := base.HGetAll(ctx, "h")
			require.NoError(t, err)
			require.Equal(t, map[string][]byte{"a": []byte("3"), "b": []byte("2")}, h)
			ns, err = base.(store.MultiCarder).SCardMany(ctx, []string{"old", "new", "absent"})
			require.NoError(t, err)
			require.Equal(t, []int{1, 2, 0}, ns)
		})
	}
}
