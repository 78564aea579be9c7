package design

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/kvwatch"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// ViewConfig configures a View.
type ViewConfig struct {
	// JetStream reaches the bucket. Required.
	JetStream jetstream.JetStream
	// ServiceRequests also keeps every service request (the scheduler lists them from its
	// view); other services leave it off. Optional, default false.
	ServiceRequests bool
	// Logger. Optional, default discards.
	Logger *slog.Logger
	// RetryInterval is the wait before binding the bucket again (it does not exist until the
	// scheduler first starts) or watching again after the watch ended. Optional, default 1s.
	RetryInterval time.Duration
}

// Tenant is one tenant's document at a revision. Design is shared by every reader: treat it
// as read-only.
type Tenant struct {
	Design   *typesv1.TenantDesign
	Revision uint64
}

// Global is the provider-wide document at a revision (Design is never nil; read-only).
type Global struct {
	Design   *typesv1.GlobalDesign
	Revision uint64
}

// Request is one service request at a revision (read-only).
type Request struct {
	Request  *typesv1.ServiceRequest
	Revision uint64
}

// View is an in-memory copy of the service design kept up to date by a KV watch. Run it; the
// getters answer from memory at once and are safe for concurrent use. Until the initial values
// are loaded (Ready), a tenant is unknown: callers that must not answer "unknown" too early
// wait with WaitReady.
type View struct {
	cfg ViewConfig
	log *slog.Logger

	mu       sync.RWMutex
	tenants  map[string]Tenant
	tenantRv map[string]uint64 // revision of every tenant key seen, tombstones included
	global   Global
	requests map[string]map[string]Request
	rev      uint64
	changed  chan struct{} // closed and replaced on every change

	ready     chan struct{}
	readyOnce sync.Once
}

// NewView checks cfg and returns a View; call Run to fill it.
func NewView(cfg ViewConfig) (*View, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("design view: JetStream: required")
	}
	if cfg.RetryInterval < 0 {
		return nil, fmt.Errorf("design view: RetryInterval %s: must not be negative", cfg.RetryInterval)
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &View{
		cfg: cfg, log: cfg.Logger.With("component", "design-view"),
		tenants: map[string]Tenant{}, tenantRv: map[string]uint64{},
		global:   Global{Design: &typesv1.GlobalDesign{}},
		requests: map[string]map[string]Request{},
		changed:  make(chan struct{}), ready: make(chan struct{}),
	}, nil
}

// Run watches the bucket until ctx is done. It waits for the bucket to exist, and watches again
// when a watch ends; it returns nil when ctx is done.
func (v *View) Run(ctx context.Context) error {
	missing := false
	for {
		kv, err := v.cfg.JetStream.KeyValue(ctx, Bucket)
		switch {
		case err == nil:
			err = v.watch(ctx, kv)
			if ctx.Err() == nil {
				v.log.WarnContext(ctx, "design watch ended; watching again", "error", err)
			}
		case errors.Is(err, jetstream.ErrBucketNotFound):
			if !missing {
				v.log.InfoContext(ctx, "design bucket does not exist yet; waiting for the scheduler to create it", "bucket", Bucket)
				missing = true
			}
		case ctx.Err() == nil:
			v.log.WarnContext(ctx, "design bucket unreachable", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(v.cfg.RetryInterval):
		}
	}
}

// watch applies the bucket's values and changes until the watch ends.
func (v *View) watch(ctx context.Context, kv jetstream.KeyValue) error {
	filters := []string{TenantsFilter, KeyGlobal}
	if v.cfg.ServiceRequests {
		filters = append(filters, RequestsFilter)
	}
	w, err := kv.WatchFiltered(ctx, filters)
	if err != nil {
		return fmt.Errorf("watch %s: %w", Bucket, err)
	}
	loaded := func() {
		v.readyOnce.Do(func() {
			close(v.ready)
			v.log.InfoContext(ctx, "design loaded", "tenants", v.tenantCount(), "revision", v.Revision())
		})
	}
	return kvwatch.Follow(ctx, w, loaded, func(e jetstream.KeyValueEntry) { v.apply(ctx, e) })
}

// apply records one KV entry. Entries older than what the view holds for the key (a watch
// started again) are ignored; a value that does not decode is logged and skipped.
func (v *View) apply(ctx context.Context, e jetstream.KeyValueEntry) {
	k := ParseKey(e.Key())
	deleted := e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.bump(e.Revision())
	switch k.Kind {
	case KindTenant:
		if v.tenantRv[k.Tenant] >= e.Revision() {
			return
		}
		v.tenantRv[k.Tenant] = e.Revision()
		if deleted {
			delete(v.tenants, k.Tenant)
			return
		}
		d, err := DecodeTenant(e.Value())
		if err != nil {
			v.log.ErrorContext(ctx, "design view: tenant document does not decode; keeping the previous one", "key", e.Key(), "revision", e.Revision(), "error", err)
			return
		}
		if d.GetDeleted() {
			delete(v.tenants, k.Tenant)
			return
		}
		v.tenants[k.Tenant] = Tenant{Design: d, Revision: e.Revision()}
	case KindGlobal:
		if v.global.Revision >= e.Revision() {
			return
		}
		if deleted {
			v.global = Global{Design: &typesv1.GlobalDesign{}, Revision: e.Revision()}
			return
		}
		d, err := DecodeGlobal(e.Value())
		if err != nil {
			v.log.ErrorContext(ctx, "design view: global document does not decode; keeping the previous one", "revision", e.Revision(), "error", err)
			return
		}
		v.global = Global{Design: d, Revision: e.Revision()}
	case KindRequest:
		reqs := v.requests[k.Tenant]
		if reqs[k.RequestID].Revision >= e.Revision() {
			return
		}
		if deleted {
			delete(reqs, k.RequestID)
			return
		}
		r, err := DecodeRequest(e.Value())
		if err != nil {
			v.log.ErrorContext(ctx, "design view: service request does not decode", "key", e.Key(), "error", err)
			return
		}
		if reqs == nil {
			reqs = map[string]Request{}
			v.requests[k.Tenant] = reqs
		}
		reqs[k.RequestID] = Request{Request: r, Revision: e.Revision()}
	default:
		v.log.WarnContext(ctx, "design view: unexpected key", "key", e.Key())
	}
}

// bump raises the view's revision and wakes WaitRevision; v.mu is held.
func (v *View) bump(rev uint64) {
	if rev > v.rev {
		v.rev = rev
	}
	close(v.changed)
	v.changed = make(chan struct{})
}

func (v *View) tenantCount() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.tenants)
}

// Ready is closed once the initial values are loaded.
func (v *View) Ready() <-chan struct{} { return v.ready }

// Loaded is a readiness check (host.Readiness): nil once the initial values are loaded.
func (v *View) Loaded(context.Context) error {
	select {
	case <-v.ready:
		return nil
	default:
		return errors.New("design view: loading the service design")
	}
}

// WaitReady waits until the initial values are loaded, at most 10 seconds; it returns
// ErrNotReady after that, or ctx's error.
func (v *View) WaitReady(ctx context.Context) error {
	select {
	case <-v.ready:
		return nil
	default:
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-v.ready:
		return nil
	case <-t.C:
		return ErrNotReady
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Revision is the highest KV revision the view has applied.
func (v *View) Revision() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.rev
}

// WaitRevision waits until the view has applied revision rev of a key it watches (a write the
// caller made), so that the caller reads its own writes; it returns ctx's error otherwise.
func (v *View) WaitRevision(ctx context.Context, rev uint64) error {
	for {
		v.mu.RLock()
		done, changed := v.rev >= rev, v.changed
		v.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Tenant returns a tenant's document; false for an unknown (or deleted) tenant.
func (v *View) Tenant(id string) (Tenant, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	t, ok := v.tenants[id]
	return t, ok
}

// Tenants returns every tenant, sorted by id.
func (v *View) Tenants() []Tenant {
	v.mu.RLock()
	out := make([]Tenant, 0, len(v.tenants))
	for _, t := range v.tenants {
		out = append(out, t)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b Tenant) int {
		return cmp.Compare(a.Design.GetTenant().GetTenantId(), b.Design.GetTenant().GetTenantId())
	})
	return out
}

// Waves returns a tenant's waves, by number; false for an unknown tenant.
func (v *View) Waves(tenant string) ([]*typesv1.Wave, bool) {
	t, ok := v.Tenant(tenant)
	return t.Design.GetWaves(), ok
}

// Wave returns one wave of a tenant; false when the tenant or the wave is unknown.
func (v *View) Wave(tenant string, number int32) (*typesv1.Wave, bool) {
	waves, _ := v.Waves(tenant)
	for _, w := range waves {
		if w.GetNumber() == number {
			return w, true
		}
	}
	return nil, false
}

// Freezes returns a tenant's own freezes, by id; false for an unknown tenant. The
// provider-wide freezes, which apply to every tenant too, are GlobalFreezes.
func (v *View) Freezes(tenant string) ([]*typesv1.Freeze, bool) {
	t, ok := v.Tenant(tenant)
	return t.Design.GetFreezes(), ok
}

// Overrides returns a tenant's emergency overrides, by wave and key; false for an unknown tenant.
func (v *View) Overrides(tenant string) ([]*typesv1.Override, bool) {
	t, ok := v.Tenant(tenant)
	return t.Design.GetOverrides(), ok
}

// Global returns the provider-wide document.
func (v *View) Global() Global {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.global
}

// GlobalFreezes returns the provider-wide freezes, by id.
func (v *View) GlobalFreezes() []*typesv1.Freeze { return v.Global().Design.GetFreezes() }

// Requests returns a tenant's service requests, newest first (by the time they were raised,
// then by id). It is empty unless ViewConfig.ServiceRequests is set.
func (v *View) Requests(tenant string) []Request {
	v.mu.RLock()
	reqs := v.requests[tenant]
	out := make([]Request, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, r)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b Request) int { return cmp.Compare(RequestOrder(b.Request), RequestOrder(a.Request)) })
	return out
}

// RequestOrder is the sort key of a service request: the time it was raised (to the
// nanosecond, fixed width) and its id, so that keys sort as the requests were raised.
func RequestOrder(r *typesv1.ServiceRequest) string {
	return r.GetRaiseTime().AsTime().UTC().Format("20060102T150405.000000000Z") + "/" + r.GetRequestId()
}

// OpenRequests returns every open service request of every tenant, oldest first.
func (v *View) OpenRequests() []Request {
	v.mu.RLock()
	var out []Request
	for _, reqs := range v.requests {
		for _, r := range reqs {
			if r.Request.GetState() == typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_OPEN {
				out = append(out, r)
			}
		}
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b Request) int { return cmp.Compare(RequestOrder(a.Request), RequestOrder(b.Request)) })
	return out
}

// RequireTenant returns nil for a tenant in the design and an error wrapping
// apierr.ErrNotFound for any other, so that every tenant route answers 404 for an unknown
// tenant. It waits for the initial values first (apierr.ErrUnavailable when they do not come
// in time). A tenant the view does not hold is looked up in the bucket once (one round trip,
// only on a miss): a tenant created a moment ago, which the watch has not delivered yet, is
// found there, so a caller that created a tenant reads its own write.
func (v *View) RequireTenant(ctx context.Context, tenant string) error {
	if err := v.WaitReady(ctx); err != nil {
		return fmt.Errorf("%w: %w", apierr.ErrUnavailable, err)
	}
	if _, ok := v.Tenant(tenant); ok {
		return nil
	}
	if v.inBucket(ctx, tenant) {
		return nil
	}
	return fmt.Errorf("%w: tenant %s is not in the service design", apierr.ErrNotFound, tenant)
}

// inBucket reports whether the bucket holds a live value for the tenant now (a name that is
// not a valid key is an error of Get, so false).
func (v *View) inBucket(ctx context.Context, tenant string) bool {
	kv, err := v.cfg.JetStream.KeyValue(ctx, Bucket)
	if err != nil {
		return false
	}
	e, err := kv.Get(ctx, TenantKey(tenant))
	return err == nil && e.Operation() == jetstream.KeyValuePut
}
