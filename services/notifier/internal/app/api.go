package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/adapters"
	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// PutSubscription validates and stores a subscription for actor. It returns the stored
// subscription (without secret) and the secret it generated, if any.
func (a *App) PutSubscription(ctx context.Context, tenant, id string, in *typesv1.Subscription, rev uint64, actor string) (*typesv1.Subscription, string, error) {
	if err := events.ValidateTenant(tenant); err != nil {
		return nil, "", apierr.Violations{{Field: "tenant", Rule: err.Error()}}.Err()
	}
	if in == nil {
		return nil, "", apierr.Violations{{Field: "subscription", Rule: "required"}}.Err()
	}
	sub := proto.Clone(in).(*typesv1.Subscription)
	if sub.GetTenant() != "" && sub.GetTenant() != tenant {
		return nil, "", apierr.Violations{{Field: "subscription.tenant", Rule: "must be empty or the tenant of the path"}}.Err()
	}
	if sub.GetSubscriptionId() != "" && sub.GetSubscriptionId() != id {
		return nil, "", apierr.Violations{{Field: "subscription.subscription_id", Rule: "must be empty or the id of the path"}}.Err()
	}
	sub.Tenant, sub.SubscriptionId = tenant, id
	// Set by the service only.
	sub.Deleted, sub.HasSecret, sub.Revision, sub.UpdatedBy, sub.UpdatedAt = false, false, 0, "", nil
	if err := domain.ValidateSubscription(sub); err != nil {
		return nil, "", err
	}
	generated := ""
	if sub.GetChannel() == typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK && sub.GetSecret() == "" {
		// Keep the stored secret on a replace that does not give one.
		if old, err := a.subs.Get(ctx, tenant, id); err == nil && old.GetSecret() != "" {
			sub.Secret = old.GetSecret()
		} else {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			generated = "whsec_" + base64.RawURLEncoding.EncodeToString(b)
			sub.Secret = generated
		}
	}
	sub.UpdatedBy, sub.UpdatedAt = actor, timestamppb.New(a.now().UTC())
	n, err := a.subs.Put(ctx, sub, rev)
	if err != nil {
		return nil, "", err
	}
	sub.Revision = n
	a.waitCopy(ctx, tenant, id, n)
	return Public(sub), generated, nil
}

// waitCopy waits (briefly) until the watched copy has revision rev, so an event right after
// the answer is matched against the new subscription.
func (a *App) waitCopy(ctx context.Context, tenant, id string, rev uint64) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s, ok := a.subs.Lookup(tenant, id); (ok && s.GetRevision() >= rev) || (!ok && rev == 0) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// GetSubscription returns one subscription without its secret.
func (a *App) GetSubscription(ctx context.Context, tenant, id string) (*typesv1.Subscription, error) {
	if err := checkIDs(tenant, id); err != nil {
		return nil, err
	}
	s, err := a.subs.Get(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return Public(s), nil
}

// ListSubscriptions returns the tenant's subscriptions without secrets.
func (a *App) ListSubscriptions(ctx context.Context, tenant string) ([]*typesv1.Subscription, error) {
	if err := events.ValidateTenant(tenant); err != nil {
		return nil, apierr.Violations{{Field: "tenant", Rule: err.Error()}}.Err()
	}
	if err := a.subs.WaitReady(ctx); err != nil {
		return nil, err
	}
	subs := a.subs.ForTenant(tenant)
	out := make([]*typesv1.Subscription, len(subs))
	for i, s := range subs {
		out[i] = Public(s)
	}
	return out, nil
}

// DeleteSubscription removes a subscription for actor.
func (a *App) DeleteSubscription(ctx context.Context, tenant, id, auth string) error {
	if err := checkIDs(tenant, id); err != nil {
		return err
	}
	if _, err := a.subs.Delete(ctx, tenant, id, auth, a.now().UTC()); err != nil {
		return err
	}
	a.waitGone(tenant, id)
	return nil
}

func (a *App) waitGone(tenant, id string) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := a.subs.Lookup(tenant, id); !ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ListDeliveries returns the tenant's delivery log, newest first.
func (a *App) ListDeliveries(ctx context.Context, tenant, sub, status string, limit int) ([]domain.Delivery, error) {
	var v apierr.Violations
	if err := events.ValidateTenant(tenant); err != nil {
		v.Add("tenant", err.Error())
	}
	if sub != "" && !domain.SubscriptionIDPattern.MatchString(sub) {
		v.Add("subscription_id", "must match "+domain.SubscriptionIDPattern.String())
	}
	if limit < 0 || limit > 1000 {
		v.Add("page_size", fmt.Sprintf("must be from 0 (default 100) to 1000, got %d", limit))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = 100
	}
	return a.dels.List(ctx, tenant, sub, status, limit)
}

// Redeliver sends a delivery again.
func (a *App) Redeliver(ctx context.Context, tenant, id string) (domain.Delivery, error) {
	var v apierr.Violations
	if err := events.ValidateTenant(tenant); err != nil {
		v.Add("tenant", err.Error())
	}
	if !deliveryIDPattern.MatchString(id) {
		v.Add("delivery_id", "must be <subscription>.<notification>, e.g. ops-hook.n-0123456789abcdef")
	}
	if err := v.Err(); err != nil {
		return domain.Delivery{}, err
	}
	return a.dels.Redeliver(ctx, tenant, id, a.now())
}

var deliveryIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}\.n-[0-9a-f]{16}$`)

func checkIDs(tenant, id string) error {
	var v apierr.Violations
	if err := events.ValidateTenant(tenant); err != nil {
		v.Add("tenant", err.Error())
	}
	if !domain.SubscriptionIDPattern.MatchString(id) {
		v.Add("subscription_id", "must match "+domain.SubscriptionIDPattern.String())
	}
	return v.Err()
}

// Public is a subscription as the API shows it: no secret, a masked URL.
func Public(s *typesv1.Subscription) *typesv1.Subscription {
	out := proto.Clone(s).(*typesv1.Subscription)
	out.HasSecret = s.GetSecret() != ""
	out.Secret = ""
	if out.Url != "" {
		out.Url = domain.MaskURL(out.Url)
	}
	return out
}

// AuditRevision publishes the SubscriptionChanged event of one revision of a subscription.
func (a *App) AuditRevision(ctx context.Context, r adapters.Revision) error {
	ch := &eventsv1.SubscriptionChanged{Tenant: r.Tenant, SubscriptionId: r.ID, Revision: r.Revision, Deleted: r.Subscription == nil || r.Subscription.GetDeleted()}
	if r.Subscription != nil {
		ch.Actor, ch.ChangedAt = r.Subscription.GetUpdatedBy(), r.Subscription.GetUpdatedAt()
		if !ch.Deleted {
			ch.Subscription = Public(r.Subscription)
		}
	}
	ev, err := events.New(r.Tenant, fmt.Sprintf("%s/%d", r.ID, r.Revision), ch)
	if err != nil {
		return err
	}
	ev.Source, ev.Time = a.cfg.Source, a.now().UTC()
	if t := r.Subscription.GetUpdatedAt(); t != nil {
		ev.Time = t.AsTime()
	}
	return a.pub.Publish(ctx, ev)
}
