package store_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/store/storetest"
	"github.com/patchwave/patchwave/libs/testkit"
)

func TestRedisMeetsTheStoreContract(t *testing.T) {
	srv := testkit.StartRedis(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		srv.Flush(t)
		s, err := store.NewRedis(store.RedisConfig{Addr: srv.Addr()})
		require.NoError(t, err)
		return s
	})
}

func TestPrefixedRedisMeetsTheStoreContract(t *testing.T) {
	srv := testkit.StartRedis(t)
	ctx := t.Context()
	// Keys outside the namespace, including ones that share its first
	// characters, must stay invisible and untouched.
	noise := srv.Client(t)
	for _, k := range []string{"other", "tenant-a", "tenant-b:k"} {
		require.NoError(t, noise.Set(ctx, k, "x", 0).Err())
	}
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		s, err := store.NewRedis(store.RedisConfig{Addr: srv.Addr(), Prefix: fmt.Sprintf("tenant-a:%d:", n)})
		require.NoError(t, err)
		return s
	})
	for _, k := range []string{"other", "tenant-a", "tenant-b:k"} {
		require.Equal(t, "x", noise.Get(ctx, k).Val(), "key %q outside the namespace survives", k)
	}
}

func TestRedisFromClientMeetsTheStoreContract(t *testing.T) {
	srv := testkit.StartRedis(t)
	client := srv.Client(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		srv.Flush(t)
		return store.NewRedisFromClient(client, "")
	})
	require.NoError(t, client.Ping(t.Context()).Err(), "closing the store leaves the caller's client open")
}

func TestRedisStoreKeepsKeysInItsNamespace(t *testing.T) {
	srv := testkit.StartRedis(t)
	ctx := t.Context()
	s, err := store.NewRedis(store.RedisConfig{Addr: srv.Addr(), Prefix: "pw:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	require.NoError(t, s.Set(ctx, "k", []byte("v")))
	_, err = s.SAdd(ctx, "set", "m")
	require.NoError(t, err)

	raw := srv.Client(t)
	keys, err := raw.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"pw:k", "pw:set"}, keys)
}

func TestRedisPingReportsTheServer(t *testing.T) {
	srv := testkit.StartRedis(t)
	s, err := store.NewRedis(store.RedisConfig{Addr: srv.Addr(), DB: 3})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Ping(t.Context()))

	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Ping(t.Context()), store.ErrClosed)
}

func TestNewRedisRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     store.RedisConfig
		wantErr []string
	}{
		{"a missing address is named", store.RedisConfig{}, []string{"Addr: required"}},
		{"a negative database is named", store.RedisConfig{Addr: "127.0.0.1:6379", DB: -1}, []string{"DB: must be 0..15"}},
		{"every problem is reported at once", store.RedisConfig{DB: 16}, []string{"Addr: required", "DB: must be 0..15"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.NewRedis(tt.cfg)
			require.Nil(t, s)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// TestGuardedUpdatesOfRacingWritersApplyOnce: writers that race to move one guard each read
// it and update guarded by what they read; the guard changing between the read and EXEC
// makes an update apply nothing, so every value of the guard is written by exactly one.
func TestGuardedUpdatesOfRacingWritersApplyOnce(t *testing.T) {
	ctx := t.Context()
	st := store.NewRedisFromClient(testkit.StartRedis(t).Client(t), "race:")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				cur, found, err := st.Get(ctx, "seq")
				require.NoError(t, err)
				var want []byte
				n := 0
				if found {
					want = cur
					n, err = strconv.Atoi(string(cur))
					require.NoError(t, err)
				}
				next := strconv.Itoa(n + 1)
				_, err = st.Update(ctx, "seq", want, store.SetW("seq", []byte(next)),
					store.SAddW("writes", next+"/"+strconv.Itoa(w)+"/"+strconv.Itoa(i)))
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	seq, _, err := st.Get(ctx, "seq")
	require.NoError(t, err)
	ms, err := st.SMembers(ctx, "writes")
	require.NoError(t, err)
	require.Equal(t, string(seq), strconv.Itoa(len(ms)), "one applied update per value of the guard")
	seen := map[string]bool{}
	for _, m := range ms {
		v, _, _ := strings.Cut(m, "/")
		require.False(t, seen[v], "value %s written twice", v)
		seen[v] = true
	}
}
