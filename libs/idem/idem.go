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
// A mark and the projection's checkpoint are written together, atomically, and only while the
// checkpoint is the one this process last saw (store.Updater: MULTI/EXEC under WATCH on Redis),
// so a flush can never leave a checkpoint without the marks written before it. When the guard
// finds the checkpoint gone under a running service (the store was flushed), the projection
// replays the stream from the start (bus.ErrReplay) and, until it has caught up with where it
// was, Done answers with a retryable error rather than a "not done" it cannot vouch for.
// Several replicas share one mark set: a replica that finds the checkpoint already past its
// event (another replica applied it) moves on.
package idem

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
)

// Marks is a set of finished business keys.
type Marks struct {
	st   store.Store
	name string
	// set and seq are the keys of the mark set and of its checkpoint, built once: every mark
	// and every Done reads them.
	set, seq string

	mu sync.Mutex
	// seen is the checkpoint this process last read or wrote: once it is not zero the marks
	// must exist in the store.
	seen uint64
	// rebuildTo is the sequence the projection must reach again after the marks were lost;
	// until then Done cannot say "not done".
	rebuildTo uint64
	// lost tells the projection to replay when Done finds the marks gone.
	lost chan struct{}
	// restart is set by lose until the projection reads its checkpoint again: an event it
	// applies meanwhile would write a checkpoint over the lost marks, and the replay would
	// then start after them.
	restart bool
}

// ErrRebuilding is returned (wrapped) by Done while the marks are rebuilt after the store
// lost them; the caller retries later.
var ErrRebuilding = errors.New("idempotency marks are being rebuilt")

// New returns the mark set called name (usually the service name) in st.
func New(st store.Store, name string) *Marks {
	return &Marks{st: st, name: name, set: "idem:" + name + ":done", seq: "idem:" + name + ":seq", lost: make(chan struct{}, 1)}
}

// lose records that the marks are gone from the store: until the projection has replayed up to
// the last checkpoint seen, Done cannot answer.
func (m *Marks) lose(seq uint64) {
	m.mu.Lock()
	m.seen, m.rebuildTo = 0, max(m.rebuildTo, m.seen, seq)
	m.restart = true
	m.mu.Unlock()
	select {
	case m.lost <- struct{}{}:
	default:
	}
}

func (m *Marks) setKey() string { return m.set }
func (m *Marks) seqKey() string { return m.seq }

// Done reports whether key was finished. When the marks were lost (a flushed store) it
// fails with ErrRebuilding until the projection has rebuilt them.
func (m *Marks) Done(ctx context.Context, key string) (bool, error) {
	ok, err := m.st.SIsMember(ctx, m.setKey(), key)
	if err != nil {
		return false, fmt.Errorf("idempotency mark %s: %w", key, err)
	}
	if ok {
		return true, nil
	}
	m.mu.Lock()
	seen, rebuilding := m.seen, m.rebuildTo > 0
	m.mu.Unlock()
	if rebuilding {
		return false, fmt.Errorf("idempotency mark %s: %w", key, ErrRebuilding)
	}
	if seen > 0 {
		// "Not done" is only true while the marks are there.
		if _, found, err := m.st.Get(ctx, m.seqKey()); err != nil {
			return false, fmt.Errorf("idempotency mark %s: %w", key, err)
		} else if !found {
			m.lose(0)
			return false, fmt.Errorf("idempotency mark %s: the mark set %s is gone: %w", key, m.name, ErrRebuilding)
		}
	}
	return false, nil
}

// Mark records key as finished.
func (m *Marks) Mark(ctx context.Context, key string) error { return m.MarkAll(ctx, key) }

// MarkAll records keys as finished, in one store call.
func (m *Marks) MarkAll(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.st.SAdd(ctx, m.setKey(), keys...); err != nil {
		return fmt.Errorf("idempotency mark %s: %w", keys[0], err)
	}
	return nil
}

// MarkNew records key as finished and reports whether it was new: the one caller that gets
// true does what must be done once (a reboot, say).
func (m *Marks) MarkNew(ctx context.Context, key string) (bool, error) {
	n, err := m.st.SAdd(ctx, m.setKey(), key)
	if err != nil {
		return false, fmt.Errorf("idempotency mark %s: %w", key, err)
	}
	return n == 1, nil
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
			seq, _, err := m.checkpoint(ctx)
			if err != nil {
				return 0, err
			}
			m.mu.Lock()
			m.seen, m.restart = seq, false
			m.mu.Unlock()
			return seq, nil
		},
		Apply: func(ctx context.Context, ev *events.Event, _ bool) error {
			return m.apply(ctx, keyOf(ev), ev.Sequence)
		},
		Replay: m.lost,
	}
}

func (m *Marks) checkpoint(ctx context.Context) (uint64, bool, error) {
	v, found, err := m.st.Get(ctx, m.seqKey())
	if err != nil || !found {
		return 0, false, err
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("idempotency checkpoint %s: %w", m.name, err)
	}
	return n, true, nil
}

// apply writes the mark of key and the checkpoint seq at once, guarded by the checkpoint this
// process last saw.
func (m *Marks) apply(ctx context.Context, key string, seq uint64) error {
	m.mu.Lock()
	restart := m.restart
	m.mu.Unlock()
	if restart {
		return fmt.Errorf("idempotency marks %s lost (the store was flushed?): %w", m.name, bus.ErrReplay)
	}
	u, ok := m.st.(store.Updater)
	if !ok {
		// A store without atomic updates: two writes, mark first (a replay writes it again).
		if err := m.Mark(ctx, key); err != nil {
			return err
		}
		return m.st.Set(ctx, m.seqKey(), []byte(strconv.FormatUint(seq, 10)))
	}
	next := []byte(strconv.FormatUint(seq, 10))
	for {
		m.mu.Lock()
		seen := m.seen
		m.mu.Unlock()
		var want []byte
		if seen > 0 {
			want = []byte(strconv.FormatUint(seen, 10))
		}
		applied, err := u.Update(ctx, m.seqKey(), want, store.SAddW(m.setKey(), key), store.SetW(m.seqKey(), next))
		if err != nil {
			return fmt.Errorf("idempotency mark %s: %w", key, err)
		}
		cur, found := seq, true
		if !applied {
			if cur, found, err = m.checkpoint(ctx); err != nil {
				return err
			}
		}
		m.mu.Lock()
		switch {
		case applied || (found && cur >= seq):
			// Written, or another replica is past this event.
			m.seen = max(cur, seq)
			if m.rebuildTo > 0 && seq >= m.rebuildTo {
				m.rebuildTo = 0
			}
			m.mu.Unlock()
			return nil
		case !found && seen > 0:
			// The store lost the marks under us: replay the stream from the start.
			m.seen, m.rebuildTo, m.restart = 0, max(m.rebuildTo, seen, seq), true
			m.mu.Unlock()
			return fmt.Errorf("idempotency marks %s lost (the store was flushed?): %w", m.name, bus.ErrReplay)
		default:
			// Another replica moved the checkpoint: write on top of it.
			m.seen = cur
			m.mu.Unlock()
		}
	}
}
