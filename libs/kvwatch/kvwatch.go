// Package kvwatch is the loop every in-memory mirror of a JetStream KV bucket runs over its
// watcher: apply each entry, say when the initial values are in, and end with the context or
// with the watcher.
package kvwatch

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrClosed is Follow's error when the watcher closes its updates (the caller watches again).
var ErrClosed = errors.New("the watcher closed its updates")

// Follow applies every entry w delivers, in order, until ctx is done (ctx's error) or w closes
// its updates (ErrClosed); it stops w when it returns. loaded, if not nil, runs at the marker
// that follows the initial values (every time the watcher sends one: make it idempotent, e.g.
// with a sync.Once).
func Follow(ctx context.Context, w jetstream.KeyWatcher, loaded func(), apply func(jetstream.KeyValueEntry)) error {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return ErrClosed
			}
			if e == nil {
				if loaded != nil {
					loaded()
				}
				continue
			}
			apply(e)
		}
	}
}
