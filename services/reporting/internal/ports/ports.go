// Package ports connects reporting's application to the outside: the compliance projection on
// the bus and the gRPC API.
package ports

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// RegisterEvents registers the compliance projection on b.
func RegisterEvents(b *bus.Bus, a *app.Application) error {
	err := b.Project(bus.ProjectionSpec{
		Name: app.ProjectionCompliance,
		Subjects: []string{
			events.Pattern[*eventsv1.RunStarted](),
			events.Pattern[*eventsv1.SnapshotFailed](),
			events.Pattern[*eventsv1.InstallSucceeded](),
			events.Pattern[*eventsv1.InstallFailed](),
		},
		Checkpoint: a.Checkpoint,
		Apply:      a.Apply,
		CaughtUp:   a.CaughtUp,
	})
	if err != nil {
		return fmt.Errorf("projection %s: %w", app.ProjectionCompliance, err)
	}
	return nil
}

// GRPCServer serves reportingv1.ReportingService.
type GRPCServer struct {
	reportingv1.UnimplementedReportingServiceServer
	app *app.Application
}

// NewGRPCServer returns the gRPC API over a.
func NewGRPCServer(a *app.Application) *GRPCServer { return &GRPCServer{app: a} }

// GetCompliance implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) GetCompliance(ctx context.Context, req *reportingv1.GetComplianceRequest) (*reportingv1.GetComplianceResponse, error) {
	c, err := s.app.GetCompliance(ctx, req.GetTenant())
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	resp := &reportingv1.GetComplianceResponse{
		Tenant: c.Tenant, Total: coverage(c.Total), AsOf: timestamppb.New(c.AsOf),
		Waves: make([]*reportingv1.WaveCoverage, len(c.Waves)),
	}
	for i, w := range c.Waves {
		resp.Waves[i] = &reportingv1.WaveCoverage{Wave: w.Wave, Coverage: coverage(w.Coverage)}
	}
	return resp, nil
}

// ListFailedPatches implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) ListFailedPatches(ctx context.Context, req *reportingv1.ListFailedPatchesRequest) (*reportingv1.ListFailedPatchesResponse, error) {
	fps, err := s.app.ListFailedPatches(ctx, req.GetTenant())
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	resp := &reportingv1.ListFailedPatchesResponse{FailedPatches: make([]*reportingv1.FailedPatch, len(fps))}
	for i, fp := range fps {
		resp.FailedPatches[i] = &reportingv1.FailedPatch{
			PatchId: fp.PatchID, InstanceId: fp.InstanceID, Wave: fp.Wave, RunId: fp.RunID, Error: fp.Error,
		}
	}
	return resp, nil
}

func coverage(c domain.Coverage) *reportingv1.Coverage {
	return &reportingv1.Coverage{
		InScope: int32(c.InScope), Compliant: int32(c.Compliant), NonCompliant: int32(c.NonCompliant),
		Unknown: int32(c.Unknown), Coverage: c.Ratio(),
	}
}
