package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/adapters"
	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// RunDispatcher attempts due deliveries until ctx is done. It sleeps until the earliest entry
// of the schedule is due (at most PollInterval, woken early by a new entry), claims what is due
// and attempts up to Concurrency deliveries at once. Nothing here holds a bus worker.
func (a *App) RunDispatcher(ctx context.Context) error {
	if err := a.dels.WaitReady(ctx); err != nil {
		return nil
	}
	if err := a.subs.WaitReady(ctx); err != nil {
		return nil
	}
	sem := make(chan struct{}, a.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	inflight := map[string]bool{}
	var mu sync.Mutex
	for {
		now := a.now()
		due, next := a.dels.Due(now, 4*a.cfg.Concurrency)
		for _, e := range due {
			mu.Lock()
			busy := inflight[e.Key]
			if !busy {
				inflight[e.Key] = true
			}
			mu.Unlock()
			if busy {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Add(1)
			go func(e adapters.DueEntry) {
				defer wg.Done()
				defer func() { <-sem; mu.Lock(); delete(inflight, e.Key); mu.Unlock() }()
				if err := a.attempt(ctx, e); err != nil && ctx.Err() == nil {
					a.log.Warn("delivery attempt", "key", e.Key, "error", err)
				}
			}(e)
		}
		wait := a.cfg.PollInterval
		if len(due) > 0 {
			wait = min(wait, 10*time.Millisecond)
		} else if !next.IsZero() {
			wait = max(min(wait, next.Sub(now)), time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-a.dels.Wake():
		case <-t.C:
		}
		t.Stop()
	}
}

// attempt claims one due entry and makes one attempt of its delivery.
func (a *App) attempt(ctx context.Context, e adapters.DueEntry) error {
	now := a.now().UTC()
	claim, ok, err := a.dels.Claim(ctx, e, now.Add(a.cfg.Lease))
	if err != nil || !ok {
		return err
	}
	d, _, err := a.dels.Record(ctx, claim)
	if err != nil {
		return err
	}
	if d.Status != domain.StatusPending {
		// Finished by an earlier attempt that died before removing its schedule entry.
		return a.dels.Reschedule(ctx, d, claim)
	}
	d.Attempts++
	sub, found := a.subs.Lookup(d.Tenant, d.SubscriptionID)
	var sendErr error
	if !found {
		sendErr = errors.New("the subscription was deleted")
		d.Attempts = a.cfg.Retry.Attempts
	} else {
		sendErr = a.send(ctx, sub, d)
	}
	// The outcome is recorded even when the replica is stopping, so the next attempt does not
	// wait for the lease to run out.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now = a.now().UTC()
	switch {
	case sendErr == nil:
		d.Status, d.SentAt, d.LastError, d.NextAttemptAt = domain.StatusSent, now, "", time.Time{}
	case d.Attempts >= a.cfg.Retry.Attempts:
		d.Status, d.LastError, d.NextAttemptAt = domain.StatusDead, domain.OneLine(sendErr.Error()), time.Time{}
	default:
		d.LastError = domain.OneLine(sendErr.Error())
		d.NextAttemptAt = now.Add(a.backoff(d.Attempts))
	}
	if err := a.dels.Finish(ctx, d, claim); err != nil {
		return err
	}
	if a.m != nil {
		outcome := map[string]string{domain.StatusSent: "sent", domain.StatusDead: "dead", domain.StatusPending: "retry"}[d.Status]
		a.m.attempts.WithLabelValues(d.Channel, outcome).Inc()
	}
	switch d.Status {
	case domain.StatusSent:
		a.log.Debug("notification sent", "tenant", d.Tenant, "delivery", d.ID(), "attempts", d.Attempts)
		return a.publishOutcome(ctx, d)
	case domain.StatusDead:
		a.log.Warn("notification dead-lettered", "tenant", d.Tenant, "delivery", d.ID(), "attempts", d.Attempts, "error", d.LastError)
		return a.publishOutcome(ctx, d)
	}
	a.log.Info("notification attempt failed; will retry", "tenant", d.Tenant, "delivery", d.ID(), "attempt", d.Attempts,
		"next", d.NextAttemptAt, "error", d.LastError)
	return nil
}

// send renders and sends one attempt through the subscription's channel.
func (a *App) send(ctx context.Context, sub *typesv1.Subscription, d domain.Delivery) error {
	v := domain.NewView(d.Notification, a.cfg.PublicURL)
	t := sub.GetTemplates()
	msg, err := domain.Render(v, sub.GetChannel() == typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, t.GetSubject(), t.GetText(), t.GetHtml())
	if err != nil {
		return err
	}
	o := adapters.Outgoing{
		DeliveryID: d.Tenant + "." + d.ID(), Delivery: d, View: v, Message: msg,
		URL: sub.GetUrl(), Secret: sub.GetSecret(), EmailTo: sub.GetEmailTo(), TopicARN: sub.GetTopicArn(),
	}
	switch sub.GetChannel() {
	case typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK:
		return a.ch.Webhook(ctx, o)
	case typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK:
		return a.ch.Slack(ctx, o)
	case typesv1.NotificationChannel_NOTIFICATION_CHANNEL_EMAIL:
		return a.ch.Email(ctx, o)
	case typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SNS:
		return a.ch.SNS(ctx, o)
	}
	return fmt.Errorf("channel %s: not supported", sub.GetChannel())
}

// publishOutcome publishes NotificationSent or NotificationFailed for a finished delivery.
// The record is the truth; a publish that fails is logged, not retried.
func (a *App) publishOutcome(ctx context.Context, d domain.Delivery) error {
	key := d.ID()
	if d.Generation > 0 {
		key = fmt.Sprintf("%s.g%d", key, d.Generation)
	}
	var ev *events.Event
	var err error
	n := d.Notification
	if d.Status == domain.StatusSent {
		ev, err = events.New(d.Tenant, key, &eventsv1.NotificationSent{
			Tenant: d.Tenant, NotificationId: n.ID, Channel: d.Channel, AboutEventId: n.AboutEventID, Summary: n.Summary,
			SubscriptionId: d.SubscriptionID, Attempts: int32(d.Attempts),
		})
	} else {
		ev, err = events.New(d.Tenant, key, &eventsv1.NotificationFailed{
			Tenant: d.Tenant, NotificationId: n.ID, Channel: d.Channel, AboutEventId: n.AboutEventID,
			Reason: fmt.Sprintf("%s (dead-lettered after %d attempts)", d.LastError, d.Attempts), SubscriptionId: d.SubscriptionID,
			Attempts: int32(d.Attempts),
		})
	}
	if err != nil {
		return err
	}
	ev.Source, ev.Time = a.cfg.Source, a.now().UTC()
	if err := a.pub.Publish(ctx, ev); err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	return nil
}
