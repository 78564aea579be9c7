package auth_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
)

func identity(tenant string, roles ...auth.Role) *auth.Identity {
	return &auth.Identity{Subject: "someone", Tenant: tenant, Roles: roles, CredentialID: "k1", CredentialKind: auth.KindAPIKey}
}

func rule(t *testing.T, method string) auth.Rule {
	t.Helper()
	r, err := auth.RuleOf(method)
	require.NoError(t, err)
	return r
}

func TestAuthorize(t *testing.T) {
	const (
		putWave     = "/patchwave.design.v1.DesignService/PutWave"
		getWave     = "/patchwave.design.v1.DesignService/GetWave"
		listFreezes = "/patchwave.design.v1.DesignService/ListFreezes"
		putTenant   = "/patchwave.design.v1.DesignService/PutTenant"
		listTenants = "/patchwave.design.v1.DesignService/ListTenants"
		baselines   = "/patchwave.catalog.v1.CatalogService/ListBaselines"
		applyReq    = "/patchwave.design.v1.DesignService/ApplyServiceRequest"
	)
	acmeWave := &designv1.PutWaveRequest{Tenant: "acme", Wave: 1}
	tests := []struct {
		name    string
		id      *auth.Identity
		method  string
		req     proto.Message
		wantErr error
		wantMsg string
	}{
		{name: "no identity is unauthenticated", id: nil, method: getWave, req: &designv1.GetWaveRequest{Tenant: "acme"}, wantErr: apierr.ErrUnauthenticated},
		{name: "an operator changes any tenant", id: identity("", auth.RoleOperator), method: putWave, req: &designv1.PutWaveRequest{Tenant: "globex"}},
		{name: "an operator changes the provider-wide freezes", id: identity("", auth.RoleOperator), method: "/patchwave.design.v1.DesignService/CreateFreeze", req: &designv1.CreateFreezeRequest{}},
		{name: "a tenant admin changes its own tenant", id: identity("acme", auth.RoleTenantAdmin), method: putWave, req: acmeWave},
		{name: "a tenant viewer reads its own tenant", id: identity("acme", auth.RoleTenantViewer), method: getWave, req: &designv1.GetWaveRequest{Tenant: "acme"}},
		{
			name: "a tenant viewer changes nothing", id: identity("acme", auth.RoleTenantViewer), method: putWave, req: acmeWave,
			wantErr: apierr.ErrPermissionDenied, wantMsg: "PutWave needs permission design.write, which the roles tenant-viewer do not grant (granted to operator, tenant-admin)",
		},
		{
			name: "another tenant is not found, as a tenant that does not exist", id: identity("acme", auth.RoleTenantAdmin), method: getWave,
			req: &designv1.GetWaveRequest{Tenant: "globex"}, wantErr: apierr.ErrNotFound, wantMsg: "not found: tenant globex is not in the service design",
		},
		{
			name: "another tenant is not found even where the role would be denied", id: identity("acme", auth.RoleTenantViewer), method: putWave,
			req: &designv1.PutWaveRequest{Tenant: "globex"}, wantErr: apierr.ErrNotFound,
		},
		{
			name: "the provider-wide resources are denied to a tenant credential", id: identity("acme", auth.RoleTenantAdmin), method: listFreezes,
			req: &designv1.ListFreezesRequest{}, wantErr: apierr.ErrPermissionDenied, wantMsg: "provider-wide",
		},
		{name: "a tenant admin does not create tenants", id: identity("acme", auth.RoleTenantAdmin), method: putTenant, req: &designv1.PutTenantRequest{Tenant: "acme"}, wantErr: apierr.ErrPermissionDenied},
		{name: "a tenant admin does not apply service requests", id: identity("acme", auth.RoleTenantAdmin), method: applyReq, req: &designv1.ApplyServiceRequestRequest{Tenant: "acme"}, wantErr: apierr.ErrPermissionDenied},
		{name: "a tenant admin does not list the tenants", id: identity("acme", auth.RoleTenantAdmin), method: listTenants, req: &designv1.ListTenantsRequest{}, wantErr: apierr.ErrPermissionDenied},
		{name: "a tenant viewer reads the catalog", id: identity("acme", auth.RoleTenantViewer), method: baselines, req: &catalogv1.ListBaselinesRequest{}},
		{name: "a certifier reads the catalog", id: identity("", auth.RoleCertifier), method: baselines, req: &catalogv1.ListBaselinesRequest{}},
		{name: "a certifier does not read a tenant's design", id: identity("", auth.RoleCertifier), method: getWave, req: &designv1.GetWaveRequest{Tenant: "acme"}, wantErr: apierr.ErrPermissionDenied},
		{name: "an integrator reads nothing over REST but who it is", id: identity("acme", auth.RoleIntegrator), method: getWave, req: &designv1.GetWaveRequest{Tenant: "acme"}, wantErr: apierr.ErrPermissionDenied},
		{name: "an integrator asks who it is", id: identity("acme", auth.RoleIntegrator), method: "/patchwave.credentials.v1.CredentialsService/WhoAmI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := auth.Authorize(tt.id, rule(t, tt.method), tt.req)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			require.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestCallTenant(t *testing.T) {
	op := identity("", auth.RoleOperator)
	require.Equal(t, "globex", auth.CallTenant(op, rule(t, "/patchwave.design.v1.DesignService/PutWave"), &designv1.PutWaveRequest{Tenant: "globex"}))
	require.Equal(t, auth.ProviderTenant, auth.CallTenant(op, rule(t, "/patchwave.design.v1.DesignService/CreateFreeze"), &designv1.CreateFreezeRequest{}))
	require.Equal(t, auth.ProviderTenant, auth.CallTenant(op, rule(t, "/patchwave.design.v1.DesignService/PreviewSchedule"), nil))
	require.Equal(t, "acme", auth.CallTenant(identity("acme", auth.RoleTenantAdmin), rule(t, "/patchwave.design.v1.DesignService/PreviewSchedule"), nil))
}

func TestIdentityValidate(t *testing.T) {
	tests := []struct {
		name    string
		id      auth.Identity
		wantErr string
	}{
		{name: "an operator is bound to no tenant", id: auth.Identity{Subject: "ops", Roles: []auth.Role{auth.RoleOperator}}},
		{name: "a tenant admin is bound to its tenant", id: auth.Identity{Subject: "dana", Tenant: "acme", Roles: []auth.Role{auth.RoleTenantAdmin, auth.RoleTenantViewer}}},
		{name: "a subject is required", id: auth.Identity{Roles: []auth.Role{auth.RoleOperator}}, wantErr: "subject: required"},
		{name: "a role is required", id: auth.Identity{Subject: "x"}, wantErr: "roles: at least one"},
		{name: "an unknown role is named", id: auth.Identity{Subject: "x", Roles: []auth.Role{"admin"}}, wantErr: `unknown role "admin"`},
		{name: "provider and tenant roles do not mix", id: auth.Identity{Subject: "x", Tenant: "acme", Roles: []auth.Role{auth.RoleOperator, auth.RoleTenantAdmin}}, wantErr: "do not mix"},
		{name: "an operator bound to a tenant is refused", id: auth.Identity{Subject: "x", Tenant: "acme", Roles: []auth.Role{auth.RoleOperator}}, wantErr: "tenant: must be empty"},
		{name: "a tenant role needs a tenant", id: auth.Identity{Subject: "x", Roles: []auth.Role{auth.RoleTenantViewer}}, wantErr: "tenant: required"},
		{name: "the provider tenant is reserved", id: auth.Identity{Subject: "x", Tenant: "provider", Roles: []auth.Role{auth.RoleTenantViewer}}, wantErr: "reserved"},
		{name: "a subject must be printable", id: auth.Identity{Subject: "a\nb", Roles: []auth.Role{auth.RoleOperator}}, wantErr: "printable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.id.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestMayGrant(t *testing.T) {
	op, admin, viewer := identity("", auth.RoleOperator), identity("acme", auth.RoleTenantAdmin), identity("acme", auth.RoleTenantViewer)
	require.True(t, op.MayGrant(auth.RoleOperator, ""))
	require.True(t, op.MayGrant(auth.RoleTenantAdmin, "globex"))
	require.False(t, op.MayGrant(auth.RoleTenantAdmin, ""), "a tenant role needs a tenant")
	require.False(t, op.MayGrant(auth.RoleCertifier, "acme"), "a provider role has none")
	require.True(t, admin.MayGrant(auth.RoleIntegrator, "acme"))
	require.False(t, admin.MayGrant(auth.RoleTenantAdmin, "globex"), "only its own tenant")
	require.False(t, admin.MayGrant(auth.RoleOperator, ""), "never more than a tenant")
	require.False(t, viewer.MayGrant(auth.RoleTenantViewer, "acme"))
}

func TestIdentityMetadataRoundTrip(t *testing.T) {
	id := identity("acme", auth.RoleTenantAdmin, auth.RoleTenantViewer)
	ctx := metadata.AppendToOutgoingContext(t.Context(), auth.MetadataSubject, "forged", "x-other", "kept")
	ctx = auth.OutgoingContext(ctx, id)
	md, _ := metadata.FromOutgoingContext(ctx)
	require.Equal(t, []string{"kept"}, md.Get("x-other"))
	got, err := auth.FromMetadata(md)
	require.NoError(t, err)
	require.Equal(t, id.Subject, got.Subject, "the identity replaces what the metadata had")
	require.Equal(t, id.Tenant, got.Tenant)
	require.Equal(t, id.Roles, got.Roles)
	require.Equal(t, id.CredentialID, got.CredentialID)
	require.Equal(t, id.CredentialKind, got.CredentialKind)

	_, err = auth.FromMetadata(metadata.MD{})
	require.ErrorIs(t, err, auth.ErrNoIdentity)
	_, err = auth.FromMetadata(metadata.Pairs(auth.MetadataSubject, "a", auth.MetadataSubject, "b"))
	require.ErrorContains(t, err, "given 2 times")
	_, err = auth.FromMetadata(metadata.Pairs(auth.MetadataSubject, "a", auth.MetadataRoles, "operator", auth.MetadataTenant, "acme"))
	require.ErrorContains(t, err, "tenant: must be empty")
}

func TestPermissionsOfRoles(t *testing.T) {
	require.Equal(t, auth.Permissions(), identity("", auth.RoleOperator).Permissions(), "an operator has every permission")
	require.Equal(t, []auth.Permission{"self.read"}, identity("acme", auth.RoleIntegrator).Permissions())
	for _, p := range identity("acme", auth.RoleTenantViewer).Permissions() {
		require.Regexp(t, `\.(read|preview)$`, string(p), "a viewer only reads")
	}
}
