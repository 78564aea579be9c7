// Package catalog is Patchwave's patch catalog. For now it serves certified baselines: it
// publishes the baselines it is configured with (catalog.baseline.published, once per baseline
// id, so restarts publish nothing again), projects every published baseline into a read model,
// and answers CatalogService (ListBaselines, GetBaseline) from it. Vendor feeds, certification
// and tenant approvals come later.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/store"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/buspub"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/storerepo"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/ports"
)

// Name is the catalog's service name.
const Name = "catalog"

// Baseline is a certified, immutable, versioned set of patches for one OS family.
type Baseline = domain.Baseline

// Patch is one normalized vendor patch.
type Patch = domain.Patch

// Config configures the catalog.
type Config struct {
	// Baselines are published at start unless the stream already holds their ids. Each needs an
	// ID matching ^[a-z0-9][a-z0-9.-]{0,62}$, an OSFamily, a Version from 1 and at least one
	// patch, patch ids unique; a patch with no OSFamily gets the baseline's. Optional, default
	// DemoBaselines(); an empty non-nil slice publishes nothing.
	Baselines []Baseline
}

func (c *Config) setDefaults() {
	if c.Baselines == nil {
		c.Baselines = DemoBaselines()
	}
	bs := make([]Baseline, len(c.Baselines))
	for i, b := range c.Baselines {
		b.Patches = slices.Clone(b.Patches)
		for j := range b.Patches {
			if b.Patches[j].OSFamily == "" {
				b.Patches[j].OSFamily = b.OSFamily
			}
		}
		bs[i] = b
	}
	c.Baselines = bs
}

// Validate reports every problem with the configuration, naming the field and index
// (e.g. "Baselines[0].Patches[2].ID").
func (c Config) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i, b := range c.Baselines {
		if err := b.Validate(); err != nil {
			errs = append(errs, prefixErrors(fmt.Sprintf("Baselines[%d].", i), err)...)
		}
		if j, dup := seen[b.ID]; dup {
			errs = append(errs, fmt.Errorf("Baselines[%d].ID %q: duplicate of Baselines[%d]", i, b.ID, j))
		} else {
			seen[b.ID] = i
		}
	}
	return errors.Join(errs...)
}

// prefixErrors prefixes each error joined in err with prefix.
func prefixErrors(prefix string, err error) []error {
	var out []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			out = append(out, fmt.Errorf("%s%w", prefix, e))
		}
		return out
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}

// Deps are the catalog's collaborators.
type Deps struct {
	// Store holds the baseline read model (rebuilt from the stream). Required.
	Store store.Store
	// Logger. Optional, default discards. The caller names the service in it (obs.NewLogger).
	Logger *slog.Logger
	// Clock stamps the publication time of configured baselines. Optional, default time.Now.
	Clock func() time.Time
}

// Service is the catalog. It implements host.Component and host.GRPCRegistrar.
type Service struct {
	app *app.App
}

// New checks cfg and deps and returns the catalog.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.Store == nil {
		errs = append(errs, errors.New("Deps.Store: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("catalog config: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	return &Service{
		app: app.New(storerepo.New(deps.Store), deps.Logger, deps.Clock, cfg.Baselines),
	}, nil
}

// Name returns "catalog".
func (s *Service) Name() string { return Name }

// Register adds the baseline projection to b; once it has caught up, the configured baselines
// missing from the stream are published on b.
func (s *Service) Register(b *bus.Bus) error {
	return b.Project(ports.Projection(s.app, buspub.New(b)))
}

// RegisterGRPC registers CatalogService on srv.
func (s *Service) RegisterGRPC(srv grpc.ServiceRegistrar) {
	catalogv1.RegisterCatalogServiceServer(srv, ports.NewGRPCServer(s.app))
}

// Baselines returns every published baseline the read model holds, newest first.
func (s *Service) Baselines(ctx context.Context) ([]Baseline, error) {
	return s.app.ListBaselines(ctx)
}

// DemoBaselines returns the demo catalog: one Amazon Linux 2023 baseline with a critical
// OpenSSL fix, a kernel fix that needs a reboot, a bug fix and an enhancement.
func DemoBaselines() []Baseline {
	const family = "amazon-linux-2023"
	const vendor = "Amazon Linux"
	return []Baseline{{
		ID:       "al2023-2026.11",
		OSFamily: family,
		Version:  1,
		Patches: []Patch{
			{
				ID: "ALAS2023-2026-1001", Vendor: vendor, OSFamily: family,
				Title:          "Critical: openssl security update (buffer overread in X.509 name constraint checks)",
				Severity:       typesv1.Severity_SEVERITY_CRITICAL,
				Classification: typesv1.Classification_CLASSIFICATION_SECURITY,
				CVEs:           []string{"CVE-2026-21430", "CVE-2026-21431"},
			},
			{
				ID: "ALAS2023-2026-1007", Vendor: vendor, OSFamily: family,
				Title:          "Important: kernel security update (use-after-free in netfilter nf_tables)",
				Severity:       typesv1.Severity_SEVERITY_HIGH,
				Classification: typesv1.Classification_CLASSIFICATION_SECURITY,
				CVEs:           []string{"CVE-2026-23112"},
				RebootRequired: true,
			},
			{
				ID: "ALBA2023-2026-0412", Vendor: vendor, OSFamily: family,
				Title:          "systemd bug fix update (journald leaks memory on log rotation)",
				Severity:       typesv1.Severity_SEVERITY_LOW,
				Classification: typesv1.Classification_CLASSIFICATION_BUGFIX,
			},
			{
				ID: "ALEA2023-2026-0088", Vendor: vendor, OSFamily: family,
				Title:          "amazon-ssm-agent enhancement update to 3.3.1957.0",
				Severity:       typesv1.Severity_SEVERITY_UNSPECIFIED,
				Classification: typesv1.Classification_CLASSIFICATION_ENHANCEMENT,
			},
		},
	}}
}
