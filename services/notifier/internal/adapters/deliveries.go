package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/kvwatch"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// DeliveriesBucket is the KV bucket of the delivery log and the retry schedule:
//
//	d.<tenant>.<subscription>.<notification>    the delivery (JSON domain.Delivery)
//	due.<tenant>.<subscription>.<notification>  its next attempt (JSON dueEntry), while pending
//
// The record's key is the delivery's identity, created once (KV Create), so a redelivered or
// replayed event finds it and sends nothing again. The schedule entry is also the lock of an
// attempt: a replica claims it by moving its time forward with a compare-and-set, so replicas
// never attempt the same delivery at once, and a replica that dies mid-attempt leaves an entry
// another one picks up when the lease runs out.
const DeliveriesBucket = "notifier_deliveries"

// Deliveries is the delivery log and the schedule, with a watched copy of the schedule.
type Deliveries struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu    sync.Mutex
	due   map[string]DueEntry // by schedule key
	ready chan struct{}
	once  sync.Once
	wake  chan struct{}
}

// DueEntry is one pending delivery's next attempt.
type DueEntry struct {
	Key      string    `json:"-"`
	Revision uint64    `json:"-"`
	NextAt   time.Time `json:"next_at"`
}

// OpenDeliveries creates (or opens) the bucket.
func OpenDeliveries(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) (*Deliveries, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: DeliveriesBucket, Description: "Patchwave notifier: delivery log and retry schedule",
		History: 1, Replicas: replicas, Storage: jetstream.FileStorage, MaxValueSize: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", DeliveriesBucket, err)
	}
	return &Deliveries{kv: kv, log: log, due: map[string]DueEntry{}, ready: make(chan struct{}), wake: make(chan struct{}, 1)}, nil
}

func recordKey(tenant, id string) string { return "d." + tenant + "." + id }
func dueKey(tenant, id string) string    { return "due." + tenant + "." + id }

// RecordKeyOfDue is the record key of a schedule key.
func RecordKeyOfDue(key string) string { return "d." + strings.TrimPrefix(key, "due.") }

// Wake is signalled when a new entry is due sooner than the dispatcher's next tick.
func (d *Deliveries) Wake() <-chan struct{} { return d.wake }

// Run watches the schedule until ctx is done.
func (d *Deliveries) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := d.watch(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("delivery schedule watch", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

func (d *Deliveries) watch(ctx context.Context) error {
	w, err := d.kv.Watch(ctx, "due.>")
	if err != nil {
		return err
	}
	return kvwatch.Follow(ctx, w, func() { d.once.Do(func() { close(d.ready) }) }, d.applyDue)
}

// applyDue mirrors one entry of the retry schedule and wakes the dispatcher.
func (d *Deliveries) applyDue(e jetstream.KeyValueEntry) {
	d.mu.Lock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(d.due, e.Key())
	} else {
		var de DueEntry
		if err := json.Unmarshal(e.Value(), &de); err == nil {
			de.Key, de.Revision = e.Key(), e.Revision()
			d.due[e.Key()] = de
		}
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// WaitReady waits for the schedule's initial values.
func (d *Deliveries) WaitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Due returns up to limit schedule entries due at now, earliest first, and the time of the
// earliest entry that is not due yet (zero when there is none).
func (d *Deliveries) Due(now time.Time, limit int) ([]DueEntry, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []DueEntry
	var next time.Time
	for _, e := range d.due {
		if !e.NextAt.After(now) {
			out = append(out, e)
		} else if next.IsZero() || e.NextAt.Before(next) {
			next = e.NextAt
		}
	}
	slices.SortFunc(out, func(a, b DueEntry) int { return a.NextAt.Compare(b.NextAt) })
	if len(out) > limit {
		next = out[limit].NextAt
		out = out[:limit]
	}
	return out, next
}

// Pending counts the schedule's entries.
func (d *Deliveries) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.due)
}

// Enqueue creates a delivery and schedules its first attempt at d.NextAttemptAt. created is
// false when the delivery already exists (a redelivered or replayed event); a pending one
// whose schedule entry was lost (a crash between the two writes) is scheduled again.
func (d *Deliveries) Enqueue(ctx context.Context, del domain.Delivery) (created bool, err error) {
	b, err := json.Marshal(del)
	if err != nil {
		return false, fmt.Errorf("encode delivery %s: %w", del.ID(), err)
	}
	_, err = d.kv.Create(ctx, recordKey(del.Tenant, del.ID()), b)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		cur, _, gerr := d.Get(ctx, del.Tenant, del.ID())
		if gerr != nil {
			return false, gerr
		}
		if cur.Status != domain.StatusPending {
			return false, nil
		}
		del = cur
	case err != nil:
		return false, fmt.Errorf("create delivery %s: %w", del.ID(), err)
	default:
		created = true
	}
	if err := d.schedule(ctx, del.Tenant, del.ID(), del.NextAttemptAt); err != nil {
		return created, err
	}
	return created, nil
}

func (d *Deliveries) schedule(ctx context.Context, tenant, id string, at time.Time) error {
	b, _ := json.Marshal(DueEntry{NextAt: at.UTC()})
	if _, err := d.kv.Create(ctx, dueKey(tenant, id), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("schedule delivery %s: %w", id, err)
	}
	return nil
}

// Claim takes the attempt of a due entry for lease: it moves the entry's time to until with a
// compare-and-set. ok is false when another replica took it first (or it is gone).
func (d *Deliveries) Claim(ctx context.Context, e DueEntry, until time.Time) (DueEntry, bool, error) {
	b, _ := json.Marshal(DueEntry{NextAt: until.UTC()})
	rev, err := d.kv.Update(ctx, e.Key, b, e.Revision)
	if err != nil {
		if isWrongRevision(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
			return DueEntry{}, false, nil
		}
		return DueEntry{}, false, fmt.Errorf("claim %s: %w", e.Key, err)
	}
	return DueEntry{Key: e.Key, Revision: rev, NextAt: until}, true, nil
}

// Record reads the delivery a schedule entry is for.
func (d *Deliveries) Record(ctx context.Context, e DueEntry) (domain.Delivery, uint64, error) {
	return d.get(ctx, RecordKeyOfDue(e.Key))
}

// Get reads one delivery.
func (d *Deliveries) Get(ctx context.Context, tenant, id string) (domain.Delivery, uint64, error) {
	return d.get(ctx, recordKey(tenant, id))
}

func (d *Deliveries) get(ctx context.Context, key string) (domain.Delivery, uint64, error) {
	e, err := d.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return domain.Delivery{}, 0, fmt.Errorf("%w: delivery %s", apierr.ErrNotFound, strings.TrimPrefix(key, "d."))
	}
	if err != nil {
		return domain.Delivery{}, 0, fmt.Errorf("get delivery %s: %w", key, err)
	}
	var del domain.Delivery
	if err := json.Unmarshal(e.Value(), &del); err != nil {
		return domain.Delivery{}, 0, fmt.Errorf("delivery %s: %w", key, err)
	}
	return del, e.Revision(), nil
}

// Finish stores the outcome of a claimed attempt: the record, then the schedule entry moved
// to del.NextAttemptAt (still pending) or removed (sent or dead).
func (d *Deliveries) Finish(ctx context.Context, del domain.Delivery, claim DueEntry) error {
	b, err := json.Marshal(del)
	if err != nil {
		return fmt.Errorf("encode delivery %s: %w", del.ID(), err)
	}
	if _, err := d.kv.Put(ctx, recordKey(del.Tenant, del.ID()), b); err != nil {
		return fmt.Errorf("record delivery %s: %w", del.ID(), err)
	}
	return d.Reschedule(ctx, del, claim)
}

// Reschedule moves or removes a claimed schedule entry after the record says what happened.
func (d *Deliveries) Reschedule(ctx context.Context, del domain.Delivery, claim DueEntry) error {
	if del.Status == domain.StatusPending {
		b, _ := json.Marshal(DueEntry{NextAt: del.NextAttemptAt.UTC()})
		if _, err := d.kv.Update(ctx, claim.Key, b, claim.Revision); err != nil && !isWrongRevision(err) {
			return fmt.Errorf("reschedule delivery %s: %w", del.ID(), err)
		}
		return nil
	}
	if err := d.kv.Delete(ctx, claim.Key, jetstream.LastRevision(claim.Revision)); err != nil && !isWrongRevision(err) {
		return fmt.Errorf("unschedule delivery %s: %w", del.ID(), err)
	}
	return nil
}

// Redeliver puts a sent or dead delivery back to pending with a fresh retry budget, due at.
func (d *Deliveries) Redeliver(ctx context.Context, tenant, id string, at time.Time) (domain.Delivery, error) {
	del, rev, err := d.Get(ctx, tenant, id)
	if err != nil {
		return domain.Delivery{}, err
	}
	if del.Status == domain.StatusPending {
		return domain.Delivery{}, fmt.Errorf("%w: delivery %s is pending already (attempt %d, next at %s)", apierr.ErrFailedPrecondition,
			id, del.Attempts+1, del.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	del.Status, del.Attempts, del.LastError, del.NextAttemptAt, del.SentAt = domain.StatusPending, 0, "", at.UTC(), time.Time{}
	del.Generation++
	b, err := json.Marshal(del)
	if err != nil {
		return domain.Delivery{}, err
	}
	if _, err := d.kv.Update(ctx, recordKey(tenant, id), b, rev); err != nil {
		if isWrongRevision(err) {
			return domain.Delivery{}, fmt.Errorf("%w: delivery %s changed meanwhile; try again", apierr.ErrFailedPrecondition, id)
		}
		return domain.Delivery{}, fmt.Errorf("redeliver %s: %w", id, err)
	}
	return del, d.schedule(ctx, tenant, id, at)
}

// List returns a tenant's deliveries (of one subscription when sub is set, in one status when
// status is set), newest first, at most limit. It reads the tenant's keys: the cost grows with
// the tenant's log, not the fleet's.
func (d *Deliveries) List(ctx context.Context, tenant, sub, status string, limit int) ([]domain.Delivery, error) {
	filter := "d." + tenant + ".>"
	if sub != "" {
		filter = "d." + tenant + "." + sub + ".*"
	}
	lister, err := d.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list deliveries of %s: %w", tenant, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := make([]domain.Delivery, 0, len(keys))
	for _, k := range keys {
		del, _, err := d.get(ctx, k)
		if errors.Is(err, apierr.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if status == "" || del.Status == status {
			out = append(out, del)
		}
	}
	slices.SortFunc(out, func(a, b domain.Delivery) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID(), b.ID())
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
