// Package grpcerr maps the errors of libs/apierr to gRPC statuses: the one place where a domain
// error becomes a gRPC code. Each service's gRPC port calls ToStatus on every error it returns;
// grpc-gateway then turns the code into the HTTP status.
package grpcerr

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/apierr"
)

// ToStatus maps err to the gRPC status error a handler returns; the status message is
// err.Error(). An *apierr.ValidationError is InvalidArgument with an errdetails.BadRequest detail; the
// sentinels are InvalidArgument, NotFound, FailedPrecondition, Unavailable, Unauthenticated
// and PermissionDenied;
// context.Canceled and context.DeadlineExceeded are Canceled and DeadlineExceeded; an error that
// already carries a gRPC status is returned unchanged; anything else is Internal.
// ToStatus(nil) is nil.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	var verr *apierr.ValidationError
	if errors.As(err, &verr) {
		return badRequest(err, verr)
	}
	for _, m := range []struct {
		target error
		code   codes.Code
	}{
		{apierr.ErrInvalidArgument, codes.InvalidArgument},
		{apierr.ErrNotFound, codes.NotFound},
		{apierr.ErrFailedPrecondition, codes.FailedPrecondition},
		{apierr.ErrUnavailable, codes.Unavailable},
		{apierr.ErrUnauthenticated, codes.Unauthenticated},
		{apierr.ErrPermissionDenied, codes.PermissionDenied},
		{context.Canceled, codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
	} {
		if errors.Is(err, m.target) {
			return status.Error(m.code, err.Error())
		}
	}
	var grpcErr interface{ GRPCStatus() *status.Status }
	if errors.As(err, &grpcErr) {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// badRequest is InvalidArgument with one BadRequest field violation per violation of verr;
// without the detail if it cannot be attached.
func badRequest(err error, verr *apierr.ValidationError) error {
	st := status.New(codes.InvalidArgument, err.Error())
	br := &errdetails.BadRequest{FieldViolations: make([]*errdetails.BadRequest_FieldViolation, len(verr.Violations))}
	for i, v := range verr.Violations {
		br.FieldViolations[i] = &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Rule}
	}
	if withDetails, derr := st.WithDetails(br); derr == nil {
		st = withDetails
	}
	return st.Err()
}
