package testkit_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
)

func TestStartRedisAnswersCommands(t *testing.T) {
	r := testkit.StartRedis(t)
	require.Regexp(t, `^127\.0\.0\.1:\d+$`, r.Addr())

	c := r.Client(t)
	ctx := t.Context()
	require.Equal(t, "PONG", c.Ping(ctx).Val())
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	require.Equal(t, "v", c.Get(ctx, "k").Val())
}

func TestStartRedisGivesEachTestItsOwnServer(t *testing.T) {
	a := testkit.StartRedis(t)
	b := testkit.StartRedis(t)
	require.NotEqual(t, a.Addr(), b.Addr())

	ctx := t.Context()
	require.NoError(t, a.Client(t).Set(ctx, "only-in-a", "1", 0).Err())
	n, err := b.Client(t).Exists(ctx, "only-in-a").Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestFlushEmptiesEveryDatabase(t *testing.T) {
	r := testkit.StartRedis(t)
	c := r.Client(t)
	ctx := t.Context()
	require.NoError(t, c.Set(ctx, "a", "1", 0).Err())
	require.NoError(t, c.SAdd(ctx, "b", "x").Err())

	r.Flush(t)

	size, err := c.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, size)
}

func TestStartRedisFailsWithAnInstallHintWhenTheBinaryIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ft := &fatalRecorder{TB: t}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		testkit.StartRedis(ft)
	}()
	wg.Wait()

	require.True(t, ft.failed, "StartRedis must fail the test, never skip")
	require.Contains(t, ft.msg, "redis-server not found")
	require.Contains(t, ft.msg, "scripts/ensure-redis.sh")
}

// fatalRecorder records a Fatal call instead of failing the real test, and
// stops the calling goroutine the way testing.T does.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatal(args ...any) {
	f.failed = true
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestClientWaitsForRepliesAsLongAsAStoreDoes(t *testing.T) {
	r := testkit.StartRedis(t)
	opts := r.Client(t).Options()
	want := store.RedisOptions(store.RedisConfig{Addr: r.Addr()})
	require.Equal(t, store.DefaultReadTimeout, opts.ReadTimeout, "read timeout")
	require.Equal(t, want.ReadTimeout, opts.ReadTimeout, "read timeout")
	require.Equal(t, want.WriteTimeout, opts.WriteTimeout, "write timeout")
	require.Equal(t, r.Addr(), opts.Addr)
}
