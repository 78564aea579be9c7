package app

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// Every write is followed by its event, and the event keys derive from the record alone:
// discovered <key>, updated <key>/v<content version>, certification step <key>/step-<n> (the
// step's position in the history), approval decision <baseline>/<KV revision>. So after a crash
// between a write and its publish, what the stream lacks can be told, and published, from the
// stream's own events (projections below) and the buckets: Repair* run once those projections
// have caught up, before the catalog counts as running.

// discoveredEvent is the event of a new record.
func discoveredEvent(rec *domain.Record) *events.Event {
	return events.MustNew("", domain.PatchKey(rec.Patch.GetId()), &eventsv1.PatchDiscovered{Patch: rec.Patch, Revision: rec.Revision})
}

// updatedEvent is the event of a content change; prev may be nil when it is not known any more.
func updatedEvent(rec *domain.Record, prev *typesv1.Patch, changed []string) *events.Event {
	return events.MustNew("", domain.PatchKey(rec.Patch.GetId())+"/v"+strconv.Itoa(int(rec.ContentVersion)), &eventsv1.PatchUpdated{
		Patch: rec.Patch, Previous: prev, ChangedFields: changed, Revision: rec.Revision, State: rec.State,
	})
}

// stepEvent is the event of the n-th certification step (from 1) of rec.
func stepEvent(rec *domain.Record, n int) *events.Event {
	step := rec.History[n-1]
	key := domain.PatchKey(rec.Patch.GetId()) + "/step-" + strconv.Itoa(n)
	id, rev := rec.Patch.GetId(), rec.Revision
	switch step.GetTo() {
	case domain.StateInTest:
		return events.MustNew("", key, &eventsv1.PatchTestStarted{PatchId: id, Step: step, Revision: rev})
	case domain.StateCertified:
		return events.MustNew("", key, &eventsv1.PatchCertified{PatchId: id, Step: step, Revision: rev, OsFamilies: rec.Patch.GetOsFamilies()})
	case domain.StateRejected:
		return events.MustNew("", key, &eventsv1.PatchRejected{PatchId: id, Step: step, Revision: rev})
	default:
		return events.MustNew("", key, &eventsv1.PatchRevoked{PatchId: id, Step: step, Revision: rev})
	}
}

// heard is what the stream says it holds of each patch, approval and baseline.
type heard struct {
	mu         sync.Mutex
	discovered map[string]bool   // patch key
	version    map[string]int32  // patch key: highest content version announced
	steps      map[string]int    // patch key: steps announced
	decisions  map[string]uint64 // "<tenant>.<baseline>": highest KV revision announced
}

func (h *heard) init() {
	if h.discovered == nil {
		h.discovered, h.version, h.steps, h.decisions = map[string]bool{}, map[string]int32{}, map[string]int{}, map[string]uint64{}
	}
}

// HearPatchEvent records a catalog.patch.* event of the stream.
func (a *App) HearPatchEvent(ev *events.Event) {
	key, suffix, _ := strings.Cut(ev.Key, "/")
	h := &a.heard
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	switch {
	case suffix == "":
		h.discovered[key] = true
	case strings.HasPrefix(suffix, "v"):
		if n, err := strconv.ParseInt(suffix[1:], 10, 32); err == nil {
			h.version[key] = max(h.version[key], int32(n))
		}
	case strings.HasPrefix(suffix, "step-"):
		if n, err := strconv.Atoi(suffix[len("step-"):]); err == nil {
			h.steps[key] = max(h.steps[key], n)
		}
	}
}

// HearDecisionEvent records a patch.<tenant>.baseline.approved / .rejected event.
func (a *App) HearDecisionEvent(ev *events.Event) {
	baselineID, rev, ok := strings.Cut(ev.Key, "/")
	n, err := strconv.ParseUint(rev, 10, 64)
	if !ok || err != nil {
		return
	}
	h := &a.heard
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	k := approvalKey(ev.Tenant, baselineID)
	h.decisions[k] = max(h.decisions[k], n)
}

// RepairPatches publishes the events the stream lacks for the stored patches: a discovery, the
// latest content version, and any certification step.
func (a *App) RepairPatches(ctx context.Context) error {
	if err := a.st.Patches.Ready(ctx); err != nil {
		return err
	}
	var missing []*events.Event
	a.heard.mu.Lock()
	a.heard.init()
	for _, e := range a.st.Patches.Snapshot() {
		rec := pb.FromRecord(e.Value, e.Revision)
		if !a.heard.discovered[e.Key] {
			missing = append(missing, discoveredEvent(rec))
		}
		if rec.ContentVersion > 1 && a.heard.version[e.Key] < rec.ContentVersion {
			missing = append(missing, updatedEvent(rec, nil, nil))
		}
		for n := a.heard.steps[e.Key] + 1; n <= len(rec.History); n++ {
			missing = append(missing, stepEvent(rec, n))
		}
	}
	a.heard.mu.Unlock()
	if len(missing) > 0 {
		a.log.WarnContext(ctx, "patch changes stored without their events: publishing them", "events", len(missing))
	}
	return a.publish(ctx, missing...)
}

// RepairDecisions publishes the event of every stored approval decision the stream lacks.
func (a *App) RepairDecisions(ctx context.Context) error {
	if err := a.st.Approvals.Ready(ctx); err != nil {
		return err
	}
	var missing []*events.Event
	a.heard.mu.Lock()
	a.heard.init()
	for _, e := range a.st.Approvals.Snapshot() {
		if a.heard.decisions[e.Key] < e.Revision {
			missing = append(missing, decisionEvent(pb.FromApproval(e.Value), e.Revision))
		}
	}
	a.heard.mu.Unlock()
	if len(missing) > 0 {
		a.log.WarnContext(ctx, "approval decisions stored without their events: publishing them", "events", len(missing))
	}
	return a.publish(ctx, missing...)
}

// decisionEvent is the event of a tenant's decision stored at KV revision rev.
func decisionEvent(ap domain.Approval, rev uint64) *events.Event {
	key := ap.BaselineID + "/" + strconv.FormatUint(rev, 10)
	if ap.State == domain.ApprovalApproved {
		return events.MustNew(ap.Tenant, key, &eventsv1.BaselineApproved{
			Tenant: ap.Tenant, BaselineId: ap.BaselineID, ApprovedBy: ap.Actor, ApprovedAt: pb.Time(ap.DecidedAt),
			OsFamily: ap.OSFamily, Version: ap.Version, Notes: ap.Notes, AutoApproved: ap.Auto,
		})
	}
	return events.MustNew(ap.Tenant, key, &eventsv1.BaselineRejected{
		Tenant: ap.Tenant, BaselineId: ap.BaselineID, RejectedBy: ap.Actor, RejectedAt: pb.Time(ap.DecidedAt),
		OsFamily: ap.OSFamily, Version: ap.Version, Reason: ap.Notes,
	})
}
