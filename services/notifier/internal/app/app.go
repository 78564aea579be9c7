// Package app is the notifier's application: it turns events into notifications, matches them
// against the tenant's subscriptions and queues one delivery per subscription (immediately, or
// as one digest when a run ends), and a dispatcher attempts the queued deliveries on a durable
// schedule with exponential backoff, outside the bus's handlers.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/adapters"
	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// Publisher stores events in the stream (libs/bus).
type Publisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// Channels send one rendered attempt.
type Channels interface {
	Webhook(ctx context.Context, o adapters.Outgoing) error
	Slack(ctx context.Context, o adapters.Outgoing) error
	Email(ctx context.Context, o adapters.Outgoing) error
	SNS(ctx context.Context, o adapters.Outgoing) error
}

// Config tunes the application; the service's public Config has set the defaults.
type Config struct {
	// Source is the CloudEvents source of the notifier's events, "/patchwave/notifier".
	Source string
	Retry  domain.Retry
	// Lease is how long a claimed attempt may take before another replica may retry it.
	Lease time.Duration
	// PollInterval is the dispatcher's longest sleep.
	PollInterval time.Duration
	// Concurrency is how many attempts run at once.
	Concurrency int
	// PublicURL is the API's base URL for links, or "".
	PublicURL string
	// DigestWait bounds how long a run's end waits for the failures read model.
	DigestWait time.Duration
}

// App is the notifier's application.
type App struct {
	cfg      Config
	subs     *adapters.Subscriptions
	dels     *adapters.Deliveries
	failures *adapters.RunFailures
	pub      Publisher
	ch       Channels
	log      *slog.Logger
	now      func() time.Time

	rndMu sync.Mutex
	rnd   *rand.Rand
	m     *Metrics
}

// SetMetrics makes the application count what it does in m.
func (a *App) SetMetrics(m *Metrics) { a.m = m }

// New returns the application.
func New(cfg Config, subs *adapters.Subscriptions, dels *adapters.Deliveries, failures *adapters.RunFailures,
	pub Publisher, ch Channels, log *slog.Logger, now func() time.Time) *App {
	return &App{cfg: cfg, subs: subs, dels: dels, failures: failures, pub: pub, ch: ch, log: log, now: now,
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15))} //nolint:gosec // jitter, not a secret
}

// NotifyOnEvent queues the deliveries an event makes: one per matching immediate subscription
// and, when it ends a run, one digest per matching digest subscription. Queuing is idempotent
// (a delivery's key is its subscription and notification), so a redelivered or replayed event
// queues nothing again; sending is the dispatcher's, so no handler waits on a receiver.
func (a *App) NotifyOnEvent(ctx context.Context, ev *events.Event) error {
	n, ok, err := domain.Notify(ev)
	if err != nil {
		return bus.Permanent(err)
	}
	if !ok {
		return nil
	}
	if err := a.subs.WaitReady(ctx); err != nil {
		return err
	}
	subs := a.subs.ForTenant(n.Tenant)
	if len(subs) == 0 {
		return nil
	}
	if err := a.enqueueMatching(ctx, subs, n); err != nil {
		return err
	}
	if !n.IsRunEnd() {
		return nil
	}
	d := n
	d.Type, d.ID = domain.TypeRunDigest, domain.NotificationID(ev.ID+"/digest")
	var wants []*typesv1.Subscription
	for _, s := range subs {
		if domain.Matches(s, d) {
			wants = append(wants, s)
		}
	}
	if len(wants) == 0 {
		return nil
	}
	digest := *n.Digest
	if digest.Failed > 0 {
		if err := a.waitFailures(ctx, ev.Sequence); err != nil {
			return err
		}
		var byStage map[string]int
		if digest.Failures, byStage, err = a.failures.Failures(ctx, n.Tenant, n.RunID, domain.MaxDigestFailures); err != nil {
			return err
		}
		all := 0
		for _, c := range byStage {
			all += c
		}
		digest.MoreFailures = max(all-len(digest.Failures), 0)
		digest.FailedInstall, digest.FailedSnapshot = byStage["install"], byStage["snapshot"]
	}
	d.Digest = &digest
	return a.enqueueMatching(ctx, wants, d)
}

// NotifyOnBaselinePublished tells every tenant with a subscription that a baseline waits for
// its approval (one notification per tenant; the event is global).
func (a *App) NotifyOnBaselinePublished(ctx context.Context, ev *events.Event) error {
	if err := a.subs.WaitReady(ctx); err != nil {
		return err
	}
	for _, t := range a.subs.Tenants() {
		n, ok := domain.BaselineWaiting(ev, t)
		if !ok {
			return nil
		}
		if err := a.enqueueMatching(ctx, a.subs.ForTenant(t), n); err != nil {
			return err
		}
	}
	return nil
}

// waitFailures waits until the failures read model has applied the stream up to seq.
func (a *App) waitFailures(ctx context.Context, seq uint64) error {
	deadline := time.Now().Add(a.cfg.DigestWait)
	for {
		cp, err := a.failures.Checkpoint(ctx)
		if err != nil {
			return err
		}
		if cp >= seq {
			return nil
		}
		if time.Now().After(deadline) {
			// The read model catches up by itself: retried like a throttled dependency (more
			// and longer redeliveries), not dead-lettered after a few attempts.
			return bus.Throttled(fmt.Errorf("run failures read model at %d, behind the run's end at %d: retry", cp, seq))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (a *App) enqueueMatching(ctx context.Context, subs []*typesv1.Subscription, n domain.Notification) error {
	now := a.now().UTC()
	var errs []error
	for _, s := range subs {
		if !domain.Matches(s, n) {
			continue
		}
		d := domain.Delivery{
			Tenant: n.Tenant, SubscriptionID: s.GetSubscriptionId(), Channel: domain.ChannelName(s.GetChannel()),
			Notification: n, Status: domain.StatusPending, CreatedAt: now, NextAttemptAt: domain.NotBefore(s, now),
		}
		created, err := a.dels.Enqueue(ctx, d)
		if err != nil {
			errs = append(errs, err)
		}
		if created && a.m != nil {
			a.m.queued.WithLabelValues(d.Channel).Inc()
		}
	}
	return errors.Join(errs...)
}

func (a *App) backoff(attempt int) time.Duration {
	a.rndMu.Lock()
	defer a.rndMu.Unlock()
	return a.cfg.Retry.Backoff(attempt, a.rnd)
}
