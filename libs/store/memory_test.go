package store_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/store/storetest"
)

func TestMemoryMeetsTheStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
}

func TestPrefixedMemoryMeetsTheStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		shared := store.NewMemory()
		t.Cleanup(func() { _ = shared.Close() })
		return store.Prefixed(shared, "svc:")
	})
}

func TestPrefixedViewsOfOneStoreDoNotSeeEachOther(t *testing.T) {
	ctx := t.Context()
	shared := store.NewMemory()
	t.Cleanup(func() { _ = shared.Close() })
	a := store.Prefixed(shared, "a:")
	b := store.Prefixed(shared, "b:")

	require.NoError(t, a.Set(ctx, "k", []byte("from a")))
	require.NoError(t, b.Set(ctx, "k", []byte("from b")))
	require.NoError(t, a.FlushPrefix(ctx, ""))

	_, found, err := a.Get(ctx, "k")
	require.NoError(t, err)
	require.False(t, found)
	v, found, err := b.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "from b", string(v))
	keys, err := shared.Keys(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []string{"b:k"}, keys)

	require.NoError(t, a.Close())
	_, err = b.SCard(ctx, "k2")
	require.NoError(t, err, "closing one view leaves the store and other views open")
}
