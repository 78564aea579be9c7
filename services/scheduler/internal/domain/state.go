package domain

import (
	"fmt"
	"slices"
	"strings"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// The run and job state machines (DOMAIN.md, "Run and job states", plus the run state MISSED
// for an occurrence whose window passed without a run: issue 8, docs/decisions.md).
//
// Runs:
//
//	(new) ─▶ SCHEDULED | WAITING_APPROVAL | HELD | RUNNING | SKIPPED_FROZEN | SKIPPED | MISSED
//	SCHEDULED ─▶ WAITING_APPROVAL | HELD | RUNNING | SKIPPED_FROZEN | SKIPPED | MISSED | CANCELLED
//	WAITING_APPROVAL ─▶ HELD | RUNNING | SKIPPED_FROZEN | SKIPPED | MISSED | CANCELLED
//	HELD ─▶ WAITING_APPROVAL | RUNNING | SKIPPED_FROZEN | SKIPPED | MISSED | CANCELLED
//	RUNNING ─▶ HALTED | COMPLETED | COMPLETED_WITH_ERRORS | CANCELLED
//	HALTED, COMPLETED, COMPLETED_WITH_ERRORS, CANCELLED, SKIPPED_FROZEN, SKIPPED, MISSED: final
//
// A HALTED or CANCELLED run dispatches nothing more: its jobs not yet released become SKIPPED,
// the ones in flight finish, and its RunCompleted keeps the state. Pausing is not a state: a
// RUNNING run may be paused (it releases no new job) and resumed.
//
// Jobs (one instance in one run):
//
//	(new) ─▶ PENDING | MISSED (stopped instance) | SKIPPED (no agent: reported UNKNOWN)
//	PENDING ─▶ SNAPSHOTTING (released: JobRequested) | SKIPPED
//	SNAPSHOTTING ─▶ INSTALLING | SNAPSHOT_FAILED
//	INSTALLING ─▶ SUCCEEDED | SUCCEEDED_PENDING_REBOOT | FAILED | TIMED_OUT
//	SUCCEEDED_PENDING_REBOOT ─▶ SUCCEEDED | RESTORING
//	SUCCEEDED | FAILED | TIMED_OUT ─▶ RESTORING
//	RESTORING ─▶ RESTORED | RESTORE_FAILED
//	RESTORED | RESTORE_FAILED ─▶ RESTORING
//	SNAPSHOT_FAILED, SKIPPED, MISSED: final
//
// A job "ends" (for its run: it frees a concurrency slot and counts towards completion) when it
// reaches one of SNAPSHOT_FAILED, SUCCEEDED, SUCCEEDED_PENDING_REBOOT, FAILED, TIMED_OUT, SKIPPED
// or MISSED; restores come after the run's outcome and do not change it.

// New is the "from" state of a run or job that does not exist yet.
const (
	RunNew = typesv1.RunState_RUN_STATE_UNSPECIFIED
	JobNew = typesv1.JobState_JOB_STATE_UNSPECIFIED
)

// Short names of the run states, used in the tables below.
const (
	runScheduled       = typesv1.RunState_RUN_STATE_SCHEDULED
	runWaitingApproval = typesv1.RunState_RUN_STATE_WAITING_APPROVAL
	runRunning         = typesv1.RunState_RUN_STATE_RUNNING
	runHalted          = typesv1.RunState_RUN_STATE_HALTED
	runCompleted       = typesv1.RunState_RUN_STATE_COMPLETED
	runCompletedErrors = typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS
	runCancelled       = typesv1.RunState_RUN_STATE_CANCELLED
	runSkippedFrozen   = typesv1.RunState_RUN_STATE_SKIPPED_FROZEN
	runHeld            = typesv1.RunState_RUN_STATE_HELD
	runMissed          = typesv1.RunState_RUN_STATE_MISSED
	runSkipped         = typesv1.RunState_RUN_STATE_SKIPPED
)

var runTransitions = map[typesv1.RunState][]typesv1.RunState{
	RunNew:             {runScheduled, runWaitingApproval, runHeld, runRunning, runSkippedFrozen, runSkipped, runMissed},
	runScheduled:       {runWaitingApproval, runHeld, runRunning, runSkippedFrozen, runSkipped, runMissed, runCancelled},
	runWaitingApproval: {runHeld, runRunning, runSkippedFrozen, runSkipped, runMissed, runCancelled},
	runHeld:            {runWaitingApproval, runRunning, runSkippedFrozen, runSkipped, runMissed, runCancelled},
	runRunning:         {runHalted, runCompleted, runCompletedErrors, runCancelled},
}

// Short names of the job states.
const (
	jobPending        = typesv1.JobState_JOB_STATE_PENDING
	jobSnapshotting   = typesv1.JobState_JOB_STATE_SNAPSHOTTING
	jobSnapshotFailed = typesv1.JobState_JOB_STATE_SNAPSHOT_FAILED
	jobInstalling     = typesv1.JobState_JOB_STATE_INSTALLING
	jobSucceeded      = typesv1.JobState_JOB_STATE_SUCCEEDED
	jobSucceededPR    = typesv1.JobState_JOB_STATE_SUCCEEDED_PENDING_REBOOT
	jobFailed         = typesv1.JobState_JOB_STATE_FAILED
	jobTimedOut       = typesv1.JobState_JOB_STATE_TIMED_OUT
	jobSkipped        = typesv1.JobState_JOB_STATE_SKIPPED
	jobMissed         = typesv1.JobState_JOB_STATE_MISSED
	jobRestoring      = typesv1.JobState_JOB_STATE_RESTORING
	jobRestored       = typesv1.JobState_JOB_STATE_RESTORED
	jobRestoreFailed  = typesv1.JobState_JOB_STATE_RESTORE_FAILED
)

var jobTransitions = map[typesv1.JobState][]typesv1.JobState{
	JobNew:          {jobPending, jobMissed, jobSkipped},
	jobPending:      {jobSnapshotting, jobSkipped},
	jobSnapshotting: {jobInstalling, jobSnapshotFailed},
	jobInstalling:   {jobSucceeded, jobSucceededPR, jobFailed, jobTimedOut},
	jobSucceededPR:  {jobSucceeded, jobRestoring},
	jobSucceeded:    {jobRestoring},
	jobFailed:       {jobRestoring},
	jobTimedOut:     {jobRestoring},
	jobRestoring:    {jobRestored, jobRestoreFailed},
	jobRestored:     {jobRestoring},
	// A failed restore may be tried again.
	jobRestoreFailed: {jobRestoring},
}

// RunStateName is the state's name without its prefix: "RUNNING".
func RunStateName(s typesv1.RunState) string {
	if s == RunNew {
		return "new"
	}
	return strings.TrimPrefix(s.String(), "RUN_STATE_")
}

// JobStateName is the state's name without its prefix: "SNAPSHOTTING".
func JobStateName(s typesv1.JobState) string {
	if s == JobNew {
		return "new"
	}
	return strings.TrimPrefix(s.String(), "JOB_STATE_")
}

// TransitionError is an illegal move of a run or a job. It matches ErrFailedPrecondition (412
// over REST) and names the current state.
type TransitionError struct {
	// Kind is "run" or "job".
	Kind string
	// ID names the run ("run-...") or the job ("run-.../i-...").
	ID string
	// From is the current state's name, To the asked one's (or the action's, such as "pause").
	From, To string
	// Allowed lists the states (or conditions) the move is legal from.
	Allowed []string
}

func (e *TransitionError) Error() string {
	msg := fmt.Sprintf("%s: %s %s is %s: cannot go to %s", ErrFailedPrecondition, e.Kind, e.ID, e.From, e.To)
	if len(e.Allowed) > 0 {
		msg += " (only from " + strings.Join(e.Allowed, ", ") + ")"
	} else {
		msg += " (" + e.From + " is final)"
	}
	return msg
}

// Is makes errors.Is(err, ErrFailedPrecondition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrFailedPrecondition }

// CanRun reports whether a run may move from one state to another.
func CanRun(from, to typesv1.RunState) bool { return slices.Contains(runTransitions[from], to) }

// CheckRun returns nil when run id may move from one state to the other, else a
// *TransitionError naming the current state.
func CheckRun(id string, from, to typesv1.RunState) error {
	if CanRun(from, to) {
		return nil
	}
	var allowed []string
	for f, tos := range runTransitions {
		if f != RunNew && slices.Contains(tos, to) {
			allowed = append(allowed, RunStateName(f))
		}
	}
	slices.Sort(allowed)
	return &TransitionError{Kind: "run", ID: id, From: RunStateName(from), To: RunStateName(to), Allowed: allowed}
}

// RunFinal reports whether a run state is final: nothing moves the run out of it.
func RunFinal(s typesv1.RunState) bool { return s != RunNew && len(runTransitions[s]) == 0 }

// RunDispatching reports whether a run in this state may release jobs: only RUNNING does.
func RunDispatching(s typesv1.RunState) bool { return s == runRunning }

// CanJob reports whether a job may move from one state to another.
func CanJob(from, to typesv1.JobState) bool { return slices.Contains(jobTransitions[from], to) }

// CheckJob returns nil when job id may move from one state to the other, else a
// *TransitionError naming the current state.
func CheckJob(id string, from, to typesv1.JobState) error {
	if CanJob(from, to) {
		return nil
	}
	var allowed []string
	for f, tos := range jobTransitions {
		if f != JobNew && slices.Contains(tos, to) {
			allowed = append(allowed, JobStateName(f))
		}
	}
	slices.Sort(allowed)
	return &TransitionError{Kind: "job", ID: id, From: JobStateName(from), To: JobStateName(to), Allowed: allowed}
}

// JobEnded reports whether a job state is the job's outcome in its run: it frees the job's
// concurrency slot and counts towards the run's completion. Restores come after.
func JobEnded(s typesv1.JobState) bool {
	switch s {
	case jobSnapshotFailed, jobSucceeded, jobSucceededPR, jobFailed, jobTimedOut, jobSkipped, jobMissed,
		jobRestoring, jobRestored, jobRestoreFailed:
		return true
	}
	return false
}

// JobInFlight reports whether a job holds a concurrency slot: it was released and has no
// outcome yet.
func JobInFlight(s typesv1.JobState) bool { return s == jobSnapshotting || s == jobInstalling }

// JobError reports whether a job's outcome counts against the error budget (and makes the
// run COMPLETED_WITH_ERRORS): a failed snapshot, a failed or timed-out installation.
func JobError(s typesv1.JobState) bool {
	return s == jobSnapshotFailed || s == jobFailed || s == jobTimedOut
}

// JobSucceeded reports whether a job's installation succeeded (a later restore included).
func JobSucceeded(s typesv1.JobState) bool { return s == jobSucceeded || s == jobSucceededPR }

// jobRank orders the job states along a job's life, so that a read model fed events out of
// order (a redelivery, two replicas) keeps the furthest state: Advance never moves a job back.
var jobRank = map[typesv1.JobState]int{
	JobNew: 0, jobPending: 1, jobSnapshotting: 2, jobInstalling: 3,
	jobSnapshotFailed: 4, jobSucceeded: 4, jobSucceededPR: 4, jobFailed: 4, jobTimedOut: 4, jobSkipped: 4, jobMissed: 4,
	jobRestoring: 5, jobRestored: 6, jobRestoreFailed: 6,
}

// AdvanceJob returns the state a projection records when it sees a job event with state to
// for a job in state from: to, unless it is not further along (then from). An outcome never
// replaces another outcome (the first one recorded stays).
func AdvanceJob(from, to typesv1.JobState) typesv1.JobState {
	if jobRank[to] > jobRank[from] {
		return to
	}
	return from
}

// RunStates lists every run state, in enum order (for counts per state).
func RunStates() []typesv1.RunState {
	return []typesv1.RunState{runScheduled, runWaitingApproval, runRunning, runHalted, runCompleted,
		runCompletedErrors, runCancelled, runSkippedFrozen, runHeld, runMissed, runSkipped}
}

// JobStates lists every job state, in enum order (for counts per state).
func JobStates() []typesv1.JobState {
	return []typesv1.JobState{jobPending, jobSnapshotting, jobSnapshotFailed, jobInstalling, jobSucceeded,
		jobSucceededPR, jobFailed, jobTimedOut, jobSkipped, jobMissed, jobRestoring, jobRestored, jobRestoreFailed}
}

// CheckPause returns nil when run id may be paused: it is RUNNING and not paused.
func CheckPause(id string, s typesv1.RunState, paused bool) error {
	switch {
	case s != runRunning:
		return &TransitionError{Kind: "run", ID: id, From: RunStateName(s), To: "paused", Allowed: []string{RunStateName(runRunning)}}
	case paused:
		return &TransitionError{Kind: "run", ID: id, From: "RUNNING and paused", To: "paused", Allowed: []string{"RUNNING and not paused"}}
	}
	return nil
}

// CheckResume returns nil when run id may be resumed: it is RUNNING and paused.
func CheckResume(id string, s typesv1.RunState, paused bool) error {
	switch {
	case s != runRunning:
		return &TransitionError{Kind: "run", ID: id, From: RunStateName(s), To: "resumed", Allowed: []string{"RUNNING and paused"}}
	case !paused:
		return &TransitionError{Kind: "run", ID: id, From: "RUNNING and not paused", To: "resumed", Allowed: []string{"RUNNING and paused"}}
	}
	return nil
}

// CheckRerun returns nil when the failed instances of run id may be run again (in a new run
// with the same pin): the run has ended with failures, HALTED or COMPLETED_WITH_ERRORS. The
// window must also be open, which the caller checks.
func CheckRerun(id string, s typesv1.RunState) error {
	if s == runCompletedErrors || s == runHalted {
		return nil
	}
	return &TransitionError{Kind: "run", ID: id, From: RunStateName(s), To: "re-run",
		Allowed: []string{RunStateName(runCompletedErrors), RunStateName(runHalted)}}
}
