package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

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
	// RunID, when set, is the run's id (an occurrence's or a patch now's, see firing.go): a
	// repeat returns the run already started, so the command is idempotent.
	RunID string
	// Pins is the cycle's pin (one baseline per OS family) for a run of a cycle; BaselineID is
	// then empty.
	Pins []Pin
	// Firing says why the run exists (occurrence, cycle, trigger, actor, reason, window); it is
	// carried by RunStarted.
	Firing *typesv1.FiringRef
	// Window is the occurrence's window the run dispatches in; nil: the wave's window open now.
	Window *Window
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
	return NewSortableID("run", now, random)
}

// NewSortableID returns "<prefix>-<UTC time to the second>-<6 random hex digits>": ids that sort
// by the time they were made ("run-20261123T154800Z-a1b2c3").
func NewSortableID(prefix string, now time.Time, random io.Reader) (string, error) {
	var b [3]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("new %s id: %w", prefix, err)
	}
	return prefix + "-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]), nil
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
	// TimedOut counts installations that outlived the per-instance timeout.
	TimedOut  int
	StartedAt time.Time
	// CompletedAt is zero while the run is not completed.
	CompletedAt time.Time
	// The firing facts (firing.go): the occurrence key, cycle, trigger and window of a run
	// fired from the calendar or by "patch now", and why it is held, waiting, skipped or missed.
	OccurrenceKey string
	Cycle         string
	Trigger       string
	WindowStart   time.Time
	WindowEnd     time.Time
	Reason        string

	// Detail is what RunStarted fixes besides the identity: membership counts, pins, limits.
	Detail RunDetail
	// Requested counts the released jobs; PendingReboot the succeeded ones waiting for a reboot.
	Requested     int
	PendingReboot int
	// Paused is set between a RunPaused and the next RunResumed; Stopped once the run's
	// RunDispatchStopped is in the stream.
	Paused  bool
	Stopped bool
}

// RunDetail is what a run's RunStarted fixes besides its identity.
type RunDetail struct {
	// Eligible members get a job released by the controller; Missed (stopped), NoAgent and
	// NoBaseline ones get a job that ends at once (MISSED, SKIPPED, SKIPPED).
	Eligible   int `json:"eligible"`
	Missed     int `json:"missed,omitempty"`
	NoAgent    int `json:"no_agent,omitempty"`
	NoBaseline int `json:"no_baseline,omitempty"`
	// MembershipID names the run's RunMembership chunks; Chunks is how many there are. Empty
	// for a run whose RunStarted listed its instances itself (older events).
	MembershipID string `json:"membership_id,omitempty"`
	Chunks       int    `json:"chunks,omitempty"`
	Limits       Limits `json:"limits"`
	Pins         []Pin  `json:"pins,omitempty"`
	RerunOf      string `json:"rerun_of,omitempty"`
	// Policy is the job policy, as protobuf JSON of typesv1.JobPolicy.
	Policy []byte `json:"policy,omitempty"`
}

// Errors counts the run's failed jobs: snapshot failures, failed and timed-out installations.
func (r Run) Errors() int { return r.Failed + r.SnapshotFailed + r.TimedOut }

// Ended counts the run's released jobs with an outcome.
func (r Run) Ended() int { return r.Succeeded + r.Errors() }

// Ledger is the run as the controller sees it.
func (r Run) Ledger() Ledger {
	return Ledger{
		State: r.State, Eligible: r.Detail.Eligible, Requested: r.Requested, Ended: r.Ended(), Errors: r.Errors(),
		Paused: r.Paused, Stopped: r.Stopped, Limits: r.Detail.Limits,
	}
}

// Skipped counts the run's SKIPPED jobs: members without an agent or a baseline, and, once
// dispatch is over, the eligible ones never released.
func (r Run) Skipped() int {
	n := r.Detail.NoAgent + r.Detail.NoBaseline
	if r.Ledger().DispatchOver() {
		n += max(r.Detail.Eligible-r.Requested, 0)
	}
	return n
}

// Pending counts the eligible jobs not released while dispatch goes on.
func (r Run) Pending() int {
	if r.Ledger().DispatchOver() {
		return 0
	}
	return max(r.Detail.Eligible-r.Requested, 0)
}

// InFlight counts the released jobs without an outcome.
func (r Run) InFlight() int { return max(r.Requested-r.Ended(), 0) }

// JobCounts counts the run's jobs per state (states without jobs are left out).
func (r Run) JobCounts() map[typesv1.JobState]int {
	snapshotting := r.Requested - r.Snapshotted - r.SnapshotFailed
	installing := r.Snapshotted - r.Succeeded - r.Failed - r.TimedOut
	pendingReboot := min(r.PendingReboot, r.Succeeded)
	m := map[typesv1.JobState]int{
		jobPending: r.Pending(), jobSnapshotting: snapshotting, jobInstalling: installing,
		jobSnapshotFailed: r.SnapshotFailed, jobSucceeded: r.Succeeded - pendingReboot, jobSucceededPR: pendingReboot,
		jobFailed: r.Failed, jobTimedOut: r.TimedOut, jobSkipped: r.Skipped(), jobMissed: r.Detail.Missed,
	}
	for s, n := range m {
		if n <= 0 {
			delete(m, s)
		}
	}
	return m
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
	OutcomeTimedOut
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
	case OutcomeTimedOut:
		return "timed_out"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Terminal reports whether the outcome ends the job.
func (o Outcome) Terminal() bool {
	return o == OutcomeSnapshotFailed || o == OutcomeSucceeded || o == OutcomeFailed || o == OutcomeTimedOut
}

// Completion is the verdict on a run whose every job has a terminal outcome.
type Completion struct {
	State     typesv1.RunState
	Total     int
	Succeeded int
	// Failed counts every job that did not succeed: install failures, timeouts and snapshot
	// failures.
	Failed int
	// TimedOut counts the jobs whose installation outlived the per-instance timeout.
	TimedOut int
	// SnapshotFailed counts the jobs whose snapshot failed (also in Failed).
	SnapshotFailed int
	// Skipped and Missed count the SKIPPED and MISSED jobs (not in Failed).
	Skipped, Missed int
}

// Complete decides whether a started run is complete: its dispatch is over and every released
// job has its outcome (Ledger.Complete). A run that already has its RunCompleted is never
// completed again. The counts are the run's progress counters.
func (r Run) Complete() (Completion, bool) {
	l := r.Ledger()
	if !l.Complete() {
		return Completion{}, false
	}
	return Completion{
		State: l.FinalState(), Total: r.Total, Succeeded: r.Succeeded, Failed: r.Errors(), TimedOut: r.TimedOut,
		SnapshotFailed: r.SnapshotFailed, Skipped: r.Skipped(), Missed: r.Detail.Missed,
	}, true
}

// JobPolicy is how the jobs of a run are carried out: what the wave's rollout policy (or the
// tenant's default, rollout) says, and def for what it leaves unset. A rollout policy that is
// present decides auto-rollback (a bool has no "unset"); def decides it only without one.
func JobPolicy(rollout *typesv1.RolloutPolicy, def *typesv1.JobPolicy) *typesv1.JobPolicy {
	p := &typesv1.JobPolicy{
		RebootPolicy: def.GetRebootPolicy(), InstanceTimeout: def.GetInstanceTimeout(), AutoRollback: def.GetAutoRollback(),
	}
	if rollout == nil {
		return p
	}
	if rollout.GetRebootPolicy() != typesv1.RebootPolicy_REBOOT_POLICY_UNSPECIFIED {
		p.RebootPolicy = rollout.GetRebootPolicy()
	}
	// Stored policies are validated, so the timeout parses; one that does not is left to def.
	if d, err := time.ParseDuration(rollout.GetInstanceTimeout()); err == nil && d > 0 {
		p.InstanceTimeout = durationpb.New(d)
	}
	p.AutoRollback = rollout.GetAutoRollback()
	return p
}

// Control is a control event of a run, as the read model records it.
type Control int

// Controls.
const (
	ControlHalted Control = iota + 1
	ControlCancelled
	ControlStopped
	ControlPaused
	ControlResumed
)
