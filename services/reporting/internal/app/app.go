// Package app is reporting's application layer: the compliance and baselines projections and
// the compliance queries (coverage, instances, per-patch state, failed patches, ageing,
// history, run reports), over domain.Repository.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
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

	cpMu    sync.Mutex
	cp      uint64
	cpKnown bool
	applied int
	// unknownBaselines were waited for and never published: not waited for again.
	unknownBaselines map[string]bool

	ready, catalogReady         chan struct{}
	readyOnce, catalogReadyOnce sync.Once
}

// New returns the application; tenants says which tenants exist. When repo can begin units
// of work (domain.UnitOfWorkStarter), ApplyBatch uses them.
func New(repo domain.Repository, tenants Tenants, log *slog.Logger, clock func() time.Time) *Application {
	a := &Application{repo: repo, tenants: tenants, log: log, clock: clock,
		ready: make(chan struct{}), catalogReady: make(chan struct{}), unknownBaselines: map[string]bool{}}
	a.uow, _ = repo.(domain.UnitOfWorkStarter)
	return a
}

// Applied is how many events ApplyBatch committed.
func (a *Application) Applied() int {
	a.cpMu.Lock()
	defer a.cpMu.Unlock()
	return a.applied
}

// Batches reports whether the projection can apply batches (ApplyBatch).
func (a *Application) Batches() bool { return a.uow != nil }

// Checkpoint returns the last stream sequence the compliance projection applied (and makes it
// the one the next batch is guarded by).
func (a *Application) Checkpoint(ctx context.Context) (uint64, error) {
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

// CaughtUp marks the read model ready for queries.
func (a *Application) CaughtUp(ctx context.Context) error {
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
}

func (a *Application) tx(repo domain.Repository) txn { return txn{Application: a, repo: repo} }

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
	case *eventsv1.ScanCompleted:
		at := ev.Time
		if msg.GetScannedAt() != nil {
			at = msg.GetScannedAt().AsTime()
		}
		err = a.assess(ctx, ev, msg.GetInstanceId(), 0, domain.Assessment{Outcome: domain.OutcomeScanned, RunID: msg.GetScanId(), At: at,
			Results: msg.GetResults(), Replace: true, OSFamily: msg.GetOsFamily()})
	case *eventsv1.ScanFailed:
		err = a.assess(ctx, ev, msg.GetInstanceId(), 0, domain.Assessment{Outcome: domain.OutcomeUnreachable, RunID: msg.GetScanId(), At: ev.Time,
			Reason: msg.GetReason(), OSFamily: msg.GetOsFamily()})
	default:
		return bus.Permanent(fmt.Errorf("compliance projection: unexpected event type %s", ev.Type))
	}
	return err
}

// maxPending bounds the writes a batch holds before it writes them ahead of its commit (a
// run.started of a large fleet touches every instance).
const maxPending = 20000

// ApplyBatch is the compliance projection over a batch of events: they are applied to a unit
// of work (the instances they name read in one round trip) that is committed in one atomic
// write with the checkpoint, guarded by the checkpoint this replica last saw. When another
// replica moved the checkpoint first, the events it applied are skipped and the rest applied
// again on what it wrote; when the checkpoint vanished (the store was flushed under the
// service), the projection replays the stream from the start (bus.ErrReplay). So replicas
// sharing one Redis converge on the same read model, and a flush rebuilds it.
func (a *Application) ApplyBatch(ctx context.Context, evs []*events.Event, _ bool) error {
	for {
		prev, err := a.seenCheckpoint(ctx)
		if err != nil {
			return err
		}
		uow, err := a.uow.Begin()
		if err != nil {
			return err
		}
		todo := evs[:0:0]
		for _, ev := range evs {
			if ev.Sequence > prev {
				todo = append(todo, ev)
			}
		}
		if len(todo) == 0 {
			return nil
		}
		if err := uow.Prefetch(ctx, instanceKeys(todo)); err != nil {
			return err
		}
		t := a.tx(uow)
		conflict := false
		for _, ev := range todo {
			if err := t.apply(ctx, ev); err != nil {
				if !bus.IsPermanent(err) {
					return err
				}
				a.log.ErrorContext(ctx, "compliance projection skips event", "event", ev.ID, "error", err)
			}
			if uow.Pending() >= maxPending {
				ok, err := uow.Flush(ctx, prev)
				if err != nil {
					return err
				}
				if !ok {
					conflict = true
					break
				}
			}
		}
		last := todo[len(todo)-1].Sequence
		if !conflict {
			ok, err := uow.Commit(ctx, prev, last)
			if err != nil {
				return err
			}
			if ok {
				a.cpMu.Lock()
				a.applied += len(todo)
				a.cpMu.Unlock()
				a.setSeen(last)
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
	var out []domain.InstanceRef
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
// final ones, are kept under that day and never written again.
func (a txn) rollDay(ctx context.Context, ev *events.Event) error {
	if ev.Tenant == "" || ev.Time.IsZero() {
		return nil
	}
	day := ev.Time.UTC().Format(time.DateOnly)
	last, err := a.repo.LastDay(ctx, ev.Tenant)
	if err != nil {
		return err
	}
	if last >= day {
		return nil
	}
	if last != "" {
		if err := a.snapshot(ctx, ev.Tenant, "day", last, a.dayEnd(last)); err != nil {
			return err
		}
	}
	return a.repo.SetLastDay(ctx, ev.Tenant, day)
}

func (a txn) dayEnd(day string) time.Time {
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return time.Time{}
	}
	return d.Add(24*time.Hour - time.Nanosecond)
}

func (a txn) snapshot(ctx context.Context, tenant, kind, key string, at time.Time) error {
	r, err := a.report(ctx, tenant)
	if err != nil {
		return err
	}
	return a.repo.PutSnapshot(ctx, tenant, domain.Snapshot{Kind: kind, Key: key, At: at.UTC(), Report: r})
}

// baseline returns a published baseline. One the baselines projection has not seen yet is a
// retryable error while that projection catches up, and is waited for a moment after that;
// then it is unknown (false).
func (a txn) baseline(ctx context.Context, id string) (*domain.Baseline, error) {
	if id == "" {
		return nil, nil
	}
	deadline := time.Time{}
	for {
		b, found, err := a.repo.Baseline(ctx, id)
		if err != nil {
			return nil, err
		}
		if found {
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

// Applicable returns the baseline an instance is measured against: the newest baseline the
// tenant approved for the instance's OS family, else the baseline of the instance's latest
// run; nil when neither is known. This is the one place that decides it: when runs carry the
// cycle's per-OS-family pin, the pin goes here.
func (a txn) Applicable(ctx context.Context, in domain.Instance) (*domain.Baseline, error) {
	if in.OSFamily != "" {
		ap, found, err := a.repo.Approval(ctx, in.Tenant, in.OSFamily)
		if err != nil {
			return nil, err
		}
		if found {
			b, err := a.baseline(ctx, ap.BaselineID)
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
	where := map[string]*typesv1.Location{}
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

// approved records a tenant's approval and, when it is the family's newest, measures every
// instance of that family against it: an instance that misses its patches turns NON_COMPLIANT.
// Each instance re-measured takes the event's sequence, so a replay skips the ones done.
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
	cur, found, err := a.repo.Approval(ctx, ev.Tenant, family)
	if err != nil {
		return err
	}
	ref := func(x domain.Approval) baseline.Ref {
		return baseline.Ref{ID: x.BaselineID, OSFamily: x.OSFamily, Version: x.Version}
	}
	if found && baseline.Compare(ref(next), ref(cur)) < 0 {
		return nil // an older version approved late does not replace the newest
	}
	if err := a.repo.PutApproval(ctx, ev.Tenant, next); err != nil {
		return err
	}
	ids, err := a.repo.FamilyInstances(ctx, ev.Tenant, family)
	if err != nil {
		return err
	}
	if uow, ok := a.repo.(domain.UnitOfWork); ok {
		refs := make([]domain.InstanceRef, len(ids))
		for i, id := range ids {
			refs[i] = domain.InstanceRef{Tenant: ev.Tenant, ID: id}
		}
		if err := uow.Prefetch(ctx, refs); err != nil { // one round trip for the family
			return err
		}
	}
	for _, id := range ids {
		prev, found, err := a.repo.Instance(ctx, ev.Tenant, id)
		if err != nil {
			return err
		}
		if !found || prev.Seq >= ev.Sequence {
			continue
		}
		if err := a.save(ctx, prev, true, prev, ev.Sequence); err != nil {
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
