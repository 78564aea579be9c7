// Package adapters connects the notifier to the outside: its two JetStream KV buckets
// (subscriptions; deliveries with their retry schedule), the run-failure read model in a
// store.Store, and the channels (signed webhooks, Slack, SMTP, SNS) behind an SSRF-safe HTTP
// client.
package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/kvwatch"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// SubscriptionsBucket is the KV bucket of subscriptions: key "<tenant>.<subscription>", value
// the Subscription as protojson (secret included: only the notifier's NATS user reads it).
const SubscriptionsBucket = "notifier_subscriptions"

// Subscriptions keeps every tenant's subscriptions in a KV bucket and a watched in-memory copy,
// so matching an event costs no round trip.
type Subscriptions struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu    sync.RWMutex
	byTen map[string]map[string]*typesv1.Subscription
	ready chan struct{}
	once  sync.Once
}

// OpenSubscriptions creates (or opens) the bucket.
func OpenSubscriptions(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) (*Subscriptions, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SubscriptionsBucket, Description: "Patchwave notifier: subscriptions per tenant",
		History: 8, Replicas: replicas, Storage: jetstream.FileStorage, MaxValueSize: 256 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", SubscriptionsBucket, err)
	}
	return &Subscriptions{kv: kv, log: log, byTen: map[string]map[string]*typesv1.Subscription{}, ready: make(chan struct{})}, nil
}

func subKey(tenant, id string) string { return tenant + "." + id }

// Run mirrors the bucket until ctx is done, re-watching after an error.
func (s *Subscriptions) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := s.watch(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("subscriptions watch", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

func (s *Subscriptions) watch(ctx context.Context) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	return kvwatch.Follow(ctx, w, func() { s.once.Do(func() { close(s.ready) }) }, s.apply)
}

func (s *Subscriptions) apply(e jetstream.KeyValueEntry) {
	tenant, id, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.byTen[tenant], id)
		return
	}
	sub := &typesv1.Subscription{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(e.Value(), sub); err != nil {
		s.log.Warn("subscription does not decode", "key", e.Key(), "error", err)
		return
	}
	sub.Revision = e.Revision()
	if sub.GetDeleted() {
		delete(s.byTen[tenant], id)
		return
	}
	if s.byTen[tenant] == nil {
		s.byTen[tenant] = map[string]*typesv1.Subscription{}
	}
	s.byTen[tenant][id] = sub
}

// WaitReady waits for the initial values.
func (s *Subscriptions) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: subscriptions are not loaded yet", apierr.ErrUnavailable)
	}
}

// Ready tells whether the initial values are loaded.
func (s *Subscriptions) Ready() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// ForTenant returns the tenant's subscriptions from memory (shared: do not modify), by id.
func (s *Subscriptions) ForTenant(tenant string) []*typesv1.Subscription {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*typesv1.Subscription, 0, len(s.byTen[tenant]))
	for _, sub := range s.byTen[tenant] {
		out = append(out, sub)
	}
	slices.SortFunc(out, func(a, b *typesv1.Subscription) int {
		return strings.Compare(a.GetSubscriptionId(), b.GetSubscriptionId())
	})
	return out
}

// Tenants returns the tenants with at least one subscription.
func (s *Subscriptions) Tenants() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.byTen))
	for t, subs := range s.byTen {
		if len(subs) > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// Get reads one subscription from the bucket (not the copy), with its revision.
func (s *Subscriptions) Get(ctx context.Context, tenant, id string) (*typesv1.Subscription, error) {
	e, err := s.kv.Get(ctx, subKey(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || (err == nil && e.Operation() != jetstream.KeyValuePut) {
		return nil, fmt.Errorf("%w: subscription %s of tenant %s", apierr.ErrNotFound, id, tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("get subscription %s: %w", id, err)
	}
	sub := &typesv1.Subscription{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(e.Value(), sub); err != nil {
		return nil, fmt.Errorf("subscription %s: %w", id, err)
	}
	sub.Revision = e.Revision()
	if sub.GetDeleted() {
		return sub, fmt.Errorf("%w: subscription %s of tenant %s", apierr.ErrNotFound, id, tenant)
	}
	return sub, nil
}

// Put writes a subscription: with rev 0 it creates or replaces (a tombstone too), otherwise it
// replaces only revision rev. It returns the new revision.
func (s *Subscriptions) Put(ctx context.Context, sub *typesv1.Subscription, rev uint64) (uint64, error) {
	stored := proto.Clone(sub).(*typesv1.Subscription)
	stored.Revision, stored.HasSecret = 0, false
	b, err := protojson.Marshal(stored)
	if err != nil {
		return 0, fmt.Errorf("encode subscription: %w", err)
	}
	key := subKey(sub.GetTenant(), sub.GetSubscriptionId())
	var n uint64
	if rev == 0 {
		n, err = s.kv.Put(ctx, key, b)
	} else {
		n, err = s.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		if isWrongRevision(err) {
			return 0, fmt.Errorf("%w: subscription %s has changed since revision %d", apierr.ErrFailedPrecondition, sub.GetSubscriptionId(), rev)
		}
		return 0, fmt.Errorf("put subscription %s: %w", sub.GetSubscriptionId(), err)
	}
	return n, nil
}

// Delete replaces a subscription with a tombstone naming actor (so the deletion is audited
// like any change); NotFound when there is none.
func (s *Subscriptions) Delete(ctx context.Context, tenant, id, actor string, at time.Time) (uint64, error) {
	cur, err := s.Get(ctx, tenant, id)
	if err != nil {
		return 0, err
	}
	tomb := &typesv1.Subscription{Tenant: tenant, SubscriptionId: id, Deleted: true, UpdatedBy: actor, UpdatedAt: timestamppb.New(at)}
	return s.Put(ctx, tomb, cur.GetRevision())
}

// Lookup returns one subscription from the copy.
func (s *Subscriptions) Lookup(tenant, id string) (*typesv1.Subscription, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sub, ok := s.byTen[tenant][id]
	return sub, ok
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}
