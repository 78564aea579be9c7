package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/libs/testkit"
)

// oneAnHour is a budget that does not refill during a test, so tests count grants instead of
// timing them.
func oneAnHour(burst int) ratelimit.Limit { return ratelimit.Limit{Rate: 1.0 / 3600, Burst: burst} }

// backend builds limiters that share one store: for Memory the same limiter, for Redis two
// limiters over two clients of one server (as two processes would).
type backend struct {
	name string
	pair func(t *testing.T) (a, b ratelimit.Limiter)
}

func backends() []backend {
	return []backend{
		{name: "memory", pair: func(*testing.T) (ratelimit.Limiter, ratelimit.Limiter) {
			m := ratelimit.NewMemory()
			return m, m
		}},
		{name: "redis", pair: func(t *testing.T) (ratelimit.Limiter, ratelimit.Limiter) {
			srv := testkit.StartRedis(t)
			a, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: srv.Client(t)})
			require.NoError(t, err)
			b, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: srv.Client(t)})
			require.NoError(t, err)
			return a, b
		}},
	}
}

// grants counts the permits Allow hands out in n tries.
func grants(t *testing.T, l ratelimit.Limiter, key string, lim ratelimit.Limit, n int) int {
	t.Helper()
	got := 0
	for range n {
		ok, after, err := l.Allow(t.Context(), key, lim)
		require.NoError(t, err)
		if ok {
			got++
		} else {
			require.Positive(t, after, "a refusal says when the next permit comes")
		}
	}
	return got
}

func TestLimiterContract(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Run("a burst is granted at once and the next permit is refused", func(t *testing.T) {
				l, _ := be.pair(t)
				require.Equal(t, 5, grants(t, l, "k", oneAnHour(5), 8))
			})
			t.Run("keys have budgets of their own", func(t *testing.T) {
				l, _ := be.pair(t)
				require.Equal(t, 3, grants(t, l, "acct-1/ec2", oneAnHour(3), 5))
				require.Equal(t, 3, grants(t, l, "acct-1/ssm", oneAnHour(3), 5))
				require.Equal(t, 3, grants(t, l, "acct-2/ec2", oneAnHour(3), 5))
			})
			t.Run("two limiters on one store share one budget under concurrent use", func(t *testing.T) {
				a, b := be.pair(t)
				var granted atomic.Int64
				var wg sync.WaitGroup
				for _, l := range []ratelimit.Limiter{a, b, a, b} {
					wg.Go(func() {
						for range 25 {
							ok, _, err := l.Allow(context.Background(), "shared", oneAnHour(40))
							if err == nil && ok {
								granted.Add(1)
							}
						}
					})
				}
				wg.Wait()
				require.EqualValues(t, 40, granted.Load(), "100 tries against a burst of 40")
			})
			t.Run("Wait takes a permit that is available at once", func(t *testing.T) {
				l, _ := be.pair(t)
				for range 3 {
					_, err := l.Wait(t.Context(), "w", oneAnHour(3))
					require.NoError(t, err)
				}
				require.Equal(t, 0, grants(t, l, "w", oneAnHour(3), 1), "the three waits took the burst")
			})
			t.Run("Wait waits for permits that come before the deadline", func(t *testing.T) {
				l, _ := be.pair(t)
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				fast := ratelimit.Limit{Rate: 200, Burst: 1}
				for range 5 {
					_, err := l.Wait(ctx, "fast", fast)
					require.NoError(t, err)
				}
			})
			t.Run("Wait fails at once with ErrDeadline when the permit comes after the deadline", func(t *testing.T) {
				l, _ := be.pair(t)
				require.Equal(t, 1, grants(t, l, "d", oneAnHour(1), 1))
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				_, err := l.Wait(ctx, "d", oneAnHour(1))
				require.ErrorIs(t, err, ratelimit.ErrDeadline)
				require.NoError(t, ctx.Err(), "it did not wait for the deadline")
			})
			t.Run("Wait on a cancelled context returns the context's error", func(t *testing.T) {
				l, _ := be.pair(t)
				require.Equal(t, 1, grants(t, l, "c", oneAnHour(1), 1))
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() {
					_, err := l.Wait(ctx, "c", oneAnHour(1))
					done <- err
				}()
				cancel()
				require.ErrorIs(t, <-done, context.Canceled)
			})
			t.Run("an invalid limit is refused naming the field", func(t *testing.T) {
				l, _ := be.pair(t)
				_, _, err := l.Allow(t.Context(), "x", ratelimit.Limit{Rate: 0, Burst: 0})
				require.ErrorContains(t, err, "Rate must be > 0")
				require.ErrorContains(t, err, "Burst must be >= 1")
				_, err = l.Wait(t.Context(), "x", ratelimit.Limit{Rate: -1, Burst: 1})
				require.ErrorContains(t, err, "Rate must be > 0")
			})
		})
	}
}

func TestRedisPrefixesSeparateBudgets(t *testing.T) {
	srv := testkit.StartRedis(t)
	a, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: srv.Client(t), Prefix: "deploy-a:"})
	require.NoError(t, err)
	b, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: srv.Client(t), Prefix: "deploy-b:"})
	require.NoError(t, err)
	require.Equal(t, 2, grants(t, a, "k", oneAnHour(2), 3))
	require.Equal(t, 2, grants(t, b, "k", oneAnHour(2), 3))
}

func TestNewRedisNeedsAClient(t *testing.T) {
	_, err := ratelimit.NewRedis(ratelimit.RedisConfig{})
	require.ErrorContains(t, err, "Client is required")
}

func TestSeparateMemoryLimitersDoNotShare(t *testing.T) {
	require.Equal(t, 2, grants(t, ratelimit.NewMemory(), "k", oneAnHour(2), 3))
	require.Equal(t, 2, grants(t, ratelimit.NewMemory(), "k", oneAnHour(2), 3))
}
