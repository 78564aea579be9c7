package patchd_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/natsauth"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/demo"
)

// rest is a small REST client of patchd as one key.
type rest struct {
	t    *testing.T
	base string
	key  string
}

func (r rest) call(method, path, contentType, accept string, body []byte) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(r.t.Context(), method, r.base+path, bytes.NewReader(body))
	require.NoError(r.t, err)
	req.Header.Set("Authorization", "Bearer "+r.key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	return resp.StatusCode, b
}

// json calls and decodes a 200 answer into out.
func (r rest) json(method, path, body string, out proto.Message) {
	r.t.Helper()
	code, b := r.call(method, path, "application/json", "", []byte(body))
	require.Equal(r.t, http.StatusOK, code, "%s %s: %s", method, path, b)
	if out != nil {
		require.NoError(r.t, protojson.Unmarshal(b, out), string(b))
	}
}

// newAdvisory is a security fix of the fleet's OS family that no instance has.
const newAdvisory = `<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update author="linux-security@amazon.com" from="linux-security@amazon.com" status="final" type="security" version="1.4">
    <id>ALAS2023-2026-2001</id>
    <title>Amazon Linux 2023 - ALAS2023-2026-2001: critical priority package update for glibc</title>
    <issued date="2026-11-20 10:00" />
    <updated date="2026-11-20 10:00" />
    <severity>critical</severity>
    <description>CVE-2026-30001: heap overflow in getaddrinfo.</description>
    <references>
      <reference href="https://www.cve.org/CVERecord?id=CVE-2026-30001" id="CVE-2026-30001" title="" type="cve" />
    </references>
    <pkglist>
      <collection short="amazonlinux">
        <name>Amazon Linux 2023</name>
        <package arch="x86_64" epoch="0" name="glibc" release="1.amzn2023.0.9" version="2.34">
          <filename>Packages/glibc-2.34-1.amzn2023.0.9.x86_64.rpm</filename>
        </package>
      </collection>
    </pkglist>
  </update>
</updates>`

// TestComplianceAfterACycleANewBaselineAndAScan is the end-to-end check: a cycle with
// failures, then a new baseline with one more patch approved after it, then a scan of every
// in-scope instance through the installer and the emulated SSM: the instances that miss the
// new patch turn NON_COMPLIANT, the failed patches still name the instances whose install
// failed, the cycle's history snapshots are unchanged, and the CSV exports have the rows of the
// JSON ones.
func TestComplianceAfterACycleANewBaselineAndAScan(t *testing.T) {
	const instances, waves = 40, 1
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	d, err := patchd.New(ctx, patchd.Config{
		DataDir: t.TempDir(), NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
		Tenant: "acme", Instances: instances, Waves: waves, PollInterval: 5 * time.Millisecond,
		Cloud: cloudsim.Config{
			Timing: cloudsim.Timing{Snapshot: 20 * time.Millisecond, Command: 20 * time.Millisecond},
			Faults: cloudsim.FaultConfig{PatchFailureRate: 0.08},
		},
	})
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("patchd run: %v", err)
		}
	})
	require.NoError(t, d.Ready(ctx))
	var out strings.Builder
	res, err := demo.Run(ctx, demo.Config{
		BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: "acme", Waves: waves, CycleID: "c1", Out: &out, Poll: 50 * time.Millisecond,
	})
	require.NoError(t, err, out.String())
	api := rest{t: t, base: d.URL(), key: d.OperatorKey()}

	// After the cycle: the instances whose install failed are non-compliant and named.
	var before reportingv1.GetComplianceResponse
	api.json(http.MethodGet, "/v1/tenants/acme/compliance", "", &before)
	require.EqualValues(t, instances, before.GetTotal().GetInScope())
	require.Positive(t, before.GetTotal().GetNonCompliant(), "an 8%% failure rate per patch fails some installs")
	require.Len(t, before.GetOsFamilies(), 1)
	require.Equal(t, "amazon-linux-2023", before.GetOsFamilies()[0].GetOsFamily())
	var failedBefore reportingv1.ListFailedPatchesResponse
	api.json(http.MethodGet, "/v1/tenants/acme/failed-patches?pageSize=1000", "", &failedBefore)
	require.NotEmpty(t, failedBefore.GetFailedPatches())
	failedInstances := map[string]bool{}
	for _, fp := range failedBefore.GetFailedPatches() {
		failedInstances[fp.GetInstanceId()] = true
		require.NotNil(t, fp.GetFirstSeen())
		require.NotEmpty(t, fp.GetRunId())
	}
	var histBefore reportingv1.GetComplianceHistoryResponse
	api.json(http.MethodGet, "/v1/tenants/acme/compliance/history", "", &histBefore)
	require.Len(t, histBefore.GetRuns(), waves, "one snapshot per run of the cycle")
	var run1 reportingv1.GetRunReportResponse
	api.json(http.MethodGet, "/v1/tenants/acme/runs/"+res.Waves[0].Run.GetRunId()+"/report", "", &run1)
	require.Equal(t, res.Waves[0].Run.GetTotal(), run1.GetTotal())

	// A new baseline: the cycle's four patches and a new critical fix, approved by the tenant.
	code, body := api.call(http.MethodPost, "/v1/advisories:import?name=glibc.xml", "application/xml", "", []byte(newAdvisory))
	require.Equal(t, http.StatusOK, code, string(body))
	api.json(http.MethodPost, "/v1/patches/ALAS2023-2026-2001/certification", `{"state":"CERTIFICATION_STATE_IN_TEST","notes":"e2e"}`, nil)
	api.json(http.MethodPost, "/v1/patches/ALAS2023-2026-2001/certification",
		`{"state":"CERTIFICATION_STATE_CERTIFIED","notes":"e2e","evidence":[{"title":"smoke","mediaType":"text/plain","content":"ok"}]}`, nil)
	api.json(http.MethodPost, "/v1/baselines", `{"baselineId":"al2023-c2","osFamily":"amazon-linux-2023","notes":"next cycle",
		"patches":[{"patchId":"ALAS2023-2026-1001","order":1},{"patchId":"ALAS2023-2026-0412","order":2},
		{"patchId":"ALAS2023-2026-0088","order":2},{"patchId":"ALAS2023-2026-1007","order":3},{"patchId":"ALAS2023-2026-2001","order":4}]}`, nil)
	api.json(http.MethodPost, "/v1/tenants/acme/approvals/al2023-c2:approve", `{"notes":"e2e"}`, nil)

	// Every assessed instance misses the new patch: none is compliant any more.
	var after reportingv1.GetComplianceResponse
	require.Eventually(t, func() bool {
		api.json(http.MethodGet, "/v1/tenants/acme/compliance", "", &after)
		return after.GetTotal().GetCompliant() == 0
	}, 20*time.Second, 50*time.Millisecond, "the approval re-measures the fleet: %v", &after)
	require.EqualValues(t, instances, after.GetTotal().GetNonCompliant())

	// A scan reads the machines: the new patch is missing on each.
	var scan reportingv1.RequestScanResponse
	api.json(http.MethodPost, "/v1/tenants/acme/scans", `{"requestId":"e2e"}`, &scan)
	require.Equal(t, "scan-e2e", scan.GetScanId())
	require.EqualValues(t, instances, scan.GetInstances())
	require.EqualValues(t, 1, scan.GetChunks(), "40 instances of one account, region and family: one request")
	nc, err := nats.Connect(d.NATSURL(), natsauth.ConnectOptions(d.CredsFile(natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	require.Eventually(t, func() bool { return readStream(t, ctx, nc).count("scan.completed") == instances },
		30*time.Second, 50*time.Millisecond, "every instance was scanned")
	var list reportingv1.ListInstancesResponse
	require.Eventually(t, func() bool {
		api.json(http.MethodGet, "/v1/tenants/acme/instances?states=COMPLIANCE_STATE_NON_COMPLIANT&pageSize=1000", "", &list)
		if len(list.GetInstances()) != instances {
			return false
		}
		for _, in := range list.GetInstances() {
			if in.GetLastRunId() != "scan-e2e" {
				return false
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "every instance is assessed by the scan")
	for _, in := range list.GetInstances() {
		require.Equal(t, "al2023-c2", in.GetBaselineId())
		require.GreaterOrEqual(t, in.GetMissingPatches(), int32(1))
	}
	var patches reportingv1.GetInstancePatchesResponse
	api.json(http.MethodGet, "/v1/tenants/acme/instances/"+list.GetInstances()[0].GetInstanceId()+"/patches", "", &patches)
	found := false
	for _, p := range patches.GetPatches() {
		if p.GetPatchId() == "ALAS2023-2026-2001" {
			found = true
			require.Equal(t, typesv1.PatchState_PATCH_STATE_MISSING, p.GetState())
			require.Equal(t, "scan-e2e", p.GetRunId())
			require.True(t, p.GetInBaseline())
		}
	}
	require.True(t, found, "the new patch is listed: %v", &patches)

	// The failed patches still name the instances whose install failed.
	var failedAfter reportingv1.ListFailedPatchesResponse
	api.json(http.MethodGet, "/v1/tenants/acme/failed-patches?pageSize=1000", "", &failedAfter)
	require.True(t, proto.Equal(&failedBefore, &failedAfter), "a scan that sees a failed patch missing keeps it failed")
	var ageing reportingv1.GetPatchAgeingResponse
	api.json(http.MethodGet, "/v1/tenants/acme/compliance/ageing", "", &ageing)
	require.NotEmpty(t, ageing.GetPatches())
	require.Equal(t, "ALAS2023-2026-2001", func() string {
		for _, p := range ageing.GetPatches() {
			if p.GetInstances() == instances {
				return p.GetPatchId()
			}
		}
		return ""
	}())

	// The cycle's history is unchanged.
	var histAfter reportingv1.GetComplianceHistoryResponse
	api.json(http.MethodGet, "/v1/tenants/acme/compliance/history", "", &histAfter)
	require.True(t, proto.Equal(&reportingv1.GetComplianceHistoryResponse{Runs: histBefore.GetRuns(), Days: histBefore.GetDays()},
		&reportingv1.GetComplianceHistoryResponse{Runs: histAfter.GetRuns(), Days: histAfter.GetDays()}))
	require.EqualValues(t, 0, histAfter.GetCurrent().GetTotal().GetCompliant())

	// The exports: CSV (by format or Accept) has the rows of the JSON.
	var expJSON reportingv1.ExportComplianceResponse
	api.json(http.MethodGet, "/v1/tenants/acme/compliance/export", "", &expJSON)
	require.Len(t, expJSON.GetInstances(), instances)
	for _, accept := range []string{"", "text/csv"} {
		path := "/v1/tenants/acme/compliance/export?format=csv"
		if accept != "" {
			path = "/v1/tenants/acme/compliance/export"
		}
		code, body := api.call(http.MethodGet, path, "", accept, nil)
		require.Equal(t, http.StatusOK, code, string(body))
		requireSameRows(t, body, expJSON.GetInstances())
	}
	var fpJSON reportingv1.ExportFailedPatchesResponse
	api.json(http.MethodGet, "/v1/tenants/acme/failed-patches/export?format=json", "", &fpJSON)
	require.Len(t, fpJSON.GetFailedPatches(), len(failedAfter.GetFailedPatches()))
	code, body = api.call(http.MethodGet, "/v1/tenants/acme/failed-patches/export?format=csv", "", "", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	requireSameRows(t, body, fpJSON.GetFailedPatches())

	// Bad filters and tokens are 400 naming the field.
	for path, field := range map[string]string{
		"/v1/tenants/acme/instances?pageToken=nope":                                             "pageToken",
		"/v1/tenants/acme/instances?pageSize=5000":                                              "pageSize",
		"/v1/tenants/acme/failed-patches?wave=-1":                                               "wave",
		"/v1/tenants/acme/compliance/export?format=xml":                                         "format",
		"/v1/tenants/acme/compliance/history?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z": "from",
	} {
		code, body := api.call(http.MethodGet, path, "", "", nil)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", path, body)
		require.Contains(t, string(body), field, path)
	}
	require.Zero(t, d.PermissionViolations(), "the permission table covers the scan stage")
}

// requireSameRows checks that a CSV export has a header and exactly the rows of the JSON list,
// field for field (by the JSON names).
func requireSameRows[T proto.Message](t *testing.T, csvBody []byte, rows []T) {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(csvBody)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(rows)+1, "a header and one line per row")
	header := recs[0]
	for i, row := range rows {
		b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(row)
		require.NoError(t, err)
		var fields map[string]any
		require.NoError(t, json.Unmarshal(b, &fields))
		for j, col := range header {
			want := fields[col]
			got := recs[i+1][j]
			switch v := want.(type) {
			case nil:
				require.Empty(t, got, "row %d %s", i, col)
			case string:
				if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
					gt, err := time.Parse(time.RFC3339Nano, got)
					require.NoError(t, err, "row %d %s", i, col)
					require.True(t, ts.Equal(gt), "row %d %s: %s != %s", i, col, v, got)
					continue
				}
				require.Equal(t, v, got, "row %d %s", i, col)
			default:
				require.Equal(t, fmt.Sprint(v), got, "row %d %s", i, col)
			}
		}
	}
}
