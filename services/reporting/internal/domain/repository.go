package domain

import (
	"context"
	"time"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Group is one (wave, OS family) of a tenant's in-scope instances.
type Group struct {
	Wave     int32
	OSFamily string
}

// Run is the report of one run: what run.started and run.completed said.
type Run struct {
	RunID       string           `json:"id"`
	Wave        int32            `json:"w"`
	BaselineID  string           `json:"b,omitempty"`
	State       typesv1.RunState `json:"s"`
	StartedAt   time.Time        `json:"st"`
	CompletedAt time.Time        `json:"ct"`
	Total       int32            `json:"n"`
	Succeeded   int32            `json:"ok"`
	Failed      int32            `json:"ko"`
	TimedOut    int32            `json:"to"`
}

// Repository keeps the compliance read model. Writes are idempotent; SaveInstance writes the
// instance's record (with its sequence) last, so an event whose writes were cut short by a crash
// is applied again in full.
type Repository interface {
	// Checkpoint returns the last stream sequence the compliance projection applied, 0 if none.
	Checkpoint(ctx context.Context) (uint64, error)
	// SetCheckpoint records it.
	SetCheckpoint(ctx context.Context, seq uint64) error
	// CatalogCheckpoint returns the last catalog stream sequence the baselines projection
	// applied, 0 if none.
	CatalogCheckpoint(ctx context.Context) (uint64, error)
	// SetCatalogCheckpoint records it.
	SetCatalogCheckpoint(ctx context.Context, seq uint64) error

	// Instance returns an instance's record; false if the instance was never seen.
	Instance(ctx context.Context, tenant, id string) (Instance, bool, error)
	// SaveInstance stores next, moving the instance from prev's coverage bucket, OS family and
	// missing-patch sets to next's.
	SaveInstance(ctx context.Context, prev Instance, prevFound bool, next Instance) error
	// Groups returns the (wave, OS family) groups the tenant's instances are in.
	Groups(ctx context.Context, tenant string) ([]Group, error)
	// Count returns how many of the tenant's instances of g are in state.
	Count(ctx context.Context, tenant string, g Group, state typesv1.ComplianceState) (int, error)
	// Members returns the ids of the tenant's instances of g in state, sorted.
	Members(ctx context.Context, tenant string, g Group, state typesv1.ComplianceState) ([]string, error)
	// FamilyInstances returns the ids of the tenant's instances of an OS family, sorted.
	FamilyInstances(ctx context.Context, tenant, family string) ([]string, error)
	// FailedInstances returns the ids of the tenant's instances with FAILED patches, sorted.
	FailedInstances(ctx context.Context, tenant string) ([]string, error)
	// MissingCount returns how many of the tenant's instances miss patch.
	MissingCount(ctx context.Context, tenant, patch string) (int, error)

	// Baseline returns a published baseline; false if unknown.
	Baseline(ctx context.Context, id string) (Baseline, bool, error)
	// PutBaseline stores a published baseline.
	PutBaseline(ctx context.Context, b Baseline) error
	// CertifiedAt returns when a patch was certified; false if unknown.
	CertifiedAt(ctx context.Context, patch string) (time.Time, bool, error)
	// PutCertifiedAt records it.
	PutCertifiedAt(ctx context.Context, patch string, at time.Time) error
	// Approval returns the newest baseline the tenant approved for family; false if none.
	Approval(ctx context.Context, tenant, family string) (Approval, bool, error)
	// PutApproval records the tenant's newest approval of a family.
	PutApproval(ctx context.Context, tenant string, a Approval) error

	// Cycle returns the tenant's current cycle; false if none is known yet.
	Cycle(ctx context.Context, tenant string) (Cycle, bool, error)
	// PutCycle records it.
	PutCycle(ctx context.Context, tenant string, c Cycle) error

	// LastDay returns the UTC date (YYYY-MM-DD) of the tenant's latest event, "" if none.
	LastDay(ctx context.Context, tenant string) (string, error)
	// SetLastDay records it.
	SetLastDay(ctx context.Context, tenant, day string) error
	// PutSnapshot stores a snapshot of the tenant's figures under its kind and key. A day's or
	// run's snapshot is written once its day or run is over and is never written again with
	// other figures.
	PutSnapshot(ctx context.Context, tenant string, s Snapshot) error
	// Snapshots returns the tenant's snapshots of a kind, sorted by key.
	Snapshots(ctx context.Context, tenant, kind string) ([]Snapshot, error)

	// ScanPlan returns what an ordered scan was planned into; false if it was not planned.
	ScanPlan(ctx context.Context, tenant, scanID string) (ScanPlan, bool, error)
	// PutScanPlan records it.
	PutScanPlan(ctx context.Context, tenant string, p ScanPlan) error
	// PutScanChunk stores a planned chunk, pending in its wave.
	PutScanChunk(ctx context.Context, tenant string, c ScanChunk) error
	// ScanChunk returns a planned chunk; false if unknown.
	ScanChunk(ctx context.Context, tenant, scanID string, n int) (ScanChunk, bool, error)
	// ScanReleased records a chunk's ScanRequested: no longer pending, its instances in flight.
	ScanReleased(ctx context.Context, tenant string, c ScanChunk) error
	// ScanDone records an instance's scan outcome: no longer in flight.
	ScanDone(ctx context.Context, tenant, scanID, instanceID string) error
	// ScanWaves returns the waves of the tenant that have scan chunks, sorted.
	ScanWaves(ctx context.Context, tenant string) ([]int32, error)
	// PendingScanChunks returns the refs of a wave's chunks not released yet, in release order.
	PendingScanChunks(ctx context.Context, tenant string, wave int32) ([]string, error)
	// ScansInFlight returns how many of a wave's released scans have no outcome yet.
	ScansInFlight(ctx context.Context, tenant string, wave int32) (int, error)

	// Marker returns a small named value ("" if unset), e.g. the last day a daily job ran.
	Marker(ctx context.Context, name string) (string, error)
	// SetMarker sets it.
	SetMarker(ctx context.Context, name, value string) error

	// Run returns a run's report; false if unknown.
	Run(ctx context.Context, tenant, runID string) (Run, bool, error)
	// PutRun stores it.
	PutRun(ctx context.Context, tenant string, r Run) error
	// SetJobStates records the job state of instances in a run.
	SetJobStates(ctx context.Context, tenant, runID string, states map[string]typesv1.JobState) error
	// JobStates returns the job state of every instance of a run.
	JobStates(ctx context.Context, tenant, runID string) (map[string]typesv1.JobState, error)
}

// InstanceRef names one instance of a tenant.
type InstanceRef struct {
	Tenant, ID string
}

// UnitOfWork is a Repository whose writes wait in memory (its reads see them) until Commit
// writes them in one atomic write with the checkpoint.
type UnitOfWork interface {
	Repository
	// Prefetch reads the records of the instances in one round trip.
	Prefetch(ctx context.Context, refs []InstanceRef) error
	// Pending is how many writes wait.
	Pending() int
	// Flush writes what waits, without the checkpoint, if the checkpoint is still prev; false
	// when it is not (nothing written).
	Flush(ctx context.Context, prev uint64) (bool, error)
	// Commit writes what waits and the checkpoint seq, if the checkpoint is still prev (0:
	// absent); false when it is not (nothing written).
	Commit(ctx context.Context, prev, seq uint64) (bool, error)
	// Start begins the write Commit makes and returns at once: the Commit under way says
	// when it ended and whether it applied. The unit is done afterwards.
	Start(ctx context.Context, prev, seq uint64) Commit
}

// Commit is a unit of work's commit under way (UnitOfWork.Start).
type Commit interface {
	// Wait waits for the commit to end and reports, as UnitOfWork.Commit does, whether it
	// applied; it may be called again.
	Wait() (bool, error)
	// Done is closed once the commit has ended.
	Done() <-chan struct{}
}

// UnitOfWorkStarter is a Repository that begins units of work.
type UnitOfWorkStarter interface {
	Begin() (UnitOfWork, error)
	// BeginAfter begins a unit of work whose reads see the writes of c, a commit under way,
	// as if it had applied; its own commit waits for c and writes nothing (an error) when c
	// did not apply.
	BeginAfter(c Commit) (UnitOfWork, error)
}

// GroupCounts is how many instances of one group of a tenant are in each state.
type GroupCounts struct {
	Group
	// Counts are in the order of the states asked for.
	Counts []int
}

// Counter is a Repository that counts a tenant's groups in every state at once (on Redis, two
// round trips whatever the number of groups), for the summary.
type Counter interface {
	// Counts returns every group of the tenant with its number of instances in each of states.
	Counts(ctx context.Context, tenant string, states []typesv1.ComplianceState) ([]GroupCounts, error)
}
