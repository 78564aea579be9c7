package domain

import (
	"context"
	"fmt"

	"github.com/patchwave/patchwave/libs/apierr"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// AuditEntry is one record of a tenant's audit trail (patch.<tenant>.audit.recorded) with the
// stream sequence it came from.
type AuditEntry struct {
	Seq    uint64
	Record *eventsv1.AuditRecorded
}

// AuditLog keeps each tenant's audit trail as a numbered list (1, 2, ... in stream order), so a
// page is a few reads however long the trail. Entries are written before the count that
// includes them, so an event whose writes were cut short is written again in full.
type AuditLog interface {
	// AuditCheckpoint returns the last stream sequence the audit projection applied, 0 if none.
	AuditCheckpoint(ctx context.Context) (uint64, error)
	// SetAuditCheckpoint records it.
	SetAuditCheckpoint(ctx context.Context, seq uint64) error
	// AuditCount returns how many entries the tenant's trail has.
	AuditCount(ctx context.Context, tenant string) (int64, error)
	// AuditEntry returns entry n (from 1) of the tenant's trail; false when there is none.
	AuditEntry(ctx context.Context, tenant string, n int64) (AuditEntry, bool, error)
	// PutAuditEntry stores entry n of the tenant's trail.
	PutAuditEntry(ctx context.Context, tenant string, n int64, e AuditEntry) error
	// SetAuditCount records that the tenant's trail has n entries.
	SetAuditCount(ctx context.Context, tenant string, n int64) error
}

// AuditPage bounds: 1..500 entries, 50 by default.
const (
	DefaultAuditPage = 50
	MaxAuditPage     = 500
)

// ValidateAuditPage checks a page size (0 is the default) and returns the size to use.
func ValidateAuditPage(size int32) (int64, error) {
	switch {
	case size == 0:
		return DefaultAuditPage, nil
	case size < 1 || size > MaxAuditPage:
		var v apierr.Violations
		v.Add("pageSize", fmt.Sprintf("must be from 1 to %d, got %d", MaxAuditPage, size))
		return 0, v.Err()
	}
	return int64(size), nil
}
