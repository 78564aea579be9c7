// Package app is the scheduler's application layer: the StartRun command and the run controls
// (cancel, pause, resume, re-run failed), the GetRun, ListRuns and ListRunJobs queries, the
// projections that keep the read models (baselines, runs), and the run controller that
// releases jobs under each run's rollout limits. It talks to the outside through
// domain.Repository, provider.Fleet and a Publisher.
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
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// Projection names; they also name the checkpoints in the repository.
const (
	ProjectionBaselines = "baselines"
	ProjectionRuns      = "runs"
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
	// Policy is the job policy of a run whose wave's rollout policy leaves a part unset.
	Policy *typesv1.JobPolicy
	// Tick is how often the controller looks at every open run even without news (the dispatch
	// stop, a lost release); default 250ms.
	Tick time.Duration
}

// DesignScope is what runs take from the service design (Designs implements it): whether a
// tenant exists, and the wave tag key of a wave that may run.
type DesignScope interface {
	// RunScope checks the tenant (apierr.ErrNotFound), the wave against the tenant's limit
	// (invalid argument) and its definition (failed precondition), and returns the tag key.
	RunScope(ctx context.Context, tenant string, wave int32) (string, error)
	// RequireTenant returns apierr.ErrNotFound for a tenant that is not in the design.
	RequireTenant(ctx context.Context, tenant string) error
	// WavePolicy returns the wave's rollout policy (or the tenant's default; nil for none).
	WavePolicy(ctx context.Context, tenant string, wave int32) (*typesv1.RolloutPolicy, error)
	// Window returns the wave's window open at now (its end and any freeze starting inside
	// it); nil when none is open.
	Window(ctx context.Context, tenant string, wave int32, now time.Time) (*domain.Window, error)
}

// Deps are the application's collaborators.
type Deps struct {
	Fleet  provider.Fleet
	Design DesignScope
	Repo   domain.Repository
	Logger *slog.Logger
	Clock  func() time.Time
	// Random feeds new run ids. Optional, default crypto/rand.
	Random io.Reader
}

// Application runs the scheduler's commands, queries, projections and handlers.
type Application struct {
	cfg    Config
	fleet  provider.Fleet
	design DesignScope
	repo   domain.Repository
	log    *slog.Logger
	clock  func() time.Time
	rand   io.Reader

	mu  sync.Mutex
	pub Publisher

	baselinesReady chan struct{}
	runsReady      chan struct{}
	baselinesOnce  sync.Once
	runsOnce       sync.Once

	// firing, when set (NewFiring), adds the firing's views to GetRun and ListRuns.
	firing *Firing
	ctl    *controller
}

// New returns the application.
func New(cfg Config, d Deps) *Application {
	if d.Random == nil {
		d.Random = rand.Reader
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	return &Application{
		cfg: cfg, fleet: d.Fleet, design: d.Design, repo: d.Repo, log: d.Logger, clock: d.Clock, rand: d.Random,
		baselinesReady: make(chan struct{}), runsReady: make(chan struct{}), ctl: newController(),
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

// StartRun starts a run of one wave: it pins the newest published baseline of every OS family
// (or the named one for its family), resolves the membership by tag (every instance tagged
// into the wave, stopped ones included) and the rollout limits, and publishes the membership
// in chunks, then RunStarted (and RunCompleted at once when nothing is eligible). The tenant
// must be in the design and the wave defined there. With a request id the run id is derived
// from it, and a repeat returns the run already started.
func (a *Application) StartRun(ctx context.Context, cmd domain.StartRun) (domain.Run, error) {
	if err := cmd.Validate(design.MaxWaveLimit); err != nil {
		return domain.Run{}, err
	}
	tagKey, err := a.design.RunScope(ctx, cmd.Tenant, cmd.Wave)
	if err != nil {
		return domain.Run{}, err
	}
	if _, err := a.waitReady(ctx); err != nil {
		return domain.Run{}, err
	}
	runID := cmd.RunID
	if runID == "" && cmd.RequestID != "" {
		runID = domain.RunIDForRequest(cmd.Tenant, cmd.Wave, cmd.RequestID)
	}
	if runID != "" {
		r, ok, err := a.repo.Run(ctx, cmd.Tenant, runID)
		if err != nil {
			return domain.Run{}, err
		}
		if ok {
			return r, nil
		}
	}
	pins := cmd.Pins
	if len(pins) == 0 {
		pins, err = a.resolvePins(ctx, cmd.BaselineID)
	}
	if err != nil {
		return domain.Run{}, err
	}
	members, err := a.discover(ctx, cmd.Tenant, tagKey, cmd.Wave, pins)
	if err != nil {
		return domain.Run{}, err
	}
	return a.Start(ctx, StartSpec{Tenant: cmd.Tenant, RunID: runID, Wave: cmd.Wave, Pins: pins, Members: members, Window: cmd.Window, Firing: cmd.Firing})
}

func (a *Application) resolvePins(ctx context.Context, id string) ([]domain.Pin, error) {
	published, err := a.repo.Baselines(ctx)
	if err != nil {
		return nil, err
	}
	return domain.ResolvePins(id, published)
}

// discover returns every instance tagged into the wave, in every account and region of the
// tenant, page by page, each once, sorted by instance id, with its status: stopped, without an
// agent, without a pinned baseline for its OS family, or eligible. None is dropped.
func (a *Application) discover(ctx context.Context, tenant, tagKey string, wave int32, pins []domain.Pin) ([]*typesv1.Member, error) {
	pinned := map[string]bool{}
	for _, p := range pins {
		pinned[p.OSFamily] = true
	}
	seen := map[string]bool{}
	var members []*typesv1.Member
	err := a.fleet.DiscoverInstances(ctx, provider.DiscoverQuery{
		Tenant: tenant, TagKey: tagKey, TagValue: strconv.Itoa(int(wave)), IncludeStopped: true,
	}, func(page []provider.Instance) error {
		for _, in := range page {
			if seen[in.ID] {
				continue
			}
			seen[in.ID] = true
			m := &typesv1.Member{
				InstanceId: in.ID, Location: &typesv1.Location{Account: in.Account, Region: in.Region},
				OsFamily: in.OSFamily, Status: typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE,
			}
			switch {
			case in.State != provider.InstanceRunning:
				m.Status = typesv1.MemberStatus_MEMBER_STATUS_STOPPED
			case in.Agent == provider.AgentNone:
				m.Status = typesv1.MemberStatus_MEMBER_STATUS_NO_AGENT
			case !pinned[in.OSFamily]:
				m.Status = typesv1.MemberStatus_MEMBER_STATUS_NO_BASELINE
			}
			members = append(members, m)
		}
		return nil
	})
	if err != nil {
		if provider.IsRetryable(err) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: discover instances: %w", domain.ErrUnavailable, err)
		}
		if errors.Is(err, provider.ErrNotFound) {
			return nil, fmt.Errorf("%w: discover instances: %w", domain.ErrFailedPrecondition, err)
		}
		return nil, fmt.Errorf("discover instances: %w", err)
	}
	slices.SortFunc(members, func(x, y *typesv1.Member) int { return strings.Compare(x.GetInstanceId(), y.GetInstanceId()) })
	return members, nil
}

// GetRun returns one run with its progress.
func (a *Application) GetRun(ctx context.Context, ref domain.RunRef) (domain.Run, error) {
	if err := ref.Validate(); err != nil {
		return domain.Run{}, err
	}
	if err := a.design.RequireTenant(ctx, ref.Tenant); err != nil {
		return domain.Run{}, err
	}
	if _, err := a.waitReady(ctx); err != nil {
		return domain.Run{}, err
	}
	r, ok, err := a.repo.Run(ctx, ref.Tenant, ref.RunID)
	if err == nil && a.firing != nil {
		r, ok, err = a.firing.merge(ctx, ref.Tenant, ref.RunID, r, ok)
	}
	if err != nil {
		return domain.Run{}, err
	}
	if !ok {
		return domain.Run{}, fmt.Errorf("%w: run %s of tenant %s", domain.ErrNotFound, ref.RunID, ref.Tenant)
	}
	return r, nil
}

// ListRuns returns a tenant's runs, newest first; apierr.ErrNotFound for a tenant that is not
// in the service design.
func (a *Application) ListRuns(ctx context.Context, tenant string) ([]domain.Run, error) {
	if err := domain.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	if err := a.design.RequireTenant(ctx, tenant); err != nil {
		return nil, err
	}
	if _, err := a.waitReady(ctx); err != nil {
		return nil, err
	}
	runs, err := a.repo.Runs(ctx, tenant)
	if err == nil && a.firing != nil {
		runs, err = a.firing.mergeList(ctx, tenant, runs)
	}
	return runs, err
}

// completedEvent builds the RunCompleted event of a run; its key is the run id, so every
// replica and every retry publishes the same event, which the stream stores once.
func (a *Application) completedEvent(r domain.Run, c domain.Completion, now time.Time) (*events.Event, error) {
	ev, err := events.New(r.Tenant, r.ID, &eventsv1.RunCompleted{
		Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, State: c.State,
		Total: int32(c.Total), Succeeded: int32(c.Succeeded), Failed: int32(c.Failed), TimedOut: int32(c.TimedOut),
		CompletedAt: timestamppb.New(now), Skipped: int32(c.Skipped), Missed: int32(c.Missed), SnapshotFailed: int32(c.SnapshotFailed),
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
