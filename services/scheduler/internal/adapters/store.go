// Package adapters keeps the scheduler's read models in a store.Store (Redis or memory): known
// baselines, runs with their membership chunks, released jobs, control events and per-outcome
// instance sets, and the projection checkpoints. Everything here is rebuilt from
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
//	scheduler:run:<tenant>:<run>:requested   set of instance ids with a job.requested
//	scheduler:run:<tenant>:<run>:pending_reboot set of succeeded instances waiting for a reboot
//	scheduler:chunk:<tenant>:<run>:<membership>:<n> string, a RunMembership chunk (protobuf)
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
	// Written by run.started too: the domain.RunDetail as JSON.
	fDetail = "detail"
	// Control events, one field each (so replicas applying them in any order converge): the
	// halt, the cancel and the dispatch stop are set once; pauses and resumes are fields
	// "pause:<seq>" and "resume:<seq>" (stream sequences), and the run is paused when its
	// latest pause is after its latest resume.
	fHalted    = "halted_at"
	fCancelled = "cancelled_at"
	fStopped   = "stopped_at"
	pPause     = "pause:"
	pResume    = "resume:"
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

func requestedKey(tenant, runID string) string { return runKey(tenant, runID) + ":requested" }

func rebootKey(tenant, runID string) string { return runKey(tenant, runID) + ":pending_reboot" }

func chunkKey(tenant, runID, membershipID string, n int) string {
	return root + "chunk:" + tenant + ":" + runID + ":" + membershipID + ":" + strconv.Itoa(n)
}

// PutChunk keeps one membership chunk of a run (its RunMembership event, encoded).
func (s *Store) PutChunk(ctx context.Context, tenant, runID, membershipID string, n int, data []byte) error {
	if err := s.st.Set(ctx, chunkKey(tenant, runID, membershipID, n), data); err != nil {
		return fmt.Errorf("record chunk %d of run %s: %w", n, runID, err)
	}
	return nil
}

// Chunk returns one membership chunk of a run; false if it was not recorded.
func (s *Store) Chunk(ctx context.Context, tenant, runID, membershipID string, n int) ([]byte, bool, error) {
	v, found, err := s.st.Get(ctx, chunkKey(tenant, runID, membershipID, n))
	if err != nil {
		return nil, false, fmt.Errorf("read chunk %d of run %s: %w", n, runID, err)
	}
	return v, found, nil
}

// AddRequested records a released job (its job.requested).
func (s *Store) AddRequested(ctx context.Context, tenant, runID, instanceID string) error {
	if _, err := s.st.SAdd(ctx, requestedKey(tenant, runID), instanceID); err != nil {
		return fmt.Errorf("record job %s/%s: %w", runID, instanceID, err)
	}
	return nil
}

// RequestedIDs returns the instances of a run whose job was released.
func (s *Store) RequestedIDs(ctx context.Context, tenant, runID string) ([]string, error) {
	ids, err := s.st.SMembers(ctx, requestedKey(tenant, runID))
	if err != nil {
		return nil, fmt.Errorf("list jobs of run %s: %w", runID, err)
	}
	return ids, nil
}

// OutcomeIDs returns the instances of a run with outcome o.
func (s *Store) OutcomeIDs(ctx context.Context, tenant, runID string, o domain.Outcome) ([]string, error) {
	ids, err := s.st.SMembers(ctx, outcomeKey(tenant, runID, o))
	if err != nil {
		return nil, fmt.Errorf("list %s jobs of run %s: %w", o, runID, err)
	}
	return ids, nil
}

// PendingReboot records a succeeded job whose instance waits for a reboot.
func (s *Store) PendingReboot(ctx context.Context, tenant, runID, instanceID string) error {
	if _, err := s.st.SAdd(ctx, rebootKey(tenant, runID), instanceID); err != nil {
		return fmt.Errorf("record reboot of %s in run %s: %w", instanceID, runID, err)
	}
	return nil
}

// RunControl records one control event of a run: domain.ControlHalted, ControlCancelled or
// ControlStopped (set once), or ControlPaused and ControlResumed at stream sequence seq.
func (s *Store) RunControl(ctx context.Context, tenant, runID string, c domain.Control, seq uint64, at time.Time) error {
	var field string
	switch c {
	case domain.ControlHalted:
		field = fHalted
	case domain.ControlCancelled:
		field = fCancelled
	case domain.ControlStopped:
		field = fStopped
	case domain.ControlPaused:
		field = pPause + strconv.FormatUint(seq, 10)
	case domain.ControlResumed:
		field = pResume + strconv.FormatUint(seq, 10)
	default:
		return fmt.Errorf("record control %d of run %s: unknown control", c, runID)
	}
	if err := s.st.HSet(ctx, runKey(tenant, runID), map[string][]byte{field: []byte(at.UTC().Format(time.RFC3339Nano))}); err != nil {
		return fmt.Errorf("record control of run %s: %w", runID, err)
	}
	return nil
}

// RunStarted records a run's start: its identity, baseline, total and start time.
func (s *Store) RunStarted(ctx context.Context, r domain.Run) error {
	detail, err := json.Marshal(r.Detail)
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	err = s.st.HSet(ctx, runKey(r.Tenant, r.ID), map[string][]byte{
		fTenant:     []byte(r.Tenant),
		fRunID:      []byte(r.ID),
		fWave:       []byte(strconv.Itoa(int(r.Wave))),
		fBaselineID: []byte(r.BaselineID),
		fTotal:      []byte(strconv.Itoa(r.Total)),
		fStartedAt:  []byte(r.StartedAt.UTC().Format(time.RFC3339Nano)),
		fDetail:     detail,
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
		domain.OutcomeFailed: &r.Failed, domain.OutcomeSnapshotFailed: &r.SnapshotFailed, domain.OutcomeTimedOut: &r.TimedOut,
	} {
		if *dst, err = s.st.SCard(ctx, outcomeKey(tenant, runID, o)); err != nil {
			return domain.Run{}, false, fmt.Errorf("read run %s progress: %w", runID, err)
		}
	}
	if r.Requested, err = s.st.SCard(ctx, requestedKey(tenant, runID)); err != nil {
		return domain.Run{}, false, fmt.Errorf("read run %s progress: %w", runID, err)
	}
	if r.PendingReboot, err = s.st.SCard(ctx, rebootKey(tenant, runID)); err != nil {
		return domain.Run{}, false, fmt.Errorf("read run %s progress: %w", runID, err)
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
	if v, ok := h[fDetail]; ok {
		errs = append(errs, json.Unmarshal(v, &r.Detail))
	}
	var lastPause, lastResume uint64
	for f := range h {
		if n, ok := strings.CutPrefix(f, pPause); ok {
			seq, _ := strconv.ParseUint(n, 10, 64)
			lastPause = max(lastPause, seq)
		} else if n, ok := strings.CutPrefix(f, pResume); ok {
			seq, _ := strconv.ParseUint(n, 10, 64)
			lastResume = max(lastResume, seq)
		}
	}
	r.Paused = lastPause > lastResume
	_, r.Stopped = h[fStopped]
	if _, ok := h[fHalted]; ok {
		r.State = typesv1.RunState_RUN_STATE_HALTED
	}
	if _, ok := h[fCancelled]; ok && r.State == typesv1.RunState_RUN_STATE_RUNNING {
		r.State = typesv1.RunState_RUN_STATE_CANCELLED
	}
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
