package ports

import (
	"context"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/grpcerr"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/app"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

func (s *GRPCServer) firing() (*app.Firing, error) {
	f := s.app.Firing()
	if f == nil {
		return nil, grpcerr.ToStatus(apierr.ErrUnavailable)
	}
	return f, nil
}

// ReleaseRun implements schedulerv1.SchedulerServiceServer; the actor is the caller's subject.
func (s *GRPCServer) ReleaseRun(ctx context.Context, req *schedulerv1.ReleaseRunRequest) (*schedulerv1.ReleaseRunResponse, error) {
	f, err := s.firing()
	if err != nil {
		return nil, err
	}
	r, err := f.Release(ctx, domain.RunRef{Tenant: req.GetTenant(), RunID: req.GetRunId()}, app.Operator{Actor: auth.Actor(ctx), Reason: req.GetReason()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.ReleaseRunResponse{Run: toProto(r)}, nil
}

// SkipRun implements schedulerv1.SchedulerServiceServer; the actor is the caller's subject.
func (s *GRPCServer) SkipRun(ctx context.Context, req *schedulerv1.SkipRunRequest) (*schedulerv1.SkipRunResponse, error) {
	f, err := s.firing()
	if err != nil {
		return nil, err
	}
	r, err := f.Skip(ctx, domain.RunRef{Tenant: req.GetTenant(), RunID: req.GetRunId()}, app.Operator{Actor: auth.Actor(ctx), Reason: req.GetReason()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.SkipRunResponse{Run: toProto(r)}, nil
}

// PatchNow implements schedulerv1.SchedulerServiceServer; the actor is the caller's subject.
func (s *GRPCServer) PatchNow(ctx context.Context, req *schedulerv1.PatchNowRequest) (*schedulerv1.PatchNowResponse, error) {
	f, err := s.firing()
	if err != nil {
		return nil, err
	}
	r, err := f.PatchNow(ctx, req.GetTenant(), req.GetWave(), req.GetRequestId(), app.Operator{Actor: auth.Actor(ctx), Reason: req.GetReason()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.PatchNowResponse{Run: toProto(r)}, nil
}
