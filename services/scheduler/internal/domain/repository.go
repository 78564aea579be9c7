package domain

import (
	"context"
	"time"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Repository keeps the scheduler's read models. Every write is idempotent: applying the same
// event twice, or in two replicas, leaves the same state.
type Repository interface {
	// Checkpoint returns the last stream sequence the named projection applied, 0 if none.
	Checkpoint(ctx context.Context, projection string) (uint64, error)
	// SetCheckpoint records the last stream sequence the named projection applied.
	SetCheckpoint(ctx context.Context, projection string, seq uint64) error

	// PutBaseline records a published baseline.
	PutBaseline(ctx context.Context, b Baseline) error
	// Baseline returns a published baseline; false if unknown.
	Baseline(ctx context.Context, id string) (Baseline, bool, error)
	// Baselines returns every published baseline.
	Baselines(ctx context.Context) ([]Baseline, error)

	// RunStarted records a run's start (identity, baseline, total, start time).
	RunStarted(ctx context.Context, r Run) error
	// RunCompleted records a run's final state.
	RunCompleted(ctx context.Context, tenant, runID string, state typesv1.RunState, at time.Time) error
	// AddOutcome records one instance's outcome in a run.
	AddOutcome(ctx context.Context, tenant, runID, instanceID string, o Outcome) error
	// Done counts a run's instances with a terminal outcome.
	Done(ctx context.Context, tenant, runID string) (int, error)
	// Run returns a run with progress; false if its start was not recorded.
	Run(ctx context.Context, tenant, runID string) (Run, bool, error)
	// RunHeader returns a run without progress counters; false if its start was not recorded.
	RunHeader(ctx context.Context, tenant, runID string) (Run, bool, error)
	// Runs returns a tenant's runs, newest first.
	Runs(ctx context.Context, tenant string) ([]Run, error)
	// OpenRuns lists the runs indexed as not completed.
	OpenRuns(ctx context.Context) ([]RunRef, error)
	// UnindexOpen drops a run from the open-run index.
	UnindexOpen(ctx context.Context, tenant, runID string) error

	// PutChunk keeps one membership chunk of a run (its RunMembership event, encoded); Chunk
	// reads it back (false if not recorded).
	PutChunk(ctx context.Context, tenant, runID, membershipID string, n int, data []byte) error
	Chunk(ctx context.Context, tenant, runID, membershipID string, n int) ([]byte, bool, error)
	// AddRequested records a released job (its job.requested); RequestedIDs lists them.
	AddRequested(ctx context.Context, tenant, runID, instanceID string) error
	RequestedIDs(ctx context.Context, tenant, runID string) ([]string, error)
	// OutcomeIDs lists the instances of a run with one outcome.
	OutcomeIDs(ctx context.Context, tenant, runID string, o Outcome) ([]string, error)
	// PendingReboot records a succeeded job whose instance waits for a reboot.
	PendingReboot(ctx context.Context, tenant, runID, instanceID string) error
	// RunControl records a control event of a run at stream sequence seq.
	RunControl(ctx context.Context, tenant, runID string, c Control, seq uint64, at time.Time) error
}
