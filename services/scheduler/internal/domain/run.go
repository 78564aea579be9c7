package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// MaxRequestIDLen bounds StartRun's request_id.
const MaxRequestIDLen = 128

var tenantRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateTenant checks a tenant id and returns a ValidationError naming the field.
func ValidateTenant(tenant string) error {
	var v apierr.Violations
	checkTenant(&v, tenant)
	return v.Err()
}

func checkTenant(v *apierr.Violations, tenant string) {
	if events.ValidateTenant(tenant) != nil {
		v.Add("tenant", fmt.Sprintf("must match %s (1-63 lower-case letters, digits or '-', not starting with '-'), got %q", tenantRule, tenant))
	}
}

// StartRun is the command that starts a run of one wave now.
type StartRun struct {
	Tenant string
	// Wave is 1..MaxWaves.
	Wave int32
	// BaselineID pins a published baseline; empty means the newest.
	BaselineID string
	// RequestID makes the command idempotent when set.
	RequestID string
}

// Validate reports every problem with the command; maxWaves is the highest wave number.
func (c StartRun) Validate(maxWaves int) error {
	var v apierr.Violations
	checkTenant(&v, c.Tenant)
	if c.Wave < 1 || int(c.Wave) > maxWaves {
		v.Add("wave", fmt.Sprintf("must be from 1 to %d, got %d", maxWaves, c.Wave))
	}
	if len(c.RequestID) > MaxRequestIDLen {
		v.Add("request_id", fmt.Sprintf("must be at most %d characters, got %d", MaxRequestIDLen, len(c.RequestID)))
	}
	if len(c.BaselineID) > 256 {
		v.Add("baseline_id", fmt.Sprintf("must be at most 256 characters, got %d", len(c.BaselineID)))
	}
	return v.Err()
}

// RunRef names a run: tenant and run id.
type RunRef struct {
	Tenant string
	RunID  string
}

// Validate reports every problem with the reference.
func (r RunRef) Validate() error {
	var v apierr.Violations
	checkTenant(&v, r.Tenant)
	if r.RunID == "" {
		v.Add("run_id", "is required")
	}
	return v.Err()
}

// RunIDForRequest returns the run id of an idempotent StartRun: the same tenant, wave and
// request id always give the same run, so a retried request starts one run.
func RunIDForRequest(tenant string, wave int32, requestID string) string {
	h := sha256.Sum256([]byte(tenant + "\x00" + strconv.Itoa(int(wave)) + "\x00" + requestID))
	return "run-" + hex.EncodeToString(h[:8])
}

// NewRunID returns a new run id that sorts by start time: "run-20261123T154800Z-a1b2c3".
func NewRunID(now time.Time, random io.Reader) (string, error) {
	var b [3]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("new run id: %w", err)
	}
	return "run-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]), nil
}

// Run is one run of one wave with its progress.
type Run struct {
	Tenant     string
	ID         string
	Wave       int32
	BaselineID string
	State      typesv1.RunState
	// Total is the number of instances in scope at start.
	Total          int
	Snapshotted    int
	Succeeded      int
	Failed         int
	SnapshotFailed int
	StartedAt      time.Time
	// CompletedAt is zero while the run is not completed.
	CompletedAt time.Time
}

// Outcome is what happened to one job (one instance of a run), as far as the run's progress
// is concerned.
type Outcome int

// Outcomes. Snapshotted is progress; the other three end the job.
const (
	OutcomeSnapshotted Outcome = iota + 1
	OutcomeSnapshotFailed
	OutcomeSucceeded
	OutcomeFailed
)

// String names the outcome; the name is also its store key.
func (o Outcome) String() string {
	switch o {
	case OutcomeSnapshotted:
		return "snapshotted"
	case OutcomeSnapshotFailed:
		return "snapshot_failed"
	case OutcomeSucceeded:
		return "succeeded"
	case OutcomeFailed:
		return "failed"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Terminal reports whether the outcome ends the job.
func (o Outcome) Terminal() bool {
	return o == OutcomeSnapshotFailed || o == OutcomeSucceeded || o == OutcomeFailed
}

// Completion is the verdict on a run whose every job has a terminal outcome.
type Completion struct {
	State     typesv1.RunState
	Total     int
	Succeeded int
	// Failed counts every job that did not succeed: install failures and snapshot failures.
	Failed int
}

// Complete decides whether a started run is complete: done is the number of its jobs with a
// terminal outcome. A run that already has its RunCompleted (State not RUNNING) is never
// completed again. The counts are the run's progress counters.
func (r Run) Complete(done int) (Completion, bool) {
	if r.State != typesv1.RunState_RUN_STATE_RUNNING || done < r.Total {
		return Completion{}, false
	}
	failed := r.Failed + r.SnapshotFailed
	state := typesv1.RunState_RUN_STATE_COMPLETED
	if failed > 0 {
		state = typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS
	}
	return Completion{State: state, Total: r.Total, Succeeded: r.Succeeded, Failed: failed}, true
}
