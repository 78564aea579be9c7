package domain_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

func TestStartRunValidate(t *testing.T) {
	tests := []struct {
		name   string
		cmd    domain.StartRun
		fields []string
	}{
		{"a tenant and a wave in range are valid", domain.StartRun{Tenant: "acme", Wave: 1}, nil},
		{"the highest wave is valid", domain.StartRun{Tenant: "acme-2", Wave: 3, RequestID: "r1"}, nil},
		{"an empty tenant names the tenant", domain.StartRun{Wave: 1}, []string{"tenant"}},
		{"an upper-case tenant names the tenant", domain.StartRun{Tenant: "Acme", Wave: 1}, []string{"tenant"}},
		{"a tenant with a dot names the tenant", domain.StartRun{Tenant: "ac.me", Wave: 1}, []string{"tenant"}},
		{"wave zero names the wave", domain.StartRun{Tenant: "acme"}, []string{"wave"}},
		{"a wave above the maximum names the wave", domain.StartRun{Tenant: "acme", Wave: 4}, []string{"wave"}},
		{"a negative wave names the wave", domain.StartRun{Tenant: "acme", Wave: -1}, []string{"wave"}},
		{"a too long request id names request_id", domain.StartRun{Tenant: "acme", Wave: 1, RequestID: strings.Repeat("x", 129)}, []string{"request_id"}},
		{"every problem is reported", domain.StartRun{Tenant: "-x", Wave: 9}, []string{"tenant", "wave"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.Validate(3)
			if tt.fields == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, domain.ErrInvalidArgument)
			var verr *domain.ValidationError
			require.ErrorAs(t, err, &verr)
			var got []string
			for _, v := range verr.Violations {
				got = append(got, v.Field)
				require.Contains(t, err.Error(), v.Field+": ")
				require.NotEmpty(t, v.Rule)
			}
			require.Equal(t, tt.fields, got)
		})
	}
}

func TestRunRefValidate(t *testing.T) {
	require.NoError(t, domain.RunRef{Tenant: "acme", RunID: "run-1"}.Validate())
	err := domain.RunRef{Tenant: "acme"}.Validate()
	require.ErrorIs(t, err, domain.ErrInvalidArgument)
	require.ErrorContains(t, err, "run_id: is required")
	require.ErrorContains(t, domain.ValidateTenant("UPPER"), "tenant: must match")
}

func TestRunIDForRequest(t *testing.T) {
	a := domain.RunIDForRequest("acme", 1, "req-1")
	require.Equal(t, a, domain.RunIDForRequest("acme", 1, "req-1"), "the same request gives the same run")
	require.Regexp(t, `^run-[0-9a-f]{16}$`, a)
	for _, other := range []string{
		domain.RunIDForRequest("acme", 2, "req-1"),
		domain.RunIDForRequest("acme", 1, "req-2"),
		domain.RunIDForRequest("other", 1, "req-1"),
	} {
		require.NotEqual(t, a, other)
	}
}

func TestNewRunID(t *testing.T) {
	now := time.Date(2026, 11, 23, 15, 48, 0, 0, time.FixedZone("CET", 3600))
	id, err := domain.NewRunID(now, bytes.NewReader([]byte{0xa1, 0xb2, 0xc3}))
	require.NoError(t, err)
	require.Equal(t, "run-20261123T144800Z-a1b2c3", id)

	later, err := domain.NewRunID(now.Add(time.Second), bytes.NewReader([]byte{0, 0, 0}))
	require.NoError(t, err)
	require.Less(t, id, later, "ids sort by start time")
	require.Regexp(t, `^run-\d{8}T\d{6}Z-[0-9a-f]{6}$`, later)

	_, err = domain.NewRunID(now, bytes.NewReader(nil))
	require.Error(t, err)
}

func TestResolveBaseline(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := domain.Baseline{ID: "al2023-v1", OSFamily: "amazon-linux-2023", Version: 1, PublishedAt: t0}
	mid := domain.Baseline{ID: "al2023-v2", OSFamily: "amazon-linux-2023", Version: 2, PublishedAt: t0.Add(time.Hour)}
	// Published earlier than v2 (a clock that went back): the version decides, not the time.
	v3 := domain.Baseline{ID: "al2023-v3", OSFamily: "amazon-linux-2023", Version: 3, PublishedAt: t0}
	win := domain.Baseline{ID: "ws2022-v1", OSFamily: "windows-server-2022", Version: 1, PublishedAt: t0}
	tests := []struct {
		name      string
		id        string
		published []domain.Baseline
		want      string
		err       string
	}{
		{"an empty id picks the highest version", "", []domain.Baseline{mid, old}, "al2023-v2", ""},
		{"the version decides, not the publication time", "", []domain.Baseline{v3, old, mid}, "al2023-v3", ""},
		{"a named published baseline is pinned", "al2023-v1", []domain.Baseline{old, mid}, "al2023-v1", ""},
		{"an unknown id is refused", "nope", []domain.Baseline{old}, "", "baseline nope is not published"},
		{"nothing published is refused", "", nil, "", "no baseline is published"},
		{"an empty id with several OS families is refused", "", []domain.Baseline{old, win}, "", "several OS families are published"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := domain.ResolveBaseline(tt.id, tt.published)
			if tt.err != "" {
				require.ErrorIs(t, err, domain.ErrFailedPrecondition)
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, b.ID)
		})
	}
}

func TestRunComplete(t *testing.T) {
	running := typesv1.RunState_RUN_STATE_RUNNING
	d := func(eligible int) domain.RunDetail {
		return domain.RunDetail{Eligible: eligible, Limits: domain.Limits{ErrorBudget: eligible}}
	}
	tests := []struct {
		name     string
		run      domain.Run
		complete bool
		want     domain.Completion
	}{
		{"a run with jobs left is not complete", domain.Run{State: running, Total: 10, Detail: d(10), Requested: 10, Succeeded: 9}, false, domain.Completion{}},
		{"a run with jobs not released is not complete", domain.Run{State: running, Total: 10, Detail: d(10), Requested: 5, Succeeded: 5}, false, domain.Completion{}},
		{"every job succeeded", domain.Run{State: running, Total: 3, Detail: d(3), Requested: 3, Succeeded: 3, Snapshotted: 3},
			true, domain.Completion{State: typesv1.RunState_RUN_STATE_COMPLETED, Total: 3, Succeeded: 3}},
		{"install and snapshot failures complete with errors", domain.Run{State: running, Total: 4, Detail: d(4), Requested: 4, Succeeded: 2, Failed: 1, SnapshotFailed: 1},
			true, domain.Completion{State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: 4, Succeeded: 2, Failed: 2, SnapshotFailed: 1}},
		{"a run without instances is complete at once", domain.Run{State: running},
			true, domain.Completion{State: typesv1.RunState_RUN_STATE_COMPLETED}},
		{"stopped and agentless instances are reported, not failed", domain.Run{State: running, Total: 3, Detail: domain.RunDetail{Eligible: 1, Missed: 1, NoAgent: 1}, Requested: 1, Succeeded: 1},
			true, domain.Completion{State: typesv1.RunState_RUN_STATE_COMPLETED, Total: 3, Succeeded: 1, Skipped: 1, Missed: 1}},
		{"a stopped dispatch skips the rest with errors", domain.Run{State: running, Total: 5, Detail: d(5), Stopped: true, Requested: 2, Succeeded: 2},
			true, domain.Completion{State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: 5, Succeeded: 2, Skipped: 3}},
		{"a halted run completes halted once its jobs in flight end", domain.Run{State: typesv1.RunState_RUN_STATE_HALTED, Total: 5, Detail: d(5), Requested: 3, Succeeded: 1, Failed: 2},
			true, domain.Completion{State: typesv1.RunState_RUN_STATE_HALTED, Total: 5, Succeeded: 1, Failed: 2, Skipped: 2}},
		{"a cancelled run waits for its jobs in flight", domain.Run{State: typesv1.RunState_RUN_STATE_CANCELLED, Total: 5, Detail: d(5), Requested: 3, Succeeded: 1}, false, domain.Completion{}},
		{"a completed run is never completed again", domain.Run{State: typesv1.RunState_RUN_STATE_COMPLETED, Total: 1, Detail: d(1), Requested: 1, Succeeded: 1}, false, domain.Completion{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := tt.run.Complete()
			require.Equal(t, tt.complete, ok)
			require.Equal(t, tt.want, c)
		})
	}
}

func TestOutcome(t *testing.T) {
	require.False(t, domain.OutcomeSnapshotted.Terminal())
	for _, o := range []domain.Outcome{domain.OutcomeSnapshotFailed, domain.OutcomeSucceeded, domain.OutcomeFailed} {
		require.True(t, o.Terminal(), o.String())
	}
	require.Equal(t, "snapshot_failed", domain.OutcomeSnapshotFailed.String())
}
