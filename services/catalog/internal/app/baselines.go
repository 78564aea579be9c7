package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/baseline"
	"github.com/patchwave/patchwave/libs/events"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/kvstore"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// MaxBaselineBytes bounds a baseline's encoded size: it travels as one event and is one KV
// value, both under NATS's default 1 MiB message limit (with room for the envelope).
const MaxBaselineBytes = 768 << 10

// Keys of the baselines bucket: the baseline, and the claim of its family's version that
// makes (family, version) unique.
func baselineKey(id string) string { return "b." + id }

func versionKey(family string, version int32) string {
	return "v." + family + "." + strconv.Itoa(int(version))
}

// announced records which baselines have their catalog.baseline.published event (a projection
// of the stream), so a crash between the KV write and the event is repaired at start.
type announced struct {
	mu  sync.Mutex
	ids map[string]bool
}

// MarkBaselineAnnounced records that the stream holds the publication of baseline id.
func (a *App) MarkBaselineAnnounced(id string) {
	a.announced.mu.Lock()
	defer a.announced.mu.Unlock()
	if a.announced.ids == nil {
		a.announced.ids = map[string]bool{}
	}
	a.announced.ids[id] = true
}

func (a *App) baselineAnnounced(id string) bool {
	a.announced.mu.Lock()
	defer a.announced.mu.Unlock()
	return a.announced.ids[id]
}

// RepairBaselines publishes the event of every stored baseline the stream does not hold (a
// crash between the KV write and the publish). It runs once the projection has caught up.
func (a *App) RepairBaselines(ctx context.Context) error {
	if err := a.st.Baselines.Ready(ctx); err != nil {
		return err
	}
	for _, b := range a.baselines("") {
		if !a.baselineAnnounced(b.ID) {
			a.log.WarnContext(ctx, "baseline stored without its event: publishing it", "baseline_id", b.ID)
			if err := a.publish(ctx, events.MustNew("", b.ID, pb.Published(b))); err != nil {
				return err
			}
			a.MarkBaselineAnnounced(b.ID)
		}
	}
	return nil
}

// baselines returns the mirrored baselines of family (every family when empty), per family
// newest first.
func (a *App) baselines(family string) []domain.Baseline {
	var out []domain.Baseline
	for _, e := range a.st.Baselines.Snapshot() {
		if !strings.HasPrefix(e.Key, "b.") {
			continue
		}
		b := pb.FromBaseline(e.Value)
		if family == "" || b.OSFamily == family {
			out = append(out, b)
		}
	}
	baseline.SortNewestFirst(out, domain.Baseline.Ref)
	return out
}

// ListBaselines returns the published baselines of family (every family when empty): by OS
// family, newest (highest version) first.
func (a *App) ListBaselines(ctx context.Context, family string) ([]domain.Baseline, error) {
	if family != "" {
		if err := domain.ValidateFamily("osFamily", family); err != nil {
			return nil, err
		}
	}
	if err := a.st.Baselines.Sync(ctx); err != nil {
		return nil, err
	}
	return a.baselines(family), nil
}

// GetBaseline returns one published baseline.
func (a *App) GetBaseline(ctx context.Context, id string) (domain.Baseline, error) {
	if err := domain.ValidateID(id); err != nil {
		return domain.Baseline{}, err
	}
	e, found, err := a.st.Baselines.Get(ctx, baselineKey(id))
	if err != nil {
		return domain.Baseline{}, err
	}
	if !found {
		return domain.Baseline{}, fmt.Errorf("baseline %q: %w", id, domain.ErrNotFound)
	}
	return pb.FromBaseline(e.Value), nil
}

// Newest returns the newest baseline of family (libs/baseline's rule).
func (a *App) Newest(ctx context.Context, family string) (domain.Baseline, error) {
	bs, err := a.ListBaselines(ctx, family)
	if err != nil {
		return domain.Baseline{}, err
	}
	i, err := baseline.Newest(bs, domain.Baseline.Ref, family)
	if err != nil {
		return domain.Baseline{}, domain.Conflict(err)
	}
	return bs[i], nil
}

// PublishBaseline publishes a baseline version of certified patches. It is idempotent: the
// same request again answers the published baseline with created false. A baseline id, or a
// family's version, that is published with other content is refused (FailedPrecondition): the
// check is the KV bucket, which keeps every published baseline forever, so it holds long after
// the stream's duplicate window has forgotten the event id.
func (a *App) PublishBaseline(ctx context.Context, req domain.PublishRequest) (domain.Baseline, bool, error) {
	return a.publishBaseline(ctx, req, false, "")
}

func (a *App) publishBaseline(ctx context.Context, req domain.PublishRequest, emergency bool, cve string) (domain.Baseline, bool, error) {
	if err := req.Validate(); err != nil {
		return domain.Baseline{}, false, err
	}
	existing, found, err := a.st.Baselines.Get(ctx, baselineKey(req.ID))
	if err != nil {
		return domain.Baseline{}, false, err
	}
	version := req.Version
	if found && version == 0 {
		version = existing.Value.GetVersion()
	}
	if version == 0 {
		if err := a.st.Baselines.Sync(ctx); err != nil {
			return domain.Baseline{}, false, err
		}
		version = 1
		if bs := a.baselines(req.OSFamily); len(bs) > 0 {
			version = bs[0].Version + 1
		}
	}
	records := map[string]*domain.Record{}
	for _, r := range req.Rules {
		rec, err := a.GetPatch(ctx, r.GetPatchId())
		if errors.Is(err, domain.ErrPatchNotFound) {
			continue // Build names it
		}
		if err != nil {
			return domain.Baseline{}, false, err
		}
		records[r.GetPatchId()] = rec
	}
	b, err := req.Build(records, version, a.now())
	if err != nil {
		return domain.Baseline{}, false, err
	}
	b.Emergency, b.EmergencyCVE = emergency, cve
	b.Digest = b.ComputeDigest()
	if size := proto.Size(pb.Published(b)); size > MaxBaselineBytes {
		return domain.Baseline{}, false, domain.Conflict(fmt.Errorf(
			"baseline %q is %d bytes, more than one event or KV value may hold (%d): split it into baselines of fewer patches", b.ID, size, MaxBaselineBytes))
	}
	if found {
		have := pb.FromBaseline(existing.Value)
		if have.SameVersion(b) {
			return have, false, nil
		}
		return domain.Baseline{}, false, domain.Conflict(fmt.Errorf(
			"baseline %q is published (version %d of %s, %s) with other content (%s): a published baseline never changes; publish a new id",
			req.ID, have.Version, have.OSFamily, have.Digest, b.Digest))
	}
	claim := &catalogv1.Baseline{BaselineId: b.ID, OsFamily: b.OSFamily, Version: b.Version}
	if _, err := a.st.Baselines.Create(ctx, versionKey(b.OSFamily, b.Version), claim); err != nil {
		if !errors.Is(err, kvstore.ErrConflict) {
			return domain.Baseline{}, false, err
		}
		owner, _, gerr := a.st.Baselines.Get(ctx, versionKey(b.OSFamily, b.Version))
		if gerr != nil {
			return domain.Baseline{}, false, gerr
		}
		if owner.Value.GetBaselineId() != b.ID {
			return domain.Baseline{}, false, domain.Conflict(fmt.Errorf(
				"version %d of %s is published as baseline %q: versions of an OS family are unique; ask for the next version (0)",
				b.Version, b.OSFamily, owner.Value.GetBaselineId()))
		}
		// Our own claim from an attempt that stopped before storing the baseline.
	}
	rev, err := a.st.Baselines.Create(ctx, baselineKey(b.ID), pb.Baseline(b))
	if errors.Is(err, kvstore.ErrConflict) {
		return a.publishBaseline(ctx, req, emergency, cve) // published meanwhile: compare again
	}
	if err != nil {
		return domain.Baseline{}, false, err
	}
	if err := a.publish(ctx, events.MustNew("", b.ID, pb.Published(b))); err != nil {
		return domain.Baseline{}, false, err
	}
	a.MarkBaselineAnnounced(b.ID)
	a.log.InfoContext(ctx, "baseline published", "baseline_id", b.ID, "os_family", b.OSFamily, "version", b.Version,
		"patches", len(b.Patches), "emergency", b.Emergency, "actor", req.Actor)
	if err := a.st.Baselines.WaitFor(ctx, rev); err != nil {
		return domain.Baseline{}, false, err
	}
	return b, true, nil
}

// PublishEmergencyBaseline publishes an out-of-band baseline for a critical CVE, outside the
// monthly cycle: the family's newest baseline with its deployment rules, plus every certified
// patch of the family that fixes the CVE (installed first), as the family's next version. The
// default id is "<family>-emergency-<cve>"; the same request again changes nothing.
func (a *App) PublishEmergencyBaseline(ctx context.Context, id, family, cve, notes, actor string) (domain.Baseline, bool, error) {
	if err := domain.ValidateFamily("osFamily", family); err != nil {
		return domain.Baseline{}, false, err
	}
	if err := domain.ValidateCVE("cve", cve); err != nil {
		return domain.Baseline{}, false, err
	}
	if id == "" {
		id = family + "-emergency-" + strings.ToLower(cve)
	}
	if existing, err := a.GetBaseline(ctx, id); err == nil {
		return existing, false, nil
	} else if !errors.Is(err, domain.ErrNotFound) {
		return domain.Baseline{}, false, err
	}
	if err := a.st.Patches.Sync(ctx); err != nil {
		return domain.Baseline{}, false, err
	}
	var rules []*typesv1.DeploymentRule
	seen := map[string]bool{}
	certified := map[string]bool{}
	for _, e := range a.st.Patches.Snapshot() {
		p := e.Value.GetPatch()
		if e.Value.GetState() != domain.StateCertified || !containsString(p.GetOsFamilies(), family) {
			continue
		}
		certified[p.GetId()] = true
		if containsString(p.GetCves(), cve) {
			rules = append(rules, &typesv1.DeploymentRule{PatchId: p.GetId()})
			seen[p.GetId()] = true
		}
	}
	if len(rules) == 0 {
		return domain.Baseline{}, false, domain.Conflict(fmt.Errorf("no certified patch of %s fixes %s: certify one first", family, cve))
	}
	if prev, err := a.Newest(ctx, family); err == nil {
		for _, r := range prev.Rules {
			// A patch revoked since the last baseline is left out.
			if !seen[r.GetPatchId()] && certified[r.GetPatchId()] {
				r = proto.CloneOf(r)
				r.Order++ // after the emergency fixes, which keep order 0
				rules = append(rules, r)
			}
		}
	}
	return a.publishBaseline(ctx, domain.PublishRequest{ID: id, OSFamily: family, Rules: rules, Notes: notes, Actor: actor}, true, cve)
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
