package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/testkit"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/gateway"
)

// calls records what the fake services received.
type calls struct {
	mu       sync.Mutex
	requests []any
	corrIDs  []string
	mds      []metadata.MD
}

func (c *calls) record(ctx context.Context, req any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, req)
	md, _ := metadata.FromIncomingContext(ctx)
	c.corrIDs = append(c.corrIDs, strings.Join(md.Get("x-correlation-id"), ","))
	c.mds = append(c.mds, md)
}

func (c *calls) last(t *testing.T) (any, string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.NotEmpty(t, c.requests, "no gRPC call reached the services")
	return c.requests[len(c.requests)-1], c.corrIDs[len(c.corrIDs)-1]
}

// errorFor returns the gRPC error a fake answers for a tenant or id naming one.
func errorFor(id string) error {
	switch id {
	case "invalid":
		return status.Error(codes.InvalidArgument, "tenant \"invalid\": must match ^[a-z0-9][a-z0-9-]{0,62}$")
	case "missing":
		return status.Error(codes.NotFound, "run \"missing\" not found")
	case "unapproved":
		return status.Error(codes.FailedPrecondition, "baseline al2023-2026.11 is not approved for tenant unapproved")
	case "down":
		return status.Error(codes.Unavailable, "scheduler unavailable")
	}
	return nil
}

var started = timestamppb.New(time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC))

type fakeScheduler struct {
	schedulerv1.UnimplementedSchedulerServiceServer
	calls *calls
}

func (f *fakeScheduler) StartRun(ctx context.Context, req *schedulerv1.StartRunRequest) (*schedulerv1.StartRunResponse, error) {
	f.calls.record(ctx, req)
	if err := errorFor(req.GetTenant()); err != nil {
		return nil, err
	}
	return &schedulerv1.StartRunResponse{Run: &schedulerv1.Run{
		Tenant: req.GetTenant(), RunId: "run-1", Wave: req.GetWave(), BaselineId: req.GetBaselineId(),
		State: typesv1.RunState_RUN_STATE_RUNNING, Total: 200, StartedAt: started,
	}}, nil
}

func (f *fakeScheduler) GetRun(ctx context.Context, req *schedulerv1.GetRunRequest) (*schedulerv1.GetRunResponse, error) {
	f.calls.record(ctx, req)
	if err := errorFor(req.GetRunId()); err != nil {
		return nil, err
	}
	return &schedulerv1.GetRunResponse{Run: &schedulerv1.Run{
		Tenant: req.GetTenant(), RunId: req.GetRunId(), Wave: 1, State: typesv1.RunState_RUN_STATE_COMPLETED,
		Total: 200, Snapshotted: 200, Succeeded: 197, Failed: 3,
	}}, nil
}

func (f *fakeScheduler) ListRuns(ctx context.Context, req *schedulerv1.ListRunsRequest) (*schedulerv1.ListRunsResponse, error) {
	f.calls.record(ctx, req)
	if err := errorFor(req.GetTenant()); err != nil {
		return nil, err
	}
	return &schedulerv1.ListRunsResponse{Runs: []*schedulerv1.Run{
		{Tenant: req.GetTenant(), RunId: "run-2", Wave: 2}, {Tenant: req.GetTenant(), RunId: "run-1", Wave: 1},
	}}, nil
}

type fakeRestore struct {
	snapshotterv1.UnimplementedRestoreServiceServer
	calls *calls
}

func (f *fakeRestore) RestoreInstance(ctx context.Context, req *snapshotterv1.RestoreInstanceRequest) (*snapshotterv1.RestoreInstanceResponse, error) {
	f.calls.record(ctx, req)
	md, _ := metadata.FromIncomingContext(ctx)
	return &snapshotterv1.RestoreInstanceResponse{Restore: &snapshotterv1.Restore{
		Tenant: req.GetTenant(), RestoreId: "rst-1", InstanceId: req.GetInstance(), RunId: req.GetRunId(),
		State: snapshotterv1.RestoreState_RESTORE_STATE_REQUESTED, Actor: strings.Join(md.Get(auth.MetadataSubject), ","),
	}}, nil
}

func (f *fakeRestore) ListRestores(ctx context.Context, req *snapshotterv1.ListRestoresRequest) (*snapshotterv1.ListRestoresResponse, error) {
	f.calls.record(ctx, req)
	return &snapshotterv1.ListRestoresResponse{}, nil
}

type fakeReporting struct {
	reportingv1.UnimplementedReportingServiceServer
	calls *calls
}

func (f *fakeReporting) GetCompliance(ctx context.Context, req *reportingv1.GetComplianceRequest) (*reportingv1.GetComplianceResponse, error) {
	f.calls.record(ctx, req)
	if err := errorFor(req.GetTenant()); err != nil {
		return nil, err
	}
	return &reportingv1.GetComplianceResponse{
		Tenant: req.GetTenant(),
		Total:  &reportingv1.Coverage{InScope: 10, Unknown: 10},
		Waves:  []*reportingv1.WaveCoverage{{Wave: 1, Coverage: &reportingv1.Coverage{InScope: 10, Unknown: 10}}},
	}, nil
}

func (f *fakeReporting) ListFailedPatches(ctx context.Context, req *reportingv1.ListFailedPatchesRequest) (*reportingv1.ListFailedPatchesResponse, error) {
	f.calls.record(ctx, req)
	if err := errorFor(req.GetTenant()); err != nil {
		return nil, err
	}
	return &reportingv1.ListFailedPatchesResponse{FailedPatches: []*reportingv1.FailedPatch{
		{PatchId: "ALAS2023-2026-1001", InstanceId: "i-0abc", Wave: 1, RunId: "run-1", Error: "dnf exited 1"},
	}}, nil
}

type fakeCatalog struct {
	catalogv1.UnimplementedCatalogServiceServer
	calls *calls
}

func (f *fakeCatalog) ListBaselines(ctx context.Context, req *catalogv1.ListBaselinesRequest) (*catalogv1.ListBaselinesResponse, error) {
	f.calls.record(ctx, req)
	return &catalogv1.ListBaselinesResponse{Baselines: []*catalogv1.Baseline{{BaselineId: "al2023-2026.11", Version: 1}}}, nil
}

func (f *fakeCatalog) GetBaseline(ctx context.Context, req *catalogv1.GetBaselineRequest) (*catalogv1.GetBaselineResponse, error) {
	f.calls.record(ctx, req)
	if err := errorFor(req.GetBaselineId()); err != nil {
		return nil, err
	}
	return &catalogv1.GetBaselineResponse{Baseline: &catalogv1.Baseline{
		BaselineId: req.GetBaselineId(), OsFamily: "amazon-linux-2023", Version: 1,
		Patches: []*typesv1.Patch{{Id: "ALAS2023-2026-1001", RebootRequired: false}},
	}}, nil
}

type fakeDesign struct {
	designv1.UnimplementedDesignServiceServer
	calls *calls
}

// GetTenant answers an etag and a header that must not leave the gateway.
func (f *fakeDesign) GetTenant(ctx context.Context, req *designv1.GetTenantRequest) (*designv1.GetTenantResponse, error) {
	f.calls.record(ctx, req)
	if err := errorFor(req.GetTenant()); err != nil {
		return nil, err
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("etag", `"42"`, "x-internal", "secret"))
	return &designv1.GetTenantResponse{Tenant: &typesv1.Tenant{TenantId: req.GetTenant(), DisplayName: "Acme"}}, nil
}

func (f *fakeDesign) PutWave(ctx context.Context, req *designv1.PutWaveRequest) (*designv1.PutWaveResponse, error) {
	f.calls.record(ctx, req)
	_ = grpc.SetHeader(ctx, metadata.Pairs("etag", `"43"`))
	return &designv1.PutWaveResponse{Wave: req.GetDefinition()}, nil
}

func (f *fakeDesign) ImportFreezes(ctx context.Context, req *designv1.ImportFreezesRequest) (*designv1.ImportFreezesResponse, error) {
	f.calls.record(ctx, req)
	return &designv1.ImportFreezesResponse{}, nil
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	base  string
	calls *calls
	logs  *syncBuffer
	gw    *gateway.Service
	js    jetstream.JetStream
	nc    *nats.Conn
	// token is an operator's HS256 token, sent unless a request names its own Authorization.
	token      string
	httpClient *http.Client
}

// testKey signs the tests' HS256 tokens.
var testKey = []byte("gateway-test-key-0123456789abcdef")

// mint signs an HS256 token for subject with roles (and tenant, for tenant roles), valid for
// an hour.
func mint(t *testing.T, subject, tenant string, roles ...string) string {
	t.Helper()
	c := jwt.MapClaims{"iss": "patchwave", "aud": "patchwave", "sub": subject, "roles": roles,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	if tenant != "" {
		c["tenant"] = tenant
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testKey)
	require.NoError(t, err)
	return tok
}

// startBackend serves the fake services on a real gRPC server and returns its address.
func startBackend(t *testing.T, c *calls) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	schedulerv1.RegisterSchedulerServiceServer(srv, &fakeScheduler{calls: c})
	reportingv1.RegisterReportingServiceServer(srv, &fakeReporting{calls: c})
	catalogv1.RegisterCatalogServiceServer(srv, &fakeCatalog{calls: c})
	designv1.RegisterDesignServiceServer(srv, &fakeDesign{calls: c})
	snapshotterv1.RegisterRestoreServiceServer(srv, &fakeRestore{calls: c})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

// plain is the transport to the fakes, which serve plain text (the services' mutual TLS is
// libs/host's, tested there and end to end in patchd).
var plain = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}

// start runs a gateway in front of the fakes, hosted with its bus on an embedded NATS, with
// tenants acme and globex in the service design. mods change its configuration.
func start(t *testing.T, mods ...func(*gateway.Config)) *env {
	t.Helper()
	e := &env{calls: &calls{}, logs: &syncBuffer{}}
	ns := testkit.StartNATS(t)
	e.nc, e.js = ns.Connect(t), ns.JetStream(t)
	for _, tenant := range []string{"acme", "globex"} {
		designtest.PutTenant(t, e.js, tenant, &typesv1.TenantDesign{Tenant: &typesv1.Tenant{TenantId: tenant, DisplayName: tenant}})
	}
	cfg := gateway.Config{
		Addr:        "127.0.0.1:0",
		Backend:     startBackend(t, e.calls),
		Logger:      slog.New(slog.NewJSONHandler(e.logs, nil)),
		DialOptions: plain,
		LocalJWT:    gateway.LocalJWT{Key: testKey},
	}
	for _, m := range mods {
		m(&cfg)
	}
	gw, err := gateway.New(cfg)
	require.NoError(t, err)
	e.gw = gw
	runHosted(t, e.nc, gw)
	e.base = gw.URL()
	e.token = mint(t, "ops@provider", "", "operator")
	return e
}

// runHosted runs gw in a host on nc until the test ends.
func runHosted(t *testing.T, nc *nats.Conn, gw *gateway.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := host.New(ctx, host.Config{Name: "test-gateway", Conn: nc}, gw)
	if err != nil {
		cancel()
		_ = gw.Close()
		require.NoError(t, err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-runErr)
	})
	require.Eventually(t, func() bool { return gw.Ready(t.Context()) == nil }, 10*time.Second, 5*time.Millisecond, "the gateway loads its API keys")
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

func (e *env) do(t *testing.T, method, path, body string, header http.Header) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization") // http.Header{"Authorization": {""}} sends none
	}
	resp, err := e.client().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// client is the HTTP client of the gateway (one that trusts its certificate over HTTPS).
func (e *env) client() *http.Client {
	if e.httpClient != nil {
		return e.httpClient
	}
	return http.DefaultClient
}

func TestRoutesMapToTheServices(t *testing.T) {
	e := start(t)
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		wantReq  string
		wantBody string
	}{
		{
			name: "POST runs starts a run with path and body fields", method: http.MethodPost,
			path: "/v1/tenants/acme/waves/2/runs", body: `{"baselineId":"al2023-2026.11","requestId":"req-7"}`,
			wantReq:  `tenant:"acme" wave:2 baseline_id:"al2023-2026.11" request_id:"req-7"`,
			wantBody: `"runId":"run-1"`,
		},
		{
			name: "POST runs accepts an empty body", method: http.MethodPost,
			path: "/v1/tenants/acme/waves/1/runs", body: `{}`,
			wantReq: `tenant:"acme" wave:1`, wantBody: `"state":"RUN_STATE_RUNNING"`,
		},
		{
			name: "GET run returns one run", method: http.MethodGet, path: "/v1/tenants/acme/runs/run-9",
			wantReq: `tenant:"acme" run_id:"run-9"`, wantBody: `"snapshotFailed":0`,
		},
		{
			name: "GET runs lists the tenant's runs", method: http.MethodGet, path: "/v1/tenants/acme/runs",
			wantReq: `tenant:"acme"`, wantBody: `"runId":"run-2"`,
		},
		{
			name: "GET compliance shows zero counts and coverage", method: http.MethodGet, path: "/v1/tenants/acme/compliance",
			wantReq: `tenant:"acme"`, wantBody: `"coverage":0`,
		},
		{
			name: "GET failed-patches lists failures", method: http.MethodGet, path: "/v1/tenants/acme/failed-patches",
			wantReq: `tenant:"acme"`, wantBody: `"instanceId":"i-0abc"`,
		},
		{
			name: "GET baselines lists baselines", method: http.MethodGet, path: "/v1/baselines",
			wantReq: ``, wantBody: `"baselineId":"al2023-2026.11"`,
		},
		{
			name: "GET baseline returns one baseline with its patches", method: http.MethodGet, path: "/v1/baselines/al2023-2026.11",
			wantReq: `baseline_id:"al2023-2026.11"`, wantBody: `"rebootRequired":false`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(t, tt.method, tt.path, tt.body, nil)
			require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.body)
			require.Contains(t, resp.header.Get("Content-Type"), "application/json")
			for k := range resp.header {
				require.False(t, strings.HasPrefix(k, "Grpc-Metadata-"), "gRPC metadata header %s leaks to HTTP", k)
			}
			compact := &bytes.Buffer{}
			require.NoError(t, json.Compact(compact, resp.body))
			require.Contains(t, compact.String(), tt.wantBody)
			req, _ := e.calls.last(t)
			require.Equal(t, tt.wantReq, strings.Join(strings.Fields(req.(interface{ String() string }).String()), " "))
		})
	}
}

func TestResponsesUseCamelCaseNamesAndEmitZeroValues(t *testing.T) {
	e := start(t)
	resp := e.do(t, http.MethodGet, "/v1/tenants/acme/compliance", "", nil)
	require.Equal(t, http.StatusOK, resp.status)
	body := resp.json(t)
	total := body["total"].(map[string]any)
	require.Equal(t, map[string]any{
		"inScope": float64(10), "compliant": float64(0), "nonCompliant": float64(0),
		"unknown": float64(10), "coverage": float64(0),
	}, total)
	require.Contains(t, body, "asOf", "unset message fields are present as null")
	require.Nil(t, body["asOf"])
}

func TestErrorsMapToHTTPStatusWithAJSONStatusBody(t *testing.T) {
	e := start(t)
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   codes.Code
		wantMsg    string
	}{
		{"InvalidArgument is 400", http.MethodGet, "/v1/tenants/invalid/runs", "", http.StatusBadRequest, codes.InvalidArgument, "must match"},
		{"NotFound is 404", http.MethodGet, "/v1/tenants/acme/runs/missing", "", http.StatusNotFound, codes.NotFound, `run "missing" not found`},
		{"FailedPrecondition is 412", http.MethodPost, "/v1/tenants/unapproved/waves/1/runs", "{}", http.StatusPreconditionFailed, codes.FailedPrecondition, "not approved"},
		{"Unavailable is 503", http.MethodGet, "/v1/tenants/down/compliance", "", http.StatusServiceUnavailable, codes.Unavailable, "unavailable"},
		{"a non-numeric wave is 400 naming the field", http.MethodPost, "/v1/tenants/acme/waves/two/runs", "{}", http.StatusBadRequest, codes.InvalidArgument, "wave"},
		{"a wave out of int32 range is 400 naming the field", http.MethodPost, "/v1/tenants/acme/waves/99999999999/runs", "{}", http.StatusBadRequest, codes.InvalidArgument, "wave"},
		{"a body that is not JSON is 400", http.MethodPost, "/v1/tenants/acme/waves/1/runs", "{not json", http.StatusBadRequest, codes.InvalidArgument, ""},
		{"a body with a wrong field type is 400 naming the field", http.MethodPost, "/v1/tenants/acme/waves/1/runs", `{"baselineId":7}`, http.StatusBadRequest, codes.InvalidArgument, "baselineId"},
		{"a body with an unknown field is 400 naming it", http.MethodPost, "/v1/tenants/acme/waves/1/runs", `{"baseline":"x"}`, http.StatusBadRequest, codes.InvalidArgument, "baseline"},
		{"an unknown route is 404", http.MethodGet, "/v1/nothing/here", "", http.StatusNotFound, codes.NotFound, "no route for GET /v1/nothing/here"},
		{"a known route with the wrong method is 405", http.MethodDelete, "/v1/baselines", "", http.StatusMethodNotAllowed, codes.Unimplemented, "DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(t, tt.method, tt.path, tt.body, nil)
			t.Logf("%d %s", resp.status, resp.body)
			require.Equal(t, tt.wantStatus, resp.status, "body: %s", resp.body)
			require.Contains(t, resp.header.Get("Content-Type"), "application/json")
			var body struct {
				Code    codes.Code `json:"code"`
				Message string     `json:"message"`
				Details []any      `json:"details"`
			}
			require.NoError(t, json.Unmarshal(resp.body, &body))
			require.Equal(t, tt.wantCode, body.Code, "body: %s", resp.body)
			require.Contains(t, body.Message, tt.wantMsg)
			require.NotNil(t, body.Details, "details is present")
			require.Empty(t, body.Details)
		})
	}
}

func TestCorrelationIDIsForwardedAndEchoed(t *testing.T) {
	e := start(t)

	resp := e.do(t, http.MethodGet, "/v1/tenants/acme/runs", "", http.Header{"X-Correlation-Id": {"corr-42"}})
	require.Equal(t, http.StatusOK, resp.status)
	require.Equal(t, "corr-42", resp.header.Get("X-Correlation-Id"))
	_, forwarded := e.calls.last(t)
	require.Equal(t, "corr-42", forwarded)

	resp = e.do(t, http.MethodGet, "/v1/tenants/acme/runs", "", nil)
	generated := resp.header.Get("X-Correlation-Id")
	require.NotEmpty(t, generated, "a request without an id gets one")
	_, forwarded = e.calls.last(t)
	require.Equal(t, generated, forwarded)

	resp = e.do(t, http.MethodGet, "/v1/tenants/acme/runs/missing", "", http.Header{"X-Correlation-Id": {"corr-err"}})
	require.Equal(t, http.StatusNotFound, resp.status)
	require.Equal(t, "corr-err", resp.header.Get("X-Correlation-Id"), "errors echo the id too")
}

func TestEachRequestIsLoggedOnce(t *testing.T) {
	e := start(t)
	resp := e.do(t, http.MethodGet, "/v1/tenants/acme/runs/missing", "", http.Header{"X-Correlation-Id": {"corr-log"}})
	require.Equal(t, http.StatusNotFound, resp.status)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		if m["msg"] == "http request" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 1)
	require.Equal(t, "GET", lines[0]["method"])
	require.Equal(t, "/v1/tenants/acme/runs/missing", lines[0]["path"])
	require.EqualValues(t, http.StatusNotFound, lines[0]["status"])
	require.Equal(t, "corr-log", lines[0]["correlation_id"])
	require.Contains(t, lines[0], "duration_ms")
}

func TestOpenAPIDocumentNamesEveryRoute(t *testing.T) {
	e := start(t)
	resp := e.do(t, http.MethodGet, "/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, resp.status)
	require.Equal(t, "application/json", resp.header.Get("Content-Type"))
	doc := resp.json(t)
	require.Equal(t, "2.0", doc["swagger"])
	paths, ok := doc["paths"].(map[string]any)
	require.True(t, ok, "paths is an object")
	for _, p := range []string{
		"/v1/tenants/{tenant}/waves/{wave}/runs",
		"/v1/tenants/{tenant}/runs/{runId}",
		"/v1/tenants/{tenant}/runs",
		"/v1/tenants/{tenant}/compliance",
		"/v1/tenants/{tenant}/failed-patches",
		"/v1/baselines",
		"/v1/baselines/{baselineId}",
		"/v1/tenants/{tenant}",
		"/v1/tenants/{tenant}/waves/{wave}",
		"/v1/tenants/{tenant}/waves/{wave}:preview",
		"/v1/tenants/{tenant}/freezes:import",
		"/v1/freezes",
		"/v1/tenants/{tenant}/service-requests/{requestId}:apply",
		"/v1/schedules:preview",
	} {
		require.Contains(t, paths, p)
	}
}

func TestDesignHeadersCrossTheGateway(t *testing.T) {
	e := start(t)
	resp := e.do(t, http.MethodGet, "/v1/tenants/acme", "", nil)
	require.Equal(t, http.StatusOK, resp.status, string(resp.body))
	require.Equal(t, `"42"`, resp.header.Get("ETag"), "the service's etag is the ETag header")
	for k := range resp.header {
		require.NotContains(t, strings.ToLower(k), "internal", "no other response metadata leaves the gateway")
	}

	put := e.do(t, http.MethodPut, "/v1/tenants/acme/waves/2?reason=CAB-9", `{"name":"second"}`, http.Header{
		"X-Patchwave-Actor": {"mallory"}, "X-Patchwave-Subject": {"mallory"}, "If-Match": {`"42"`}, "X-Other": {"dropped"},
		// grpc-gateway turns Grpc-Metadata-* headers into metadata: a forged identity must not survive.
		"Grpc-Metadata-X-Patchwave-Subject": {"mallory"}, "Grpc-Metadata-X-Patchwave-Tenant": {"acme"},
	})
	require.Equal(t, http.StatusOK, put.status, string(put.body))
	require.Equal(t, `"43"`, put.header.Get("ETag"))
	e.calls.mu.Lock()
	defer e.calls.mu.Unlock()
	req := e.calls.requests[len(e.calls.requests)-1].(*designv1.PutWaveRequest)
	require.Equal(t, "CAB-9", req.GetReason())
	require.Equal(t, "second", req.GetDefinition().GetName())
	md := e.calls.mds[len(e.calls.mds)-1]
	require.Equal(t, []string{"ops@provider"}, md.Get("x-patchwave-subject"), "the actor is the credential's subject")
	require.Equal(t, []string{"operator"}, md.Get("x-patchwave-roles"))
	require.Empty(t, md.Get("x-patchwave-tenant"), "a forged tenant is dropped with the forged subject")
	require.Empty(t, md.Get("x-patchwave-actor"), "no header names the actor")
	require.Equal(t, []string{`"42"`}, md.Get("if-match"))
	require.Empty(t, md.Get("x-other"), "other headers do not reach the services")
	require.Empty(t, md.Get("authorization"), "the credential stays at the gateway")
	require.Empty(t, md.Get("grpcgateway-authorization"))
}

func TestARawICSUploadIsImportFreezes(t *testing.T) {
	e := start(t)
	const ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
	for _, path := range []string{"/v1/tenants/acme/freezes:import", "/v1/freezes:import"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			e.base+path+"?timeZone=Europe/Berlin&policy=FREEZE_POLICY_DEFER&deferDays=3&reason=cab", strings.NewReader(ics))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "text/calendar; charset=utf-8")
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		got, _ := e.calls.last(t)
		imp := got.(*designv1.ImportFreezesRequest)
		require.Equal(t, ics, imp.GetIcs(), "the file is the ics field, byte for byte")
		require.Equal(t, "Europe/Berlin", imp.GetTimeZone())
		require.Equal(t, typesv1.FreezePolicy_FREEZE_POLICY_DEFER, imp.GetPolicy())
		require.EqualValues(t, 3, imp.GetDeferDays())
		require.Equal(t, "cab", imp.GetReason())
		require.Equal(t, strings.HasPrefix(path, "/v1/tenants/"), imp.GetTenant() == "acme")
	}
	resp := e.do(t, http.MethodPost, "/v1/tenants/acme/freezes:import", `{"ics":"BEGIN:VCALENDAR","policy":"FREEZE_POLICY_SKIP"}`, nil)
	require.Equal(t, http.StatusOK, resp.status, "the JSON form goes straight through")
	got, _ := e.calls.last(t)
	require.Equal(t, "BEGIN:VCALENDAR", got.(*designv1.ImportFreezesRequest).GetIcs())

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.base+"/v1/freezes:import?deferDays=three", strings.NewReader(ics))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/calendar")
	req.Header.Set("Authorization", "Bearer "+e.token)
	bad, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(bad.Body)
	require.NoError(t, err)
	require.NoError(t, bad.Body.Close())
	require.Equal(t, http.StatusBadRequest, bad.StatusCode)
	require.Contains(t, string(body), `"field":"deferDays"`)
}

func TestReadyWhenBackendConnectionsAreIdleOrReady(t *testing.T) {
	e := start(t)
	require.NoError(t, e.gw.Ready(t.Context()), "fresh connections are idle")
	require.Equal(t, http.StatusOK, e.do(t, http.MethodGet, "/v1/baselines", "", nil).status)
	// gRPC hands the RPC its READY picker a moment before it publishes the channel's READY
	// state, so on a loaded machine the call can finish while GetState still says CONNECTING.
	err := e.gw.Ready(t.Context())
	for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		err = e.gw.Ready(t.Context())
	}
	require.NoError(t, err, "a used connection is ready")
}

func TestNewRefusesAnIncompleteConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  gateway.Config
		want []string
	}{
		{"no address and no backend", gateway.Config{}, []string{"Addr: required", "SchedulerTarget: required", "ReportingTarget: required", "CatalogTarget: required", "RestoreTarget: required"}},
		{"per-service targets without Backend are enough", gateway.Config{Addr: "127.0.0.1:0", SchedulerTarget: "a:1", ReportingTarget: "b:1", DialOptions: plain}, []string{"CatalogTarget: required", "RestoreTarget: required"}},
		{"negative timeouts", gateway.Config{Addr: "127.0.0.1:0", Backend: "a:1", DialOptions: plain, ShutdownTimeout: -1, ReadHeaderTimeout: -1}, []string{"ShutdownTimeout", "ReadHeaderTimeout"}},
		{"no mutual TLS towards the services", gateway.Config{Addr: "127.0.0.1:0", Backend: "a:1"}, []string{"ServicesTLS: the services accept only mutual TLS", "CA: required"}},
		{"half an HTTPS certificate", gateway.Config{Addr: "127.0.0.1:0", Backend: "a:1", DialOptions: plain, TLSCertFile: "cert.pem"}, []string{"TLSCertFile and TLSKeyFile: both or neither"}},
		{"a short HS256 key", gateway.Config{Addr: "127.0.0.1:0", Backend: "a:1", DialOptions: plain, LocalJWT: gateway.LocalJWT{Key: []byte("short")}}, []string{"Local.Key: must be at least 32 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gateway.New(tt.cfg)
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestPerServiceTargetsReachTheirOwnBackends(t *testing.T) {
	sched, rep, cat, des, rst := &calls{}, &calls{}, &calls{}, &calls{}, &calls{}
	e := start(t, func(c *gateway.Config) {
		c.Backend = ""
		c.SchedulerTarget, c.ReportingTarget = startBackend(t, sched), startBackend(t, rep)
		c.CatalogTarget, c.DesignTarget, c.RestoreTarget = startBackend(t, cat), startBackend(t, des), startBackend(t, rst)
		c.NotifierTarget = startBackend(t, &calls{})
	})
	for _, p := range []string{"/v1/tenants/acme/runs", "/v1/tenants/acme/compliance", "/v1/baselines", "/v1/tenants/acme", "/v1/tenants/acme/restores"} {
		require.Equal(t, http.StatusOK, e.do(t, http.MethodGet, p, "", nil).status, p)
	}
	for name, c := range map[string]*calls{"scheduler": sched, "reporting": rep, "catalog": cat, "design": des, "restore": rst} {
		c.mu.Lock()
		require.Len(t, c.requests, 1, name)
		c.mu.Unlock()
	}
}

func TestRestoreRouteCarriesTheBodyAndTheCallersSubject(t *testing.T) {
	e := start(t)
	e.token = mint(t, "alice@acme", "acme", "tenant-admin")
	res := e.do(t, http.MethodPost, "/v1/tenants/acme/instances/i-0abc:restore", `{"runId":"run-7","reason":"app broken","requestId":"r-1"}`,
		http.Header{"X-Patchwave-Actor": {"mallory"}})
	require.Equal(t, http.StatusOK, res.status, string(res.body))
	req, _ := e.calls.last(t)
	rr := req.(*snapshotterv1.RestoreInstanceRequest)
	require.Equal(t, "acme", rr.GetTenant())
	require.Equal(t, "i-0abc", rr.GetInstance())
	require.Equal(t, "run-7", rr.GetRunId())
	require.Equal(t, "app broken", rr.GetReason())
	require.Equal(t, "r-1", rr.GetRequestId())
	var doc map[string]map[string]any
	require.NoError(t, json.Unmarshal(res.body, &doc))
	require.Equal(t, "alice@acme", doc["restore"]["actor"], "the caller's subject reaches the service as metadata, not a header")
	require.Equal(t, "RESTORE_STATE_REQUESTED", doc["restore"]["state"])

	res = e.do(t, http.MethodGet, "/v1/tenants/acme/instances/i-0abc/restores", "", nil)
	require.Equal(t, http.StatusOK, res.status)
	req, _ = e.calls.last(t)
	require.Equal(t, "i-0abc", req.(*snapshotterv1.ListRestoresRequest).GetInstanceId())
}

func TestCloseReleasesTheListenerOfAGatewayNeverRun(t *testing.T) {
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Backend: "127.0.0.1:1", DialOptions: plain})
	require.NoError(t, err)
	addr := gw.Addr()
	require.NoError(t, gw.Close())
	lis, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the address is free again")
	require.NoError(t, lis.Close())
}

var (
	_ host.Component = (*gateway.Service)(nil)
	_ host.Runner    = (*gateway.Service)(nil)
	_ host.Readiness = (*gateway.Service)(nil)
)

func TestGatewayIsAHostComponentNamedGateway(t *testing.T) {
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Backend: "127.0.0.1:1", DialOptions: plain})
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Close() })
	require.Equal(t, "gateway", gw.Name())
	require.ErrorContains(t, gw.Register(nil), "needs a bus", "API keys and audit events need NATS")
}
