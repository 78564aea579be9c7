package app

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	libdesign "github.com/patchwave/patchwave/libs/design"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// RaiseRequest records a tenant admin's change to the tenant's design as an OPEN service
// request and publishes ServiceRequestRaised. The operations must apply to the design as it is
// now (the error names "operations[i]..." fields otherwise); they are applied only when an
// operator applies the request.
func (a *Designs) RaiseRequest(ctx context.Context, tenant string, w Write, ops []*typesv1.Operation) (*typesv1.ServiceRequest, uint64, error) {
	if err := errors.Join(design.ValidateTenantID("tenant", tenant), design.ValidateActor(ActorField, w.Actor)); err != nil {
		return nil, 0, firstValidation(err)
	}
	pub, err := a.publisher()
	if err != nil {
		return nil, 0, err
	}
	doc, rev, err := a.TenantDesign(ctx, tenant)
	if err != nil {
		return nil, 0, err
	}
	id, err := design.NewRequestID(a.now(), a.rand)
	if err != nil {
		return nil, 0, err
	}
	r, err := design.NewRequest(design.Raise{
		Tenant: tenant, ID: id, Actor: w.Actor, Reason: w.Reason, Operations: ops, Now: a.now(), Revision: rev,
	})
	if err != nil {
		return nil, 0, err
	}
	design.FillFreezeIDs(r.Operations, a.freezeID)
	if _, err := design.ApplyTenant(doc, r.GetOperations(), design.Change{Tenant: tenant, Now: a.now(), Actor: w.Actor, Field: design.RequestField}); err != nil {
		return nil, 0, design.AsViolation(err)
	}
	newRev, err := a.repo.PutRequest(ctx, r, 0)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	a.written(ctx, pub, libdesign.RequestKey(tenant, id), r, newRev)
	return r, newRev, nil
}

// Request returns one service request and its revision (its ETag); apierr.ErrNotFound for an
// unknown tenant or request.
func (a *Designs) Request(ctx context.Context, tenant, id string) (*typesv1.ServiceRequest, uint64, error) {
	if err := errors.Join(design.ValidateTenantID("tenant", tenant), design.ValidateRequestID("requestId", id)); err != nil {
		return nil, 0, firstValidation(err)
	}
	if err := a.RequireTenant(ctx, tenant); err != nil {
		return nil, 0, err
	}
	r, rev, err := a.repo.Request(ctx, tenant, id)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	if r == nil {
		return nil, 0, fmt.Errorf("%w: service request %s of tenant %s", apierr.ErrNotFound, id, tenant)
	}
	return withAppliedRevision(r, rev), rev, nil
}

// Requests lists a tenant's service requests, newest first, in one state or all
// (UNSPECIFIED), from the watched view, and the bucket revision the list reflects.
func (a *Designs) Requests(ctx context.Context, tenant string, state typesv1.ServiceRequestState) ([]*typesv1.ServiceRequest, uint64, error) {
	if err := design.ValidateTenantID("tenant", tenant); err != nil {
		return nil, 0, err
	}
	if _, ok := typesv1.ServiceRequestState_name[int32(state)]; !ok {
		var v apierr.Violations
		v.Add("state", fmt.Sprintf("must be a service request state (OPEN, APPLIED, REJECTED, WITHDRAWN), got %d", state))
		return nil, 0, v.Err()
	}
	if err := a.RequireTenant(ctx, tenant); err != nil {
		return nil, 0, err
	}
	if err := a.viewCaughtUp(ctx); err != nil {
		return nil, 0, err
	}
	var out []*typesv1.ServiceRequest
	for _, r := range a.view.Requests(tenant) {
		if state == typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_UNSPECIFIED || r.Request.GetState() == state {
			out = append(out, withAppliedRevision(r.Request, r.Revision))
		}
	}
	return out, a.view.Revision(), nil
}

// CloseRequest applies, rejects or withdraws an OPEN service request. Applying writes the
// tenant's document (the request's operations, linked to the request) and the request's new
// state in one atomic compare-and-set, then publishes DesignChanged and ServiceRequestApplied;
// if the operations no longer apply (the design moved on) the request stays OPEN and the error
// (apierr.ErrFailedPrecondition) says why. Closing a request the same way again returns it as
// it is: applying twice applies once. w.IfMatch, when set, is the request's revision.
func (a *Designs) CloseRequest(ctx context.Context, tenant, id string, act design.Action, w Write) (*typesv1.ServiceRequest, uint64, error) {
	if err := errors.Join(design.ValidateTenantID("tenant", tenant), design.ValidateRequestID("requestId", id), w.validate(false)); err != nil {
		return nil, 0, firstValidation(err)
	}
	pub, err := a.publisher()
	if err != nil {
		return nil, 0, err
	}
	for attempt := 1; ; attempt++ {
		r, rev, err := a.Request(ctx, tenant, id)
		if err != nil {
			return nil, 0, err
		}
		if w.IfMatch != 0 && w.IfMatch != rev {
			return nil, 0, &design.StaleError{What: "service request " + id, Expected: w.IfMatch, Current: rev}
		}
		done, err := design.CheckClose(r, act, w.Actor, w.Reason)
		if err != nil || done {
			return r, rev, err
		}
		var closed *typesv1.ServiceRequest
		var newRev uint64
		if act == design.ActionApply {
			closed, newRev, err = a.apply(ctx, pub, r, rev, w)
		} else {
			closed = design.Close(r, act, w.Actor, w.Reason, a.now(), 0)
			newRev, err = a.repo.PutRequest(ctx, closed, rev)
			if err == nil {
				a.written(ctx, pub, libdesign.RequestKey(tenant, id), closed, newRev)
			}
		}
		if errors.Is(err, design.ErrConflict) {
			// The request or the document moved: read both again (a concurrent close shows as
			// done or as a refused transition).
			if retry, err := a.lost(ctx, Write{}, attempt, "service request "+id, nil); !retry {
				return nil, 0, err
			}
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		return withAppliedRevision(closed, newRev), newRev, nil
	}
}

// apply writes the request's change and its APPLIED state as one atomic compare-and-set.
func (a *Designs) apply(ctx context.Context, pub Publisher, r *typesv1.ServiceRequest, rev uint64, w Write) (*typesv1.ServiceRequest, uint64, error) {
	tenant := r.GetTenant()
	doc, docRev, err := a.TenantDesign(ctx, tenant)
	if err != nil {
		return nil, 0, err
	}
	next, err := design.ApplyTenant(doc, r.GetOperations(), design.Change{Tenant: tenant, Now: a.now(), Actor: w.Actor, Field: design.RequestField})
	if err != nil {
		return nil, 0, fmt.Errorf("%w: service request %s no longer applies to the design of tenant %s at revision %d, so it stays OPEN (reject it, or raise a new one): %s",
			apierr.ErrFailedPrecondition, r.GetRequestId(), tenant, docRev, err.Error())
	}
	next.LastChange = a.change(ctx, Write{Actor: w.Actor, Reason: r.GetReason()}, r.GetRequestId(), docRev, design.Diff(doc, next))
	closed := design.Close(r, design.ActionApply, w.Actor, w.Reason, a.now(), 0)
	newDoc, newReq, err := a.repo.PutTenantAndRequest(ctx, next, docRev, closed, rev)
	if err != nil {
		if errors.Is(err, design.ErrConflict) {
			return nil, 0, err
		}
		return nil, 0, unavailable(err)
	}
	a.written(ctx, pub, libdesign.TenantKey(tenant), next, newDoc)
	a.written(ctx, pub, libdesign.RequestKey(tenant, r.GetRequestId()), closed, newReq)
	return closed, newReq, nil
}

// withAppliedRevision returns r with its applied revision filled in (design.AppliedRevision).
func withAppliedRevision(r *typesv1.ServiceRequest, rev uint64) *typesv1.ServiceRequest {
	ar := design.AppliedRevision(r, rev)
	if ar == r.GetAppliedRevision() {
		return r
	}
	c := proto.Clone(r).(*typesv1.ServiceRequest)
	c.AppliedRevision = ar
	return c
}
