package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"

	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

var t0 = time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)

const week = 7 * 24 * time.Hour

func TestRetentionKeepsASnapshotNDaysAfterItsJobSucceeded(t *testing.T) {
	r := domain.Retention{Keep: week}
	s := domain.Snapshot{State: domain.SnapshotCompleted, StartedAt: t0}
	s = r.OnOutcome(s, domain.OutcomeSucceeded, t0.Add(time.Hour))
	require.Equal(t, t0.Add(time.Hour+week), s.DueAt)
	require.False(t, s.Due(t0.Add(week)), "kept for a week")
	require.True(t, s.Due(t0.Add(time.Hour+week)), "due a week after the success")
}

func TestRetentionHoldsAFailedOrRestoredInstanceUntilALaterRunSucceeds(t *testing.T) {
	tests := []struct {
		name    string
		outcome domain.JobOutcome
	}{
		{"a failed instance keeps its snapshot", domain.OutcomeFailed},
		{"a restored instance keeps its snapshot", domain.OutcomeRestored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := domain.Retention{Keep: week}
			s := r.OnOutcome(domain.Snapshot{State: domain.SnapshotCompleted, StartedAt: t0}, tt.outcome, t0)
			require.True(t, s.DueAt.IsZero())
			require.False(t, s.Due(t0.Add(100*week)), "kept however long")

			later := t0.Add(30 * 24 * time.Hour)
			_, changed := r.OnLaterSuccess(s, t0.Add(-time.Hour), later)
			require.False(t, changed, "a run that started earlier releases nothing")

			s, changed = r.OnLaterSuccess(s, t0.Add(time.Hour), later)
			require.True(t, changed)
			require.Equal(t, later.Add(week), s.DueAt, "N days after the later success")
			require.True(t, s.Due(later.Add(week)))
		})
	}
}

func TestRetentionNeverLetsASuccessReleaseAHeldSnapshotOfItsOwn(t *testing.T) {
	r := domain.Retention{Keep: week}
	s := r.OnOutcome(domain.Snapshot{State: domain.SnapshotCompleted, StartedAt: t0}, domain.OutcomeRestored, t0)
	s = r.OnOutcome(s, domain.OutcomeSucceeded, t0.Add(time.Hour))
	require.Equal(t, domain.OutcomeRestored, s.Outcome)
	require.True(t, s.DueAt.IsZero())
}

func TestRetentionDeletesAFailedSnapshotNDaysAfterItFailed(t *testing.T) {
	r := domain.Retention{Keep: week}
	s := r.OnSnapshotFailed(domain.Snapshot{State: domain.SnapshotStarted, StartedAt: t0}, "error state", t0)
	require.Equal(t, domain.SnapshotFailed, s.State)
	require.True(t, s.Due(t0.Add(week)))
	deleted := s
	deleted.State = domain.SnapshotDeleted
	require.False(t, deleted.Due(t0.Add(week)), "a deleted set is never deleted again")
}

func TestRestoreCommandValidationNamesEachField(t *testing.T) {
	ok := domain.RestoreCommand{Tenant: "acme", InstanceID: "i-1", RunID: "run-1", Reason: "broken", Actor: "alice"}
	require.NoError(t, ok.Validate())
	tests := []struct {
		name   string
		mutate func(*domain.RestoreCommand)
		field  string
		rule   string
	}{
		{"a tenant must be a tenant id", func(c *domain.RestoreCommand) { c.Tenant = "Acme!" }, "tenant", "lower-case"},
		{"an instance is required", func(c *domain.RestoreCommand) { c.InstanceID = "" }, "instance", "is required"},
		{"a run is required", func(c *domain.RestoreCommand) { c.RunID = "" }, "run_id", "is required"},
		{"a run id has no slash", func(c *domain.RestoreCommand) { c.RunID = "a/b" }, "run_id", "must not contain"},
		{"a reason is required", func(c *domain.RestoreCommand) { c.Reason = "" }, "reason", "is required"},
		{"a reason is short", func(c *domain.RestoreCommand) { c.Reason = strings.Repeat("x", 513) }, "reason", "at most 512"},
		{"a request id is short", func(c *domain.RestoreCommand) { c.RequestID = strings.Repeat("x", 129) }, "request_id", "at most 128"},
		{"an actor is required", func(c *domain.RestoreCommand) { c.Actor = "" }, "actor", "authenticated caller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			var verr *apierr.ValidationError
			require.ErrorAs(t, err, &verr)
			require.Len(t, verr.Violations, 1)
			require.Equal(t, tt.field, verr.Violations[0].Field)
			require.Contains(t, verr.Violations[0].Rule, tt.rule)
		})
	}
}

func TestCheckRestorableRefusesWithoutACompletedSnapshot(t *testing.T) {
	tests := []struct {
		name  string
		snap  domain.Snapshot
		found bool
		is    error
		msg   string
	}{
		{"no snapshot of the run is not found", domain.Snapshot{}, false, apierr.ErrNotFound, "no pre-patch snapshot of run run-1 for instance i-1"},
		{"a deleted snapshot is a failed precondition", domain.Snapshot{SetID: "s", State: domain.SnapshotDeleted}, true, apierr.ErrFailedPrecondition, "deleted by retention"},
		{"a failed snapshot is a failed precondition", domain.Snapshot{State: domain.SnapshotFailed, Error: "boom"}, true, apierr.ErrFailedPrecondition, "failed: boom"},
		{"a pending snapshot is a failed precondition", domain.Snapshot{SetID: "s", State: domain.SnapshotStarted}, true, apierr.ErrFailedPrecondition, "not completed yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := domain.CheckRestorable(tt.snap, tt.found, "acme", "run-1", "i-1")
			require.ErrorIs(t, err, tt.is)
			require.ErrorContains(t, err, tt.msg)
		})
	}
	require.NoError(t, domain.CheckRestorable(domain.Snapshot{State: domain.SnapshotCompleted}, true, "acme", "run-1", "i-1"))
}

func TestRestoreIDs(t *testing.T) {
	first, again := domain.RestoreIDForRequest("acme", "i-1", "r-1"), domain.RestoreIDForRequest("acme", "i-1", "r-1")
	require.Equal(t, first, again, "a request id names one restore")
	require.NotEqual(t, domain.RestoreIDForRequest("acme", "i-1", "r-1"), domain.RestoreIDForRequest("globex", "i-1", "r-1"), "per tenant")
	require.NotEqual(t, domain.RestoreIDForAutoRollback("acme", "run-1", "i-1"), domain.RestoreIDForAutoRollback("acme", "run-2", "i-1"), "one auto-rollback per run")
	a, err := domain.NewRestoreID(nil)
	require.NoError(t, err)
	require.Regexp(t, `^rst-[0-9a-f]{20}$`, a)
}

func TestRestoreAdvancesOnlyForward(t *testing.T) {
	r := domain.Restore{State: domain.RestoreRequested}
	r, moved := r.Advance(domain.RestoreSucceeded)
	require.True(t, moved)
	_, moved = r.Advance(domain.RestoreInProgress)
	require.False(t, moved, "a late started event does not reopen a finished restore")
	_, moved = r.Advance(domain.RestoreFailed)
	require.False(t, moved, "a terminal restore stays as it ended")
}
