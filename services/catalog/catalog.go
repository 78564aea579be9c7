// Package catalog is Patchwave's patch catalog. It polls the vendors' advisory feeds (CSAF
// 2.0, OSV, RPM updateinfo.xml, MSRC CVRF 1.2) from directories, HTTP(S), S3 and CSAF
// providers, normalizes every advisory into one patch model, takes patches through
// certification (by the provider's testers, with evidence, or by auto-approval rules),
// publishes immutable versioned baselines of certified patches per OS family with deployment
// rules per patch (and emergency out-of-band ones for a critical CVE), and records each
// tenant's approval of a baseline (by hand or by an auto-approve policy with a delay).
//
// State lives in JetStream KV buckets (patches with their history, baselines, approvals,
// policies, rules, sources), written with compare-and-set; every change is also an event
// (catalog.patch.*, catalog.baseline.published, patch.<tenant>.baseline.approved, ...). The API
// is patchwave.catalog.v1.CatalogService.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/design"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
	"github.com/patchwave/patchwave/services/catalog/internal/feeds"
	"github.com/patchwave/patchwave/services/catalog/internal/ports"
)

// Name is the catalog's service name.
const Name = "catalog"

// Source kinds.
const (
	KindDir          = "dir"
	KindHTTP         = "http"
	KindS3           = "s3"
	KindCSAFProvider = "csaf-provider"
)

// Source configures one vendor feed.
type Source struct {
	// Name, ^[a-z0-9][a-z0-9-]{0,62}$. Required.
	Name string
	// Vendor, for people. Optional.
	Vendor string
	// Kind: "dir", "http", "s3" or "csaf-provider". Required.
	Kind string
	// Format of the documents: "csaf", "osv", "updateinfo", "cvrf"; empty detects each.
	// Optional.
	Format string
	// Dir is the directory of a "dir" source. Required for it.
	Dir string
	// URLs of an "http" source, one document each. Required for it.
	URLs []string
	// Provider of a "csaf-provider" source: the https URL of its provider-metadata.json, or
	// its domain. Required for it.
	Provider string
	// S3 locates an "s3" source. Required for it.
	S3 S3Location
	// Interval between polls. Optional, default 24h (daily).
	Interval time.Duration
}

// S3Location is a bucket prefix and how to reach it.
type S3Location struct {
	// Bucket. Required.
	Bucket string
	// Prefix of the objects. Optional.
	Prefix string
	// Region. Optional, default us-east-1.
	Region string
	// Endpoint, for an S3-compatible service. Optional, default AWS.
	Endpoint string
	// UsePathStyle addresses the bucket in the path (most S3-compatible services). Optional.
	UsePathStyle bool
	// AccessKeyID and SecretAccessKey; empty uses the SDK's default credential chain.
	// Optional. The secret is masked in logs.
	AccessKeyID     string
	SecretAccessKey string
}

// Config configures the catalog.
type Config struct {
	// Sources are the vendor feeds to poll. Optional, default none (documents can still be
	// imported over the API).
	Sources []Source
	// EvaluateInterval is how often the auto-approval rules and the tenants' auto-approve
	// policies are applied (besides after every ingest and change). Optional, default 1h.
	EvaluateInterval time.Duration
	// RetryBackoff is the first delay before a failed source is polled again; it doubles up
	// to the source's interval. Optional, default 1 minute.
	RetryBackoff time.Duration
	// KVReplicas of the catalog's KV buckets. Optional, default 1; 3 on a JetStream cluster.
	KVReplicas int
	// KVStorage of the buckets. Optional, default file.
	KVStorage jetstream.StorageType
}

func (c *Config) setDefaults() {
	if c.EvaluateInterval == 0 {
		c.EvaluateInterval = time.Hour
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Minute
	}
	if c.KVReplicas == 0 {
		c.KVReplicas = 1
	}
}

// Validate reports every problem with the configuration, naming the field and index.
func (c Config) Validate() error {
	var errs []error
	for i, s := range c.Sources {
		f := fmt.Sprintf("Sources[%d]", i)
		switch s.Kind {
		case KindDir:
			if s.Dir == "" {
				errs = append(errs, fmt.Errorf("%s.Dir: required for a dir source", f))
			}
		case KindHTTP:
			if len(s.URLs) == 0 {
				errs = append(errs, fmt.Errorf("%s.URLs: at least one URL is required for an http source", f))
			}
			for j, u := range s.URLs {
				if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
					errs = append(errs, fmt.Errorf("%s.URLs[%d] %q: must be an http(s) URL", f, j, u))
				}
			}
		case KindS3:
			if s.S3.Bucket == "" {
				errs = append(errs, fmt.Errorf("%s.S3.Bucket: required for an s3 source", f))
			}
		case KindCSAFProvider:
			if s.Provider == "" {
				errs = append(errs, fmt.Errorf("%s.Provider: required for a csaf-provider source (https URL of provider-metadata.json, or a domain)", f))
			}
		default:
			errs = append(errs, fmt.Errorf("%s.Kind %q: must be dir, http, s3 or csaf-provider", f, s.Kind))
		}
		if _, err := advisory.ParseFormat(s.Format); err != nil {
			errs = append(errs, fmt.Errorf("%s.Format: %w", f, err))
		}
	}
	if c.EvaluateInterval < 0 || c.RetryBackoff < 0 {
		errs = append(errs, errors.New("EvaluateInterval, RetryBackoff: must not be negative"))
	}
	if c.KVReplicas < 0 || c.KVReplicas > 5 {
		errs = append(errs, fmt.Errorf("KVReplicas %d: must be from 1 to 5", c.KVReplicas))
	}
	return errors.Join(errs...)
}

// TenantChecker says whether a tenant exists.
type TenantChecker = app.TenantChecker

// Clock is the catalog's time (polls, rules, auto-approvals).
type Clock = feeds.Clock

// Deps are the catalog's collaborators.
type Deps struct {
	// Logger. Optional, default discards. The caller names the service in it (obs.NewLogger).
	Logger *slog.Logger
	// Clock. Optional, default the wall clock.
	Clock Clock
	// HTTPClient fetches HTTP and CSAF sources. Optional, default a client with a 60s timeout.
	HTTPClient *http.Client
	// S3 is the S3 client of s3 sources. Optional, default one built from each source's
	// S3Location.
	S3 feeds.S3API
	// Tenants says which tenants exist. Optional, default a watch of the service design
	// (libs/design) on the bus's JetStream: approvals of an unknown tenant are NotFound.
	Tenants TenantChecker
	// Registerer gets the catalog's metrics. Optional, default the host's (the bus's).
	Registerer prometheus.Registerer
}

// Service is the catalog. It implements host.Component, host.GRPCRegistrar, host.Runner and
// host.Readiness.
type Service struct {
	cfg    Config
	deps   Deps
	app    *app.App
	poller *feeds.Poller
	design *design.View // nil when Deps.Tenants is given
}

// New checks cfg and deps and returns the catalog. The KV buckets are opened in Register.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("catalog config: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Clock == nil {
		deps.Clock = feeds.RealClock{}
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	return &Service{cfg: cfg, deps: deps}, nil
}

// Name returns "catalog".
func (s *Service) Name() string { return Name }

// Register opens the KV buckets and adds the catalog's projection to b.
func (s *Service) Register(b *bus.Bus) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := app.OpenStores(ctx, b.JetStream(), s.cfg.KVReplicas, s.cfg.KVStorage)
	if err != nil {
		return err
	}
	tenants := s.deps.Tenants
	if tenants == nil {
		if s.design, err = design.NewView(design.ViewConfig{JetStream: b.JetStream(), Logger: s.deps.Logger}); err != nil {
			return err
		}
		tenants = s.design
	}
	s.app = app.New(st, b, tenants, s.deps.Logger, s.deps.Clock.Now)
	fs, err := s.feeds()
	if err != nil {
		return err
	}
	reg := s.deps.Registerer
	if reg == nil {
		reg = b.Registerer()
	}
	s.poller, err = feeds.NewPoller(feeds.Config{Feeds: fs, RetryBackoff: s.cfg.RetryBackoff}, s.app, b, s.deps.Clock, s.deps.Logger, reg)
	if err != nil {
		return fmt.Errorf("catalog sources: %w", err)
	}
	for _, p := range ports.Projections(s.app, st.Ready) {
		if err := b.Project(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) feeds() ([]feeds.Feed, error) {
	out := make([]feeds.Feed, 0, len(s.cfg.Sources))
	for _, src := range s.cfg.Sources {
		f := feeds.Feed{Name: src.Name, Vendor: src.Vendor, Kind: src.Kind, Format: advisory.Format(src.Format), Interval: src.Interval}
		switch src.Kind {
		case KindDir:
			f.Location, f.Source = src.Dir, &feeds.Dir{Path: src.Dir}
		case KindHTTP:
			f.Location, f.Source = strings.Join(src.URLs, " "), &feeds.HTTP{URLs: src.URLs, Client: s.deps.HTTPClient}
		case KindCSAFProvider:
			f.Location, f.Source = src.Provider, &feeds.CSAFProvider{Provider: src.Provider, Client: s.deps.HTTPClient, Log: s.deps.Logger}
		case KindS3:
			client := s.deps.S3
			if client == nil {
				client = newS3Client(src.S3, s.deps.HTTPClient)
			}
			f.Location = "s3://" + src.S3.Bucket + "/" + src.S3.Prefix
			f.Source = &feeds.S3{Client: client, Bucket: src.S3.Bucket, Prefix: src.S3.Prefix}
		}
		out = append(out, f)
	}
	return out, nil
}

func newS3Client(l S3Location, hc *http.Client) *s3.Client {
	o := s3.Options{Region: l.Region, UsePathStyle: l.UsePathStyle, HTTPClient: hc}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if l.Endpoint != "" {
		o.BaseEndpoint = aws.String(l.Endpoint)
	}
	if l.AccessKeyID != "" {
		o.Credentials = credentials.NewStaticCredentialsProvider(l.AccessKeyID, l.SecretAccessKey, "")
	}
	return s3.New(o)
}

// RegisterGRPC registers CatalogService on srv.
func (s *Service) RegisterGRPC(srv grpc.ServiceRegistrar) {
	catalogv1.RegisterCatalogServiceServer(srv, ports.NewGRPCServer(s.app, s.poller))
}

// Run mirrors the KV buckets, polls the sources and applies rules and auto-approve policies on
// the clock, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.app.Stores().Run(gctx) })
	if s.design != nil {
		g.Go(func() error { return s.design.Run(gctx) })
	}
	g.Go(func() error {
		if !s.loaded(gctx) {
			return nil
		}
		return s.poller.Run(gctx)
	})
	g.Go(func() error { return s.evaluate(gctx) })
	return g.Wait()
}

// evaluate applies the rules and policies every EvaluateInterval, and at the moment the next
// auto-approval falls due.
func (s *Service) evaluate(ctx context.Context) error {
	if !s.loaded(ctx) {
		return nil
	}
	for {
		certified, err := s.app.ApplyRules(ctx)
		if err != nil && ctx.Err() == nil {
			s.deps.Logger.WarnContext(ctx, "auto-approval rules", "error", err)
		}
		approved, err := s.app.AutoApprove(ctx)
		if err != nil && ctx.Err() == nil {
			s.deps.Logger.WarnContext(ctx, "auto-approve policies", "error", err)
		}
		// An evaluation that made progress may go again soon; one that made none (something due
		// keeps failing) waits a minute before it retries.
		gap := time.Second
		if certified+approved == 0 {
			gap = min(time.Minute, s.cfg.EvaluateInterval)
		}
		if !s.sleep(ctx, s.deps.Clock.Now().Add(gap)) {
			return nil
		}
	}
}

// sleep waits until the evaluation interval passes or the next rule or policy falls due (but
// not before notBefore), recomputing that moment whenever the catalog changes; false when ctx is
// done.
func (s *Service) sleep(ctx context.Context, notBefore time.Time) bool {
	for {
		now := s.deps.Clock.Now()
		wait := s.cfg.EvaluateInterval
		for _, next := range []time.Time{s.app.NextAutoApproval(), s.app.NextRuleDue()} {
			if !next.IsZero() {
				wait = min(wait, next.Sub(now))
			}
		}
		wait = max(wait, notBefore.Sub(now), 0)
		select {
		case <-ctx.Done():
			return false
		case <-s.deps.Clock.After(wait):
			return true
		case <-s.app.Changed():
		}
	}
}

// loaded waits for the read models; false when ctx ended first.
func (s *Service) loaded(ctx context.Context) bool {
	return s.app.Stores().Ready(ctx) == nil
}

// Ready reports whether the catalog's read models are loaded.
func (s *Service) Ready(ctx context.Context) error {
	if s.app == nil {
		return errors.New("catalog: not registered")
	}
	return s.app.Stores().Ready(ctx)
}
