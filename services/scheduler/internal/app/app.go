// Package app is the scheduler's application layer: the StartRun command, the GetRun and
// ListRuns queries, the projections that keep the read models (baselines, runs, job marks) and
// the RequestJobsOnRunStarted handler. It talks to the outside through domain.Repository,
// provider.Fleet and a Publisher.
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// Projection names; they also name the checkpoints in the repository.
const (
	ProjectionBaselines = "baselines"
	ProjectionRuns      = "runs"
	ProjectionJobMarks  = "job-marks"
)

// readyWait bounds how long a call waits for the read models to catch up before it answers
// Unavailable.
const readyWait = 5 * time.Second

// Publisher stores events on the bus.
type Publisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// Config is the application's configuration; the public package validates it.
type Config struct {
	TagKey          string
	MaxWaves        int
	MaxRunInstances int
}

// Deps are the application's collaborators.
type Deps struct {
	Fleet  provider.Fleet
	Repo   domain.Repository
	Marks  *idem.Marks
	Logger *slog.Logger
	Clock  func() time.Time
	// Random feeds new run ids. Optional, default crypto/rand.
	Random io.Reader
}

// Application runs the scheduler's commands, queries, projections and handlers.
type Application struct {
	cfg   Config
	fleet provider.Fleet
	repo  domain.Repository
	marks *idem.Marks
	log   *slog.Logger
	clock func() time.Time
	rand  io.Reader

	mu  sync.Mutex
	pub Publisher

	baselinesReady chan struct{}
	runsReady      chan struct{}
	baselinesOnce  sync.Once
	runsOnce       sync.Once
}

// New returns the application.
func New(cfg Config, d Deps) *Application {
	if d.Random == nil {
		d.Random = rand.Reader
	}
	return &Application{
		cfg: cfg, fleet: d.Fleet, repo: d.Repo, marks: d.Marks, log: d.Logger, clock: d.Clock, rand: d.Random,
		baselinesReady: make(chan struct{}), runsReady: make(chan struct{}),
	}
}

// Attach sets the publisher (the bus); commands answer Unavailable until it is set.
func (a *Application) Attach(p Publisher) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pub = p
}

func (a *Application) publisher() Publisher {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pub
}

// waitReady waits until the baselines and runs read models have caught up with the stream, so
// a query never answers from a half-built model.
func (a *Application) waitReady(ctx context.Context) (Publisher, error) {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	for _, ch := range []chan struct{}{a.baselinesReady, a.runsReady} {
		select {
		case <-ch:
		case <-t.C:
			return nil, fmt.Errorf("%w: the scheduler is still catching up with the event stream", domain.ErrUnavailable)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", domain.ErrUnavailable, ctx.Err())
		}
	}
	p := a.publisher()
	if p == nil {
		return nil, fmt.Errorf("%w: the scheduler is not connected to the bus", domain.ErrUnavailable)
	}
	return p, nil
}

// StartRun starts a run of one wave: it pins a baseline, discovers the running instances tagged
// into the wave and publishes RunStarted (and RunCompleted at once when there are none).
// With a request id the run id is derived from it, and a repeat returns the run already started.
func (a *Application) StartRun(ctx context.Context, cmd domain.StartRun) (domain.Run, error) {
	if err := cmd.Validate(a.cfg.MaxWaves); err != nil {
		return domain.Run{}, err
	}
	pub, err := a.waitReady(ctx)
	if err != nil {
		return domain.Run{}, err
	}
	var runID string
	if cmd.RequestID != "" {
		runID = domain.RunIDForRequest(cmd.Tenant, cmd.Wave, cmd.RequestID)
		r, ok, err := a.repo.Run(ctx, cmd.Tenant, runID)
		if err != nil {
			return domain.Run{}, err
		}
		if ok {
			return r, nil
		}
	}
	baseline, err := a.resolveBaseline(ctx, cmd.BaselineID)
	if err != nil {
		return domain.Run{}, err
	}
	instances, err := a.discover(ctx, cmd.Tenant, cmd.Wave)
	if err != nil {
		return domain.Run{}, err
	}
	if len(instances) > a.cfg.MaxRunInstances {
		return domain.Run{}, fmt.Errorf("%w: wave %d of tenant %s has %d running instances, more than one run takes (%d); chunked runs are not implemented yet",
			domain.ErrFailedPrecondition, cmd.Wave, cmd.Tenant, len(instances), a.cfg.MaxRunInstances)
	}
	now := a.clock().UTC()
	if runID == "" {
		if runID, err = domain.NewRunID(now, a.rand); err != nil {
			return domain.Run{}, err
		}
	}
	run := domain.Run{
		Tenant: cmd.Tenant, ID: runID, Wave: cmd.Wave, BaselineID: baseline.ID,
		State: typesv1.RunState_RUN_STATE_RUNNING, Total: len(instances), StartedAt: now,
	}
	started, err := events.New(cmd.Tenant, runID, &eventsv1.RunStarted{
		Tenant: cmd.Tenant, RunId: runID, Wave: cmd.Wave, BaselineId: baseline.ID,
		InstanceIds: instances, StartedAt: timestamppb.New(now), PatchIds: baseline.PatchIDs,
	})
	if err != nil {
		return domain.Run{}, fmt.Errorf("run started event: %w", err)
	}
	started.Time = now
	evs := []*events.Event{started}
	if len(instances) == 0 {
		done, err := a.completedEvent(run, domain.Completion{State: typesv1.RunState_RUN_STATE_COMPLETED}, now)
		if err != nil {
			return domain.Run{}, err
		}
		evs = append(evs, done)
		run.State, run.CompletedAt = typesv1.RunState_RUN_STATE_COMPLETED, now
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		return domain.Run{}, fmt.Errorf("%w: publish run %s: %w", domain.ErrUnavailable, runID, err)
	}
	a.log.InfoContext(ctx, "run started", "tenant", cmd.Tenant, "run_id", runID, "wave", cmd.Wave,
		"baseline_id", baseline.ID, "instances", len(instances))
	return run, nil
}

func (a *Application) resolveBaseline(ctx context.Context, id string) (domain.Baseline, error) {
	var published []domain.Baseline
	if id != "" {
		b, ok, err := a.repo.Baseline(ctx, id)
		if err != nil {
			return domain.Baseline{}, err
		}
		if ok {
			published = []domain.Baseline{b}
		}
	} else {
		var err error
		if published, err = a.repo.Baselines(ctx); err != nil {
			return domain.Baseline{}, err
		}
	}
	return domain.ResolveBaseline(id, published)
}

// discover returns the ids of the running instances tagged into the wave, sorted and unique.
func (a *Application) discover(ctx context.Context, tenant string, wave int32) ([]string, error) {
	found, err := a.fleet.DiscoverInstances(ctx, provider.DiscoverQuery{
		Tenant: tenant, TagKey: a.cfg.TagKey, TagValue: strconv.Itoa(int(wave)),
	})
	if err != nil {
		if provider.IsRetryable(err) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: discover instances: %w", domain.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("discover instances: %w", err)
	}
	ids := make([]string, 0, len(found))
	for _, in := range found {
		// The provider returns running instances only; a stopped one is never given a job.
		if in.State == provider.InstanceRunning {
			ids = append(ids, in.ID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// GetRun returns one run with its progress.
func (a *Application) GetRun(ctx context.Context, ref domain.RunRef) (domain.Run, error) {
	if err := ref.Validate(); err != nil {
		return domain.Run{}, err
	}
	if _, err := a.waitReady(ctx); err != nil {
		return domain.Run{}, err
	}
	r, ok, err := a.repo.Run(ctx, ref.Tenant, ref.RunID)
	if err != nil {
		return domain.Run{}, err
	}
	if !ok {
		return domain.Run{}, fmt.Errorf("%w: run %s of tenant %s", domain.ErrNotFound, ref.RunID, ref.Tenant)
	}
	return r, nil
}

// ListRuns returns a tenant's runs, newest first. An unknown tenant has none.
func (a *Application) ListRuns(ctx context.Context, tenant string) ([]domain.Run, error) {
	if err := domain.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	if _, err := a.waitReady(ctx); err != nil {
		return nil, err
	}
	return a.repo.Runs(ctx, tenant)
}

// completedEvent builds the RunCompleted event of a run; its key is the run id, so every
// replica and every retry publishes the same event, which the stream stores once.
func (a *Application) completedEvent(r domain.Run, c domain.Completion, now time.Time) (*events.Event, error) {
	ev, err := events.New(r.Tenant, r.ID, &eventsv1.RunCompleted{
		Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, State: c.State,
		Total: int32(c.Total), Succeeded: int32(c.Succeeded), Failed: int32(c.Failed),
		CompletedAt: timestamppb.New(now),
	})
	if err != nil {
		return nil, fmt.Errorf("run completed event: %w", err)
	}
	ev.Time = now
	return ev, nil
}

// Checkpoint returns the checkpoint reader of the named projection.
func (a *Application) Checkpoint(projection string) func(ctx context.Context) (uint64, error) {
	return func(ctx context.Context) (uint64, error) { return a.repo.Checkpoint(ctx, projection) }
}
