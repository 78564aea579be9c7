package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"

	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// Audit key layout:
//
//	reporting:audit:checkpoint            string, last applied stream sequence
//	reporting:audit:n:<tenant>            string, number of entries of the tenant's trail
//	reporting:audit:e:<tenant>:<n>        JSON {seq, record (protobuf JSON)}, n from 1

var _ domain.AuditLog = (*Store)(nil)

// AuditCheckpoint implements domain.AuditLog.
func (s *Store) AuditCheckpoint(ctx context.Context) (uint64, error) {
	return s.uint(ctx, root+"audit:checkpoint")
}

// SetAuditCheckpoint implements domain.AuditLog.
func (s *Store) SetAuditCheckpoint(ctx context.Context, seq uint64) error {
	return s.st.Set(ctx, root+"audit:checkpoint", []byte(strconv.FormatUint(seq, 10)))
}

// AuditCount implements domain.AuditLog.
func (s *Store) AuditCount(ctx context.Context, tenant string) (int64, error) {
	n, err := s.uint(ctx, root+"audit:n:"+tenant)
	return int64(n), err
}

// SetAuditCount implements domain.AuditLog.
func (s *Store) SetAuditCount(ctx context.Context, tenant string, n int64) error {
	return s.st.Set(ctx, root+"audit:n:"+tenant, []byte(strconv.FormatInt(n, 10)))
}

type auditJSON struct {
	Seq    uint64          `json:"seq"`
	Record json.RawMessage `json:"record"`
}

func auditKey(tenant string, n int64) string {
	return root + "audit:e:" + tenant + ":" + strconv.FormatInt(n, 10)
}

// PutAuditEntry implements domain.AuditLog.
func (s *Store) PutAuditEntry(ctx context.Context, tenant string, n int64, e domain.AuditEntry) error {
	rec, err := protojson.Marshal(e.Record)
	if err != nil {
		return fmt.Errorf("audit entry: %w", err)
	}
	b, err := json.Marshal(auditJSON{Seq: e.Seq, Record: rec})
	if err != nil {
		return fmt.Errorf("audit entry: %w", err)
	}
	return s.st.Set(ctx, auditKey(tenant, n), b)
}

// AuditEntry implements domain.AuditLog.
func (s *Store) AuditEntry(ctx context.Context, tenant string, n int64) (domain.AuditEntry, bool, error) {
	b, found, err := s.st.Get(ctx, auditKey(tenant, n))
	if err != nil || !found {
		return domain.AuditEntry{}, false, err
	}
	var j auditJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return domain.AuditEntry{}, false, fmt.Errorf("audit entry %s/%d: %w", tenant, n, err)
	}
	rec := &eventsv1.AuditRecorded{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(j.Record, rec); err != nil {
		return domain.AuditEntry{}, false, fmt.Errorf("audit entry %s/%d: %w", tenant, n, err)
	}
	return domain.AuditEntry{Seq: j.Seq, Record: rec}, true, nil
}

func (s *Store) uint(ctx context.Context, key string) (uint64, error) {
	v, found, err := s.st.Get(ctx, key)
	if err != nil || !found {
		return 0, err
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return n, nil
}
