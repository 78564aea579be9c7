package domain_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

func TestNotifySummarizesEachOutcome(t *testing.T) {
	tests := []struct {
		name string
		data proto.Message
		want string
	}{
		{
			name: "an install that left a reboot pending says so",
			data: &eventsv1.InstallSucceeded{RunId: "run-x", Wave: 2, InstanceId: "i-1", RebootPending: true,
				Results: []*typesv1.PatchResult{{PatchId: "kernel"}}},
			want: "acme wave 2 run run-x: i-1 install succeeded (1 patch), reboot pending",
		},
		{
			name: "a failed install carries its reason on one line",
			data: &eventsv1.InstallFailed{RunId: "run-x", Wave: 1, InstanceId: "i-1", Reason: "boom\n  at line 2"},
			want: "acme wave 1 run run-x: i-1 install failed: boom at line 2",
		},
		{
			name: "a failure without reason says so",
			data: &eventsv1.SnapshotFailed{RunId: "run-x", Wave: 1, InstanceId: "i-1"},
			want: "acme wave 1 run run-x: i-1 snapshot failed: no reason given",
		},
		{
			name: "a clean run",
			data: &eventsv1.RunCompleted{RunId: "run-x", Wave: 3, State: typesv1.RunState_RUN_STATE_COMPLETED, Total: 10, Succeeded: 10},
			want: "acme wave 3 run run-x completed: 10 succeeded, 0 failed",
		},
		{
			name: "a halted run counts the jobs it never did",
			data: &eventsv1.RunCompleted{RunId: "run-x", Wave: 1, State: typesv1.RunState_RUN_STATE_HALTED, Total: 100, Succeeded: 40, Failed: 11},
			want: "acme wave 1 run run-x halted (error budget exceeded): 40 succeeded, 11 failed, 49 not done",
		},
		{
			name: "an event without wave leaves the wave out",
			data: &eventsv1.InstallFailed{RunId: "run-x", InstanceId: "i-1", Reason: "x"},
			want: "acme run run-x: i-1 install failed: x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := events.MustNew("acme", "k", tt.data)
			n, err := domain.Notify(ev)
			require.NoError(t, err)
			assert.Equal(t, tt.want, n.Summary)
			assert.Equal(t, ev.ID, n.AboutEventID)
			assert.Equal(t, "acme", n.Tenant)
			assert.Equal(t, domain.NotificationID(ev.ID), n.ID)
		})
	}
}

func TestNotificationIDIsDeterministic(t *testing.T) {
	a := domain.NotificationID("patch.acme.install.failed/run-1/i-1")
	assert.Equal(t, a, domain.NotificationID("patch.acme.install.failed/run-1/i-1"))
	assert.NotEqual(t, a, domain.NotificationID("patch.acme.install.failed/run-1/i-2"))
	assert.Regexp(t, `^n-[0-9a-f]{16}$`, a)
}

func TestNotifyRefusesOtherEvents(t *testing.T) {
	_, err := domain.Notify(events.MustNew("acme", "run-1/i-1", &eventsv1.JobRequested{}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not an outcome the notifier notifies about")
}
