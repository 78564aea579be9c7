// Package ports adapts the outside world to the catalog: the CatalogService gRPC API and the
// projection of catalog events into the read model.
package ports

import (
	"context"

	"github.com/patchwave/patchwave/libs/apierr"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// GRPCServer serves CatalogService from the read model.
type GRPCServer struct {
	catalogv1.UnimplementedCatalogServiceServer
	app *app.App
}

// NewGRPCServer returns the CatalogService implementation.
func NewGRPCServer(a *app.App) *GRPCServer { return &GRPCServer{app: a} }

// ListBaselines returns every published baseline, newest first.
func (s *GRPCServer) ListBaselines(ctx context.Context, _ *catalogv1.ListBaselinesRequest) (*catalogv1.ListBaselinesResponse, error) {
	bs, err := s.app.ListBaselines(ctx)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	resp := &catalogv1.ListBaselinesResponse{Baselines: make([]*catalogv1.Baseline, len(bs))}
	for i, b := range bs {
		resp.Baselines[i] = pb.Baseline(b)
	}
	return resp, nil
}

// GetBaseline returns one baseline with its patches.
func (s *GRPCServer) GetBaseline(ctx context.Context, req *catalogv1.GetBaselineRequest) (*catalogv1.GetBaselineResponse, error) {
	b, err := s.app.GetBaseline(ctx, req.GetBaselineId())
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	return &catalogv1.GetBaselineResponse{Baseline: pb.Baseline(b)}, nil
}
