// Package adapters keeps the snapshotter's read models in a libs/store Store: the record of
// every job's snapshot set (for restores and retention), the retention due index, and restores.
// Everything here is a projection of the event stream and is rebuilt from it when the store is
// empty.
package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/store"

	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

// Repo is the store-backed repository.
type Repo struct {
	st store.Store
}

// New returns the repository over st.
func New(st store.Store) *Repo { return &Repo{st: st} }

// Store keys. Record keys are "<tenant>/<run>/<instance>".
const (
	keySnapshot   = "snap:"     // + record key -> Snapshot (encodeSnapshot)
	keyInstance   = "snapinst:" // + tenant/instance -> set of run ids
	keyDue        = "ret:due:"  // + unix hour -> set of record keys due in that hour
	keyCursor     = "ret:cursor"
	keyRestore    = "rst:"   // + tenant/restore id -> JSON Restore
	keyRestores   = "rsts:"  // + tenant -> set of restore ids
	keyInstRestor = "rstsi:" // + tenant/instance -> set of restore ids
	keyCheckpoint = "cp:"
)

// RecordKey is the key of a job's snapshot record.
func RecordKey(tenant, runID, instanceID string) string {
	return tenant + "/" + runID + "/" + instanceID
}

// Snapshot returns the record of the job's snapshot set.
func (r *Repo) Snapshot(ctx context.Context, tenant, runID, instanceID string) (domain.Snapshot, bool, error) {
	return r.snapshotByKey(ctx, RecordKey(tenant, runID, instanceID))
}

func (r *Repo) snapshotByKey(ctx context.Context, key string) (domain.Snapshot, bool, error) {
	b, ok, err := r.st.Get(ctx, keySnapshot+key)
	if err != nil {
		return domain.Snapshot{}, false, fmt.Errorf("read snapshot %s: %w", key, err)
	}
	if !ok {
		return domain.Snapshot{}, false, nil
	}
	s, err := decodeSnapshot(b)
	if err != nil {
		return domain.Snapshot{}, false, fmt.Errorf("decode snapshot %s: %w", key, err)
	}
	return s, true, nil
}

// PutSnapshot stores the record, indexes it by instance, and, when it is due, in the retention
// bucket of its due hour.
func (r *Repo) PutSnapshot(ctx context.Context, s domain.Snapshot) error {
	key := RecordKey(s.Tenant, s.RunID, s.InstanceID)
	rec, err := encodeSnapshot(make([]byte, 0, 160), s)
	if err != nil {
		return fmt.Errorf("encode snapshot %s: %w", key, err)
	}
	if err := r.st.Set(ctx, keySnapshot+key, rec); err != nil {
		return fmt.Errorf("write snapshot %s: %w", key, err)
	}
	// A decoded record's strings share one allocation (decodeSnapshot): the index keeps a copy
	// of the run id, not the whole record.
	if _, err := r.st.SAdd(ctx, keyInstance+s.Tenant+"/"+s.InstanceID, strings.Clone(s.RunID)); err != nil {
		return fmt.Errorf("index snapshot %s: %w", key, err)
	}
	if s.DueAt.IsZero() || s.State == domain.SnapshotDeleted {
		return nil
	}
	hour := s.DueAt.Unix() / 3600
	if _, err := r.st.SAdd(ctx, keyDue+strconv.FormatInt(hour, 10), key); err != nil {
		return fmt.Errorf("schedule snapshot %s: %w", key, err)
	}
	cur, ok, err := r.Cursor(ctx)
	if err != nil {
		return err
	}
	if !ok || hour < cur {
		return r.SetCursor(ctx, hour)
	}
	return nil
}

// InstanceSnapshots returns the records of every snapshot set of an instance (one per run).
func (r *Repo) InstanceSnapshots(ctx context.Context, tenant, instanceID string) ([]domain.Snapshot, error) {
	runs, err := r.st.SMembers(ctx, keyInstance+tenant+"/"+instanceID)
	if err != nil {
		return nil, fmt.Errorf("snapshots of %s: %w", instanceID, err)
	}
	out := make([]domain.Snapshot, 0, len(runs))
	for _, run := range runs {
		s, ok, err := r.Snapshot(ctx, tenant, run, instanceID)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// Cursor returns the earliest retention hour not swept yet.
func (r *Repo) Cursor(ctx context.Context) (int64, bool, error) {
	v, ok, err := r.st.Get(ctx, keyCursor)
	if err != nil || !ok {
		return 0, false, err
	}
	h, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("retention cursor %q: %w", v, err)
	}
	return h, true, nil
}

// SetCursor records the earliest retention hour not swept yet.
func (r *Repo) SetCursor(ctx context.Context, hour int64) error {
	return r.st.Set(ctx, keyCursor, []byte(strconv.FormatInt(hour, 10)))
}

// Due returns the record keys scheduled in the retention bucket of hour, and their records.
func (r *Repo) Due(ctx context.Context, hour int64) ([]string, map[string]domain.Snapshot, error) {
	keys, err := r.st.SMembers(ctx, keyDue+strconv.FormatInt(hour, 10))
	if err != nil {
		return nil, nil, fmt.Errorf("retention bucket %d: %w", hour, err)
	}
	recs := make(map[string]domain.Snapshot, len(keys))
	for _, k := range keys {
		s, ok, err := r.snapshotByKey(ctx, k)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			recs[k] = s
		}
	}
	return keys, recs, nil
}

// Unschedule removes record keys from the retention bucket of hour.
func (r *Repo) Unschedule(ctx context.Context, hour int64, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := r.st.SRem(ctx, keyDue+strconv.FormatInt(hour, 10), keys...); err != nil {
		return fmt.Errorf("retention bucket %d: %w", hour, err)
	}
	return nil
}

// Restore returns one restore.
func (r *Repo) Restore(ctx context.Context, tenant, id string) (domain.Restore, bool, error) {
	var rs domain.Restore
	ok, err := r.getJSON(ctx, keyRestore+tenant+"/"+id, &rs)
	return rs, ok, err
}

// PutRestore stores a restore and indexes it by tenant and instance.
func (r *Repo) PutRestore(ctx context.Context, rs domain.Restore) error {
	if err := r.putJSON(ctx, keyRestore+rs.Tenant+"/"+rs.ID, rs); err != nil {
		return err
	}
	if _, err := r.st.SAdd(ctx, keyRestores+rs.Tenant, rs.ID); err != nil {
		return fmt.Errorf("index restore %s: %w", rs.ID, err)
	}
	if _, err := r.st.SAdd(ctx, keyInstRestor+rs.Tenant+"/"+rs.InstanceID, rs.ID); err != nil {
		return fmt.Errorf("index restore %s: %w", rs.ID, err)
	}
	return nil
}

// Restores returns the restores of a tenant, or of one of its instances, newest first.
func (r *Repo) Restores(ctx context.Context, tenant, instanceID string) ([]domain.Restore, error) {
	set := keyRestores + tenant
	if instanceID != "" {
		set = keyInstRestor + tenant + "/" + instanceID
	}
	ids, err := r.st.SMembers(ctx, set)
	if err != nil {
		return nil, fmt.Errorf("restores of %s: %w", tenant, err)
	}
	out := make([]domain.Restore, 0, len(ids))
	for _, id := range ids {
		rs, ok, err := r.Restore(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, rs)
		}
	}
	slices.SortFunc(out, func(a, b domain.Restore) int {
		if c := b.RequestedAt.Compare(a.RequestedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

// Checkpoint returns the stream sequence a projection has applied up to.
func (r *Repo) Checkpoint(ctx context.Context, projection string) (uint64, error) {
	v, ok, err := r.st.Get(ctx, keyCheckpoint+projection)
	if err != nil || !ok {
		return 0, err
	}
	return strconv.ParseUint(string(v), 10, 64)
}

// SetCheckpoint records the stream sequence a projection has applied up to.
func (r *Repo) SetCheckpoint(ctx context.Context, projection string, seq uint64) error {
	return r.st.Set(ctx, keyCheckpoint+projection, []byte(strconv.FormatUint(seq, 10)))
}

func (r *Repo) getJSON(ctx context.Context, key string, v any) (bool, error) {
	b, ok, err := r.st.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func (r *Repo) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := r.st.Set(ctx, key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// HourOf is the retention bucket of t.
func HourOf(t time.Time) int64 { return t.Unix() / 3600 }
