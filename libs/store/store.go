// Package store is the small Redis-like key/value interface that Patchwave's
// rebuildable state lives behind: read models, idempotency marks, progress
// counters and projection checkpoints. Everything in a Store can be rebuilt
// by replaying JetStream, so it has no TTLs and no transactions.
//
// Two implementations satisfy the same contract (package storetest): Memory,
// for patchd and unit tests, and Redis, for multi-process deployments.
// Values are typed like Redis types: a key holds a string (Get, Set, SetNX,
// IncrBy), a set (SAdd, SRem, SMembers, SIsMember, SCard) or a hash (HSet,
// HGetAll); using a key as the wrong type fails with ErrWrongType. A set or
// hash whose last member is removed disappears, as in Redis.
package store

import (
	"context"
	"errors"
)

// Store is a namespaced Redis-like key/value store. Implementations are safe
// for concurrent use.
type Store interface {
	// Get returns the string value of key; found is false when key is absent.
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	// Set stores value under key, replacing any value of any type.
	Set(ctx context.Context, key string, value []byte) error
	// SetNX stores value under key only if key is absent (of any type) and
	// reports whether it did. It is the building block of idempotency marks.
	SetNX(ctx context.Context, key string, value []byte) (set bool, err error)
	// Delete removes the keys; absent keys are ignored.
	Delete(ctx context.Context, keys ...string) error
	// SAdd adds members to the set at key and returns how many were new.
	SAdd(ctx context.Context, key string, members ...string) (added int, err error)
	// SRem removes members from the set at key and returns how many were there.
	SRem(ctx context.Context, key string, members ...string) (removed int, err error)
	// SMembers returns the members of the set at key, sorted ascending; an
	// absent key is an empty set.
	SMembers(ctx context.Context, key string) ([]string, error)
	// SIsMember reports whether member is in the set at key.
	SIsMember(ctx context.Context, key, member string) (bool, error)
	// SCard returns the number of members of the set at key.
	SCard(ctx context.Context, key string) (int, error)
	// HSet sets fields of the hash at key, leaving other fields as they are.
	HSet(ctx context.Context, key string, fields map[string][]byte) error
	// HGetAll returns every field of the hash at key; an absent key is an
	// empty hash.
	HGetAll(ctx context.Context, key string) (map[string][]byte, error)
	// IncrBy adds n to the integer stored at key (an absent key counts as 0)
	// and returns the new value. The value is stored as a decimal string, so
	// Get returns it too. A non-integer value fails with ErrNotInteger.
	IncrBy(ctx context.Context, key string, n int64) (int64, error)
	// Keys returns every key that starts with prefix, sorted ascending.
	Keys(ctx context.Context, prefix string) ([]string, error)
	// FlushPrefix deletes every key that starts with prefix; an empty prefix
	// deletes everything in the store's namespace.
	FlushPrefix(ctx context.Context, prefix string) error
	// Close releases the store's resources. Calling it again is a no-op;
	// every other method fails with ErrClosed afterwards.
	Close() error
}

var (
	// ErrWrongType is returned when a key is used as a type it does not
	// hold, such as SAdd on a string.
	ErrWrongType = errors.New("store: operation against a key holding the wrong kind of value")
	// ErrNotInteger is returned by IncrBy when the value is not a 64-bit
	// decimal integer or the result would overflow.
	ErrNotInteger = errors.New("store: value is not an integer or out of range")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
)
