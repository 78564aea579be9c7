package store_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
)

// gated is a store whose Updates wait until the test opens the gate, so a commit stays under
// way as long as the test needs.
type gated struct {
	store.Store
	gate chan struct{}
}

func (g *gated) Update(ctx context.Context, guard string, want []byte, ws ...store.Write) (bool, error) {
	<-g.gate
	return g.Store.(store.Updater).Update(ctx, guard, want, ws...)
}

func (g *gated) GetMany(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	return g.Store.(store.MultiGetter).GetMany(ctx, keys)
}

func bases() map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return store.NewMemory() },
		"redis":  func(t *testing.T) store.Store { return store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "f:") },
	}
}

// TestABatchAfterACommitUnderWayReadsItsWrites: while batch N's commit is under way, batch N+1
// reads what N writes (not the base's older values), its commit goes only after N applied,
// and it writes nothing when N did not apply.
func TestABatchAfterACommitUnderWayReadsItsWrites(t *testing.T) {
	for name, open := range bases() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			inner := open(t)
			require.NoError(t, inner.Set(ctx, "cp", []byte("1")))
			require.NoError(t, inner.Set(ctx, "rec", []byte("old")))
			require.NoError(t, inner.Set(ctx, "other", []byte("base")))
			_, err := inner.SAdd(ctx, "s", "a", "b")
			require.NoError(t, err)
			base := &gated{Store: inner, gate: make(chan struct{})}

			n, err := store.NewBatch(base)
			require.NoError(t, err)
			require.NoError(t, n.Prefetch(ctx, []string{"rec"}))
			_, err = n.SAdd(ctx, "s", "c") // blind
			require.NoError(t, err)
			require.NoError(t, n.HSet(ctx, "h", map[string][]byte{"f": []byte("x")}))
			f := n.Start(ctx, "cp", []byte("1"), store.SetW("rec", []byte("new")), store.SRemW("s", "a"),
				store.SetW("cp", []byte("2")))
			select {
			case <-f.Done():
				t.Fatal("the commit went through a closed gate")
			default:
			}

			next := store.NewBatchAfter(f)
			require.NoError(t, next.Prefetch(ctx, []string{"rec", "other"}))
			got, _, err := next.Get(ctx, "rec")
			require.NoError(t, err)
			require.Equal(t, "new", string(got), "what the commit under way writes")
			got, _, err = next.Get(ctx, "other")
			require.NoError(t, err)
			require.Equal(t, "base", string(got), "a key it does not write: the base's")
			ms, err := next.SMembers(ctx, "s")
			require.NoError(t, err)
			require.Equal(t, []string{"b", "c"}, ms)
			n2, err := next.SCard(ctx, "s")
			require.NoError(t, err)
			require.Equal(t, 2, n2)
			h, err := next.HGetAll(ctx, "h")
			require.NoError(t, err)
			require.Equal(t, map[string][]byte{"f": []byte("x")}, h)
			cp, _, err := next.Get(ctx, "cp")
			require.NoError(t, err)
			require.Equal(t, "2", string(cp))
			v, _, err := inner.Get(ctx, "rec")
			require.NoError(t, err)
			require.Equal(t, "old", string(v), "the base has not changed yet")

			require.NoError(t, next.Set(ctx, "rec", []byte("newer")))
			close(base.gate)
			ok, err := next.Commit(ctx, "cp", []byte("2"), store.SetW("cp", []byte("3")))
			require.NoError(t, err)
			require.True(t, ok, "committed after the one it follows")
			applied, err := f.Wait()
			require.NoError(t, err)
			require.True(t, applied)
			v, _, err = inner.Get(ctx, "rec")
			require.NoError(t, err)
			require.Equal(t, "newer", string(v))
			ms, err = inner.SMembers(ctx, "s")
			require.NoError(t, err)
			require.Equal(t, []string{"b", "c"}, ms)

			// A commit under way whose guard fails: the batch after it writes nothing.
			m, err := store.NewBatch(inner)
			require.NoError(t, err)
			require.NoError(t, m.Set(ctx, "rec", []byte("lost")))
			f = m.Start(ctx, "cp", []byte("2"), store.SetW("cp", []byte("4"))) // cp is 3
			after := store.NewBatchAfter(f)
			got, _, err = after.Get(ctx, "rec")
			require.NoError(t, err)
			require.Equal(t, "lost", string(got))
			require.NoError(t, after.Set(ctx, "other", []byte("never")))
			ok, err = after.Commit(ctx, "cp", []byte("4"), store.SetW("cp", []byte("5")))
			require.ErrorIs(t, err, store.ErrPriorNotApplied)
			require.False(t, ok)
			applied, err = f.Wait()
			require.NoError(t, err)
			require.False(t, applied, "its guard failed")
			for k, want := range map[string]string{"rec": "newer", "other": "base", "cp": "3"} {
				v, _, err := inner.Get(ctx, k)
				require.NoError(t, err)
				require.Equal(t, want, string(v), k)
			}
		})
	}
}

// TestAFlushKeepsWhatTheBatchKnows: after a flush that applied, the batch still answers with
// the values it read and wrote (extra included) without reading them again; after one whose
// guard failed it is empty.
func TestAFlushKeepsWhatTheBatchKnows(t *testing.T) {
	for name, open := range bases() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			base := open(t)
			require.NoError(t, base.Set(ctx, "cp", []byte("1")))
			require.NoError(t, base.Set(ctx, "rec", []byte("old")))
			b, err := store.NewBatch(base)
			require.NoError(t, err)
			require.NoError(t, b.Prefetch(ctx, []string{"rec"}))
			require.NoError(t, b.Set(ctx, "run", []byte("r1")))
			ok, err := b.Flush(ctx, "cp", []byte("1"), store.SetW("rec", []byte("new")))
			require.NoError(t, err)
			require.True(t, ok)
			require.Zero(t, b.Pending())
			// Changed behind the batch's back: the batch keeps what it wrote.
			require.NoError(t, base.Set(ctx, "rec", []byte("behind")))
			got, _, err := b.Get(ctx, "rec")
			require.NoError(t, err)
			require.Equal(t, "new", string(got), "the record the flush wrote, not read again")
			got, _, err = b.Get(ctx, "run")
			require.NoError(t, err)
			require.Equal(t, "r1", string(got))

			ok, err = b.Flush(ctx, "cp", []byte("0"), store.SetW("x", []byte("y")))
			require.NoError(t, err)
			require.False(t, ok)
			got, _, err = b.Get(ctx, "rec")
			require.NoError(t, err)
			require.Equal(t, "behind", string(got), "after a failed guard the batch reads again")
		})
	}
}
