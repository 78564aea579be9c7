package app

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/kvstore"
	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

var errUnavailable = apierr.ErrUnavailable

// Outcomes of ingesting one patch.
const (
	OutcomeDiscovered = "discovered"
	OutcomeUpdated    = "updated"
	OutcomeUnchanged  = "unchanged"
	OutcomeParsed     = "parsed"
)

// IngestedPatch is one patch of an ingested document.
type IngestedPatch struct {
	Record  *domain.Record
	Outcome string
}

// IngestResult is what ingesting one document did.
type IngestResult struct {
	Format  advisory.Format
	Patches []IngestedPatch
	// Skipped is true when the document's digest was known and it was not parsed at all.
	Skipped bool
}

// Counts tallies outcomes.
func (r IngestResult) Counts() (discovered, updated, unchanged int) {
	for _, p := range r.Patches {
		switch p.Outcome {
		case OutcomeDiscovered:
			discovered++
		case OutcomeUpdated:
			updated++
		default:
			unchanged++
		}
	}
	return
}

// IngestOptions tune Ingest.
type IngestOptions struct {
	// Format of the document; empty detects it.
	Format advisory.Format
	// SkipKnown returns at once, parsing nothing, for a document whose digest is already
	// stored: a feed's unchanged documents cost a hash each.
	SkipKnown bool
	// DryRun parses and normalizes only.
	DryRun bool
}

// Ingest parses doc and folds each of its patches into the catalog: a new patch is stored
// NEW and announced (catalog.patch.discovered); a changed one is updated, its previous content
// kept in the KV history, and announced with what changed (catalog.patch.updated); the same
// content again changes and publishes nothing. Due auto-approval rules then run on what changed.
func (a *App) Ingest(ctx context.Context, doc advisory.Document, o IngestOptions) (IngestResult, error) {
	if o.SkipKnown && a.KnownDigest(doc.Digest()) {
		return IngestResult{Skipped: true}, nil
	}
	format, ps, err := advisory.Parse(doc, o.Format)
	res := IngestResult{Format: format}
	if err != nil {
		return res, err
	}
	if o.DryRun {
		for _, p := range ps {
			rec := &domain.Record{}
			if _, err := rec.Ingest(p, a.now()); err != nil {
				return res, err
			}
			res.Patches = append(res.Patches, IngestedPatch{Record: rec, Outcome: OutcomeParsed})
		}
		return res, nil
	}
	rules, err := a.enabledRules()
	if err != nil {
		return res, err
	}
	for _, p := range ps {
		ip, err := a.ingestPatch(ctx, p)
		if err != nil {
			return res, fmt.Errorf("document %q patch %s: %w", doc.Name, p.GetId(), err)
		}
		if ip.Outcome != OutcomeUnchanged && ip.Record.State == domain.StateNew {
			if rec, err := a.applyRules(ctx, ip.Record, rules); err != nil {
				return res, err
			} else if rec != nil {
				ip.Record = rec
			}
		}
		res.Patches = append(res.Patches, ip)
	}
	return res, nil
}

// maxRecordBytes bounds a stored patch record, under NATS's default 1 MiB message limit.
const maxRecordBytes = 900 << 10

// maxCASAttempts bounds the retries of a write that lost a compare-and-set race.
const maxCASAttempts = 8

func (a *App) ingestPatch(ctx context.Context, p *typesv1.Patch) (IngestedPatch, error) {
	key := domain.PatchKey(p.GetId())
	_, cached := a.st.Patches.Cached(key)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		rec := &domain.Record{}
		if cached || attempt > 0 {
			e, found, err := a.st.Patches.Get(ctx, key)
			if err != nil {
				return IngestedPatch{}, err
			}
			if found {
				rec = pb.FromRecord(e.Value, e.Revision)
			}
		}
		prev := rec.Patch
		changed, err := rec.Ingest(p, a.now())
		if err != nil {
			return IngestedPatch{}, err
		}
		if len(changed) == 0 {
			return IngestedPatch{Record: rec, Outcome: OutcomeUnchanged}, nil
		}
		stored := pb.Record(rec)
		stored.Revision = 0
		if size := proto.Size(stored); size > maxRecordBytes {
			return IngestedPatch{}, domain.Invalid(fmt.Errorf("patch %s: %d bytes once stored, more than a KV value may hold (%d)", p.GetId(), size, maxRecordBytes))
		}
		rev, err := a.st.Patches.Put(ctx, key, stored, rec.Revision)
		if errors.Is(err, kvstore.ErrConflict) {
			continue
		}
		if err != nil {
			return IngestedPatch{}, err
		}
		rec.Revision = rev
		if prev == nil {
			ev := discoveredEvent(rec)
			return IngestedPatch{Record: rec, Outcome: OutcomeDiscovered}, a.publish(ctx, ev)
		}
		ev := updatedEvent(rec, prev, changed)
		a.log.InfoContext(ctx, "patch updated", "patch_id", p.GetId(), "changed", changed, "content_version", rec.ContentVersion)
		return IngestedPatch{Record: rec, Outcome: OutcomeUpdated}, a.publish(ctx, ev)
	}
	return IngestedPatch{}, fmt.Errorf("patch %s: %w", p.GetId(), kvstore.ErrConflict)
}

// GetPatch returns one patch record, read from the bucket (never stale).
func (a *App) GetPatch(ctx context.Context, id string) (*domain.Record, error) {
	if err := domain.ValidatePatchID(id); err != nil {
		return nil, err
	}
	e, found, err := a.st.Patches.Get(ctx, domain.PatchKey(id))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("patch %q: %w", id, domain.ErrPatchNotFound)
	}
	return pb.FromRecord(e.Value, e.Revision), nil
}

// PatchVersions returns the kept revisions of a patch record, oldest first.
func (a *App) PatchVersions(ctx context.Context, id string) ([]*domain.Record, error) {
	if err := domain.ValidatePatchID(id); err != nil {
		return nil, err
	}
	hist, err := a.st.Patches.History(ctx, domain.PatchKey(id))
	if err != nil {
		return nil, err
	}
	if len(hist) == 0 {
		return nil, fmt.Errorf("patch %q: %w", id, domain.ErrPatchNotFound)
	}
	out := make([]*domain.Record, len(hist))
	for i, e := range hist {
		out[i] = pb.FromRecord(e.Value, e.Revision)
	}
	return out, nil
}

// PatchFilter selects patches; zero fields match everything.
type PatchFilter struct {
	Vendor         string
	OSFamily       string
	Severity       typesv1.Severity
	Classification typesv1.Classification
	CVE            string
	State          typesv1.CertificationState
	ReleasedAfter  time.Time
}

// Page limits.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

func (f PatchFilter) validate(pageSize int32) error {
	var v apierr.Violations
	if f.CVE != "" {
		if err := domain.ValidateCVE("cve", f.CVE); err != nil {
			v.Add("cve", strings.TrimPrefix(err.Error(), "cve "))
		}
	}
	if _, ok := typesv1.Severity_name[int32(f.Severity)]; !ok {
		v.Add("severity", "must be LOW, MEDIUM, HIGH or CRITICAL")
	}
	if _, ok := typesv1.Classification_name[int32(f.Classification)]; !ok {
		v.Add("classification", "must be SECURITY, BUGFIX or ENHANCEMENT")
	}
	if _, ok := typesv1.CertificationState_name[int32(f.State)]; !ok {
		v.Add("state", "must be NEW, IN_TEST, CERTIFIED, REJECTED or REVOKED")
	}
	if pageSize < 0 || pageSize > MaxPageSize {
		v.Add("pageSize", fmt.Sprintf("must be from 1 to %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, pageSize))
	}
	return v.Err()
}

func (f PatchFilter) match(r *catalogv1.CatalogPatch) bool {
	p := r.GetPatch()
	switch {
	case f.Vendor != "" && !strings.EqualFold(f.Vendor, p.GetVendor()):
	case f.OSFamily != "" && !slices.Contains(p.GetOsFamilies(), f.OSFamily):
	case f.Severity != 0 && f.Severity != p.GetSeverity():
	case f.Classification != 0 && f.Classification != p.GetClassification():
	case f.CVE != "" && !slices.Contains(p.GetCves(), f.CVE):
	case f.State != 0 && f.State != r.GetState():
	case !f.ReleasedAfter.IsZero() && (p.GetReleasedAt() == nil || p.GetReleasedAt().AsTime().Before(f.ReleasedAfter)):
	default:
		return true
	}
	return false
}

// pageCursor is the position after which a page starts: patches are ordered newest release
// first, then by id.
type pageCursor struct {
	released int64
	id       string
}

func comparePatches(a, b pageCursor) int {
	return cmp.Or(cmp.Compare(b.released, a.released), strings.Compare(a.id, b.id))
}

func cursorOf(r *catalogv1.CatalogPatch) pageCursor {
	var t int64
	if ts := r.GetPatch().GetReleasedAt(); ts != nil {
		t = ts.AsTime().UnixNano()
	}
	return pageCursor{released: t, id: r.GetPatch().GetId()}
}

func (c pageCursor) token() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.released, 10) + "|" + c.id))
}

func parseToken(tok string) (pageCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		ts, id, ok := strings.Cut(string(raw), "|")
		if n, perr := strconv.ParseInt(ts, 10, 64); ok && perr == nil && id != "" {
			return pageCursor{released: n, id: id}, nil
		}
	}
	return pageCursor{}, &apierr.ValidationError{Violations: []apierr.Violation{{Field: "pageToken", Rule: "malformed: pass nextPageToken of the previous page"}}}
}

// ListPatches returns one page of the patches matching f, newest release first, once the
// read model has caught up with the bucket.
func (a *App) ListPatches(ctx context.Context, f PatchFilter, pageSize int32, pageToken string) ([]*domain.Record, string, error) {
	if err := f.validate(pageSize); err != nil {
		return nil, "", err
	}
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	var after *pageCursor
	if pageToken != "" {
		c, err := parseToken(pageToken)
		if err != nil {
			return nil, "", err
		}
		after = &c
	}
	if err := a.st.Patches.Sync(ctx); err != nil {
		return nil, "", err
	}
	var matched []kvstore.Entry[*catalogv1.CatalogPatch]
	for _, e := range a.st.Patches.Snapshot() {
		if f.match(e.Value) && (after == nil || comparePatches(cursorOf(e.Value), *after) > 0) {
			matched = append(matched, e)
		}
	}
	slices.SortFunc(matched, func(x, y kvstore.Entry[*catalogv1.CatalogPatch]) int {
		return comparePatches(cursorOf(x.Value), cursorOf(y.Value))
	})
	next := ""
	if len(matched) > int(pageSize) {
		matched = matched[:pageSize]
		next = cursorOf(matched[len(matched)-1].Value).token()
	}
	out := make([]*domain.Record, len(matched))
	for i, e := range matched {
		out[i] = pb.FromRecord(e.Value, e.Revision)
	}
	return out, next, nil
}

// Certify applies a certification step to a patch by a person (or, with req.RuleID, a rule).
// expectedRevision, when not 0, must be the record's current revision.
func (a *App) Certify(ctx context.Context, id string, req domain.StepRequest, expectedRevision uint64) (*domain.Record, error) {
	if err := domain.ValidatePatchID(id); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		rec, err := a.GetPatch(ctx, id)
		if err != nil {
			return nil, err
		}
		if expectedRevision != 0 && rec.Revision != expectedRevision {
			return nil, domain.Conflict(fmt.Errorf("patch %q is at revision %d, not the expected %d: read it again", id, rec.Revision, expectedRevision))
		}
		rec, err = a.certify(ctx, rec, req)
		if errors.Is(err, kvstore.ErrConflict) && expectedRevision == 0 {
			continue
		}
		return rec, err
	}
	return nil, fmt.Errorf("patch %s: %w", id, kvstore.ErrConflict)
}

// certify applies the step to rec and stores it at rec's revision, then publishes the step.
func (a *App) certify(ctx context.Context, rec *domain.Record, req domain.StepRequest) (*domain.Record, error) {
	step, err := rec.Certify(req, a.now())
	if err != nil {
		return nil, err
	}
	key := domain.PatchKey(rec.Patch.GetId())
	stored := pb.Record(rec)
	stored.Revision = 0
	rev, err := a.st.Patches.Update(ctx, key, stored, rec.Revision)
	if err != nil {
		return nil, err
	}
	rec.Revision = rev
	ev := stepEvent(rec, len(rec.History))
	a.log.InfoContext(ctx, "patch certification step", "patch_id", rec.Patch.GetId(), "from", domain.StateName(step.GetFrom()),
		"to", domain.StateName(step.GetTo()), "actor", step.GetActor(), "rule_id", step.GetRuleId())
	return rec, a.publish(ctx, ev)
}
