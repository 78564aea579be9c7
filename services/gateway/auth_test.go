package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/auth/authtest"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/libs/testkit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/gateway"
)

// routes reads the served OpenAPI document, without a credential.
func routes(t *testing.T, e *env) []authtest.Route {
	t.Helper()
	resp := e.do(t, http.MethodGet, "/openapi.json", "", http.Header{"Authorization": {""}})
	require.Equal(t, http.StatusOK, resp.status, "the API's description is served without a credential")
	return authtest.Routes(t, resp.body)
}

// TestEveryRouteDeclaresARuleThatFitsItsMethod checks the served document against the rules:
// every operation is an rpc with a rule, reads are GETs and nothing that mutates is a GET, and
// no route answers without a credential.
func TestEveryRouteDeclaresARuleThatFitsItsMethod(t *testing.T) {
	e := start(t)
	// POSTs that compute and change nothing.
	readPosts := map[string]bool{"DesignService_PreviewSchedule": true}
	for _, rt := range routes(t, e) {
		method, path, op, r := rt.Method, rt.Path, rt.OperationID, rt.Rule
		if method == http.MethodGet {
			require.False(t, r.Mutates, "%s %s is a GET but %s mutates", method, path, r.Method)
		} else {
			require.Equal(t, !readPosts[op], r.Mutates, "%s %s (%s): mutates must say what the HTTP method says", method, path, r.Method)
		}
		if rt.Tenanted() {
			require.Equal(t, "tenant", r.TenantField, "%s names the tenant in its path, so its rule must", path)
		}
		resp := e.do(t, method, authtest.Fill(path, "acme"), "{}", http.Header{"Authorization": {""}})
		require.Equal(t, http.StatusUnauthorized, resp.status, "%s %s without a credential: %s", method, path, resp.body)
		require.Equal(t, `Bearer realm="patchwave"`, resp.header.Get("WWW-Authenticate"))
	}
	e.calls.mu.Lock()
	defer e.calls.mu.Unlock()
	require.Empty(t, e.calls.requests, "nothing reached a service")
}

func TestABadCredentialIsAChallengeNamingWhy(t *testing.T) {
	e := start(t)
	expired := func() string {
		tok := mint(t, "ops@provider", "", "operator")
		parts := strings.Split(tok, ".")
		return parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	}
	for name, tc := range map[string]struct{ header, want string }{
		"a tampered token":   {"Bearer " + expired(), "signature does not verify"},
		"an unknown API key": {"Bearer pwk_00000000000000000000_nothing", "not known"},
		"a Basic credential": {"Basic b3BzOnB3", "Bearer <API key or JWT>"},
		"a token of another key": {"Bearer " + func() string {
			old := testKey
			defer func() { testKey = old }()
			testKey = []byte("some-other-key-0123456789abcdefgh")
			return mint(t, "ops@provider", "", "operator")
		}(), "signature does not verify"},
	} {
		resp := e.do(t, http.MethodGet, "/v1/baselines", "", http.Header{"Authorization": {tc.header}})
		require.Equal(t, http.StatusUnauthorized, resp.status, name)
		require.Contains(t, resp.header.Get("WWW-Authenticate"), `error=`, name)
		require.Contains(t, resp.header.Get("WWW-Authenticate"), tc.want, name)
		require.EqualValues(t, 16, resp.json(t)["code"], "Unauthenticated")
	}
}

// createKey creates an API key as the env's current token and returns the answer.
func createKey(t *testing.T, e *env, tenant, name string, roles ...string) (int, map[string]any) {
	t.Helper()
	path := "/v1/api-keys"
	if tenant != "" {
		path = "/v1/tenants/" + tenant + "/api-keys"
	}
	b, err := json.Marshal(map[string]any{"name": name, "roles": roles})
	require.NoError(t, err)
	resp := e.do(t, http.MethodPost, path, string(b), nil)
	return resp.status, resp.json(t)
}

func TestAPIKeyLifecycleOverREST(t *testing.T) {
	e := start(t)
	status, created := createKey(t, e, "acme", "ci-admin", "tenant-admin")
	require.Equal(t, http.StatusOK, status, created)
	secret := created["secret"].(string)
	key := created["apiKey"].(map[string]any)
	id := key["keyId"].(string)
	require.Equal(t, "ci-admin@acme", key["subject"])
	require.Equal(t, "ops@provider", key["createdBy"])
	require.Equal(t, "API_KEY_STATE_ACTIVE", key["state"])

	// The key is shown once: reading it back never answers the secret.
	got := e.do(t, http.MethodGet, "/v1/tenants/acme/api-keys/"+id, "", nil)
	require.Equal(t, http.StatusOK, got.status, string(got.body))
	// The secret after "pwk_<id>_" is base64url, which may itself hold "_".
	require.NotContains(t, string(got.body), strings.TrimPrefix(secret, "pwk_"+id+"_"))
	require.NotContains(t, string(got.body), "secret")

	// Used as a bearer token, it is the tenant admin it was made for.
	admin := *e
	admin.token = secret
	who := admin.do(t, http.MethodGet, "/v1/whoami", "", nil)
	require.Equal(t, http.StatusOK, who.status, string(who.body))
	require.Equal(t, "ci-admin@acme", who.json(t)["subject"])
	require.Equal(t, "acme", who.json(t)["tenant"])
	require.Equal(t, id, who.json(t)["credentialId"])

	// A tenant admin grants tenant roles of its own tenant, nothing more.
	status, viewer := createKey(t, &admin, "acme", "dashboards", "tenant-viewer")
	require.Equal(t, http.StatusOK, status, viewer)
	status, body := createKey(t, &admin, "acme", "escalate", "operator")
	require.Equal(t, http.StatusForbidden, status, body)
	require.Contains(t, body["message"], "may not give a key the role operator")
	status, _ = createKey(t, &admin, "globex", "elsewhere", "tenant-viewer")
	require.Equal(t, http.StatusNotFound, status, "another tenant is not found")
	status, body = createKey(t, e, "nosuch", "x", "tenant-viewer")
	require.Equal(t, http.StatusNotFound, status, "a tenant must exist: %v", body)
	status, body = createKey(t, e, "acme", "Bad Name", "tenant-viewer", "wizard")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body["message"], "roles[1]")

	// The list holds both keys, newest first, and no secret.
	list := e.do(t, http.MethodGet, "/v1/tenants/acme/api-keys", "", nil)
	require.Equal(t, http.StatusOK, list.status)
	keys := list.json(t)["apiKeys"].([]any)
	require.Len(t, keys, 2)
	require.Equal(t, "dashboards", keys[0].(map[string]any)["name"])
	require.NotContains(t, string(list.body), "sha256")

	// Revoked, it is refused at once.
	rev := e.do(t, http.MethodPost, "/v1/tenants/acme/api-keys/"+id+":revoke", `{"reason":"rotated"}`, nil)
	require.Equal(t, http.StatusOK, rev.status, string(rev.body))
	require.Equal(t, "API_KEY_STATE_REVOKED", rev.json(t)["apiKey"].(map[string]any)["state"])
	refused := admin.do(t, http.MethodGet, "/v1/whoami", "", nil)
	require.Equal(t, http.StatusUnauthorized, refused.status)
	require.Contains(t, refused.header.Get("WWW-Authenticate"), "revoked")
}

func TestIntegratorRoutesAreRefusedWithoutAnIssuer(t *testing.T) {
	e := start(t)
	resp := e.do(t, http.MethodPost, "/v1/tenants/acme/integrators", `{"name":"siem"}`, nil)
	require.Equal(t, http.StatusPreconditionFailed, resp.status, string(resp.body))
	require.Contains(t, resp.json(t)["message"], "issues no integrator credentials")
	e.token = mint(t, "vic@acme", "acme", "tenant-viewer")
	require.Equal(t, http.StatusForbidden, e.do(t, http.MethodGet, "/v1/tenants/acme/integrators", "", nil).status)
	e.token = mint(t, "int@acme", "acme", "integrator")
	require.Equal(t, http.StatusOK, e.do(t, http.MethodGet, "/v1/whoami", "", nil).status, "an integrator may ask who it is")
	require.Equal(t, http.StatusForbidden, e.do(t, http.MethodGet, "/v1/tenants/acme/runs", "", nil).status, "and nothing else")
}

func TestRateLimitPerCredentialAnswers429WithRetryAfter(t *testing.T) {
	e := start(t, func(c *gateway.Config) { c.RateLimit = ratelimit.Limit{Rate: 0.5, Burst: 2} })
	for i := range 2 {
		require.Equal(t, http.StatusOK, e.do(t, http.MethodGet, "/v1/baselines", "", nil).status, "request %d is within the burst", i)
	}
	limited := e.do(t, http.MethodGet, "/v1/baselines", "", nil)
	require.Equal(t, http.StatusTooManyRequests, limited.status)
	after, err := strconv.Atoi(limited.header.Get("Retry-After"))
	require.NoError(t, err, limited.header.Get("Retry-After"))
	require.GreaterOrEqual(t, after, 1)
	require.LessOrEqual(t, after, 2, "one permit comes back every 2s")
	require.EqualValues(t, 8, limited.json(t)["code"], "ResourceExhausted")

	other := *e
	other.token = mint(t, "someone-else@provider", "", "operator")
	require.Equal(t, http.StatusOK, other.do(t, http.MethodGet, "/v1/baselines", "", nil).status, "another credential has its own budget")
}

// chunked is a body without a length, so the limit is found while reading.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestABodyOverTheLimitIs413(t *testing.T) {
	e := start(t, func(c *gateway.Config) { c.MaxBody = 1024 })
	big := `{"requestId":"` + strings.Repeat("x", 2000) + `"}`
	resp := e.do(t, http.MethodPost, "/v1/tenants/acme/waves/1/runs", big, nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.status, string(resp.body))
	require.Contains(t, resp.json(t)["message"], "at most 1024 bytes")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.base+"/v1/tenants/acme/waves/1/runs", chunked{strings.NewReader(big)})
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, r.Body.Close())
	require.Equal(t, http.StatusRequestEntityTooLarge, r.StatusCode, "a body without a length is cut at the limit too")
	e.calls.mu.Lock()
	defer e.calls.mu.Unlock()
	require.Empty(t, e.calls.requests, "nothing reached the scheduler")
}

// auditEvents reads every audit event of the stream.
func auditEvents(t *testing.T, e *env) []*eventsv1.AuditRecorded {
	t.Helper()
	s, err := e.js.Stream(t.Context(), events.StreamTenant)
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("patch.*.audit.recorded"))
	require.NoError(t, err)
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	if n == 0 {
		return nil
	}
	cons, err := e.js.OrderedConsumer(t.Context(), events.StreamTenant, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"patch.*.audit.recorded"}})
	require.NoError(t, err)
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var out []*eventsv1.AuditRecorded
	for m := range batch.Messages() {
		ev, err := events.Unmarshal(m.Subject(), m.Data())
		require.NoError(t, err)
		require.Equal(t, "/patchwave/gateway", ev.Source)
		rec := ev.Data.(*eventsv1.AuditRecorded)
		require.Equal(t, "patch."+rec.GetTenant()+".audit.recorded", m.Subject())
		out = append(out, rec)
	}
	return out
}

func TestEveryMutatingCallIsAudited(t *testing.T) {
	e := start(t)
	put := e.do(t, http.MethodPut, "/v1/tenants/acme/waves/2", `{"name":"second"}`, http.Header{"X-Correlation-Id": {"corr-audit"}})
	require.Equal(t, http.StatusOK, put.status, string(put.body))
	require.Equal(t, http.StatusOK, e.do(t, http.MethodGet, "/v1/tenants/acme/runs", "", nil).status)

	viewer := *e
	viewer.token = mint(t, "vic@acme", "acme", "tenant-viewer")
	require.Equal(t, http.StatusForbidden, viewer.do(t, http.MethodPut, "/v1/tenants/acme/waves/2", `{}`, nil).status)
	require.Equal(t, http.StatusNotFound, viewer.do(t, http.MethodPost, "/v1/tenants/globex/waves/1/runs", `{}`, nil).status)
	require.Equal(t, http.StatusNotImplemented, e.do(t, http.MethodPost, "/v1/schedules:preview", `{}`, nil).status,
		"a preview is a read (the fake does not serve it)")

	var recs []*eventsv1.AuditRecorded
	require.Eventually(t, func() bool { recs = auditEvents(t, e); return len(recs) == 3 }, 10*time.Second, 20*time.Millisecond,
		"three mutating calls, three records: reads and previews are not audited")
	ok, denied, other := recs[0], recs[1], recs[2]

	require.Equal(t, "ops@provider", ok.GetActor())
	require.Equal(t, auth.KindJWT, ok.GetCredentialKind())
	require.True(t, strings.HasPrefix(ok.GetCredentialId(), "jwt:"))
	require.Equal(t, []string{"operator"}, ok.GetRoles())
	require.Equal(t, "acme", ok.GetTenant())
	require.Equal(t, "/patchwave.design.v1.DesignService/PutWave", ok.GetMethod())
	require.Equal(t, "design.write", ok.GetPermission())
	require.Equal(t, "PUT", ok.GetHttpMethod())
	require.Equal(t, "/v1/tenants/{tenant}/waves/{wave}", ok.GetRoute())
	require.Equal(t, "/v1/tenants/acme/waves/2", ok.GetPath())
	host, _, err := net.SplitHostPort(ok.GetClientAddress())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	require.Equal(t, "corr-audit", ok.GetCorrelationId())
	require.Equal(t, "OK", ok.GetOutcome())
	require.EqualValues(t, http.StatusOK, ok.GetHttpStatus())
	require.WithinDuration(t, time.Now(), ok.GetTime().AsTime(), time.Minute)

	require.Equal(t, "vic@acme", denied.GetActor())
	require.Equal(t, "PERMISSION_DENIED", denied.GetOutcome())
	require.EqualValues(t, http.StatusForbidden, denied.GetHttpStatus())
	require.Contains(t, denied.GetError(), "needs permission design.write")

	require.Equal(t, "acme", other.GetTenant(), "a call refused for naming another tenant is recorded for the caller's")
	require.Equal(t, "globex", other.GetTargetTenant())
	require.Equal(t, "NOT_FOUND", other.GetOutcome())
}

func TestTheGatewayServesHTTPSFromAGivenCertificate(t *testing.T) {
	files, err := mtls.Ensure(t.TempDir(), time.Now(), mtls.Leaf{Name: "gateway-https", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	require.NoError(t, err)
	f := files["gateway-https"]
	e := start(t, func(c *gateway.Config) { c.TLSCertFile, c.TLSKeyFile = f.Cert, f.Key })
	require.True(t, strings.HasPrefix(e.base, "https://"), e.base)
	ca, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	e.httpClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	require.Equal(t, http.StatusOK, e.do(t, http.MethodGet, "/v1/baselines", "", nil).status)

	plainResp, err := http.Get("http://" + e.gw.Addr() + "/v1/baselines")
	require.NoError(t, err)
	require.NoError(t, plainResp.Body.Close())
	require.Equal(t, http.StatusBadRequest, plainResp.StatusCode, "plain HTTP to the HTTPS port is refused")
}

func TestEnsureOperatorKeyWritesAKeyOnceWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "operator.key")
	e := start(t, func(c *gateway.Config) { c.OperatorKeyFile = path })
	var b []byte
	require.Eventually(t, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil
	}, 5*time.Second, 5*time.Millisecond, "the gateway writes the key when it starts")
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	key := strings.TrimSpace(string(b))

	again, created, err := e.gw.EnsureOperatorKey(t.Context(), path)
	require.NoError(t, err)
	require.False(t, created, "a good key is kept")
	require.Equal(t, key, again)

	e.token = key
	who := e.do(t, http.MethodGet, "/v1/whoami", "", nil)
	require.Equal(t, http.StatusOK, who.status, string(who.body))
	require.Equal(t, "operator@provider", who.json(t)["subject"])
	id := who.json(t)["credentialId"].(string)

	// Revoked, it is replaced on the next start.
	require.Equal(t, http.StatusOK, e.do(t, http.MethodPost, "/v1/api-keys/"+id+":revoke", `{}`, nil).status)
	fresh, created, err := e.gw.EnsureOperatorKey(t.Context(), path)
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, key, fresh)
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, fresh+"\n", string(b))
	require.NoError(t, os.Chmod(path, 0o644))
	_, _, err = e.gw.EnsureOperatorKey(t.Context(), path)
	require.NoError(t, err)
	st, err = os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "a kept key file is made private again")
}

// TestGatewaysSharingARedisShareEachCredentialsBudget runs two gateways on one Redis limiter:
// a credential's budget is spent across both, as it is when gateways run apart.
func TestGatewaysSharingARedisShareEachCredentialsBudget(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	limiter := func(c *gateway.Config) {
		rl, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: rdb, Prefix: "test:gateway:"})
		require.NoError(t, err)
		c.Limiter, c.RateLimit = rl, ratelimit.Limit{Rate: 0.2, Burst: 2}
	}
	one, two := start(t, limiter), start(t, limiter)
	two.token = one.token
	require.Equal(t, http.StatusOK, one.do(t, http.MethodGet, "/v1/baselines", "", nil).status)
	require.Equal(t, http.StatusOK, two.do(t, http.MethodGet, "/v1/baselines", "", nil).status)
	for _, e := range []*env{one, two} {
		r := e.do(t, http.MethodGet, "/v1/baselines", "", nil)
		require.Equal(t, http.StatusTooManyRequests, r.status, "the burst of 2 is spent across both gateways")
		require.NotEmpty(t, r.header.Get("Retry-After"))
	}
}
