// Package app is reporting's application layer: the compliance and baselines projections and
// the compliance queries (coverage, instances, per-patch state, failed patches, ageing,
// history, run reports), over domain.Repository.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchwave/patchwave/libs/baseline"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// Projection names.
const (
	// ProjectionCompliance reads the tenant stream.
	ProjectionCompliance = "compliance"
	// ProjectionBaselines reads the catalog stream: baselines and certification times.
	ProjectionBaselines = "compliance-baselines"
)

// readyWait bounds how long a query waits for the read model to catch up before it answers
// Unavailable.
const readyWait = 5 * time.Second

// baselineWait bounds how long the compliance projection waits, once the baselines projection
// has caught up, for a baseline a tenant event names to be projected (the catalog publishes it
// before anyone can approve or run it, but the two streams are read apart).
const baselineWait = 2 * time.Second

// Tenants says whether a tenant is in the service design (libs/design's View implements it).
type Tenants interface {
	// RequireTenant returns an error wrapping apierr.ErrNotFound for an unknown tenant.
	RequireTenant(ctx context.Context, tenant string) error
}

// Application answers compliance queries from the read model it projects.
type Application struct {
	tenants Tenants
	repo    domain.Repository
	log     *slog.Logger
	clock   func() time.Time

	scans ScanOptions
	// uow begins units of work for ApplyBatch; nil: events are applied one by one.
	uow domain.UnitOfWorkStarter

	// pipeMu guards the replayed batch whose commit is under way (inFlight) and the events
	// it applies (held), kept until it applied (ApplyBatch).
	pipeMu   sync.Mutex
	inFlight *flight
	held     []*events.Event
	// reapplied counts the replayed commits that did not apply and whose events were applied
	// again (Reapplied).
	reapplied atomic.Int64

	cpMu    sync.Mutex
	cp      uint64
	cpKnown bool
	applied int
	// unknownBaselines were waited for and never published: not waited for again.
	unknownBaselines map[string]bool

	// kick wakes the scan releaser; replaying holds it while the read model is rebuilt under
	// the service.
	kick      chan struct{}
	replaying atomic.Bool

	ready, catalogReady         chan struct{}
	readyOnce, catalogReadyOnce sync.Once
}

// New returns the application; tenants says which tenants exist. When repo can begin units
// of work (domain.UnitOfWorkStarter), ApplyBatch uses them.
func New(repo domain.Repository, tenants Tenants, log *slog.Logger, clock func() time.Time) *Application {
	a := &Application{repo: repo, tenants: tenants, log: log, clock: clock,
		ready: make(chan struct{}), catalogReady: make(chan struct{}), unknownBaselines: map[string]bool{},
		kick: make(chan struct{}, 1)}
	a.uow, _ = repo.(domain.UnitOfWorkStarter)
	return a
}

// Applied is how many events ApplyBatch committed.
func (a *Application) Applied() int {
	a.cpMu.Lock()
	defer a.cpMu.Unlock()
	return a.applied
}

// Reapplied is how many replayed batches' commits did not apply (a Redis error such as a
// timeout, or a guard that failed), so that their events were applied and committed again.
func (a *Application) Reapplied() int { return int(a.reapplied.Load()) }

// Batches reports whether the projection can apply batches (ApplyBatch).
func (a *Application) Batches() bool { return a.uow != nil }

// Checkpoint returns the last stream sequence the compliance projection applied (and makes it
// the one the next batch is guarded by). The projection reads the stream from there: a
// replayed batch's commit under way is waited for, and its events, read again, are let go.
func (a *Application) Checkpoint(ctx context.Context) (uint64, error) {
	a.pipeMu.Lock()
	defer a.pipeMu.Unlock()
	if fl := a.inFlight; fl != nil {
		if ok, _ := a.outcome(ctx, fl); ok {
			a.committed(len(a.held), fl.last)
		}
		a.inFlight = nil
	}
	a.held = nil
	cp, err := a.repo.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	a.setSeen(cp)
	return cp, nil
}

// CatalogCheckpoint returns the last catalog stream sequence the baselines projection applied.
func (a *Application) CatalogCheckpoint(ctx context.Context) (uint64, error) {
	return a.repo.CatalogCheckpoint(ctx)
}

// CaughtUp marks the read model ready for queries, once what it applied is committed (the bus
// settles the projection first, retrying errors; this settles what is still under way
// otherwise).
func (a *Application) CaughtUp(ctx context.Context) error {
	if err := a.Settle(ctx); err != nil {
		return err
	}
	a.readyOnce.Do(func() {
		close(a.ready)
		a.log.InfoContext(ctx, "compliance read model caught up")
	})
	return nil
}

// CatalogCaughtUp marks the baselines caught up.
func (a *Application) CatalogCaughtUp(context.Context) error {
	a.catalogReadyOnce.Do(func() { close(a.catalogReady) })
	return nil
}

// ApplyCatalog is the baselines projection: published baselines and patch certification times.
func (a *Application) ApplyCatalog(ctx context.Context, ev *events.Event, _ bool) error {
	switch msg := ev.Data.(type) {
	case *eventsv1.BaselinePublished:
		b := domain.Baseline{ID: msg.GetBaselineId(), OSFamily: msg.GetOsFamily(), Version: msg.GetVersion(),
			PublishedAt: msg.GetPublishedAt().AsTime().UTC()}
		if b.ID == "" {
			return bus.Permanent(fmt.Errorf("%s: baseline_id is required", ev.ID))
		}
		for _, p := range msg.GetPatches() {
			b.Patches = append(b.Patches, domain.BaselinePatch{ID: p.GetId(), Severity: p.GetSeverity()})
		}
		if err := a.repo.PutBaseline(ctx, b); err != nil {
			return err
		}
		a.cpMu.Lock()
		delete(a.unknownBaselines, b.ID)
		a.cpMu.Unlock()
	case *eventsv1.PatchCertified:
		at := ev.Time
		if msg.GetStep().GetAt() != nil {
			at = msg.GetStep().GetAt().AsTime()
		}
		if err := a.repo.PutCertifiedAt(ctx, msg.GetPatchId(), at); err != nil {
			return err
		}
	default:
		return bus.Permanent(fmt.Errorf("baselines projection: unexpected event type %s", ev.Type))
	}
	return a.repo.SetCatalogCheckpoint(ctx, ev.Sequence)
}

// Apply is the compliance projection: run.started puts instances in scope, outcomes assess
// them, approvals re-measure them, run.completed closes a run's report; a tenant's first event
// of a new day snapshots the figures of the day before.
func (a *Application) Apply(ctx context.Context, ev *events.Event, _ bool) error {
	if err := a.tx(a.repo).apply(ctx, ev); err != nil {
		return err
	}
	return a.repo.SetCheckpoint(ctx, ev.Sequence)
}

// txn applies events to one repository: the read model itself, or a unit of work that
// ApplyBatch commits at once.
type txn struct {
	*Application
	repo domain.Repository
	// cycles caches the tenants' current cycles read or written through repo (every instance
	// saved reads its tenant's), lastDays their last days (every event reads its tenant's).
	cycles   map[string]domain.Cycle
	lastDays map[string]lastDay
	// baselines caches the published baselines found through repo (every instance saved
	// reads the one it is measured against, decoding its JSON each time), approvals the
	// tenants' approvals by tenant and OS family, read or written through repo. A baseline is
	// cached only once found: one the baselines projection has not stored yet is asked for
	// again.
	baselines map[string]*domain.Baseline
	approvals map[approvalKey]approval
}

type approvalKey struct{ tenant, family string }

// approval is a cached approval and whether there is one.
type approval struct {
	a     domain.Approval
	found bool
}

// lastDay is a tenant's last day (UTC date, empty when none) and the first instant after it:
// an event before that instant is of that day or earlier, which is what most are.
type lastDay struct {
	day   string
	after time.Time
}

func newLastDay(day string) lastDay {
	d := lastDay{day: day}
	if t, err := time.Parse(time.DateOnly, day); err == nil {
		d.after = t.AddDate(0, 0, 1)
	}
	return d
}

func (a *Application) tx(repo domain.Repository) txn {
	return txn{Application: a, repo: repo, cycles: map[string]domain.Cycle{}, lastDays: map[string]lastDay{},
		baselines: map[string]*domain.Baseline{}, approvals: map[approvalKey]approval{}}
}

// approval returns the tenant's approval for an OS family (false when none).
func (a txn) approval(ctx context.Context, tenant, family string) (domain.Approval, bool, error) {
	k := approvalKey{tenant, family}
	if c, ok := a.approvals[k]; ok {
		return c.a, c.found, nil
	}
	ap, found, err := a.repo.Approval(ctx, tenant, family)
	if err != nil {
		return domain.Approval{}, false, err
	}
	a.approvals[k] = approval{ap, found}
	return ap, found, nil
}

// putApproval records the tenant's approval for its OS family.
func (a txn) putApproval(ctx context.Context, tenant string, ap domain.Approval) error {
	k := approvalKey{tenant, ap.OSFamily}
	if err := a.repo.PutApproval(ctx, tenant, ap); err != nil {
		delete(a.approvals, k)
		return err
	}
	a.approvals[k] = approval{ap, true}
	return nil
}

// cycle returns the tenant's current cycle (zero and false before its first event).
func (a txn) cycle(ctx context.Context, tenant string) (domain.Cycle, bool, error) {
	if c, ok := a.cycles[tenant]; ok {
		return c, c.Key != "", nil
	}
	c, found, err := a.repo.Cycle(ctx, tenant)
	if err != nil {
		return domain.Cycle{}, false, err
	}
	a.cycles[tenant] = c
	return c, found, nil
}

// putCycle records the tenant's current cycle.
func (a txn) putCycle(ctx context.Context, tenant string, c domain.Cycle) error {
	if err := a.repo.PutCycle(ctx, tenant, c); err != nil {
		delete(a.cycles, tenant)
		return err
	}
	a.cycles[tenant] = c
	return nil
}

// apply applies one event, without the checkpoint.
func (a txn) apply(ctx context.Context, ev *events.Event) error {
	if err := a.rollDay(ctx, ev); err != nil {
		return err
	}
	var err error
	switch msg := ev.Data.(type) {
	case *eventsv1.RunStarted:
		err = a.runStarted(ctx, ev, msg)
	case *eventsv1.RunMembership:
		err = a.runMembership(ctx, ev, msg)
	case *eventsv1.RunCompleted:
		err = a.runCompleted(ctx, ev, msg)
	case *eventsv1.SnapshotStarted:
		err = a.job(ctx, ev.Tenant, msg.GetRunId(), msg.GetInstanceId(), typesv1.JobState_JOB_STATE_SNAPSHOTTING)
	case *eventsv1.InstallStarted:
		err = a.job(ctx, ev.Tenant, msg.GetRunId(), msg.GetInstanceId(), typesv1.JobState_JOB_STATE_INSTALLING)
	case *eventsv1.RestoreStarted:
		err = a.job(ctx, ev.Tenant, msg.GetRunId(), msg.GetInstanceId(), typesv1.JobState_JOB_STATE_RESTORING)
	case *eventsv1.RestoreCompleted:
		err = a.job(ctx, ev.Tenant, msg.GetRunId(), msg.GetInstanceId(), typesv1.JobState_JOB_STATE_RESTORED)
	case *eventsv1.RestoreFailed:
		err = a.job(ctx, ev.Tenant, msg.GetRunId(), msg.GetInstanceId(), typesv1.JobState_JOB_STATE_RESTORE_FAILED)
	case *eventsv1.SnapshotFailed:
		err = a.assess(ctx, ev, msg.GetInstanceId(), typesv1.JobState_JOB_STATE_SNAPSHOT_FAILED, domain.Assessment{
			Outcome: domain.OutcomeSnapshotFailed, Wave: msg.GetWave(), RunID: msg.GetRunId(), At: ev.Time, Reason: msg.GetReason()})
	case *eventsv1.InstallSucceeded:
		js := msg.GetJobState()
		if js == typesv1.JobState_JOB_STATE_UNSPECIFIED {
			js = typesv1.JobState_JOB_STATE_SUCCEEDED
		}
		err = a.assess(ctx, ev, msg.GetInstanceId(), js, domain.Assessment{
			Outcome: domain.OutcomeInstalled, Wave: msg.GetWave(), RunID: msg.GetRunId(), At: ev.Time, Results: msg.GetResults()})
	case *eventsv1.InstallFailed:
		js := msg.GetJobState()
		if js == typesv1.JobState_JOB_STATE_UNSPECIFIED {
			js = typesv1.JobState_JOB_STATE_FAILED
		}
		err = a.assess(ctx, ev, msg.GetInstanceId(), js, domain.Assessment{
			Outcome: domain.OutcomeInstallFailed, Wave: msg.GetWave(), RunID: msg.GetRunId(), At: ev.Time,
			Reason: msg.GetReason(), Results: msg.GetResults()})
	case *eventsv1.BaselineApproved:
		err = a.approved(ctx, ev, msg)
	case *eventsv1.CyclePinned:
		err = a.pinned(ctx, ev, msg)
	case *eventsv1.ScanOrdered:
		err = a.scanOrdered(ctx, ev, msg)
	case *eventsv1.ScanRequested:
		err = a.scanRequested(ctx, ev, msg)
	case *eventsv1.ScanCompleted:
		at := ev.Time
		if msg.GetScannedAt() != nil {
			at = msg.GetScannedAt().AsTime()
		}
		err = a.assess(ctx, ev, msg.GetInstanceId(), 0, domain.Assessment{Outcome: domain.OutcomeScanned, RunID: msg.GetScanId(), At: at,
			Results: msg.GetResults(), Replace: true, OSFamily: msg.GetOsFamily()})
		if err == nil {
			err = a.repo.ScanDone(ctx, ev.Tenant, msg.GetScanId(), msg.GetInstanceId())
		}
	case *eventsv1.ScanFailed:
		err = a.assess(ctx, ev, msg.GetInstanceId(), 0, domain.Assessment{Outcome: domain.OutcomeUnreachable, RunID: msg.GetScanId(), At: ev.Time,
			Reason: msg.GetReason(), OSFamily: msg.GetOsFamily()})
		if err == nil {
			err = a.repo.ScanDone(ctx, ev.Tenant, msg.GetScanId(), msg.GetInstanceId())
		}
	default:
		return bus.Permanent(fmt.Errorf("compliance projection: unexpected event type %s", ev.Type))
	}
	return err
}

// maxPending bounds the writes a batch holds before it writes them ahead of its commit (a
// run.started of a large fleet touches every instance); maxReplayPending bounds a replayed
// batch's, larger: a replay's batches are up to ports.RebuildBatch events, and a write ahead
// of the commit has to wait for the commit under way (the pipeline stalls) and writes again
// the instances the rest of the batch changes.
const (
	maxPending       = 20000
	maxReplayPending = 60000
)

// flight is a replayed batch whose commit is under way (ApplyBatch pipelines replays).
type flight struct {
	c domain.Commit
	// last is the checkpoint it writes, which the next batch is guarded by.
	last uint64
}

// ApplyBatch is the compliance projection over a batch of events: they are applied to a unit
// of work (the instances they name read in one round trip) that is committed in one atomic
// write with the checkpoint, guarded by the checkpoint this replica last saw. When another
// replica moved the checkpoint first, the events it applied are skipped and the rest applied
// again on what it wrote; when the checkpoint vanished (the store was flushed under the
// service), the projection replays the stream from the start (bus.ErrReplay). So replicas
// sharing one Redis converge on the same read model, and a flush rebuilds it.
//
// Replayed batches (live false) are pipelined: the batch is applied on a view that answers
// with the writes of the previous batch, whose commit is still under way, and its own commit
// is sent once that one applied, guarded by its checkpoint; ApplyBatch returns with it under
// way. The events of a commit under way are kept until it applied; when it did not (an error,
// or its guard failed), they are applied again, with what followed, as above. Settle waits for
// the commit under way; the bus calls it before CaughtUp and whenever no batch waits, so
// "caught up" means committed. Live batches settle first and are committed before ApplyBatch
// returns, so a read after a live event sees it.
func (a *Application) ApplyBatch(ctx context.Context, evs []*events.Event, live bool) error {
	a.pipeMu.Lock()
	defer a.pipeMu.Unlock()
	if !live {
		return a.applyPipelined(ctx, evs)
	}
	if err := a.settle(ctx); err != nil {
		return err
	}
	return a.applyNow(ctx, evs)
}

// Settle waits for the commit of the last replayed batch, if it is under way, and applies its
// events again when it did not apply. The bus calls it (bus.ProjectionSpec.Settle).
func (a *Application) Settle(ctx context.Context) error {
	a.pipeMu.Lock()
	defer a.pipeMu.Unlock()
	return a.settle(ctx)
}

// settle implements Settle; the caller holds pipeMu.
func (a *Application) settle(ctx context.Context) error {
	if fl := a.inFlight; fl != nil {
		a.inFlight = nil
		ok, err := a.outcome(ctx, fl)
		if ok {
			a.committed(len(a.held), fl.last)
			a.held = nil
			return nil
		}
		a.reapplied.Add(1)
		a.log.WarnContext(ctx, "compliance commit did not apply: applying its events again",
			"events", len(a.held), "checkpoint", fl.last, "error", err)
	}
	if len(a.held) == 0 {
		return nil
	}
	if err := a.applyNow(ctx, a.held); err != nil {
		if errors.Is(err, bus.ErrReplay) {
			a.held = nil // the replay reads them again
		}
		return err // else kept: applied again by the next call
	}
	a.held = nil
	return nil
}

// committed counts n events committed up to checkpoint last.
func (a *Application) committed(n int, last uint64) {
	a.cpMu.Lock()
	a.applied += n
	a.cpMu.Unlock()
	a.setSeen(last)
}

// applyPipelined applies a replayed batch on what the commit under way writes and starts its
// commit once that one applied; the caller holds pipeMu.
func (a *Application) applyPipelined(ctx context.Context, evs []*events.Event) error {
	if fl := a.inFlight; (fl == nil && len(a.held) > 0) || (fl != nil && failedEarly(fl)) {
		// Events whose commit did not apply wait: apply them, then these, now.
		if err := a.settle(ctx); err != nil {
			return err
		}
		return a.applyNow(ctx, evs)
	}
	var prev uint64
	var c domain.Commit
	if fl := a.inFlight; fl != nil {
		prev, c = fl.last, fl.c
	} else {
		var err error
		if prev, err = a.seenCheckpoint(ctx); err != nil {
			return err
		}
	}
	// A write ahead of the commit is guarded by the checkpoint the commit under way writes:
	// it waits for that one.
	uow, todo, ahead, err := a.fold(ctx, c, prev, evs, maxReplayPending, func() bool { return a.landed(ctx) })
	if err != nil {
		return err
	}
	if !ahead {
		return a.settleAndApply(ctx, evs) // the commit under way did not apply, or another replica is ahead
	}
	if len(todo) == 0 {
		return nil
	}
	if !a.landed(ctx) {
		return a.settleAndApply(ctx, evs)
	}
	last := todo[len(todo)-1].Sequence
	a.inFlight = &flight{c: uow.Start(ctx, prev, last), last: last}
	a.held = todo
	return nil
}

// outcome waits for a commit under way and reports whether it applied. A commit that failed
// with an error (a timeout, say) may have applied all the same: when the checkpoint is the one
// it writes, it did (a replica that wrote that very checkpoint applied the same events, which
// this one would skip), so its events are not applied again and count once.
func (a *Application) outcome(ctx context.Context, fl *flight) (bool, error) {
	ok, err := fl.c.Wait()
	if err == nil {
		return ok, nil
	}
	if cur, cerr := a.repo.Checkpoint(ctx); cerr == nil && cur == fl.last {
		return true, nil
	}
	return false, err
}

// failedEarly says whether a commit under way has already ended without applying.
func failedEarly(fl *flight) bool {
	select {
	case <-fl.c.Done():
	default:
		return false
	}
	ok, err := fl.c.Wait()
	return err != nil || !ok // an error is looked at closer by settle
}

// landed waits for the commit under way, if any, and reports whether it applied (then it is
// counted and its events are let go). The caller holds pipeMu.
func (a *Application) landed(ctx context.Context) bool {
	fl := a.inFlight
	if fl == nil {
		return true
	}
	if ok, _ := a.outcome(ctx, fl); !ok {
		return false
	}
	a.inFlight = nil
	a.committed(len(a.held), fl.last)
	a.held = nil
	return true
}

// settleAndApply gives up a batch folded on a commit that did not apply (or that another
// replica overtook): the events of that commit are applied again, then evs. The caller holds
// pipeMu.
func (a *Application) settleAndApply(ctx context.Context, evs []*events.Event) error {
	if err := a.settle(ctx); err != nil {
		return err
	}
	return a.applyNow(ctx, evs)
}

// after returns the events after checkpoint prev.
func after(evs []*events.Event, prev uint64) []*events.Event {
	todo := evs[:0:0]
	for _, ev := range evs {
		if ev.Sequence > prev {
			todo = append(todo, ev)
		}
	}
	return todo
}

// fold begins a unit of work (reading through c, the commit under way, when it is not nil),
// keeps the events of evs after checkpoint prev (todo), reads the instances they name in one
// round trip and applies the events to it, logging and skipping one that fails for good. Past
// limit pending writes it writes ahead of the commit, guarded by prev, once ready (nil: at once)
// says it may; when ready says no or the guard fails, it stops with ok false and the caller
// starts over. Nothing is begun when todo is empty.
func (a *Application) fold(ctx context.Context, c domain.Commit, prev uint64, evs []*events.Event, limit int, ready func() bool) (uow domain.UnitOfWork, todo []*events.Event, ok bool, err error) {
	todo = after(evs, prev)
	if len(todo) == 0 {
		return nil, nil, true, nil
	}
	if c != nil {
		uow, err = a.uow.BeginAfter(c)
	} else {
		uow, err = a.uow.Begin()
	}
	if err != nil {
		return nil, nil, false, err
	}
	if err := uow.Prefetch(ctx, instanceKeys(todo)); err != nil {
		return nil, nil, false, err
	}
	t := a.tx(uow)
	for _, ev := range todo {
		if err := t.apply(ctx, ev); err != nil {
			if !bus.IsPermanent(err) {
				return nil, nil, false, err
			}
			a.log.ErrorContext(ctx, "compliance projection skips event", "event", ev.ID, "error", err)
		}
		if uow.Pending() < limit {
			continue
		}
		if ready != nil && !ready() {
			return uow, todo, false, nil
		}
		ok, err := uow.Flush(ctx, prev)
		if err != nil {
			return nil, nil, false, err
		}
		if !ok {
			return uow, todo, false, nil
		}
	}
	return uow, todo, true, nil
}

// applyNow applies evs and commits them before it returns (the guarded loop ApplyBatch
// describes); nothing may be under way. The caller holds pipeMu.
func (a *Application) applyNow(ctx context.Context, evs []*events.Event) error {
	for {
		prev, err := a.seenCheckpoint(ctx)
		if err != nil {
			return err
		}
		uow, todo, ahead, err := a.fold(ctx, nil, prev, evs, maxPending, nil)
		if err != nil {
			return err
		}
		if len(todo) == 0 {
			return nil
		}
		last := todo[len(todo)-1].Sequence
		if ahead {
			ok, err := uow.Commit(ctx, prev, last)
			if err != nil {
				return err
			}
			if ok {
				a.committed(len(todo), last)
				return nil
			}
		}
		cur, err := a.repo.Checkpoint(ctx)
		if err != nil {
			return err
		}
		if cur == 0 && prev > 0 {
			a.setSeen(0)
			return fmt.Errorf("the compliance read model was emptied under the service: %w", bus.ErrReplay)
		}
		a.setSeen(cur) // another replica is ahead: go on from its checkpoint
	}
}

// instanceKeys names the instances the events touch, to read them in one round trip.
func instanceKeys(evs []*events.Event) []domain.InstanceRef {
	n := 0
	for _, ev := range evs {
		switch m := ev.Data.(type) {
		case *eventsv1.RunStarted:
			n += len(m.GetInstanceIds())
			for _, g := range m.GetGroups() {
				n += len(g.GetInstanceIds())
			}
		case *eventsv1.RunMembership:
			n += len(m.GetMembers())
		default:
			n++
		}
	}
	out := make([]domain.InstanceRef, 0, n)
	for _, ev := range evs {
		switch m := ev.Data.(type) {
		case *eventsv1.RunStarted:
			for _, id := range events.RunInstanceIDs(m) {
				out = append(out, domain.InstanceRef{Tenant: ev.Tenant, ID: id})
			}
		case *eventsv1.RunMembership:
			for _, mb := range m.GetMembers() {
				out = append(out, domain.InstanceRef{Tenant: ev.Tenant, ID: mb.GetInstanceId()})
			}
		case interface{ GetInstanceId() string }:
			out = append(out, domain.InstanceRef{Tenant: ev.Tenant, ID: m.GetInstanceId()})
		}
	}
	return out
}

func (a *Application) seenCheckpoint(ctx context.Context) (uint64, error) {
	a.cpMu.Lock()
	seen, ok := a.cp, a.cpKnown
	a.cpMu.Unlock()
	if ok {
		return seen, nil
	}
	cp, err := a.repo.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	a.setSeen(cp)
	return cp, nil
}

func (a *Application) setSeen(cp uint64) {
	a.cpMu.Lock()
	a.cp, a.cpKnown = cp, true
	a.cpMu.Unlock()
}

// rollDay keeps one snapshot per tenant and day: when a tenant's event is the first of a later
// UTC day (event time, so a rebuild writes the same), the figures as they stand, the last day's
// final ones, are kept under that day and never written again. The first event of a later
// UTC month then starts the tenant's next cycle (rollCycle).
func (a txn) rollDay(ctx context.Context, ev *events.Event) error {
	if ev.Tenant == "" || ev.Time.IsZero() {
		return nil
	}
	ld, ok := a.lastDays[ev.Tenant]
	if !ok {
		last, err := a.repo.LastDay(ctx, ev.Tenant)
		if err != nil {
			return err
		}
		ld = newLastDay(last)
		a.lastDays[ev.Tenant] = ld
	}
	if ev.Time.Before(ld.after) {
		return nil // of the last day or earlier, without formatting its date
	}
	day, last := ev.Time.UTC().Format(time.DateOnly), ld.day
	if last >= day {
		return nil
	}
	if last != "" {
		if err := a.snapshot(ctx, ev.Tenant, "day", last, a.dayEnd(last)); err != nil {
			return err
		}
	}
	if err := a.repo.SetLastDay(ctx, ev.Tenant, day); err != nil {
		delete(a.lastDays, ev.Tenant)
		return err
	}
	a.lastDays[ev.Tenant] = newLastDay(day)
	return a.rollCycle(ctx, ev.Tenant, ev.Time)
}

// rollCycle starts the tenant's cycle of t's month when it is later than the current one: not
// pinned yet, so each OS family is measured against the newest baseline the tenant approved
// for it until the cycle's first run pins it (pinned).
func (a txn) rollCycle(ctx context.Context, tenant string, t time.Time) error {
	cur, found, err := a.cycle(ctx, tenant)
	if err != nil {
		return err
	}
	next := cur.At(t)
	if found && next.Key == cur.Key {
		return nil
	}
	return a.advance(ctx, tenant, cur, next)
}

// pinned applies a cycle.pinned: the pin of the current cycle (or of a later one, which
// starts it) becomes what each family it names is measured against.
func (a txn) pinned(ctx context.Context, ev *events.Event, msg *eventsv1.CyclePinned) error {
	if msg.GetCycle() == "" {
		return bus.Permanent(fmt.Errorf("%s: cycle is required", ev.ID))
	}
	pins := make([]domain.Pin, 0, len(msg.GetPins()))
	for _, p := range msg.GetPins() {
		if p.GetOsFamily() == "" || p.GetBaselineId() == "" {
			return bus.Permanent(fmt.Errorf("%s: pins: os_family and baseline_id are required", ev.ID))
		}
		pins = append(pins, domain.Pin{OSFamily: p.GetOsFamily(), BaselineID: p.GetBaselineId(), Version: p.GetVersion()})
	}
	at := ev.Time
	if msg.GetPinnedAt() != nil {
		at = msg.GetPinnedAt().AsTime()
	}
	cur, _, err := a.cycle(ctx, ev.Tenant)
	if err != nil {
		return err
	}
	next, changed := cur.WithPin(msg.GetCycle(), pins, msg.GetRunId(), at)
	if !changed {
		return nil // a repeat, or the pin of a cycle that is over
	}
	return a.advance(ctx, ev.Tenant, cur, next)
}

// advance makes next the tenant's current cycle. When next is a later cycle, the figures of
// the one that ends are kept (a "cycle" snapshot, with its pin, written once, when anything was
// in scope); then every OS
// family whose applicable baseline differs between the two is measured again.
func (a txn) advance(ctx context.Context, tenant string, cur, next domain.Cycle) error {
	if cur.Key != "" && next.Key > cur.Key {
		if err := a.cycleSnapshot(ctx, tenant, cur.Key); err != nil {
			return err
		}
	}
	if err := a.putCycle(ctx, tenant, next); err != nil {
		return err
	}
	groups, err := a.repo.Groups(ctx, tenant)
	if err != nil {
		return err
	}
	families := map[string]bool{}
	for _, g := range groups {
		if g.OSFamily == domain.UnknownFamily || families[g.OSFamily] {
			continue
		}
		families[g.OSFamily] = true
		approved := ""
		ap, found, err := a.approval(ctx, tenant, g.OSFamily)
		if err != nil {
			return err
		}
		if found {
			approved = ap.BaselineID
		}
		if cur.ApplicableFamily(g.OSFamily, approved) == next.ApplicableFamily(g.OSFamily, approved) {
			continue
		}
		// Sequence 0: the instances keep theirs, so the event that started the cycle (an
		// install in the new month, say) still applies to its own instance.
		if err := a.remeasure(ctx, tenant, g.OSFamily, 0); err != nil {
			return err
		}
	}
	return nil
}

// cycleSnapshot keeps the figures of a cycle that ends, unless nothing was in scope (a
// tenant's months before its first run).
func (a txn) cycleSnapshot(ctx context.Context, tenant, key string) error {
	r, err := a.report(ctx, tenant)
	if err != nil || r.Total.InScope == 0 {
		return err
	}
	return a.snapshot(ctx, tenant, "cycle", key, a.cycleEnd(key))
}

// cycleEnd is the last instant of a cycle's month.
func (a txn) cycleEnd(key string) time.Time {
	m, err := time.Parse("2006-01", key)
	if err != nil {
		return time.Time{}
	}
	return m.AddDate(0, 1, 0).Add(-time.Nanosecond)
}

func (a txn) dayEnd(day string) time.Time {
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return time.Time{}
	}
	return d.Add(24*time.Hour - time.Nanosecond)
}

// snapshot keeps the tenant's figures under kind and key, with the cycle they were measured
// in and its pin.
func (a txn) snapshot(ctx context.Context, tenant, kind, key string, at time.Time) error {
	r, err := a.report(ctx, tenant)
	if err != nil {
		return err
	}
	cyc, _, err := a.cycle(ctx, tenant)
	if err != nil {
		return err
	}
	return a.repo.PutSnapshot(ctx, tenant, domain.Snapshot{Kind: kind, Key: key, At: at.UTC(), Report: r, Cycle: cyc.Key, Pins: cyc.Pins})
}

// baseline returns a published baseline, the one the unit of work found before if it did
// (callers only read it). One the baselines projection has not seen yet is a retryable error
// while that projection catches up, and is waited for a moment after that; then it is unknown
// (false).
func (a txn) baseline(ctx context.Context, id string) (*domain.Baseline, error) {
	if id == "" {
		return nil, nil
	}
	if b, ok := a.baselines[id]; ok {
		return b, nil
	}
	deadline := time.Time{}
	for {
		b, found, err := a.repo.Baseline(ctx, id)
		if err != nil {
			return nil, err
		}
		if found {
			a.baselines[id] = &b
			return &b, nil
		}
		a.cpMu.Lock()
		gone := a.unknownBaselines[id]
		a.cpMu.Unlock()
		if gone {
			return nil, nil // waited for once already
		}
		select {
		case <-a.catalogReady:
		default:
			return nil, fmt.Errorf("baseline %s is not projected yet", id)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(baselineWait)
		}
		if time.Now().After(deadline) {
			a.log.WarnContext(ctx, "baseline unknown to reporting", "baseline", id)
			a.cpMu.Lock()
			a.unknownBaselines[id] = true
			a.cpMu.Unlock()
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Applicable returns the baseline an instance is measured against in the tenant's current
// cycle (ApplicableIn).
func (a txn) Applicable(ctx context.Context, in domain.Instance) (*domain.Baseline, error) {
	cyc, _, err := a.cycle(ctx, in.Tenant)
	if err != nil {
		return nil, err
	}
	return a.ApplicableIn(ctx, in, cyc)
}

// ApplicableIn returns the baseline an instance is measured against in cycle cyc: its OS
// family's pin in the cycle; for a cycle not pinned yet or a family the pin does not name, the
// newest baseline the tenant approved for the family; else the baseline of the instance's
// latest run; nil when none is known. This is the one place that decides it
// (domain.Cycle.ApplicableFamily, docs/decisions.md).
func (a txn) ApplicableIn(ctx context.Context, in domain.Instance, cyc domain.Cycle) (*domain.Baseline, error) {
	if in.OSFamily != "" {
		approved := ""
		if _, pinned := cyc.Pin(in.OSFamily); !pinned {
			ap, found, err := a.approval(ctx, in.Tenant, in.OSFamily)
			if err != nil {
				return nil, err
			}
			if found {
				approved = ap.BaselineID
			}
		}
		if id := cyc.ApplicableFamily(in.OSFamily, approved); id != "" {
			b, err := a.baseline(ctx, id)
			if err != nil || b != nil {
				return b, err
			}
		}
	}
	return a.baseline(ctx, in.RunBaseline)
}

func (a txn) save(ctx context.Context, prev domain.Instance, found bool, next domain.Instance, seq uint64) error {
	b, err := a.Applicable(ctx, next)
	if err != nil {
		return err
	}
	return a.repo.SaveInstance(ctx, prev, found, next.Evaluate(b, seq))
}

func (a txn) runStarted(ctx context.Context, ev *events.Event, msg *eventsv1.RunStarted) error {
	family := ""
	baselineID := msg.GetBaselineId()
	if baselineID == "" && len(msg.GetPins()) == 1 {
		baselineID = msg.GetPins()[0].GetBaselineId()
	}
	rb, err := a.baseline(ctx, baselineID)
	if err != nil {
		return err
	}
	if rb != nil {
		family = rb.OSFamily
	}
	n := 0
	for _, g := range msg.GetGroups() {
		n += len(g.GetInstanceIds())
	}
	where := make(map[string]*typesv1.Location, n)
	for _, g := range msg.GetGroups() {
		for _, id := range g.GetInstanceIds() {
			where[id] = g.GetLocation()
		}
	}
	ids := slices.Clone(events.RunInstanceIDs(msg))
	slices.Sort(ids)
	ids = slices.DeleteFunc(slices.Compact(ids), func(s string) bool { return s == "" })
	run, found, err := a.repo.Run(ctx, ev.Tenant, msg.GetRunId())
	if err != nil {
		return err
	}
	if !found || run.State == typesv1.RunState_RUN_STATE_UNSPECIFIED {
		total := int32(len(ids))
		if total == 0 {
			// Runs of the run controller list no instance: their membership came in chunks.
			total = msg.GetMembership().GetTotal()
		}
		run = domain.Run{RunID: msg.GetRunId(), Wave: msg.GetWave(), BaselineID: baselineID,
			State: typesv1.RunState_RUN_STATE_RUNNING, StartedAt: msg.GetStartedAt().AsTime().UTC(), Total: total}
		if err := a.repo.PutRun(ctx, ev.Tenant, run); err != nil {
			return err
		}
		pending := make(map[string]typesv1.JobState, len(ids))
		for _, id := range ids {
			pending[id] = typesv1.JobState_JOB_STATE_PENDING
		}
		if err := a.repo.SetJobStates(ctx, ev.Tenant, msg.GetRunId(), pending); err != nil {
			return err
		}
	}
	for _, id := range ids {
		prev, found, err := a.repo.Instance(ctx, ev.Tenant, id)
		if err != nil {
			return err
		}
		next, changed := prev.InScope(msg.GetWave(), msg.GetRunId(), baselineID, family, ev.Sequence)
		if !changed {
			continue
		}
		next = next.Located(where[id].GetAccount(), where[id].GetRegion())
		if err := a.save(ctx, prev, found, next, ev.Sequence); err != nil {
			return err
		}
	}
	return nil
}

// runMembership puts one membership chunk of a run in scope of its wave: every instance tagged
// into the wave, stopped and agentless ones too, with its job's first state (PENDING, or MISSED
// for a stopped instance and SKIPPED for one without an agent or a baseline, as the run
// controller decides). The chunks come before the run's RunStarted, so the instances' run
// baseline is left empty: they are measured against their OS family's applicable baseline.
func (a txn) runMembership(ctx context.Context, ev *events.Event, msg *eventsv1.RunMembership) error {
	jobs := make(map[string]typesv1.JobState, len(msg.GetMembers()))
	for _, m := range msg.GetMembers() {
		if m.GetInstanceId() == "" {
			continue
		}
		switch m.GetStatus() {
		case typesv1.MemberStatus_MEMBER_STATUS_STOPPED:
			jobs[m.GetInstanceId()] = typesv1.JobState_JOB_STATE_MISSED
		case typesv1.MemberStatus_MEMBER_STATUS_NO_AGENT, typesv1.MemberStatus_MEMBER_STATUS_NO_BASELINE:
			jobs[m.GetInstanceId()] = typesv1.JobState_JOB_STATE_SKIPPED
		default:
			jobs[m.GetInstanceId()] = typesv1.JobState_JOB_STATE_PENDING
		}
	}
	if err := a.repo.SetJobStates(ctx, ev.Tenant, msg.GetRunId(), jobs); err != nil {
		return err
	}
	for _, m := range msg.GetMembers() {
		id := m.GetInstanceId()
		if id == "" {
			continue
		}
		prev, found, err := a.repo.Instance(ctx, ev.Tenant, id)
		if err != nil {
			return err
		}
		next, changed := prev.InScope(msg.GetWave(), msg.GetRunId(), "", m.GetOsFamily(), ev.Sequence)
		if !changed {
			continue
		}
		next = next.Located(m.GetLocation().GetAccount(), m.GetLocation().GetRegion())
		if err := a.save(ctx, prev, found, next, ev.Sequence); err != nil {
			return err
		}
	}
	return nil
}

func (a txn) runCompleted(ctx context.Context, ev *events.Event, msg *eventsv1.RunCompleted) error {
	run, _, err := a.repo.Run(ctx, ev.Tenant, msg.GetRunId())
	if err != nil {
		return err
	}
	run.RunID, run.Wave, run.State = msg.GetRunId(), msg.GetWave(), msg.GetState()
	run.CompletedAt = msg.GetCompletedAt().AsTime().UTC()
	run.Total, run.Succeeded, run.Failed, run.TimedOut = msg.GetTotal(), msg.GetSucceeded(), msg.GetFailed(), msg.GetTimedOut()
	if err := a.repo.PutRun(ctx, ev.Tenant, run); err != nil {
		return err
	}
	// The cycle's figures as the run ends, kept under the run.
	return a.snapshot(ctx, ev.Tenant, "run", msg.GetRunId(), ev.Time)
}

func (a txn) job(ctx context.Context, tenant, runID, instanceID string, st typesv1.JobState) error {
	if runID == "" || instanceID == "" {
		return nil
	}
	if one, ok := a.repo.(interface {
		SetJobState(tenant, runID, instanceID string, st typesv1.JobState)
	}); ok { // a unit of work: no map per event
		one.SetJobState(tenant, runID, instanceID, st)
		return nil
	}
	return a.repo.SetJobStates(ctx, tenant, runID, map[string]typesv1.JobState{instanceID: st})
}

// assess applies an outcome to an instance and its job.
func (a txn) assess(ctx context.Context, ev *events.Event, instanceID string, js typesv1.JobState, as domain.Assessment) error {
	if instanceID == "" {
		return bus.Permanent(fmt.Errorf("%s: instance_id is required", ev.ID))
	}
	if js != typesv1.JobState_JOB_STATE_UNSPECIFIED {
		if err := a.job(ctx, ev.Tenant, as.RunID, instanceID, js); err != nil {
			return err
		}
	}
	prev, found, err := a.repo.Instance(ctx, ev.Tenant, instanceID)
	if err != nil {
		return err
	}
	next, changed := prev.Assess(as, ev.Sequence)
	if !changed {
		return nil
	}
	return a.save(ctx, prev, found, next, ev.Sequence)
}

// approved records a tenant's approval and, when it is the family's newest and the current
// cycle does not pin the family, measures every instance of that family against it: an
// instance that misses its patches turns NON_COMPLIANT. Within a cycle that pins the family the
// approval counts from the next cycle on. Each instance re-measured takes the event's
// sequence, so a replay skips the ones done.
func (a txn) approved(ctx context.Context, ev *events.Event, msg *eventsv1.BaselineApproved) error {
	family := msg.GetOsFamily()
	if family == "" {
		b, err := a.baseline(ctx, msg.GetBaselineId())
		if err != nil {
			return err
		}
		if b == nil {
			return bus.Permanent(fmt.Errorf("%s: baseline %s has no OS family", ev.ID, msg.GetBaselineId()))
		}
		family = b.OSFamily
	}
	next := domain.Approval{BaselineID: msg.GetBaselineId(), OSFamily: family, Version: msg.GetVersion(),
		At: msg.GetApprovedAt().AsTime().UTC()}
	cur, found, err := a.approval(ctx, ev.Tenant, family)
	if err != nil {
		return err
	}
	ref := func(x domain.Approval) baseline.Ref {
		return baseline.Ref{ID: x.BaselineID, OSFamily: x.OSFamily, Version: x.Version}
	}
	if found && baseline.Compare(ref(next), ref(cur)) < 0 {
		return nil // an older version approved late does not replace the newest
	}
	if err := a.putApproval(ctx, ev.Tenant, next); err != nil {
		return err
	}
	cyc, _, err := a.cycle(ctx, ev.Tenant)
	if err != nil {
		return err
	}
	if _, pinned := cyc.Pin(family); pinned {
		return nil // the cycle's pin stands until the next cycle
	}
	return a.remeasure(ctx, ev.Tenant, family, ev.Sequence)
}

// remeasure measures every instance of a tenant's OS family again against the baseline that
// applies to it now. With seq > 0 each instance takes it as its sequence, and one already at
// seq or newer is skipped (a replay); with seq 0 the instances keep their sequences.
func (a txn) remeasure(ctx context.Context, tenant, family string, seq uint64) error {
	ids, err := a.repo.FamilyInstances(ctx, tenant, family)
	if err != nil {
		return err
	}
	if uow, ok := a.repo.(domain.UnitOfWork); ok {
		refs := make([]domain.InstanceRef, len(ids))
		for i, id := range ids {
			refs[i] = domain.InstanceRef{Tenant: tenant, ID: id}
		}
		if err := uow.Prefetch(ctx, refs); err != nil { // one round trip for the family
			return err
		}
	}
	for _, id := range ids {
		prev, found, err := a.repo.Instance(ctx, tenant, id)
		if err != nil {
			return err
		}
		if !found || (seq > 0 && prev.Seq >= seq) {
			continue
		}
		if err := a.save(ctx, prev, true, prev, seq); err != nil {
			return err
		}
	}
	return nil
}

func (a *Application) waitReady(ctx context.Context) error {
	return waitReady(ctx, a.ready, "reporting is still catching up with the event stream")
}

// waitReady waits up to readyWait for ready to close; after that, or when ctx ends, it is
// domain.ErrUnavailable saying why (busy).
func waitReady(ctx context.Context, ready <-chan struct{}, busy string) error {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-ready:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %s", domain.ErrUnavailable, busy)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", domain.ErrUnavailable, ctx.Err())
	}
}

// query checks a tenant query's tenant and waits for the read model.
func (a *Application) query(ctx context.Context, tenant string) error {
	if err := domain.ValidateTenant(tenant); err != nil {
		return err
	}
	if err := a.tenants.RequireTenant(ctx, tenant); err != nil {
		return err
	}
	return a.waitReady(ctx)
}

func (a txn) report(ctx context.Context, tenant string) (domain.Report, error) {
	if c, ok := a.repo.(domain.Counter); ok { // every count at once
		counts, err := c.Counts(ctx, tenant, domain.States)
		if err != nil {
			return domain.Report{}, err
		}
		gcs := make([]domain.GroupCoverage, 0, len(counts))
		for _, g := range counts {
			gc := domain.GroupCoverage{Wave: g.Wave, OSFamily: g.OSFamily}
			for i, state := range domain.States {
				gc.Coverage.Add(state, g.Counts[i])
			}
			gcs = append(gcs, gc)
		}
		return domain.NewReport(tenant, gcs), nil
	}
	groups, err := a.repo.Groups(ctx, tenant)
	if err != nil {
		return domain.Report{}, err
	}
	gcs := make([]domain.GroupCoverage, 0, len(groups))
	for _, g := range groups {
		gc := domain.GroupCoverage{Wave: g.Wave, OSFamily: g.OSFamily}
		for _, state := range domain.States {
			n, err := a.repo.Count(ctx, tenant, g, state)
			if err != nil {
				return domain.Report{}, err
			}
			gc.Coverage.Add(state, n)
		}
		gcs = append(gcs, gc)
	}
	return domain.NewReport(tenant, gcs), nil
}

// Compliance is a tenant's report and when it was computed.
type Compliance struct {
	domain.Report
	AsOf time.Time
}

// GetCompliance returns a tenant's coverage in total, per wave and per OS family;
// apierr.ErrNotFound for a tenant that is not in the service design.
func (a *Application) GetCompliance(ctx context.Context, tenant string) (Compliance, error) {
	if err := a.query(ctx, tenant); err != nil {
		return Compliance{}, err
	}
	r, err := a.tx(a.repo).report(ctx, tenant)
	if err != nil {
		return Compliance{}, err
	}
	return Compliance{Report: r, AsOf: a.clock().UTC()}, nil
}
