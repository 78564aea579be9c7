package kvstore_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/testkit"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/kvstore"
)

func open(t *testing.T) *kvstore.Bucket[*catalogv1.AutoApprovalRule] {
	t.Helper()
	ns := testkit.StartNATS(t)
	js, err := jetstream.New(ns.Connect(t))
	require.NoError(t, err)
	b, err := kvstore.Open(t.Context(), js, kvstore.Config{Name: "test_rules", History: 4}, func() *catalogv1.AutoApprovalRule { return &catalogv1.AutoApprovalRule{} })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return b
}

func TestBucket(t *testing.T) {
	t.Run("of two writers at the same revision one wins and the other gets a conflict", func(t *testing.T) {
		b := open(t)
		rev, err := b.Create(t.Context(), "r1", &catalogv1.AutoApprovalRule{RuleId: "r1"})
		require.NoError(t, err)
		_, err = b.Create(t.Context(), "r1", &catalogv1.AutoApprovalRule{RuleId: "r1"})
		require.ErrorIs(t, err, kvstore.ErrConflict)
		next, err := b.Update(t.Context(), "r1", &catalogv1.AutoApprovalRule{RuleId: "r1", ApproveAfterDays: 1}, rev)
		require.NoError(t, err)
		_, err = b.Update(t.Context(), "r1", &catalogv1.AutoApprovalRule{RuleId: "r1", ApproveAfterDays: 2}, rev)
		require.ErrorIs(t, err, kvstore.ErrConflict)
		require.ErrorIs(t, err, apierr.ErrFailedPrecondition)
		e, found, err := b.Get(t.Context(), "r1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, next, e.Revision)
		require.Equal(t, int32(1), e.Value.GetApproveAfterDays())
		err = b.Delete(t.Context(), "r1", rev)
		require.ErrorIs(t, err, kvstore.ErrConflict, "a delete at a stale revision loses too")
	})
	t.Run("the mirror has every write once Sync returns, and keeps history", func(t *testing.T) {
		b := open(t)
		require.NoError(t, b.Ready(t.Context()))
		for _, id := range []string{"c", "a", "b"} {
			_, err := b.Put(t.Context(), id, &catalogv1.AutoApprovalRule{RuleId: id}, 0)
			require.NoError(t, err)
		}
		require.NoError(t, b.Sync(t.Context()))
		var keys []string
		for _, e := range b.Snapshot() {
			keys = append(keys, e.Key)
		}
		require.Equal(t, []string{"a", "b", "c"}, keys)
		e, _ := b.Cached("a")
		_, err := b.Update(t.Context(), "a", &catalogv1.AutoApprovalRule{RuleId: "a", Enabled: true}, e.Revision)
		require.NoError(t, err)
		hist, err := b.History(t.Context(), "a")
		require.NoError(t, err)
		require.Len(t, hist, 2)
		require.False(t, hist[0].Value.GetEnabled())
		require.True(t, hist[1].Value.GetEnabled())
		none, err := b.History(t.Context(), "zz")
		require.NoError(t, err)
		require.Empty(t, none)
		_, found, err := b.Get(t.Context(), "zz")
		require.NoError(t, err)
		require.False(t, found)
	})
}
