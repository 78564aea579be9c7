package domain

import (
	"time"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// The run controller's rules. A run's eligible members are released in membership order
// (chunk by chunk, instance by instance): the job at position p is released only while
//
//	p < Target = min(eligible, ended + max in flight)   (eligible alone without a limit)
//
// where ended counts the run's jobs with an outcome in the stream. Because every controller
// (every replica, before and after a restart) releases only positions below the Target it
// computes, and the ended count it reads is never ahead of the stream, the jobs released at
// any time are all below the highest Target ever computed, so jobs in flight (released less
// ended) never exceed the limit. Releasing a position twice publishes the same event id
// ("<run>/<instance>"), which the stream stores once.

// MaxChunk is the most instances one RunMembership chunk carries: about 100 bytes each on the
// wire, so a chunk stays far below the 1 MiB NATS message limit.
const MaxChunk = 1000

// Limits are a run's rollout limits, resolved when it starts.
type Limits struct {
	// MaxInFlight is the most jobs in flight at once; 0 means no limit.
	MaxInFlight int
	// ErrorBudget is the number of failed jobs tolerated; one more halts the run.
	ErrorBudget int
	// StopAt is when dispatch stops (cutoff, window end, freeze); zero means never.
	StopAt     time.Time
	StopReason string
	// WindowEnd is the end of the window the run dispatches in; zero when none.
	WindowEnd time.Time
}

// Window is the maintenance window a run dispatches in: its end, and the start of a freeze
// inside it (zero when none) with the freeze's description.
type Window struct {
	End         time.Time
	FreezeStart time.Time
	FreezeNote  string
}

// amount resolves a count-or-percent of n instances, percentages rounded up.
func amount(a *typesv1.Amount, n int) (int, bool) {
	switch v := a.GetValue().(type) {
	case *typesv1.Amount_Count:
		return int(v.Count), true
	case *typesv1.Amount_Percent:
		return (int(v.Percent)*n + 99) / 100, true
	}
	return 0, false
}

// ResolveLimits turns a normalized rollout policy into a run's limits for eligible instances:
// max concurrency and error budget as counts (a percentage of the eligible instances, rounded
// up; concurrency at least 1, and none when it covers them all), and, when the run dispatches
// inside a window, the stop instant: the window end less the cutoff, or the start of a freeze
// inside the window if earlier (AWS semantics: no instance starts within the cutoff).
func ResolveLimits(p *typesv1.RolloutPolicy, eligible int, w *Window) Limits {
	var l Limits
	if c, ok := amount(p.GetMaxConcurrency(), eligible); ok && c < eligible {
		l.MaxInFlight = max(c, 1)
	}
	l.ErrorBudget = eligible
	if b, ok := amount(p.GetErrorBudget(), eligible); ok {
		l.ErrorBudget = b
	}
	if w == nil || w.End.IsZero() {
		return l
	}
	l.WindowEnd = w.End.UTC()
	cutoff, _ := time.ParseDuration(p.GetCutoff())
	l.StopAt, l.StopReason = w.End.Add(-cutoff).UTC(), "window end"
	if cutoff > 0 {
		l.StopReason = "cutoff " + cutoff.String() + " before the window end"
	}
	if !w.FreezeStart.IsZero() && w.FreezeStart.Before(l.StopAt) {
		l.StopAt, l.StopReason = w.FreezeStart.UTC(), "freeze "+w.FreezeNote
	}
	return l
}

// Ledger is what the controller knows of one run: its limits and counts from the read model.
type Ledger struct {
	State    typesv1.RunState
	Eligible int
	// Requested counts the jobs released (JobRequested in the stream), Ended those of them
	// with an outcome, Errors the failed ones (snapshot failed, failed, timed out).
	Requested, Ended, Errors int
	Paused                   bool
	// Stopped is set once the run's RunDispatchStopped is in the stream.
	Stopped bool
	Limits  Limits
}

// Dispatching reports whether the run may release jobs at now: RUNNING, not paused, not
// stopped, before its stop instant, and within its error budget.
func (l Ledger) Dispatching(now time.Time) bool {
	return RunDispatching(l.State) && !l.Paused && !l.Stopped && !l.StopDue(now) && !l.OverBudget()
}

// StopDue reports whether the run's stop instant has come.
func (l Ledger) StopDue(now time.Time) bool {
	return !l.Limits.StopAt.IsZero() && !now.Before(l.Limits.StopAt)
}

// Target is the number of leading positions of the release order that may be released at
// now; 0 when the run does not dispatch.
func (l Ledger) Target(now time.Time) int {
	if !l.Dispatching(now) {
		return 0
	}
	if l.Limits.MaxInFlight > 0 {
		return min(l.Eligible, l.Ended+l.Limits.MaxInFlight)
	}
	return l.Eligible
}

// OverBudget reports whether a RUNNING run has more failed jobs than its error budget.
func (l Ledger) OverBudget() bool {
	return l.State == runRunning && l.Errors > l.Limits.ErrorBudget
}

// DispatchOver reports whether the run will release nothing more: every eligible job is
// released, or the run was halted, cancelled or stopped.
func (l Ledger) DispatchOver() bool {
	return l.Requested >= l.Eligible || l.Stopped || l.State == runHalted || l.State == runCancelled
}

// Complete reports whether the run is over: dispatch is over and every released job has its
// outcome. A run that already completed (or never ran) is not complete again.
func (l Ledger) Complete() bool {
	if l.State != runRunning && l.State != runHalted && l.State != runCancelled {
		return false
	}
	return l.DispatchOver() && l.Ended >= l.Requested
}

// FinalState is the state RunCompleted carries: HALTED or CANCELLED as the run is, else
// COMPLETED when every eligible job succeeded and COMPLETED_WITH_ERRORS otherwise (a failure,
// or jobs left unreleased at the dispatch stop). skippedByStop is the number of eligible jobs
// never released.
func (l Ledger) FinalState() typesv1.RunState {
	switch {
	case l.State == runHalted || l.State == runCancelled:
		return l.State
	case l.Errors > 0 || l.Requested < l.Eligible:
		return runCompletedErrors
	}
	return runCompleted
}

// MemberJobState is the state of a member's job that the controller never released: MISSED
// for a stopped instance, SKIPPED without an agent or a baseline, PENDING for an eligible one
// (SKIPPED once the run's dispatch is over).
func MemberJobState(status typesv1.MemberStatus, dispatchOver bool) typesv1.JobState {
	switch status {
	case typesv1.MemberStatus_MEMBER_STATUS_STOPPED:
		return jobMissed
	case typesv1.MemberStatus_MEMBER_STATUS_NO_AGENT, typesv1.MemberStatus_MEMBER_STATUS_NO_BASELINE:
		return jobSkipped
	}
	if dispatchOver {
		return jobSkipped
	}
	return jobPending
}
