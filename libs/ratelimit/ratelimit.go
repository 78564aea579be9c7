// Package ratelimit paces calls to a shared budget, such as the API request rate a cloud grants
// one account. A Limiter hands out permits per key (say "aws/111111111111/ec2"); each key has
// its own budget, given with every call as a Limit. Two implementations share one contract:
//
//   - Memory (golang.org/x/time/rate token buckets): one process.
//   - Redis (github.com/go-redis/redis_rate, GCRA in a Lua script): every process that uses
//     the same Redis and key shares one budget, so replicas of a service, and services run
//     apart, never exceed the rate together.
//
// Both are token buckets: Burst permits at once, then Rate per second.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// ErrDeadline means a Wait gave up because the permit would come after the context's deadline.
// Wait returns it at once, without waiting in vain.
var ErrDeadline = errors.New("rate limit: permit would come after the context deadline")

// Limit is the budget of one key: Burst permits at once, refilled at Rate per second.
type Limit struct {
	// Rate is the sustained rate in permits per second; > 0. Fractions are allowed
	// (1.0/3600 is one an hour).
	Rate float64
	// Burst is how many permits can be taken at once; >= 1.
	Burst int
}

// Validate reports every problem with the limit, naming the field.
func (l Limit) Validate() error {
	var errs []error
	if !(l.Rate > 0) || math.IsInf(l.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate limit: Rate must be > 0 permits per second, got %v", l.Rate))
	}
	if l.Burst < 1 {
		errs = append(errs, fmt.Errorf("rate limit: Burst must be >= 1, got %d", l.Burst))
	}
	return errors.Join(errs...)
}

// String is "<rate>/s burst <burst>".
func (l Limit) String() string { return fmt.Sprintf("%g/s burst %d", l.Rate, l.Burst) }

// Limiter hands out permits per key. Implementations are safe for concurrent use.
type Limiter interface {
	// Allow takes a permit for key if one is available now. When none is, it takes nothing and
	// returns false with how long until one will be.
	Allow(ctx context.Context, key string, l Limit) (ok bool, retryAfter time.Duration, err error)
	// Wait blocks until it has taken a permit for key, and returns how long it waited. It
	// returns ErrDeadline at once when the permit would come after ctx's deadline, and
	// ctx.Err() when ctx ends first.
	Wait(ctx context.Context, key string, l Limit) (time.Duration, error)
}

// waitLoop implements Wait on top of Allow: try, and when refused sleep until the permit is
// due (or fail fast if that is past the deadline). Used by the Redis limiter, which cannot
// reserve a future permit.
func waitLoop(ctx context.Context, now func() time.Time, allow func() (bool, time.Duration, error)) (time.Duration, error) {
	start := now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for {
		ok, after, err := allow()
		if err != nil {
			return now().Sub(start), err
		}
		if ok {
			return now().Sub(start), nil
		}
		if dl, has := ctx.Deadline(); has && now().Add(after).After(dl) {
			return now().Sub(start), fmt.Errorf("%w (next permit in %s)", ErrDeadline, after)
		}
		// Waiters refused at the same moment would all ask again at the same moment, and
		// only one would win: spread them over one more interval.
		t := time.NewTimer(after + rand.N(after+time.Millisecond)) //nolint:gosec // G404: jitter, not a secret
		select {
		case <-ctx.Done():
			t.Stop()
			return now().Sub(start), ctx.Err()
		case <-t.C:
		}
	}
}
