// Package app is the catalog's application layer: applying published baselines to the read
// model, publishing the configured baselines the stream does not hold yet, and the queries the
// API serves.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/patchwave/patchwave/services/catalog/internal/domain"
)

// Publisher publishes BaselinePublished events.
type Publisher interface {
	PublishBaselines(ctx context.Context, bs ...domain.Baseline) error
}

// App is the catalog's use cases.
type App struct {
	repo       domain.Repository
	log        *slog.Logger
	now        func() time.Time
	configured []domain.Baseline
}

// New returns the catalog application over repo. configured are the baselines the catalog
// publishes when the stream does not hold them yet; they must be valid.
func New(repo domain.Repository, log *slog.Logger, now func() time.Time, configured []domain.Baseline) *App {
	return &App{repo: repo, log: log, now: now, configured: configured}
}

// Checkpoint returns the stream sequence the read model has applied up to.
func (a *App) Checkpoint(ctx context.Context) (uint64, error) { return a.repo.Checkpoint(ctx) }

// ApplyPublished records a published baseline, the event at stream sequence seq. Applying the
// same event twice changes nothing. An invalid baseline is refused with an error wrapping
// domain.ErrInvalid; it can never be applied.
func (a *App) ApplyPublished(ctx context.Context, b domain.Baseline, seq uint64) error {
	if err := b.Validate(); err != nil {
		return domain.Invalid(fmt.Errorf("baseline %q: %w", b.ID, err))
	}
	if err := a.repo.Put(ctx, b); err != nil {
		return err
	}
	if seq > 0 {
		if err := a.repo.SetCheckpoint(ctx, seq); err != nil {
			return err
		}
	}
	return nil
}

// PublishConfigured publishes each configured baseline the read model does not hold, so a
// restart publishes nothing again. It must run once the read model has caught up with the
// stream. A configured baseline whose id is already published with other content is left as
// published (baselines are immutable) and logged.
func (a *App) PublishConfigured(ctx context.Context, pub Publisher) error {
	var missing []domain.Baseline
	for _, b := range a.configured {
		have, err := a.repo.Get(ctx, b.ID)
		switch {
		case err == nil:
			if !sameContent(have, b) {
				a.log.WarnContext(ctx, "configured baseline differs from the published one; baselines are immutable, publish a new id instead",
					"baseline_id", b.ID, "published_version", have.Version, "configured_version", b.Version)
			}
			continue
		case isNotFound(err):
		default:
			return err
		}
		b.PublishedAt = a.now().UTC()
		missing = append(missing, b)
	}
	if len(missing) == 0 {
		return nil
	}
	if err := pub.PublishBaselines(ctx, missing...); err != nil {
		return fmt.Errorf("publish configured baselines: %w", err)
	}
	// The projection applies the events too; storing them now makes them visible at once.
	for _, b := range missing {
		if err := a.repo.Put(ctx, b); err != nil {
			return err
		}
		a.log.InfoContext(ctx, "baseline published", "baseline_id", b.ID, "os_family", b.OSFamily,
			"version", b.Version, "patches", len(b.Patches))
	}
	return nil
}

// ListBaselines returns every published baseline, newest first.
func (a *App) ListBaselines(ctx context.Context) ([]domain.Baseline, error) {
	return a.repo.List(ctx)
}

// GetBaseline returns one published baseline; an invalid id wraps domain.ErrInvalid and an
// unknown one domain.ErrNotFound.
func (a *App) GetBaseline(ctx context.Context, id string) (domain.Baseline, error) {
	if err := domain.ValidateID(id); err != nil {
		return domain.Baseline{}, err
	}
	return a.repo.Get(ctx, id)
}

func sameContent(a, b domain.Baseline) bool {
	if a.OSFamily != b.OSFamily || a.Version != b.Version || len(a.Patches) != len(b.Patches) {
		return false
	}
	for i := range a.Patches {
		p, q := a.Patches[i], b.Patches[i]
		if p.ID != q.ID || p.Vendor != q.Vendor || p.Title != q.Title || p.OSFamily != q.OSFamily ||
			p.Severity != q.Severity || p.Classification != q.Classification ||
			p.RebootRequired != q.RebootRequired || !slices.Equal(p.CVEs, q.CVEs) {
			return false
		}
	}
	return true
}

func isNotFound(err error) bool { return errors.Is(err, domain.ErrNotFound) }
