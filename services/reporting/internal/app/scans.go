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
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// ScanChunk is the most instances one ScanRequested names (one SSM command).
const ScanChunk = 50

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

// ScanOptions configure assessments.
type ScanOptions struct {
	// Publisher publishes the scan requests. Without it scans cannot be requested.
	Publisher Publisher
	Freezes   Freezes
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
	// (no run named their account and region).
	Instances, Chunks, Unlocated int
}

var scanIDRule = regexp.MustCompile(`^[A-Za-z0-9_-]{1,48}$`)

// RequestScans asks for a scan of every in-scope instance of the tenant against the baseline
// that applies to it: one ScanRequested per location, OS family and baseline, at most 50
// instances each. Inside a change freeze it is refused (FailedPrecondition) unless
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
	return a.requestScans(ctx, tenant, "scan-"+requestID, by, now)
}

func (a *Application) requestScans(ctx context.Context, tenant, scanID, by string, now time.Time) (ScanPlan, error) {
	if a.scans.Publisher == nil {
		return ScanPlan{}, fmt.Errorf("%w: scans are not configured", domain.ErrUnavailable)
	}
	if !a.scans.DuringFreeze && a.scans.Freezes != nil {
		id, err := a.scans.Freezes.FrozenAt(tenant, now)
		if err != nil {
			return ScanPlan{}, err
		}
		if id != "" {
			return ScanPlan{}, fmt.Errorf("%w: tenant %s is inside change freeze %s: no scan runs in a freeze", apierr.ErrFailedPrecondition, tenant, id)
		}
	}
	ids, err := a.instanceIDs(ctx, tenant, InstanceFilter{})
	if err != nil {
		return ScanPlan{}, err
	}
	// The cycle in force now: a request in a month whose cycle is not pinned yet measures
	// against what its waves will install.
	cyc, _, err := a.repo.Cycle(ctx, tenant)
	if err != nil {
		return ScanPlan{}, err
	}
	cyc = cyc.At(now)
	type chunkKey struct{ account, region, family, baseline string }
	groups := map[chunkKey][]string{}
	patches := map[string][]string{}
	plan := ScanPlan{ScanID: scanID}
	for _, id := range ids {
		in, found, err := a.repo.Instance(ctx, tenant, id)
		if err != nil {
			return ScanPlan{}, err
		}
		if !found {
			continue
		}
		b, err := a.tx(a.repo).ApplicableIn(ctx, in, cyc)
		if err != nil {
			return ScanPlan{}, err
		}
		if in.Account == "" || b == nil {
			plan.Unlocated++
			continue
		}
		k := chunkKey{in.Account, in.Region, in.Family(), b.ID}
		groups[k] = append(groups[k], id)
		if _, ok := patches[b.ID]; !ok {
			for _, p := range b.Patches {
				patches[b.ID] = append(patches[b.ID], p.ID)
			}
		}
	}
	keys := make([]chunkKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y chunkKey) int {
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
	var evs []*events.Event
	for _, k := range keys {
		members := groups[k]
		for start := 0; start < len(members); start += ScanChunk {
			part := members[start:min(start+ScanChunk, len(members))]
			plan.Chunks++
			plan.Instances += len(part)
			ev, err := events.New(tenant, fmt.Sprintf("%s/%d", scanID, plan.Chunks), &eventsv1.ScanRequested{
				Tenant: tenant, ScanId: scanID, Chunk: int32(plan.Chunks), Location: &typesv1.Location{Account: k.account, Region: k.region},
				OsFamily: k.family, BaselineId: k.baseline, PatchIds: patches[k.baseline], InstanceIds: part,
				RequestedBy: by, RequestedAt: timestamppb.New(now),
			})
			if err != nil {
				return ScanPlan{}, err
			}
			ev.Time = now
			evs = append(evs, ev)
			if len(evs) == 500 {
				if err := a.scans.Publisher.Publish(ctx, evs...); err != nil {
					return ScanPlan{}, err
				}
				evs = evs[:0]
			}
		}
	}
	if len(evs) > 0 {
		if err := a.scans.Publisher.Publish(ctx, evs...); err != nil {
			return ScanPlan{}, err
		}
	}
	a.log.InfoContext(ctx, "scans requested", "tenant", tenant, "scan", scanID, "instances", plan.Instances, "chunks", plan.Chunks, "unlocated", plan.Unlocated)
	return plan, nil
}

// DailyScans requests each tenant's daily scan ("daily-<date>") once now is past DailyAt on
// that UTC date and it was not requested yet; a tenant inside a freeze is skipped that day.
// Replicas that both do it publish the same events (same ids), which the stream stores once.
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
		if _, err := a.requestScans(ctx, tenant, "daily-"+day, "schedule", now); err != nil {
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
