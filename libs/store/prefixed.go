package store

import (
	"context"
	"strings"
	"sync/atomic"
)

// Prefixed returns a view of s in which every key is prefixed with prefix,
// so several users (the services inside patchd, say) can share one store
// without their keys colliding. Keys and FlushPrefix see only the view's
// namespace. Closing the view makes the view unusable but does not close s:
// whoever created s closes it.
func Prefixed(s Store, prefix string) Store {
	return &prefixed{inner: s, prefix: prefix}
}

type prefixed struct {
	inner  Store
	prefix string
	closed atomic.Bool
}

func (p *prefixed) key(k string) string { return p.prefix + k }

// open fails after the view's Close, whatever the inner store's state.
func (p *prefixed) open() error {
	if p.closed.Load() {
		return ErrClosed
	}
	return nil
}

func (p *prefixed) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := p.open(); err != nil {
		return nil, false, err
	}
	return p.inner.Get(ctx, p.key(key))
}

func (p *prefixed) Set(ctx context.Context, key string, value []byte) error {
	if err := p.open(); err != nil {
		return err
	}
	return p.inner.Set(ctx, p.key(key), value)
}

func (p *prefixed) SetNX(ctx context.Context, key string, value []byte) (bool, error) {
	if err := p.open(); err != nil {
		return false, err
	}
	return p.inner.SetNX(ctx, p.key(key), value)
}

func (p *prefixed) Delete(ctx context.Context, keys ...string) error {
	if err := p.open(); err != nil {
		return err
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = p.key(k)
	}
	return p.inner.Delete(ctx, full...)
}

func (p *prefixed) SAdd(ctx context.Context, key string, members ...string) (int, error) {
	if err := p.open(); err != nil {
		return 0, err
	}
	return p.inner.SAdd(ctx, p.key(key), members...)
}

func (p *prefixed) SRem(ctx context.Context, key string, members ...string) (int, error) {
	if err := p.open(); err != nil {
		return 0, err
	}
	return p.inner.SRem(ctx, p.key(key), members...)
}

func (p *prefixed) SMembers(ctx context.Context, key string) ([]string, error) {
	if err := p.open(); err != nil {
		return nil, err
	}
	return p.inner.SMembers(ctx, p.key(key))
}

func (p *prefixed) SIsMember(ctx context.Context, key, member string) (bool, error) {
	if err := p.open(); err != nil {
		return false, err
	}
	return p.inner.SIsMember(ctx, p.key(key), member)
}

func (p *prefixed) SCard(ctx context.Context, key string) (int, error) {
	if err := p.open(); err != nil {
		return 0, err
	}
	return p.inner.SCard(ctx, p.key(key))
}

func (p *prefixed) HSet(ctx context.Context, key string, fields map[string][]byte) error {
	if err := p.open(); err != nil {
		return err
	}
	return p.inner.HSet(ctx, p.key(key), fields)
}

func (p *prefixed) HGetAll(ctx context.Context, key string) (map[string][]byte, error) {
	if err := p.open(); err != nil {
		return nil, err
	}
	return p.inner.HGetAll(ctx, p.key(key))
}

func (p *prefixed) IncrBy(ctx context.Context, key string, n int64) (int64, error) {
	if err := p.open(); err != nil {
		return 0, err
	}
	return p.inner.IncrBy(ctx, p.key(key), n)
}

func (p *prefixed) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := p.open(); err != nil {
		return nil, err
	}
	keys, err := p.inner.Keys(ctx, p.key(prefix))
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		keys[i] = strings.TrimPrefix(k, p.prefix)
	}
	return keys, nil
}

func (p *prefixed) FlushPrefix(ctx context.Context, prefix string) error {
	if err := p.open(); err != nil {
		return err
	}
	return p.inner.FlushPrefix(ctx, p.key(prefix))
}

// Close closes the view only: the view does not own the store it wraps.
func (p *prefixed) Close() error {
	p.closed.Store(true)
	return nil
}
