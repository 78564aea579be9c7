package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/grpcerr"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

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
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.StartRunResponse{Run: toProto(r)}, nil
}

// GetRun implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) GetRun(ctx context.Context, req *schedulerv1.GetRunRequest) (*schedulerv1.GetRunResponse, error) {
	r, err := s.app.GetRun(ctx, domain.RunRef{Tenant: req.GetTenant(), RunID: req.GetRunId()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.GetRunResponse{Run: toProto(r)}, nil
}

// ListRuns implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) ListRuns(ctx context.Context, req *schedulerv1.ListRunsRequest) (*schedulerv1.ListRunsResponse, error) {
	runs, err := s.app.ListRuns(ctx, req.GetTenant())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	out := &schedulerv1.ListRunsResponse{Runs: make([]*schedulerv1.Run, len(runs))}
	for i, r := range runs {
		out.Runs[i] = toProto(r)
	}
	return out, nil
}

// ListRunJobs implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) ListRunJobs(ctx context.Context, req *schedulerv1.ListRunJobsRequest) (*schedulerv1.ListRunJobsResponse, error) {
	jobs, next, err := s.app.ListRunJobs(ctx, app.JobsQuery{
		Ref: domain.RunRef{Tenant: req.GetTenant(), RunID: req.GetRunId()}, States: req.GetStates(),
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	out := &schedulerv1.ListRunJobsResponse{Jobs: make([]*schedulerv1.Job, len(jobs)), NextPageToken: next}
	for i, j := range jobs {
		out.Jobs[i] = &schedulerv1.Job{
			InstanceId: j.Member.GetInstanceId(), State: j.State, Location: j.Member.GetLocation(),
			OsFamily: j.Member.GetOsFamily(), BaselineId: j.BaselineID,
		}
	}
	return out, nil
}

func control(ctx context.Context, tenant, runID, reason, requestID string) app.RunControl {
	return app.RunControl{Ref: domain.RunRef{Tenant: tenant, RunID: runID}, Actor: auth.Actor(ctx), Reason: reason, RequestID: requestID}
}

// CancelRun implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) CancelRun(ctx context.Context, req *schedulerv1.CancelRunRequest) (*schedulerv1.CancelRunResponse, error) {
	r, err := s.app.CancelRun(ctx, control(ctx, req.GetTenant(), req.GetRunId(), req.GetReason(), ""))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.CancelRunResponse{Run: toProto(r)}, nil
}

// PauseRun implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) PauseRun(ctx context.Context, req *schedulerv1.PauseRunRequest) (*schedulerv1.PauseRunResponse, error) {
	r, err := s.app.PauseRun(ctx, control(ctx, req.GetTenant(), req.GetRunId(), req.GetReason(), ""))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.PauseRunResponse{Run: toProto(r)}, nil
}

// ResumeRun implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) ResumeRun(ctx context.Context, req *schedulerv1.ResumeRunRequest) (*schedulerv1.ResumeRunResponse, error) {
	r, err := s.app.ResumeRun(ctx, control(ctx, req.GetTenant(), req.GetRunId(), req.GetReason(), ""))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.ResumeRunResponse{Run: toProto(r)}, nil
}

// RerunFailed implements schedulerv1.SchedulerServiceServer.
func (s *GRPCServer) RerunFailed(ctx context.Context, req *schedulerv1.RerunFailedRequest) (*schedulerv1.RerunFailedResponse, error) {
	r, err := s.app.RerunFailed(ctx, control(ctx, req.GetTenant(), req.GetRunId(), req.GetReason(), req.GetRequestId()))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &schedulerv1.RerunFailedResponse{Run: toProto(r)}, nil
}

func toProto(r domain.Run) *schedulerv1.Run {
	p := &schedulerv1.Run{
		Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, BaselineId: r.BaselineID, State: r.State,
		Total: int32(r.Total), Snapshotted: int32(r.Snapshotted), Succeeded: int32(r.Succeeded),
		Failed: int32(r.Failed), SnapshotFailed: int32(r.SnapshotFailed), TimedOut: int32(r.TimedOut),
		StartedAt: timestamppb.New(r.StartedAt),
		InFlight:  int32(r.InFlight()), Pending: int32(r.Pending()), Skipped: int32(r.Skipped()), Missed: int32(r.Detail.Missed),
		NoAgent: int32(r.Detail.NoAgent), Paused: r.Paused, MaxInFlight: int32(r.Detail.Limits.MaxInFlight),
		ErrorBudget: int32(r.Detail.Limits.ErrorBudget), StopReason: r.Detail.Limits.StopReason, RerunOf: r.Detail.RerunOf,
	}
	if !r.CompletedAt.IsZero() {
		p.CompletedAt = timestamppb.New(r.CompletedAt)
	}
	p.OccurrenceKey, p.Cycle, p.Trigger, p.Reason = r.OccurrenceKey, r.Cycle, r.Trigger, r.Reason
	if !r.WindowStart.IsZero() {
		p.WindowStart, p.WindowEnd = timestamppb.New(r.WindowStart), timestamppb.New(r.WindowEnd)
	}
	if !r.Detail.Limits.StopAt.IsZero() {
		p.DispatchStopAt = timestamppb.New(r.Detail.Limits.StopAt)
	}
	counts := r.JobCounts()
	for _, st := range domain.JobStates() {
		if n := counts[st]; n > 0 {
			p.JobCounts = append(p.JobCounts, &schedulerv1.JobStateCount{State: st, Count: int32(n)})
		}
	}
	for _, pin := range r.Detail.Pins {
		p.Pins = append(p.Pins, &typesv1.BaselinePin{OsFamily: pin.OSFamily, BaselineId: pin.BaselineID, Version: pin.Version, PatchIds: pin.PatchIDs})
	}
	return p
}
