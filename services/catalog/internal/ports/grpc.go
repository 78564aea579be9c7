// Package ports adapts the outside world to the catalog: the CatalogService gRPC API, the
// projection that tells which baselines the stream announced, and the actor of a write.
package ports

import (
	"context"
	"strings"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/grpcerr"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/feeds"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// Actor returns the actor of a write: the subject of the caller's authenticated identity (the
// host's gRPC interceptor puts it in the context), "" when none.
func Actor(ctx context.Context) string { return auth.Actor(ctx) }

// GRPCServer serves CatalogService.
type GRPCServer struct {
	catalogv1.UnimplementedCatalogServiceServer
	app   *app.App
	feeds *feeds.Poller
}

// NewGRPCServer returns the CatalogService implementation.
func NewGRPCServer(a *app.App, p *feeds.Poller) *GRPCServer { return &GRPCServer{app: a, feeds: p} }

func invalid(field, rule string) error {
	return &apierr.ValidationError{Violations: []apierr.Violation{{Field: field, Rule: rule}}}
}

// ListPatches returns one page of patches.
func (s *GRPCServer) ListPatches(ctx context.Context, req *catalogv1.ListPatchesRequest) (*catalogv1.ListPatchesResponse, error) {
	f := app.PatchFilter{
		Vendor: req.GetVendor(), OSFamily: req.GetOsFamily(), Severity: req.GetSeverity(),
		Classification: req.GetClassification(), CVE: req.GetCve(), State: req.GetState(),
	}
	if req.GetReleasedAfter() != nil {
		if err := req.GetReleasedAfter().CheckValid(); err != nil {
			return nil, grpcerr.ToStatus(invalid("releasedAfter", "must be an RFC 3339 instant"))
		}
		f.ReleasedAfter = req.GetReleasedAfter().AsTime()
	}
	recs, next, err := s.app.ListPatches(ctx, f, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &catalogv1.ListPatchesResponse{NextPageToken: next, Patches: make([]*catalogv1.CatalogPatch, len(recs))}
	for i, r := range recs {
		resp.Patches[i] = pb.Record(r)
	}
	return resp, nil
}

// GetPatch returns one patch with its certification history.
func (s *GRPCServer) GetPatch(ctx context.Context, req *catalogv1.GetPatchRequest) (*catalogv1.GetPatchResponse, error) {
	r, err := s.app.GetPatch(ctx, req.GetPatchId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.GetPatchResponse{Patch: pb.Record(r)}, nil
}

// ListPatchVersions returns the kept revisions of a patch.
func (s *GRPCServer) ListPatchVersions(ctx context.Context, req *catalogv1.ListPatchVersionsRequest) (*catalogv1.ListPatchVersionsResponse, error) {
	recs, err := s.app.PatchVersions(ctx, req.GetPatchId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &catalogv1.ListPatchVersionsResponse{}
	for _, r := range recs {
		resp.Versions = append(resp.Versions, pb.Record(r))
	}
	return resp, nil
}

// CertifyPatch applies a certification step.
func (s *GRPCServer) CertifyPatch(ctx context.Context, req *catalogv1.CertifyPatchRequest) (*catalogv1.CertifyPatchResponse, error) {
	r, err := s.app.Certify(ctx, req.GetPatchId(), domain.StepRequest{
		To: req.GetState(), Actor: Actor(ctx), Notes: req.GetNotes(), Evidence: req.GetEvidence(),
	}, req.GetExpectedRevision())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.CertifyPatchResponse{Patch: pb.Record(r)}, nil
}

// ImportAdvisory parses and ingests one document.
func (s *GRPCServer) ImportAdvisory(ctx context.Context, req *catalogv1.ImportAdvisoryRequest) (*catalogv1.ImportAdvisoryResponse, error) {
	format, err := advisory.ParseFormat(req.GetFormat())
	if err != nil {
		return nil, grpcerr.ToStatus(invalid("format", strings.TrimPrefix(err.Error(), "format ")))
	}
	if len(req.GetDocument()) == 0 {
		return nil, grpcerr.ToStatus(invalid("document", "required: the raw advisory document"))
	}
	if !req.GetDryRun() {
		if err := domain.ValidateActor(Actor(ctx)); err != nil {
			return nil, grpcerr.ToStatus(invalid("actor", err.Error()))
		}
	}
	name := req.GetName()
	if name == "" {
		name = "import"
	}
	res, err := s.app.Ingest(ctx, advisory.Document{Name: name, Source: "import", Data: req.GetDocument()},
		app.IngestOptions{Format: format, DryRun: req.GetDryRun()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &catalogv1.ImportAdvisoryResponse{Format: string(res.Format)}
	for _, p := range res.Patches {
		resp.Patches = append(resp.Patches, &catalogv1.ImportedPatch{Patch: pb.Record(p.Record), Outcome: p.Outcome})
	}
	return resp, nil
}

// ListRules returns the auto-approval rules.
func (s *GRPCServer) ListRules(ctx context.Context, _ *catalogv1.ListRulesRequest) (*catalogv1.ListRulesResponse, error) {
	rules, err := s.app.ListRules(ctx)
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &catalogv1.ListRulesResponse{}
	for _, r := range rules {
		resp.Rules = append(resp.Rules, pb.Rule(r))
	}
	return resp, nil
}

// PutRule creates or replaces a rule.
func (s *GRPCServer) PutRule(ctx context.Context, req *catalogv1.PutRuleRequest) (*catalogv1.PutRuleResponse, error) {
	r := pb.FromRule(req.GetRule())
	if req.GetRuleId() != "" {
		if r.ID != "" && r.ID != req.GetRuleId() {
			return nil, grpcerr.ToStatus(invalid("rule.ruleId", "must be empty or the rule id of the URL ("+req.GetRuleId()+")"))
		}
		r.ID = req.GetRuleId()
	}
	out, err := s.app.PutRule(ctx, r, Actor(ctx))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.PutRuleResponse{Rule: pb.Rule(out)}, nil
}

// DeleteRule deletes a rule.
func (s *GRPCServer) DeleteRule(ctx context.Context, req *catalogv1.DeleteRuleRequest) (*catalogv1.DeleteRuleResponse, error) {
	if err := s.app.DeleteRule(ctx, req.GetRuleId(), Actor(ctx)); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.DeleteRuleResponse{}, nil
}

// ListBaselines returns the published baselines.
func (s *GRPCServer) ListBaselines(ctx context.Context, req *catalogv1.ListBaselinesRequest) (*catalogv1.ListBaselinesResponse, error) {
	bs, err := s.app.ListBaselines(ctx, req.GetOsFamily())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &catalogv1.ListBaselinesResponse{Baselines: make([]*catalogv1.Baseline, len(bs))}
	for i, b := range bs {
		resp.Baselines[i] = pb.Baseline(b)
	}
	return resp, nil
}

// GetBaseline returns one baseline with its patches and deployment rules.
func (s *GRPCServer) GetBaseline(ctx context.Context, req *catalogv1.GetBaselineRequest) (*catalogv1.GetBaselineResponse, error) {
	b, err := s.app.GetBaseline(ctx, req.GetBaselineId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.GetBaselineResponse{Baseline: pb.Baseline(b)}, nil
}

// PublishBaseline publishes a baseline version.
func (s *GRPCServer) PublishBaseline(ctx context.Context, req *catalogv1.PublishBaselineRequest) (*catalogv1.PublishBaselineResponse, error) {
	b, created, err := s.app.PublishBaseline(ctx, domain.PublishRequest{
		ID: req.GetBaselineId(), OSFamily: req.GetOsFamily(), Version: req.GetVersion(),
		Rules: req.GetPatches(), Notes: req.GetNotes(), Actor: Actor(ctx),
	})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.PublishBaselineResponse{Baseline: pb.Baseline(b), Created: created}, nil
}

// PublishEmergencyBaseline publishes an out-of-band baseline for a CVE.
func (s *GRPCServer) PublishEmergencyBaseline(ctx context.Context, req *catalogv1.PublishEmergencyBaselineRequest) (*catalogv1.PublishEmergencyBaselineResponse, error) {
	if err := domain.ValidateActor(Actor(ctx)); err != nil {
		return nil, grpcerr.ToStatus(invalid("actor", err.Error()))
	}
	b, created, err := s.app.PublishEmergencyBaseline(ctx, req.GetBaselineId(), req.GetOsFamily(), req.GetCve(), req.GetNotes(), Actor(ctx))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.PublishEmergencyBaselineResponse{Baseline: pb.Baseline(b), Created: created}, nil
}

// ListApprovals returns a tenant's decisions.
func (s *GRPCServer) ListApprovals(ctx context.Context, req *catalogv1.ListApprovalsRequest) (*catalogv1.ListApprovalsResponse, error) {
	as, err := s.app.ListApprovals(ctx, req.GetTenant())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &catalogv1.ListApprovalsResponse{}
	for _, a := range as {
		resp.Approvals = append(resp.Approvals, pb.Approval(a))
	}
	return resp, nil
}

// ApproveBaseline records an approval.
func (s *GRPCServer) ApproveBaseline(ctx context.Context, req *catalogv1.ApproveBaselineRequest) (*catalogv1.ApproveBaselineResponse, error) {
	a, err := s.app.Decide(ctx, req.GetTenant(), req.GetBaselineId(), domain.ApprovalApproved, Actor(ctx), req.GetNotes())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.ApproveBaselineResponse{Approval: pb.Approval(a)}, nil
}

// RejectBaseline records a rejection.
func (s *GRPCServer) RejectBaseline(ctx context.Context, req *catalogv1.RejectBaselineRequest) (*catalogv1.RejectBaselineResponse, error) {
	a, err := s.app.Decide(ctx, req.GetTenant(), req.GetBaselineId(), domain.ApprovalRejected, Actor(ctx), req.GetReason())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.RejectBaselineResponse{Approval: pb.Approval(a)}, nil
}

// GetApprovalPolicy returns a tenant's auto-approve policy.
func (s *GRPCServer) GetApprovalPolicy(ctx context.Context, req *catalogv1.GetApprovalPolicyRequest) (*catalogv1.GetApprovalPolicyResponse, error) {
	p, err := s.app.GetPolicy(ctx, req.GetTenant())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.GetApprovalPolicyResponse{Policy: pb.Policy(p)}, nil
}

// PutApprovalPolicy sets a tenant's auto-approve policy.
func (s *GRPCServer) PutApprovalPolicy(ctx context.Context, req *catalogv1.PutApprovalPolicyRequest) (*catalogv1.PutApprovalPolicyResponse, error) {
	p := pb.FromPolicy(req.GetPolicy())
	if p.Tenant != "" && p.Tenant != req.GetTenant() {
		return nil, grpcerr.ToStatus(invalid("policy.tenant", "must be empty or the tenant of the URL ("+req.GetTenant()+")"))
	}
	if d := req.GetPolicy().GetDelay(); d != nil && d.CheckValid() != nil {
		return nil, grpcerr.ToStatus(invalid("policy.delay", "must be a duration such as \"72h\" or \"259200s\""))
	}
	p.Tenant, p.ChangedBy = req.GetTenant(), Actor(ctx)
	out, err := s.app.PutPolicy(ctx, p)
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.PutApprovalPolicyResponse{Policy: pb.Policy(out)}, nil
}

// ListSources returns the feed sources.
func (s *GRPCServer) ListSources(ctx context.Context, _ *catalogv1.ListSourcesRequest) (*catalogv1.ListSourcesResponse, error) {
	srcs, err := s.feeds.List(ctx)
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.ListSourcesResponse{Sources: srcs}, nil
}

// GetSource returns one source.
func (s *GRPCServer) GetSource(ctx context.Context, req *catalogv1.GetSourceRequest) (*catalogv1.GetSourceResponse, error) {
	src, err := s.feeds.Get(ctx, req.GetName())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.GetSourceResponse{Source: src}, nil
}

// PollSource polls a source now.
func (s *GRPCServer) PollSource(ctx context.Context, req *catalogv1.PollSourceRequest) (*catalogv1.PollSourceResponse, error) {
	res, err := s.feeds.PollNow(ctx, req.GetName())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &catalogv1.PollSourceResponse{
		Source: res.Source, Documents: int32(res.Documents), Unchanged: int32(res.Unchanged),
		PatchesDiscovered: int32(res.Discovered), PatchesUpdated: int32(res.Updated), FailedDocuments: int32(res.Failed),
	}, nil
}
