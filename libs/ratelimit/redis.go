package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is the key prefix of Redis limiters unless RedisConfig says otherwise.
const DefaultRedisPrefix = "patchwave:ratelimit:"

// RedisConfig configures a Redis limiter.
type RedisConfig struct {
	// Client is required: the Redis every sharing process uses.
	Client redis.UniversalClient
	// Prefix is optional: prepended to every key, so that budgets of different deployments
	// sharing one Redis do not mix. Default DefaultRedisPrefix.
	Prefix string
}

// Redis is a Limiter whose budgets live in Redis (GCRA, github.com/go-redis/redis_rate): every
// process using the same Redis, prefix and key shares one budget. Permits cannot be reserved
// ahead, so a refused Wait sleeps until the next permit is due and tries again.
type Redis struct {
	limiter *redis_rate.Limiter
	prefix  string
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a Redis limiter.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("rate limit: RedisConfig.Client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRedisPrefix
	}
	return &Redis{limiter: redis_rate.NewLimiter(cfg.Client), prefix: cfg.Prefix}, nil
}

// gcraPeriod is the period the Limit's rate is expressed in for redis_rate, whose rates are
// whole numbers per period: per hour keeps fractions down to one an hour.
const gcraPeriod = time.Hour

// redisLimit converts l for redis_rate.
func redisLimit(l Limit) redis_rate.Limit {
	n := math.Round(l.Rate * gcraPeriod.Seconds())
	if n < 1 {
		n = 1
	}
	return redis_rate.Limit{Rate: int(n), Burst: l.Burst, Period: gcraPeriod}
}

// Allow takes a permit for key if one is available now.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	if err := l.Validate(); err != nil {
		return false, 0, err
	}
	res, err := r.limiter.Allow(ctx, r.prefix+key, redisLimit(l))
	if err != nil {
		return false, 0, fmt.Errorf("rate limit %s: redis: %w", key, err)
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	after := res.RetryAfter
	if after <= 0 {
		after = time.Millisecond
	}
	return false, after, nil
}

// Wait blocks until it has taken a permit for key.
func (r *Redis) Wait(ctx context.Context, key string, l Limit) (time.Duration, error) {
	if err := l.Validate(); err != nil {
		return 0, err
	}
	return waitLoop(ctx, time.Now, func() (bool, time.Duration, error) { return r.Allow(ctx, key, l) })
}
