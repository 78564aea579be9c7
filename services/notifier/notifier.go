// Package notifier is Patchwave's notification stage. For every install outcome, failed
// snapshot and completed run it builds one notification, delivers it through each channel
// (the delivery log, always, and a webhook when configured), keeps a per-tenant delivery log,
// and publishes NotificationSent or NotificationFailed per channel. Build it with New and host
// it with libs/host, alone (cmd/notifier) or with the other services (patchd).
package notifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/adapters"
	"github.com/patchwave/patchwave/services/notifier/internal/app"
	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// Name is the service name: it names the bus consumers and is the source of its events.
const Name = "notifier"

// HandlerNotify is the name of the handler that consumes outcome events.
const HandlerNotify = "NotifyOnOutcome"

// Channel names, as they appear in deliveries and notification events.
const (
	// ChannelLog is the delivery log itself; it is always on.
	ChannelLog = domain.ChannelLog
	// ChannelWebhook POSTs the notification's CloudEvent to Config.WebhookURL.
	ChannelWebhook = domain.ChannelWebhook
)

// Delivery statuses.
const (
	StatusSent   = domain.StatusSent
	StatusFailed = domain.StatusFailed
)

// Delivery is one entry of a tenant's delivery log: one notification through one channel.
type Delivery = domain.Delivery

// Config configures the notifier.
type Config struct {
	// WebhookURL is where the webhook channel POSTs each notification as a CloudEvents JSON
	// document (http or https). It may carry a secret token: it is never logged. Optional,
	// default "": no webhook channel.
	WebhookURL string
	// WebhookTimeout bounds one POST. Optional, default 10s.
	WebhookTimeout time.Duration
	// MaxAttempts is how many deliveries of an outcome event a failing channel gets before
	// NotificationFailed is recorded; it must not exceed the bus's MaxDeliver (default 5), or
	// the event is dead-lettered first. Optional, default 3.
	MaxAttempts int
	// Concurrency is how many outcome events one replica handles at once. Optional, default 8.
	Concurrency int
}

func (c *Config) setDefaults() {
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = 10 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
}

// Validate reports every problem with the configuration, naming the field and the rule.
func (c Config) Validate() error {
	var errs []error
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		switch {
		case err != nil:
			// The parse error quotes the URL, which may hold a secret.
			errs = append(errs, errors.New("WebhookURL: must be an absolute http or https URL (it does not parse)"))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("WebhookURL: scheme %q: must be http or https", u.Scheme))
		case u.Host == "":
			errs = append(errs, errors.New("WebhookURL: must name a host"))
		}
	}
	if c.WebhookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("WebhookTimeout %s: must be > 0", c.WebhookTimeout))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("MaxAttempts %d: must be from 1 to 100", c.MaxAttempts))
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("Concurrency %d: must be from 1 to 1024", c.Concurrency))
	}
	return errors.Join(errs...)
}

// Deps are the notifier's collaborators.
type Deps struct {
	// Store holds the delivery log and the idempotency marks, both rebuilt from the stream at
	// start. Required.
	Store store.Store
	// HTTPClient posts webhooks. Optional, default a client with no timeout of its own
	// (Config.WebhookTimeout bounds each POST).
	HTTPClient *http.Client
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Clock stamps deliveries. Optional, default time.Now.
	Clock func() time.Time
}

func (d *Deps) setDefaults() {
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
}

// Validate reports every missing dependency.
func (d Deps) Validate() error {
	if d.Store == nil {
		return errors.New("Store: required")
	}
	return nil
}

// Service is the notifier; it implements host.Component.
type Service struct {
	cfg   Config
	deps  Deps
	marks *idem.Marks
	log   *adapters.DeliveryLog

	mu         sync.Mutex
	registered bool
}

var _ host.Component = (*Service)(nil)

// New checks cfg and deps and returns the service, ready to be registered on a bus.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	deps.setDefaults()
	if err := errors.Join(cfg.Validate(), deps.Validate()); err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	return &Service{
		cfg:   cfg,
		deps:  deps,
		marks: idem.New(deps.Store, Name),
		log:   adapters.NewDeliveryLog(deps.Store),
	}, nil
}

// Name returns the service name, "notifier".
func (s *Service) Name() string { return Name }

// Config returns the configuration with defaults filled in. WebhookURL may hold a secret:
// mask it before logging.
func (s *Service) Config() Config { return s.cfg }

// Channels lists the channels every notification is delivered through, in order.
func (s *Service) Channels() []string {
	if s.cfg.WebhookURL != "" {
		return []string{ChannelLog, ChannelWebhook}
	}
	return []string{ChannelLog}
}

// Deliveries returns the tenant's delivery log, newest last.
func (s *Service) Deliveries(ctx context.Context, tenant string) ([]Delivery, error) {
	if err := events.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	return s.log.List(ctx, tenant)
}

// Register adds the idempotency-mark and delivery-log projections (over NotificationSent and
// NotificationFailed) and the NotifyOnOutcome handler to b. A Service registers on one bus
// only.
func (s *Service) Register(b *bus.Bus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered {
		return errors.New("notifier: already registered on a bus")
	}
	outputs := []string{
		events.Pattern[*eventsv1.NotificationSent](),
		events.Pattern[*eventsv1.NotificationFailed](),
	}
	if err := b.Project(s.marks.Projection(nil, outputs...)); err != nil {
		return fmt.Errorf("marks projection: %w", err)
	}
	if err := b.Project(s.log.Projection(Name + "-deliveries")); err != nil {
		return fmt.Errorf("delivery log projection: %w", err)
	}
	var webhook app.Sender
	if s.cfg.WebhookURL != "" {
		webhook = adapters.NewWebhook(s.cfg.WebhookURL, s.deps.HTTPClient, s.cfg.WebhookTimeout)
	}
	a := app.New(app.Config{Source: events.SourcePrefix + Name, MaxAttempts: s.cfg.MaxAttempts},
		s.marks, b, s.log, webhook, s.deps.Logger, s.deps.Clock)
	if err := b.Handle(bus.HandlerSpec{
		Name: HandlerNotify,
		Subjects: []string{
			events.Pattern[*eventsv1.InstallSucceeded](),
			events.Pattern[*eventsv1.InstallFailed](),
			events.Pattern[*eventsv1.SnapshotFailed](),
			events.Pattern[*eventsv1.RunCompleted](),
		},
		Handle:      a.NotifyOnOutcome,
		Concurrency: s.cfg.Concurrency,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	s.registered = true
	return nil
}
