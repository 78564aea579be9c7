// Package adapters keeps the scheduler's read models in a store.Store (Redis or memory): known
// baselines, runs with their per-outcome instance sets, the bookkeeping that rebuilds the
// "jobs requested" marks, and the projection checkpoints. Everything here is rebuilt from
// JetStream, and every write is idempotent (sets, hash fields written by one kind of event
// only), so re-applying an event, or two replicas applying the same events, converges.
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
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// Key layout. Every key starts with "scheduler:" so the service can share a store.
//
//	scheduler:baseline:<id>                  string, JSON domain.Baseline
//	scheduler:baselines                      set of baseline ids
//	scheduler:run:<tenant>:<run>             hash, see the field constants
//	scheduler:run:<tenant>:<run>:<outcome>   set of instance ids (snapshotted, succeeded, ...)
//	scheduler:run:<tenant>:<run>:done        set of instance ids with a terminal outcome
//	scheduler:runs:<tenant>                  set of the tenant's run ids
//	scheduler:runs:open                      set of "<tenant>/<run>" without run.completed (index)
//	scheduler:jobs:<tenant>/<run>:total      string, instances of a run (marks rebuild)
//	scheduler:jobs:<tenant>/<run>:requested  set of instance ids seen in job.requested (rebuild)
//	scheduler:checkpoint:<projection>        string, last applied stream sequence
const root = "scheduler:"

// Run hash fields. run.started writes the first group, run.completed the second, so the two
// never overwrite each other whatever order replicas apply them in.
const (
	fTenant      = "tenant"
	fRunID       = "run_id"
	fWave        = "wave"
	fBaselineID  = "baseline_id"
	fTotal       = "total"
	fStartedAt   = "started_at"
	fFinalState  = "completed_state"
	fCompletedAt = "completed_at"
)

// Store is the scheduler's repository over a store.Store.
type Store struct {
	st store.Store
}

// New returns the repository over st.
func New(st store.Store) *Store { return &Store{st: st} }

// Checkpoint returns the last stream sequence projection name applied, 0 if none.
func (s *Store) Checkpoint(ctx context.Context, name string) (uint64, error) {
	v, found, err := s.st.Get(ctx, root+"checkpoint:"+name)
	if err != nil || !found {
		return 0, err
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return n, nil
}

// SetCheckpoint records that projection name applied everything up to seq.
func (s *Store) SetCheckpoint(ctx context.Context, name string, seq uint64) error {
	return s.st.Set(ctx, root+"checkpoint:"+name, []byte(strconv.FormatUint(seq, 10)))
}

// PutBaseline records a published baseline. Baselines are immutable, so a repeat is a no-op.
func (s *Store) PutBaseline(ctx context.Context, b domain.Baseline) error {
	data, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode baseline %s: %w", b.ID, err)
	}
	if err := s.st.Set(ctx, root+"baseline:"+b.ID, data); err != nil {
		return fmt.Errorf("put baseline %s: %w", b.ID, err)
	}
	if _, err := s.st.SAdd(ctx, root+"baselines", b.ID); err != nil {
		return fmt.Errorf("index baseline %s: %w", b.ID, err)
	}
	return nil
}

// Baseline returns a published baseline; false if it is not known.
func (s *Store) Baseline(ctx context.Context, id string) (domain.Baseline, bool, error) {
	v, found, err := s.st.Get(ctx, root+"baseline:"+id)
	if err != nil || !found {
		return domain.Baseline{}, false, err
	}
	var b domain.Baseline
	if err := json.Unmarshal(v, &b); err != nil {
		return domain.Baseline{}, false, fmt.Errorf("decode baseline %s: %w", id, err)
	}
	return b, true, nil
}

// Baselines returns every published baseline.
func (s *Store) Baselines(ctx context.Context) ([]domain.Baseline, error) {
	ids, err := s.st.SMembers(ctx, root+"baselines")
	if err != nil {
		return nil, fmt.Errorf("list baselines: %w", err)
	}
	out := make([]domain.Baseline, 0, len(ids))
	for _, id := range ids {
		b, ok, err := s.Baseline(ctx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, b)
		}
	}
	return out, nil
}

func runKey(tenant, runID string) string { return root + "run:" + tenant + ":" + runID }

func outcomeKey(tenant, runID string, o domain.Outcome) string {
	return runKey(tenant, runID) + ":" + o.String()
}

func doneKey(tenant, runID string) string { return runKey(tenant, runID) + ":done" }

// RunStarted records a run's start: its identity, baseline, total and start time.
func (s *Store) RunStarted(ctx context.Context, r domain.Run) error {
	err := s.st.HSet(ctx, runKey(r.Tenant, r.ID), map[string][]byte{
		fTenant:     []byte(r.Tenant),
		fRunID:      []byte(r.ID),
		fWave:       []byte(strconv.Itoa(int(r.Wave))),
		fBaselineID: []byte(r.BaselineID),
		fTotal:      []byte(strconv.Itoa(r.Total)),
		fStartedAt:  []byte(r.StartedAt.UTC().Format(time.RFC3339Nano)),
	})
	if err != nil {
		return fmt.Errorf("record run %s: %w", r.ID, err)
	}
	if _, err := s.st.SAdd(ctx, root+"runs:"+r.Tenant, r.ID); err != nil {
		return fmt.Errorf("index run %s: %w", r.ID, err)
	}
	if _, err := s.st.SAdd(ctx, root+"runs:open", r.Tenant+"/"+r.ID); err != nil {
		return fmt.Errorf("index open run %s: %w", r.ID, err)
	}
	return nil
}

// RunCompleted records a run's final state.
func (s *Store) RunCompleted(ctx context.Context, tenant, runID string, state typesv1.RunState, at time.Time) error {
	err := s.st.HSet(ctx, runKey(tenant, runID), map[string][]byte{
		fFinalState:  []byte(strconv.Itoa(int(state))),
		fCompletedAt: []byte(at.UTC().Format(time.RFC3339Nano)),
	})
	if err != nil {
		return fmt.Errorf("record run %s completed: %w", runID, err)
	}
	if _, err := s.st.SRem(ctx, root+"runs:open", tenant+"/"+runID); err != nil {
		return fmt.Errorf("unindex open run %s: %w", runID, err)
	}
	return nil
}

// AddOutcome records what happened to one instance of a run.
func (s *Store) AddOutcome(ctx context.Context, tenant, runID, instanceID string, o domain.Outcome) error {
	if _, err := s.st.SAdd(ctx, outcomeKey(tenant, runID, o), instanceID); err != nil {
		return fmt.Errorf("record %s of %s in run %s: %w", o, instanceID, runID, err)
	}
	if o.Terminal() {
		if _, err := s.st.SAdd(ctx, doneKey(tenant, runID), instanceID); err != nil {
			return fmt.Errorf("record %s of %s in run %s: %w", o, instanceID, runID, err)
		}
	}
	return nil
}

// Done returns how many instances of a run have a terminal outcome.
func (s *Store) Done(ctx context.Context, tenant, runID string) (int, error) {
	n, err := s.st.SCard(ctx, doneKey(tenant, runID))
	if err != nil {
		return 0, fmt.Errorf("count finished jobs of run %s: %w", runID, err)
	}
	return n, nil
}

// Run returns a run with its progress; false if its run.started was not applied yet.
func (s *Store) Run(ctx context.Context, tenant, runID string) (domain.Run, bool, error) {
	r, ok, err := s.RunHeader(ctx, tenant, runID)
	if err != nil || !ok {
		return r, ok, err
	}
	for o, dst := range map[domain.Outcome]*int{
		domain.OutcomeSnapshotted: &r.Snapshotted, domain.OutcomeSucceeded: &r.Succeeded,
		domain.OutcomeFailed: &r.Failed, domain.OutcomeSnapshotFailed: &r.SnapshotFailed,
	} {
		if *dst, err = s.st.SCard(ctx, outcomeKey(tenant, runID, o)); err != nil {
			return domain.Run{}, false, fmt.Errorf("read run %s progress: %w", runID, err)
		}
	}
	return r, true, nil
}

// RunHeader returns a run without its progress counters; false if its run.started was not
// applied yet.
func (s *Store) RunHeader(ctx context.Context, tenant, runID string) (domain.Run, bool, error) {
	h, err := s.st.HGetAll(ctx, runKey(tenant, runID))
	if err != nil {
		return domain.Run{}, false, fmt.Errorf("read run %s: %w", runID, err)
	}
	if _, ok := h[fRunID]; !ok {
		return domain.Run{}, false, nil
	}
	r := domain.Run{
		Tenant:     string(h[fTenant]),
		ID:         string(h[fRunID]),
		BaselineID: string(h[fBaselineID]),
		State:      typesv1.RunState_RUN_STATE_RUNNING,
	}
	var errs []error
	wave, err := strconv.ParseInt(string(h[fWave]), 10, 32)
	errs = append(errs, err)
	r.Wave = int32(wave)
	r.Total, err = strconv.Atoi(string(h[fTotal]))
	errs = append(errs, err)
	r.StartedAt, err = time.Parse(time.RFC3339Nano, string(h[fStartedAt]))
	errs = append(errs, err)
	if v, ok := h[fFinalState]; ok {
		st, err := strconv.Atoi(string(v))
		errs = append(errs, err)
		r.State = typesv1.RunState(st)
		r.CompletedAt, err = time.Parse(time.RFC3339Nano, string(h[fCompletedAt]))
		errs = append(errs, err)
	}
	for _, err := range errs {
		if err != nil {
			return domain.Run{}, false, fmt.Errorf("decode run %s: %w", runID, err)
		}
	}
	return r, true, nil
}

// Runs returns a tenant's runs, newest first (by start time, then run id).
func (s *Store) Runs(ctx context.Context, tenant string) ([]domain.Run, error) {
	ids, err := s.st.SMembers(ctx, root+"runs:"+tenant)
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", tenant, err)
	}
	out := make([]domain.Run, 0, len(ids))
	for _, id := range ids {
		r, ok, err := s.Run(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b domain.Run) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

// OpenRuns returns the runs that had no run.completed when last indexed, as tenant and run id.
// The index may lag behind a run's hash (another replica completed it); callers check the run.
func (s *Store) OpenRuns(ctx context.Context) ([]domain.RunRef, error) {
	refs, err := s.st.SMembers(ctx, root+"runs:open")
	if err != nil {
		return nil, fmt.Errorf("list open runs: %w", err)
	}
	out := make([]domain.RunRef, 0, len(refs))
	for _, ref := range refs {
		tenant, runID, ok := strings.Cut(ref, "/")
		if ok {
			out = append(out, domain.RunRef{Tenant: tenant, RunID: runID})
		}
	}
	return out, nil
}

// UnindexOpen drops a run from the open-run index (it was completed).
func (s *Store) UnindexOpen(ctx context.Context, tenant, runID string) error {
	if _, err := s.st.SRem(ctx, root+"runs:open", tenant+"/"+runID); err != nil {
		return fmt.Errorf("unindex open run %s: %w", runID, err)
	}
	return nil
}

func jobsKey(tenant, runID string) string { return root + "jobs:" + tenant + "/" + runID }

// JobsTotal records how many jobs a run requests (its instances), for the marks rebuild.
func (s *Store) JobsTotal(ctx context.Context, tenant, runID string, total int) error {
	if err := s.st.Set(ctx, jobsKey(tenant, runID)+":total", []byte(strconv.Itoa(total))); err != nil {
		return fmt.Errorf("record jobs of run %s: %w", runID, err)
	}
	return nil
}

// JobRequested records one requested job of a run seen during the marks rebuild and returns
// how many of the run's jobs were seen and how many it has (total -1 when the run's start was
// not seen).
func (s *Store) JobRequested(ctx context.Context, tenant, runID, instanceID string) (seen, total int, err error) {
	key := jobsKey(tenant, runID)
	if _, err := s.st.SAdd(ctx, key+":requested", instanceID); err != nil {
		return 0, 0, fmt.Errorf("record job %s/%s: %w", runID, instanceID, err)
	}
	if seen, err = s.st.SCard(ctx, key+":requested"); err != nil {
		return 0, 0, fmt.Errorf("count jobs of run %s: %w", runID, err)
	}
	v, found, err := s.st.Get(ctx, key+":total")
	if err != nil {
		return 0, 0, fmt.Errorf("read jobs of run %s: %w", runID, err)
	}
	if !found {
		return seen, -1, nil
	}
	if total, err = strconv.Atoi(string(v)); err != nil {
		return 0, 0, fmt.Errorf("decode jobs of run %s: %w", runID, err)
	}
	return seen, total, nil
}

// ForgetJobs drops a run's marks-rebuild bookkeeping once the run is marked.
func (s *Store) ForgetJobs(ctx context.Context, tenant, runID string) error {
	key := jobsKey(tenant, runID)
	if err := s.st.Delete(ctx, key+":requested", key+":total"); err != nil {
		return fmt.Errorf("forget jobs of run %s: %w", runID, err)
	}
	return nil
}
