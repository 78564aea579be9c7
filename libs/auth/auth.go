// Package auth is who may do what in Patchwave's APIs: the roles of DOMAIN.md ("People"), the
// permissions they grant, the caller's Identity, and the access Rule every rpc declares with
// the patchwave.auth.v1.rule method option. Authorize is the one decision, taken by the gateway
// before it forwards a call and again by every service's gRPC interceptor (libs/host), so the
// gateway is not the only guard.
//
// The decision, in order:
//
//   - no identity: Unauthenticated;
//   - a tenant-scoped method (the rule names a tenant field) called by an identity bound to a
//     tenant about another tenant: NotFound, with the message a tenant that does not exist
//     gets, so a caller cannot tell the two apart (404 everywhere, never 403);
//   - about the provider-wide resource (the tenant field empty) by an identity bound to a
//     tenant: PermissionDenied;
//   - a permission none of the identity's roles grants: PermissionDenied.
//
// The permission table (permissions.go) is closed: a rule naming a permission it does not
// know fails the registry test and the start of every gateway and service.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Role is one of the roles of DOMAIN.md ("People").
type Role string

// Roles. Operator and certifier are provider roles (an identity with one is bound to no
// tenant); the others are tenant roles (the identity is bound to exactly one tenant).
const (
	// RoleOperator is the provider's staff: every permission, every tenant.
	RoleOperator Role = "operator"
	// RoleCertifier verifies and certifies patches: the catalog's actions.
	RoleCertifier Role = "certifier"
	// RoleTenantAdmin changes its own tenant's design (directly or by service request),
	// approvals, restores, API keys and integrator credentials, and reads its tenant.
	RoleTenantAdmin Role = "tenant-admin"
	// RoleTenantViewer reads its own tenant.
	RoleTenantViewer Role = "tenant-viewer"
	// RoleIntegrator reads its own tenant's event stream (over NATS); over REST it can only
	// ask who it is.
	RoleIntegrator Role = "integrator"
)

// Roles returns every role, provider roles first.
func Roles() []Role {
	return []Role{RoleOperator, RoleCertifier, RoleTenantAdmin, RoleTenantViewer, RoleIntegrator}
}

// ParseRole returns the role named s, or an error naming the valid ones.
func ParseRole(s string) (Role, error) {
	r := Role(strings.TrimSpace(s))
	if slices.Contains(Roles(), r) {
		return r, nil
	}
	names := make([]string, 0, 5)
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return "", fmt.Errorf("unknown role %q: must be one of %s", s, strings.Join(names, ", "))
}

// Provider reports whether r is a provider role (bound to no tenant).
func (r Role) Provider() bool { return r == RoleOperator || r == RoleCertifier }

// ProviderTenant is the reserved tenant id of provider-wide resources and audit events.
const ProviderTenant = "provider"

// Credential kinds.
const (
	// KindAPIKey is an API key of the gateway's credential store.
	KindAPIKey = "api_key"
	// KindJWT is a bearer JWT (HS256 with a local key, or RS256/ES256 from an OIDC provider).
	KindJWT = "jwt"
)

// Identity is an authenticated caller.
type Identity struct {
	// Subject is who calls; it is recorded as the actor of every change. Required.
	Subject string
	// Tenant the identity is bound to; empty for provider roles.
	Tenant string
	// Roles, at least one.
	Roles []Role
	// CredentialID names the credential: an API key's id, or "jwt:<token id>".
	CredentialID string
	// CredentialKind is KindAPIKey or KindJWT.
	CredentialKind string
	// Expires is when the credential stops being accepted; zero when unknown (forwarded
	// identities).
	Expires time.Time
}

// maxSubject bounds a subject (it is recorded in events and documents).
const maxSubject = 128

// Validate reports every problem with the identity: a subject, known roles, and a tenant
// exactly when the roles are tenant roles (provider and tenant roles never mix).
func (id Identity) Validate() error {
	var errs []error
	switch {
	case id.Subject == "":
		errs = append(errs, errors.New("subject: required"))
	case len(id.Subject) > maxSubject:
		errs = append(errs, fmt.Errorf("subject: at most %d characters, got %d", maxSubject, len(id.Subject)))
	case strings.IndexFunc(id.Subject, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		errs = append(errs, errors.New("subject: must be printable"))
	}
	if len(id.Roles) == 0 {
		errs = append(errs, errors.New("roles: at least one of operator, certifier, tenant-admin, tenant-viewer, integrator"))
	}
	provider, tenant := 0, 0
	for _, r := range id.Roles {
		if _, err := ParseRole(string(r)); err != nil {
			errs = append(errs, fmt.Errorf("roles: %w", err))
			continue
		}
		if r.Provider() {
			provider++
		} else {
			tenant++
		}
	}
	switch {
	case provider > 0 && tenant > 0:
		errs = append(errs, errors.New("roles: provider roles (operator, certifier) and tenant roles do not mix"))
	case provider > 0 && id.Tenant != "":
		errs = append(errs, fmt.Errorf("tenant: must be empty for the provider roles, got %q", id.Tenant))
	case tenant > 0 && id.Tenant == "":
		errs = append(errs, errors.New("tenant: required for the tenant roles (tenant-admin, tenant-viewer, integrator)"))
	case id.Tenant == ProviderTenant:
		errs = append(errs, fmt.Errorf("tenant: %q is reserved", ProviderTenant))
	}
	return errors.Join(errs...)
}

// Has reports whether the identity has role r.
func (id Identity) Has(r Role) bool { return slices.Contains(id.Roles, r) }

// Can reports whether one of the identity's roles grants p.
func (id Identity) Can(p Permission) bool {
	for _, r := range grants[p] {
		if id.Has(r) {
			return true
		}
	}
	return false
}

// Permissions returns every permission the identity's roles grant, sorted.
func (id Identity) Permissions() []Permission {
	var out []Permission
	for p := range grants {
		if id.Can(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// MayGrant reports whether the identity may give a credential role r for tenant (empty for a
// provider credential): an operator any role, a tenant admin the tenant roles of its own
// tenant, nobody else anything. A credential never gets more than its creator could grant.
func (id Identity) MayGrant(r Role, tenant string) bool {
	switch {
	case id.Has(RoleOperator):
		return r.Provider() == (tenant == "")
	case id.Has(RoleTenantAdmin):
		return !r.Provider() && tenant == id.Tenant
	}
	return false
}

// Scope returns the tenant an audit record of the identity's calls belongs to when the call
// names none: its own tenant, or ProviderTenant.
func (id Identity) Scope() string {
	if id.Tenant == "" {
		return ProviderTenant
	}
	return id.Tenant
}

// RoleNames returns the roles as strings.
func (id Identity) RoleNames() []string {
	out := make([]string, len(id.Roles))
	for i, r := range id.Roles {
		out[i] = string(r)
	}
	return out
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity ctx carries, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// Actor returns the subject of ctx's identity, or "" without one: who a write is recorded as.
func Actor(ctx context.Context) string {
	if id := FromContext(ctx); id != nil {
		return id.Subject
	}
	return ""
}
