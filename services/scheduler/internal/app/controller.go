package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// The run controller. Every replica runs one; they need no coordination (see domain's
// dispatch rules): each releases only positions below the Target it computes from the read
// model, which never counts an outcome the stream does not have, so jobs in flight never
// exceed a run's limit, and a position released twice is stored once. The controller is
// driven by outcomes: the runs projection wakes it for the run of every outcome and control
// event; a tick (Config.Tick) looks at every open run anyway, for the dispatch stop and to
// repair a release lost in a crash. Nothing waits idle: a step reads the run's counters,
// publishes what it may, and returns.

// controller is the in-memory side of the run controller: the open runs and what each has
// released as far as this replica knows.
type controller struct {
	mu sync.Mutex
	// runs are the open runs by "<tenant>/<run>".
	runs map[string]*ctlRun
	// dirty are the runs to step at the next wake.
	dirty map[string]bool
	wake  chan struct{}
	cache memberCache
}

// ctlRun is one open run.
type ctlRun struct {
	tenant, id string
	// requested marks the released positions known here (nil until the membership is read);
	// cursor is the lowest position not known released.
	requested []bool
	cursor    int
	// released counts the true entries of requested.
	released int
	m        *membership
	// halted, stopped and completed are set once this replica published the run's RunHalted,
	// RunDispatchStopped or RunCompleted, so it does not publish them again while its read
	// model catches up (the stream would store a repeat once anyway).
	halted, stopped, completed bool
	// lateIDs are released instances seen before the membership was read.
	lateIDs []string
}

func newController() *controller {
	return &controller{runs: map[string]*ctlRun{}, dirty: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// track adds an open run (idempotent) and asks for a step of it.
func (c *controller) track(tenant, runID string) {
	key := tenant + "/" + runID
	c.mu.Lock()
	if c.runs[key] == nil {
		c.runs[key] = &ctlRun{tenant: tenant, id: runID}
	}
	c.dirty[key] = true
	c.mu.Unlock()
	c.signal()
}

// touch asks for a step of a run if it is open.
func (c *controller) touch(tenant, runID string) {
	key := tenant + "/" + runID
	c.mu.Lock()
	_, open := c.runs[key]
	if open {
		c.dirty[key] = true
	}
	c.mu.Unlock()
	if open {
		c.signal()
	}
}

func (c *controller) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// untrack forgets a completed run.
func (c *controller) untrack(tenant, runID string) {
	c.mu.Lock()
	delete(c.runs, tenant+"/"+runID)
	delete(c.dirty, tenant+"/"+runID)
	c.mu.Unlock()
}

// released records a job.requested seen by the projection (index is the job's position).
func (c *controller) released(tenant, runID, instanceID string, index int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cr := c.runs[tenant+"/"+runID]
	if cr == nil {
		return
	}
	if cr.requested == nil {
		cr.lateIDs = append(cr.lateIDs, instanceID)
		return
	}
	if p := cr.m.position(instanceID, index); p >= 0 {
		cr.mark(p)
	}
}

// mark records position p as released; the controller's lock is held.
func (cr *ctlRun) mark(p int) {
	if !cr.requested[p] {
		cr.requested[p] = true
		cr.released++
	}
	for cr.cursor < len(cr.requested) && cr.requested[cr.cursor] {
		cr.cursor++
	}
}

// knownReleased is how many jobs this replica knows were released; the lock is not held.
func (c *controller) knownReleased(cr *ctlRun) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cr.released
}

// take returns the runs to step: the dirty ones, or every open run when all is set.
func (c *controller) take(all bool) []*ctlRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*ctlRun
	for key, cr := range c.runs {
		if all || c.dirty[key] {
			out = append(out, cr)
		}
	}
	clear(c.dirty)
	return out
}

// RunController runs the controller until ctx is done: a step of each woken run, and of every
// open run at each tick.
func (a *Application) RunController(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Tick)
	defer t.Stop()
	for {
		all := false
		select {
		case <-ctx.Done():
			return nil
		case <-a.ctl.wake:
		case <-t.C:
			all = true
		}
		if a.publisher() == nil {
			continue
		}
		select {
		case <-a.runsReady:
		default:
			continue // the read model is still catching up; RunsCaughtUp tracks the open runs
		}
		a.steps(ctx, all)
	}
}

// StepOpenRuns steps every open run once, now (what each tick does).
func (a *Application) StepOpenRuns(ctx context.Context) { a.steps(ctx, true) }

func (a *Application) steps(ctx context.Context, all bool) {
	for _, cr := range a.ctl.take(all) {
		// A failed step is tried again at the next tick, which steps every open run.
		if err := a.step(ctx, cr); err != nil && ctx.Err() == nil {
			if errors.Is(err, errChunkMissing) {
				a.log.DebugContext(ctx, "run controller waits for the membership", "tenant", cr.tenant, "run_id", cr.id, "error", err)
			} else {
				a.log.WarnContext(ctx, "run controller step failed; the next tick tries again", "tenant", cr.tenant, "run_id", cr.id, "error", err)
			}
		}
	}
}

// step looks at one open run: halts it over its error budget, stops its dispatch at the stop
// instant, releases what its limits allow, and completes it when it is over.
func (a *Application) step(ctx context.Context, cr *ctlRun) error {
	r, ok, err := a.repo.Run(ctx, cr.tenant, cr.id)
	if err != nil || !ok {
		return err
	}
	if !r.CompletedAt.IsZero() {
		a.ctl.untrack(cr.tenant, cr.id)
		return nil
	}
	now := a.clock().UTC()
	l := r.Ledger()
	var control []*events.Event
	if l.OverBudget() && !cr.halted {
		ev, err := events.New(r.Tenant, r.ID, &eventsv1.RunHalted{
			Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, Errors: int32(l.Errors), ErrorBudget: int32(l.Limits.ErrorBudget), At: timestamppb.New(now),
		})
		if err != nil {
			return err
		}
		control = append(control, ev)
		l.State, r.State = typesv1.RunState_RUN_STATE_HALTED, typesv1.RunState_RUN_STATE_HALTED
	}
	if cr.halted {
		l.State, r.State = typesv1.RunState_RUN_STATE_HALTED, typesv1.RunState_RUN_STATE_HALTED
	}
	l.Stopped = l.Stopped || cr.stopped
	r.Stopped = l.Stopped
	if domain.RunDispatching(l.State) && !l.Stopped && l.StopDue(now) && l.Requested < l.Eligible {
		ev, err := events.New(r.Tenant, r.ID, &eventsv1.RunDispatchStopped{
			Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, Reason: l.Limits.StopReason,
			StopAt: timestamppb.New(l.Limits.StopAt), At: timestamppb.New(now),
		})
		if err != nil {
			return err
		}
		control = append(control, ev)
		l.Stopped, r.Stopped = true, true
	}
	if len(control) > 0 {
		if err := a.publish(ctx, control...); err != nil {
			return err
		}
		for _, ev := range control {
			switch ev.Data.(type) {
			case *eventsv1.RunHalted:
				cr.halted = true
			case *eventsv1.RunDispatchStopped:
				cr.stopped = true
			}
		}
		for _, ev := range control {
			a.log.InfoContext(ctx, "run dispatch ends", "tenant", r.Tenant, "run_id", r.ID, "event", ev.Type,
				"requested", l.Requested, "eligible", l.Eligible, "errors", l.Errors)
		}
	}
	if target := l.Target(now); target > 0 {
		if err := a.release(ctx, cr, r, target); err != nil {
			return err
		}
	}
	// Jobs this replica released may not be in the read model yet: a run is not complete
	// while they are in flight.
	r.Requested = max(r.Requested, a.ctl.knownReleased(cr))
	c, complete := r.Complete()
	if !complete || cr.completed {
		return nil
	}
	ev, err := a.completedEvent(r, c, now)
	if err != nil {
		return err
	}
	if err := a.publishCompleted(ctx, ev); err != nil {
		return err
	}
	cr.completed = true
	return nil
}

// releaseBatch is the most JobRequested events built and published at once: a release of a
// whole 100,000-instance wave (no concurrency limit) holds one batch of encoded events in
// memory at a time, not the wave's.
const releaseBatch = 1000

// release publishes a JobRequested for every position below target not known released, in
// Publish calls of releaseBatch events (the bus sends each asynchronously in windows); the
// positions of each published batch are marked before the next is built.
func (a *Application) release(ctx context.Context, cr *ctlRun, r domain.Run, target int) error {
	m, err := a.members(ctx, r)
	if err != nil {
		return err
	}
	if err := a.loadRequested(ctx, cr, r, m); err != nil {
		return err
	}
	a.ctl.mu.Lock()
	var positions []int
	for p := cr.cursor; p < min(target, m.size()); p++ {
		if !cr.requested[p] {
			positions = append(positions, p)
		}
	}
	a.ctl.mu.Unlock()
	if len(positions) == 0 {
		return nil
	}
	policy, err := jobPolicyOf(r)
	if err != nil {
		return err
	}
	pins := map[string]domain.Pin{}
	for _, p := range r.Detail.Pins {
		pins[p.OSFamily] = p
	}
	now := a.clock().UTC()
	for batch := range slices.Chunk(positions, releaseBatch) {
		evs := make([]*events.Event, 0, len(batch))
		for _, p := range batch {
			i := m.eligible[p]
			id, family := m.all[i].id, m.family(i)
			pin, ok := pins[family]
			if !ok && len(r.Detail.Pins) == 0 {
				pin = domain.Pin{BaselineID: r.BaselineID} // a run from before pins: its one baseline
			}
			job, err := events.New(r.Tenant, r.ID+"/"+id, &eventsv1.JobRequested{
				Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, InstanceId: id,
				BaselineId: pin.BaselineID, PatchIds: pin.PatchIDs, Location: m.location(i), Policy: policy,
				OsFamily: family, Index: int32(p),
			})
			if err != nil {
				return fmt.Errorf("run %s: job for instance %q: %w", r.ID, id, err)
			}
			job.Time = now
			evs = append(evs, job)
		}
		if err := a.publish(ctx, evs...); err != nil {
			return fmt.Errorf("release %d jobs of run %s: %w", len(evs), r.ID, err)
		}
		a.ctl.mu.Lock()
		for _, p := range batch {
			cr.mark(p)
		}
		a.ctl.mu.Unlock()
		a.log.DebugContext(ctx, "jobs released", "tenant", r.Tenant, "run_id", r.ID, "jobs", len(evs), "target", target)
	}
	return nil
}

// loadRequested reads, once per run and replica, which positions were released (the
// requested set of the read model).
func (a *Application) loadRequested(ctx context.Context, cr *ctlRun, r domain.Run, m *membership) error {
	a.ctl.mu.Lock()
	loaded := cr.requested != nil
	a.ctl.mu.Unlock()
	if loaded {
		return nil
	}
	ids, err := a.repo.RequestedIDs(ctx, r.Tenant, r.ID)
	if err != nil {
		return err
	}
	a.ctl.mu.Lock()
	defer a.ctl.mu.Unlock()
	cr.requested, cr.m = make([]bool, m.size()), m
	// The released instances, found by one pass over the membership (no index of it kept).
	released := make(map[string]struct{}, len(ids)+len(cr.lateIDs))
	for _, id := range append(ids, cr.lateIDs...) {
		released[id] = struct{}{}
	}
	for p := range m.size() {
		if _, ok := released[m.eligibleID(p)]; ok {
			cr.mark(p)
		}
	}
	cr.lateIDs = nil
	return nil
}

func (a *Application) publish(ctx context.Context, evs ...*events.Event) error {
	pub := a.publisher()
	if pub == nil {
		return errors.New("publish: not attached to a bus")
	}
	return pub.Publish(ctx, evs...)
}
