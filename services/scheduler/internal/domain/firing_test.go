package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/calendar"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

func TestOccurrenceRunIDIsDeterministic(t *testing.T) {
	id := domain.OccurrenceRunID("acme", 1, "2026-12")
	require.Equal(t, id, domain.OccurrenceRunID("acme", 1, "2026-12"))
	require.Regexp(t, `^run-[0-9a-f]{16}$`, id)
	require.NotEqual(t, id, domain.OccurrenceRunID("acme", 2, "2026-12"))
	require.NotEqual(t, id, domain.OccurrenceRunID("acme", 1, "2027-01"))
	require.NotEqual(t, id, domain.OccurrenceRunID("globex", 1, "2026-12"))
	require.NotEqual(t, id, domain.RunIDForRequest("acme", 1, "2026-12"), "not a request's id")
}

func TestDecide(t *testing.T) {
	start := time.Date(2026, 12, 9, 1, 0, 0, 0, time.UTC)
	end := start.Add(4 * time.Hour)
	occ := calendar.Occurrence{Key: "2026-12", Start: start, End: end, OriginalStart: start, OriginalEnd: end, Status: calendar.StatusScheduled}
	deferred := occ
	deferred.Status, deferred.Start, deferred.End = calendar.StatusDeferred, start.Add(24*time.Hour), end.Add(24*time.Hour)
	frozen := occ
	frozen.Status = calendar.StatusSkippedFrozen
	rec := func(s typesv1.RunState, confirmed bool) *domain.Occurrence {
		return &domain.Occurrence{State: s, Confirmed: confirmed}
	}
	tests := []struct {
		name string
		now  time.Time
		occ  calendar.Occurrence
		rec  *domain.Occurrence
		want domain.Step
	}{
		{"before the window", start.Add(-time.Minute), occ, nil, domain.StepNone},
		{"at the start", start, occ, nil, domain.StepEvaluate},
		{"late, window still open", end.Add(-time.Minute), occ, nil, domain.StepEvaluate},
		{"at the end: missed", end, occ, nil, domain.StepMiss},
		{"frozen, before its start", start.Add(-time.Minute), frozen, nil, domain.StepNone},
		{"frozen, at its start", start, frozen, nil, domain.StepSkip},
		{"deferred, at the original start", start, deferred, nil, domain.StepDefer},
		{"deferred, recorded, waiting", start.Add(time.Hour), deferred, rec(typesv1.RunState_RUN_STATE_SCHEDULED, false), domain.StepNone},
		{"deferred, its window opened", deferred.Start, deferred, rec(typesv1.RunState_RUN_STATE_SCHEDULED, false), domain.StepEvaluate},
		{"held, window open", start.Add(time.Hour), occ, rec(typesv1.RunState_RUN_STATE_HELD, false), domain.StepEvaluate},
		{"held, window closed", end, occ, rec(typesv1.RunState_RUN_STATE_HELD, false), domain.StepMiss},
		{"waiting, paused meanwhile", start.Add(time.Hour), frozen, rec(typesv1.RunState_RUN_STATE_WAITING_APPROVAL, false), domain.StepSkip},
		{"running, not confirmed", start.Add(time.Hour), occ, rec(typesv1.RunState_RUN_STATE_RUNNING, false), domain.StepRecover},
		{"running, confirmed", start.Add(time.Hour), occ, rec(typesv1.RunState_RUN_STATE_RUNNING, true), domain.StepNone},
		{"missed is final", end.Add(time.Hour), occ, rec(typesv1.RunState_RUN_STATE_MISSED, false), domain.StepNone},
		{"skipped is final", start, occ, rec(typesv1.RunState_RUN_STATE_SKIPPED, false), domain.StepNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want.String(), domain.Decide(tt.now, tt.occ, tt.rec).String())
		})
	}
}

func TestSkipAndMissCauses(t *testing.T) {
	s, c := domain.SkipOf(calendar.StatusSkippedFrozen)
	require.Equal(t, typesv1.RunState_RUN_STATE_SKIPPED_FROZEN, s)
	require.Equal(t, domain.CauseFrozen, c)
	s, c = domain.SkipOf(calendar.StatusSkippedPaused)
	require.Equal(t, typesv1.RunState_RUN_STATE_SKIPPED, s)
	require.Equal(t, domain.CausePaused, c)
	_, c = domain.SkipOf(calendar.StatusSkippedByRequest)
	require.Equal(t, domain.CauseRequested, c)
	require.Equal(t, domain.CauseDown, domain.MissCause(nil))
	require.Equal(t, domain.CauseApproval, domain.MissCause(&domain.Occurrence{State: typesv1.RunState_RUN_STATE_WAITING_APPROVAL}))
	require.Equal(t, domain.CauseHeld, domain.MissCause(&domain.Occurrence{State: typesv1.RunState_RUN_STATE_HELD}))
}

func TestEvaluateGate(t *testing.T) {
	ran := func(wave int32, state typesv1.RunState, succeeded, total int) domain.PreviousWave {
		return domain.PreviousWave{Wave: wave, ThresholdPercent: 90,
			Record: &domain.Occurrence{RunID: "run-w", State: typesv1.RunState_RUN_STATE_RUNNING},
			Run:    &domain.Run{State: state, Succeeded: succeeded, Total: total}}
	}
	skipped := domain.PreviousWave{Wave: 2, Record: &domain.Occurrence{State: typesv1.RunState_RUN_STATE_SKIPPED_FROZEN}}
	tests := []struct {
		name     string
		lower    []domain.PreviousWave
		pass     bool
		complete bool
		pct      int32
		reason   string
	}{
		{"wave 1 has no gate", nil, true, false, 0, ""},
		{"no lower wave ran in the cycle", []domain.PreviousWave{{Wave: 1}}, true, false, 0, ""},
		{"met the threshold", []domain.PreviousWave{ran(1, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, 9, 10)}, true, true, 90, ""},
		{"below the threshold", []domain.PreviousWave{ran(1, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, 8, 10)}, false, true, 80, "below its threshold of 90%"},
		{"halted", []domain.PreviousWave{ran(1, typesv1.RunState_RUN_STATE_HALTED, 10, 10)}, false, true, 100, "is HALTED"},
		{"still running", []domain.PreviousWave{ran(1, typesv1.RunState_RUN_STATE_RUNNING, 1, 10)}, false, false, 0, "has not completed yet"},
		{"no instances", []domain.PreviousWave{ran(1, typesv1.RunState_RUN_STATE_COMPLETED, 0, 0)}, true, true, 100, ""},
		{"a skipped wave is passed over", []domain.PreviousWave{skipped, ran(1, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, 5, 10)}, false, true, 50, "wave 1"},
		{"a held lower wave holds", []domain.PreviousWave{{Wave: 1, Record: &domain.Occurrence{RunID: "run-1", State: typesv1.RunState_RUN_STATE_HELD}}}, false, false, 0, "has not run yet (HELD)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := domain.EvaluateGate(tt.lower)
			require.Equal(t, tt.pass, g.Pass)
			require.Equal(t, tt.complete, g.Complete)
			require.Equal(t, tt.pct, g.SuccessPercent)
			require.Contains(t, g.Reason, tt.reason)
		})
	}
}

func TestChoosePins(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	pins, err := domain.ChoosePins([]domain.Baseline{
		{ID: "al-1", OSFamily: "al2023", Version: 1, PublishedAt: at, PatchIDs: []string{"A"}},
		{ID: "al-2", OSFamily: "al2023", Version: 2, PublishedAt: at, PatchIDs: []string{"A", "B"}},
		{ID: "al-cve", OSFamily: "al2023", Version: 3, PublishedAt: at, Emergency: true},
		{ID: "win-1", OSFamily: "windows-2022", Version: 1, PublishedAt: at},
	})
	require.NoError(t, err)
	require.Equal(t, []domain.Pin{
		{OSFamily: "al2023", BaselineID: "al-2", Version: 2, PatchIDs: []string{"A", "B"}},
		{OSFamily: "windows-2022", BaselineID: "win-1", Version: 1},
	}, pins, "the newest non-emergency version of each family")
	_, err = domain.ChoosePins(nil)
	require.ErrorIs(t, err, domain.ErrFailedPrecondition)
	approved := map[string]bool{"al-2": true}
	require.Equal(t, []string{"win-1"}, domain.Unapproved(pins, func(id string) bool { return approved[id] }))
}
