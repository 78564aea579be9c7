package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Memory is a Limiter for one process: a token bucket (golang.org/x/time/rate) per key, created
// on first use. A key's bucket follows the Limit of the latest call.
type Memory struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty memory limiter.
func NewMemory() *Memory { return &Memory{buckets: make(map[string]*rate.Limiter)} }

func (m *Memory) bucket(key string, l Limit) (*rate.Limiter, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.buckets[key]
	if !ok {
		b = rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
		m.buckets[key] = b
		return b, nil
	}
	if b.Limit() != rate.Limit(l.Rate) {
		b.SetLimit(rate.Limit(l.Rate))
	}
	if b.Burst() != l.Burst {
		b.SetBurst(l.Burst)
	}
	return b, nil
}

// Allow takes a permit for key if one is available now.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (bool, time.Duration, error) {
	b, err := m.bucket(key, l)
	if err != nil {
		return false, 0, err
	}
	now := time.Now()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, nil
}

// Wait blocks until it has taken a permit for key.
func (m *Memory) Wait(ctx context.Context, key string, l Limit) (time.Duration, error) {
	b, err := m.bucket(key, l)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := time.Now()
	r := b.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return 0, nil
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		r.CancelAt(now)
		return 0, fmt.Errorf("%w (next permit in %s)", ErrDeadline, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return d, nil
	case <-ctx.Done():
		r.Cancel()
		return time.Since(now), ctx.Err()
	}
}
