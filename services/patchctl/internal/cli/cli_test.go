package cli_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/patchctl/internal/cli"
)

var started = timestamppb.New(time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC))

// api is a fake REST API answering canned protojson per route, as the gateway would.
type api struct {
	t  *testing.T
	mu sync.Mutex
	// polls counts GET run calls; runStates are the states GET run walks through.
	polls    int
	requests []string
	bodies   []string
}

// testKey is the one credential the fake API accepts.
const testKey = "pwk_0123456789abcdef0123_secret"

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testKey {
		w.Header().Set("WWW-Authenticate", `Bearer realm="patchwave"`)
		a.fail(w, http.StatusUnauthorized, 16, "unauthenticated: this API needs a credential")
		return
	}
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.requests = append(a.requests, r.Method+" "+r.URL.EscapedPath())
	a.bodies = append(a.bodies, string(body))
	a.mu.Unlock()
	route := r.Method + " " + r.URL.EscapedPath()
	switch route {
	case "POST /v1/tenants/acme/waves/1/runs":
		a.write(w, &schedulerv1.StartRunResponse{Run: &schedulerv1.Run{
			Tenant: "acme", RunId: "run-x", Wave: 1, BaselineId: "al2023-2026.11",
			State: typesv1.RunState_RUN_STATE_RUNNING, Total: 200, StartedAt: started,
		}})
	case "GET /v1/tenants/acme/runs/run-x":
		a.mu.Lock()
		a.polls++
		n := a.polls
		a.mu.Unlock()
		run := &schedulerv1.Run{Tenant: "acme", RunId: "run-x", Wave: 1, BaselineId: "al2023-2026.11", Total: 200, StartedAt: started}
		switch n {
		case 1:
			run.State, run.Succeeded, run.Failed = typesv1.RunState_RUN_STATE_RUNNING, 117, 3
		case 2:
			run.State, run.Succeeded, run.Failed = typesv1.RunState_RUN_STATE_RUNNING, 117, 3 // unchanged: not printed again
		default:
			run.State, run.Succeeded, run.Failed, run.SnapshotFailed = typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, 195, 3, 2
		}
		a.write(w, &schedulerv1.GetRunResponse{Run: run})
	case "GET /v1/tenants/acme/runs":
		a.write(w, &schedulerv1.ListRunsResponse{Runs: []*schedulerv1.Run{
			{Tenant: "acme", RunId: "run-2", Wave: 2, State: typesv1.RunState_RUN_STATE_SCHEDULED},
			{Tenant: "acme", RunId: "run-1", Wave: 1, BaselineId: "al2023-2026.11", State: typesv1.RunState_RUN_STATE_COMPLETED, Total: 10, Succeeded: 10, StartedAt: started},
		}})
	case "GET /v1/tenants/acme/compliance":
		a.write(w, &reportingv1.GetComplianceResponse{
			Tenant: "acme", AsOf: started,
			Total: &reportingv1.Coverage{InScope: 300, Compliant: 150, NonCompliant: 50, Unknown: 100, Coverage: 0.5},
			Waves: []*reportingv1.WaveCoverage{
				{Wave: 1, Coverage: &reportingv1.Coverage{InScope: 100, Compliant: 100, Coverage: 1}},
				{Wave: 2, Coverage: &reportingv1.Coverage{InScope: 200, Compliant: 50, NonCompliant: 50, Unknown: 100, Coverage: 0.25}},
			},
		})
	case "GET /v1/tenants/acme/failed-patches":
		a.write(w, &reportingv1.ListFailedPatchesResponse{FailedPatches: []*reportingv1.FailedPatch{
			{PatchId: "ALAS2023-2026-1007", InstanceId: "i-0abc", Wave: 1, RunId: "run-1", Error: "dnf: transaction\nfailed"},
		}})
	case "GET /v1/baselines":
		a.write(w, &catalogv1.ListBaselinesResponse{Baselines: []*catalogv1.Baseline{{
			BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023", Version: 1, PublishedAt: started,
			Patches: []*typesv1.Patch{{Id: "a"}, {Id: "b"}},
		}}})
	case "GET /v1/baselines/al2023-2026.11":
		a.write(w, &catalogv1.GetBaselineResponse{Baseline: &catalogv1.Baseline{
			BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023", Version: 1, PublishedAt: started,
			Patches: []*typesv1.Patch{{
				Id: "ALAS2023-2026-1007", Title: "kernel security update", Severity: typesv1.Severity_SEVERITY_HIGH,
				Classification: typesv1.Classification_CLASSIFICATION_SECURITY, Cves: []string{"CVE-2026-23112"}, RebootRequired: true,
			}},
		}})
	case "GET /v1/tenants/acme/subscriptions":
		a.write(w, &notifierv1.ListSubscriptionsResponse{Subscriptions: []*typesv1.Subscription{
			{Tenant: "acme", SubscriptionId: "ops", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST,
				Url: "https://hooks.slack.com/***", UpdatedBy: "admin@acme"},
			{Tenant: "acme", SubscriptionId: "mail", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_EMAIL, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE,
				EmailTo: []string{"ops@acme.example"}, Filter: &typesv1.SubscriptionFilter{EventTypes: []string{"install.failed", "run.halted"}}, UpdatedBy: "admin@acme"},
		}})
	case "GET /v1/tenants/acme/deliveries":
		if r.URL.Query().Get("status") != "DELIVERY_STATUS_DEAD" || r.URL.Query().Get("subscriptionId") != "ops" {
			a.fail(w, http.StatusBadRequest, 3, "want status and subscriptionId, got "+r.URL.RawQuery)
			return
		}
		a.write(w, &notifierv1.ListDeliveriesResponse{Deliveries: []*notifierv1.Delivery{{
			DeliveryId: "ops.n-0123456789abcdef", EventType: "run.digest", Status: notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD,
			Attempts: 12, CreatedAt: started, LastError: "slack answered status 500\ninternal",
		}}})
	case "POST /v1/tenants/acme/deliveries/ops.n-0123456789abcdef:redeliver":
		a.write(w, &notifierv1.RedeliverDeliveryResponse{Delivery: &notifierv1.Delivery{DeliveryId: "ops.n-0123456789abcdef", Status: notifierv1.DeliveryStatus_DELIVERY_STATUS_PENDING}})
	case "GET /v1/tenants/ghost/runs/nope":
		a.fail(w, http.StatusNotFound, 5, `run "nope" not found`)
	case "POST /v1/tenants/acme/waves/9/runs":
		a.fail(w, http.StatusPreconditionFailed, 9, "baseline al2023-2026.11 is not approved for tenant acme")
	case "GET /v1/tenants/broken/compliance":
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "upstream connect error\n")
	default:
		a.fail(w, http.StatusNotFound, 5, "no route for "+route)
	}
}

func (a *api) write(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	require.NoError(a.t, err)
	w.Header().Set("Content-Type", "application/json")
	// A field the CLI does not know must not break it (a newer server).
	b = append([]byte(`{"fieldFromTheFuture":true,`), b[1:]...)
	_, _ = w.Write(b)
}

func (a *api) fail(w http.ResponseWriter, httpStatus, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg, "details": []any{}})
	_, _ = w.Write(b)
}

type result struct {
	code           int
	stdout, stderr string
}

func start(t *testing.T) (*api, string) {
	a := &api{t: t}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL
}

// runCLI runs patchctl with env; the key is in PATCHWAVE_API_KEY unless env names a
// credential itself (an empty PATCHWAVE_API_KEY for none).
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli.CLI{
		Stdout: &stdout, Stderr: &stderr, PollInterval: time.Millisecond,
		Getenv: func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			if k == cli.EnvKey {
				return testKey
			}
			return ""
		},
	}
	code := c.Run(t.Context(), args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// fields normalizes table output: each line's cells separated by one space.
func fields(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return out
}

func TestCommandsPrintTables(t *testing.T) {
	_, url := start(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{
			name: "runs start prints the new run",
			args: []string{"runs", "start", "--tenant", "acme", "--wave", "1"},
			want: []string{
				"RUN WAVE BASELINE STATE TOTAL SNAPSHOTTED SUCCEEDED FAILED SNAPSHOT FAILED STARTED COMPLETED",
				"run-x 1 al2023-2026.11 RUNNING 200 0 0 0 0 2026-11-10T09:00:00Z -",
			},
		},
		{
			name: "runs list prints every run",
			args: []string{"runs", "list", "--tenant", "acme"},
			want: []string{
				"RUN WAVE BASELINE STATE TOTAL SNAPSHOTTED SUCCEEDED FAILED SNAPSHOT FAILED STARTED COMPLETED",
				"run-2 2 - SCHEDULED 0 0 0 0 0 - -",
				"run-1 1 al2023-2026.11 COMPLETED 10 0 10 0 0 2026-11-10T09:00:00Z -",
			},
		},
		{
			name: "compliance prints a row per wave and the total",
			args: []string{"compliance", "--tenant", "acme"},
			want: []string{
				"tenant acme, as of 2026-11-10T09:00:00Z",
				"WAVE IN SCOPE COMPLIANT NON-COMPLIANT UNKNOWN COVERAGE %",
				"1 100 100 0 0 100.0",
				"2 200 50 50 100 25.0",
				"total 300 150 50 100 50.0",
			},
		},
		{
			name: "failed-patches prints one line per failure",
			args: []string{"failed-patches", "--tenant", "acme"},
			want: []string{
				"PATCH INSTANCE WAVE RUN ERROR",
				"ALAS2023-2026-1007 i-0abc 1 run-1 dnf: transaction failed",
			},
		},
		{
			name: "subscriptions list prints each subscription's channel and target",
			args: []string{"subscriptions", "list", "--tenant", "acme"},
			want: []string{
				"SUBSCRIPTION CHANNEL MODE TARGET TYPES UPDATED BY",
				"ops slack digest https://hooks.slack.com/*** all admin@acme",
				"mail email immediate ops@acme.example install.failed,run.halted admin@acme",
			},
		},
		{
			name: "deliveries list filters by subscription and status",
			args: []string{"deliveries", "list", "--tenant", "acme", "--subscription", "ops", "--status", "dead"},
			want: []string{
				"DELIVERY TYPE STATUS ATTEMPTS CREATED LAST ERROR",
				"ops.n-0123456789abcdef run.digest dead 12 2026-11-10T09:00:00Z slack answered status 500 internal",
			},
		},
		{
			name: "deliveries redeliver sends one again",
			args: []string{"deliveries", "redeliver", "--tenant", "acme", "--delivery", "ops.n-0123456789abcdef"},
			want: []string{"delivery ops.n-0123456789abcdef: pending, sent again"},
		},
		{
			name: "baselines list prints the baselines",
			args: []string{"baselines", "list"},
			want: []string{
				"BASELINE OS FAMILY VERSION PATCHES PUBLISHED",
				"al2023-2026.11 amazon-linux-2023 1 2 2026-11-10T09:00:00Z",
			},
		},
		{
			name: "baselines get prints the patches",
			args: []string{"baselines", "get", "--baseline", "al2023-2026.11"},
			want: []string{
				"baseline al2023-2026.11 (amazon-linux-2023, version 1), published 2026-11-10T09:00:00Z",
				"PATCH SEVERITY CLASSIFICATION REBOOT CVES TITLE",
				"ALAS2023-2026-1007 HIGH SECURITY yes CVE-2026-23112 kernel security update",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"--server", url}, tt.args...)...)
			require.Equal(t, cli.ExitOK, r.code, "stderr: %s", r.stderr)
			require.Empty(t, r.stderr)
			require.Equal(t, tt.want, fields(r.stdout))
		})
	}
}

func TestJSONOutputIsTheDecodedResponse(t *testing.T) {
	_, url := start(t)
	r := runCLI(t, nil, "--server", url, "--output", "json", "compliance", "--tenant", "acme")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var got reportingv1.GetComplianceResponse
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, int32(300), got.GetTotal().GetInScope())
	require.Len(t, got.GetWaves(), 2)
	// protojson varies its white space on purpose, so the zero value is checked on the parsed
	// document, not on the bytes.
	var doc struct {
		Waves []struct {
			Coverage map[string]any `json:"coverage"`
		} `json:"waves"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc))
	require.Contains(t, doc.Waves[0].Coverage, "nonCompliant", "zero values are printed")
	require.InDelta(t, 0.0, doc.Waves[0].Coverage["nonCompliant"], 0)
	require.NotContains(t, r.stdout, "fieldFromTheFuture", "unknown fields are dropped")
}

func TestRunsStartSendsTheRequest(t *testing.T) {
	a, url := start(t)
	r := runCLI(t, nil, "--server", url, "runs", "start", "--tenant", "acme", "--wave", "1", "--baseline", "al2023-2026.11", "--request-id", "req-7")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, []string{"POST /v1/tenants/acme/waves/1/runs"}, a.requests)
	var sent schedulerv1.StartRunRequest
	require.NoError(t, protojson.Unmarshal([]byte(a.bodies[0]), &sent))
	require.Equal(t, "al2023-2026.11", sent.GetBaselineId())
	require.Equal(t, "req-7", sent.GetRequestId())
	require.Equal(t, int32(1), sent.GetWave())
}

func TestRunsStartWaitFollowsTheRunUntilItEnds(t *testing.T) {
	a, url := start(t)
	r := runCLI(t, nil, "--server", url, "runs", "start", "--tenant", "acme", "--wave", "1", "--wait")
	require.Equal(t, cli.ExitOK, r.code, "stderr: %s", r.stderr)
	require.Equal(t, []string{
		"wave 1 run-x: 0/200 done (0 failed)",
		"wave 1 run-x: 120/200 done (3 failed)",
		"wave 1 run-x: 200/200 done (5 failed)",
		"wave 1 run-x: COMPLETED_WITH_ERRORS",
	}, strings.Split(strings.TrimSpace(r.stdout), "\n"))
	require.Equal(t, 3, a.polls)
}

func TestRunsStartWaitInJSONModePrintsProgressOnStderr(t *testing.T) {
	_, url := start(t)
	r := runCLI(t, nil, "--server", url, "--output", "json", "runs", "start", "--tenant", "acme", "--wave", "1", "--wait")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, "wave 1 run-x: 200/200 done (5 failed)")
	var got schedulerv1.GetRunResponse
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, got.GetRun().GetState())
}

func TestAPIErrorsExitTwo(t *testing.T) {
	_, url := start(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"a 404 prints the status and the API's message", []string{"runs", "get", "--tenant", "ghost", "--run", "nope"}, `patchctl: 404 Not Found: run "nope" not found`},
		{"a 412 prints the status and the API's message", []string{"runs", "start", "--tenant", "acme", "--wave", "9"}, "patchctl: 412 Precondition Failed: baseline al2023-2026.11 is not approved for tenant acme"},
		{"a body that is not JSON is shown as text", []string{"compliance", "--tenant", "broken"}, "patchctl: 502 Bad Gateway: upstream connect error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"--server", url}, tt.args...)...)
			require.Equal(t, cli.ExitAPI, r.code)
			require.Empty(t, r.stdout)
			require.Equal(t, tt.want+"\n", r.stderr)
		})
	}
}

func TestAnUnreachableServerExitsTwo(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	r := runCLI(t, nil, "--server", url, "baselines", "list")
	require.Equal(t, cli.ExitAPI, r.code)
	require.Contains(t, r.stderr, "patchctl: ")
	require.Contains(t, r.stderr, "connect")
}

func TestTheServerComesFromTheEnvironmentUnlessGiven(t *testing.T) {
	a, url := start(t)
	r := runCLI(t, map[string]string{cli.EnvServer: url}, "baselines", "list")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, []string{"GET /v1/baselines"}, a.requests)

	r = runCLI(t, map[string]string{cli.EnvServer: "http://127.0.0.1:1"}, "--server", url, "baselines", "list")
	require.Equal(t, cli.ExitOK, r.code, "--server wins over the environment: %s", r.stderr)
}

func TestUsageErrorsExit64WithUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "patchctl: missing command"},
		{"an unknown command", []string{"deploy"}, `patchctl: unknown command "deploy"`},
		{"runs without a subcommand", []string{"runs"}, "runs: missing subcommand"},
		{"an unknown runs subcommand", []string{"runs", "stop"}, "runs stop: unknown subcommand"},
		{"an unknown baselines subcommand", []string{"baselines", "delete"}, "baselines delete: unknown subcommand"},
		{"runs start without a tenant", []string{"runs", "start", "--wave", "1"}, "runs start: missing required flag --tenant"},
		{"runs start without a wave", []string{"runs", "start", "--tenant", "acme"}, "runs start: --wave 0: required, must be a wave number from 1"},
		{"runs start with a negative wave", []string{"runs", "start", "--tenant", "acme", "--wave", "-2"}, "--wave -2"},
		{"runs start with a non-numeric wave", []string{"runs", "start", "--tenant", "acme", "--wave", "two"}, `invalid value "two" for flag -wave`},
		{"runs get without flags names both", []string{"runs", "get"}, "runs get: missing required flag --tenant, --run"},
		{"compliance without a tenant", []string{"compliance"}, "compliance: missing required flag --tenant"},
		{"failed-patches without a tenant", []string{"failed-patches"}, "failed-patches: missing required flag --tenant"},
		{"an unknown flag", []string{"runs", "list", "--tenant", "acme", "--all"}, "flag provided but not defined: -all"},
		{"a stray argument", []string{"baselines", "list", "extra"}, `baselines list: unexpected argument "extra"`},
		{"a bad output format", []string{"--output", "yaml", "baselines", "list"}, `--output "yaml": must be table or json`},
		{"a server that is not a URL", []string{"--server", "localhost:8080", "baselines", "list"}, `--server "localhost:8080": must be an http:// or https:// URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			require.Equal(t, cli.ExitUsage, r.code, "stderr: %s", r.stderr)
			require.Empty(t, r.stdout)
			require.Contains(t, r.stderr, tt.want)
			require.Contains(t, r.stderr, "usage: patchctl")
		})
	}
}

func TestHelpPrintsUsageAndSucceeds(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"runs", "start", "-h"}} {
		r := runCLI(t, nil, args...)
		require.Equal(t, cli.ExitOK, r.code, "%v", args)
		require.Contains(t, r.stdout, "usage: patchctl")
	}
}

func TestTheKeyComesFromAFlagAFileOrTheEnvironment(t *testing.T) {
	a, url := start(t)
	file := filepath.Join(t.TempDir(), "operator.key")
	require.NoError(t, os.WriteFile(file, []byte(testKey+"\n"), 0o600))
	none := map[string]string{cli.EnvKey: ""}
	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"--key", none, []string{"--key", testKey}},
		{"--key-file", none, []string{"--key-file", file}},
		{"PATCHWAVE_API_KEY", map[string]string{cli.EnvKey: testKey}, nil},
		{"PATCHWAVE_API_KEY_FILE", map[string]string{cli.EnvKey: "", cli.EnvKeyFile: file}, nil},
		{"--key wins over the environment", map[string]string{cli.EnvKey: "wrong"}, []string{"--key", testKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.env, append(append([]string{"--server", url}, tt.args...), "baselines", "list")...)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
		})
	}
	a.mu.Lock()
	require.Len(t, a.requests, len(tests), "every call reached the API with the key")
	a.mu.Unlock()

	r := runCLI(t, none, "--server", url, "baselines", "list")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "no credential: give --key or --key-file")
	r = runCLI(t, none, "--server", url, "--key", "wrong", "baselines", "list")
	require.Equal(t, cli.ExitAPI, r.code)
	require.Contains(t, r.stderr, "401 Unauthorized: unauthenticated: this API needs a credential (check --key / --key-file)")
	r = runCLI(t, none, "--server", url, "--key-file", filepath.Join(t.TempDir(), "missing"), "baselines", "list")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "--key-file:")
}
