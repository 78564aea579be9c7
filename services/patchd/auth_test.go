package patchd_test

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/auth/authtest"
	"github.com/patchwave/patchwave/libs/mtls"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	"github.com/patchwave/patchwave/services/patchd"
)

// routes reads every operation of the served OpenAPI document, without a credential, with
// each one's rule.
func (a *api) routes() []authtest.Route {
	a.t.Helper()
	r := a.call(http.MethodGet, "/openapi.json", "", "", "Authorization", "")
	require.Equal(a.t, http.StatusOK, r.status)
	return authtest.Routes(a.t, []byte(r.raw))
}

// mintToken signs an HS256 token with patchd's test key.
func mintToken(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(jwtKey)
	require.NoError(t, err)
	return s
}

func operatorClaims(exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"iss": "patchwave", "aud": "patchwave", "sub": "ops@provider", "roles": []string{"operator"},
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": exp.Unix()}
}

// tamper changes a token's payload without signing it again.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	payload = []byte(strings.Replace(string(payload), `"ops@provider"`, `"root@provider"`, 1))
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
}

// TestEveryRouteRefusesWhoItMust is the route x role x tenant matrix over the real gateway and
// the real services: for every operation of the served OpenAPI document,
//
//   - no credential, an expired token, a tampered token and a revoked key are 401 with a
//     WWW-Authenticate challenge;
//   - a tenant-viewer of acme changes nothing (403 on every mutating route), yet is never
//     refused a read of its own tenant;
//   - an admin of acme gets nothing of globex: 404 on every route that names a tenant, with
//     the answer a tenant that does not exist gets;
//   - an integrator reaches nothing but who it is, a certifier nothing of a tenant.
//
// At the end acme's design is where it was: none of the refused calls changed anything.
func TestEveryRouteRefusesWhoItMust(t *testing.T) {
	a := startAPI(t)
	for _, tenant := range []string{"acme", "globex"} {
		a.ok(a.write(http.MethodPut, "/v1/tenants/"+tenant, acmeTenant))
		a.ok(a.write(http.MethodPut, "/v1/tenants/"+tenant+"/waves/1", berlinWave(4)))
	}
	admin := a.newKey("acme", "admin", "tenant-admin")
	viewer := a.newKey("acme", "viewer", "tenant-viewer")
	integrator := a.newKey("acme", "siem", "integrator")
	certifier := a.newKey("", "certifier", "certifier")
	revoked := a.newKey("acme", "old", "tenant-admin")
	revokedID := strings.Split(revoked, "_")[1]
	a.ok(a.write(http.MethodPost, "/v1/tenants/acme/api-keys/"+revokedID+":revoke", `{"reason":"rotated"}`))
	expired := mintToken(t, operatorClaims(time.Now().Add(-time.Hour)))
	tampered := tamper(t, mintToken(t, operatorClaims(time.Now().Add(time.Hour))))
	before := etag(t, a.ok(a.get("/v1/tenants/acme/design")))

	routes := a.routes()
	require.Greater(t, len(routes), 40, "the document lists every route")
	tenantRoutes, mutating := 0, 0
	for _, rt := range routes {
		name := rt.Method + " " + rt.Path
		body := ""
		if rt.Method != http.MethodGet && rt.Method != http.MethodDelete {
			body = "{}"
		}
		own, other := authtest.Fill(rt.Path, "acme"), authtest.Fill(rt.Path, "globex")
		do := func(path string, cred ...string) reply {
			return a.call(rt.Method, path, "application/json", body, cred...)
		}

		// Nothing answers without a good credential.
		for what, cred := range map[string][]string{
			"no credential": {"Authorization", ""}, "an expired token": bearer(expired),
			"a tampered token": bearer(tampered), "a revoked key": bearer(revoked),
		} {
			r := do(own, cred...)
			require.Equal(t, http.StatusUnauthorized, r.status, "%s with %s: %s", name, what, r.raw)
			require.True(t, strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer realm="), "%s with %s", name, what)
		}

		// A viewer changes nothing, and reads its own tenant.
		r := do(own, bearer(viewer)...)
		if rt.Rule.Mutates {
			mutating++
			require.Equal(t, http.StatusForbidden, r.status, "%s: a tenant-viewer changes nothing: %s", name, r.raw)
		} else if rt.Tenanted() && viewerReads(rt.Rule.Permission) {
			require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, r.status, "%s: a viewer reads its own tenant: %s", name, r.raw)
		}

		// Another tenant is not found, exactly as a tenant that does not exist.
		if rt.Tenanted() {
			tenantRoutes++
			for who, cred := range map[string]string{"admin": admin, "viewer": viewer, "integrator": integrator} {
				r := do(other, bearer(cred)...)
				require.Equal(t, http.StatusNotFound, r.status, "%s: acme's %s on globex: %s", name, who, r.raw)
				require.Equal(t, "not found: tenant globex is not in the service design", r.body["message"], name)
				require.NotContains(t, r.raw, "Acme Corp", "nothing of the tenant's data")
			}
			nobody := do(authtest.Fill(rt.Path, "nobody"), bearer(admin)...)
			require.Equal(t, http.StatusNotFound, nobody.status)
			require.Equal(t, strings.ReplaceAll(nobody.raw, "nobody", "globex"), do(other, bearer(admin)...).raw,
				"%s: another tenant and no tenant answer alike", name)
		}

		// An integrator asks who it is and nothing else; a certifier has no tenant.
		if rt.Rule.Permission != "self.read" {
			r := do(own, bearer(integrator)...)
			require.Equal(t, http.StatusForbidden, r.status, "%s: an integrator: %s", name, r.raw)
		}
		if rt.Tenanted() {
			r := do(own, bearer(certifier)...)
			require.Equal(t, http.StatusForbidden, r.status, "%s: a certifier: %s", name, r.raw)
		}
	}
	require.Greater(t, tenantRoutes, 30)
	require.Greater(t, mutating, 20)

	require.Equal(t, before, etag(t, a.ok(a.get("/v1/tenants/acme/design"))), "no refused call changed acme's design")
	require.Equal(t, "Acme Corp", acmeDisplayName(t, a, "globex"), "nor globex's")
}

// viewerReads reports whether a tenant-viewer has a read permission (API keys and integrator
// credentials are the tenant admin's to see).
func viewerReads(p auth.Permission) bool {
	return auth.Identity{Subject: "v", Tenant: "acme", Roles: []auth.Role{auth.RoleTenantViewer}}.Can(p)
}

func acmeDisplayName(t *testing.T, a *api, tenant string) string {
	t.Helper()
	return a.ok(a.get("/v1/tenants/" + tenant)).body["tenant"].(map[string]any)["displayName"].(string)
}

func TestAuditTrailIsReadablePerTenant(t *testing.T) {
	a := startAPI(t)
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme", acmeTenant))
	a.ok(a.write(http.MethodPut, "/v1/tenants/globex", acmeTenant))
	admin := a.newKey("acme", "dana", "tenant-admin")
	viewer := a.newKey("acme", "vic", "tenant-viewer")
	for i := range 3 {
		a.ok(a.call(http.MethodPut, "/v1/tenants/acme/waves/1", "application/json", berlinWave(4+i), bearer(admin)...))
	}
	require.Equal(t, http.StatusForbidden, a.call(http.MethodDelete, "/v1/tenants/acme/waves/1", "", "", bearer(viewer)...).status)
	a.ok(a.write(http.MethodPut, "/v1/tenants/globex/waves/1", berlinWave(4)))

	// acme: its three writes, the viewer's refused delete, and the operator's two tenant writes
	// and two key creations, newest first.
	var events []map[string]any
	require.Eventually(t, func() bool {
		r := a.call(http.MethodGet, "/v1/tenants/acme/audit-events?pageSize=100", "", "", bearer(admin)...)
		if r.status != http.StatusOK {
			return false
		}
		list, _ := r.body["events"].([]any)
		events = events[:0]
		for _, e := range list {
			events = append(events, e.(map[string]any))
		}
		return len(events) == 7
	}, 10*time.Second, 20*time.Millisecond, "the audit read model has acme's calls")
	require.Equal(t, "vic@acme", events[0]["actor"])
	require.Equal(t, "PERMISSION_DENIED", events[0]["outcome"])
	require.Equal(t, "dana@acme", events[1]["actor"])
	require.Equal(t, "/v1/tenants/{tenant}/waves/{wave}", events[1]["route"])
	require.Equal(t, "OK", events[1]["outcome"])
	for _, e := range events {
		require.Equal(t, "acme", e["tenant"])
		require.NotEmpty(t, e["clientAddress"])
		require.NotEmpty(t, e["correlationId"])
		require.NotEmpty(t, e["credentialId"])
	}

	// Pages of two walk the same list.
	var paged []any
	token := ""
	for {
		r := a.ok(a.call(http.MethodGet, "/v1/tenants/acme/audit-events?pageSize=2&pageToken="+token, "", "", bearer(admin)...))
		paged = append(paged, r.body["events"].([]any)...)
		token, _ = r.body["nextPageToken"].(string)
		if token == "" {
			break
		}
	}
	require.Len(t, paged, 7)
	require.Equal(t, events[6]["auditId"], paged[6].(map[string]any)["auditId"])

	// globex's trail is globex's; acme reads none of it; the provider's is the operator's.
	require.Equal(t, http.StatusNotFound, a.call(http.MethodGet, "/v1/tenants/globex/audit-events", "", "", bearer(admin)...).status)
	require.Eventually(t, func() bool {
		list, _ := a.ok(a.get("/v1/tenants/globex/audit-events")).body["events"].([]any)
		return len(list) == 2
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusForbidden, a.call(http.MethodGet, "/v1/audit-events", "", "", bearer(admin)...).status)
	a.newKey("", "certifier", "certifier")
	require.Eventually(t, func() bool {
		list, _ := a.ok(a.get("/v1/audit-events")).body["events"].([]any)
		return len(list) == 1 && list[0].(map[string]any)["tenant"] == "provider"
	}, 10*time.Second, 20*time.Millisecond, "a provider key's creation is a provider-wide call")
}

func TestTheServicesTakeCallsOnlyFromTheGateway(t *testing.T) {
	a := startAPI(t)
	pki := filepath.Join(a.d.DataDir(), "pki")
	files, err := mtls.Ensure(pki, time.Now(), mtls.Leaf{Name: "intruder"})
	require.NoError(t, err)
	call := func(tc credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(a.d.GRPCAddr(), grpc.WithTransportCredentials(tc))
		require.NoError(t, err)
		defer func() { _ = conn.Close() }()
		ctx := auth.OutgoingContext(t.Context(), &auth.Identity{Subject: "forged@provider", Roles: []auth.Role{auth.RoleOperator}})
		_, err = designv1.NewDesignServiceClient(conn).ListTenants(ctx, &designv1.ListTenantsRequest{})
		return err
	}

	intruder, err := files["intruder"].ClientConfig("127.0.0.1")
	require.NoError(t, err)
	err = call(credentials.NewTLS(intruder))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a certificate of patchd's CA that is not the gateway's: %v", err)
	require.Contains(t, status.Convert(err).Message(), `peer "intruder" may not call`)

	noCert := intruder.Clone()
	noCert.GetClientCertificate = nil
	err = call(credentials.NewTLS(noCert))
	require.Equal(t, codes.Unavailable, status.Code(err), "no client certificate, no connection: %v", err)
}

func TestPatchdWritesAnOperatorKeyOnFirstStartAndKeepsIt(t *testing.T) {
	dir := t.TempDir()
	d, err := patchd.New(t.Context(), patchd.Config{DataDir: dir, NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "-"})
	require.NoError(t, err)
	key, created := d.OperatorKey(), d.OperatorKeyCreated()
	d.Close()
	require.True(t, created)
	path := patchd.OperatorKeyFile(dir)
	require.Equal(t, filepath.Join(dir, "operator.key"), path)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the key file is its owner's only")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, key+"\n", string(b))
	require.True(t, strings.HasPrefix(key, "pwk_"))

	again, err := patchd.New(t.Context(), patchd.Config{DataDir: dir, NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "-"})
	require.NoError(t, err)
	defer again.Close()
	require.False(t, again.OperatorKeyCreated(), "a restart keeps the key")
	require.Equal(t, key, again.OperatorKey())
}

// TestIntegratorCredentialsOverREST issues an integrator credential as the tenant's admin over
// REST, reads the tenant's events with it from NATS, and revokes it.
func TestIntegratorCredentialsOverREST(t *testing.T) {
	a := startAPI(t)
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme", acmeTenant))
	admin := a.newKey("acme", "dana", "tenant-admin")

	issued := a.ok(a.call(http.MethodPost, "/v1/tenants/acme/integrators", "application/json", `{"name":"siem","ttl":"30d"}`, bearer(admin)...))
	cred := issued.body["credential"].(map[string]any)
	require.Equal(t, "patch.acme.>", cred["filterSubject"])
	creds := issued.body["creds"].(string)
	require.Contains(t, creds, "NATS USER JWT")
	file := filepath.Join(t.TempDir(), "siem.creds")
	require.NoError(t, os.WriteFile(file, []byte(creds), 0o600))

	nc, err := nats.Connect(a.d.NATSURL(), nats.UserCredentials(file), nats.CustomInboxPrefix(cred["inboxPrefix"].(string)))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	cons, err := js.Consumer(t.Context(), cred["stream"].(string), cred["consumer"].(string))
	require.NoError(t, err)
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	n := 0
	for m := range batch.Messages() {
		require.True(t, strings.HasPrefix(m.Subject(), "patch.acme."), m.Subject())
		n++
	}
	require.Positive(t, n, "the tenant's events (the tenant's creation, audited) are read with it")

	list := a.ok(a.call(http.MethodGet, "/v1/tenants/acme/integrators", "", "", bearer(admin)...))
	require.Len(t, list.body["credentials"], 1)
	require.NotContains(t, list.raw, "NATS USER JWT", "the credentials file is answered once")
	require.Equal(t, http.StatusNotFound, a.call(http.MethodPost, "/v1/tenants/globex/integrators", "application/json", `{"name":"siem"}`, bearer(admin)...).status)
	a.ok(a.call(http.MethodDelete, "/v1/tenants/acme/integrators/siem", "", "", bearer(admin)...))
	require.Empty(t, a.ok(a.call(http.MethodGet, "/v1/tenants/acme/integrators", "", "", bearer(admin)...)).body["credentials"])
}
