// Package app is the snapshotter's application layer: the TakeSnapshotOnJobRequested handler
// and the TrackSnapshots tracker (start snapshot sets in batches, follow them with batched
// reads), retention (a projection of job outcomes and a sweep that deletes what is due), and
// restores (the RestoreInstance command and its queries, the handler that starts a restore,
// the tracker that follows it, and auto-rollback).
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"

	"github.com/patchwave/patchwave/services/snapshotter/internal/adapters"
)

// Config tunes the application; the service's public Config has set the defaults.
type Config struct {
	// SnapshotTimeout bounds how long a snapshot set may stay pending, from its start.
	SnapshotTimeout time.Duration
	// RestoreTimeout bounds how long a restore may run, from its start.
	RestoreTimeout time.Duration
	// Retention is how long a snapshot set is kept after its job succeeded.
	Retention time.Duration
	// DeleteBatch bounds the deletions of one retention sweep.
	DeleteBatch int
	// Batch tunes the batched CreateSnapshots calls.
	Batch stage.BatcherConfig
	// Publish tunes the batched publishing of the handlers' events.
	Publish stage.BatcherConfig
	// CheckConcurrency bounds the targets a tracker check reads at once.
	CheckConcurrency int
}

// Deps are the application's collaborators.
type Deps struct {
	Fleet provider.Fleet
	Repo  *adapters.Repo
	// Started marks jobs whose snapshot the handler started or failed to start.
	Started *idem.Marks
	// Finished marks jobs with a snapshot outcome (created or failed).
	Finished *idem.Marks
	// RestoresStarted marks restores the handler started or failed to start.
	RestoresStarted *idem.Marks
	// RestoresFinished marks restores with an outcome.
	RestoresFinished *idem.Marks
	Logger           *slog.Logger
	Clock            func() time.Time
	// Random feeds new restore ids. Optional, default crypto/rand.
	Random io.Reader
}

// Application runs the snapshotter's handlers, trackers, projection, sweep and API.
type Application struct {
	cfg  Config
	d    Deps
	log  *slog.Logger
	now  func() time.Time
	snap *stage.Batcher[provider.Target, provider.SnapshotRequest, provider.SnapshotResult]

	mu   sync.Mutex
	pub  stage.EventPublisher
	bpub *stage.Publisher

	ready     chan struct{}
	readyOnce sync.Once
}

// New returns the application.
func New(cfg Config, d Deps) (*Application, error) {
	a := &Application{cfg: cfg, d: d, log: d.Logger, now: d.Clock, ready: make(chan struct{})}
	var err error
	a.snap, err = stage.NewBatcher(cfg.Batch, a.createSnapshots)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Attach sets the publisher (the bus); commands answer Unavailable until it is set.
func (a *Application) Attach(p stage.EventPublisher) error {
	bp, err := stage.NewPublisher(p, a.cfg.Publish)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pub, a.bpub = p, bp
	return nil
}

// publisher returns the bus (for trackers, which publish whole batches) and the batched
// publisher (for handlers).
func (a *Application) publisher() (stage.EventPublisher, *stage.Publisher, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pub == nil {
		return nil, nil, errors.New("snapshotter: not attached to a bus")
	}
	return a.pub, a.bpub, nil
}

// CaughtUp marks the read models ready: the projection has applied what the stream held.
func (a *Application) CaughtUp(context.Context) error {
	a.readyOnce.Do(func() { close(a.ready) })
	return nil
}

// Ready is closed once the read models have caught up with the stream.
func (a *Application) Ready() <-chan struct{} { return a.ready }

// readyWait bounds how long an API call waits for the read models before it answers
// Unavailable.
const readyWait = 5 * time.Second

func (a *Application) waitReady(ctx context.Context) (stage.EventPublisher, error) {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-a.ready:
	case <-t.C:
		return nil, fmt.Errorf("%w: the snapshotter is still catching up with the event stream", apierr.ErrUnavailable)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", apierr.ErrUnavailable, ctx.Err())
	}
	pub, _, err := a.publisher()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", apierr.ErrUnavailable, err)
	}
	return pub, nil
}

// publishAll publishes evs in one call; the events of a tracker's check go out together.
func (a *Application) publishAll(ctx context.Context, evs []*events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	pub, _, err := a.publisher()
	if err != nil {
		return err
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		return fmt.Errorf("publish %d events: %w", len(evs), err)
	}
	return nil
}

// publishBatched publishes a handler's events together with those of concurrent handler calls.
func (a *Application) publishBatched(ctx context.Context, evs ...*events.Event) error {
	_, bp, err := a.publisher()
	if err != nil {
		return err
	}
	return bp.Publish(ctx, evs...)
}
