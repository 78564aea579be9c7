// Package authsvc serves patchwave.credentials.v1.CredentialsService, the gateway's own API: the caller's
// identity, API keys (over the apikeys store) and integrator credentials (over an Integrators
// issuer). The gateway calls it in process behind its guard, so every method's rule is checked
// before it runs and every change is audited; the server adds what the rule cannot say: a
// credential never gets a role its creator could not grant, and a tenant must exist.
package authsvc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/grpcerr"
	credentialsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/credentials/v1"
	"github.com/patchwave/patchwave/services/gateway/internal/apikeys"
)

// Keys is the API key store (*apikeys.Store).
type Keys interface {
	Create(ctx context.Context, req apikeys.CreateRequest) (apikeys.Record, string, error)
	Get(ctx context.Context, tenant, id string) (apikeys.Record, error)
	Revoke(ctx context.Context, tenant, id, by, reason string) (apikeys.Record, error)
	List(tenant string, pageSize int, pageToken string) ([]apikeys.Record, string, error)
}

// Tenants says whether a tenant is in the service design (libs/design's View).
type Tenants interface {
	RequireTenant(ctx context.Context, tenant string) error
}

// Integrators issues NATS credentials that read one tenant's event stream. libs/natsauth's
// Integrators is the implementation (an adapter maps its types onto these).
type Integrators interface {
	// Issue provisions a credential and returns it with its credentials file.
	Issue(ctx context.Context, tenant, name string, ttl time.Duration, deliverNew bool) (*credentialsv1.IntegratorCredential, []byte, error)
	// List returns a tenant's credentials, by name.
	List(ctx context.Context, tenant string) ([]*credentialsv1.IntegratorCredential, error)
	// Revoke shuts a credential out; an unknown one is apierr.ErrNotFound.
	Revoke(ctx context.Context, tenant, name string) error
}

// Server is the CredentialsService.
type Server struct {
	credentialsv1.UnimplementedCredentialsServiceServer
	keys        Keys
	tenants     Tenants
	integrators Integrators
	clock       func() time.Time
}

// New returns the service. integrators may be nil: issuing is then refused (FailedPrecondition)
// until the gateway is given an issuer.
func New(keys Keys, tenants Tenants, integrators Integrators, clock func() time.Time) *Server {
	if clock == nil {
		clock = time.Now
	}
	return &Server{keys: keys, tenants: tenants, integrators: integrators, clock: clock}
}

func caller(ctx context.Context) (*auth.Identity, error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, grpcerr.ToStatus(fmt.Errorf("%w: the call carries no credential", apierr.ErrUnauthenticated))
	}
	return id, nil
}

// requireTenant checks a tenant route's tenant ("" is the provider).
func (s *Server) requireTenant(ctx context.Context, tenant string) error {
	if tenant == "" {
		return nil
	}
	return s.tenants.RequireTenant(ctx, tenant)
}

// WhoAmI answers the caller's identity.
func (s *Server) WhoAmI(ctx context.Context, _ *credentialsv1.WhoAmIRequest) (*credentialsv1.WhoAmIResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	resp := &credentialsv1.WhoAmIResponse{Subject: id.Subject, Tenant: id.Tenant, Roles: id.RoleNames(),
		CredentialId: id.CredentialID, CredentialKind: id.CredentialKind}
	if !id.Expires.IsZero() {
		resp.ExpireTime = timestamppb.New(id.Expires)
	}
	for _, p := range id.Permissions() {
		resp.Permissions = append(resp.Permissions, string(p))
	}
	return resp, nil
}

// CreateAPIKey makes a key with roles the caller may grant.
func (s *Server) CreateAPIKey(ctx context.Context, req *credentialsv1.CreateAPIKeyRequest) (*credentialsv1.CreateAPIKeyResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	var v apierr.Violations
	ttl, err := apikeys.ParseTTL(req.GetTtl())
	if err != nil {
		v.Add("ttl", err.Error())
	}
	var roles []auth.Role
	for i, name := range req.GetRoles() {
		r, err := auth.ParseRole(name)
		if err != nil {
			v.Add(fmt.Sprintf("roles[%d]", i), err.Error())
			continue
		}
		roles = append(roles, r)
	}
	if err := v.Err(); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	for _, r := range roles {
		if !id.MayGrant(r, req.GetTenant()) {
			return nil, grpcerr.ToStatus(fmt.Errorf("%w: %s may not give a key the role %s%s",
				apierr.ErrPermissionDenied, id.Subject, r, forTenant(req.GetTenant())))
		}
	}
	if err := s.requireTenant(ctx, req.GetTenant()); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	rec, key, err := s.keys.Create(ctx, apikeys.CreateRequest{Tenant: req.GetTenant(), Name: req.GetName(), Roles: roles, TTL: ttl, CreatedBy: id.Subject})
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &credentialsv1.CreateAPIKeyResponse{ApiKey: s.message(rec), Secret: key}, nil
}

func forTenant(t string) string {
	if t == "" {
		return " (a provider key)"
	}
	return " of tenant " + t
}

// ListAPIKeys lists a tenant's keys, newest first.
func (s *Server) ListAPIKeys(ctx context.Context, req *credentialsv1.ListAPIKeysRequest) (*credentialsv1.ListAPIKeysResponse, error) {
	if err := s.requireTenant(ctx, req.GetTenant()); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	recs, next, err := s.keys.List(req.GetTenant(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	resp := &credentialsv1.ListAPIKeysResponse{NextPageToken: next}
	for _, r := range recs {
		resp.ApiKeys = append(resp.ApiKeys, s.message(r))
	}
	return resp, nil
}

// GetAPIKey returns one key.
func (s *Server) GetAPIKey(ctx context.Context, req *credentialsv1.GetAPIKeyRequest) (*credentialsv1.GetAPIKeyResponse, error) {
	if err := s.requireTenant(ctx, req.GetTenant()); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	r, err := s.keys.Get(ctx, req.GetTenant(), req.GetKeyId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &credentialsv1.GetAPIKeyResponse{ApiKey: s.message(r)}, nil
}

// RevokeAPIKey revokes one key.
func (s *Server) RevokeAPIKey(ctx context.Context, req *credentialsv1.RevokeAPIKeyRequest) (*credentialsv1.RevokeAPIKeyResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.requireTenant(ctx, req.GetTenant()); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	r, err := s.keys.Revoke(ctx, req.GetTenant(), req.GetKeyId(), id.Subject, req.GetReason())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &credentialsv1.RevokeAPIKeyResponse{ApiKey: s.message(r)}, nil
}

func (s *Server) message(r apikeys.Record) *credentialsv1.APIKey {
	m := &credentialsv1.APIKey{
		KeyId: r.ID, Tenant: r.Tenant, Name: r.Name, Subject: r.Subject, CreatedBy: r.CreatedBy,
		CreateTime: timestamppb.New(r.CreateTime), ExpireTime: timestamppb.New(r.ExpireTime),
		RevokedBy: r.RevokedBy, RevokeReason: r.RevokeReason,
	}
	for _, role := range r.Roles {
		m.Roles = append(m.Roles, string(role))
	}
	if r.RevokeTime != nil {
		m.RevokeTime = timestamppb.New(*r.RevokeTime)
	}
	if r.LastUseTime != nil {
		m.LastUseTime = timestamppb.New(*r.LastUseTime)
	}
	switch r.State(s.clock()) {
	case "revoked":
		m.State = credentialsv1.APIKeyState_API_KEY_STATE_REVOKED
	case "expired":
		m.State = credentialsv1.APIKeyState_API_KEY_STATE_EXPIRED
	default:
		m.State = credentialsv1.APIKeyState_API_KEY_STATE_ACTIVE
	}
	return m
}

// errNoIssuer refuses integrator calls on a gateway without an issuer.
var errNoIssuer = fmt.Errorf("%w: this gateway issues no integrator credentials (it needs the NATS account's signing key: see services/gateway/README.md)", apierr.ErrFailedPrecondition)

// IssueIntegratorCredential issues NATS credentials for the tenant's event stream.
func (s *Server) IssueIntegratorCredential(ctx context.Context, req *credentialsv1.IssueIntegratorCredentialRequest) (*credentialsv1.IssueIntegratorCredentialResponse, error) {
	ttl, err := apikeys.ParseTTL(req.GetTtl())
	if err != nil {
		var v apierr.Violations
		v.Add("ttl", err.Error())
		return nil, grpcerr.ToStatus(v.Err())
	}
	if err := s.tenantForIntegrators(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	cred, creds, err := s.integrators.Issue(ctx, req.GetTenant(), req.GetName(), ttl, req.GetDeliverNew())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &credentialsv1.IssueIntegratorCredentialResponse{Credential: cred, Creds: string(creds)}, nil
}

// ListIntegratorCredentials lists a tenant's integrator credentials.
func (s *Server) ListIntegratorCredentials(ctx context.Context, req *credentialsv1.ListIntegratorCredentialsRequest) (*credentialsv1.ListIntegratorCredentialsResponse, error) {
	if err := s.tenantForIntegrators(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	creds, err := s.integrators.List(ctx, req.GetTenant())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &credentialsv1.ListIntegratorCredentialsResponse{Credentials: creds}, nil
}

// RevokeIntegratorCredential shuts an integrator out.
func (s *Server) RevokeIntegratorCredential(ctx context.Context, req *credentialsv1.RevokeIntegratorCredentialRequest) (*credentialsv1.RevokeIntegratorCredentialResponse, error) {
	if err := s.tenantForIntegrators(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	if err := s.integrators.Revoke(ctx, req.GetTenant(), req.GetName()); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &credentialsv1.RevokeIntegratorCredentialResponse{}, nil
}

// tenantForIntegrators checks an integrator route: a tenant in the design, and an issuer.
func (s *Server) tenantForIntegrators(ctx context.Context, tenant string) error {
	if tenant == "" {
		var v apierr.Violations
		v.Add("tenant", "required: integrator credentials belong to one tenant")
		return grpcerr.ToStatus(v.Err())
	}
	if err := s.requireTenant(ctx, tenant); err != nil {
		return grpcerr.ToStatus(err)
	}
	if s.integrators == nil {
		return grpcerr.ToStatus(errNoIssuer)
	}
	return nil
}
