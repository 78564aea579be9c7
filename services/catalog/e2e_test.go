package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	"github.com/patchwave/patchwave/services/catalog"
	"github.com/patchwave/patchwave/services/gateway"
)

// rest is the catalog behind the real gateway, as patchd and a deployment run them: mutual TLS
// between them, and every call with a credential (an HS256 token of the test's key).
type rest struct {
	t    *testing.T
	base string
	js   jetstream.JetStream
}

// restKey signs the tokens of the calls.
var restKey = []byte("catalog-e2e-key-0123456789abcdefgh")

// token is a credential for actor: "ops@..." an operator, other "...@provider" a certifier,
// "...@<tenant>" that tenant's admin, "" a viewer of acme (who reads, and changes nothing).
func token(t *testing.T, actor string) string {
	t.Helper()
	c := jwt.MapClaims{"iss": "patchwave", "aud": "patchwave", "sub": actor, "exp": time.Now().Add(time.Hour).Unix()}
	name, tenant, _ := strings.Cut(actor, "@")
	switch {
	case actor == "":
		c["sub"], c["tenant"], c["roles"] = "viewer@acme", "acme", "tenant-viewer"
	case tenant == "provider" && strings.HasPrefix(name, "ops"):
		c["roles"] = "operator"
	case tenant == "provider":
		c["roles"] = "certifier"
	default:
		c["tenant"], c["roles"] = tenant, "tenant-admin"
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(restKey)
	require.NoError(t, err)
	return s
}

func startREST(t *testing.T) *rest {
	t.Helper()
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	svc, err := catalog.New(catalog.Config{}, catalog.Deps{Clock: newClock(t0)})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pki := stagetest.PKI(t)
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Backend: lis.Addr().String(), ServicesTLS: pki[mtls.Gateway],
		LocalJWT: gateway.LocalJWT{Key: restKey}, RateLimit: ratelimit.Limit{Rate: 1000, Burst: 1000}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	h, err := host.New(ctx, host.Config{Name: "catalog-e2e", Conn: nc, GRPCListener: lis, GRPCTLS: stagetest.ServerTLS(t, pki[mtls.Services]),
		Bus: stagetest.BusConfig()}, svc, gw)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	readyCtx, cancelReady := context.WithTimeout(ctx, 30*time.Second)
	defer cancelReady()
	require.NoError(t, h.Ready(readyCtx))
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return gw.Ready(t.Context()) == nil }, 10*time.Second, 5*time.Millisecond)
	return &rest{t: t, base: gw.URL(), js: js}
}

// do sends a request (body a string, nil for none) with the credential of actor (token) and
// decodes the JSON answer into a map; it returns the status.
func (r *rest) do(method, path, actor string, body any, contentType string) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(r.t.Context(), method, r.base+path, rd)
	require.NoError(r.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+token(r.t, actor))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	out := map[string]any{}
	require.NoError(r.t, json.Unmarshal(raw, &out), "body %s", raw)
	return resp.StatusCode, out
}

func (r *rest) ok(method, path, actor string, body any) map[string]any {
	r.t.Helper()
	code, out := r.do(method, path, actor, body, "application/json")
	require.Equal(r.t, http.StatusOK, code, "%s %s: %v", method, path, out)
	return out
}

func (r *rest) fails(method, path, actor string, body any, status int, inMessage ...string) {
	r.t.Helper()
	code, out := r.do(method, path, actor, body, "application/json")
	require.Equal(r.t, status, code, "%s %s: %v", method, path, out)
	for _, m := range inMessage {
		require.Contains(r.t, out["message"], m)
	}
}

func ids(patches any) []string {
	var out []string
	for _, p := range patches.([]any) {
		m := p.(map[string]any)
		if inner, ok := m["patch"].(map[string]any); ok {
			if pp, ok := inner["patch"].(map[string]any); ok {
				m = pp // ImportedPatch
			} else {
				m = inner // CatalogPatch
			}
		}
		out = append(out, m["id"].(string))
	}
	return out
}

func TestCatalogFlowThroughTheGateway(t *testing.T) {
	r := startREST(t)
	designtest.PutTenant(t, r.js, "acme", nil)
	const ops, certifier, tenantAdmin = "ops@provider", "alice@provider", "carol@acme"

	// Import a raw document; the format is detected.
	code, imported := r.do(http.MethodPost, "/v1/advisories:import?name=updateinfo.xml", ops, sampleDoc(t, updateinfo), "application/xml")
	require.Equal(t, http.StatusOK, code, "%v", imported)
	require.Equal(t, "updateinfo", imported["format"])
	require.ElementsMatch(t, []string{"ALAS2023-2026-1001", "ALAS2023-2026-1007", "ALAS2023-2026-0412", "ALAS2023-2026-0088"}, ids(imported["patches"]))
	code, _ = r.do(http.MethodPost, "/v1/advisories:import", "", sampleDoc(t, updateinfo), "application/xml")
	require.Equal(t, http.StatusForbidden, code, "a tenant's viewer imports nothing")
	code, bad := r.do(http.MethodPost, "/v1/advisories:import?name=bad.json", ops, `{"id":"USN-1-1"}`, "application/json")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, bad["message"], `document "bad.json": field "/affected"`)

	// Query with filters; a patch id with ':' in the path.
	list := r.ok(http.MethodGet, "/v1/patches?vendor=Amazon%20Linux&severity=SEVERITY_CRITICAL", "", nil)
	require.Equal(t, []string{"ALAS2023-2026-1001"}, ids(list["patches"]))
	r.ok(http.MethodPost, "/v1/advisories:import?format=csaf", ops, sampleDoc(t, "redhat/rhsa-2026_1001.json"))
	got := r.ok(http.MethodGet, "/v1/patches/"+url.PathEscape("RHSA-2026:1001"), "", nil)
	require.Equal(t, "rhel-9", got["patch"].(map[string]any)["patch"].(map[string]any)["osFamily"])
	r.fails(http.MethodGet, "/v1/patches/RHSA-2099:0001", "", nil, http.StatusNotFound, `patch "RHSA-2099:0001"`)
	r.fails(http.MethodGet, "/v1/patches?pageSize=5000", "", nil, http.StatusBadRequest, "pageSize")
	r.fails(http.MethodGet, "/v1/patches?severity=BOGUS", "", nil, http.StatusBadRequest, "severity")
	r.fails(http.MethodGet, "/v1/patches?releasedAfter=yesterday", "", nil, http.StatusBadRequest, "released_after")
	r.fails(http.MethodGet, "/v1/patches?cve=CVE-1", "", nil, http.StatusBadRequest, `cve: "CVE-1": must be a CVE id`)
	r.fails(http.MethodPut, "/v1/tenants/acme/approval-policy", "carol@acme", `{"delay":"soon"}`, http.StatusBadRequest)
	r.fails(http.MethodPost, "/v1/baselines", ops, `not json`, http.StatusBadRequest)

	// Certify by hand, with evidence; an illegal step is 412 naming the state.
	r.fails(http.MethodPost, "/v1/patches/ALAS2023-2026-1001/certification", certifier,
		`{"state":"CERTIFICATION_STATE_CERTIFIED","evidence":[{"url":"https://ci.example/1"}]}`, http.StatusPreconditionFailed, "is NEW: cannot move to CERTIFIED")
	for _, id := range []string{"ALAS2023-2026-1001", "ALAS2023-2026-1007"} {
		r.ok(http.MethodPost, "/v1/patches/"+id+"/certification", certifier, `{"state":"CERTIFICATION_STATE_IN_TEST","notes":"staging ring"}`)
		r.ok(http.MethodPost, "/v1/patches/"+id+"/certification", certifier,
			`{"state":"CERTIFICATION_STATE_CERTIFIED","notes":"soak clean","evidence":[{"url":"https://ci.example/`+id+`","title":"soak"}]}`)
	}
	r.fails(http.MethodPost, "/v1/patches/ALAS2023-2026-1001/certification", certifier, `{"state":"CERTIFICATION_STATE_IN_TEST","bogus":1}`, http.StatusBadRequest)

	// Certify by a rule: bug fixes 7 days after release (released 2026-11-03, now 2026-11-20).
	r.ok(http.MethodPut, "/v1/rules/bugfix-7d", ops, `{"classifications":["CLASSIFICATION_BUGFIX"],"approveAfterDays":7,"enabled":true}`)
	byRule := r.ok(http.MethodGet, "/v1/patches/ALAS2023-2026-0412", "", nil)["patch"].(map[string]any)
	require.Equal(t, "CERTIFICATION_STATE_CERTIFIED", byRule["state"])
	require.Equal(t, "rule:bugfix-7d", byRule["history"].([]any)[0].(map[string]any)["actor"])
	rules := r.ok(http.MethodGet, "/v1/rules", "", nil)
	require.Len(t, rules["rules"], 1)

	// Publish a baseline with deployment rules; publishing it again changes nothing.
	baseline := `{"baselineId":"al2023-2026.11","osFamily":"amazon-linux-2023","notes":"November",
		"patches":[{"patchId":"ALAS2023-2026-1001","order":1},{"patchId":"ALAS2023-2026-1007","order":2,"reboot":"REBOOT_BEHAVIOR_ALWAYS"},
		{"patchId":"ALAS2023-2026-0412","order":3,"excludeInstanceTags":["Role=db"]}]}`
	pub := r.ok(http.MethodPost, "/v1/baselines", ops, baseline)
	require.Equal(t, true, pub["created"])
	require.InDelta(t, 1, pub["baseline"].(map[string]any)["version"], 0)
	require.Equal(t, false, r.ok(http.MethodPost, "/v1/baselines", ops, baseline)["created"])
	r.fails(http.MethodPost, "/v1/baselines", ops, `{"baselineId":"al2023-2026.11","osFamily":"amazon-linux-2023","patches":[{"patchId":"ALAS2023-2026-1001"}]}`,
		http.StatusPreconditionFailed, "never changes")
	r.fails(http.MethodPost, "/v1/baselines", ops, `{"baselineId":"BAD","osFamily":"amazon-linux-2023","patches":[]}`, http.StatusBadRequest, "baselineId", "patches")
	b := r.ok(http.MethodGet, "/v1/baselines/al2023-2026.11", "", nil)["baseline"].(map[string]any)
	require.Len(t, b["patches"], 3)
	require.Equal(t, "REBOOT_BEHAVIOR_ALWAYS", b["rules"].([]any)[1].(map[string]any)["reboot"])

	// The tenant approves it.
	r.fails(http.MethodPost, "/v1/tenants/initech/approvals/al2023-2026.11:approve", tenantAdmin, `{}`, http.StatusNotFound, "tenant initech")
	ap := r.ok(http.MethodPost, "/v1/tenants/acme/approvals/al2023-2026.11:approve", tenantAdmin, `{"notes":"CAB approved"}`)
	require.Equal(t, "APPROVAL_STATE_APPROVED", ap["approval"].(map[string]any)["state"])
	approvals := r.ok(http.MethodGet, "/v1/tenants/acme/approvals", "", nil)["approvals"].([]any)
	require.Len(t, approvals, 1)
	require.Equal(t, tenantAdmin, approvals[0].(map[string]any)["actor"])
	r.ok(http.MethodPut, "/v1/tenants/acme/approval-policy", tenantAdmin, `{"autoApprove":true,"delay":"259200s"}`)
	policy := r.ok(http.MethodGet, "/v1/tenants/acme/approval-policy", "", nil)["policy"].(map[string]any)
	require.Equal(t, "259200s", policy["delay"])
	require.Equal(t, 1, stagetest.CountEvents(t, r.js, "PATCH_EVENTS", "patch.acme.baseline.approved"))

	// Sources: none configured here.
	require.Empty(t, r.ok(http.MethodGet, "/v1/sources", "", nil)["sources"])
	r.fails(http.MethodPost, "/v1/sources/nope:poll", ops, `{}`, http.StatusNotFound, `source "nope"`)
}

// TestRealAdvisoriesImportedOverREST imports the shared real advisories (documents nobody
// tuned the parsers to) through the gateway and checks fields a reader finds in them.
func TestRealAdvisoriesImportedOverREST(t *testing.T) {
	r := startREST(t)
	want := map[string]struct {
		ids      []string
		cves     []string
		released string
	}{
		"csaf/rhsa-2021_5186.json":        {[]string{"RHSA-2021:5186"}, []string{"CVE-2021-4104", "CVE-2021-4125"}, "2021-12-16T22:34:00Z"},
		"csaf/msrc_cve-2025-49706.json":   {[]string{"KB5002744", "KB5002741", "KB5002751"}, []string{"CVE-2025-49706"}, "2025-07-08T07:00:00Z"},
		"osv/USN-6500-1.json":             {[]string{"USN-6500-1"}, []string{"CVE-2023-46724", "CVE-2023-46728", "CVE-2023-46846", "CVE-2023-46847", "CVE-2023-46848"}, "2023-11-21T15:42:49Z"},
		"osv/DSA-3029-1.json":             {[]string{"DSA-3029-1"}, []string{"CVE-2014-3616"}, "2014-09-20T00:00:00Z"},
		"updateinfo/rocky-updateinfo.xml": {[]string{"RLSA-2021:2575", "RLSA-2021:3057", "RLSA-2019:1972"}, nil, "2021-07-22T03:13:55Z"},
	}
	for rel, w := range want {
		data, err := os.ReadFile(filepath.Join("../../../shared/fixtures/advisories", rel))
		require.NoError(t, err, "the shared fixtures must be at ../shared/fixtures/advisories")
		code, out := r.do(http.MethodPost, "/v1/advisories:import?name="+url.QueryEscape(filepath.Base(rel)), "ops@provider", data, "application/octet-stream")
		require.Equal(t, http.StatusOK, code, "%s: %v", rel, out)
		require.Equal(t, w.ids, ids(out["patches"]), rel)
		first := out["patches"].([]any)[0].(map[string]any)["patch"].(map[string]any)["patch"].(map[string]any)
		require.Equal(t, w.released, first["releasedAt"], rel)
		if w.cves != nil {
			var cves []string
			for _, c := range first["cves"].([]any) {
				cves = append(cves, c.(string))
			}
			require.Equal(t, w.cves, cves, rel)
		}
	}
	rocky := r.ok(http.MethodGet, "/v1/patches/"+url.PathEscape("RLSA-2021:3057"), "", nil)["patch"].(map[string]any)["patch"].(map[string]any)
	require.Equal(t, true, rocky["rebootRequired"])
	require.Equal(t, "SEVERITY_HIGH", rocky["severity"])
	pkg := rocky["packages"].([]any)[0].(map[string]any)
	require.Equal(t, fmt.Sprint(map[string]any{"name": "kernel", "epoch": "0", "version": "4.18.0", "release": "305.12.1.el8_4", "arch": "x86_64", "ecosystem": "Rocky Linux 8"}), fmt.Sprint(pkg))
}

// monthlyCVRF writes an MSRC-shaped monthly CVRF document with n vulnerabilities, each fixed by
// one of 40 KBs on 20 products.
func monthlyCVRF(n int) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><cvrfdoc xmlns="http://www.icasi.org/CVRF/schema/cvrf/1.1" xmlns:prod="http://www.icasi.org/CVRF/schema/prod/1.1" xmlns:vuln="http://www.icasi.org/CVRF/schema/vuln/1.1">
<DocumentTitle>December 2026 Security Updates</DocumentTitle><DocumentTracking><Identification><ID>2026-Dec</ID></Identification>
<InitialReleaseDate>2026-12-08T08:00:00</InitialReleaseDate><CurrentReleaseDate>2026-12-08T08:00:00</CurrentReleaseDate></DocumentTracking><prod:ProductTree>`)
	for p := range 20 {
		fmt.Fprintf(&b, `<prod:FullProductName ProductID="%d">Windows Server 20%d</prod:FullProductName>`, 10000+p, 10+p)
	}
	b.WriteString(`</prod:ProductTree>`)
	filler := strings.Repeat("The attacker could exploit this vulnerability by sending a specially crafted request. ", 40)
	for v := range n {
		kb, product := 5080000+v%40, 10000+v%20
		fmt.Fprintf(&b, `<vuln:Vulnerability Ordinal="%d"><vuln:Title>Vulnerability %d</vuln:Title><vuln:Notes><vuln:Note Type="Description">%s</vuln:Note></vuln:Notes><vuln:CVE>CVE-2026-%d</vuln:CVE>
<vuln:Threats><vuln:Threat Type="Severity"><vuln:Description>Important</vuln:Description><vuln:ProductID>%d</vuln:ProductID></vuln:Threat></vuln:Threats>
<vuln:CVSSScoreSets><vuln:ScoreSet><vuln:BaseScore>7.5</vuln:BaseScore><vuln:Vector>CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H</vuln:Vector><vuln:ProductID>%d</vuln:ProductID></vuln:ScoreSet></vuln:CVSSScoreSets>
<vuln:Remediations><vuln:Remediation Type="Vendor Fix"><vuln:Description>%d</vuln:Description><vuln:ProductID>%d</vuln:ProductID><vuln:RestartRequired>Yes</vuln:RestartRequired></vuln:Remediation></vuln:Remediations></vuln:Vulnerability>`,
			v+1, v, filler, 50000+v, product, product, kb, product)
	}
	b.WriteString(`</cvrfdoc>`)
	return []byte(b.String())
}

func TestAMonthlyCVRFLargerThanGRPCsDefaultLimitImportsOverREST(t *testing.T) {
	r := startREST(t)
	doc := monthlyCVRF(1500)
	require.Greater(t, len(doc), 5<<20, "larger than gRPC's 4 MiB default")
	code, out := r.do(http.MethodPost, "/v1/advisories:import?name=2026-Dec.xml", "ops@provider", doc, "application/xml")
	require.Equal(t, http.StatusOK, code, "%v", out["message"])
	require.Equal(t, "cvrf", out["format"])
	require.Len(t, out["patches"], 40, "one patch per KB")
}
