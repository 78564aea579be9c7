package grpcerr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/grpcerr"
)

func TestToStatus(t *testing.T) {
	grpcErr := status.Error(codes.PermissionDenied, "not yours")
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
		// wantFields are the BadRequest field violations as "field: description"; nil means
		// the status has no details.
		wantFields []string
	}{
		{
			name: "a validation error is InvalidArgument with one field violation per violation",
			err: &apierr.ValidationError{Violations: []apierr.Violation{
				{Field: "tenant", Rule: "is required"}, {Field: "wave", Rule: "must be from 1 to 3, got 0"},
			}},
			wantCode:   codes.InvalidArgument,
			wantMsg:    "invalid argument: tenant: is required; wave: must be from 1 to 3, got 0",
			wantFields: []string{"tenant: is required", "wave: must be from 1 to 3, got 0"},
		},
		{
			name:       "a wrapped validation error keeps the wrapping message and the details",
			err:        fmt.Errorf("start run: %w", &apierr.ValidationError{Violations: []apierr.Violation{{Field: "wave", Rule: "is required"}}}),
			wantCode:   codes.InvalidArgument,
			wantMsg:    "start run: invalid argument: wave: is required",
			wantFields: []string{"wave: is required"},
		},
		{
			name:     "a wrapped ErrInvalidArgument is InvalidArgument without details",
			err:      fmt.Errorf("%w: tenant: must match", apierr.ErrInvalidArgument),
			wantCode: codes.InvalidArgument,
			wantMsg:  "invalid argument: tenant: must match",
		},
		{
			name:     "a wrapped ErrNotFound is NotFound",
			err:      fmt.Errorf("%w: run r1 of tenant acme", apierr.ErrNotFound),
			wantCode: codes.NotFound,
			wantMsg:  "not found: run r1 of tenant acme",
		},
		{
			name:     "a domain sentinel wrapping ErrNotFound is NotFound",
			err:      fmt.Errorf("baseline %q: %w", "b9", fmt.Errorf("baseline %w", apierr.ErrNotFound)),
			wantCode: codes.NotFound,
			wantMsg:  `baseline "b9": baseline not found`,
		},
		{
			name:     "a wrapped ErrFailedPrecondition is FailedPrecondition",
			err:      fmt.Errorf("%w: no baseline is published yet", apierr.ErrFailedPrecondition),
			wantCode: codes.FailedPrecondition,
			wantMsg:  "failed precondition: no baseline is published yet",
		},
		{
			name:     "a wrapped ErrUnavailable is Unavailable",
			err:      fmt.Errorf("%w: still catching up", apierr.ErrUnavailable),
			wantCode: codes.Unavailable,
			wantMsg:  "unavailable: still catching up",
		},
		{
			name:     "a wrapped ErrUnauthenticated is Unauthenticated",
			err:      fmt.Errorf("%w: no credential", apierr.ErrUnauthenticated),
			wantCode: codes.Unauthenticated,
			wantMsg:  "unauthenticated: no credential",
		},
		{
			name:     "a wrapped ErrPermissionDenied is PermissionDenied",
			err:      fmt.Errorf("%w: needs design.write", apierr.ErrPermissionDenied),
			wantCode: codes.PermissionDenied,
			wantMsg:  "permission denied: needs design.write",
		},
		{
			name:     "ErrUnavailable wins over the context error it wraps",
			err:      fmt.Errorf("%w: %w", apierr.ErrUnavailable, context.Canceled),
			wantCode: codes.Unavailable,
			wantMsg:  "unavailable: context canceled",
		},
		{
			name:     "context.Canceled is Canceled",
			err:      fmt.Errorf("list runs: %w", context.Canceled),
			wantCode: codes.Canceled,
			wantMsg:  "list runs: context canceled",
		},
		{
			name:     "context.DeadlineExceeded is DeadlineExceeded",
			err:      context.DeadlineExceeded,
			wantCode: codes.DeadlineExceeded,
			wantMsg:  "context deadline exceeded",
		},
		{
			name:     "a status error passes through",
			err:      grpcErr,
			wantCode: codes.PermissionDenied,
			wantMsg:  "not yours",
		},
		{
			name:     "anything else is Internal",
			err:      errors.New("redis: connection refused"),
			wantCode: codes.Internal,
			wantMsg:  "redis: connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := grpcerr.ToStatus(tt.err)
			st, ok := status.FromError(got)
			require.True(t, ok, "%v is a status error", got)
			require.Equal(t, tt.wantCode, st.Code(), st.Message())
			require.Equal(t, tt.wantMsg, st.Message())
			if tt.wantFields == nil {
				require.Empty(t, st.Details())
				return
			}
			require.Len(t, st.Details(), 1)
			br, ok := st.Details()[0].(*errdetails.BadRequest)
			require.True(t, ok, "detail %T is a BadRequest", st.Details()[0])
			var fields []string
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField()+": "+v.GetDescription())
			}
			require.Equal(t, tt.wantFields, fields)
		})
	}
}

func TestToStatusReturnsAStatusErrorUnchanged(t *testing.T) {
	grpcErr := status.Error(codes.PermissionDenied, "not yours")

	require.Same(t, grpcErr, grpcerr.ToStatus(grpcErr))
}

func TestToStatusOfNilIsNil(t *testing.T) {
	require.NoError(t, grpcerr.ToStatus(nil))
}
