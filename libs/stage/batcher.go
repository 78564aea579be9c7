package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// BatchFunc performs one batched call for the requests of one group (say, one cloud account and
// region). It returns one result per request, in the order of reqs; an error means the whole
// call failed and becomes every request's error.
type BatchFunc[K comparable, Req, Res any] func(ctx context.Context, group K, reqs []Req) ([]Res, error)

// BatcherConfig tunes a Batcher.
type BatcherConfig struct {
	// Size is the most requests one call takes; a group with Size requests waiting is sent at
	// once. Optional, default 100.
	Size int
	// Linger is how long the first request of a group waits for others before the call is sent
	// with what is there. Optional, default 10ms.
	Linger time.Duration
	// Timeout bounds one call. Optional, default 1m.
	Timeout time.Duration
	// MaxInFlight bounds the calls running at once; more wait for a free slot. Optional,
	// default 16.
	MaxInFlight int
}

func (c *BatcherConfig) setDefaults() {
	if c.Size == 0 {
		c.Size = 100
	}
	if c.Linger == 0 {
		c.Linger = 10 * time.Millisecond
	}
	if c.Timeout == 0 {
		c.Timeout = time.Minute
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 16
	}
}

// Validate reports every problem with the configuration.
func (c BatcherConfig) Validate() error {
	return errors.Join(
		IntRange("Size", c.Size, 1, 100000),
		NonNegative("Linger", c.Linger),
		NonNegative("Timeout", c.Timeout),
		IntRange("MaxInFlight", c.MaxInFlight, 1, 10000),
	)
}

// Batcher coalesces concurrent calls into batched calls: every Do of one group that arrives
// within Linger of the first (or until Size are waiting) goes out in one BatchFunc call, and
// each caller gets its own request's result. It turns per-event handlers into batched cloud
// calls without the handlers knowing about each other. A Batcher is safe for concurrent use.
type Batcher[K comparable, Req, Res any] struct {
	cfg   BatcherConfig
	fn    BatchFunc[K, Req, Res]
	slots chan struct{}

	mu      sync.Mutex
	pending map[K]*batch[Req, Res]
}

type batch[Req, Res any] struct {
	ctx   context.Context
	items []*batchItem[Req, Res]
	timer *time.Timer
}

type batchItem[Req, Res any] struct {
	req  Req
	done chan batchResult[Res]
}

type batchResult[Res any] struct {
	res Res
	err error
}

// NewBatcher checks cfg and returns a Batcher calling fn.
func NewBatcher[K comparable, Req, Res any](cfg BatcherConfig, fn BatchFunc[K, Req, Res]) (*Batcher[K, Req, Res], error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("batcher config: %w", err)
	}
	if fn == nil {
		return nil, errors.New("batcher: fn is required")
	}
	return &Batcher[K, Req, Res]{cfg: cfg, fn: fn, slots: make(chan struct{}, cfg.MaxInFlight), pending: map[K]*batch[Req, Res]{}}, nil
}

// Do adds req to the group's next call and returns its result. When ctx ends first, Do returns
// ctx's error; the call still goes out for the other requests (its context is detached from any
// one caller's cancellation, keeping the first caller's values, and bounded by Timeout).
func (b *Batcher[K, Req, Res]) Do(ctx context.Context, group K, req Req) (Res, error) {
	it := &batchItem[Req, Res]{req: req, done: make(chan batchResult[Res], 1)}
	b.mu.Lock()
	bt := b.pending[group]
	if bt == nil {
		bt = &batch[Req, Res]{ctx: context.WithoutCancel(ctx)}
		b.pending[group] = bt
		bt.timer = time.AfterFunc(b.cfg.Linger, func() { b.flush(group, bt) })
	}
	bt.items = append(bt.items, it)
	full := len(bt.items) >= b.cfg.Size
	b.mu.Unlock()
	if full {
		b.flush(group, bt)
	}
	select {
	case r := <-it.done:
		return r.res, r.err
	case <-ctx.Done():
		var zero Res
		return zero, ctx.Err()
	}
}

// flush sends bt if it is still the group's pending batch.
func (b *Batcher[K, Req, Res]) flush(group K, bt *batch[Req, Res]) {
	b.mu.Lock()
	if b.pending[group] != bt {
		b.mu.Unlock()
		return
	}
	delete(b.pending, group)
	bt.timer.Stop()
	b.mu.Unlock()
	go b.call(group, bt)
}

func (b *Batcher[K, Req, Res]) call(group K, bt *batch[Req, Res]) {
	b.slots <- struct{}{}
	defer func() { <-b.slots }()
	ctx, cancel := context.WithTimeout(bt.ctx, b.cfg.Timeout)
	defer cancel()
	reqs := make([]Req, len(bt.items))
	for i, it := range bt.items {
		reqs[i] = it.req
	}
	res, err := b.safeCall(ctx, group, reqs)
	if err == nil && len(res) != len(reqs) {
		err = fmt.Errorf("batched call returned %d results for %d requests", len(res), len(reqs))
	}
	for i, it := range bt.items {
		if err != nil {
			it.done <- batchResult[Res]{err: err}
			continue
		}
		it.done <- batchResult[Res]{res: res[i]}
	}
}

func (b *Batcher[K, Req, Res]) safeCall(ctx context.Context, group K, reqs []Req) (res []Res, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("batched call panicked: %v", p)
		}
	}()
	return b.fn(ctx, group, reqs)
}
