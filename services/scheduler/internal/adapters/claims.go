package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// ClaimsBucket is the firing's KV bucket (owned by the scheduler, in libs/natsauth's table).
const ClaimsBucket = "patchwave-firing"

// Claims keeps the firing's durable records in JetStream KV: one key per occurrence of a wave
// (occ.<tenant>.<wave>.<key>), one per tenant cycle (cycle.<tenant>.<key>) and one per wave
// (seen.<tenant>.<wave>: when firing first saw the wave). Every record is created with a KV
// Create, which exactly one writer wins however many replicas race, and changed with an Update
// that expects the revision the writer read, so no change is lost or applied twice. Unlike the
// event stream's duplicate window (2 hours), a key never expires.
type Claims struct {
	kv jetstream.KeyValue
}

// ErrClaimTaken is returned by a Create that another writer won, and by an Update whose
// revision is no longer the current one.
var ErrClaimTaken = domain.ErrClaimTaken

// OpenClaims creates the bucket if it does not exist (or updates its configuration).
func OpenClaims(ctx context.Context, js jetstream.JetStream, replicas int) (*Claims, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ClaimsBucket,
		Description: "Patchwave firing (owned by the scheduler): occurrences of waves, tenant cycles and their pins",
		History:     4,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("firing bucket %s: %w", ClaimsBucket, err)
	}
	return &Claims{kv: kv}, nil
}

func occKey(tenant string, wave int32, key string) string {
	return "occ." + tenant + "." + strconv.Itoa(int(wave)) + "." + key
}

func cycleKey(tenant, cycle string) string { return "cycle." + tenant + "." + cycle }

func seenKey(tenant string, wave int32) string {
	return "seen." + tenant + "." + strconv.Itoa(int(wave))
}

// Occurrence returns an occurrence's record and its revision; false when none is claimed.
func (c *Claims) Occurrence(ctx context.Context, tenant string, wave int32, key string) (domain.Occurrence, uint64, bool, error) {
	var o domain.Occurrence
	rev, ok, err := c.get(ctx, occKey(tenant, wave, key), &o)
	return o, rev, ok, err
}

// CreateOccurrence claims an occurrence: ErrClaimTaken when another writer claimed it first.
func (c *Claims) CreateOccurrence(ctx context.Context, o domain.Occurrence) (uint64, error) {
	return c.create(ctx, occKey(o.Tenant, o.Wave, o.Key), o)
}

// UpdateOccurrence changes an occurrence's record from revision rev: ErrClaimTaken when it
// changed since.
func (c *Claims) UpdateOccurrence(ctx context.Context, o domain.Occurrence, rev uint64) (uint64, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return 0, fmt.Errorf("encode occurrence %s: %w", o.RunID, err)
	}
	n, err := c.kv.Update(ctx, occKey(o.Tenant, o.Wave, o.Key), data, rev)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("%w: occurrence %s changed since revision %d", ErrClaimTaken, o.RunID, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("update occurrence %s: %w", o.RunID, err)
	}
	return n, nil
}

// Cycle returns a tenant cycle's pin and its revision; false when the cycle is not pinned yet.
func (c *Claims) Cycle(ctx context.Context, tenant, cycle string) (domain.CyclePin, uint64, bool, error) {
	var p domain.CyclePin
	rev, ok, err := c.get(ctx, cycleKey(tenant, cycle), &p)
	return p, rev, ok, err
}

// CreateCycle pins a cycle: ErrClaimTaken when another writer pinned it first.
func (c *Claims) CreateCycle(ctx context.Context, p domain.CyclePin) (uint64, error) {
	return c.create(ctx, cycleKey(p.Tenant, p.Cycle), p)
}

// UpdateCycle changes a cycle's record from revision rev (its pin never changes, only whether
// its event is announced): ErrClaimTaken when it changed since.
func (c *Claims) UpdateCycle(ctx context.Context, p domain.CyclePin, rev uint64) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode cycle %s: %w", p.Cycle, err)
	}
	if _, err := c.kv.Update(ctx, cycleKey(p.Tenant, p.Cycle), data, rev); errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: cycle %s of %s changed since revision %d", ErrClaimTaken, p.Cycle, p.Tenant, rev)
	} else if err != nil {
		return fmt.Errorf("update cycle %s of %s: %w", p.Cycle, p.Tenant, err)
	}
	return nil
}

// Seen returns when firing first saw a wave, claiming now for it when it never did.
func (c *Claims) Seen(ctx context.Context, tenant string, wave int32, now int64) (int64, error) {
	var at int64
	_, ok, err := c.get(ctx, seenKey(tenant, wave), &at)
	if err != nil || ok {
		return at, err
	}
	if _, err := c.create(ctx, seenKey(tenant, wave), now); err == nil {
		return now, nil
	} else if !errors.Is(err, ErrClaimTaken) {
		return 0, err
	}
	_, _, err = c.get(ctx, seenKey(tenant, wave), &at)
	return at, err
}

func (c *Claims) get(ctx context.Context, key string, v any) (uint64, bool, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Revision(), true, nil
}

func (c *Claims) create(ctx context.Context, key string, v any) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	rev, err := c.kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("%w: %s", ErrClaimTaken, key)
	}
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	return rev, nil
}
