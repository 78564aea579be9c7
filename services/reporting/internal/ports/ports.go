// Package ports connects reporting's application to the outside: the projections on the bus
// and the gRPC API.
package ports

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/grpcerr"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/app"
	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// ComplianceSubjects are the tenant-stream subjects the compliance projection reads.
func ComplianceSubjects() []string {
	return []string{
		events.Pattern[*eventsv1.RunStarted](),
		events.Pattern[*eventsv1.RunMembership](),
		events.Pattern[*eventsv1.RunCompleted](),
		events.Pattern[*eventsv1.SnapshotStarted](),
		events.Pattern[*eventsv1.SnapshotFailed](),
		events.Pattern[*eventsv1.InstallStarted](),
		events.Pattern[*eventsv1.InstallSucceeded](),
		events.Pattern[*eventsv1.InstallFailed](),
		events.Pattern[*eventsv1.RestoreStarted](),
		events.Pattern[*eventsv1.RestoreCompleted](),
		events.Pattern[*eventsv1.RestoreFailed](),
		events.Pattern[*eventsv1.BaselineApproved](),
		events.Pattern[*eventsv1.CyclePinned](),
		events.Pattern[*eventsv1.ScanOrdered](),
		events.Pattern[*eventsv1.ScanRequested](),
		events.Pattern[*eventsv1.ScanCompleted](),
		events.Pattern[*eventsv1.ScanFailed](),
	}
}

// CatalogSubjects are the catalog-stream subjects the baselines projection reads.
func CatalogSubjects() []string {
	return []string{
		events.Pattern[*eventsv1.BaselinePublished](),
		events.Pattern[*eventsv1.PatchCertified](),
	}
}

// RegisterEvents registers the baselines, compliance and audit projections on b; fromStart
// makes the baselines and audit projections read from the start of their streams (a rebuild).
func RegisterEvents(b *bus.Bus, a *app.Application, au *app.Audit, fromStart bool) error {
	specs := []bus.ProjectionSpec{
		{
			Name:       app.ProjectionAudit,
			Subjects:   []string{events.Pattern[*eventsv1.AuditRecorded]()},
			Checkpoint: au.Checkpoint,
			Apply:      au.Apply,
			CaughtUp:   au.CaughtUp,
		},
		{
			Name:       app.ProjectionBaselines,
			Subjects:   CatalogSubjects(),
			Checkpoint: a.CatalogCheckpoint,
			Apply:      a.ApplyCatalog,
			CaughtUp:   a.CatalogCaughtUp,
		},
		compliance(a),
	}
	if fromStart {
		for i := range specs[:2] {
			specs[i].Checkpoint = nil
		}
		specs[2].BatchSize = RebuildBatch
	}
	for _, s := range specs {
		if err := b.Project(s); err != nil {
			return fmt.Errorf("projection %s: %w", s.Name, err)
		}
	}
	return nil
}

// RebuildBatch bounds the compliance projection's batches in a rebuild: a replay has the whole
// stream there at once, and a larger batch folds more events per instance and writes more in
// one round trip (live batches are what is there at once, up to bus.DefaultProjectionBatch).
const RebuildBatch = 10000

// compliance is the compliance projection: in batches committed at once when the store can.
func compliance(a *app.Application) bus.ProjectionSpec {
	spec := bus.ProjectionSpec{
		Name:       app.ProjectionCompliance,
		Subjects:   ComplianceSubjects(),
		Checkpoint: a.Checkpoint,
		CaughtUp:   a.CaughtUp,
	}
	// After a commit, scan outcomes and orders wake the scan releaser. Replayed batches are
	// pipelined: Settle writes the last one before the projection counts as caught up.
	if a.Batches() {
		spec.Settle = a.Settle
		spec.ApplyBatch = func(ctx context.Context, evs []*events.Event, live bool) error {
			err := a.ApplyBatch(ctx, evs, live)
			if err == nil {
				a.AfterApply(evs, live)
			}
			return err
		}
	} else {
		spec.Apply = func(ctx context.Context, ev *events.Event, live bool) error {
			err := a.Apply(ctx, ev, live)
			if err == nil {
				a.AfterApply([]*events.Event{ev}, live)
			}
			return err
		}
	}
	return spec
}

// GRPCServer serves reportingv1.ReportingService.
type GRPCServer struct {
	reportingv1.UnimplementedReportingServiceServer
	app   *app.Application
	audit *app.Audit
}

// NewGRPCServer returns the gRPC API over a and au.
func NewGRPCServer(a *app.Application, au *app.Audit) *GRPCServer {
	return &GRPCServer{app: a, audit: au}
}

// ListAuditEvents implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) ListAuditEvents(ctx context.Context, req *reportingv1.ListAuditEventsRequest) (*reportingv1.ListAuditEventsResponse, error) {
	recs, next, err := s.audit.List(ctx, req.GetTenant(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &reportingv1.ListAuditEventsResponse{Events: recs, NextPageToken: next}, nil
}

// GetCompliance implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) GetCompliance(ctx context.Context, req *reportingv1.GetComplianceRequest) (*reportingv1.GetComplianceResponse, error) {
	c, err := s.app.GetCompliance(ctx, req.GetTenant())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	snap := snapshot(domain.Snapshot{Report: c.Report})
	return &reportingv1.GetComplianceResponse{
		Tenant: c.Tenant, Total: snap.Total, Waves: snap.Waves, OsFamilies: snap.OsFamilies, AsOf: timestamppb.New(c.AsOf),
	}, nil
}

// ListFailedPatches implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) ListFailedPatches(ctx context.Context, req *reportingv1.ListFailedPatchesRequest) (*reportingv1.ListFailedPatchesResponse, error) {
	f := app.FailedFilter{Wave: req.GetWave(), OSFamily: req.GetOsFamily(), PatchID: req.GetPatchId(), InstanceID: req.GetInstanceId()}
	fps, next, err := s.app.ListFailedPatches(ctx, req.GetTenant(), f, app.Page{Size: req.GetPageSize(), Token: req.GetPageToken()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &reportingv1.ListFailedPatchesResponse{FailedPatches: failedPatches(fps), NextPageToken: next}, nil
}

// ExportFailedPatches implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) ExportFailedPatches(ctx context.Context, req *reportingv1.ExportFailedPatchesRequest) (*reportingv1.ExportFailedPatchesResponse, error) {
	if err := checkFormat(req.GetFormat()); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	f := app.FailedFilter{Wave: req.GetWave(), OSFamily: req.GetOsFamily(), PatchID: req.GetPatchId(), InstanceID: req.GetInstanceId()}
	fps, err := s.app.AllFailedPatches(ctx, req.GetTenant(), f)
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &reportingv1.ExportFailedPatchesResponse{FailedPatches: failedPatches(fps)}, nil
}

// ListInstances implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) ListInstances(ctx context.Context, req *reportingv1.ListInstancesRequest) (*reportingv1.ListInstancesResponse, error) {
	f := app.InstanceFilter{States: req.GetStates(), Wave: req.GetWave(), OSFamily: req.GetOsFamily()}
	ins, next, err := s.app.ListInstances(ctx, req.GetTenant(), f, app.Page{Size: req.GetPageSize(), Token: req.GetPageToken()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &reportingv1.ListInstancesResponse{Instances: instances(ins), NextPageToken: next}, nil
}

// ExportCompliance implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) ExportCompliance(ctx context.Context, req *reportingv1.ExportComplianceRequest) (*reportingv1.ExportComplianceResponse, error) {
	if err := checkFormat(req.GetFormat()); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	f := app.InstanceFilter{States: req.GetStates(), Wave: req.GetWave(), OSFamily: req.GetOsFamily()}
	ins, err := s.app.AllInstances(ctx, req.GetTenant(), f)
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &reportingv1.ExportComplianceResponse{Instances: instances(ins)}, nil
}

// GetInstancePatches implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) GetInstancePatches(ctx context.Context, req *reportingv1.GetInstancePatchesRequest) (*reportingv1.GetInstancePatchesResponse, error) {
	r, err := s.app.InstancePatches(ctx, req.GetTenant(), req.GetInstanceId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &reportingv1.GetInstancePatchesResponse{Instance: instance(r.Instance), Patches: make([]*reportingv1.InstancePatch, len(r.Patches))}
	for i, p := range r.Patches {
		resp.Patches[i] = &reportingv1.InstancePatch{PatchId: p.PatchID, State: p.State, Error: p.Error, RunId: p.RunID,
			Since: ts(p.Since), InBaseline: p.InBaseline, Severity: p.Severity}
	}
	return resp, nil
}

// GetComplianceHistory implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) GetComplianceHistory(ctx context.Context, req *reportingv1.GetComplianceHistoryRequest) (*reportingv1.GetComplianceHistoryResponse, error) {
	var from, to time.Time
	if req.GetFrom() != nil {
		from = req.GetFrom().AsTime()
	}
	if req.GetTo() != nil {
		to = req.GetTo().AsTime()
	}
	h, err := s.app.GetHistory(ctx, req.GetTenant(), from, to)
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &reportingv1.GetComplianceHistoryResponse{Days: snapshots(h.Days), Runs: snapshots(h.Runs), Cycles: snapshots(h.Cycles),
		Current: snapshot(h.Current)}
	return resp, nil
}

// GetPatchAgeing implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) GetPatchAgeing(ctx context.Context, req *reportingv1.GetPatchAgeingRequest) (*reportingv1.GetPatchAgeingResponse, error) {
	ag, err := s.app.GetAgeing(ctx, req.GetTenant())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &reportingv1.GetPatchAgeingResponse{AsOf: timestamppb.New(ag.AsOf),
		Patches: make([]*reportingv1.AgeingPatch, len(ag.Patches)), BySeverity: make([]*reportingv1.SeverityAgeing, len(ag.BySeverity))}
	for i, p := range ag.Patches {
		resp.Patches[i] = &reportingv1.AgeingPatch{PatchId: p.PatchID, OsFamily: p.OSFamily, BaselineId: p.BaselineID,
			Severity: p.Severity, CertifiedAt: ts(p.CertifiedAt), Days: p.Days, Instances: int32(p.Instances)}
	}
	for i, sv := range ag.BySeverity {
		resp.BySeverity[i] = &reportingv1.SeverityAgeing{Severity: sv.Severity, Patches: int32(sv.Patches),
			Instances: int32(sv.Instances), OldestDays: sv.OldestDays}
	}
	return resp, nil
}

// GetRunReport implements reportingv1.ReportingServiceServer.
func (s *GRPCServer) GetRunReport(ctx context.Context, req *reportingv1.GetRunReportRequest) (*reportingv1.GetRunReportResponse, error) {
	r, err := s.app.GetRun(ctx, req.GetTenant(), req.GetRunId(), app.Page{Size: req.GetPageSize(), Token: req.GetPageToken()})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &reportingv1.GetRunReportResponse{RunId: r.Run.RunID, Wave: r.Run.Wave, BaselineId: r.Run.BaselineID, State: r.Run.State,
		StartedAt: ts(r.Run.StartedAt), CompletedAt: ts(r.Run.CompletedAt), Total: r.Run.Total, Succeeded: r.Run.Succeeded,
		Failed: r.Run.Failed, TimedOut: r.Run.TimedOut, NextPageToken: r.Next,
		JobStates: []*reportingv1.JobStateCount{}, Jobs: make([]*reportingv1.RunJob, len(r.Jobs))}
	states := make([]typesv1.JobState, 0, len(r.Counts))
	for st := range r.Counts {
		states = append(states, st)
	}
	slices.Sort(states)
	for _, st := range states {
		resp.JobStates = append(resp.JobStates, &reportingv1.JobStateCount{State: st, Count: int32(r.Counts[st])})
	}
	for i, j := range r.Jobs {
		resp.Jobs[i] = &reportingv1.RunJob{InstanceId: j.InstanceID, State: j.State}
	}
	return resp, nil
}

// RequestScan implements reportingv1.ReportingServiceServer. The caller's subject is the
// request's requested_by.
func (s *GRPCServer) RequestScan(ctx context.Context, req *reportingv1.RequestScanRequest) (*reportingv1.RequestScanResponse, error) {
	p, err := s.app.RequestScans(ctx, req.GetTenant(), req.GetRequestId(), auth.Actor(ctx))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &reportingv1.RequestScanResponse{ScanId: p.ScanID, Instances: int32(p.Instances), Chunks: int32(p.Chunks), Unlocated: int32(p.Unlocated), InRun: int32(p.InRun)}, nil
}

func checkFormat(f string) error {
	switch f {
	case "", "json", "csv":
		return nil
	}
	var v apierr.Violations
	v.Add("format", fmt.Sprintf("must be json or csv, got %q", f))
	return v.Err()
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func failedPatches(fps []domain.FailedPatch) []*reportingv1.FailedPatch {
	out := make([]*reportingv1.FailedPatch, len(fps))
	for i, fp := range fps {
		out[i] = &reportingv1.FailedPatch{
			PatchId: fp.PatchID, InstanceId: fp.InstanceID, Wave: fp.Wave, RunId: fp.RunID, Error: fp.Error,
			FirstSeen: ts(fp.FirstSeen), OsFamily: fp.OSFamily,
		}
	}
	return out
}

func instance(in domain.Instance) *reportingv1.InstanceCompliance {
	return &reportingv1.InstanceCompliance{InstanceId: in.ID, Wave: in.Wave, OsFamily: in.Family(), State: in.State,
		BaselineId: in.Baseline, MissingPatches: int32(len(in.Missing)), FailedPatches: int32(len(in.Failed())),
		LastRunId: in.LastRun, AssessedAt: ts(in.AssessedAt)}
}

func instances(ins []domain.Instance) []*reportingv1.InstanceCompliance {
	out := make([]*reportingv1.InstanceCompliance, len(ins))
	for i, in := range ins {
		out[i] = instance(in)
	}
	return out
}

func snapshots(ss []domain.Snapshot) []*reportingv1.ComplianceSnapshot {
	out := make([]*reportingv1.ComplianceSnapshot, len(ss))
	for i, s := range ss {
		out[i] = snapshot(s)
	}
	return out
}

func snapshot(s domain.Snapshot) *reportingv1.ComplianceSnapshot {
	out := &reportingv1.ComplianceSnapshot{Kind: s.Kind, Key: s.Key, At: ts(s.At), Total: coverage(s.Report.Total),
		Waves: make([]*reportingv1.WaveCoverage, len(s.Report.Waves)), OsFamilies: make([]*reportingv1.OSFamilyCoverage, len(s.Report.Families))}
	for i, w := range s.Report.Waves {
		out.Waves[i] = &reportingv1.WaveCoverage{Wave: w.Wave, Coverage: coverage(w.Coverage)}
	}
	for i, f := range s.Report.Families {
		out.OsFamilies[i] = &reportingv1.OSFamilyCoverage{OsFamily: f.OSFamily, Coverage: coverage(f.Coverage)}
	}
	out.Cycle = s.Cycle
	for _, p := range s.Pins {
		out.Pins = append(out.Pins, &typesv1.BaselinePin{OsFamily: p.OSFamily, BaselineId: p.BaselineID, Version: p.Version})
	}
	return out
}

func coverage(c domain.Coverage) *reportingv1.Coverage {
	return &reportingv1.Coverage{
		InScope: int32(c.InScope), Compliant: int32(c.Compliant), NonCompliant: int32(c.NonCompliant),
		Unknown: int32(c.Unknown), Coverage: c.Ratio(),
	}
}
