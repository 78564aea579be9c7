package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// ScanChunk is the most instances one ScanRequested names (one SSM command).
const ScanChunk = domain.MaxScanChunk

// Publisher publishes events (the bus).
type Publisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// Freezes says whether a tenant is inside a change freeze, and which tenants there are.
type Freezes interface {
	// FrozenAt returns the id of a freeze (the tenant's or a global one) that covers at, "" if
	// none.
	FrozenAt(tenant string, at time.Time) (string, error)
	// TenantIDs lists the tenants of the service design.
	TenantIDs() []string
}

// Policies gives the max concurrency of a tenant's waves (the wave's rollout policy, else the
// tenant's default policy; nil: the built-in default).
type Policies interface {
	MaxConcurrency(tenant string) map[int32]*typesv1.Amount
}

// ScanOptions configure assessments.
type ScanOptions struct {
	// Publisher publishes the scan orders and requests. Without it scans cannot be requested.
	Publisher Publisher
	Freezes   Freezes
	// Policies gives the waves' max concurrency; nil: the built-in default for every wave.
	Policies Policies
	// DuringFreeze lets scans run inside a change freeze (by default they do not).
	DuringFreeze bool
	// DailyAt is the UTC time of day ("HH:MM") of the daily assessment; empty: none.
	DailyAt string
}

// SetScans configures assessments; call it before the projections run.
func (a *Application) SetScans(o ScanOptions) { a.scans = o }

// ScanOptions returns the assessment configuration.
func (a *Application) ScanOptions() ScanOptions { return a.scans }

// ScanPlan is what a scan request did.
type ScanPlan struct {
	ScanID string
	// Instances asked to be scanned, in Chunks requests; Unlocated instances could not be
	// (no run named their account and region); InRun instances were left out because their
	// job in a run still in progress has not ended (that job's outcome assesses them).
	Instances, Chunks, Unlocated, InRun int
}

var scanIDRule = regexp.MustCompile(`^[A-Za-z0-9_-]{1,48}$`)

// scanPlanPoll is how often RequestScans looks whether its order is planned.
const scanPlanPoll = 10 * time.Millisecond

// RequestScans orders a scan of every in-scope instance of the tenant against the baseline
// that applies to it (scan.ordered) and returns its plan once the compliance projection made
// it: one ScanRequested per wave, location, OS family and baseline, at most 50 instances (and
// at most the wave's max concurrency) each, released under the wave's max concurrency
// (ReleaseScans). Inside a change freeze it is refused (FailedPrecondition) unless
// DuringFreeze is set. requestID makes a retry the same scan; empty: a new one.
func (a *Application) RequestScans(ctx context.Context, tenant, requestID, by string) (ScanPlan, error) {
	if requestID != "" && !scanIDRule.MatchString(requestID) {
		var v apierr.Violations
		v.Add("requestId", fmt.Sprintf("must match %s, got %q", scanIDRule, requestID))
		return ScanPlan{}, v.Err()
	}
	if err := a.query(ctx, tenant); err != nil {
		return ScanPlan{}, err
	}
	now := a.clock().UTC()
	if requestID == "" {
		requestID = strconv.FormatInt(now.UnixNano(), 36)
	}
	scanID := "scan-" + requestID
	if err := a.orderScan(ctx, tenant, scanID, by, now); err != nil {
		return ScanPlan{}, err
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	for {
		p, found, err := a.repo.ScanPlan(ctx, tenant, scanID)
		if err != nil {
			return ScanPlan{}, err
		}
		if found {
			return ScanPlan{ScanID: p.ScanID, Instances: p.Instances, Chunks: p.Chunks, Unlocated: p.Unlocated, InRun: p.InRun}, nil
		}
		select {
		case <-ctx.Done():
			return ScanPlan{}, fmt.Errorf("%w: %w", domain.ErrUnavailable, ctx.Err())
		case <-t.C:
			return ScanPlan{}, fmt.Errorf("%w: scan %s is ordered but not planned yet (reporting is catching up)", domain.ErrUnavailable, scanID)
		case <-time.After(scanPlanPoll):
		}
	}
}

// orderScan publishes a scan's order, unless the tenant is inside a change freeze.
func (a *Application) orderScan(ctx context.Context, tenant, scanID, by string, now time.Time) error {
	if a.scans.Publisher == nil {
		return fmt.Errorf("%w: scans are not configured", domain.ErrUnavailable)
	}
	if id, err := a.frozen(tenant, now); err != nil {
		return err
	} else if id != "" {
		return fmt.Errorf("%w: tenant %s is inside change freeze %s: no scan runs in a freeze", apierr.ErrFailedPrecondition, tenant, id)
	}
	msg := &eventsv1.ScanOrdered{Tenant: tenant, ScanId: scanID, RequestedBy: by, RequestedAt: timestamppb.New(now)}
	if a.scans.Policies != nil {
		limits := a.scans.Policies.MaxConcurrency(tenant)
		waves := make([]int32, 0, len(limits))
		for w := range limits {
			waves = append(waves, w)
		}
		slices.Sort(waves)
		for _, w := range waves {
			msg.Limits = append(msg.Limits, &eventsv1.ScanOrdered_WaveLimit{Wave: w, MaxConcurrency: limits[w]})
		}
	}
	ev, err := events.New(tenant, scanID, msg)
	if err != nil {
		return err
	}
	ev.Time = now
	return a.scans.Publisher.Publish(ctx, ev)
}

// frozen returns the freeze that keeps scans from starting at now, "" if none (or when scans
// may run in freezes).
func (a *Application) frozen(tenant string, now time.Time) (string, error) {
	if a.scans.DuringFreeze || a.scans.Freezes == nil {
		return "", nil
	}
	return a.scans.Freezes.FrozenAt(tenant, now)
}

// scanOrdered plans an ordered scan where the order stands in the stream: every in-scope
// instance with a location and an applicable baseline (in the cycle in force at the order),
// grouped per wave, location, OS family and baseline into chunks of at most 50 instances and at
// most the wave's max concurrency, each pending in its wave. A scan is planned once.
func (a txn) scanOrdered(ctx context.Context, ev *events.Event, msg *eventsv1.ScanOrdered) error {
	if msg.GetScanId() == "" {
		return bus.Permanent(fmt.Errorf("%s: scan_id is required", ev.ID))
	}
	if _, found, err := a.repo.ScanPlan(ctx, ev.Tenant, msg.GetScanId()); err != nil || found {
		return err
	}
	cyc, _, err := a.cycle(ctx, ev.Tenant)
	if err != nil {
		return err
	}
	ids, err := a.tenantInstances(ctx, ev.Tenant)
	if err != nil {
		return err
	}
	if uow, ok := a.repo.(domain.UnitOfWork); ok {
		refs := make([]domain.InstanceRef, len(ids))
		for i, id := range ids {
			refs[i] = domain.InstanceRef{Tenant: ev.Tenant, ID: id}
		}
		if err := uow.Prefetch(ctx, refs); err != nil {
			return err
		}
	}
	type chunkKey struct {
		wave                              int32
		account, region, family, baseline string
	}
	groups := map[chunkKey][]string{}
	patches := map[string][]string{}
	perWave := map[int32]int{}
	plan := domain.ScanPlan{ScanID: msg.GetScanId(), Waves: map[int32]int{}}
	underway := a.jobsUnderway(ev.Tenant)
	for _, id := range ids {
		in, found, err := a.repo.Instance(ctx, ev.Tenant, id)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if busy, err := underway(ctx, in); err != nil {
			return err
		} else if busy {
			plan.InRun++
			continue
		}
		b, err := a.ApplicableIn(ctx, in, cyc)
		if err != nil {
			return err
		}
		if in.Account == "" || b == nil {
			plan.Unlocated++
			continue
		}
		k := chunkKey{in.Wave, in.Account, in.Region, in.Family(), b.ID}
		groups[k] = append(groups[k], id)
		perWave[in.Wave]++
		if _, ok := patches[b.ID]; !ok {
			for _, p := range b.Patches {
				patches[b.ID] = append(patches[b.ID], p.ID)
			}
		}
	}
	amounts := map[int32]*typesv1.Amount{}
	for _, l := range msg.GetLimits() {
		amounts[l.GetWave()] = l.GetMaxConcurrency()
	}
	for w, n := range perWave {
		plan.Waves[w] = domain.ScanConcurrency(amounts[w], n)
	}
	keys := make([]chunkKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y chunkKey) int {
		if x.wave != y.wave {
			return int(x.wave - y.wave)
		}
		for _, c := range [][2]string{{x.account, y.account}, {x.region, y.region}, {x.family, y.family}, {x.baseline, y.baseline}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	at := ev.Time
	if msg.GetRequestedAt() != nil {
		at = msg.GetRequestedAt().AsTime()
	}
	for _, k := range keys {
		members := groups[k]
		limit := plan.Waves[k.wave]
		size := min(ScanChunk, limit)
		for start := 0; start < len(members); start += size {
			part := members[start:min(start+size, len(members))]
			plan.Chunks++
			plan.Instances += len(part)
			c := domain.ScanChunk{ScanID: plan.ScanID, N: plan.Chunks, Order: ev.Sequence, Wave: k.wave, Limit: limit,
				Account: k.account, Region: k.region, OSFamily: k.family, BaselineID: k.baseline, PatchIDs: patches[k.baseline],
				InstanceIDs: slices.Clone(part), RequestedBy: msg.GetRequestedBy(), RequestedAt: at.UTC()}
			if err := a.repo.PutScanChunk(ctx, ev.Tenant, c); err != nil {
				return err
			}
		}
	}
	a.log.InfoContext(ctx, "scan planned", "tenant", ev.Tenant, "scan", plan.ScanID, "instances", plan.Instances, "chunks", plan.Chunks,
		"unlocated", plan.Unlocated, "in_run", plan.InRun, "limits", plan.Waves)
	return a.repo.PutScanPlan(ctx, ev.Tenant, plan)
}

// jobsUnderway returns a check of whether an instance's job in its latest run has not ended
// while that run is still in progress: a scan leaves such an instance out, since the job's
// outcome assesses it (and a scan would read a machine in the middle of a change). Each run's
// record and job states are read once per plan, whatever the number of its instances.
func (a txn) jobsUnderway(tenant string) func(context.Context, domain.Instance) (bool, error) {
	runs := map[string]map[string]typesv1.JobState{} // nil: the run has ended (or is a scan)
	return func(ctx context.Context, in domain.Instance) (bool, error) {
		if in.LastRun == "" {
			return false, nil
		}
		jobs, seen := runs[in.LastRun]
		if !seen {
			run, found, err := a.repo.Run(ctx, tenant, in.LastRun)
			if err != nil {
				return false, err
			}
			if !found || run.CompletedAt.IsZero() {
				if jobs, err = a.repo.JobStates(ctx, tenant, in.LastRun); err != nil {
					return false, err
				}
			}
			runs[in.LastRun] = jobs
		}
		return domain.JobUnderway(jobs[in.ID]), nil
	}
}

// tenantInstances lists the tenant's in-scope instances through the txn's repository.
func (a txn) tenantInstances(ctx context.Context, tenant string) ([]string, error) {
	return memberIDs(ctx, a.repo, tenant, InstanceFilter{})
}

// scanRequested records a released chunk: its instances are in flight.
func (a txn) scanRequested(ctx context.Context, ev *events.Event, msg *eventsv1.ScanRequested) error {
	c, found, err := a.repo.ScanChunk(ctx, ev.Tenant, msg.GetScanId(), int(msg.GetChunk()))
	if err != nil || !found {
		return err // a request of no planned scan (before scan orders): nothing to track
	}
	return a.repo.ScanReleased(ctx, ev.Tenant, c)
}

// ReleaseScans publishes, for each tenant not inside a freeze (unless DuringFreeze) and each
// wave, the pending scan chunks, in order, while the wave's scans in flight plus the chunk's
// instances stay within the chunk's limit. A chunk already released whose ScanRequested the
// read model has not applied yet is published again with the same id (the stream stores it
// once) and counted again, so a replica whose read model lags releases no more than the limit
// allows. It returns how many chunks it published.
func (a *Application) ReleaseScans(ctx context.Context, now time.Time) (int, error) {
	if a.scans.Publisher == nil || a.scans.Freezes == nil {
		return 0, nil
	}
	select {
	case <-a.ready:
	default:
		return 0, nil // the read model is not caught up yet
	}
	if a.replaying.Load() {
		return 0, nil // the read model is being rebuilt under the service (a flush)
	}
	var evs []*events.Event
	for _, tenant := range a.scans.Freezes.TenantIDs() {
		waves, err := a.repo.ScanWaves(ctx, tenant)
		if err != nil || len(waves) == 0 {
			if err != nil {
				return 0, err
			}
			continue
		}
		if id, err := a.frozen(tenant, now); err != nil {
			return 0, err
		} else if id != "" {
			continue // released again once the freeze ends
		}
		for _, w := range waves {
			refs, err := a.repo.PendingScanChunks(ctx, tenant, w)
			if err != nil || len(refs) == 0 {
				if err != nil {
					return 0, err
				}
				continue
			}
			inFlight, err := a.repo.ScansInFlight(ctx, tenant, w)
			if err != nil {
				return 0, err
			}
			for _, ref := range refs {
				scanID, n, err := domain.ParseScanRef(ref)
				if err != nil {
					return 0, err
				}
				c, found, err := a.repo.ScanChunk(ctx, tenant, scanID, n)
				if err != nil {
					return 0, err
				}
				if !found {
					continue
				}
				if inFlight+len(c.InstanceIDs) > c.Limit {
					break
				}
				inFlight += len(c.InstanceIDs)
				ev, err := events.New(tenant, fmt.Sprintf("%s/%d", c.ScanID, c.N), &eventsv1.ScanRequested{
					Tenant: tenant, ScanId: c.ScanID, Chunk: int32(c.N), Location: &typesv1.Location{Account: c.Account, Region: c.Region},
					OsFamily: c.OSFamily, BaselineId: c.BaselineID, PatchIds: c.PatchIDs, InstanceIds: c.InstanceIDs,
					RequestedBy: c.RequestedBy, RequestedAt: timestamppb.New(c.RequestedAt),
				})
				if err != nil {
					return 0, err
				}
				ev.Time = c.RequestedAt
				evs = append(evs, ev)
			}
		}
	}
	for start := 0; start < len(evs); start += 500 {
		if err := a.scans.Publisher.Publish(ctx, evs[start:min(start+500, len(evs))]...); err != nil {
			return 0, err
		}
	}
	return len(evs), nil
}

// scanKick wakes the scan releaser (non-blocking).
func (a *Application) scanKick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// ScanKicks delivers when applied events may let scans be released.
func (a *Application) ScanKicks() <-chan struct{} { return a.kick }

// AfterApply tells the releaser about events the compliance projection committed; live says
// whether they are live or replayed. Replayed events after the read model caught up are a
// rebuild under the service (a flush): nothing is released until live events are applied
// again, so an old chunk is never released from a half-rebuilt model.
func (a *Application) AfterApply(evs []*events.Event, live bool) {
	if live {
		a.replaying.Store(false)
	} else {
		select {
		case <-a.ready:
			a.replaying.Store(true)
		default:
		}
	}
	for _, ev := range evs {
		switch ev.Data.(type) {
		case *eventsv1.ScanOrdered, *eventsv1.ScanCompleted, *eventsv1.ScanFailed:
			a.scanKick()
			return
		}
	}
}

// DailyScans orders each tenant's daily scan ("daily-<date>") once now is past DailyAt on
// that UTC date and it was not ordered yet; a tenant inside a freeze is skipped that day.
// Replicas that both do it publish the same event (same id), which the stream stores once, and
// a scan is planned once.
func (a *Application) DailyScans(ctx context.Context, now time.Time) error {
	if a.scans.DailyAt == "" || a.scans.Freezes == nil {
		return nil
	}
	at, err := time.Parse("15:04", a.scans.DailyAt)
	if err != nil {
		return fmt.Errorf("daily scan time %q: %w", a.scans.DailyAt, err)
	}
	now = now.UTC()
	day := now.Format(time.DateOnly)
	due := time.Date(now.Year(), now.Month(), now.Day(), at.Hour(), at.Minute(), 0, 0, time.UTC)
	if now.Before(due) {
		return nil
	}
	select {
	case <-a.ready:
	default:
		return nil // the read model is not caught up yet: next tick
	}
	for _, tenant := range a.scans.Freezes.TenantIDs() {
		last, err := a.repo.Marker(ctx, "daily-scan:"+tenant)
		if err != nil {
			return err
		}
		if last >= day {
			continue
		}
		if err := a.orderScan(ctx, tenant, "daily-"+day, "schedule", now); err != nil {
			if !errors.Is(err, apierr.ErrFailedPrecondition) {
				return err
			}
			a.log.InfoContext(ctx, "daily scan skipped", "tenant", tenant, "reason", err)
		}
		if err := a.repo.SetMarker(ctx, "daily-scan:"+tenant, day); err != nil {
			return err
		}
	}
	return nil
}
