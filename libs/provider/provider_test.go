package provider_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
)

func TestTerminalStates(t *testing.T) {
	tests := []struct {
		name  string
		state interface{ Terminal() bool }
		want  bool
	}{
		{name: "a pending snapshot is not terminal", state: provider.SnapshotPending, want: false},
		{name: "a completed snapshot is terminal", state: provider.SnapshotCompleted, want: true},
		{name: "a snapshot in error is terminal", state: provider.SnapshotError, want: true},
		{name: "a restore in progress is not terminal", state: provider.RestoreInProgress, want: false},
		{name: "a succeeded restore is terminal", state: provider.RestoreSucceeded, want: true},
		{name: "a failed restore is terminal", state: provider.RestoreFailed, want: true},
		{name: "an installation in progress is not terminal", state: provider.InstallInProgress, want: false},
		{name: "an installation without state is not terminal", state: provider.InstallState(""), want: false},
		{name: "a succeeded installation is terminal", state: provider.InstallSucceeded, want: true},
		{name: "a failed installation is terminal", state: provider.InstallFailed, want: true},
		{name: "a timed-out installation is terminal", state: provider.InstallTimedOut, want: true},
		{name: "a cancelled installation is terminal", state: provider.InstallCancelled, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.state.Terminal())
		})
	}
}

type retryableErr struct{ retry bool }

func (e retryableErr) Error() string   { return fmt.Sprintf("transient=%v", e.retry) }
func (e retryableErr) Retryable() bool { return e.retry }

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "no error is not retryable", err: nil, want: false},
		{name: "throttling is retryable", err: provider.ErrThrottled, want: true},
		{name: "wrapped throttling is retryable", err: fmt.Errorf("describe instances: %w", provider.ErrThrottled), want: true},
		{name: "an error that says it is retryable is", err: fmt.Errorf("send command: %w", retryableErr{retry: true}), want: true},
		{name: "an error that says it is not retryable is not", err: retryableErr{retry: false}, want: false},
		{name: "not found is not retryable", err: provider.ErrNotFound, want: false},
		{name: "a stopped instance is not retryable", err: provider.ErrInstanceNotRunning, want: false},
		{name: "a cancelled context is not retryable", err: context.Canceled, want: false},
		{name: "a joined error with throttling is retryable", err: errors.Join(errors.New("x"), provider.ErrThrottled), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, provider.IsRetryable(tt.err))
		})
	}
}

func TestRequestValidation(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr []string
	}{
		{name: "a full discover query is valid", err: provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "1"}.Validate()},
		{name: "a discover query needs a valid tenant", err: provider.DiscoverQuery{Tenant: "-acme"}.Validate(), wantErr: []string{"Tenant must match"}},
		{name: "a tag value needs a tag key", err: provider.DiscoverQuery{Tenant: "acme", TagValue: "1"}.Validate(), wantErr: []string{"TagValue needs TagKey"}},
		{name: "a snapshot request is valid with tenant, run and instance", err: provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i"}.Validate()},
		{name: "an empty snapshot request names every missing field", err: provider.SnapshotRequest{}.Validate(), wantErr: []string{"Tenant", "RunID is required", "InstanceID is required"}},
		{name: "a restore request needs a key", err: provider.RestoreRequest{Tenant: "acme", InstanceID: "i", SnapshotID: "s"}.Validate(), wantErr: []string{"RestoreKey is required"}},
		{name: "a full restore request is valid", err: provider.RestoreRequest{Tenant: "acme", InstanceID: "i", SnapshotID: "s", RestoreKey: "k"}.Validate()},
		{name: "an install request is valid without patches or policy", err: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i", BaselineID: "b"}.Validate()},
		{
			name: "an install request rejects empty and duplicate patch ids and an unknown policy",
			err: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i", BaselineID: "b",
				PatchIDs: []string{"p", "", "p"}, RebootPolicy: "later"}.Validate(),
			wantErr: []string{"PatchIDs[1] must not be empty", `PatchIDs[2] duplicate "p"`, `RebootPolicy must be one of if-required, always, never, got "later"`},
		},
		{name: "an install request needs a baseline", err: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i"}.Validate(), wantErr: []string{"BaselineID is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) == 0 {
				require.NoError(t, tt.err)
				return
			}
			require.ErrorIs(t, tt.err, provider.ErrInvalidArgument)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, tt.err, want)
			}
		})
	}
}

func TestRebootPolicyDefault(t *testing.T) {
	require.Equal(t, provider.RebootIfRequired, provider.RebootPolicy("").OrDefault())
	require.Equal(t, provider.RebootNever, provider.RebootNever.OrDefault())
	require.True(t, provider.RebootPolicy("").Valid())
	require.False(t, provider.RebootPolicy("sometimes").Valid())
}

func TestValidateTenant(t *testing.T) {
	tests := []struct {
		name   string
		tenant string
		valid  bool
	}{
		{name: "lower-case letters, digits and hyphens are valid", tenant: "acme-01", valid: true},
		{name: "a single character is valid", tenant: "a", valid: true},
		{name: "63 characters are valid", tenant: "a" + strings.Repeat("b", 62), valid: true},
		{name: "64 characters are too many", tenant: strings.Repeat("b", 64), valid: false},
		{name: "an empty tenant is invalid", tenant: "", valid: false},
		{name: "upper case is invalid", tenant: "Acme", valid: false},
		{name: "a leading hyphen is invalid", tenant: "-acme", valid: false},
		{name: "a dot is invalid, it would split a subject", tenant: "ac.me", valid: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := provider.ValidateTenant(tt.tenant)
			if tt.valid {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, provider.ErrInvalidArgument)
		})
	}
}
