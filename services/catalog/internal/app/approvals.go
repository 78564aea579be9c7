package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/kvstore"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// TenantChecker says whether a tenant exists: nil for one in the service design, an error
// wrapping apierr.ErrNotFound otherwise. libs/design's View is one.
type TenantChecker interface {
	RequireTenant(ctx context.Context, tenant string) error
}

// ShapeOnly accepts every well-formed tenant id (the shape is checked before it is asked).
type ShapeOnly struct{}

// RequireTenant returns nil.
func (ShapeOnly) RequireTenant(context.Context, string) error { return nil }

func approvalKey(tenant, baselineID string) string { return tenant + "." + baselineID }

func (a *App) checkTenant(ctx context.Context, tenant string) error {
	if err := events.ValidateTenant(tenant); err != nil {
		return domain.Invalid(err)
	}
	return a.tenants.RequireTenant(ctx, tenant)
}

// ListApprovals returns the tenant's decision on every published baseline, pending ones
// included, in the baseline listing's order.
func (a *App) ListApprovals(ctx context.Context, tenant string) ([]domain.Approval, error) {
	if err := a.checkTenant(ctx, tenant); err != nil {
		return nil, err
	}
	bs, err := a.ListBaselines(ctx, "")
	if err != nil {
		return nil, err
	}
	if err := a.st.Approvals.Sync(ctx); err != nil {
		return nil, err
	}
	out := make([]domain.Approval, 0, len(bs))
	for _, b := range bs {
		ap := domain.Approval{Tenant: tenant, BaselineID: b.ID, OSFamily: b.OSFamily, Version: b.Version}
		if e, ok := a.st.Approvals.Cached(approvalKey(tenant, b.ID)); ok {
			ap = pb.FromApproval(e.Value)
		}
		out = append(out, ap)
	}
	return out, nil
}

// Approval returns the tenant's decision on one baseline (PENDING when none).
func (a *App) Approval(ctx context.Context, tenant, baselineID string) (domain.Approval, error) {
	if err := a.checkTenant(ctx, tenant); err != nil {
		return domain.Approval{}, err
	}
	b, err := a.GetBaseline(ctx, baselineID)
	if err != nil {
		return domain.Approval{}, err
	}
	e, found, err := a.st.Approvals.Get(ctx, approvalKey(tenant, baselineID))
	if err != nil {
		return domain.Approval{}, err
	}
	if !found {
		return domain.Approval{Tenant: tenant, BaselineID: b.ID, OSFamily: b.OSFamily, Version: b.Version}, nil
	}
	return pb.FromApproval(e.Value), nil
}

// Decide records the tenant's approval or rejection of a baseline version and announces it
// (patch.<tenant>.baseline.approved / .rejected). The same decision again changes nothing.
func (a *App) Decide(ctx context.Context, tenant, baselineID string, state domain.ApprovalState, actor, notes string) (domain.Approval, error) {
	return a.decide(ctx, tenant, baselineID, state, actor, notes, false)
}

func (a *App) decide(ctx context.Context, tenant, baselineID string, state domain.ApprovalState, actor, notes string, auto bool) (domain.Approval, error) {
	if err := a.checkTenant(ctx, tenant); err != nil {
		return domain.Approval{}, err
	}
	if err := domain.ValidateActor(actor); err != nil {
		return domain.Approval{}, domain.Invalid(fmt.Errorf("actor: %w", err))
	}
	if state == domain.ApprovalRejected && notes == "" {
		return domain.Approval{}, domain.Invalid(errors.New("reason: required to reject a baseline"))
	}
	if len(notes) > domain.MaxNotes {
		return domain.Approval{}, domain.Invalid(fmt.Errorf("notes: at most %d bytes", domain.MaxNotes))
	}
	b, err := a.GetBaseline(ctx, baselineID)
	if err != nil {
		return domain.Approval{}, err
	}
	key := approvalKey(tenant, baselineID)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		e, found, err := a.st.Approvals.Get(ctx, key)
		if err != nil {
			return domain.Approval{}, err
		}
		cur := domain.Approval{Tenant: tenant, BaselineID: b.ID, OSFamily: b.OSFamily, Version: b.Version}
		var rev uint64
		if found {
			cur, rev = pb.FromApproval(e.Value), e.Revision
			if auto {
				return cur, nil // a decision the tenant made is never overridden by its policy
			}
		}
		next, changed := cur.Decide(state, actor, notes, auto, a.now())
		if !changed {
			return cur, nil
		}
		newRev, err := a.st.Approvals.Put(ctx, key, pb.Approval(next), rev)
		if errors.Is(err, kvstore.ErrConflict) {
			continue
		}
		if err != nil {
			return domain.Approval{}, err
		}
		ev := decisionEvent(next, newRev)
		a.log.InfoContext(ctx, "baseline decision", "tenant", tenant, "baseline_id", b.ID, "state", state.String(), "actor", actor)
		return next, a.publish(ctx, ev)
	}
	return domain.Approval{}, fmt.Errorf("approval %s: %w", key, kvstore.ErrConflict)
}

// GetPolicy returns the tenant's auto-approve policy (none: auto-approve off).
func (a *App) GetPolicy(ctx context.Context, tenant string) (domain.Policy, error) {
	if err := a.checkTenant(ctx, tenant); err != nil {
		return domain.Policy{}, err
	}
	e, found, err := a.st.Policies.Get(ctx, tenant)
	if err != nil || !found {
		return domain.Policy{Tenant: tenant}, err
	}
	p := pb.FromPolicy(e.Value)
	p.Revision = e.Revision
	return p, nil
}

// PutPolicy sets the tenant's auto-approve policy, announces it
// (patch.<tenant>.approval_policy.changed) and applies it at once.
func (a *App) PutPolicy(ctx context.Context, p domain.Policy) (domain.Policy, error) {
	if err := a.checkTenant(ctx, p.Tenant); err != nil {
		return domain.Policy{}, err
	}
	p.ChangedAt = a.now().UTC()
	if err := p.Validate(); err != nil {
		return domain.Policy{}, err
	}
	slices.Sort(p.OSFamilies)
	e, found, err := a.st.Policies.Get(ctx, p.Tenant)
	if err != nil {
		return domain.Policy{}, err
	}
	var rev uint64
	if found {
		rev = e.Revision
	}
	next, err := a.st.Policies.Put(ctx, p.Tenant, pb.Policy(p), rev)
	if err != nil {
		return domain.Policy{}, err
	}
	p.Revision = next
	pm := pb.Policy(p)
	if err := a.publish(ctx, events.MustNew(p.Tenant, strconv.FormatUint(next, 10), &eventsv1.ApprovalPolicyChanged{
		Tenant: p.Tenant, AutoApprove: p.AutoApprove, Delay: pm.GetDelay(), OsFamilies: p.OSFamilies,
		ChangedBy: p.ChangedBy, ChangedAt: pm.GetChangedAt(), Revision: next,
	})); err != nil {
		return domain.Policy{}, err
	}
	if err := a.st.Policies.WaitFor(ctx, next); err != nil {
		return domain.Policy{}, err
	}
	if _, err := a.AutoApprove(ctx); err != nil {
		return domain.Policy{}, err
	}
	return p, nil
}

// AutoApprove approves, for every tenant with an auto-approve policy, each published baseline
// of a covered family whose delay has passed and on which the tenant has not decided; each
// approval is the policy's (actor "policy:auto-approve"). It returns how many it approved.
func (a *App) AutoApprove(ctx context.Context) (int, error) {
	if err := a.st.Policies.Sync(ctx); err != nil {
		return 0, err
	}
	policies := a.st.Policies.Snapshot()
	if len(policies) == 0 {
		return 0, nil
	}
	bs, err := a.ListBaselines(ctx, "")
	if err != nil {
		return 0, err
	}
	if err := a.st.Approvals.Sync(ctx); err != nil {
		return 0, err
	}
	now := a.now()
	n := 0
	for _, pe := range policies {
		p := pb.FromPolicy(pe.Value)
		for _, b := range bs {
			if !p.Covers(b.OSFamily) || now.Before(p.DueAt(b.PublishedAt)) {
				continue
			}
			if _, decided := a.st.Approvals.Cached(approvalKey(p.Tenant, b.ID)); decided {
				continue
			}
			notes := fmt.Sprintf("auto-approved by the tenant's policy: published %s, delay %s", b.PublishedAt.UTC().Format(time.RFC3339), p.Delay)
			if _, err := a.decide(ctx, p.Tenant, b.ID, domain.ApprovalApproved, domain.AutoApproveActor, notes, true); err != nil {
				if ctx.Err() != nil {
					return n, err
				}
				// One tenant's failure (say, removed from the service design) stops no other.
				a.log.WarnContext(ctx, "auto-approval failed", "tenant", p.Tenant, "baseline_id", b.ID, "error", err)
				continue
			}
			n++
		}
	}
	return n, nil
}

// NextAutoApproval returns when the next pending auto-approval falls due (zero when none), so
// the timer can wake for it instead of polling.
func (a *App) NextAutoApproval() time.Time {
	var next time.Time
	bs := a.baselines("")
	for _, pe := range a.st.Policies.Snapshot() {
		p := pb.FromPolicy(pe.Value)
		for _, b := range bs {
			if !p.Covers(b.OSFamily) {
				continue
			}
			if _, decided := a.st.Approvals.Cached(approvalKey(p.Tenant, b.ID)); decided {
				continue
			}
			if due := p.DueAt(b.PublishedAt); next.IsZero() || due.Before(next) {
				next = due
			}
		}
	}
	return next
}
