// Package ports connects the snapshotter's application to the outside: its gRPC RestoreService.
// (Its handlers, trackers and projection are registered by the service package.)
package ports

import (
	"context"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/grpcerr"
	"github.com/patchwave/patchwave/libs/stage"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"

	"github.com/patchwave/patchwave/services/snapshotter/internal/app"
	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

// GRPCServer serves snapshotterv1.RestoreService.
type GRPCServer struct {
	snapshotterv1.UnimplementedRestoreServiceServer
	app *app.Application
}

// NewGRPCServer returns the gRPC API over a.
func NewGRPCServer(a *app.Application) *GRPCServer { return &GRPCServer{app: a} }

// RestoreInstance implements snapshotterv1.RestoreServiceServer.
func (s *GRPCServer) RestoreInstance(ctx context.Context, req *snapshotterv1.RestoreInstanceRequest) (*snapshotterv1.RestoreInstanceResponse, error) {
	r, err := s.app.RestoreInstance(ctx, domain.RestoreCommand{
		Tenant: req.GetTenant(), InstanceID: req.GetInstance(), RunID: req.GetRunId(), Reason: req.GetReason(),
		RequestID: req.GetRequestId(), Actor: actor(ctx),
	})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &snapshotterv1.RestoreInstanceResponse{Restore: ToProto(r)}, nil
}

// GetRestore implements snapshotterv1.RestoreServiceServer.
func (s *GRPCServer) GetRestore(ctx context.Context, req *snapshotterv1.GetRestoreRequest) (*snapshotterv1.GetRestoreResponse, error) {
	r, err := s.app.GetRestore(ctx, req.GetTenant(), req.GetRestoreId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &snapshotterv1.GetRestoreResponse{Restore: ToProto(r)}, nil
}

// ListRestores implements snapshotterv1.RestoreServiceServer.
func (s *GRPCServer) ListRestores(ctx context.Context, req *snapshotterv1.ListRestoresRequest) (*snapshotterv1.ListRestoresResponse, error) {
	page, next, err := s.app.ListRestores(ctx, req.GetTenant(), req.GetInstanceId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	out := &snapshotterv1.ListRestoresResponse{Restores: make([]*snapshotterv1.Restore, len(page)), NextPageToken: next}
	for i, r := range page {
		out.Restores[i] = ToProto(r)
	}
	return out, nil
}

// actor is the subject of the caller's authenticated identity (the host's gRPC interceptor
// puts it in the context), or "".
func actor(ctx context.Context) string { return auth.Actor(ctx) }

// ToProto is the API form of a restore.
func ToProto(r domain.Restore) *snapshotterv1.Restore {
	return &snapshotterv1.Restore{
		Tenant: r.Tenant, RestoreId: r.ID, InstanceId: r.InstanceID, RunId: r.RunID, SnapshotId: r.SetID,
		State: stateOf(r.State), Actor: r.Actor, Reason: r.Reason, Error: r.Error, Account: r.Account, Region: r.Region,
		RequestedAt: stage.Timestamp(r.RequestedAt), StartedAt: stage.Timestamp(r.StartedAt), FinishedAt: stage.Timestamp(r.FinishedAt),
	}
}

func stateOf(s domain.RestoreState) snapshotterv1.RestoreState {
	switch s {
	case domain.RestoreRequested:
		return snapshotterv1.RestoreState_RESTORE_STATE_REQUESTED
	case domain.RestoreInProgress:
		return snapshotterv1.RestoreState_RESTORE_STATE_IN_PROGRESS
	case domain.RestoreSucceeded:
		return snapshotterv1.RestoreState_RESTORE_STATE_SUCCEEDED
	case domain.RestoreFailed:
		return snapshotterv1.RestoreState_RESTORE_STATE_FAILED
	}
	return snapshotterv1.RestoreState_RESTORE_STATE_UNSPECIFIED
}
