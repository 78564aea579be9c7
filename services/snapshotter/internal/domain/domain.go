// Package domain holds the snapshotter's rules: what a restore request must carry and when it is refused, restore ids, and the retention rule that
// decides when a snapshot set may be deleted.
package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
)

// ActorAutoRollback is the actor of a restore the wave's auto-rollback policy asked for.
const ActorAutoRollback = "auto-rollback"

// Limits of a restore request.
const (
	MaxReasonLen    = 512
	MaxRequestIDLen = 128
	MaxActorLen     = 256
)

// RestoreCommand asks to restore an instance from the pre-patch snapshot of a run.
type RestoreCommand struct {
	Tenant     string
	InstanceID string
	RunID      string
	Reason     string
	// RequestID makes the command idempotent when set.
	RequestID string
	// Actor is who asks; required.
	Actor string
}

// Validate reports every problem with the command, naming the API field.
func (c RestoreCommand) Validate() error {
	var v apierr.Violations
	if events.ValidateTenant(c.Tenant) != nil {
		v.Add("tenant", fmt.Sprintf("must be 1-63 lower-case letters, digits or '-', got %q", c.Tenant))
	}
	checkToken(&v, "instance", c.InstanceID)
	checkToken(&v, "run_id", c.RunID)
	switch {
	case c.Reason == "":
		v.Add("reason", "is required: say why the instance is restored")
	case len(c.Reason) > MaxReasonLen:
		v.Add("reason", fmt.Sprintf("must be at most %d characters, got %d", MaxReasonLen, len(c.Reason)))
	}
	if len(c.RequestID) > MaxRequestIDLen {
		v.Add("request_id", fmt.Sprintf("must be at most %d characters, got %d", MaxRequestIDLen, len(c.RequestID)))
	}
	switch {
	case c.Actor == "":
		v.Add("actor", "is required: every restore is asked for by an authenticated caller")
	case len(c.Actor) > MaxActorLen:
		v.Add("actor", fmt.Sprintf("must be at most %d characters, got %d", MaxActorLen, len(c.Actor)))
	}
	return v.Err()
}

func checkToken(v *apierr.Violations, field, s string) {
	switch {
	case s == "":
		v.Add(field, "is required")
	case len(s) > 128:
		v.Add(field, fmt.Sprintf("must be at most 128 characters, got %d", len(s)))
	default:
		for _, r := range s {
			if r == '/' || r == ' ' || r == '\t' || r == '\n' || r == '\r' {
				v.Add(field, fmt.Sprintf("must not contain '/' or white space, got %q", s))
				return
			}
		}
	}
}

// ValidateRestoreID checks a restore id of a GetRestore request.
func ValidateRestoreID(tenant, id string) error {
	var v apierr.Violations
	if events.ValidateTenant(tenant) != nil {
		v.Add("tenant", fmt.Sprintf("must be 1-63 lower-case letters, digits or '-', got %q", tenant))
	}
	checkToken(&v, "restore_id", id)
	return v.Err()
}

// RestoreIDForRequest returns the restore id of an idempotent restore request: the same tenant,
// instance and request id always name the same restore.
func RestoreIDForRequest(tenant, instanceID, requestID string) string {
	h := sha256.Sum256([]byte(tenant + "\x00" + instanceID + "\x00" + requestID))
	return "rst-" + hex.EncodeToString(h[:10])
}

// RestoreIDForAutoRollback returns the id of the auto-rollback restore of a failed job: one per
// run and instance, however often the failure is delivered.
func RestoreIDForAutoRollback(tenant, runID, instanceID string) string {
	return RestoreIDForRequest(tenant, instanceID, ActorAutoRollback+"\x00"+runID)
}

// NewRestoreID returns a new random restore id.
func NewRestoreID(random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	var b [10]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("new restore id: %w", err)
	}
	return "rst-" + hex.EncodeToString(b[:]), nil
}

// SnapshotState is what the snapshotter knows of a job's snapshot set.
type SnapshotState string

// Snapshot states.
const (
	SnapshotStarted   SnapshotState = "started"
	SnapshotCompleted SnapshotState = "completed"
	SnapshotFailed    SnapshotState = "failed"
	SnapshotDeleted   SnapshotState = "deleted"
)

// JobOutcome is what happened to the job the snapshot was taken for, as retention sees it.
type JobOutcome string

// Job outcomes. Held outcomes keep the snapshot until a later run succeeds on the instance.
const (
	OutcomeNone      JobOutcome = ""
	OutcomeSucceeded JobOutcome = "succeeded"
	OutcomeFailed    JobOutcome = "failed"
	OutcomeRestored  JobOutcome = "restored"
)

// Held reports whether the outcome keeps the snapshot: the instance failed, or was restored.
func (o JobOutcome) Held() bool { return o == OutcomeFailed || o == OutcomeRestored }

// Snapshot is the snapshotter's record of one job's pre-patch snapshot set.
type Snapshot struct {
	Tenant     string
	RunID      string
	InstanceID string
	// SetID is the provider's snapshot set id.
	SetID     string
	Account   string
	Region    string
	State     SnapshotState
	StartedAt time.Time
	Outcome   JobOutcome
	// DueAt is when retention may delete the set; zero while it is kept (no outcome yet, or
	// held).
	DueAt time.Time
	// Error says why the snapshot failed.
	Error string
}

// CheckRestorable applies the rule of a restore request: the snapshotter must know the run's
// snapshot of the instance (NotFound otherwise), and the set must be completed and not deleted
// (FailedPrecondition otherwise).
func CheckRestorable(s Snapshot, found bool, tenant, runID, instanceID string) error {
	switch {
	case !found:
		return fmt.Errorf("%w: no pre-patch snapshot of run %s for instance %s of tenant %s", apierr.ErrNotFound, runID, instanceID, tenant)
	case s.State == SnapshotDeleted:
		return fmt.Errorf("%w: the pre-patch snapshot %s of run %s for instance %s was deleted by retention", apierr.ErrFailedPrecondition, s.SetID, runID, instanceID)
	case s.State == SnapshotFailed:
		return fmt.Errorf("%w: the pre-patch snapshot of run %s for instance %s failed: %s", apierr.ErrFailedPrecondition, runID, instanceID, s.Error)
	case s.State != SnapshotCompleted:
		return fmt.Errorf("%w: the pre-patch snapshot %s of run %s for instance %s is not completed yet (%s)", apierr.ErrFailedPrecondition, s.SetID, runID, instanceID, s.State)
	}
	return nil
}

// Retention is the retention rule: a snapshot set is kept Keep after its job succeeded; while
// the instance is failed or restored it is kept until a later run succeeds on the instance,
// then Keep after that; a failed snapshot set is deleted Keep after it failed.
type Retention struct {
	Keep time.Duration
}

// OnOutcome returns s with the outcome of its own job recorded at t.
func (r Retention) OnOutcome(s Snapshot, o JobOutcome, t time.Time) Snapshot {
	if s.Outcome.Held() && o == OutcomeSucceeded {
		// A success never releases a snapshot its instance was restored from or failed on.
		return s
	}
	s.Outcome = o
	s.DueAt = time.Time{}
	if o == OutcomeSucceeded {
		s.DueAt = t.Add(r.Keep)
	}
	return s
}

// OnLaterSuccess returns s after a run started later than s succeeded on the same instance at
// t: a held snapshot is released, due Keep after t. It reports whether s changed.
func (r Retention) OnLaterSuccess(s Snapshot, laterStart, t time.Time) (Snapshot, bool) {
	if !s.Outcome.Held() || !s.StartedAt.Before(laterStart) || s.State == SnapshotDeleted {
		return s, false
	}
	s.Outcome = OutcomeSucceeded
	s.DueAt = t.Add(r.Keep)
	return s, true
}

// OnSnapshotFailed returns s after its snapshot failed at t: due Keep after t (its volume
// snapshots may exist in part).
func (r Retention) OnSnapshotFailed(s Snapshot, reason string, t time.Time) Snapshot {
	s.State, s.Error = SnapshotFailed, reason
	s.DueAt = t.Add(r.Keep)
	return s
}

// Due reports whether retention deletes s at now.
func (s Snapshot) Due(now time.Time) bool {
	return s.State != SnapshotDeleted && !s.DueAt.IsZero() && !s.DueAt.After(now) && !s.Outcome.Held()
}

// RestoreState is the state of a restore.
type RestoreState string

// Restore states.
const (
	RestoreRequested  RestoreState = "requested"
	RestoreInProgress RestoreState = "in-progress"
	RestoreSucceeded  RestoreState = "succeeded"
	RestoreFailed     RestoreState = "failed"
)

// Terminal reports whether the restore will not change any more.
func (s RestoreState) Terminal() bool { return s == RestoreSucceeded || s == RestoreFailed }

// Restore is one restore of an instance from the pre-patch snapshot of a run.
type Restore struct {
	Tenant     string
	ID         string
	InstanceID string
	RunID      string
	SetID      string
	Account    string
	Region     string
	State      RestoreState
	Actor      string
	Reason     string
	Error      string
	// ProviderID is the cloud's id of the restore (on AWS the replace-root-volume task).
	ProviderID  string
	RequestedAt time.Time
	StartedAt   time.Time
	FinishedAt  time.Time
}

// Advance returns r moved to next, unless r is already past it: restore events may be
// applied out of order by a read model that replays, and a terminal restore stays terminal.
func (r Restore) Advance(next RestoreState) (Restore, bool) {
	rank := map[RestoreState]int{"": 0, RestoreRequested: 1, RestoreInProgress: 2, RestoreSucceeded: 3, RestoreFailed: 3}
	if rank[next] <= rank[r.State] {
		return r, false
	}
	r.State = next
	return r, true
}
