// Package app notifies tenants about outcomes: for every install, snapshot and run outcome it
// builds one notification and delivers it once through each configured channel, recording
// each delivery in the delivery log and as a NotificationSent or NotificationFailed event.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// Marks records the business keys of finished deliveries (libs/idem).
type Marks interface {
	Done(ctx context.Context, key string) (bool, error)
	Mark(ctx context.Context, key string) error
}

// Publisher stores events in the stream (libs/bus).
type Publisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// DeliveryLog records deliveries; it is also the "log" channel.
type DeliveryLog interface {
	Record(ctx context.Context, tenant string, d domain.Delivery) error
}

// Sender delivers a CloudEvents JSON document through an external channel.
type Sender interface {
	Send(ctx context.Context, body []byte) error
}

// Config tunes the notifier; the service's public Config has set the defaults.
type Config struct {
	// Source is the CloudEvents source of the notifier's events, "/patchwave/notifier".
	Source string
	// MaxAttempts is how many deliveries of an outcome event a failing channel gets before
	// the delivery is recorded as failed.
	MaxAttempts int
}

// Notifier handles outcome events.
type Notifier struct {
	cfg     Config
	marks   Marks
	pub     Publisher
	log     DeliveryLog
	webhook Sender // nil when no webhook is configured
	logger  *slog.Logger
	now     func() time.Time
	locks   keyedMutex
}

// New returns a Notifier. webhook may be nil; every other argument is required.
func New(cfg Config, marks Marks, pub Publisher, log DeliveryLog, webhook Sender, logger *slog.Logger, now func() time.Time) *Notifier {
	return &Notifier{cfg: cfg, marks: marks, pub: pub, log: log, webhook: webhook, logger: logger, now: now}
}

// NotifyOnOutcome delivers the notification about ev (InstallSucceeded, InstallFailed,
// SnapshotFailed or RunCompleted) through the log channel and, when configured, the webhook.
// Each channel is delivered at most once per event, however often the event is redelivered or
// replayed: its delivery is marked done by its NotificationSent or NotificationFailed. A failing
// webhook returns an error, so the bus redelivers the event after a backoff, until the event's
// MaxAttempts-th delivery, which records and publishes NotificationFailed instead.
func (n *Notifier) NotifyOnOutcome(ctx context.Context, ev *events.Event) error {
	note, err := domain.Notify(ev)
	if err != nil {
		return bus.Permanent(err)
	}
	// Two deliveries of the same event in this replica (a redelivery after AckWait while the
	// first is still posting) take turns, so the second finds the first one's marks.
	unlock := n.locks.lock(note.ID)
	defer unlock()
	if err := n.deliver(ctx, ev, note, domain.ChannelLog); err != nil {
		return err
	}
	if n.webhook != nil {
		return n.deliver(ctx, ev, note, domain.ChannelWebhook)
	}
	return nil
}

func (n *Notifier) deliver(ctx context.Context, ev *events.Event, note domain.Notification, channel string) error {
	key := domain.Key(note.ID, channel)
	done, err := n.marks.Done(ctx, key)
	if err != nil {
		return err
	}
	if done {
		return nil
	}
	sent, err := events.New(note.Tenant, key, &eventsv1.NotificationSent{
		Tenant: note.Tenant, NotificationId: note.ID, Channel: channel,
		AboutEventId: note.AboutEventID, Summary: note.Summary,
	})
	if err != nil {
		return bus.Permanent(err)
	}
	sent.Source, sent.Time = n.cfg.Source, n.now().UTC()
	out := sent
	d := domain.Delivery{
		ID: note.ID, Channel: channel, AboutEventID: note.AboutEventID, Summary: note.Summary,
		Status: domain.StatusSent, Time: sent.Time,
	}
	if channel == domain.ChannelWebhook {
		body, err := events.Marshal(sent)
		if err != nil {
			return bus.Permanent(fmt.Errorf("notification %s: %w", key, err))
		}
		if err := n.webhook.Send(ctx, body); err != nil {
			if ctx.Err() != nil {
				return err
			}
			attempt := max(ev.Delivered, 1)
			if attempt < uint64(n.cfg.MaxAttempts) {
				return fmt.Errorf("notification %s, attempt %d of %d: %w", key, attempt, n.cfg.MaxAttempts, err)
			}
			reason := fmt.Sprintf("%v (gave up after %d attempts)", err, attempt)
			n.logger.WarnContext(ctx, "notification failed", "tenant", note.Tenant, "notification", note.ID,
				"channel", channel, "about", note.AboutEventID, "reason", reason)
			if out, err = events.New(note.Tenant, key, &eventsv1.NotificationFailed{
				Tenant: note.Tenant, NotificationId: note.ID, Channel: channel,
				AboutEventId: note.AboutEventID, Reason: reason,
			}); err != nil {
				return bus.Permanent(err)
			}
			out.Source, out.Time = sent.Source, n.now().UTC()
			d.Status, d.Error, d.Time = domain.StatusFailed, reason, out.Time
		}
	}
	if err := n.log.Record(ctx, note.Tenant, d); err != nil {
		return err
	}
	if err := n.pub.Publish(ctx, out); err != nil {
		return fmt.Errorf("publish %s: %w", out.ID, err)
	}
	return n.marks.Mark(ctx, key)
}

// keyedMutex serializes work per key.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyLock)
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
