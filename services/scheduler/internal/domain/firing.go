package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/patchwave/patchwave/libs/calendar"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Firing: the scheduler fires each wave's occurrences from the calendar by itself. Every
// occurrence has one durable record (an Occurrence, claimed once with a KV create), whose run id
// is derived from (tenant, wave, occurrence key), so several replicas and restarts agree on it.
//
//	(none) ─▶ SCHEDULED (deferred: waits for its later window)
//	(none), SCHEDULED ─▶ SKIPPED_FROZEN | SKIPPED | MISSED | HELD | WAITING_APPROVAL | RUNNING
//	HELD ─▶ WAITING_APPROVAL | RUNNING | SKIPPED | MISSED      (gate passed, or released)
//	WAITING_APPROVAL ─▶ HELD | RUNNING | SKIPPED | MISSED      (approved; the window closed)
//	RUNNING (Confirmed false) ─▶ RUNNING (Confirmed true)        (RunStarted stored)
//
// A record in RUNNING that is not confirmed was claimed to start: whoever finds it (the same
// replica after a crash, or another) starts the run again with the same id, which the run
// start answers idempotently.

// Triggers: what started a run.
const (
	TriggerSchedule = "schedule"
	TriggerPatchNow = "patch_now"
	TriggerRequest  = "request"
)

// Causes of a skipped or missed occurrence (RunSkipped.cause, RunMissed.cause).
const (
	CauseFrozen    = "frozen"
	CausePaused    = "paused"
	CauseRequested = "requested"
	CauseOperator  = "operator"
	CauseDown      = "down"
	CauseApproval  = "approval"
	CauseHeld      = "held"
	// CauseFailed: the run could not start (the design no longer defines the wave, the tenant
	// has no cloud account, ...); the reason says why.
	CauseFailed = "failed"
)

// OccurrenceRunID is the run id of a wave's occurrence: the same tenant, wave and key always
// give the same run, whichever replica fires it and however often.
func OccurrenceRunID(tenant string, wave int32, key string) string {
	h := sha256.Sum256([]byte("occurrence\x00" + tenant + "\x00" + strconv.Itoa(int(wave)) + "\x00" + key))
	return "run-" + hex.EncodeToString(h[:8])
}

// Occurrence is the firing's record of one occurrence of one wave.
type Occurrence struct {
	Tenant string `json:"tenant"`
	Wave   int32  `json:"wave"`
	// Key is the occurrence key "YYYY-MM", which is also the cycle.
	Key   string           `json:"key"`
	RunID string           `json:"run_id"`
	State typesv1.RunState `json:"state"`
	// Confirmed is set once the RunStarted of a RUNNING record is stored.
	Confirmed bool `json:"confirmed,omitempty"`
	// Start and End are the window to run in (the deferred one for a deferred occurrence).
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	OriginalStart  time.Time `json:"original_start"`
	DispatchStopAt time.Time `json:"dispatch_stop_at,omitzero"`
	Freezes        []string  `json:"freezes,omitempty"`
	// Cause and Reason say why the record is in its state.
	Cause  string `json:"cause,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Released is set when an operator released the held run (the gate no longer applies).
	Released      bool   `json:"released,omitempty"`
	ReleasedBy    string `json:"released_by,omitempty"`
	ReleaseReason string `json:"release_reason,omitempty"`
	// Trigger, Actor and ActorReason say who started the run (patch now).
	Trigger     string `json:"trigger,omitempty"`
	Actor       string `json:"actor,omitempty"`
	ActorReason string `json:"actor_reason,omitempty"`
	// Pins and Unapproved are the cycle's pin and its baselines the tenant has not approved
	// (WAITING_APPROVAL); Gate is the wave gate's verdict (HELD).
	Pins       []Pin    `json:"pins,omitempty"`
	Unapproved []string `json:"unapproved,omitempty"`
	Gate       *Gate    `json:"gate,omitempty"`
	// Pending is set when the event of this revision's state may not be stored yet: whoever
	// reads the record publishes it (its id derives from the run and the revision, so the
	// stream stores it once) and clears the flag.
	Pending   bool      `json:"pending,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ErrClaimTaken is a claim (KV create) another writer won, or an update of a record that
// changed since it was read.
var ErrClaimTaken = errors.New("claim taken")

// FiringView is the read model of an occurrence's run before (or without) its RunStarted, and
// the firing facts of a started one: what GetRun and ListRuns show of a run that is held,
// waiting for approval, skipped or missed.
type FiringView struct {
	Tenant      string           `json:"tenant"`
	RunID       string           `json:"run_id"`
	Wave        int32            `json:"wave"`
	Key         string           `json:"key,omitempty"`
	Cycle       string           `json:"cycle,omitempty"`
	Trigger     string           `json:"trigger,omitempty"`
	State       typesv1.RunState `json:"state"`
	WindowStart time.Time        `json:"window_start,omitzero"`
	WindowEnd   time.Time        `json:"window_end,omitzero"`
	Reason      string           `json:"reason,omitempty"`
	At          time.Time        `json:"at"`
}

// Step is what the firing does next with an occurrence.
type Step int

// Steps.
const (
	// StepNone: nothing now (the window is not open yet, or the record is final or running).
	StepNone Step = iota
	// StepDefer records a deferred occurrence (SCHEDULED in its later window).
	StepDefer
	// StepSkip records a skipped occurrence (SKIPPED_FROZEN or SKIPPED).
	StepSkip
	// StepMiss records an occurrence whose window closed without a run (MISSED).
	StepMiss
	// StepEvaluate: the window is open; check the wave gate and the approval, then start.
	StepEvaluate
	// StepRecover starts again a run claimed to start whose RunStarted is not confirmed.
	StepRecover
)

func (s Step) String() string {
	return [...]string{"none", "defer", "skip", "miss", "evaluate", "recover"}[s]
}

// Decide is the next step for occurrence occ (as the calendar computes it now, with the
// design's freezes, pause and skipped keys) given its record (nil when none was claimed).
// A skip is recorded from the nominal start on; a record already waiting or held becomes
// skipped when the wave is paused or the occurrence skipped meanwhile.
func Decide(now time.Time, occ calendar.Occurrence, rec *Occurrence) Step {
	if rec != nil {
		if RunFinal(rec.State) {
			return StepNone
		}
		if rec.State == typesv1.RunState_RUN_STATE_RUNNING {
			if rec.Confirmed {
				return StepNone
			}
			return StepRecover
		}
	}
	if now.Before(occ.OriginalStart) {
		return StepNone
	}
	if occ.Status.Skipped() {
		return StepSkip
	}
	if now.Before(occ.Start) {
		// Deferred to a later window.
		if rec == nil {
			return StepDefer
		}
		return StepNone
	}
	if !now.Before(occ.End) {
		return StepMiss
	}
	return StepEvaluate
}

// SkipOf is the run state and cause of a skipped occurrence.
func SkipOf(status calendar.Status) (typesv1.RunState, string) {
	switch status {
	case calendar.StatusSkippedFrozen:
		return typesv1.RunState_RUN_STATE_SKIPPED_FROZEN, CauseFrozen
	case calendar.StatusSkippedPaused:
		return typesv1.RunState_RUN_STATE_SKIPPED, CausePaused
	default:
		return typesv1.RunState_RUN_STATE_SKIPPED, CauseRequested
	}
}

// MissCause is why an occurrence in the given record state missed its window.
func MissCause(rec *Occurrence) string {
	if rec == nil {
		return CauseDown
	}
	switch rec.State {
	case typesv1.RunState_RUN_STATE_WAITING_APPROVAL:
		return CauseApproval
	case typesv1.RunState_RUN_STATE_HELD:
		return CauseHeld
	}
	return CauseDown
}

// Gate is the wave gate's verdict on a run of wave N: the previous wave that ran in the cycle
// (the nearest lower wave whose occurrence of the same key started a run) must have completed
// and met its own success threshold. Waves whose occurrence did not run (skipped, missed) are
// passed over; wave 1, or a wave no lower wave ran before in the cycle, has no gate.
type Gate struct {
	Pass bool
	// GateWave and GateRunID name the run that gates (zero when none).
	GateWave  int32
	GateRunID string
	// Complete is set when the gating run has completed; SuccessPercent is then its
	// succeeded / total (100 for a run without instances).
	Complete         bool
	SuccessPercent   int32
	ThresholdPercent int32
	Reason           string
}

// PreviousWave is what the gate reads about one lower wave of the cycle.
type PreviousWave struct {
	Wave int32
	// Record is the wave's occurrence record of the cycle; nil when none.
	Record *Occurrence
	// Run is its run's read model when the run has started; nil otherwise.
	Run *Run
	// ThresholdPercent is the wave's success threshold (its policy, or the default).
	ThresholdPercent int32
}

// EvaluateGate decides the gate of a run from the lower waves of its cycle, nearest first.
func EvaluateGate(lower []PreviousWave) Gate {
	for _, p := range lower {
		rec := p.Record
		if rec == nil {
			continue
		}
		switch rec.State {
		case typesv1.RunState_RUN_STATE_SKIPPED_FROZEN, typesv1.RunState_RUN_STATE_SKIPPED,
			typesv1.RunState_RUN_STATE_MISSED:
			continue
		case typesv1.RunState_RUN_STATE_RUNNING:
		default:
			return Gate{GateWave: p.Wave, GateRunID: rec.RunID, ThresholdPercent: p.ThresholdPercent,
				Reason: fmt.Sprintf("wave %d's run %s of this cycle has not run yet (%s)", p.Wave, rec.RunID, RunStateName(rec.State))}
		}
		g := Gate{GateWave: p.Wave, GateRunID: rec.RunID, ThresholdPercent: p.ThresholdPercent}
		if p.Run == nil || !RunFinal(p.Run.State) {
			g.Reason = fmt.Sprintf("wave %d's run %s has not completed yet", p.Wave, rec.RunID)
			return g
		}
		g.Complete = true
		g.SuccessPercent = 100
		if p.Run.Total > 0 {
			g.SuccessPercent = int32(p.Run.Succeeded * 100 / p.Run.Total)
		}
		switch {
		case p.Run.State == typesv1.RunState_RUN_STATE_HALTED || p.Run.State == typesv1.RunState_RUN_STATE_CANCELLED:
			g.Reason = fmt.Sprintf("wave %d's run %s is %s (%d%% succeeded, threshold %d%%)",
				p.Wave, rec.RunID, RunStateName(p.Run.State), g.SuccessPercent, g.ThresholdPercent)
		case g.SuccessPercent < g.ThresholdPercent:
			g.Reason = fmt.Sprintf("wave %d's run %s succeeded on %d%% of its instances (%d of %d), below its threshold of %d%%",
				p.Wave, rec.RunID, g.SuccessPercent, p.Run.Succeeded, p.Run.Total, g.ThresholdPercent)
		default:
			g.Pass = true
		}
		return g
	}
	return Gate{Pass: true}
}
