package design

import (
	"context"
	"errors"
	"fmt"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// ErrConflict means a compare-and-set write lost: the document's revision is no longer the
// one the write was based on.
var ErrConflict = errors.New("revision conflict")

// Repository keeps the design documents with revisions. Every Put is a compare-and-set: rev is
// the revision the write is based on (0: the key must not exist yet) and a write based on
// another revision fails with an error wrapping ErrConflict. A missing document is (nil, 0, nil).
type Repository interface {
	Tenant(ctx context.Context, tenant string) (*typesv1.TenantDesign, uint64, error)
	PutTenant(ctx context.Context, tenant string, doc *typesv1.TenantDesign, rev uint64) (uint64, error)
	Global(ctx context.Context) (*typesv1.GlobalDesign, uint64, error)
	PutGlobal(ctx context.Context, doc *typesv1.GlobalDesign, rev uint64) (uint64, error)
	Request(ctx context.Context, tenant, id string) (*typesv1.ServiceRequest, uint64, error)
	PutRequest(ctx context.Context, r *typesv1.ServiceRequest, rev uint64) (uint64, error)
	// PutTenantAndRequest writes a tenant's document and one of its service requests as one
	// atomic compare-and-set (both or neither): how an applied request's change and its new
	// state are written. It returns the two new revisions.
	PutTenantAndRequest(ctx context.Context, doc *typesv1.TenantDesign, docRev uint64, r *typesv1.ServiceRequest, reqRev uint64) (uint64, uint64, error)
}

// StaleError is a write whose expected revision (If-Match) is not the current one. It matches
// apierr.ErrFailedPrecondition, so it is 412 over REST.
type StaleError struct {
	// What names the document, e.g. "tenant acme".
	What     string
	Expected uint64
	Current  uint64
}

// Error names both revisions.
func (e *StaleError) Error() string {
	return fmt.Sprintf("%s: revision %d is stale: the current revision is %d (read it again and retry with If-Match: \"%d\")",
		e.What, e.Expected, e.Current, e.Current)
}

// Is makes errors.Is(err, apierr.ErrFailedPrecondition) true.
func (e *StaleError) Is(target error) bool { return target == apierr.ErrFailedPrecondition }
