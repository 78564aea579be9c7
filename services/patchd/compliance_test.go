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
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/demo"
	"github.com/patchwave/patchwave/services/reporting"
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

// waveOneWindow is a moment inside wave 1's window of the demo design in a month: the second
// Tuesday + 2 days, 02:00-06:00 Berlin, so 02:30 UTC (03:30 or 04:30 in Berlin).
func waveOneWindow(month time.Time) time.Time {
	d := time.Date(month.Year(), month.Month(), 1, 2, 30, 0, 0, time.UTC)
	for d.Weekday() != time.Tuesday {
		d = d.AddDate(0, 0, 1)
	}
	return d.AddDate(0, 0, 7+2)
}

// TestComplianceAfterACycleANewBaselineAndAScan is the end-to-end check, on an injected
// clock (the scheduler's and reporting's). In one month wave 1 fires by itself, pins the cycle
// to the approved baseline and installs it, with failures. A new baseline with one more patch is
// approved inside that cycle: it changes nothing there (the cycle's pin stands). In the next
// month a scan of every in-scope instance, through the installer and the emulated SSM and
// released by two reporting replicas (one restarted mid-scan) under the wave's max concurrency
// (never more commands in flight at cloudsim), finds
// the new patch missing: the instances turn NON_COMPLIANT against the new baseline, the failed
// patches still name the instances whose install failed, last month's history (its run, its
// days, and its cycle snapshot with the pin it was measured against) is what it was, and the
// CSV exports have the rows of the JSON ones.
func TestComplianceAfterACycleANewBaselineAndAScan(t *testing.T) {
	const instances, waves, maxConcurrency = 40, 1, 5
	// The months ahead of the real clock: events stamped by the services' real clocks all
	// fall before them, so the cycles move only with the injected clock.
	now := time.Now().UTC()
	month1 := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	month2 := month1.AddDate(0, 1, 0)
	window := waveOneWindow(month1)
	clk := &testClock{t: window.Add(-14 * time.Hour)}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	d, err := patchd.New(ctx, patchd.Config{
		DataDir: t.TempDir(), NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
		Tenant: "acme", Instances: instances, Waves: waves, PollInterval: 5 * time.Millisecond,
		RateLimit: ratelimit.Limit{Rate: 10000, Burst: 10000},
		Cloud: cloudsim.Config{
			Timing: cloudsim.Timing{Snapshot: 20 * time.Millisecond, Command: 20 * time.Millisecond},
			Faults: cloudsim.FaultConfig{PatchFailureRate: 0.08},
		},
		Clock: clk.now, FireInterval: 50 * time.Millisecond,
		Reporting: reporting.Config{DailyScanAt: "off"},
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
	// A second reporting replica, with a read model of its own, releases scans too.
	rnc, err := nats.Connect(d.NATSURL(), natsauth.ConnectOptions(d.CredsFile(reporting.Name), reporting.Name)...)
	require.NoError(t, err)
	defer rnc.Close()
	startReplica := func() func() {
		svc, err := reporting.New(reporting.Config{DailyScanAt: "off", ScanReleaseTick: 10 * time.Millisecond},
			reporting.Deps{Store: store.NewMemory(), Clock: clk.now})
		require.NoError(t, err)
		return stagetest.RunComponent(t, rnc, svc)
	}
	stopSecond := startReplica()
	defer func() { stopSecond() }()
	var out strings.Builder
	sess, err := demo.Prepare(ctx, demo.Config{
		BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: "acme", Waves: waves, CycleID: "c1", Out: &out,
		Policy: func(int) *typesv1.RolloutPolicy {
			return &typesv1.RolloutPolicy{Cutoff: "30m",
				MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Count{Count: maxConcurrency}},
				ErrorBudget:    &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 100}}}
		},
	})
	require.NoError(t, err, out.String())
	runs := &api{t: t, base: d.URL(), key: d.OperatorKey(), d: d}
	api := rest{t: t, base: d.URL(), key: d.OperatorKey()}

	// Month 1: wave 1's window opens, its run pins the cycle and installs the approved baseline.
	clk.set(window)
	cycle1 := month1.Format("2006-01")
	wave1 := waitRun(t, runs, 1, func(r map[string]any) bool { return final(r["state"]) })
	require.Equal(t, cycle1, wave1["cycle"])
	require.Equal(t, sess.BaselineID(), wave1["baselineId"])
	pin1 := []*typesv1.BaselinePin{{OsFamily: "amazon-linux-2023", BaselineId: sess.BaselineID(), Version: 1}}

	// After the cycle: the instances whose install failed are non-compliant and named.
	var histBefore reportingv1.GetComplianceHistoryResponse
	require.Eventually(t, func() bool {
		api.json(http.MethodGet, "/v1/tenants/acme/compliance/history", "", &histBefore)
		return len(histBefore.GetRuns()) == waves
	}, 20*time.Second, 50*time.Millisecond, "one snapshot per run of the cycle")
	require.Equal(t, cycle1, histBefore.GetRuns()[0].GetCycle())
	requirePins(t, pin1, histBefore.GetRuns()[0].GetPins(), "the run's snapshot names the pin it was measured against")
	require.Empty(t, histBefore.GetCycles(), "the cycle is not over")
	var before reportingv1.GetComplianceResponse
	api.json(http.MethodGet, "/v1/tenants/acme/compliance", "", &before)
	require.EqualValues(t, instances, before.GetTotal().GetInScope())
	require.Positive(t, before.GetTotal().GetNonCompliant(), "an 8%% failure rate per patch fails some installs")
	require.Positive(t, before.GetTotal().GetCompliant())
	require.Len(t, before.GetOsFamilies(), 1)
	require.Equal(t, "amazon-linux-2023", before.GetOsFamilies()[0].GetOsFamily())
	var failedBefore reportingv1.ListFailedPatchesResponse
	api.json(http.MethodGet, "/v1/tenants/acme/failed-patches?pageSize=1000", "", &failedBefore)
	require.NotEmpty(t, failedBefore.GetFailedPatches())
	for _, fp := range failedBefore.GetFailedPatches() {
		require.NotNil(t, fp.GetFirstSeen())
		require.Equal(t, wave1["runId"], fp.GetRunId())
	}
	var run1 reportingv1.GetRunReportResponse
	api.json(http.MethodGet, "/v1/tenants/acme/runs/"+wave1["runId"].(string)+"/report", "", &run1)
	require.EqualValues(t, instances, run1.GetTotal())

	// A new baseline: the cycle's four patches and a new critical fix, approved by the tenant
	// inside the pinned cycle.
	code, body := api.call(http.MethodPost, "/v1/advisories:import?name=glibc.xml", "application/xml", "", []byte(newAdvisory))
	require.Equal(t, http.StatusOK, code, string(body))
	api.json(http.MethodPost, "/v1/patches/ALAS2023-2026-2001/certification", `{"state":"CERTIFICATION_STATE_IN_TEST","notes":"e2e"}`, nil)
	api.json(http.MethodPost, "/v1/patches/ALAS2023-2026-2001/certification",
		`{"state":"CERTIFICATION_STATE_CERTIFIED","notes":"e2e","evidence":[{"title":"smoke","mediaType":"text/plain","content":"ok"}]}`, nil)
	api.json(http.MethodPost, "/v1/baselines", `{"baselineId":"al2023-c2","osFamily":"amazon-linux-2023","notes":"next cycle",
		"patches":[{"patchId":"ALAS2023-2026-1001","order":1},{"patchId":"ALAS2023-2026-0412","order":2},
		{"patchId":"ALAS2023-2026-0088","order":2},{"patchId":"ALAS2023-2026-1007","order":3},{"patchId":"ALAS2023-2026-2001","order":4}]}`, nil)
	api.json(http.MethodPost, "/v1/tenants/acme/approvals/al2023-c2:approve", `{"notes":"e2e"}`, nil)

	// Month 2, before its waves: a scan checks what they will install (al2023-c2), released
	// chunk by chunk under the wave's max concurrency.
	clk.set(time.Date(month2.Year(), month2.Month(), 5, 12, 0, 0, 0, time.UTC))
	d.Cloud().ResetStats()
	var scan reportingv1.RequestScanResponse
	api.json(http.MethodPost, "/v1/tenants/acme/scans", `{"requestId":"e2e"}`, &scan)
	require.Equal(t, "scan-e2e", scan.GetScanId())
	require.EqualValues(t, instances, scan.GetInstances())
	require.EqualValues(t, instances/maxConcurrency, scan.GetChunks(), "chunks of the wave's max concurrency")
	nc, err := nats.Connect(d.NATSURL(), natsauth.ConnectOptions(d.CredsFile(natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	// The second replica restarts mid-scan with an empty read model: it rebuilds it from the
	// stream and goes on releasing.
	require.Eventually(t, func() bool { return readStream(t, ctx, nc).count("scan.completed") >= 2*maxConcurrency },
		60*time.Second, 5*time.Millisecond, "the scan runs")
	stopSecond()
	stopSecond = startReplica()
	require.Eventually(t, func() bool { return readStream(t, ctx, nc).count("scan.completed") == instances },
		60*time.Second, 50*time.Millisecond, "every instance was scanned")
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
	stats := d.Cloud().Stats()
	require.Positive(t, stats.Busy.MaxInFlight)
	require.LessOrEqual(t, stats.Busy.MaxInFlight, int64(maxConcurrency), "scan commands in flight at cloudsim: %+v", stats.Busy)
	require.EqualValues(t, instances/maxConcurrency, stats.Operations["ssm:SendCommand"].OK, "one command per chunk")
	log := readStream(t, ctx, nc)
	require.Equal(t, instances/maxConcurrency, log.count("scan.requested"))
	require.Equal(t, 1, log.count("scan.ordered"))
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
	nonCompliant := map[string]bool{}
	for _, in := range list.GetInstances() {
		nonCompliant[in.GetInstanceId()] = true
	}
	for _, fp := range failedAfter.GetFailedPatches() {
		require.True(t, nonCompliant[fp.GetInstanceId()], "%s has a failed patch: it is listed non-compliant", fp.GetInstanceId())
	}
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

	// Last month's history is what it was: its run and its days unchanged, field for field,
	// and its cycle kept with the figures it ended with and the pin they were measured
	// against (the approval inside it changed nothing).
	var histAfter reportingv1.GetComplianceHistoryResponse
	api.json(http.MethodGet, "/v1/tenants/acme/compliance/history", "", &histAfter)
	require.True(t, proto.Equal(&reportingv1.GetComplianceHistoryResponse{Runs: histBefore.GetRuns()},
		&reportingv1.GetComplianceHistoryResponse{Runs: histAfter.GetRuns()}), "runs: %v != %v", histBefore.GetRuns(), histAfter.GetRuns())
	afterDays := map[string]*reportingv1.ComplianceSnapshot{}
	for _, s := range histAfter.GetDays() {
		afterDays[s.GetKey()] = s
	}
	for _, s := range histBefore.GetDays() {
		require.True(t, proto.Equal(s, afterDays[s.GetKey()]), "day %s: %v != %v", s.GetKey(), s, afterDays[s.GetKey()])
	}
	require.Len(t, histAfter.GetCycles(), 1)
	last := histAfter.GetCycles()[0]
	require.Equal(t, "cycle", last.GetKind())
	require.Equal(t, cycle1, last.GetKey())
	require.Equal(t, cycle1, last.GetCycle())
	requirePins(t, pin1, last.GetPins(), "last month was measured against its pin")
	require.True(t, proto.Equal(&reportingv1.GetComplianceResponse{Total: before.GetTotal(), Waves: before.GetWaves(), OsFamilies: before.GetOsFamilies()},
		&reportingv1.GetComplianceResponse{Total: last.GetTotal(), Waves: last.GetWaves(), OsFamilies: last.GetOsFamilies()}),
		"last month's figures: %v, then %v", &before, last)
	cur := histAfter.GetCurrent()
	require.Equal(t, month2.Format("2006-01"), cur.GetCycle())
	require.Empty(t, cur.GetPins(), "this month is not pinned yet")
	require.EqualValues(t, instances, cur.GetTotal().GetNonCompliant())

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

// requirePins checks a snapshot's pin by family, baseline and version.
func requirePins(t *testing.T, want, got []*typesv1.BaselinePin, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i := range want {
		require.Equal(t, want[i].GetOsFamily(), got[i].GetOsFamily(), msg)
		require.Equal(t, want[i].GetBaselineId(), got[i].GetBaselineId(), msg)
		require.Equal(t, want[i].GetVersion(), got[i].GetVersion(), msg)
	}
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
