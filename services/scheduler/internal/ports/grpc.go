package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/app"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// GRPCServer serves schedulerv1.SchedulerService.
type GRPCServer struct {
	schedulerv1.UnimplementedSchedulerServiceServer
	app *app.Application
}

// NewGRPCServer returns the gRPC API over a.
func NewGRPCServer(a *app.Application) *GRPCServer { return &GRPCServer{app: a} }

// StartRun implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) StartRun(ctx context.Context, req *schedulerv1.StartRunRequest) (*schedulerv1.StartRunResponse, error) {
	r, err := s.app.StartRun(ctx, domain.StartRun{
		Tenant: req.GetTenant(), Wave: req.GetWave(), BaselineID: req.GetBaselineId(), RequestID: req.GetRequestId(),
	})
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	return &schedulerv1.StartRunResponse{Run: toProto(r)}, nil
}

// GetRun implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) GetRun(ctx context.Context, req *schedulerv1.GetRunRequest) (*schedulerv1.GetRunResponse, error) {
	r, err := s.app.GetRun(ctx, domain.RunRef{Tenant: req.GetTenant(), RunID: req.GetRunId()})
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	return &schedulerv1.GetRunResponse{Run: toProto(r)}, nil
}

// ListRuns implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) ListRuns(ctx context.Context, req *schedulerv1.ListRunsRequest) (*schedulerv1.ListRunsResponse, error) {
	runs, err := s.app.ListRuns(ctx, req.GetTenant())
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	out := &schedulerv1.ListRunsResponse{Runs: make([]*schedulerv1.Run, len(runs))}
	for i, r := range runs {
		out.Runs[i] = toProto(r)
	}
	return out, nil
}

func toProto(r domain.Run) *schedulerv1.Run {
	p := &schedulerv1.Run{
		Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, BaselineId: r.BaselineID, State: r.State,
		Total: int32(r.Total), Snapshotted: int32(r.Snapshotted), Succeeded: int32(r.Succeeded),
		Failed: int32(r.Failed), SnapshotFailed: int32(r.SnapshotFailed),
		StartedAt: timestamppb.New(r.StartedAt),
	}
	if !r.CompletedAt.IsZero() {
		p.CompletedAt = timestamppb.New(r.CompletedAt)
	}
	return p
}
