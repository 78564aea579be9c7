package stage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/stage"
)

// calls records the batched calls a Batcher made.
type calls struct {
	mu      sync.Mutex
	batches map[string][][]int
	running atomic.Int32
	maxRun  atomic.Int32
}

func (c *calls) fn(release <-chan struct{}) stage.BatchFunc[string, int, string] {
	return func(_ context.Context, group string, reqs []int) ([]string, error) {
		n := c.running.Add(1)
		defer c.running.Add(-1)
		for {
			m := c.maxRun.Load()
			if n <= m || c.maxRun.CompareAndSwap(m, n) {
				break
			}
		}
		if release != nil {
			<-release
		}
		c.mu.Lock()
		c.batches[group] = append(c.batches[group], append([]int(nil), reqs...))
		c.mu.Unlock()
		out := make([]string, len(reqs))
		for i, r := range reqs {
			out[i] = fmt.Sprintf("%s:%d", group, r)
		}
		return out, nil
	}
}

func (c *calls) of(group string) [][]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches[group]
}

func TestBatcherCoalescesConcurrentCallsPerGroupWithPerItemResults(t *testing.T) {
	c := &calls{batches: map[string][][]int{}}
	b, err := stage.NewBatcher(stage.BatcherConfig{Size: 10, Linger: time.Hour}, c.fn(nil))
	require.NoError(t, err)
	var wg sync.WaitGroup
	results := make([]string, 30)
	for i := range 30 {
		group := []string{"eu", "us", "ap"}[i%3]
		wg.Go(func() {
			res, err := b.Do(t.Context(), group, i)
			require.NoError(t, err)
			results[i] = res
		})
	}
	wg.Wait()
	for i, r := range results {
		require.Equal(t, fmt.Sprintf("%s:%d", []string{"eu", "us", "ap"}[i%3], i), r, "each caller gets its own result")
	}
	for _, g := range []string{"eu", "us", "ap"} {
		require.Len(t, c.of(g), 1, "ten requests of %s in one call (Size reached, no linger)", g)
		require.Len(t, c.of(g)[0], 10)
	}
}

func TestBatcherSendsWhatIsThereAfterLinger(t *testing.T) {
	c := &calls{batches: map[string][][]int{}}
	b, err := stage.NewBatcher(stage.BatcherConfig{Size: 100, Linger: 20 * time.Millisecond}, c.fn(nil))
	require.NoError(t, err)
	res, err := b.Do(t.Context(), "eu", 7)
	require.NoError(t, err)
	require.Equal(t, "eu:7", res)
	require.Equal(t, [][]int{{7}}, c.of("eu"))
}

func TestBatcherGivesACallErrorToEveryRequest(t *testing.T) {
	tests := []struct {
		name string
		fn   stage.BatchFunc[string, int, string]
		want string
	}{
		{"a failed call fails each of its requests", func(context.Context, string, []int) ([]string, error) {
			return nil, errors.New("throttled")
		}, "throttled"},
		{"a call with too few results fails each request", func(context.Context, string, []int) ([]string, error) {
			return []string{"one"}, nil
		}, "returned 1 results for 3 requests"},
		{"a panicking call fails each request", func(context.Context, string, []int) ([]string, error) {
			panic("adapter bug")
		}, "panicked: adapter bug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := stage.NewBatcher(stage.BatcherConfig{Size: 3, Linger: time.Hour}, tt.fn)
			require.NoError(t, err)
			var wg sync.WaitGroup
			var failed atomic.Int32
			for i := range 3 {
				wg.Go(func() {
					_, err := b.Do(t.Context(), "eu", i)
					if err != nil && strings.Contains(err.Error(), tt.want) {
						failed.Add(1)
					}
				})
			}
			wg.Wait()
			require.Equal(t, int32(3), failed.Load())
		})
	}
}

func TestBatcherCallerThatGivesUpDoesNotCancelTheCall(t *testing.T) {
	c := &calls{batches: map[string][][]int{}}
	release := make(chan struct{})
	b, err := stage.NewBatcher(stage.BatcherConfig{Size: 2, Linger: time.Hour}, c.fn(release))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := b.Do(ctx, "eu", 1)
		gaveUp <- err
	}()
	other := make(chan string, 1)
	go func() {
		res, err := b.Do(t.Context(), "eu", 2)
		if err != nil {
			res = err.Error()
		}
		other <- res
	}()
	require.Eventually(t, func() bool { return c.running.Load() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-gaveUp, context.Canceled)
	close(release)
	require.Equal(t, "eu:2", <-other, "the call went on for the other caller")
	require.Len(t, c.of("eu"), 1)
	require.ElementsMatch(t, []int{1, 2}, c.of("eu")[0], "both requests in the call")
}

func TestBatcherBoundsTheCallsInFlight(t *testing.T) {
	c := &calls{batches: map[string][][]int{}}
	release := make(chan struct{})
	b, err := stage.NewBatcher(stage.BatcherConfig{Size: 1, MaxInFlight: 2}, c.fn(release))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			_, err := b.Do(t.Context(), fmt.Sprintf("g%d", i), i)
			require.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return c.running.Load() == 2 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	require.Equal(t, int32(2), c.maxRun.Load(), "never more than MaxInFlight calls at once")
}

func TestBatcherConfigIsValidated(t *testing.T) {
	fn := func(context.Context, string, []int) ([]int, error) { return nil, nil }
	tests := []struct {
		name  string
		cfg   stage.BatcherConfig
		field string
	}{
		{"a negative size is refused", stage.BatcherConfig{Size: -1}, "Size"},
		{"a negative linger is refused", stage.BatcherConfig{Linger: -time.Second}, "Linger"},
		{"a negative in-flight bound is refused", stage.BatcherConfig{MaxInFlight: -3}, "MaxInFlight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stage.NewBatcher(tt.cfg, fn)
			require.ErrorContains(t, err, tt.field)
		})
	}
	_, err := stage.NewBatcher[string, int, int](stage.BatcherConfig{}, nil)
	require.ErrorContains(t, err, "fn is required")
}
