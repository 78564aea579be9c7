package app

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// ProjectionAudit names the audit projection.
const ProjectionAudit = "audit"

// ProviderTenant is the tenant of the provider-wide audit records (GET /v1/audit-events).
const ProviderTenant = "provider"

// Audit is the read model of the gateway's audit events: each tenant's trail, newest first.
type Audit struct {
	log     domain.AuditLog
	tenants Tenants

	ready     chan struct{}
	readyOnce sync.Once
}

// NewAudit returns the audit read model over log; tenants says which tenants exist.
func NewAudit(log domain.AuditLog, tenants Tenants) *Audit {
	return &Audit{log: log, tenants: tenants, ready: make(chan struct{})}
}

// Checkpoint returns the last stream sequence the audit projection applied.
func (a *Audit) Checkpoint(ctx context.Context) (uint64, error) { return a.log.AuditCheckpoint(ctx) }

// CaughtUp marks the trail ready for queries.
func (a *Audit) CaughtUp(context.Context) error {
	a.readyOnce.Do(func() { close(a.ready) })
	return nil
}

// Apply appends an audit event to its tenant's trail. An event the trail already ends with (a
// replay after a crash between the entry and the checkpoint) is not appended again.
func (a *Audit) Apply(ctx context.Context, ev *events.Event, _ bool) error {
	rec, ok := ev.Data.(*eventsv1.AuditRecorded)
	if !ok {
		return bus.Permanent(fmt.Errorf("audit projection: unexpected event type %s", ev.Type))
	}
	n, err := a.log.AuditCount(ctx, ev.Tenant)
	if err != nil {
		return err
	}
	if n > 0 {
		last, found, err := a.log.AuditEntry(ctx, ev.Tenant, n)
		if err != nil {
			return err
		}
		if found && last.Seq >= ev.Sequence {
			return a.log.SetAuditCheckpoint(ctx, ev.Sequence)
		}
	}
	if err := a.log.PutAuditEntry(ctx, ev.Tenant, n+1, domain.AuditEntry{Seq: ev.Sequence, Record: rec}); err != nil {
		return err
	}
	if err := a.log.SetAuditCount(ctx, ev.Tenant, n+1); err != nil {
		return err
	}
	return a.log.SetAuditCheckpoint(ctx, ev.Sequence)
}

// List returns a page of a tenant's audit trail, newest first ("" is the provider-wide
// trail), and the token of the next page ("" on the last). The token is the number of the
// next entry, so a page stays right while the trail grows.
func (a *Audit) List(ctx context.Context, tenant string, pageSize int32, pageToken string) ([]*eventsv1.AuditRecorded, string, error) {
	size, err := domain.ValidateAuditPage(pageSize)
	if err != nil {
		return nil, "", err
	}
	if tenant == "" {
		tenant = ProviderTenant
	} else {
		if err := domain.ValidateTenant(tenant); err != nil {
			return nil, "", err
		}
		if err := a.tenants.RequireTenant(ctx, tenant); err != nil {
			return nil, "", err
		}
	}
	if err := a.waitReady(ctx); err != nil {
		return nil, "", err
	}
	count, err := a.log.AuditCount(ctx, tenant)
	if err != nil {
		return nil, "", err
	}
	start := count
	if pageToken != "" {
		n, err := strconv.ParseInt(pageToken, 10, 64)
		if err != nil || n < 1 || n > count {
			var v apierr.Violations
			v.Add("pageToken", "must be the nextPageToken of the previous page")
			return nil, "", v.Err()
		}
		start = n
	}
	var out []*eventsv1.AuditRecorded
	for i := start; i > 0 && int64(len(out)) < size; i-- {
		e, found, err := a.log.AuditEntry(ctx, tenant, i)
		if err != nil {
			return nil, "", err
		}
		if found {
			out = append(out, e.Record)
		}
	}
	next := ""
	if start-size > 0 {
		next = strconv.FormatInt(start-size, 10)
	}
	return out, next, nil
}

func (a *Audit) waitReady(ctx context.Context) error {
	return waitReady(ctx, a.ready, "reporting is still reading the audit trail")
}
