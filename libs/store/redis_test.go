package store_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestACommitAnsweredLateWaitsForItsReply: a guarded commit that redis-server answers late (the
// server paused, as one that gets no CPU is) applies and says so under the store's default read
// timeout; under a read timeout shorter than the delay it fails with the timeout and, its
// connection closed before the server ran it, writes nothing (the caller applies it again).
func TestACommitAnsweredLateWaitsForItsReply(t *testing.T) {
	srv := testkit.StartRedis(t)
	ctx := t.Context()
	admin := srv.Client(t)
	commit := []store.Write{store.SetW("cp", []byte("9000")), store.SAddW("bucket", "i-1", "i-2")}
	// pause holds every write command for d; the probe's SET returns once the pause is over.
	pause := func(d time.Duration) {
		require.NoError(t, admin.Do(ctx, "client", "pause", strconv.Itoa(int(d.Milliseconds())), "write").Err())
	}
	probe := func() { require.NoError(t, srv.Client(t).Set(ctx, "probe", "1", 0).Err()) }

	t.Run("the default read timeout waits for the reply", func(t *testing.T) {
		srv.Flush(t)
		st, err := store.NewRedis(store.RedisConfig{Addr: srv.Addr()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		pause(300 * time.Millisecond)
		ok, err := st.Update(ctx, "cp", nil, commit...)
		require.NoError(t, err)
		require.True(t, ok)
		cp, err := admin.Get(ctx, "cp").Result()
		require.NoError(t, err)
		require.Equal(t, "9000", cp)
	})
	t.Run("a shorter read timeout fails and writes nothing", func(t *testing.T) {
		srv.Flush(t)
		st, err := store.NewRedis(store.RedisConfig{Addr: srv.Addr(), ReadTimeout: 50 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		pause(300 * time.Millisecond)
		ok, err := st.Update(ctx, "cp", nil, commit...)
		require.ErrorContains(t, err, "timeout")
		require.False(t, ok)
		probe()
		n, err := admin.Exists(ctx, "cp", "bucket").Result()
		require.NoError(t, err)
		require.Zero(t, n, "the commit did not run")
	})
}

func TestRedisOptionsTimeOutAfterDefaultReadTimeoutUnlessTold(t *testing.T) {
	o := store.RedisOptions(store.RedisConfig{Addr: "127.0.0.1:6379"})
	require.Equal(t, store.DefaultReadTimeout, o.ReadTimeout)
	require.Equal(t, store.DefaultReadTimeout, o.WriteTimeout)
	o = store.RedisOptions(store.RedisConfig{Addr: "127.0.0.1:6379", ReadTimeout: time.Second})
	require.Equal(t, time.Second, o.ReadTimeout)
	o = store.RedisOptions(store.RedisConfig{Addr: "127.0.0.1:6379", ReadTimeout: -time.Second})
	require.Equal(t, time.Duration(-1), o.ReadTimeout, "no deadline")
}
