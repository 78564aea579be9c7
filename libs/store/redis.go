package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultReadTimeout is how long a Redis store waits for a reply (and for a write to the
// socket) when RedisConfig says nothing. It is sized for the largest commit, not for a GET: a
// replayed compliance batch of 10,000 events is one MULTI/EXEC of about 9,000 records and their
// index moves, which a redis-server that gets no CPU (2 cores busy with other work) answered
// later than go-redis's default read timeout (5 s in v9.23). That commit then failed with a timeout, and its
// events were applied and committed again: a rebuild of seconds took 10-29 s. A reply that is
// late but comes is worth waiting for; a server that is gone still fails at once (the
// connection is refused or reset).
const DefaultReadTimeout = 30 * time.Second

// scanBatch is the COUNT hint for SCAN and the number of keys deleted per DEL
// in FlushPrefix.
const scanBatch = 500

// RedisConfig configures a Redis store.
type RedisConfig struct {
	// Addr is the server's host:port, for example "127.0.0.1:6379". Required.
	Addr string
	// Password authenticates with the server. Optional, default none.
	Password string
	// DB selects the logical database. Optional, default 0; must be 0..15.
	DB int
	// Prefix is prepended to every key so several stores can share one
	// database; Keys and FlushPrefix see only this namespace. Optional,
	// default "" (the whole database). Conventionally ends with ":".
	Prefix string
	// ReadTimeout bounds the wait for each reply and each write to the server. Optional,
	// default DefaultReadTimeout; negative: no timeout.
	ReadTimeout time.Duration
}

// Validate reports every problem with the config, each naming the field.
func (c RedisConfig) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("Addr: required, for example 127.0.0.1:6379"))
	}
	if c.DB < 0 || c.DB > 15 {
		errs = append(errs, fmt.Errorf("DB: must be 0..15, got %d", c.DB))
	}
	return errors.Join(errs...)
}

// Redis is a Store backed by a Redis server through go-redis. Keys are
// namespaced by the configured prefix. It is safe for concurrent use.
type Redis struct {
	client    *redis.Client
	prefix    string
	ownClient bool
	closed    atomic.Bool
}

var _ Store = (*Redis)(nil)

// NewRedis validates cfg and returns a store with its own connection pool.
// It does not contact the server: connections are made on first use, and
// Ping checks the server (for a readiness probe, say).
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis store config: %w", err)
	}
	client := redis.NewClient(RedisOptions(cfg))
	return &Redis{client: client, prefix: cfg.Prefix, ownClient: true}, nil
}

// RedisOptions returns the go-redis options NewRedis builds its client with: those of cfg,
// and its read and write timeouts (DefaultReadTimeout unless cfg says otherwise). A client
// given to NewRedisFromClient should be built from them.
func RedisOptions(cfg RedisConfig) *redis.Options {
	timeout := cfg.ReadTimeout
	switch {
	case timeout == 0:
		timeout = DefaultReadTimeout
	case timeout < 0:
		timeout = -1 // go-redis: no deadline
	}
	return &redis.Options{Addr: cfg.Addr, Password: cfg.Password, DB: cfg.DB, ReadTimeout: timeout, WriteTimeout: timeout}
}

// NewRedisFromClient returns a store over an existing client, namespaced by
// prefix. The caller keeps ownership of the client: Close does not close it. The client's
// timeouts apply: go-redis's default read timeout (5 s) can fail large commits on a busy
// machine (DefaultReadTimeout), so build it from RedisOptions.
func NewRedisFromClient(client *redis.Client, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

// Ping checks that the server answers.
func (r *Redis) Ping(ctx context.Context) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return mapRedisErr("ping", r.client.Ping(ctx).Err())
}

func (r *Redis) key(k string) string { return r.prefix + k }

func (r *Redis) keys(ks []string) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = r.prefix + k
	}
	return out
}

// check fails fast after Close, whoever owns the client.
func (r *Redis) check() error {
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := r.check(); err != nil {
		return nil, false, err
	}
	v, err := r.client.Get(ctx, r.key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, mapRedisErr("get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key string, value []byte) error {
	if err := r.check(); err != nil {
		return err
	}
	return mapRedisErr("set", r.client.Set(ctx, r.key(key), value, 0).Err())
}

// SetNX implements Store.
func (r *Redis) SetNX(ctx context.Context, key string, value []byte) (bool, error) {
	if err := r.check(); err != nil {
		return false, err
	}
	ok, err := r.client.SetNX(ctx, r.key(key), value, 0).Result()
	return ok, mapRedisErr("setnx", err)
}

// Delete implements Store.
func (r *Redis) Delete(ctx context.Context, keys ...string) error {
	if err := r.check(); err != nil || len(keys) == 0 {
		return err
	}
	return mapRedisErr("del", r.client.Del(ctx, r.keys(keys)...).Err())
}

// SAdd implements Store.
func (r *Redis) SAdd(ctx context.Context, key string, members ...string) (int, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	if len(members) == 0 {
		// SADD needs a member; still report a key of the wrong type.
		return 0, r.expectType(ctx, key, "set")
	}
	n, err := r.client.SAdd(ctx, r.key(key), toAny(members)...).Result()
	return int(n), mapRedisErr("sadd", err)
}

// SRem implements Store.
func (r *Redis) SRem(ctx context.Context, key string, members ...string) (int, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	if len(members) == 0 {
		return 0, r.expectType(ctx, key, "set")
	}
	n, err := r.client.SRem(ctx, r.key(key), toAny(members)...).Result()
	return int(n), mapRedisErr("srem", err)
}

// SMembers implements Store.
func (r *Redis) SMembers(ctx context.Context, key string) ([]string, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	members, err := r.client.SMembers(ctx, r.key(key)).Result()
	if err != nil {
		return nil, mapRedisErr("smembers", err)
	}
	if members == nil {
		members = []string{}
	}
	slices.Sort(members)
	return members, nil
}

// SIsMember implements Store.
func (r *Redis) SIsMember(ctx context.Context, key, member string) (bool, error) {
	if err := r.check(); err != nil {
		return false, err
	}
	ok, err := r.client.SIsMember(ctx, r.key(key), member).Result()
	return ok, mapRedisErr("sismember", err)
}

// SCard implements Store.
func (r *Redis) SCard(ctx context.Context, key string) (int, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	n, err := r.client.SCard(ctx, r.key(key)).Result()
	return int(n), mapRedisErr("scard", err)
}

// HSet implements Store.
func (r *Redis) HSet(ctx context.Context, key string, fields map[string][]byte) error {
	if err := r.check(); err != nil {
		return err
	}
	if len(fields) == 0 {
		return r.expectType(ctx, key, "hash")
	}
	args := make([]any, 0, 2*len(fields))
	for f, v := range fields {
		args = append(args, f, v)
	}
	return mapRedisErr("hset", r.client.HSet(ctx, r.key(key), args...).Err())
}

// HGetAll implements Store.
func (r *Redis) HGetAll(ctx context.Context, key string) (map[string][]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	m, err := r.client.HGetAll(ctx, r.key(key)).Result()
	if err != nil {
		return nil, mapRedisErr("hgetall", err)
	}
	out := make(map[string][]byte, len(m))
	for f, v := range m {
		out[f] = []byte(v)
	}
	return out, nil
}

// IncrBy implements Store.
func (r *Redis) IncrBy(ctx context.Context, key string, n int64) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	v, err := r.client.IncrBy(ctx, r.key(key), n).Result()
	return v, mapRedisErr("incrby", err)
}

// Keys implements Store with SCAN, so it does not block the server the way
// KEYS would.
func (r *Redis) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{})
	err := r.scan(ctx, prefix, func(batch []string) error {
		for _, k := range batch {
			seen[strings.TrimPrefix(k, r.prefix)] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// FlushPrefix implements Store with SCAN and DEL in batches.
func (r *Redis) FlushPrefix(ctx context.Context, prefix string) error {
	if err := r.check(); err != nil {
		return err
	}
	return r.scan(ctx, prefix, func(batch []string) error {
		if len(batch) == 0 {
			return nil
		}
		return mapRedisErr("del", r.client.Del(ctx, batch...).Err())
	})
}

// scan calls f with every batch of full (namespaced) keys that start with
// the namespaced prefix. A key may be seen more than once, as SCAN allows.
func (r *Redis) scan(ctx context.Context, prefix string, f func(batch []string) error) error {
	match := escapeGlob(r.prefix+prefix) + "*"
	var cursor uint64
	for {
		batch, next, err := r.client.Scan(ctx, cursor, match, scanBatch).Result()
		if err != nil {
			return mapRedisErr("scan", err)
		}
		if err := f(batch); err != nil {
			return err
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Close implements Store. It closes the client only if NewRedis created it.
func (r *Redis) Close() error {
	if !r.closed.CompareAndSwap(false, true) || !r.ownClient {
		return nil
	}
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close redis store: %w", err)
	}
	return nil
}

// expectType fails with ErrWrongType when key exists with a type other than
// want ("set", "hash"); it stands in for commands Redis rejects without
// arguments.
func (r *Redis) expectType(ctx context.Context, key, want string) error {
	typ, err := r.client.Type(ctx, r.key(key)).Result()
	if err != nil {
		return mapRedisErr("type", err)
	}
	if typ != "none" && typ != want {
		return ErrWrongType
	}
	return nil
}

// mapRedisErr turns server errors that have a store sentinel into it and
// wraps the rest with the command name.
func mapRedisErr(cmd string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "WRONGTYPE"):
		return ErrWrongType
	case strings.Contains(msg, "not an integer or out of range"),
		strings.Contains(msg, "increment or decrement would overflow"):
		return ErrNotInteger
	case errors.Is(err, redis.ErrClosed):
		return ErrClosed
	}
	return fmt.Errorf("redis %s: %w", cmd, err)
}

// escapeGlob escapes the characters SCAN MATCH treats as a pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
