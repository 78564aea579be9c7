package reporting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/store"
)

// RebuildGCPercent is the GOGC the rebuild command runs with: a replay allocates a lot and
// keeps little, so collecting less often saves CPU for the replay.
const RebuildGCPercent = 400

// RebuildConfig is what Rebuild needs.
type RebuildConfig struct {
	// Conn is a NATS connection of the reporting user. Required.
	Conn *nats.Conn
	// Store is the reporting store (the running service's). Required.
	Store store.Store
	// Logger. Optional.
	Logger *slog.Logger
}

// RebuildStats says what a rebuild did.
type RebuildStats struct {
	// Events is how many stream events the compliance projection read.
	Events int
	// Took is how long the replay took.
	Took time.Duration
	// Reapplied is how many of the replay's commits did not apply (a timeout, say) and had
	// their events applied again: each costs a batch's work twice and a wait.
	Reapplied int
}

// Rebuild replays the streams into fresh read models: it deletes every "reporting:" key of the
// store and runs the projections (compliance, baselines, audit) from the start of the streams
// until they have caught up, then returns. A reporting service may keep running on the same
// store meanwhile: its compliance batches are guarded by the checkpoint, so it notices the
// emptied store and goes on from the rebuilt one; the baselines and audit projections of the
// rebuild read their streams from the start whatever checkpoint the running service wrote
// since the flush.
func Rebuild(ctx context.Context, cfg RebuildConfig) (RebuildStats, error) {
	if cfg.Conn == nil || cfg.Store == nil {
		return RebuildStats{}, errors.New("reporting rebuild: Conn and Store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	start := time.Now()
	if err := cfg.Store.FlushPrefix(ctx, "reporting:"); err != nil {
		return RebuildStats{}, fmt.Errorf("reporting rebuild: flush: %w", err)
	}
	svc, err := New(Config{DailyScanAt: "off"}, Deps{Store: cfg.Store, Logger: cfg.Logger})
	if err != nil {
		return RebuildStats{}, err
	}
	svc.fromStart = true
	b, err := bus.New(ctx, bus.Config{Service: Name, Conn: cfg.Conn, Logger: cfg.Logger})
	if err != nil {
		return RebuildStats{}, fmt.Errorf("reporting rebuild: %w", err)
	}
	if err := svc.Register(b); err != nil {
		return RebuildStats{}, fmt.Errorf("reporting rebuild: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	select {
	case <-b.Running(): // every projection has caught up
	case err := <-done:
		return RebuildStats{}, fmt.Errorf("reporting rebuild: %w", err)
	case <-ctx.Done():
		return RebuildStats{}, ctx.Err()
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return RebuildStats{}, fmt.Errorf("reporting rebuild: %w", err)
	}
	return RebuildStats{Events: svc.app.Applied(), Took: took, Reapplied: svc.app.Reapplied()}, nil
}
