package apierr_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"
)

func TestViolations(t *testing.T) {
	tests := []struct {
		name    string
		add     [][2]string
		wantErr string
	}{
		{"no violation is no error", nil, ""},
		{"one violation names its field and rule", [][2]string{{"run_id", "is required"}}, "invalid argument: run_id: is required"},
		{"every violation is listed in order", [][2]string{{"tenant", "must match x"}, {"wave", "must be from 1 to 3, got 9"}},
			"invalid argument: tenant: must match x; wave: must be from 1 to 3, got 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v apierr.Violations
			for _, a := range tt.add {
				v.Add(a[0], a[1])
			}
			err := v.Err()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.wantErr)
			require.ErrorIs(t, err, apierr.ErrInvalidArgument)
			require.NotErrorIs(t, err, apierr.ErrNotFound)
			var verr *apierr.ValidationError
			require.ErrorAs(t, err, &verr)
			require.Len(t, verr.Violations, len(tt.add))
			for i, a := range tt.add {
				require.Equal(t, apierr.Violation{Field: a[0], Rule: a[1]}, verr.Violations[i])
			}
		})
	}
}

func TestSentinelsAreDistinctAndWrapFriendly(t *testing.T) {
	sentinels := []error{apierr.ErrInvalidArgument, apierr.ErrNotFound, apierr.ErrFailedPrecondition, apierr.ErrUnavailable}
	for i, s := range sentinels {
		wrapped := fmt.Errorf("op: %w", s)
		for j, other := range sentinels {
			if i == j {
				require.ErrorIs(t, wrapped, other)
			} else {
				require.NotErrorIs(t, wrapped, other)
			}
		}
	}
}
