package domain_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

func TestRunTransitions(t *testing.T) {
	tests := []struct {
		name     string
		from, to typesv1.RunState
		legal    bool
	}{
		{"a new run may start running", domain.RunNew, typesv1.RunState_RUN_STATE_RUNNING, true},
		{"a new run may be recorded missed", domain.RunNew, typesv1.RunState_RUN_STATE_MISSED, true},
		{"a scheduled run may wait for approval", typesv1.RunState_RUN_STATE_SCHEDULED, typesv1.RunState_RUN_STATE_WAITING_APPROVAL, true},
		{"a held run may be released", typesv1.RunState_RUN_STATE_HELD, typesv1.RunState_RUN_STATE_RUNNING, true},
		{"a running run may halt", typesv1.RunState_RUN_STATE_RUNNING, typesv1.RunState_RUN_STATE_HALTED, true},
		{"a running run may be cancelled", typesv1.RunState_RUN_STATE_RUNNING, typesv1.RunState_RUN_STATE_CANCELLED, true},
		{"a running run may complete with errors", typesv1.RunState_RUN_STATE_RUNNING, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, true},
		{"a completed run cannot be cancelled", typesv1.RunState_RUN_STATE_COMPLETED, typesv1.RunState_RUN_STATE_CANCELLED, false},
		{"a halted run cannot run again", typesv1.RunState_RUN_STATE_HALTED, typesv1.RunState_RUN_STATE_RUNNING, false},
		{"a running run cannot be frozen", typesv1.RunState_RUN_STATE_RUNNING, typesv1.RunState_RUN_STATE_SKIPPED_FROZEN, false},
		{"a new run cannot be completed", domain.RunNew, typesv1.RunState_RUN_STATE_COMPLETED, false},
		{"a run does not move to its own state", typesv1.RunState_RUN_STATE_RUNNING, typesv1.RunState_RUN_STATE_RUNNING, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.legal, domain.CanRun(tt.from, tt.to))
			err := domain.CheckRun("run-1", tt.from, tt.to)
			if tt.legal {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, domain.ErrFailedPrecondition)
			require.ErrorContains(t, err, "run run-1 is "+domain.RunStateName(tt.from))
		})
	}
}

func TestRunTransitionErrorNamesTheStateAndWhereFrom(t *testing.T) {
	err := domain.CheckRun("run-7", typesv1.RunState_RUN_STATE_COMPLETED, typesv1.RunState_RUN_STATE_CANCELLED)
	require.EqualError(t, err, "failed precondition: run run-7 is COMPLETED: cannot go to CANCELLED (only from HELD, RUNNING, SCHEDULED, WAITING_APPROVAL)")
	var terr *domain.TransitionError
	require.ErrorAs(t, err, &terr)
	require.Equal(t, "COMPLETED", terr.From)
}

func TestFinalRunStates(t *testing.T) {
	final := map[typesv1.RunState]bool{
		typesv1.RunState_RUN_STATE_HALTED: true, typesv1.RunState_RUN_STATE_COMPLETED: true,
		typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS: true, typesv1.RunState_RUN_STATE_CANCELLED: true,
		typesv1.RunState_RUN_STATE_SKIPPED_FROZEN: true, typesv1.RunState_RUN_STATE_MISSED: true,
		typesv1.RunState_RUN_STATE_SKIPPED: true,
	}
	require.Len(t, domain.RunStates(), len(typesv1.RunState_name)-1, "every run state is listed")
	for _, s := range domain.RunStates() {
		require.Equal(t, final[s], domain.RunFinal(s), domain.RunStateName(s))
		require.Equal(t, s == typesv1.RunState_RUN_STATE_RUNNING, domain.RunDispatching(s))
	}
	require.False(t, domain.RunFinal(domain.RunNew))
}

func TestJobTransitions(t *testing.T) {
	tests := []struct {
		name     string
		from, to typesv1.JobState
		legal    bool
	}{
		{"a new job is pending", domain.JobNew, typesv1.JobState_JOB_STATE_PENDING, true},
		{"a stopped instance's job is missed from the start", domain.JobNew, typesv1.JobState_JOB_STATE_MISSED, true},
		{"a released job is snapshotting", typesv1.JobState_JOB_STATE_PENDING, typesv1.JobState_JOB_STATE_SNAPSHOTTING, true},
		{"a pending job may be skipped", typesv1.JobState_JOB_STATE_PENDING, typesv1.JobState_JOB_STATE_SKIPPED, true},
		{"a snapshotted job installs", typesv1.JobState_JOB_STATE_SNAPSHOTTING, typesv1.JobState_JOB_STATE_INSTALLING, true},
		{"an installation may time out", typesv1.JobState_JOB_STATE_INSTALLING, typesv1.JobState_JOB_STATE_TIMED_OUT, true},
		{"a failed job may be restored", typesv1.JobState_JOB_STATE_FAILED, typesv1.JobState_JOB_STATE_RESTORING, true},
		{"a failed restore may be tried again", typesv1.JobState_JOB_STATE_RESTORE_FAILED, typesv1.JobState_JOB_STATE_RESTORING, true},
		{"a job in flight is not skipped", typesv1.JobState_JOB_STATE_SNAPSHOTTING, typesv1.JobState_JOB_STATE_SKIPPED, false},
		{"no install without a snapshot", typesv1.JobState_JOB_STATE_PENDING, typesv1.JobState_JOB_STATE_INSTALLING, false},
		{"a job without a snapshot is not restored", typesv1.JobState_JOB_STATE_SNAPSHOT_FAILED, typesv1.JobState_JOB_STATE_RESTORING, false},
		{"a missed job stays missed", typesv1.JobState_JOB_STATE_MISSED, typesv1.JobState_JOB_STATE_PENDING, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.legal, domain.CanJob(tt.from, tt.to))
			err := domain.CheckJob("run-1/i-1", tt.from, tt.to)
			if tt.legal {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, domain.ErrFailedPrecondition)
			require.ErrorContains(t, err, "job run-1/i-1 is "+domain.JobStateName(tt.from))
		})
	}
}

func TestJobStateClasses(t *testing.T) {
	require.Len(t, domain.JobStates(), len(typesv1.JobState_name)-1, "every job state is listed")
	for _, s := range domain.JobStates() {
		name := domain.JobStateName(s)
		require.False(t, domain.JobEnded(s) && domain.JobInFlight(s), name)
		if domain.JobError(s) || domain.JobSucceeded(s) {
			require.True(t, domain.JobEnded(s), name)
		}
	}
	require.True(t, domain.JobInFlight(typesv1.JobState_JOB_STATE_SNAPSHOTTING))
	require.False(t, domain.JobEnded(typesv1.JobState_JOB_STATE_PENDING))
	require.True(t, domain.JobEnded(typesv1.JobState_JOB_STATE_SKIPPED))
	require.False(t, domain.JobError(typesv1.JobState_JOB_STATE_MISSED), "a stopped instance does not spend the error budget")
}

func TestAdvanceJobNeverMovesBack(t *testing.T) {
	s := domain.AdvanceJob(domain.JobNew, typesv1.JobState_JOB_STATE_INSTALLING)
	require.Equal(t, typesv1.JobState_JOB_STATE_INSTALLING, s)
	s = domain.AdvanceJob(s, typesv1.JobState_JOB_STATE_SNAPSHOTTING)
	require.Equal(t, typesv1.JobState_JOB_STATE_INSTALLING, s, "a late snapshot event does not move the job back")
	s = domain.AdvanceJob(s, typesv1.JobState_JOB_STATE_FAILED)
	require.Equal(t, typesv1.JobState_JOB_STATE_FAILED, s)
	require.Equal(t, typesv1.JobState_JOB_STATE_FAILED, domain.AdvanceJob(s, typesv1.JobState_JOB_STATE_SUCCEEDED), "the first outcome stays")
}

func TestPauseResumeRerun(t *testing.T) {
	running := typesv1.RunState_RUN_STATE_RUNNING
	require.NoError(t, domain.CheckPause("run-1", running, false))
	require.ErrorContains(t, domain.CheckPause("run-1", running, true), "run run-1 is RUNNING and paused")
	require.ErrorContains(t, domain.CheckPause("run-1", typesv1.RunState_RUN_STATE_COMPLETED, false), "run run-1 is COMPLETED: cannot go to paused")
	require.NoError(t, domain.CheckResume("run-1", running, true))
	require.ErrorIs(t, domain.CheckResume("run-1", running, false), domain.ErrFailedPrecondition)
	require.NoError(t, domain.CheckRerun("run-1", typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS))
	require.NoError(t, domain.CheckRerun("run-1", typesv1.RunState_RUN_STATE_HALTED))
	require.ErrorContains(t, domain.CheckRerun("run-1", running), "run run-1 is RUNNING: cannot go to re-run")
}
