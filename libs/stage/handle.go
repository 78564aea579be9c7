package stage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// HandlerSpec describes a typed stage handler of events of kind T.
type HandlerSpec[T proto.Message] struct {
	// Name of the handler, e.g. "TakeSnapshotOnJobRequested". Required.
	Name string
	// Handle is called for each event. Required.
	Handle func(ctx context.Context, ev *events.Event, msg T) error
	// OnDeadLetter publishes the job's failure outcome when the event is about to be
	// dead-lettered; reason names why ("dead-lettered after 5 attempts: <cause>"). Optional.
	OnDeadLetter func(ctx context.Context, ev *events.Event, msg T, reason string) error
	// Concurrency is how many events one replica handles at once. Optional, the bus default.
	Concurrency int
}

// Handle registers a typed handler on b. An event of another type is dead-lettered.
func Handle[T proto.Message](b *bus.Bus, spec HandlerSpec[T]) error {
	if spec.Handle == nil {
		return fmt.Errorf("handler %s: Handle is required", spec.Name)
	}
	return b.Handle(bus.HandlerSpec{
		Name:        spec.Name,
		Subjects:    []string{events.Pattern[T]()},
		Concurrency: spec.Concurrency,
		Handle: func(ctx context.Context, ev *events.Event) error {
			msg, ok := ev.Data.(T)
			if !ok {
				return bus.Permanent(fmt.Errorf("handler %s: event %s has type %s, want %T", spec.Name, ev.ID, ev.Type, *new(T)))
			}
			return spec.Handle(ctx, ev, msg)
		},
		OnDeadLetter: deadLetterHook(spec.OnDeadLetter),
	})
}

func deadLetterHook[T proto.Message](fn func(ctx context.Context, ev *events.Event, msg T, reason string) error) bus.DeadLetterFunc {
	if fn == nil {
		return nil
	}
	return func(ctx context.Context, dl bus.DeadLetter) error {
		msg, ok := dl.Event.Data.(T)
		if !ok {
			return nil // not a job of this stage: nothing to conclude
		}
		return fn(ctx, dl.Event, msg, dl.Reason)
	}
}

// Tracked is one held event of kind T, with the verdict methods of bus.Held.
type Tracked[T proto.Message] struct {
	*bus.Held
	Msg T
}

// TrackerSpec describes a typed tracker of "operation started" events of kind T.
type TrackerSpec[T proto.Message] struct {
	// Name of the tracker, e.g. "TrackSnapshots". Required.
	Name string
	// Check looks at the held operations due for a check with batched reads and decides about
	// each. Required.
	Check func(ctx context.Context, held []Tracked[T]) error
	// OnDeadLetter publishes the job's failure outcome when its event is about to be
	// dead-lettered. Optional.
	OnDeadLetter func(ctx context.Context, ev *events.Event, msg T, reason string) error
	// MaxHeld bounds the operations one replica tracks. Optional, the bus default (10000).
	MaxHeld int
	// PollInterval is the pause between two checks. Optional, the bus default (2s).
	PollInterval time.Duration
	// MaxCheckInterval bounds the pause between two checks of one operation: an operation is
	// checked at the first tick, then 1, 2, 4, ... PollIntervals apart up to this. Optional,
	// the bus default (8 × PollInterval).
	MaxCheckInterval time.Duration
}

// Track registers a typed tracker on b. An event of another type is dead-lettered.
func Track[T proto.Message](b *bus.Bus, spec TrackerSpec[T]) error {
	if spec.Check == nil {
		return fmt.Errorf("tracker %s: Check is required", spec.Name)
	}
	return b.Track(bus.TrackerSpec{
		Name:             spec.Name,
		Subjects:         []string{events.Pattern[T]()},
		MaxHeld:          spec.MaxHeld,
		PollInterval:     spec.PollInterval,
		MaxCheckInterval: spec.MaxCheckInterval,
		Check: func(ctx context.Context, held []*bus.Held) error {
			typed := make([]Tracked[T], 0, len(held))
			for _, h := range held {
				msg, ok := h.Event.Data.(T)
				if !ok {
					h.Fail(fmt.Errorf("tracker %s: event %s has type %s, want %T", spec.Name, h.Event.ID, h.Event.Type, *new(T)))
					continue
				}
				typed = append(typed, Tracked[T]{Held: h, Msg: msg})
			}
			if len(typed) == 0 {
				return nil
			}
			return spec.Check(ctx, typed)
		},
		OnDeadLetter: deadLetterHook(spec.OnDeadLetter),
	})
}

// Unfinished acknowledges the held operations whose outcome is already out (key in finished) and
// returns the others. It asks finished only at an operation's first check on this replica (a
// redelivery after another replica died, or a replay): one this replica has checked before
// cannot have finished without it.
func Unfinished[T proto.Message](ctx context.Context, held []Tracked[T], finished *idem.Marks, key func(Tracked[T]) string) ([]Tracked[T], error) {
	live := make([]Tracked[T], 0, len(held))
	for _, h := range held {
		if h.Checks == 0 {
			done, err := finished.Done(ctx, key(h))
			if err != nil {
				return nil, err
			}
			if done {
				h.Done()
				continue
			}
		}
		live = append(live, h)
	}
	return live, nil
}

// Group splits items by key, keeping their order within each group, and returns the keys in
// the order they first appear.
func Group[T any, K comparable](items []T, key func(T) K) ([]K, map[K][]T) {
	groups := map[K][]T{}
	var keys []K
	for _, it := range items {
		k := key(it)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], it)
	}
	return keys, groups
}

// ForEachGroup runs fn for each group, at most limit at once, in the order of keys, and waits
// for them; a tracker check reads many targets this way.
func ForEachGroup[K comparable, T any](ctx context.Context, limit int, keys []K, groups map[K][]T, fn func(ctx context.Context, key K, items []T)) {
	sem := make(chan struct{}, max(1, limit))
	var wg sync.WaitGroup
	for _, k := range keys {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(ctx, k, groups[k])
		})
	}
	wg.Wait()
}

// Outcomes collects what a tracker check decided: for each finished operation its held message,
// its idempotency key and its outcome event. It is safe for concurrent use, so a check that reads
// many targets at once adds from each.
type Outcomes struct {
	mu   sync.Mutex
	held []*bus.Held
	keys []string
	evs  []*events.Event
}

// Add records the outcome ev of the operation of h, whose idempotency key is key.
func (o *Outcomes) Add(h *bus.Held, key string, ev *events.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.held, o.keys, o.evs = append(o.held, h), append(o.keys, key), append(o.evs, ev)
}

// Len is how many outcomes were added.
func (o *Outcomes) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.evs)
}

// Settle publishes every outcome in one call, marks their keys in finished, and only then
// acknowledges their held messages. When publishing fails nothing is acknowledged: the
// operations are checked again, and their outcomes published again with the same event ids.
func (o *Outcomes) Settle(ctx context.Context, pub EventPublisher, finished *idem.Marks) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.evs) == 0 {
		return nil
	}
	if err := pub.Publish(ctx, o.evs...); err != nil {
		return fmt.Errorf("publish %d outcomes: %w", len(o.evs), err)
	}
	if err := finished.MarkAll(ctx, o.keys...); err != nil {
		return err
	}
	for _, h := range o.held {
		h.Done()
	}
	return nil
}

// Located is an event that names where its operation runs.
type Located interface {
	proto.Message
	GetLocation() *typesv1.Location
}

// EachTarget groups the held operations by the target their event's location names and calls
// check once per target with its operations, at most limit targets at once, so a check reads
// each account and region with one batched call. An operation whose event names no valid
// location is handed to invalid instead (to fail it: no cloud call can help it).
func EachTarget[T Located](ctx context.Context, limit int, held []Tracked[T], invalid func(h Tracked[T], err error),
	check func(ctx context.Context, t provider.Target, items []Tracked[T])) {
	var valid []Tracked[T]
	for _, h := range held {
		if _, err := Target(h.Event.Tenant, h.Msg.GetLocation()); err != nil {
			invalid(h, err)
			continue
		}
		valid = append(valid, h)
	}
	keys, groups := Group(valid, func(h Tracked[T]) provider.Target {
		t, _ := Target(h.Event.Tenant, h.Msg.GetLocation())
		return t
	})
	ForEachGroup(ctx, limit, keys, groups, check)
}
