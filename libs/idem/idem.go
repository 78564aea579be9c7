// Package idem makes stage handlers idempotent across redeliveries, replays, restarts and
// replicas. A stage records the business key of every job it finished in a mark set; the set is a
// projection of the stage's own output events, so it is rebuilt from the stream when the store
// is in memory (patchd) or was flushed (Redis), and the bus replays it before any handler runs.
//
// The pattern, for a stage that turns event A into event B:
//
//	marks := idem.New(store, "snapshotter")
//	b.Project(marks.Projection(keyOfB, patternOfB...))
//	handler for A: if done, _ := marks.Done(ctx, key); done { return nil }
//	               do the side effect (itself idempotent per key at the provider)
//	               publish B with the same key; marks.Mark(ctx, key)
//
// A crash between the side effect and the publish is covered by the provider's own idempotency
// (the same key finds the existing snapshot or installation), and a crash between publish and
// ack by the stream's duplicate window and the mark set.
//
// The mark and the projection's checkpoint are two writes. Rebuilding from an empty store is
// safe; flushing a Redis store under a running service is not (the checkpoint may survive the
// flush while marks written before it are gone): stop the service, flush, start it again.
package idem

import (
	"context"
	"fmt"
	"strconv"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
)

// Marks is a set of finished business keys.
type Marks struct {
	st   store.Store
	name string
}

// New returns the mark set called name (usually the service name) in st.
func New(st store.Store, name string) *Marks {
	return &Marks{st: st, name: name}
}

func (m *Marks) setKey() string { return "idem:" + m.name + ":done" }
func (m *Marks) seqKey() string { return "idem:" + m.name + ":seq" }

// Done reports whether key was finished.
func (m *Marks) Done(ctx context.Context, key string) (bool, error) {
	ok, err := m.st.SIsMember(ctx, m.setKey(), key)
	if err != nil {
		return false, fmt.Errorf("idempotency mark %s: %w", key, err)
	}
	return ok, nil
}

// Mark records key as finished.
func (m *Marks) Mark(ctx context.Context, key string) error {
	if _, err := m.st.SAdd(ctx, m.setKey(), key); err != nil {
		return fmt.Errorf("idempotency mark %s: %w", key, err)
	}
	return nil
}

// Count returns how many keys are marked.
func (m *Marks) Count(ctx context.Context) (int, error) { return m.st.SCard(ctx, m.setKey()) }

// Projection returns the projection that marks the key of every output event on subjects.
// keyOf returns an event's business key; by default (nil) the event's CloudEvents subject.
func (m *Marks) Projection(keyOf func(*events.Event) string, subjects ...string) bus.ProjectionSpec {
	if keyOf == nil {
		keyOf = func(ev *events.Event) string { return ev.Key }
	}
	return bus.ProjectionSpec{
		Name:     m.name + "-marks",
		Subjects: subjects,
		Checkpoint: func(ctx context.Context) (uint64, error) {
			v, found, err := m.st.Get(ctx, m.seqKey())
			if err != nil || !found {
				return 0, err
			}
			return strconv.ParseUint(string(v), 10, 64)
		},
		Apply: func(ctx context.Context, ev *events.Event, _ bool) error {
			if err := m.Mark(ctx, keyOf(ev)); err != nil {
				return err
			}
			return m.st.Set(ctx, m.seqKey(), []byte(strconv.FormatUint(ev.Sequence, 10)))
		},
	}
}
