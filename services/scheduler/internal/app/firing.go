package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/calendar"
	libdesign "github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// ProjectionFiring names the projection of the firing's events (and approvals) and its
// checkpoint.
const ProjectionFiring = "firing"

// ClaimStore keeps the firing's durable records (adapters.Claims, a JetStream KV bucket):
// creates that one writer wins (domain.ErrClaimTaken for the others) and updates that expect
// the revision read.
type ClaimStore interface {
	Occurrence(ctx context.Context, tenant string, wave int32, key string) (domain.Occurrence, uint64, bool, error)
	CreateOccurrence(ctx context.Context, o domain.Occurrence) (uint64, error)
	UpdateOccurrence(ctx context.Context, o domain.Occurrence, rev uint64) (uint64, error)
	Cycle(ctx context.Context, tenant, cycle string) (domain.CyclePin, uint64, bool, error)
	CreateCycle(ctx context.Context, p domain.CyclePin) (uint64, error)
	UpdateCycle(ctx context.Context, p domain.CyclePin, rev uint64) error
	Seen(ctx context.Context, tenant string, wave int32, now int64) (int64, error)
}

// FiringRepo is the firing's read models (adapters.Store): the tenants' approvals and the
// runs' firing views.
type FiringRepo interface {
	SetApproval(ctx context.Context, tenant, baselineID string, approved bool) error
	Approved(ctx context.Context, tenant, baselineID string) (bool, error)
	PutFiring(ctx context.Context, v domain.FiringView) error
	Firing(ctx context.Context, tenant, runID string) (domain.FiringView, bool, error)
	Firings(ctx context.Context, tenant string) ([]domain.FiringView, error)
}

// DesignReader is what firing reads of the service design: libs/design's watched view.
type DesignReader interface {
	// Ready is closed once the view has the design's initial values.
	Ready() <-chan struct{}
	Tenants() []libdesign.Tenant
	Tenant(id string) (libdesign.Tenant, bool)
	Global() libdesign.Global
}

// FiringConfig configures the firing.
type FiringConfig struct {
	// Lookback bounds how far back an occurrence's window may have ended and still be recorded
	// (MISSED) when no scheduler ran during it. Default 40 days: a deferral is at most 30.
	Lookback time.Duration
	// Lease is how long a claim to start a run belongs to its claimant before another replica
	// starts the run in its place (after a crash between the claim and the RunStarted).
	// Default 30 s.
	Lease time.Duration
}

// Firing fires the waves' occurrences from the calendar: deterministic run ids, claims in KV,
// the cycles' pins, the approval wait and the wave gate, and the operators' release, skip and
// patch now.
type Firing struct {
	cfg    FiringConfig
	app    *Application
	claims ClaimStore
	repo   FiringRepo
	design DesignReader
	log    *slog.Logger

	ready     chan struct{}
	readyOnce sync.Once

	mu    sync.Mutex
	final map[string]bool // occurrences whose record is final and announced
	seen  map[string]time.Time
	kick  chan struct{}
}

// NewFiring returns the firing over a's runs.
func NewFiring(cfg FiringConfig, a *Application, claims ClaimStore, repo FiringRepo, d DesignReader) *Firing {
	if cfg.Lookback == 0 {
		cfg.Lookback = 40 * 24 * time.Hour
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
	}
	f := &Firing{
		cfg: cfg, app: a, claims: claims, repo: repo, design: d, log: a.log,
		final: map[string]bool{}, seen: map[string]time.Time{}, kick: make(chan struct{}, 1), ready: make(chan struct{}),
	}
	a.firing = f
	return f
}

// CaughtUp marks the firing's read models ready (approvals, firing views).
func (f *Firing) CaughtUp(context.Context) error {
	f.readyOnce.Do(func() { close(f.ready) })
	return nil
}

// waitReady waits for the application's read models and the firing's.
func (f *Firing) waitReady(ctx context.Context) error {
	if _, err := f.app.waitReady(ctx); err != nil {
		return err
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	for _, ch := range []<-chan struct{}{f.ready, f.design.Ready()} {
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("%w: the scheduler's firing is still catching up with the event stream and the design", domain.ErrUnavailable)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", domain.ErrUnavailable, ctx.Err())
		}
	}
	return nil
}

// Kick asks the loop to evaluate the occurrences now (an approval arrived, a run completed).
func (f *Firing) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run evaluates the occurrences every interval (and when kicked) until ctx is done.
func (f *Firing) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := f.Tick(ctx); err != nil && ctx.Err() == nil {
			f.log.WarnContext(ctx, "firing: tick failed; trying again", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-f.kick:
		}
	}
}

// Tick evaluates every wave's occurrences whose nominal start has come, at the clock's now:
// it fires those whose window is open (or holds them, or makes them wait for approval), records
// the skipped, deferred and missed ones, and repairs what a crash left half done. Waves are
// independent: an error in one is logged and the others go on; the first error is returned.
func (f *Firing) Tick(ctx context.Context) error {
	if err := f.waitReady(ctx); err != nil {
		return err
	}
	now := f.app.clock().UTC()
	global := f.design.Global().Design
	sp := &starts{sem: make(chan struct{}, maxStarts)}
	var first error
	for _, t := range f.design.Tenants() {
		doc := t.Design
		tenant := doc.GetTenant().GetTenantId()
		for _, w := range sortedWaves(doc) {
			if err := f.tickWave(ctx, sp, now, tenant, doc, global, w); err != nil {
				f.log.WarnContext(ctx, "firing: wave failed", "tenant", tenant, "wave", w.GetNumber(), "error", err)
				if first == nil {
					first = err
				}
			}
		}
	}
	if err := sp.wait(); err != nil && first == nil {
		first = err
	}
	return first
}

// maxStarts bounds the runs one tick starts at once (each discovers its wave).
const maxStarts = 8

// starts runs the run starts of one tick concurrently, at most maxStarts at once, so a large
// wave's discovery does not hold up the other tenants' decisions; it keeps the first error. A
// nil *starts runs them inline (a release answers its run).
type starts struct {
	sem chan struct{}
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

func (s *starts) run(fn func() error) error {
	if s == nil {
		return fn()
	}
	s.sem <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer func() { <-s.sem; s.wg.Done() }()
		if err := fn(); err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
		}
	}()
	return nil
}

func (s *starts) wait() error {
	s.wg.Wait()
	return s.err
}

func sortedWaves(doc *typesv1.TenantDesign) []*typesv1.Wave {
	waves := slices.Clone(doc.GetWaves())
	slices.SortFunc(waves, func(a, b *typesv1.Wave) int { return int(a.GetNumber()) - int(b.GetNumber()) })
	return waves
}

func (f *Firing) tickWave(ctx context.Context, sp *starts, now time.Time, tenant string, doc *typesv1.TenantDesign, global *typesv1.GlobalDesign, w *typesv1.Wave) error {
	s, o, err := design.WaveCalendar(doc, global, w)
	if err != nil {
		return err
	}
	seen, err := f.seenAt(ctx, tenant, w.GetNumber(), now)
	if err != nil {
		return err
	}
	from := now.Add(-f.cfg.Lookback)
	if seen.After(from) {
		from = seen
	}
	occs, err := calendar.Occurrences(s, o, from, 4)
	if err != nil {
		return err
	}
	for _, occ := range occs {
		if occ.OriginalStart.After(now) {
			break
		}
		if err := f.step(ctx, sp, now, tenant, doc, w, occ); err != nil {
			return fmt.Errorf("occurrence %s: %w", occ.Key, err)
		}
	}
	return nil
}

// seenAt is when firing first saw the wave: occurrences whose window ended before are not
// firing's (the wave, or the scheduler, did not exist), so they are neither fired nor missed.
func (f *Firing) seenAt(ctx context.Context, tenant string, wave int32, now time.Time) (time.Time, error) {
	k := tenant + "/" + strconv.Itoa(int(wave))
	f.mu.Lock()
	at, ok := f.seen[k]
	f.mu.Unlock()
	if ok {
		return at, nil
	}
	sec, err := f.claims.Seen(ctx, tenant, wave, now.Unix())
	if err != nil {
		return time.Time{}, err
	}
	at = time.Unix(sec, 0).UTC()
	f.mu.Lock()
	f.seen[k] = at
	f.mu.Unlock()
	return at, nil
}

func finalKey(tenant string, wave int32, key string) string {
	return tenant + "/" + strconv.Itoa(int(wave)) + "/" + key
}

// step moves one occurrence on.
func (f *Firing) step(ctx context.Context, sp *starts, now time.Time, tenant string, doc *typesv1.TenantDesign, w *typesv1.Wave, occ calendar.Occurrence) error {
	wave := w.GetNumber()
	fk := finalKey(tenant, wave, occ.Key)
	f.mu.Lock()
	done := f.final[fk]
	f.mu.Unlock()
	if done {
		return nil
	}
	rec, rev, ok, err := f.claims.Occurrence(ctx, tenant, wave, occ.Key)
	if err != nil {
		return err
	}
	var recp *domain.Occurrence
	if ok {
		recp = &rec
		if rec.Pending {
			if rev, err = f.announce(ctx, rec, rev); err != nil {
				return err
			}
			rec.Pending = false
		}
	}
	switch domain.Decide(now, occ, recp) {
	case domain.StepNone:
		if ok && (domain.RunFinal(rec.State) || (rec.State == typesv1.RunState_RUN_STATE_RUNNING && rec.Confirmed)) {
			f.mu.Lock()
			f.final[fk] = true
			f.mu.Unlock()
		}
		return nil
	case domain.StepDefer:
		n := newRecord(tenant, wave, occ, now)
		n.State, n.Reason = typesv1.RunState_RUN_STATE_SCHEDULED, occ.Reason
		return f.write(ctx, n, recp, rev)
	case domain.StepSkip:
		n := newRecord(tenant, wave, occ, now)
		n.State, n.Cause = domain.SkipOf(occ.Status)
		n.Reason = occ.Reason
		return f.write(ctx, n, recp, rev)
	case domain.StepMiss:
		n := newRecord(tenant, wave, occ, now)
		if recp != nil {
			n = *recp
		}
		n.State, n.Cause, n.UpdatedAt = typesv1.RunState_RUN_STATE_MISSED, domain.MissCause(recp), now
		n.Reason = missReason(n.Cause, occ)
		return f.write(ctx, n, recp, rev)
	case domain.StepRecover:
		if now.Sub(rec.UpdatedAt) < f.cfg.Lease {
			return nil
		}
		// Take the claim over (one replica wins the update), then start the run again.
		rec.UpdatedAt = now
		newRev, err := f.claims.UpdateOccurrence(ctx, rec, rev)
		if errors.Is(err, domain.ErrClaimTaken) {
			return nil
		}
		if err != nil {
			return err
		}
		f.log.InfoContext(ctx, "firing: starting a run whose claimant did not confirm it", "tenant", tenant, "wave", wave, "key", occ.Key, "run_id", rec.RunID)
		return sp.run(func() error { return f.start(ctx, rec, newRev) })
	case domain.StepEvaluate:
		n := newRecord(tenant, wave, occ, now)
		if recp != nil {
			n.Released, n.ReleasedBy, n.ReleaseReason = recp.Released, recp.ReleasedBy, recp.ReleaseReason
		}
		return f.evaluate(ctx, sp, now, doc, n, recp, rev)
	}
	return nil
}

func missReason(cause string, occ calendar.Occurrence) string {
	end := occ.End.UTC().Format(time.RFC3339)
	switch cause {
	case domain.CauseApproval:
		return "the window closed at " + end + " while the run waited for the tenant's approval of its baseline"
	case domain.CauseHeld:
		return "the window closed at " + end + " while the wave gate held the run"
	}
	return "no scheduler fired the occurrence while its window was open (it closed at " + end + ")"
}

func newRecord(tenant string, wave int32, occ calendar.Occurrence, now time.Time) domain.Occurrence {
	return domain.Occurrence{
		Tenant: tenant, Wave: wave, Key: occ.Key, RunID: domain.OccurrenceRunID(tenant, wave, occ.Key),
		Start: occ.Start.UTC(), End: occ.End.UTC(), OriginalStart: occ.OriginalStart.UTC(),
		DispatchStopAt: occ.DispatchStopAt, Freezes: occ.Freezes, Trigger: domain.TriggerSchedule, UpdatedAt: now,
	}
}

// evaluate decides a run whose window is open: held by the gate, waiting for approval, or
// started (claimed RUNNING, then started).
func (f *Firing) evaluate(ctx context.Context, sp *starts, now time.Time, doc *typesv1.TenantDesign, n domain.Occurrence, cur *domain.Occurrence, rev uint64) error {
	if !n.Released {
		gate, err := f.gate(ctx, doc, n.Wave, n.Key)
		if err != nil {
			return err
		}
		if !gate.Pass {
			n.State, n.Gate, n.Reason = typesv1.RunState_RUN_STATE_HELD, &gate, gate.Reason
			if cur != nil && cur.State == n.State && cur.Reason == n.Reason {
				return nil
			}
			return f.write(ctx, n, cur, rev)
		}
	}
	pin, err := f.cyclePin(ctx, n.Tenant, n.Key, n.RunID, now)
	if err != nil {
		if errors.Is(err, domain.ErrFailedPrecondition) {
			n.State, n.Reason = typesv1.RunState_RUN_STATE_WAITING_APPROVAL, err.Error()
			if cur != nil && cur.State == n.State && cur.Reason == n.Reason {
				return nil
			}
			return f.write(ctx, n, cur, rev)
		}
		return err
	}
	unapproved, err := f.unapproved(ctx, n.Tenant, pin.Pins)
	if err != nil {
		return err
	}
	n.Pins = pin.Pins
	if len(unapproved) > 0 {
		n.State, n.Unapproved = typesv1.RunState_RUN_STATE_WAITING_APPROVAL, unapproved
		n.Reason = "the tenant has not approved the cycle's baseline " + strings.Join(unapproved, ", ")
		if cur != nil && cur.State == n.State && slices.Equal(cur.Unapproved, unapproved) {
			return nil
		}
		return f.write(ctx, n, cur, rev)
	}
	n.State, n.Confirmed, n.Reason = typesv1.RunState_RUN_STATE_RUNNING, false, ""
	newRev, err := f.put(ctx, n, cur, rev)
	if errors.Is(err, domain.ErrClaimTaken) {
		return nil // another replica claimed it: it starts the run
	}
	if err != nil {
		return err
	}
	return sp.run(func() error { return f.start(ctx, n, newRev) })
}

// gate reads the wave gate of a run of wave from the lower waves' records of the cycle.
func (f *Firing) gate(ctx context.Context, doc *typesv1.TenantDesign, wave int32, key string) (domain.Gate, error) {
	tenant := doc.GetTenant().GetTenantId()
	var lower []domain.PreviousWave
	waves := sortedWaves(doc)
	for i := len(waves) - 1; i >= 0; i-- {
		w := waves[i]
		if w.GetNumber() >= wave {
			continue
		}
		p := domain.PreviousWave{Wave: w.GetNumber(), ThresholdPercent: threshold(doc, w)}
		rec, _, ok, err := f.claims.Occurrence(ctx, tenant, w.GetNumber(), key)
		if err != nil {
			return domain.Gate{}, err
		}
		if ok {
			p.Record = &rec
			if rec.State == typesv1.RunState_RUN_STATE_RUNNING {
				r, found, err := f.app.repo.Run(ctx, tenant, rec.RunID)
				if err != nil {
					return domain.Gate{}, err
				}
				if found {
					p.Run = &r
				}
			}
		}
		lower = append(lower, p)
	}
	return domain.EvaluateGate(lower), nil
}

// threshold is a wave's success threshold: its policy's, else the tenant default policy's,
// else the built-in default.
func threshold(doc *typesv1.TenantDesign, w *typesv1.Wave) int32 {
	p := w.GetPolicy()
	if p == nil {
		p = doc.GetTenant().GetDefaultPolicy()
	}
	return design.NormalizePolicy(p).GetSuccessThresholdPercent()
}

// cyclePin returns the tenant cycle's pin, pinning it now (newest published baseline per OS
// family) when it is the cycle's first run; one writer wins the pin, the others read it. A pin
// whose CyclePinned event may not be stored yet (its writer crashed) is announced again.
func (f *Firing) cyclePin(ctx context.Context, tenant, cycle, runID string, now time.Time) (domain.CyclePin, error) {
	p, rev, ok, err := f.claims.Cycle(ctx, tenant, cycle)
	if err != nil {
		return domain.CyclePin{}, err
	}
	if !ok {
		published, err := f.app.repo.Baselines(ctx)
		if err != nil {
			return domain.CyclePin{}, err
		}
		pins, err := domain.ChoosePins(published)
		if err != nil {
			return domain.CyclePin{}, err
		}
		p = domain.CyclePin{Tenant: tenant, Cycle: cycle, Pins: pins, RunID: runID, PinnedAt: now}
		rev, err = f.claims.CreateCycle(ctx, p)
		switch {
		case errors.Is(err, domain.ErrClaimTaken): // another replica pinned it: its pin stands
			if p, rev, ok, err = f.claims.Cycle(ctx, tenant, cycle); err == nil && !ok {
				err = fmt.Errorf("cycle %s of %s: pinned but not readable", cycle, tenant)
			}
			if err != nil {
				return domain.CyclePin{}, err
			}
		case err != nil:
			return domain.CyclePin{}, err
		default:
			f.log.InfoContext(ctx, "cycle pinned", "tenant", tenant, "cycle", cycle, "baselines", domain.PinIDs(pins))
		}
	}
	if !p.Announced {
		if err := f.announceCycle(ctx, p, rev); err != nil {
			// The pin stands; its event is announced by the next reader.
			f.log.WarnContext(ctx, "firing: cycle pinned but its event not published yet", "tenant", tenant, "cycle", cycle, "error", err)
		}
	}
	return p, nil
}

// announceCycle publishes a cycle's CyclePinned (id from the cycle, so a repeat is stored once)
// and marks the pin announced.
func (f *Firing) announceCycle(ctx context.Context, p domain.CyclePin, rev uint64) error {
	ev, err := events.New(p.Tenant, p.Cycle, &eventsv1.CyclePinned{
		Tenant: p.Tenant, Cycle: p.Cycle, Pins: pinsOut(p.Pins), RunId: p.RunID, PinnedAt: timestamppb.New(p.PinnedAt),
	})
	if err != nil {
		return err
	}
	ev.Time = p.PinnedAt
	if err := f.publish(ctx, ev); err != nil {
		return err
	}
	p.Announced = true
	if err := f.claims.UpdateCycle(ctx, p, rev); err != nil && !errors.Is(err, domain.ErrClaimTaken) {
		return err
	}
	return nil
}

func pinsOut(pins []domain.Pin) []*typesv1.BaselinePin {
	out := make([]*typesv1.BaselinePin, len(pins))
	for i, p := range pins {
		out[i] = &typesv1.BaselinePin{OsFamily: p.OSFamily, BaselineId: p.BaselineID, Version: p.Version, PatchIds: p.PatchIDs}
	}
	return out
}

func (f *Firing) unapproved(ctx context.Context, tenant string, pins []domain.Pin) ([]string, error) {
	var ferr error
	out := domain.Unapproved(pins, func(id string) bool {
		ok, err := f.repo.Approved(ctx, tenant, id)
		if err != nil && ferr == nil {
			ferr = err
		}
		return ok
	})
	return out, ferr
}

// start starts a run claimed RUNNING through the scheduler's start-run path (the same id
// every time, so a repeat answers the run already started) and confirms it. A run that
// cannot start (the design no longer defines the wave, say) is recorded MISSED with why.
func (f *Firing) start(ctx context.Context, rec domain.Occurrence, rev uint64) error {
	cmd := domain.StartRun{
		Tenant: rec.Tenant, Wave: rec.Wave, RunID: rec.RunID, Pins: rec.Pins,
		Firing: firingRef(rec), Window: &domain.Window{End: rec.End, FreezeStart: rec.DispatchStopAt},
	}
	if !rec.DispatchStopAt.IsZero() {
		cmd.Window.FreezeNote = strings.Join(rec.Freezes, ", ")
	}
	if len(cmd.Pins) == 0 {
		p, _, ok, err := f.claims.Cycle(ctx, rec.Tenant, rec.Key)
		if err != nil {
			return err
		}
		if ok {
			cmd.Pins = p.Pins
		}
	}
	_, rev, err := f.startRenewing(ctx, cmd, rec, rev)
	switch {
	case err == nil:
	case errors.Is(err, domain.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		rec.State, rec.Cause, rec.Reason = typesv1.RunState_RUN_STATE_MISSED, domain.CauseFailed, "the run could not start: "+err.Error()
		rec.UpdatedAt = f.app.clock().UTC()
		return f.write(ctx, rec, &rec, rev)
	}
	rec.Confirmed, rec.UpdatedAt = true, f.app.clock().UTC()
	if _, err := f.claims.UpdateOccurrence(ctx, rec, rev); err != nil && !errors.Is(err, domain.ErrClaimTaken) {
		return err
	}
	f.log.InfoContext(ctx, "occurrence fired", "tenant", rec.Tenant, "wave", rec.Wave, "key", rec.Key, "run_id", rec.RunID)
	return nil
}

// startRenewing runs StartRun while renewing the claim every third of the lease (discovering a
// large wave takes a while), so no other replica takes over a start in progress. It returns
// the claim's revision after the renewals.
func (f *Firing) startRenewing(ctx context.Context, cmd domain.StartRun, rec domain.Occurrence, rev uint64) (domain.Run, uint64, error) {
	stop, done := make(chan struct{}), make(chan struct{})
	cur := rev
	go func() {
		defer close(done)
		t := time.NewTicker(f.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rec.UpdatedAt = f.app.clock().UTC()
				if n, err := f.claims.UpdateOccurrence(ctx, rec, cur); err == nil {
					cur = n
				} else {
					f.log.WarnContext(ctx, "firing: could not renew the claim", "run_id", rec.RunID, "error", err)
				}
			}
		}
	}()
	r, err := f.app.StartRun(ctx, cmd)
	close(stop)
	<-done
	return r, cur, err
}

func firingRef(rec domain.Occurrence) *typesv1.FiringRef {
	r := &typesv1.FiringRef{
		OccurrenceKey: rec.Key, Cycle: rec.Key, Trigger: rec.Trigger, Actor: rec.Actor, Reason: rec.ActorReason,
	}
	if rec.Trigger == "" {
		r.Trigger = domain.TriggerSchedule
	}
	if rec.Released {
		r.Actor, r.Reason = rec.ReleasedBy, rec.ReleaseReason
	}
	if !rec.Start.IsZero() {
		r.WindowStart, r.WindowEnd = timestamppb.New(rec.Start), timestamppb.New(rec.End)
	}
	if !rec.DispatchStopAt.IsZero() {
		r.DispatchStopAt = timestamppb.New(rec.DispatchStopAt)
	}
	return r
}

// write stores a record's new state with its event pending, publishes the event and clears
// the flag. Losing the race to another writer is not an error: the winner's record stands.
func (f *Firing) write(ctx context.Context, n domain.Occurrence, cur *domain.Occurrence, rev uint64) error {
	n.Pending = true
	newRev, err := f.put(ctx, n, cur, rev)
	if errors.Is(err, domain.ErrClaimTaken) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = f.announce(ctx, n, newRev)
	return err
}

func (f *Firing) put(ctx context.Context, n domain.Occurrence, cur *domain.Occurrence, rev uint64) (uint64, error) {
	if cur == nil {
		return f.claims.CreateOccurrence(ctx, n)
	}
	return f.claims.UpdateOccurrence(ctx, n, rev)
}

// announce publishes the event of a record's state at revision rev (its id derives from the
// run and the revision, so a repeat is stored once) and clears the pending flag; it returns
// the record's revision after that.
func (f *Firing) announce(ctx context.Context, rec domain.Occurrence, rev uint64) (uint64, error) {
	ev, err := f.eventOf(rec, rev)
	if err != nil {
		return 0, err
	}
	if ev != nil {
		if err := f.publish(ctx, ev); err != nil {
			return 0, err
		}
		f.log.InfoContext(ctx, "occurrence "+strings.ToLower(domain.RunStateName(rec.State)), "tenant", rec.Tenant,
			"wave", rec.Wave, "key", rec.Key, "run_id", rec.RunID, "reason", rec.Reason)
	}
	rec.Pending = false
	n, err := f.claims.UpdateOccurrence(ctx, rec, rev)
	if errors.Is(err, domain.ErrClaimTaken) {
		// Someone else announced it (or moved the record on); reread on the next step.
		return rev, nil
	}
	return n, err
}

func (f *Firing) publish(ctx context.Context, evs ...*events.Event) error {
	p := f.app.publisher()
	if p == nil {
		return fmt.Errorf("%w: the scheduler is not connected to the bus", domain.ErrUnavailable)
	}
	return p.Publish(ctx, evs...)
}

// eventOf is the event of a record's state; nil for a state without one.
func (f *Firing) eventOf(rec domain.Occurrence, rev uint64) (*events.Event, error) {
	at := timestamppb.New(rec.UpdatedAt)
	ref := firingRef(rec)
	var msg proto.Message
	switch rec.State {
	case typesv1.RunState_RUN_STATE_SCHEDULED:
		msg = &eventsv1.RunDeferred{Tenant: rec.Tenant, RunId: rec.RunID, Wave: rec.Wave, Firing: ref,
			OriginalStart: timestamppb.New(rec.OriginalStart), Freezes: rec.Freezes, Reason: rec.Reason, At: at}
	case typesv1.RunState_RUN_STATE_SKIPPED_FROZEN, typesv1.RunState_RUN_STATE_SKIPPED:
		msg = &eventsv1.RunSkipped{Tenant: rec.Tenant, RunId: rec.RunID, Wave: rec.Wave, Firing: ref, State: rec.State,
			Cause: rec.Cause, Freezes: rec.Freezes, Reason: rec.Reason, At: at}
	case typesv1.RunState_RUN_STATE_MISSED:
		msg = &eventsv1.RunMissed{Tenant: rec.Tenant, RunId: rec.RunID, Wave: rec.Wave, Firing: ref, Cause: rec.Cause, Reason: rec.Reason, At: at}
	case typesv1.RunState_RUN_STATE_WAITING_APPROVAL:
		msg = &eventsv1.RunWaitingApproval{Tenant: rec.Tenant, RunId: rec.RunID, Wave: rec.Wave, Firing: ref,
			Pins: pinsOut(rec.Pins), UnapprovedBaselineIds: rec.Unapproved, At: at}
	case typesv1.RunState_RUN_STATE_HELD:
		if rec.Released {
			msg = &eventsv1.RunReleased{Tenant: rec.Tenant, RunId: rec.RunID, Wave: rec.Wave, Actor: rec.ReleasedBy, Reason: rec.ReleaseReason, At: at}
			break
		}
		h := &eventsv1.RunHeld{Tenant: rec.Tenant, RunId: rec.RunID, Wave: rec.Wave, Firing: ref, Reason: rec.Reason, At: at}
		if g := rec.Gate; g != nil {
			h.GateWave, h.GateRunId, h.ThresholdPercent, h.SuccessPercent, h.GateComplete = g.GateWave, g.GateRunID, g.ThresholdPercent, g.SuccessPercent, g.Complete
		}
		msg = h
	default:
		return nil, nil
	}
	ev, err := events.New(rec.Tenant, rec.RunID+"/"+strconv.FormatUint(rev, 10), msg)
	if err != nil {
		return nil, err
	}
	ev.Time = rec.UpdatedAt
	return ev, nil
}

// occurrenceOf finds a run's occurrence record from its firing view.
func (f *Firing) occurrenceOf(ctx context.Context, tenant, runID string) (domain.Occurrence, uint64, error) {
	v, ok, err := f.repo.Firing(ctx, tenant, runID)
	if err != nil {
		return domain.Occurrence{}, 0, err
	}
	if !ok || v.Key == "" {
		return domain.Occurrence{}, 0, fmt.Errorf("%w: run %s of tenant %s is not an occurrence of a wave", domain.ErrNotFound, runID, tenant)
	}
	rec, rev, ok, err := f.claims.Occurrence(ctx, tenant, v.Wave, v.Key)
	if err != nil {
		return domain.Occurrence{}, 0, err
	}
	if !ok {
		return domain.Occurrence{}, 0, fmt.Errorf("%w: run %s of tenant %s", domain.ErrNotFound, runID, tenant)
	}
	return rec, rev, nil
}

// Operator is a decision by an operator: who (the credential's subject) and why.
type Operator struct {
	Actor  string
	Reason string
}

func (o Operator) validate() error {
	var v apierr.Violations
	switch r := strings.TrimSpace(o.Reason); {
	case r == "":
		v.Add("reason", "is required: say why (it is audited)")
	case len(o.Reason) > 1000:
		v.Add("reason", fmt.Sprintf("must be at most 1000 characters, got %d", len(o.Reason)))
	}
	return v.Err()
}

// operatorOccurrence checks an operator's request about a run (the run, the actor and the
// reason), and reads the run's occurrence once firing has caught up.
func (f *Firing) operatorOccurrence(ctx context.Context, ref domain.RunRef, op Operator) (domain.Occurrence, uint64, error) {
	if err := errors.Join(ref.Validate(), op.validate()); err != nil {
		return domain.Occurrence{}, 0, firstValidation(err)
	}
	if err := f.app.design.RequireTenant(ctx, ref.Tenant); err != nil {
		return domain.Occurrence{}, 0, err
	}
	if err := f.waitReady(ctx); err != nil {
		return domain.Occurrence{}, 0, err
	}
	return f.occurrenceOf(ctx, ref.Tenant, ref.RunID)
}

// Release releases a run held by the wave gate: it starts now if its window is open and the
// tenant approved its cycle's pin (else it waits for the approval). Another state is
// FailedPrecondition naming it; a window already closed too.
func (f *Firing) Release(ctx context.Context, ref domain.RunRef, op Operator) (domain.Run, error) {
	rec, rev, err := f.operatorOccurrence(ctx, ref, op)
	if err != nil {
		return domain.Run{}, err
	}
	if rec.State != typesv1.RunState_RUN_STATE_HELD || rec.Released {
		return domain.Run{}, &domain.TransitionError{Kind: "run", ID: rec.RunID, From: domain.RunStateName(rec.State), To: "release", Allowed: []string{"HELD"}}
	}
	now := f.app.clock().UTC()
	if !now.Before(rec.End) {
		return domain.Run{}, fmt.Errorf("%w: run %s: its window closed at %s (it is recorded MISSED)", domain.ErrFailedPrecondition, rec.RunID, rec.End.Format(time.RFC3339))
	}
	rec.Released, rec.ReleasedBy, rec.ReleaseReason, rec.UpdatedAt, rec.Pending = true, op.Actor, op.Reason, now, true
	newRev, err := f.claims.UpdateOccurrence(ctx, rec, rev)
	if errors.Is(err, domain.ErrClaimTaken) {
		return domain.Run{}, fmt.Errorf("%w: run %s changed meanwhile; read it and try again", domain.ErrFailedPrecondition, rec.RunID)
	}
	if err != nil {
		return domain.Run{}, err
	}
	if newRev, err = f.announce(ctx, rec, newRev); err != nil {
		return domain.Run{}, err
	}
	rec.Pending = false
	doc, ok := f.design.Tenant(ref.Tenant)
	if !ok {
		return domain.Run{}, fmt.Errorf("%w: tenant %s", domain.ErrNotFound, ref.Tenant)
	}
	if err := f.evaluate(ctx, nil, now, doc.Design, rec, &rec, newRev); err != nil {
		return domain.Run{}, err
	}
	return f.view(ctx, ref.Tenant, rec.Wave, rec.Key)
}

// Skip skips a run held by the wave gate or waiting for approval (SKIPPED, cause operator).
func (f *Firing) Skip(ctx context.Context, ref domain.RunRef, op Operator) (domain.Run, error) {
	rec, rev, err := f.operatorOccurrence(ctx, ref, op)
	if err != nil {
		return domain.Run{}, err
	}
	if rec.State != typesv1.RunState_RUN_STATE_HELD && rec.State != typesv1.RunState_RUN_STATE_WAITING_APPROVAL {
		return domain.Run{}, &domain.TransitionError{Kind: "run", ID: rec.RunID, From: domain.RunStateName(rec.State), To: "SKIPPED", Allowed: []string{"HELD", "WAITING_APPROVAL"}}
	}
	rec.State, rec.Cause, rec.Reason = typesv1.RunState_RUN_STATE_SKIPPED, domain.CauseOperator, "skipped by "+op.Actor+": "+op.Reason
	rec.Actor, rec.ActorReason, rec.UpdatedAt, rec.Pending = op.Actor, op.Reason, f.app.clock().UTC(), true
	newRev, err := f.claims.UpdateOccurrence(ctx, rec, rev)
	if errors.Is(err, domain.ErrClaimTaken) {
		return domain.Run{}, fmt.Errorf("%w: run %s changed meanwhile; read it and try again", domain.ErrFailedPrecondition, rec.RunID)
	}
	if err != nil {
		return domain.Run{}, err
	}
	if _, err := f.announce(ctx, rec, newRev); err != nil {
		return domain.Run{}, err
	}
	return f.view(ctx, ref.Tenant, rec.Wave, rec.Key)
}

// view answers a run as its occurrence record says now (the read model follows).
func (f *Firing) view(ctx context.Context, tenant string, wave int32, key string) (domain.Run, error) {
	rec, _, ok, err := f.claims.Occurrence(ctx, tenant, wave, key)
	if err != nil {
		return domain.Run{}, err
	}
	if !ok {
		return domain.Run{}, fmt.Errorf("%w: occurrence %s of wave %d", domain.ErrNotFound, key, wave)
	}
	if rec.State == typesv1.RunState_RUN_STATE_RUNNING {
		if r, found, err := f.app.repo.Run(ctx, tenant, rec.RunID); err != nil || found {
			return withFiring(r, viewOf(rec)), err
		}
	}
	return runOfView(viewOf(rec)), nil
}

func viewOf(rec domain.Occurrence) domain.FiringView {
	return domain.FiringView{
		Tenant: rec.Tenant, RunID: rec.RunID, Wave: rec.Wave, Key: rec.Key, Cycle: rec.Key, Trigger: rec.Trigger,
		State: rec.State, WindowStart: rec.Start, WindowEnd: rec.End, Reason: rec.Reason, At: rec.UpdatedAt,
	}
}

// PatchNow starts a run of a wave now, outside its schedule, with the pin of the cycle of the
// wave's current (or next) occurrence; the tenant must have approved it. The wave gate does
// not apply: the operator decides.
func (f *Firing) PatchNow(ctx context.Context, tenant string, wave int32, requestID string, op Operator) (domain.Run, error) {
	cmd := domain.StartRun{Tenant: tenant, Wave: wave, RequestID: requestID}
	if err := errors.Join(cmd.Validate(design.MaxWaveLimit), op.validate()); err != nil {
		return domain.Run{}, firstValidation(err)
	}
	if _, err := f.app.design.RunScope(ctx, tenant, wave); err != nil {
		return domain.Run{}, err
	}
	if err := f.waitReady(ctx); err != nil {
		return domain.Run{}, err
	}
	now := f.app.clock().UTC()
	cycle := now.Format("2006-01")
	t, ok := f.design.Tenant(tenant)
	if !ok {
		return domain.Run{}, fmt.Errorf("%w: tenant %s is not in the service design", domain.ErrNotFound, tenant)
	}
	for _, w := range t.Design.GetWaves() {
		if w.GetNumber() != wave {
			continue
		}
		s, o, err := design.WaveCalendar(t.Design, f.design.Global().Design, w)
		if err != nil {
			return domain.Run{}, err
		}
		if next, ok, err := calendar.Next(s, o, now); err != nil {
			return domain.Run{}, err
		} else if ok {
			cycle = next.Key
		}
	}
	if requestID != "" {
		cmd.RunID = domain.RunIDForRequest(tenant, wave, "patch-now\x00"+requestID)
		if r, found, err := f.app.repo.Run(ctx, tenant, cmd.RunID); err != nil || found {
			return r, err
		}
	} else {
		id, err := domain.NewRunID(now, f.app.rand)
		if err != nil {
			return domain.Run{}, err
		}
		cmd.RunID = id
	}
	cmd.RequestID = ""
	pin, err := f.cyclePin(ctx, tenant, cycle, cmd.RunID, now)
	if err != nil {
		return domain.Run{}, err
	}
	unapproved, err := f.unapproved(ctx, tenant, pin.Pins)
	if err != nil {
		return domain.Run{}, err
	}
	if len(unapproved) > 0 {
		return domain.Run{}, fmt.Errorf("%w: the tenant has not approved the baseline of cycle %s: %s (POST /v1/tenants/%s/approvals/{baselineId}:approve)",
			domain.ErrFailedPrecondition, cycle, strings.Join(unapproved, ", "), tenant)
	}
	cmd.Pins = pin.Pins
	cmd.Firing = &typesv1.FiringRef{Cycle: cycle, Trigger: domain.TriggerPatchNow, Actor: op.Actor, Reason: op.Reason}
	r, err := f.app.StartRun(ctx, cmd)
	if err != nil {
		return domain.Run{}, err
	}
	f.log.InfoContext(ctx, "patch now", "tenant", tenant, "wave", wave, "run_id", r.ID, "cycle", cycle, "actor", op.Actor, "reason", op.Reason)
	r.Cycle, r.Trigger = cycle, domain.TriggerPatchNow
	return r, nil
}

// ApplyFiring is the firing projection: the tenants' approvals, and every run's firing view
// from the firing's events and RunStarted. When live, an approval or a completed run kicks
// the firing loop (a waiting run may start, a held one pass its gate).
func (f *Firing) ApplyFiring(ctx context.Context, ev *events.Event, live bool) error {
	tenant := ev.Tenant
	at := ev.Time
	var v *domain.FiringView
	kick := false
	switch m := ev.Data.(type) {
	case *eventsv1.BaselineApproved:
		if err := f.repo.SetApproval(ctx, tenant, m.GetBaselineId(), true); err != nil {
			return err
		}
		kick = true
	case *eventsv1.BaselineRejected:
		if err := f.repo.SetApproval(ctx, tenant, m.GetBaselineId(), false); err != nil {
			return err
		}
	case *eventsv1.RunCompleted:
		kick = true
	case *eventsv1.RunStarted:
		if m.GetFiring() != nil {
			v = fromRef(tenant, m.GetRunId(), m.GetWave(), typesv1.RunState_RUN_STATE_RUNNING, m.GetFiring(), "", at)
		}
	case *eventsv1.RunDeferred:
		v = fromRef(tenant, m.GetRunId(), m.GetWave(), typesv1.RunState_RUN_STATE_SCHEDULED, m.GetFiring(), m.GetReason(), at)
	case *eventsv1.RunSkipped:
		v = fromRef(tenant, m.GetRunId(), m.GetWave(), m.GetState(), m.GetFiring(), m.GetReason(), at)
	case *eventsv1.RunMissed:
		v = fromRef(tenant, m.GetRunId(), m.GetWave(), typesv1.RunState_RUN_STATE_MISSED, m.GetFiring(), m.GetReason(), at)
	case *eventsv1.RunWaitingApproval:
		reason := "the tenant has not approved the cycle's baseline " + strings.Join(m.GetUnapprovedBaselineIds(), ", ")
		v = fromRef(tenant, m.GetRunId(), m.GetWave(), typesv1.RunState_RUN_STATE_WAITING_APPROVAL, m.GetFiring(), reason, at)
	case *eventsv1.RunHeld:
		v = fromRef(tenant, m.GetRunId(), m.GetWave(), typesv1.RunState_RUN_STATE_HELD, m.GetFiring(), m.GetReason(), at)
	case *eventsv1.RunReleased:
		cur, ok, err := f.repo.Firing(ctx, tenant, m.GetRunId())
		if err != nil {
			return err
		}
		if ok {
			cur.Reason, cur.At = "released by "+m.GetActor()+": "+m.GetReason(), at
			v = &cur
		}
	}
	if v != nil {
		if err := f.repo.PutFiring(ctx, *v); err != nil {
			return err
		}
	}
	if kick && live {
		f.Kick()
	}
	return f.app.repo.SetCheckpoint(ctx, ProjectionFiring, ev.Sequence)
}

func fromRef(tenant, runID string, wave int32, state typesv1.RunState, ref *typesv1.FiringRef, reason string, at time.Time) *domain.FiringView {
	v := &domain.FiringView{
		Tenant: tenant, RunID: runID, Wave: wave, Key: ref.GetOccurrenceKey(), Cycle: ref.GetCycle(), Trigger: ref.GetTrigger(),
		State: state, Reason: reason, At: at,
	}
	if ref.GetWindowStart() != nil {
		v.WindowStart, v.WindowEnd = ref.GetWindowStart().AsTime().UTC(), ref.GetWindowEnd().AsTime().UTC()
	}
	return v
}

// withFiring adds a run's firing facts to its read model.
func withFiring(r domain.Run, v domain.FiringView) domain.Run {
	r.OccurrenceKey, r.Cycle, r.Trigger, r.WindowStart, r.WindowEnd = v.Key, v.Cycle, v.Trigger, v.WindowStart, v.WindowEnd
	if r.Reason == "" && v.State == r.State {
		r.Reason = v.Reason
	}
	return r
}

// runOfView is a run that has not started (held, waiting, skipped, missed, deferred).
func runOfView(v domain.FiringView) domain.Run {
	return domain.Run{
		Tenant: v.Tenant, ID: v.RunID, Wave: v.Wave, State: v.State, StartedAt: v.WindowStart,
		OccurrenceKey: v.Key, Cycle: v.Cycle, Trigger: v.Trigger, WindowStart: v.WindowStart, WindowEnd: v.WindowEnd, Reason: v.Reason,
	}
}

// merge gives a run its firing facts, or answers the firing view of a run that has not
// started; ok is false when neither exists.
func (f *Firing) merge(ctx context.Context, tenant, runID string, r domain.Run, ok bool) (domain.Run, bool, error) {
	v, found, err := f.repo.Firing(ctx, tenant, runID)
	if err != nil || !found {
		return r, ok, err
	}
	if ok {
		return withFiring(r, v), true, nil
	}
	return runOfView(v), true, nil
}

// mergeList adds the firing views to a tenant's runs, newest first (start, or window start
// for a run that has not started, then id).
func (f *Firing) mergeList(ctx context.Context, tenant string, runs []domain.Run) ([]domain.Run, error) {
	views, err := f.repo.Firings(ctx, tenant)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]domain.FiringView, len(views))
	for _, v := range views {
		byID[v.RunID] = v
	}
	for i, r := range runs {
		if v, ok := byID[r.ID]; ok {
			runs[i] = withFiring(r, v)
			delete(byID, r.ID)
		}
	}
	for _, v := range byID {
		runs = append(runs, runOfView(v))
	}
	slices.SortFunc(runs, func(a, b domain.Run) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return runs, nil
}
