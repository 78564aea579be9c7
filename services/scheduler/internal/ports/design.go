package ports

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	libdesign "github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/grpcerr"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/app"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// gRPC metadata of the design API. The gateway maps If-Match onto the first and the second
// onto the ETag response header. Who makes a change is the caller's authenticated identity
// (auth.FromContext), never a header.
const (
	// IfMatchMetadata is the revision a change is based on (an ETag this API returned).
	IfMatchMetadata = "if-match"
	// ETagMetadata is the revision of what a call read or wrote, sent as a response header.
	ETagMetadata = "etag"
)

// DesignServer serves designv1.DesignService.
type DesignServer struct {
	designv1.UnimplementedDesignServiceServer
	app *app.Designs
}

// NewDesignServer returns the design API over a.
func NewDesignServer(a *app.Designs) *DesignServer { return &DesignServer{app: a} }

// writeOf reads the actor (the caller's subject) and the If-Match of a write.
func writeOf(ctx context.Context, reason string) (app.Write, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	w := app.Write{Reason: reason, Actor: auth.Actor(ctx)}
	if v := md.Get(IfMatchMetadata); len(v) > 0 && v[0] != "" {
		rev, ok := parseETag(v[0])
		if !ok {
			var vs apierr.Violations
			vs.Add("If-Match", fmt.Sprintf("must be an ETag this API returned, such as \"42\" (or *), got %q", v[0]))
			return app.Write{}, vs.Err()
		}
		w.IfMatch = rev
	}
	return w, nil
}

// parseETag reads `"42"`, `42` or `*` (which matches any revision: 0).
func parseETag(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return 0, true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`)
	rev, err := strconv.ParseUint(s, 10, 64)
	return rev, err == nil && rev > 0
}

// ETag is the ETag of a revision: the revision in double quotes.
func ETag(rev uint64) string { return strconv.Quote(strconv.FormatUint(rev, 10)) }

func setETag(ctx context.Context, rev uint64) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(ETagMetadata, ETag(rev)))
}

// renamed maps the field names of a validation error, for path parameters whose body field
// has another name ("number" in a wave body is the path's "wave").
func renamed(err error, names map[string]string) error {
	var verr *apierr.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	out := make(apierr.Violations, len(verr.Violations))
	for i, v := range verr.Violations {
		if n, ok := names[v.Field]; ok {
			v.Field = n
		}
		out[i] = v
	}
	return out.Err()
}

// pathID checks that a body's id is empty or the path's, and returns the path's.
func pathID(field, path, body string) error {
	if body == "" || body == path {
		return nil
	}
	var v apierr.Violations
	v.Add(field, fmt.Sprintf("must be empty or %q, the id in the path, got %q", path, body))
	return v.Err()
}

// fail maps err to its gRPC status; a stale If-Match also answers the current revision as
// the ETag, so the caller can read again and retry.
func fail(ctx context.Context, err error) error {
	var stale *design.StaleError
	if errors.As(err, &stale) {
		setETag(ctx, stale.Current)
	}
	return grpcerr.ToStatus(err)
}

// changeTenant applies ops to a tenant's design as the caller's write and sets the ETag.
func (s *DesignServer) changeTenant(ctx context.Context, tenant, reason string, ops ...*typesv1.Operation) (*typesv1.TenantDesign, error) {
	w, err := writeOf(ctx, reason)
	if err != nil {
		return nil, err
	}
	doc, rev, err := s.app.ChangeTenant(ctx, tenant, w, ops)
	if err != nil {
		return nil, err
	}
	setETag(ctx, rev)
	return doc, nil
}

// changeFreezes applies freeze operations to a tenant's design, or with tenant "" to the
// provider-wide freezes, and returns the freezes after the change.
func (s *DesignServer) changeFreezes(ctx context.Context, tenant, reason string, ops ...*typesv1.Operation) ([]*typesv1.Freeze, error) {
	if tenant != "" {
		doc, err := s.changeTenant(ctx, tenant, reason, ops...)
		return doc.GetFreezes(), err
	}
	w, err := writeOf(ctx, reason)
	if err != nil {
		return nil, err
	}
	doc, rev, err := s.app.ChangeGlobal(ctx, w, ops)
	if err != nil {
		return nil, err
	}
	setETag(ctx, rev)
	return doc.GetFreezes(), nil
}

// tenantDoc reads a tenant's design and sets the ETag.
func (s *DesignServer) tenantDoc(ctx context.Context, tenant string) (*typesv1.TenantDesign, error) {
	doc, rev, err := s.app.TenantDesign(ctx, tenant)
	if err != nil {
		return nil, err
	}
	setETag(ctx, rev)
	return doc, nil
}

// freezesOf reads a tenant's freezes, or with tenant "" the provider-wide ones, and sets the ETag.
func (s *DesignServer) freezesOf(ctx context.Context, tenant string) ([]*typesv1.Freeze, error) {
	if tenant != "" {
		doc, err := s.tenantDoc(ctx, tenant)
		return doc.GetFreezes(), err
	}
	doc, rev, err := s.app.GlobalDesign(ctx)
	if err != nil {
		return nil, err
	}
	setETag(ctx, rev)
	return doc.GetFreezes(), nil
}

// tenantOut is a document's tenant with its update time (the last change's).
func tenantOut(doc *typesv1.TenantDesign) *typesv1.Tenant {
	t := proto.Clone(doc.GetTenant()).(*typesv1.Tenant)
	t.UpdateTime = doc.GetLastChange().GetTime()
	return t
}

func findIn[T any](items []T, match func(T) bool) (T, bool) {
	for _, it := range items {
		if match(it) {
			return it, true
		}
	}
	var zero T
	return zero, false
}

func missing(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{apierr.ErrNotFound}, args...)...)
}

// ListTenants implements designv1.DesignServiceServer.
func (s *DesignServer) ListTenants(ctx context.Context, req *designv1.ListTenantsRequest) (*designv1.ListTenantsResponse, error) {
	all, rev, err := s.app.Tenants(ctx)
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	page, next, err := design.Paginate(all, func(t libdesign.Tenant) string { return t.Design.GetTenant().GetTenantId() },
		design.Ascending, req.GetPageSize(), req.GetPageToken(), "tenants")
	if err != nil {
		return nil, fail(ctx, err)
	}
	resp := &designv1.ListTenantsResponse{NextPageToken: next, Tenants: make([]*typesv1.Tenant, len(page))}
	for i, t := range page {
		resp.Tenants[i] = tenantOut(t.Design)
	}
	return resp, nil
}

// GetTenant implements designv1.DesignServiceServer.
func (s *DesignServer) GetTenant(ctx context.Context, req *designv1.GetTenantRequest) (*designv1.GetTenantResponse, error) {
	doc, err := s.tenantDoc(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.GetTenantResponse{Tenant: tenantOut(doc)}, nil
}

// PutTenant implements designv1.DesignServiceServer.
func (s *DesignServer) PutTenant(ctx context.Context, req *designv1.PutTenantRequest) (*designv1.PutTenantResponse, error) {
	settings := req.GetSettings()
	if settings == nil {
		settings = &typesv1.Tenant{}
	}
	doc, err := s.changeTenant(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_PutTenant{PutTenant: settings}})
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.PutTenantResponse{Tenant: tenantOut(doc)}, nil
}

// DeleteTenant implements designv1.DesignServiceServer.
func (s *DesignServer) DeleteTenant(ctx context.Context, req *designv1.DeleteTenantRequest) (*designv1.DeleteTenantResponse, error) {
	w, err := writeOf(ctx, req.GetReason())
	if err != nil {
		return nil, fail(ctx, err)
	}
	rev, err := s.app.DeleteTenant(ctx, req.GetTenant(), w)
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	return &designv1.DeleteTenantResponse{}, nil
}

// GetTenantDesign implements designv1.DesignServiceServer.
func (s *DesignServer) GetTenantDesign(ctx context.Context, req *designv1.GetTenantDesignRequest) (*designv1.GetTenantDesignResponse, error) {
	doc, rev, err := s.app.TenantDesign(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	out := proto.Clone(doc).(*typesv1.TenantDesign)
	out.Tenant = tenantOut(doc)
	return &designv1.GetTenantDesignResponse{Design: out, Revision: rev}, nil
}

// ListAccounts implements designv1.DesignServiceServer.
func (s *DesignServer) ListAccounts(ctx context.Context, req *designv1.ListAccountsRequest) (*designv1.ListAccountsResponse, error) {
	doc, err := s.tenantDoc(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	page, next, err := design.Paginate(doc.GetAccounts(), (*typesv1.CloudAccount).GetAccountId, design.Ascending,
		req.GetPageSize(), req.GetPageToken(), "accounts/"+req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.ListAccountsResponse{Accounts: page, NextPageToken: next}, nil
}

// GetAccount implements designv1.DesignServiceServer.
func (s *DesignServer) GetAccount(ctx context.Context, req *designv1.GetAccountRequest) (*designv1.GetAccountResponse, error) {
	doc, err := s.tenantDoc(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	a, ok := findIn(doc.GetAccounts(), func(a *typesv1.CloudAccount) bool { return a.GetAccountId() == req.GetAccountId() })
	if !ok {
		return nil, fail(ctx, missing("cloud account %q of tenant %s", req.GetAccountId(), req.GetTenant()))
	}
	return &designv1.GetAccountResponse{Account: a}, nil
}

// PutAccount implements designv1.DesignServiceServer.
func (s *DesignServer) PutAccount(ctx context.Context, req *designv1.PutAccountRequest) (*designv1.PutAccountResponse, error) {
	a := &typesv1.CloudAccount{}
	if req.GetAccount() != nil {
		a = proto.Clone(req.GetAccount()).(*typesv1.CloudAccount)
	}
	if err := pathID("accountId", req.GetAccountId(), a.GetAccountId()); err != nil {
		return nil, fail(ctx, err)
	}
	a.AccountId = req.GetAccountId()
	doc, err := s.changeTenant(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_PutAccount{PutAccount: a}})
	if err != nil {
		return nil, fail(ctx, err)
	}
	out, _ := findIn(doc.GetAccounts(), func(x *typesv1.CloudAccount) bool { return x.GetAccountId() == a.GetAccountId() })
	return &designv1.PutAccountResponse{Account: out}, nil
}

// DeleteAccount implements designv1.DesignServiceServer.
func (s *DesignServer) DeleteAccount(ctx context.Context, req *designv1.DeleteAccountRequest) (*designv1.DeleteAccountResponse, error) {
	if _, err := s.changeTenant(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_DeleteAccount{DeleteAccount: req.GetAccountId()}}); err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.DeleteAccountResponse{}, nil
}

// ListWaves implements designv1.DesignServiceServer.
func (s *DesignServer) ListWaves(ctx context.Context, req *designv1.ListWavesRequest) (*designv1.ListWavesResponse, error) {
	doc, err := s.tenantDoc(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	page, next, err := design.Paginate(doc.GetWaves(), func(w *typesv1.Wave) string { return fmt.Sprintf("%03d", w.GetNumber()) },
		design.Ascending, req.GetPageSize(), req.GetPageToken(), "waves/"+req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.ListWavesResponse{Waves: page, NextPageToken: next}, nil
}

// GetWave implements designv1.DesignServiceServer.
func (s *DesignServer) GetWave(ctx context.Context, req *designv1.GetWaveRequest) (*designv1.GetWaveResponse, error) {
	doc, err := s.tenantDoc(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	w, ok := findIn(doc.GetWaves(), func(w *typesv1.Wave) bool { return w.GetNumber() == req.GetWave() })
	if !ok {
		return nil, fail(ctx, missing("wave %d of tenant %s", req.GetWave(), req.GetTenant()))
	}
	return &designv1.GetWaveResponse{Wave: w}, nil
}

// PutWave implements designv1.DesignServiceServer.
func (s *DesignServer) PutWave(ctx context.Context, req *designv1.PutWaveRequest) (*designv1.PutWaveResponse, error) {
	w := &typesv1.Wave{}
	if req.GetDefinition() != nil {
		w = proto.Clone(req.GetDefinition()).(*typesv1.Wave)
	}
	if w.GetNumber() != 0 && w.GetNumber() != req.GetWave() {
		return nil, fail(ctx, pathID("number", strconv.Itoa(int(req.GetWave())), strconv.Itoa(int(w.GetNumber()))))
	}
	w.Number = req.GetWave()
	doc, err := s.changeTenant(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_PutWave{PutWave: w}})
	if err != nil {
		return nil, fail(ctx, renamed(err, map[string]string{"number": "wave"}))
	}
	out, _ := findIn(doc.GetWaves(), func(x *typesv1.Wave) bool { return x.GetNumber() == w.GetNumber() })
	return &designv1.PutWaveResponse{Wave: out}, nil
}

// DeleteWave implements designv1.DesignServiceServer.
func (s *DesignServer) DeleteWave(ctx context.Context, req *designv1.DeleteWaveRequest) (*designv1.DeleteWaveResponse, error) {
	if _, err := s.changeTenant(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_DeleteWave{DeleteWave: req.GetWave()}}); err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.DeleteWaveResponse{}, nil
}

// SkipNextOccurrence implements designv1.DesignServiceServer.
func (s *DesignServer) SkipNextOccurrence(ctx context.Context, req *designv1.SkipNextOccurrenceRequest) (*designv1.SkipNextOccurrenceResponse, error) {
	w, err := writeOf(ctx, req.GetReason())
	if err != nil {
		return nil, fail(ctx, err)
	}
	wave, occ, rev, err := s.app.SkipNext(ctx, req.GetTenant(), req.GetWave(), w)
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	return &designv1.SkipNextOccurrenceResponse{Wave: wave, Skipped: occurrenceOut(occ)}, nil
}

// PreviewWave implements designv1.DesignServiceServer.
func (s *DesignServer) PreviewWave(ctx context.Context, req *designv1.PreviewWaveRequest) (*designv1.PreviewWaveResponse, error) {
	occs, rev, err := s.app.PreviewWave(ctx, req.GetTenant(), req.GetWave(), timeOf(req.GetFrom()), req.GetCount())
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	return &designv1.PreviewWaveResponse{Occurrences: occurrencesOut(occs)}, nil
}

// PreviewSchedule implements designv1.DesignServiceServer.
func (s *DesignServer) PreviewSchedule(ctx context.Context, req *designv1.PreviewScheduleRequest) (*designv1.PreviewScheduleResponse, error) {
	occs, err := s.app.PreviewSchedule(ctx, req.GetSchedule(), req.GetFreezes(), timeOf(req.GetFrom()), req.GetCount())
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.PreviewScheduleResponse{Occurrences: occurrencesOut(occs)}, nil
}

// ListFreezes implements designv1.DesignServiceServer.
func (s *DesignServer) ListFreezes(ctx context.Context, req *designv1.ListFreezesRequest) (*designv1.ListFreezesResponse, error) {
	fs, err := s.freezesOf(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	page, next, err := design.Paginate(fs, (*typesv1.Freeze).GetId, design.Ascending, req.GetPageSize(), req.GetPageToken(), "freezes/"+req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.ListFreezesResponse{Freezes: page, NextPageToken: next}, nil
}

// GetFreeze implements designv1.DesignServiceServer.
func (s *DesignServer) GetFreeze(ctx context.Context, req *designv1.GetFreezeRequest) (*designv1.GetFreezeResponse, error) {
	fs, err := s.freezesOf(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	f, ok := findIn(fs, func(f *typesv1.Freeze) bool { return f.GetId() == req.GetFreezeId() })
	if !ok {
		return nil, fail(ctx, missing("freeze %q of %s", req.GetFreezeId(), owner(req.GetTenant())))
	}
	return &designv1.GetFreezeResponse{Freeze: f}, nil
}

func owner(tenant string) string {
	if tenant == "" {
		return "the provider"
	}
	return "tenant " + tenant
}

// CreateFreeze implements designv1.DesignServiceServer.
func (s *DesignServer) CreateFreeze(ctx context.Context, req *designv1.CreateFreezeRequest) (*designv1.CreateFreezeResponse, error) {
	f := &typesv1.Freeze{}
	if req.GetFreeze() != nil {
		f = proto.Clone(req.GetFreeze()).(*typesv1.Freeze)
	}
	op := &typesv1.Operation{Kind: &typesv1.Operation_AddFreeze{AddFreeze: f}}
	fs, err := s.changeFreezes(ctx, req.GetTenant(), req.GetReason(), op)
	if err != nil {
		return nil, fail(ctx, err)
	}
	out, _ := findIn(fs, func(x *typesv1.Freeze) bool { return x.GetId() == f.GetId() })
	return &designv1.CreateFreezeResponse{Freeze: out}, nil
}

// PutFreeze implements designv1.DesignServiceServer.
func (s *DesignServer) PutFreeze(ctx context.Context, req *designv1.PutFreezeRequest) (*designv1.PutFreezeResponse, error) {
	f := &typesv1.Freeze{}
	if req.GetFreeze() != nil {
		f = proto.Clone(req.GetFreeze()).(*typesv1.Freeze)
	}
	if err := pathID("id", req.GetFreezeId(), f.GetId()); err != nil {
		return nil, fail(ctx, err)
	}
	f.Id = req.GetFreezeId()
	fs, err := s.changeFreezes(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_PutFreeze{PutFreeze: f}})
	if err != nil {
		return nil, fail(ctx, err)
	}
	out, _ := findIn(fs, func(x *typesv1.Freeze) bool { return x.GetId() == f.GetId() })
	return &designv1.PutFreezeResponse{Freeze: out}, nil
}

// DeleteFreeze implements designv1.DesignServiceServer.
func (s *DesignServer) DeleteFreeze(ctx context.Context, req *designv1.DeleteFreezeRequest) (*designv1.DeleteFreezeResponse, error) {
	if _, err := s.changeFreezes(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_DeleteFreeze{DeleteFreeze: req.GetFreezeId()}}); err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.DeleteFreezeResponse{}, nil
}

// ListFreezeInstances implements designv1.DesignServiceServer.
func (s *DesignServer) ListFreezeInstances(ctx context.Context, req *designv1.ListFreezeInstancesRequest) (*designv1.ListFreezeInstancesResponse, error) {
	ins, rev, err := s.app.FreezeInstances(ctx, req.GetTenant(), req.GetFreezeId(), timeOf(req.GetFrom()), timeOf(req.GetTo()))
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	resp := &designv1.ListFreezeInstancesResponse{Instances: make([]*designv1.FreezeInstance, len(ins))}
	for i, in := range ins {
		resp.Instances[i] = &designv1.FreezeInstance{Start: stamp(in.Start), End: stamp(in.End)}
	}
	return resp, nil
}

// ImportFreezes implements designv1.DesignServiceServer.
func (s *DesignServer) ImportFreezes(ctx context.Context, req *designv1.ImportFreezesRequest) (*designv1.ImportFreezesResponse, error) {
	imp := &typesv1.IcsImport{Ics: req.GetIcs(), TimeZone: req.GetTimeZone(), Policy: req.GetPolicy(), DeferDays: req.GetDeferDays()}
	imported, err := design.ICSFreezes("", imp)
	if err != nil {
		return nil, fail(ctx, err)
	}
	fs, err := s.changeFreezes(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_ImportIcs{ImportIcs: imp}})
	if err != nil {
		return nil, fail(ctx, err)
	}
	resp := &designv1.ImportFreezesResponse{}
	for _, f := range imported {
		if out, ok := findIn(fs, func(x *typesv1.Freeze) bool { return x.GetId() == f.GetId() }); ok {
			resp.Freezes = append(resp.Freezes, out)
		}
	}
	return resp, nil
}

// ListOverrides implements designv1.DesignServiceServer.
func (s *DesignServer) ListOverrides(ctx context.Context, req *designv1.ListOverridesRequest) (*designv1.ListOverridesResponse, error) {
	doc, err := s.tenantDoc(ctx, req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	page, next, err := design.Paginate(doc.GetOverrides(), func(o *typesv1.Override) string { return fmt.Sprintf("%03d/%s", o.GetWave(), o.GetKey()) },
		design.Ascending, req.GetPageSize(), req.GetPageToken(), "overrides/"+req.GetTenant())
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.ListOverridesResponse{Overrides: page, NextPageToken: next}, nil
}

// PutOverride implements designv1.DesignServiceServer.
func (s *DesignServer) PutOverride(ctx context.Context, req *designv1.PutOverrideRequest) (*designv1.PutOverrideResponse, error) {
	o := &typesv1.Override{Wave: req.GetWave(), Key: req.GetKey(), Reason: req.GetReason()}
	doc, err := s.changeTenant(ctx, req.GetTenant(), req.GetReason(), &typesv1.Operation{Kind: &typesv1.Operation_PutOverride{PutOverride: o}})
	if err != nil {
		return nil, fail(ctx, err)
	}
	out, _ := findIn(doc.GetOverrides(), func(x *typesv1.Override) bool { return x.GetWave() == o.GetWave() && x.GetKey() == o.GetKey() })
	return &designv1.PutOverrideResponse{Override: out}, nil
}

// DeleteOverride implements designv1.DesignServiceServer.
func (s *DesignServer) DeleteOverride(ctx context.Context, req *designv1.DeleteOverrideRequest) (*designv1.DeleteOverrideResponse, error) {
	op := &typesv1.Operation{Kind: &typesv1.Operation_DeleteOverride{DeleteOverride: &typesv1.OverrideRef{Wave: req.GetWave(), Key: req.GetKey()}}}
	if _, err := s.changeTenant(ctx, req.GetTenant(), req.GetReason(), op); err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.DeleteOverrideResponse{}, nil
}

// CreateServiceRequest implements designv1.DesignServiceServer.
func (s *DesignServer) CreateServiceRequest(ctx context.Context, req *designv1.CreateServiceRequestRequest) (*designv1.CreateServiceRequestResponse, error) {
	w, err := writeOf(ctx, req.GetReason())
	if err != nil {
		return nil, fail(ctx, err)
	}
	r, rev, err := s.app.RaiseRequest(ctx, req.GetTenant(), w, req.GetOperations())
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	return &designv1.CreateServiceRequestResponse{ServiceRequest: r}, nil
}

// GetServiceRequest implements designv1.DesignServiceServer.
func (s *DesignServer) GetServiceRequest(ctx context.Context, req *designv1.GetServiceRequestRequest) (*designv1.GetServiceRequestResponse, error) {
	r, rev, err := s.app.Request(ctx, req.GetTenant(), req.GetRequestId())
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	return &designv1.GetServiceRequestResponse{ServiceRequest: r}, nil
}

// ListServiceRequests implements designv1.DesignServiceServer.
func (s *DesignServer) ListServiceRequests(ctx context.Context, req *designv1.ListServiceRequestsRequest) (*designv1.ListServiceRequestsResponse, error) {
	all, rev, err := s.app.Requests(ctx, req.GetTenant(), req.GetState())
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	page, next, err := design.Paginate(all, libdesign.RequestOrder, design.Descending,
		req.GetPageSize(), req.GetPageToken(), "requests/"+req.GetTenant()+"/"+req.GetState().String())
	if err != nil {
		return nil, fail(ctx, err)
	}
	return &designv1.ListServiceRequestsResponse{ServiceRequests: page, NextPageToken: next}, nil
}

// ApplyServiceRequest implements designv1.DesignServiceServer.
func (s *DesignServer) ApplyServiceRequest(ctx context.Context, req *designv1.ApplyServiceRequestRequest) (*designv1.ApplyServiceRequestResponse, error) {
	r, err := s.closeRequest(ctx, req.GetTenant(), req.GetRequestId(), design.ActionApply, "")
	if err != nil {
		return nil, err
	}
	return &designv1.ApplyServiceRequestResponse{ServiceRequest: r}, nil
}

// RejectServiceRequest implements designv1.DesignServiceServer.
func (s *DesignServer) RejectServiceRequest(ctx context.Context, req *designv1.RejectServiceRequestRequest) (*designv1.RejectServiceRequestResponse, error) {
	r, err := s.closeRequest(ctx, req.GetTenant(), req.GetRequestId(), design.ActionReject, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &designv1.RejectServiceRequestResponse{ServiceRequest: r}, nil
}

// WithdrawServiceRequest implements designv1.DesignServiceServer.
func (s *DesignServer) WithdrawServiceRequest(ctx context.Context, req *designv1.WithdrawServiceRequestRequest) (*designv1.WithdrawServiceRequestResponse, error) {
	r, err := s.closeRequest(ctx, req.GetTenant(), req.GetRequestId(), design.ActionWithdraw, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &designv1.WithdrawServiceRequestResponse{ServiceRequest: r}, nil
}

func (s *DesignServer) closeRequest(ctx context.Context, tenant, id string, act design.Action, reason string) (*typesv1.ServiceRequest, error) {
	w, err := writeOf(ctx, reason)
	if err != nil {
		return nil, fail(ctx, err)
	}
	r, rev, err := s.app.CloseRequest(ctx, tenant, id, act, w)
	if err != nil {
		return nil, fail(ctx, err)
	}
	setETag(ctx, rev)
	return r, nil
}
