package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/calendar"
	libdesign "github.com/patchwave/patchwave/libs/design"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// ActorField names the actor in errors. The actor is the subject of the caller's credential
// (libs/auth), which the gRPC interceptor puts in every call's context.
const ActorField = "actor"

// casAttempts bounds the compare-and-set retries of a write without If-Match that loses
// to concurrent writers.
const casAttempts = 5

// DesignDeps are the collaborators of the service design application.
type DesignDeps struct {
	// Repo keeps the documents. Required.
	Repo design.Repository
	// View is the watched copy the lists read, with service requests. Required.
	View *libdesign.View
	// Logger. Required.
	Logger *slog.Logger
	// Clock stamps changes. Required.
	Clock func() time.Time
	// Random feeds new ids. Optional, default crypto/rand.
	Random io.Reader
}

// Designs is the service design's application: every change is one compare-and-set of a
// document followed by its audit event, reads come from the KV (gets) or from the watched
// view (lists).
type Designs struct {
	repo  design.Repository
	view  *libdesign.View
	log   *slog.Logger
	clock func() time.Time
	rand  io.Reader

	mu  sync.Mutex
	pub Publisher
	// lastWrite is the highest revision this process wrote: a list waits until the view has
	// it, so a caller lists what it just wrote.
	lastWrite atomic.Uint64
}

// NewDesigns returns the application.
func NewDesigns(d DesignDeps) *Designs {
	if d.Random == nil {
		d.Random = rand.Reader
	}
	return &Designs{repo: d.Repo, view: d.View, log: d.Logger, clock: d.Clock, rand: d.Random}
}

// Attach sets the publisher (the bus); writes answer Unavailable until it is set.
func (a *Designs) Attach(p Publisher) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pub = p
}

func (a *Designs) publisher() (Publisher, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pub == nil {
		return nil, fmt.Errorf("%w: the scheduler is not connected to the bus", apierr.ErrUnavailable)
	}
	return a.pub, nil
}

// Write is who asks for a change, why, and which revision they read.
type Write struct {
	// Actor is who makes the change (X-Patchwave-Actor). Required.
	Actor string
	// Reason is why; optional for direct changes.
	Reason string
	// IfMatch is the revision the change is based on (If-Match); 0 means any.
	IfMatch uint64
}

func (w Write) validate(reasonRequired bool) error {
	var v apierr.Violations
	for _, err := range []error{design.ValidateActor(ActorField, w.Actor), design.ValidateReason("reason", w.Reason, reasonRequired)} {
		var verr *apierr.ValidationError
		if errors.As(err, &verr) {
			v = append(v, verr.Violations...)
		}
	}
	return v.Err()
}

func (a *Designs) now() time.Time { return a.clock().UTC() }

func (a *Designs) noteWrite(rev uint64) {
	for {
		cur := a.lastWrite.Load()
		if rev <= cur || a.lastWrite.CompareAndSwap(cur, rev) {
			return
		}
	}
}

func (a *Designs) freezeID() string {
	var b [4]byte
	if _, err := io.ReadFull(a.rand, b[:]); err != nil {
		return fmt.Sprintf("frz-%08x", a.now().UnixNano()&0xffffffff)
	}
	return "frz-" + hex.EncodeToString(b[:])
}

func (a *Designs) change(ctx context.Context, w Write, serviceRequest string, oldRev uint64, changes []*typesv1.ResourceChange) *typesv1.DesignChange {
	return &typesv1.DesignChange{
		Actor: w.Actor, Reason: w.Reason, Time: timestampOf(a.now()), OldRevision: oldRev,
		ServiceRequestId: serviceRequest, Changes: changes, CorrelationId: bus.CorrelationID(ctx),
	}
}

// ChangeTenant applies ops to a tenant's document as one compare-and-set and publishes its
// DesignChanged event. A write that changes nothing writes nothing and returns the current
// revision. Without If-Match a write that loses to a concurrent one is applied again to the
// new revision; with If-Match it fails with a *design.StaleError naming the current revision.
func (a *Designs) ChangeTenant(ctx context.Context, tenant string, w Write, ops []*typesv1.Operation) (*typesv1.TenantDesign, uint64, error) {
	if err := errors.Join(design.ValidateTenantID("tenant", tenant), w.validate(false)); err != nil {
		return nil, 0, firstValidation(err)
	}
	pub, err := a.publisher()
	if err != nil {
		return nil, 0, err
	}
	design.FillFreezeIDs(ops, a.freezeID)
	for attempt := 1; ; attempt++ {
		doc, rev, err := a.repo.Tenant(ctx, tenant)
		if err != nil {
			return nil, 0, unavailable(err)
		}
		if w.IfMatch != 0 && w.IfMatch != rev {
			return nil, 0, &design.StaleError{What: "tenant " + tenant, Expected: w.IfMatch, Current: rev}
		}
		next, err := design.ApplyTenant(doc, ops, design.Change{Tenant: tenant, Now: a.now(), Actor: w.Actor})
		if err != nil {
			return nil, 0, err
		}
		changes := design.Diff(doc, next)
		if len(changes) == 0 {
			return doc, rev, nil
		}
		next.LastChange = a.change(ctx, w, "", rev, changes)
		newRev, err := a.repo.PutTenant(ctx, tenant, next, rev)
		if errors.Is(err, design.ErrConflict) {
			if retry, err := a.lost(ctx, w, attempt, "tenant "+tenant, func() (uint64, error) { _, r, err := a.repo.Tenant(ctx, tenant); return r, err }); !retry {
				return nil, 0, err
			}
			continue
		}
		if err != nil {
			return nil, 0, unavailable(err)
		}
		a.written(ctx, pub, libdesign.TenantKey(tenant), next, newRev)
		return next, newRev, nil
	}
}

// DeleteTenant replaces a tenant's document by a tombstone and publishes the change.
func (a *Designs) DeleteTenant(ctx context.Context, tenant string, w Write) (uint64, error) {
	if err := errors.Join(design.ValidateTenantID("tenant", tenant), w.validate(false)); err != nil {
		return 0, firstValidation(err)
	}
	pub, err := a.publisher()
	if err != nil {
		return 0, err
	}
	for attempt := 1; ; attempt++ {
		doc, rev, err := a.repo.Tenant(ctx, tenant)
		if err != nil {
			return 0, unavailable(err)
		}
		if !design.Exists(doc) {
			return 0, tenantNotFound(tenant)
		}
		if w.IfMatch != 0 && w.IfMatch != rev {
			return 0, &design.StaleError{What: "tenant " + tenant, Expected: w.IfMatch, Current: rev}
		}
		tomb := design.DeleteTenant(tenant)
		tomb.LastChange = a.change(ctx, w, "", rev, design.Diff(doc, tomb))
		newRev, err := a.repo.PutTenant(ctx, tenant, tomb, rev)
		if errors.Is(err, design.ErrConflict) {
			if retry, err := a.lost(ctx, w, attempt, "tenant "+tenant, func() (uint64, error) { _, r, err := a.repo.Tenant(ctx, tenant); return r, err }); !retry {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, unavailable(err)
		}
		a.written(ctx, pub, libdesign.TenantKey(tenant), tomb, newRev)
		return newRev, nil
	}
}

// ChangeGlobal applies freeze operations to the provider-wide document, as ChangeTenant does.
func (a *Designs) ChangeGlobal(ctx context.Context, w Write, ops []*typesv1.Operation) (*typesv1.GlobalDesign, uint64, error) {
	if err := w.validate(false); err != nil {
		return nil, 0, err
	}
	pub, err := a.publisher()
	if err != nil {
		return nil, 0, err
	}
	design.FillFreezeIDs(ops, a.freezeID)
	for attempt := 1; ; attempt++ {
		doc, rev, err := a.repo.Global(ctx)
		if err != nil {
			return nil, 0, unavailable(err)
		}
		if w.IfMatch != 0 && w.IfMatch != rev {
			return nil, 0, &design.StaleError{What: "the provider-wide freezes", Expected: w.IfMatch, Current: rev}
		}
		next, err := design.ApplyGlobal(doc, ops, design.Change{Tenant: libdesign.ProviderTenant, Now: a.now(), Actor: w.Actor})
		if err != nil {
			return nil, 0, err
		}
		changes := design.DiffGlobal(doc, next)
		if len(changes) == 0 {
			if doc == nil {
				doc = &typesv1.GlobalDesign{}
			}
			return doc, rev, nil
		}
		next.LastChange = a.change(ctx, w, "", rev, changes)
		newRev, err := a.repo.PutGlobal(ctx, next, rev)
		if errors.Is(err, design.ErrConflict) {
			if retry, err := a.lost(ctx, w, attempt, "the provider-wide freezes", func() (uint64, error) { _, r, err := a.repo.Global(ctx); return r, err }); !retry {
				return nil, 0, err
			}
			continue
		}
		if err != nil {
			return nil, 0, unavailable(err)
		}
		a.written(ctx, pub, libdesign.KeyGlobal, next, newRev)
		return next, newRev, nil
	}
}

// lost decides what follows a compare-and-set that lost: with If-Match the caller's revision
// is stale (the error names the current one); without, the write is tried again a few times.
func (a *Designs) lost(ctx context.Context, w Write, attempt int, what string, current func() (uint64, error)) (retry bool, err error) {
	if w.IfMatch != 0 {
		cur, err := current()
		if err != nil {
			return false, unavailable(err)
		}
		return false, &design.StaleError{What: what, Expected: w.IfMatch, Current: cur}
	}
	if attempt >= casAttempts {
		return false, fmt.Errorf("%w: %s: %d concurrent writes in a row won over this one; try again", apierr.ErrUnavailable, what, attempt)
	}
	a.log.DebugContext(ctx, "design write lost a compare-and-set; applying it again", "what", what, "attempt", attempt)
	return true, nil
}

// written records a write and publishes its audit event. A failed publish is logged, not
// returned: the write is stored, and the audit relay publishes the event of every revision.
func (a *Designs) written(ctx context.Context, pub Publisher, key string, doc any, rev uint64) {
	a.noteWrite(rev)
	ev, err := auditEvent(key, doc, rev)
	if err == nil && ev != nil {
		err = pub.Publish(ctx, ev)
	}
	if err != nil {
		a.log.WarnContext(ctx, "audit event not published yet; the audit relay will", "key", key, "revision", rev, "error", err)
	}
}

// TenantDesign returns a tenant's document and revision; apierr.ErrNotFound for an unknown
// tenant.
func (a *Designs) TenantDesign(ctx context.Context, tenant string) (*typesv1.TenantDesign, uint64, error) {
	if err := design.ValidateTenantID("tenant", tenant); err != nil {
		return nil, 0, err
	}
	doc, rev, err := a.repo.Tenant(ctx, tenant)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	if !design.Exists(doc) {
		return nil, 0, tenantNotFound(tenant)
	}
	return doc, rev, nil
}

// RequireTenant returns apierr.ErrNotFound unless the tenant is in the design (every tenant
// route answers 404 for an unknown tenant).
func (a *Designs) RequireTenant(ctx context.Context, tenant string) error {
	_, _, err := a.TenantDesign(ctx, tenant)
	return err
}

// GlobalDesign returns the provider-wide document (empty at revision 0 before its first write).
func (a *Designs) GlobalDesign(ctx context.Context) (*typesv1.GlobalDesign, uint64, error) {
	doc, rev, err := a.repo.Global(ctx)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	if doc == nil {
		doc = &typesv1.GlobalDesign{}
	}
	return doc, rev, nil
}

// Tenants lists every tenant from the watched view, once it holds this process's writes, and
// the bucket revision the list reflects.
func (a *Designs) Tenants(ctx context.Context) ([]libdesign.Tenant, uint64, error) {
	if err := a.viewCaughtUp(ctx); err != nil {
		return nil, 0, err
	}
	return a.view.Tenants(), a.view.Revision(), nil
}

func (a *Designs) viewCaughtUp(ctx context.Context) error {
	if err := a.view.WaitReady(ctx); err != nil {
		return fmt.Errorf("%w: %w", apierr.ErrUnavailable, err)
	}
	wctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	if err := a.view.WaitRevision(wctx, a.lastWrite.Load()); err != nil {
		return fmt.Errorf("%w: the design view is behind the last write: %w", apierr.ErrUnavailable, err)
	}
	return nil
}

// RunScope is what a run of one wave takes from the design: it checks that the tenant exists
// (apierr.ErrNotFound), that the wave is within the tenant's wave limit (a
// *apierr.ValidationError on "wave") and defined (apierr.ErrFailedPrecondition), and returns
// the tenant's wave tag key.
func (a *Designs) RunScope(ctx context.Context, tenant string, wave int32) (string, error) {
	doc, _, err := a.TenantDesign(ctx, tenant)
	if err != nil {
		return "", err
	}
	if limit := doc.GetTenant().GetWaveLimit(); wave < 1 || wave > limit {
		var v apierr.Violations
		v.Add("wave", fmt.Sprintf("must be from 1 to %d (the tenant's wave limit), got %d", limit, wave))
		return "", v.Err()
	}
	if !slices.ContainsFunc(doc.GetWaves(), func(w *typesv1.Wave) bool { return w.GetNumber() == wave }) {
		return "", fmt.Errorf("%w: wave %d of tenant %s is not defined in the service design (PUT /v1/tenants/%s/waves/%d defines it)",
			apierr.ErrFailedPrecondition, wave, tenant, tenant, wave)
	}
	return doc.GetTenant().GetWaveTagKey(), nil
}

// WavePolicy returns the rollout policy of a wave: its own, else the tenant's default policy,
// else nil. The run's jobs carry what it says about reboots, timeouts and auto-rollback.
func (a *Designs) WavePolicy(ctx context.Context, tenant string, wave int32) (*typesv1.RolloutPolicy, error) {
	doc, _, err := a.TenantDesign(ctx, tenant)
	if err != nil {
		return nil, err
	}
	for _, w := range doc.GetWaves() {
		if w.GetNumber() == wave && w.GetPolicy() != nil {
			return w.GetPolicy(), nil
		}
	}
	return doc.GetTenant().GetDefaultPolicy(), nil
}

func tenantNotFound(tenant string) error {
	return fmt.Errorf("%w: tenant %s is not in the service design", apierr.ErrNotFound, tenant)
}

// unavailable marks an infrastructure error (the KV unreachable) as retryable.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", apierr.ErrUnavailable, err)
}

// firstValidation merges the *apierr.ValidationError of a joined error into one.
func firstValidation(err error) error {
	var all apierr.Violations
	var other []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var verr *apierr.ValidationError
		if errors.As(e, &verr) {
			all = append(all, verr.Violations...)
			return
		}
		other = append(other, e)
	}
	walk(err)
	if len(other) > 0 {
		return errors.Join(other...)
	}
	return all.Err()
}

// Window returns the wave's window open at now (a scheduled, deferred or overridden
// occurrence whose window contains now), with the start of a freeze inside it; nil when none
// is open (a run started outside its windows dispatches without a time limit).
func (a *Designs) Window(ctx context.Context, tenant string, wave int32, now time.Time) (*domain.Window, error) {
	occs, _, err := a.PreviewWave(ctx, tenant, wave, now, 1)
	if err != nil {
		if errors.Is(err, apierr.ErrNotFound) || errors.Is(err, apierr.ErrInvalidArgument) {
			return nil, nil
		}
		return nil, err
	}
	if len(occs) == 0 {
		return nil, nil
	}
	o := occs[0]
	switch o.Status {
	case calendar.StatusScheduled, calendar.StatusDeferred, calendar.StatusOverridden:
	default:
		return nil, nil
	}
	if now.Before(o.Start) || !now.Before(o.End) {
		return nil, nil
	}
	w := &domain.Window{End: o.End, FreezeStart: o.DispatchStopAt}
	if !o.DispatchStopAt.IsZero() {
		w.FreezeNote = strings.Join(o.Freezes, ", ")
	}
	return w, nil
}
