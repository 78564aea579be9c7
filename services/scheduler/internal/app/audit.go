package app

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	libdesign "github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// Audit is the audit relay's handler: it publishes the event that one stored revision of the
// design bucket stands for (DesignChanged for a document, ServiceRequestRaised, -Applied,
// -Rejected or -Withdrawn for a service request). The event is built from the revision alone,
// with a deterministic id, so the write path's publish and the relay's are stored once. A
// value that does not decode, or a revision written by hand without its change record, is
// logged and skipped: nothing may block the relay.
func (a *Designs) Audit(ctx context.Context, key string, rev uint64, value []byte, deleted bool) error {
	if deleted {
		a.log.WarnContext(ctx, "design key deleted outside the scheduler; no audit event", "key", key, "revision", rev)
		return nil
	}
	pub, err := a.publisher()
	if err != nil {
		return err
	}
	var doc any
	switch k := libdesign.ParseKey(key); k.Kind {
	case libdesign.KindTenant:
		doc, err = libdesign.DecodeTenant(value)
	case libdesign.KindGlobal:
		doc, err = libdesign.DecodeGlobal(value)
	case libdesign.KindRequest:
		doc, err = libdesign.DecodeRequest(value)
	default:
		a.log.WarnContext(ctx, "unexpected key in the design bucket; no audit event", "key", key, "revision", rev)
		return nil
	}
	if err != nil {
		a.log.ErrorContext(ctx, "design revision does not decode; no audit event", "key", key, "revision", rev, "error", err)
		return nil
	}
	ev, err := auditEvent(key, doc, rev)
	if err != nil {
		a.log.ErrorContext(ctx, "design revision gives no valid audit event", "key", key, "revision", rev, "error", err)
		return nil
	}
	if ev == nil {
		a.log.WarnContext(ctx, "design revision has no change record; no audit event", "key", key, "revision", rev)
		return nil
	}
	return pub.Publish(ctx, ev)
}

// auditEvent is the event of revision rev of key, whose decoded value is doc; nil when the
// value records no change.
func auditEvent(key string, doc any, rev uint64) (*events.Event, error) {
	switch d := doc.(type) {
	case *typesv1.TenantDesign:
		return designChanged(libdesign.ParseKey(key).Tenant, d.GetLastChange(), rev)
	case *typesv1.GlobalDesign:
		return designChanged(libdesign.ProviderTenant, d.GetLastChange(), rev)
	case *typesv1.ServiceRequest:
		return requestEvent(d, rev)
	}
	return nil, fmt.Errorf("audit event of %s: unexpected document %T", key, doc)
}

func designChanged(tenant string, c *typesv1.DesignChange, rev uint64) (*events.Event, error) {
	if c == nil {
		return nil, nil
	}
	ev, err := events.New(tenant, strconv.FormatUint(rev, 10), &eventsv1.DesignChanged{
		Tenant: tenant, OldRevision: c.GetOldRevision(), NewRevision: rev, Actor: c.GetActor(), Reason: c.GetReason(),
		ServiceRequestId: c.GetServiceRequestId(), Changes: c.GetChanges(), ChangedAt: c.GetTime(),
	})
	if err != nil {
		return nil, err
	}
	ev.Time, ev.CorrelationID = c.GetTime().AsTime(), c.GetCorrelationId()
	return ev, nil
}

// requestEvent is the event of a service request's revision: its state says which.
func requestEvent(r *typesv1.ServiceRequest, rev uint64) (*events.Event, error) {
	at := r.GetCloseTime()
	var ev *events.Event
	var err error
	switch r.GetState() {
	case design.StateOpen:
		at = r.GetRaiseTime()
		ev, err = events.New(r.GetTenant(), r.GetRequestId(), &eventsv1.ServiceRequestRaised{
			Tenant: r.GetTenant(), RequestId: r.GetRequestId(), RaisedBy: r.GetRaisedBy(), Reason: r.GetReason(),
			Operations: r.GetOperations(), RaisedAt: at, DesignRevision: r.GetRaisedRevision(), Revision: rev,
		})
	case design.StateApplied:
		ev, err = events.New(r.GetTenant(), r.GetRequestId(), &eventsv1.ServiceRequestApplied{
			Tenant: r.GetTenant(), RequestId: r.GetRequestId(), AppliedBy: r.GetClosedBy(),
			DesignRevision: design.AppliedRevision(r, rev), AppliedAt: at, Revision: rev,
		})
	case design.StateRejected:
		ev, err = events.New(r.GetTenant(), r.GetRequestId(), &eventsv1.ServiceRequestRejected{
			Tenant: r.GetTenant(), RequestId: r.GetRequestId(), RejectedBy: r.GetClosedBy(), Reason: r.GetCloseReason(),
			RejectedAt: at, Revision: rev,
		})
	case design.StateWithdrawn:
		ev, err = events.New(r.GetTenant(), r.GetRequestId(), &eventsv1.ServiceRequestWithdrawn{
			Tenant: r.GetTenant(), RequestId: r.GetRequestId(), WithdrawnBy: r.GetClosedBy(), Reason: r.GetCloseReason(),
			WithdrawnAt: at, Revision: rev,
		})
	default:
		return nil, fmt.Errorf("service request %s: state %s has no event", r.GetRequestId(), r.GetState())
	}
	if err != nil {
		return nil, err
	}
	ev.Time = at.AsTime()
	return ev, nil
}

func timestampOf(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
