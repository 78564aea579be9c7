// Package notifier is Patchwave's notification stage. Tenants subscribe (over the
// NotifierService API) to the notifications they want, through a signed webhook, Slack, e-mail
// or SNS, immediately or as one digest per run; the notifier turns job outcomes, run, restore
// and baseline events into notifications, queues one delivery per matching subscription in a
// JetStream KV bucket, and a dispatcher sends them with exponential backoff for hours, outside
// the bus's handlers, dead-letters what never gets through, and keeps the delivery log. Build
// it with New and host it with libs/host, alone (cmd/notifier) or with the other services
// (patchd).
package notifier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/adapters"
	"github.com/patchwave/patchwave/services/notifier/internal/app"
	"github.com/patchwave/patchwave/services/notifier/internal/domain"
	"github.com/patchwave/patchwave/services/notifier/internal/ports"
)

// Name is the service name: it names the bus consumers and is the source of its events.
const Name = "notifier"

// Handler names (durable consumers notifier_<name>).
const (
	// HandlerNotify consumes the tenant events that make notifications.
	HandlerNotify = "NotifyOnOutcome"
	// HandlerBaseline consumes catalog.baseline.published.
	HandlerBaseline = "NotifyOnBaselinePublished"
)

// Buckets the notifier owns.
const (
	SubscriptionsBucket = adapters.SubscriptionsBucket
	DeliveriesBucket    = adapters.DeliveriesBucket
)

// Webhook signature headers (see the README for the verification recipe).
const (
	HeaderDelivery  = adapters.HeaderDelivery
	HeaderEvent     = adapters.HeaderEvent
	HeaderTimestamp = adapters.HeaderTimestamp
	HeaderSignature = adapters.HeaderSignature
)

// Sign returns the Patchwave-Signature value of body sent at unix time ts.
func Sign(secret string, ts int64, body []byte) string { return adapters.Sign(secret, ts, body) }

// VerifyWebhook checks a received webhook's timestamp (within window of now) and signature.
var VerifyWebhook = adapters.Verify

// WebhookBody is the JSON document a webhook receives.
type WebhookBody = adapters.WebhookBody

// Config configures the notifier.
type Config struct {
	// PublicURL is the REST API's base URL, for the links in messages. Optional, default "":
	// no links.
	PublicURL string
	// AllowNetworks are internal networks webhook and Slack targets may reach anyway (loopback,
	// private and link-local addresses are refused otherwise). Optional.
	AllowNetworks []netip.Prefix
	// HTTPTimeout bounds one webhook or Slack request. Optional, default 10s.
	HTTPTimeout time.Duration
	// MaxResponseBytes bounds how much of a receiver's answer is read. Optional, default 64 KiB.
	MaxResponseBytes int64
	// MaxRedirects a webhook may follow, each checked like the target. Optional, default 3;
	// negative: none.
	MaxRedirects int
	// RetryInitial is the wait after the first failed attempt, doubled after each one up to
	// RetryMax, with jitter. Optional, defaults 30s and 30m.
	RetryInitial time.Duration
	RetryMax     time.Duration
	// MaxAttempts of one delivery before it is dead-lettered. Optional, default 12 (about
	// 3.5 hours of retries with the default waits).
	MaxAttempts int
	// Lease is how long an attempt may take before another replica may retry it. Optional,
	// default 2m.
	Lease time.Duration
	// PollInterval is the dispatcher's longest sleep. Optional, default 1s.
	PollInterval time.Duration
	// Concurrency is how many events one replica handles at once. Optional, default 8.
	Concurrency int
	// SendConcurrency is how many delivery attempts one replica makes at once. Optional,
	// default 16.
	SendConcurrency int
	// KVReplicas of the notifier's buckets. Optional, default 1.
	KVReplicas int
	// DigestWait bounds how long a run's end waits for the failures read model before the
	// event is retried. Optional, default 5s.
	DigestWait time.Duration
	// ReminderInterval is how often due wave reminders are looked for. Optional, default 1m.
	ReminderInterval time.Duration
	// SMTP is the relay of the e-mail channel. Optional: without Host, e-mail deliveries fail.
	SMTP SMTP
	// SNS is the AWS SNS endpoint of the SNS channel.
	SNS SNS
}

// SMTP is the operator's mail relay.
type SMTP struct {
	Host string
	// Port, default 587.
	Port int
	// TLS is "starttls" (the default: STARTTLS required), "opportunistic", "tls" (implicit TLS)
	// or "none".
	TLS string
	// Username and Password for AUTH PLAIN; empty: no authentication. Password is a secret.
	Username string
	Password string
	// From is the sender address. Required with Host.
	From string
	// Timeout of one send, default 30s.
	Timeout time.Duration
}

// SNS is where the SNS channel publishes.
type SNS struct {
	// Region, default us-east-1.
	Region string
	// Endpoint overrides the SNS endpoint (cloudsim, a VPC endpoint). Optional.
	Endpoint string
	// AccessKeyID and SecretAccessKey are static credentials; empty: none are sent, so set
	// them or give Deps.SNS.
	AccessKeyID     string
	SecretAccessKey string
}

func (c *Config) setDefaults() {
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 10 * time.Second
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = 64 << 10
	}
	if c.MaxRedirects == 0 {
		c.MaxRedirects = 3
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = 30 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Minute
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 12
	}
	if c.Lease == 0 {
		c.Lease = 2 * time.Minute
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.SendConcurrency == 0 {
		c.SendConcurrency = 16
	}
	if c.KVReplicas == 0 {
		c.KVReplicas = 1
	}
	if c.DigestWait == 0 {
		c.DigestWait = 5 * time.Second
	}
	if c.ReminderInterval == 0 {
		c.ReminderInterval = time.Minute
	}
	if c.SMTP.Port == 0 {
		c.SMTP.Port = 587
	}
	if c.SMTP.Timeout == 0 {
		c.SMTP.Timeout = 30 * time.Second
	}
	if c.SNS.Region == "" {
		c.SNS.Region = "us-east-1"
	}
}

// Validate reports every problem with the configuration, naming the field and the rule.
func (c Config) Validate() error {
	var errs []error
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("PublicURL: must be an absolute http or https URL"))
		}
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be > 0", name, d))
		}
	}
	pos("HTTPTimeout", c.HTTPTimeout)
	pos("RetryInitial", c.RetryInitial)
	pos("RetryMax", c.RetryMax)
	pos("Lease", c.Lease)
	pos("PollInterval", c.PollInterval)
	pos("DigestWait", c.DigestWait)
	pos("ReminderInterval", c.ReminderInterval)
	pos("SMTP.Timeout", c.SMTP.Timeout)
	if c.RetryMax < c.RetryInitial {
		errs = append(errs, fmt.Errorf("RetryMax %s: must be at least RetryInitial %s", c.RetryMax, c.RetryInitial))
	}
	if c.MaxResponseBytes < 256 {
		errs = append(errs, fmt.Errorf("MaxResponseBytes %d: must be at least 256", c.MaxResponseBytes))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("MaxAttempts %d: must be from 1 to 100", c.MaxAttempts))
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("Concurrency %d: must be from 1 to 1024", c.Concurrency))
	}
	if c.SendConcurrency < 1 || c.SendConcurrency > 1024 {
		errs = append(errs, fmt.Errorf("SendConcurrency %d: must be from 1 to 1024", c.SendConcurrency))
	}
	if c.KVReplicas != 1 && c.KVReplicas != 3 && c.KVReplicas != 5 {
		errs = append(errs, fmt.Errorf("KVReplicas %d: must be 1, 3 or 5", c.KVReplicas))
	}
	if c.SMTP.Host != "" && c.SMTP.From == "" {
		errs = append(errs, errors.New("SMTP.From: required with SMTP.Host"))
	}
	switch c.SMTP.TLS {
	case "", "starttls", "opportunistic", "tls", "none":
	default:
		errs = append(errs, fmt.Errorf("SMTP.TLS %q: must be starttls, opportunistic, tls or none", c.SMTP.TLS))
	}
	if c.SMTP.Port < 1 || c.SMTP.Port > 65535 {
		errs = append(errs, fmt.Errorf("SMTP.Port %d: must be from 1 to 65535", c.SMTP.Port))
	}
	if c.SNS.Endpoint != "" {
		if u, err := url.Parse(c.SNS.Endpoint); err != nil || u.Host == "" {
			errs = append(errs, errors.New("SNS.Endpoint: must be an absolute URL"))
		}
	}
	return errors.Join(errs...)
}

// Deps are the notifier's collaborators.
type Deps struct {
	// Store holds the run-failures read model (rebuilt from the stream). Required.
	Store store.Store
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// Clock stamps deliveries and schedules attempts. Optional, default time.Now.
	Clock func() time.Time
	// SMTPTLS verifies the relay (RootCAs, ServerName). Optional, default the system roots.
	SMTPTLS *tls.Config
	// SNS is the SNS client. Optional, default one built from Config.SNS.
	SNS *sns.Client
}

// Service is the notifier; it implements host.Component, host.GRPCRegistrar, host.Runner and
// host.Readiness.
type Service struct {
	cfg  Config
	deps Deps

	mu         sync.Mutex
	registered bool
	subs       *adapters.Subscriptions
	dels       *adapters.Deliveries
	design     *design.View
	js         jetstream.JetStream
	app        *app.App
}

var (
	_ host.Component     = (*Service)(nil)
	_ host.GRPCRegistrar = (*Service)(nil)
	_ host.Runner        = (*Service)(nil)
	_ host.Readiness     = (*Service)(nil)
)

// New checks cfg and deps and returns the service, ready to be registered on a bus.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	var errs []error
	errs = append(errs, cfg.Validate())
	if deps.Store == nil {
		errs = append(errs, errors.New("Store: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	return &Service{cfg: cfg, deps: deps}, nil
}

// Name returns the service name, "notifier".
func (s *Service) Name() string { return Name }

// Config returns the configuration with defaults filled in. SMTP.Password and
// SNS.SecretAccessKey are secrets: mask them before logging.
func (s *Service) Config() Config { return s.cfg }

// Register opens the buckets and adds the failures projection and the handlers to b. A
// Service registers on one bus only.
func (s *Service) Register(b *bus.Bus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered {
		return errors.New("notifier: already registered on a bus")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.js = b.JetStream()
	var err error
	if s.subs, err = adapters.OpenSubscriptions(ctx, b.JetStream(), s.cfg.KVReplicas, s.deps.Logger); err != nil {
		return err
	}
	if s.dels, err = adapters.OpenDeliveries(ctx, b.JetStream(), s.cfg.KVReplicas, s.deps.Logger); err != nil {
		return err
	}
	if s.design, err = design.NewView(design.ViewConfig{JetStream: b.JetStream(), Logger: s.deps.Logger}); err != nil {
		return err
	}
	failures := adapters.NewRunFailures(s.deps.Store)
	if err := b.Project(failures.Projection(Name + "-run-failures")); err != nil {
		return fmt.Errorf("run failures projection: %w", err)
	}
	snsClient := s.deps.SNS
	if snsClient == nil {
		o := sns.Options{Region: s.cfg.SNS.Region}
		if s.cfg.SNS.Endpoint != "" {
			o.BaseEndpoint = aws.String(s.cfg.SNS.Endpoint)
		}
		if s.cfg.SNS.AccessKeyID != "" {
			o.Credentials = credentials.NewStaticCredentialsProvider(s.cfg.SNS.AccessKeyID, s.cfg.SNS.SecretAccessKey, "")
		}
		snsClient = sns.New(o)
	}
	maxRedirects := max(s.cfg.MaxRedirects, 0)
	ch := &channels{
		http: &adapters.HTTPChannels{
			Client:      adapters.NewGuardedClient(adapters.AddressGuard{Allow: s.cfg.AllowNetworks}, adapters.HTTPLimits{Timeout: s.cfg.HTTPTimeout, MaxRedirects: maxRedirects}),
			MaxResponse: s.cfg.MaxResponseBytes, Now: s.deps.Clock,
		},
		email: &adapters.Email{Cfg: adapters.SMTPConfig{
			Host: s.cfg.SMTP.Host, Port: s.cfg.SMTP.Port, TLS: s.cfg.SMTP.TLS, Username: s.cfg.SMTP.Username,
			Password: s.cfg.SMTP.Password, From: s.cfg.SMTP.From, TLSConfig: s.deps.SMTPTLS, Timeout: s.cfg.SMTP.Timeout,
		}},
		sns: &adapters.SNS{Client: snsClient},
	}
	s.app = app.New(app.Config{
		Source: events.SourcePrefix + Name,
		Retry:  domain.Retry{Initial: s.cfg.RetryInitial, Max: s.cfg.RetryMax, Attempts: s.cfg.MaxAttempts},
		Lease:  s.cfg.Lease, PollInterval: s.cfg.PollInterval, Concurrency: s.cfg.SendConcurrency,
		PublicURL: s.cfg.PublicURL, DigestWait: s.cfg.DigestWait,
	}, s.subs, s.dels, failures, b, ch, s.deps.Logger, s.deps.Clock)
	dels := s.dels
	m, err := app.NewMetrics(b.Registerer(), func() float64 { return float64(dels.Pending()) })
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	s.app.SetMetrics(m)
	if err := b.Handle(bus.HandlerSpec{
		Name: HandlerNotify,
		Subjects: append([]string{
			events.Pattern[*eventsv1.InstallSucceeded](),
			events.Pattern[*eventsv1.InstallFailed](),
			events.Pattern[*eventsv1.SnapshotFailed](),
			events.Pattern[*eventsv1.RunStarted](),
			events.Pattern[*eventsv1.RunCompleted](),
			events.Pattern[*eventsv1.RestoreRequested](),
			events.Pattern[*eventsv1.RestoreCompleted](),
			events.Pattern[*eventsv1.RestoreFailed](),
		}, domain.RunEventSubjects...),
		Handle:      s.app.NotifyOnEvent,
		Concurrency: s.cfg.Concurrency,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	if err := b.Handle(bus.HandlerSpec{
		Name:     HandlerBaseline,
		Subjects: []string{events.Pattern[*eventsv1.BaselinePublished]()},
		Handle:   s.app.NotifyOnBaselinePublished,
	}); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	s.registered = true
	return nil
}

// RegisterGRPC serves patchwave.notifier.v1.NotifierService.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	notifierv1.RegisterNotifierServiceServer(r, ports.NewGRPCServer(s.app))
}

// Server returns the NotifierService implementation (for tests and in-process callers).
func (s *Service) Server() notifierv1.NotifierServiceServer { return ports.NewGRPCServer(s.app) }

// Run watches the buckets and runs the dispatcher until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	if s.app == nil {
		return errors.New("notifier: Run before Register")
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.subs.Run(ctx) })
	g.Go(func() error { return s.dels.Run(ctx) })
	g.Go(func() error { return s.app.RunDispatcher(ctx) })
	g.Go(func() error { return s.design.Run(ctx) })
	g.Go(func() error { return s.subs.RunAudit(ctx, s.js, time.Second, s.app.AuditRevision) })
	g.Go(func() error { return s.app.RunReminders(ctx, s.design, s.cfg.ReminderInterval) })
	return g.Wait()
}

// Ready reports whether the subscriptions are loaded.
func (s *Service) Ready(context.Context) error {
	if s.subs == nil || !s.subs.Ready() {
		return errors.New("notifier: subscriptions not loaded yet")
	}
	return nil
}

// Pending counts the deliveries waiting for an attempt (this replica's view of the schedule).
func (s *Service) Pending() int {
	if s.dels == nil {
		return 0
	}
	return s.dels.Pending()
}

// channels routes an attempt to its channel's adapter.
type channels struct {
	http  *adapters.HTTPChannels
	email *adapters.Email
	sns   *adapters.SNS
}

func (c *channels) Webhook(ctx context.Context, o adapters.Outgoing) error {
	return c.http.Webhook(ctx, o)
}
func (c *channels) Slack(ctx context.Context, o adapters.Outgoing) error { return c.http.Slack(ctx, o) }
func (c *channels) Email(ctx context.Context, o adapters.Outgoing) error {
	if c.email.Cfg.Host == "" {
		return errors.New("e-mail: the notifier has no SMTP relay configured (PATCHWAVE_SMTP_HOST)")
	}
	return c.email.Send(ctx, o)
}
func (c *channels) SNS(ctx context.Context, o adapters.Outgoing) error { return c.sns.Publish(ctx, o) }
