package auth

import "slices"

// Permission is what a rule requires: "<area>.<action>".
type Permission string

// grants is the closed permission table: each permission and the roles that grant it. A rule
// naming a permission that is not here fails CheckRules. An operator has every permission.
//
// New routes of the areas below take one of these permissions; a new area adds its lines here
// (the registry test says which permission is missing).
var grants = func() map[Permission][]Role {
	const (
		op = RoleOperator
		ce = RoleCertifier
		ad = RoleTenantAdmin
		vi = RoleTenantViewer
		in = RoleIntegrator
	)
	g := map[Permission][]Role{
		// Who the caller is (every role).
		"self.read": {op, ce, ad, vi, in},

		// Provider administration.
		"tenants.list":  {op},
		"tenants.write": {op},

		// A tenant's service design: settings, accounts, waves, freezes, overrides, service
		// requests (read), previews of its waves.
		"design.read":  {op, ad, vi},
		"design.write": {op, ad},
		// Raising and withdrawing service requests; applying and rejecting them.
		"service_requests.raise":  {op, ad},
		"service_requests.decide": {op},
		// Previews of schedules that are not stored anywhere.
		"schedules.preview": {op, ce, ad, vi},

		// Runs.
		"runs.read":  {op, ad, vi},
		"runs.start": {op},
		// Cancelling, pausing and resuming runs, re-running their failed instances.
		"runs.control": {op, ad},

		// Snapshots and restores.
		"snapshots.read": {op, ad, vi},
		"restores.read":  {op, ad, vi},
		"restores.write": {op, ad},

		// Reports and the audit trail.
		"reports.read": {op, ad, vi},
		"audit.read":   {op, ad, vi},
		// Asking for an assessment (a scan) of a tenant's in-scope instances.
		"scans.request": {op, ad},

		// The catalog: patches, sources, advisories, baselines (read by everyone who reads a
		// tenant, since tenants approve baselines), certification.
		"catalog.read":    {op, ce, ad, vi},
		"catalog.write":   {op, ce},
		"catalog.certify": {op, ce},
		// A tenant's approvals of baselines.
		"approvals.read":  {op, ad, vi},
		"approvals.write": {op, ad},

		// Notifications: subscriptions, channels, the delivery log.
		"notifications.read":  {op, ad, vi},
		"notifications.write": {op, ad},

		// Credentials: API keys and integrator credentials.
		"api_keys.read":     {op, ad},
		"api_keys.write":    {op, ad},
		"integrators.read":  {op, ad},
		"integrators.write": {op, ad},
	}
	return g
}()

// Known reports whether p is in the permission table.
func (p Permission) Known() bool {
	_, ok := grants[p]
	return ok
}

// Permissions returns every permission of the table, sorted.
func Permissions() []Permission {
	out := make([]Permission, 0, len(grants))
	for p := range grants {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// GrantedBy returns the roles that grant p, in the order of Roles.
func GrantedBy(p Permission) []Role {
	var out []Role
	for _, r := range Roles() {
		if slices.Contains(grants[p], r) {
			out = append(out, r)
		}
	}
	return out
}
