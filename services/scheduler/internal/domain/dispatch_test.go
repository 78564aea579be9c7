package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

func TestResolveLimits(t *testing.T) {
	end := time.Date(2026, 12, 9, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		policy   *typesv1.RolloutPolicy
		eligible int
		window   *domain.Window
		want     domain.Limits
	}{
		{"the defaults: 10% in flight and a 5% budget, rounded up", nil, 95, nil,
			domain.Limits{MaxInFlight: 10, ErrorBudget: 5}},
		{"a count", &typesv1.RolloutPolicy{MaxConcurrency: design.Count(1000), ErrorBudget: design.Count(0)}, 100000, nil,
			domain.Limits{MaxInFlight: 1000, ErrorBudget: 0}},
		{"a limit that covers the wave is no limit", &typesv1.RolloutPolicy{MaxConcurrency: design.Count(50)}, 20, nil,
			domain.Limits{ErrorBudget: 1}},
		{"at least one in flight", &typesv1.RolloutPolicy{MaxConcurrency: design.Percent(1)}, 3, nil,
			domain.Limits{MaxInFlight: 1, ErrorBudget: 1}},
		{"the cutoff before the window end", &typesv1.RolloutPolicy{Cutoff: "30m"}, 10, &domain.Window{End: end},
			domain.Limits{MaxInFlight: 1, ErrorBudget: 1, StopAt: end.Add(-30 * time.Minute), StopReason: "cutoff 30m0s before the window end", WindowEnd: end}},
		{"the window end without a cutoff", nil, 10, &domain.Window{End: end},
			domain.Limits{MaxInFlight: 1, ErrorBudget: 1, StopAt: end, StopReason: "window end", WindowEnd: end}},
		{"a freeze that starts before the cutoff stops dispatch earlier", &typesv1.RolloutPolicy{Cutoff: "30m"}, 10,
			&domain.Window{End: end, FreezeStart: end.Add(-2 * time.Hour), FreezeNote: "f1"},
			domain.Limits{MaxInFlight: 1, ErrorBudget: 1, StopAt: end.Add(-2 * time.Hour), StopReason: "freeze f1", WindowEnd: end}},
		{"a freeze after the cutoff changes nothing", &typesv1.RolloutPolicy{Cutoff: "1h"}, 10,
			&domain.Window{End: end, FreezeStart: end.Add(-30 * time.Minute), FreezeNote: "f1"},
			domain.Limits{MaxInFlight: 1, ErrorBudget: 1, StopAt: end.Add(-time.Hour), StopReason: "cutoff 1h0m0s before the window end", WindowEnd: end}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, domain.ResolveLimits(design.NormalizePolicy(tt.policy), tt.eligible, tt.window))
		})
	}
}

func TestLedgerTarget(t *testing.T) {
	now := time.Date(2026, 12, 9, 3, 0, 0, 0, time.UTC)
	running := typesv1.RunState_RUN_STATE_RUNNING
	base := domain.Ledger{State: running, Eligible: 10, Limits: domain.Limits{MaxInFlight: 3, ErrorBudget: 2}}
	with := func(f func(*domain.Ledger)) domain.Ledger { l := base; f(&l); return l }
	tests := []struct {
		name string
		l    domain.Ledger
		want int
	}{
		{"the limit at first", base, 3},
		{"each ended job frees a slot", with(func(l *domain.Ledger) { l.Requested, l.Ended = 3, 2 }), 5},
		{"never past the membership", with(func(l *domain.Ledger) { l.Requested, l.Ended = 10, 9 }), 10},
		{"no limit releases everything", with(func(l *domain.Ledger) { l.Limits.MaxInFlight = 0 }), 10},
		{"a paused run releases nothing", with(func(l *domain.Ledger) { l.Paused = true }), 0},
		{"a stopped run releases nothing", with(func(l *domain.Ledger) { l.Stopped = true }), 0},
		{"past the stop instant nothing is released", with(func(l *domain.Ledger) { l.Limits.StopAt = now }), 0},
		{"over the budget nothing is released", with(func(l *domain.Ledger) { l.Requested, l.Ended, l.Errors = 3, 3, 3 }), 0},
		{"at the budget dispatch goes on", with(func(l *domain.Ledger) { l.Requested, l.Ended, l.Errors = 3, 2, 2 }), 5},
		{"a halted run releases nothing", with(func(l *domain.Ledger) { l.State = typesv1.RunState_RUN_STATE_HALTED }), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.l.Target(now))
		})
	}
}

func TestResolvePins(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	al1 := domain.Baseline{ID: "al-1", OSFamily: "amazon-linux-2023", Version: 1, PatchIDs: []string{"a"}, PublishedAt: t0}
	al2 := domain.Baseline{ID: "al-2", OSFamily: "amazon-linux-2023", Version: 2, PatchIDs: []string{"a", "b"}, PublishedAt: t0}
	win := domain.Baseline{ID: "ws-1", OSFamily: "windows-server-2022", Version: 1, PatchIDs: []string{"KB1"}, PublishedAt: t0}

	pins, err := domain.ResolvePins("", []domain.Baseline{al1, win, al2})
	require.NoError(t, err)
	require.Equal(t, []domain.Pin{
		{OSFamily: "amazon-linux-2023", BaselineID: "al-2", Version: 2, PatchIDs: []string{"a", "b"}},
		{OSFamily: "windows-server-2022", BaselineID: "ws-1", Version: 1, PatchIDs: []string{"KB1"}},
	}, pins, "the newest of every OS family")

	pins, err = domain.ResolvePins("al-1", []domain.Baseline{al1, win, al2})
	require.NoError(t, err)
	require.Equal(t, "al-1", pins[0].BaselineID, "a named baseline pins its family")
	require.Equal(t, "ws-1", pins[1].BaselineID)

	_, err = domain.ResolvePins("nope", []domain.Baseline{al1})
	require.ErrorIs(t, err, domain.ErrFailedPrecondition)
	require.ErrorContains(t, err, "baseline nope is not published")
	_, err = domain.ResolvePins("", nil)
	require.ErrorContains(t, err, "no baseline is published")
}

func TestMemberJobState(t *testing.T) {
	require.Equal(t, typesv1.JobState_JOB_STATE_MISSED, domain.MemberJobState(typesv1.MemberStatus_MEMBER_STATUS_STOPPED, false))
	require.Equal(t, typesv1.JobState_JOB_STATE_SKIPPED, domain.MemberJobState(typesv1.MemberStatus_MEMBER_STATUS_NO_AGENT, false))
	require.Equal(t, typesv1.JobState_JOB_STATE_SKIPPED, domain.MemberJobState(typesv1.MemberStatus_MEMBER_STATUS_NO_BASELINE, false))
	require.Equal(t, typesv1.JobState_JOB_STATE_PENDING, domain.MemberJobState(typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE, false))
	require.Equal(t, typesv1.JobState_JOB_STATE_SKIPPED, domain.MemberJobState(typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE, true),
		"an eligible job never released when dispatch ended is skipped")
}
