// Package demo drives one patch cycle through patchd's REST API, the way an operator would with
// patchctl: it puts the tenant's service design (tenant, cloud account, waves, a freeze), starts
// a run per wave in order, shows progress, prints per-wave results and compliance coverage, and
// restores one failed instance from its pre-patch snapshot. Runs are started with request ids, so a demo restarted after a crash
// resumes the cycle instead of starting another one.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	credentialsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/credentials/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Config configures a demo cycle.
type Config struct {
	// BaseURL of the REST API, e.g. "http://127.0.0.1:8080". Required.
	BaseURL string
	// Key is the operator API key (or token) the demo calls with. Required: nothing is open
	// without a credential. With it the demo makes the keys of the other roles it plays: a
	// certifier, and the tenant's admin.
	Key string
	// Tenant whose waves run. Required.
	Tenant string
	// Waves to run, 1..Waves in order. Required.
	Waves int
	// CycleID names the cycle; with the wave it is the run's request id. Required.
	CycleID string
	// Out receives the progress and the report. Required.
	Out io.Writer
	// Poll is the progress interval. Optional, default 500ms.
	Poll time.Duration
	// Client is the HTTP client. Optional.
	Client *http.Client
	// Account is the cloud account the demo tenant's design lists. Optional (see Account).
	Account Account
	// Policy gives the rollout policy of each wave the design lists. Optional, default the
	// demo's: a 30-minute cutoff, a quarter of the wave at once, a budget of half of it,
	// auto-rollback from wave 2 on.
	Policy func(wave int) *typesv1.RolloutPolicy
}

// Session is a prepared tenant: its service design put, the keys of the demo's roles made and
// the cycle's baseline published and approved, ready for runs (the bench drives its waves
// through one).
type Session struct {
	c client
}

// Prepare does what Run does before the first wave: seed the service design, make the keys,
// and take the catalog from the sample feeds to an approved baseline.
func Prepare(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Key == "" {
		return nil, errors.New("demo: Key: required (the operator API key)")
	}
	c := client{cfg: cfg}
	if err := c.seed(ctx); err != nil {
		return nil, err
	}
	if err := c.makeKeys(ctx); err != nil {
		return nil, err
	}
	base, err := c.catalogFlow(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c.baselineID = base.GetBaselineId()
	return &Session{c: c}, nil
}

// BaselineID is the approved baseline the session's runs pin.
func (s *Session) BaselineID() string { return s.c.baselineID }

// StartRun starts a run of wave with the cycle's request id for it, as Run does.
func (s *Session) StartRun(ctx context.Context, wave int32) (*schedulerv1.Run, error) {
	return s.c.startRun(ctx, wave)
}

// GetRun reads a run of the tenant.
func (s *Session) GetRun(ctx context.Context, runID string) (*schedulerv1.Run, error) {
	var got schedulerv1.GetRunResponse
	if err := s.c.get(ctx, fmt.Sprintf("/v1/tenants/%s/runs/%s", url.PathEscape(s.c.cfg.Tenant), url.PathEscape(runID)), &got); err != nil {
		return nil, err
	}
	return got.GetRun(), nil
}

// WaveResult is the outcome of one wave's run.
type WaveResult struct {
	Wave     int32
	Run      *schedulerv1.Run
	Duration time.Duration
}

// Result is the outcome of the cycle.
type Result struct {
	Waves      []WaveResult
	Compliance *reportingv1.GetComplianceResponse
	Failed     []*reportingv1.FailedPatch
	// Restore is the restore of RestoredFrom's instance; nil when nothing failed.
	Restore *snapshotterv1.Restore
	// RestoredFrom is the failed patch whose instance the demo restored: the first of wave 1,
	// whose policy has no auto-rollback (waves 2 and 3 restore their failures by themselves,
	// and a second restore of such an instance is refused), else the first.
	RestoredFrom *reportingv1.FailedPatch
	// Notifications are the tenant's deliveries, newest first.
	Notifications []*notifierv1.Delivery
}

// Run runs the cycle and prints the report.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Poll == 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Key == "" {
		return nil, errors.New("demo: Key: required (the operator API key)")
	}
	c := client{cfg: cfg}
	if err := c.seed(ctx); err != nil {
		return nil, err
	}
	if err := c.makeKeys(ctx); err != nil {
		return nil, err
	}
	if err := c.subscribe(ctx); err != nil {
		return nil, err
	}
	offsets := make([]string, cfg.Waves)
	for w := range offsets {
		offsets[w] = fmt.Sprint(2 * (w + 1))
	}
	fmt.Fprintf(cfg.Out, "Service design of tenant %s: %d waves (second Tuesday + %s days, 02:00-06:00 Berlin) and a year-end freeze (GET /v1/tenants/%s/design)\n",
		cfg.Tenant, cfg.Waves, strings.Join(offsets, ", "), cfg.Tenant)
	// The catalog part: feeds in, certification, a baseline, the tenant's approval.
	base, err := c.catalogFlow(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c.baselineID = base.GetBaselineId()
	fmt.Fprintf(cfg.Out, "Patchwave demo: tenant %s, %d waves, baseline %s (%d patches), cycle %s\n",
		cfg.Tenant, cfg.Waves, base.GetBaselineId(), len(base.GetPatches()), cfg.CycleID)
	res := &Result{}
	for w := int32(1); w <= int32(cfg.Waves); w++ {
		wr, err := c.runWave(ctx, w)
		if err != nil {
			return nil, fmt.Errorf("wave %d: %w", w, err)
		}
		res.Waves = append(res.Waves, wr)
	}
	comp, err := c.compliance(ctx)
	if err != nil {
		return nil, fmt.Errorf("compliance: %w", err)
	}
	res.Compliance = comp
	var failed reportingv1.ListFailedPatchesResponse
	if err := c.get(ctx, "/v1/tenants/"+url.PathEscape(cfg.Tenant)+"/failed-patches?pageSize=1000", &failed); err != nil {
		return nil, fmt.Errorf("failed patches: %w", err)
	}
	res.Failed = failed.GetFailedPatches()
	printReport(cfg.Out, cfg.Tenant, res)
	if len(res.Failed) > 0 {
		res.RestoredFrom = res.Failed[0]
		for _, f := range res.Failed {
			if f.GetWave() == 1 {
				res.RestoredFrom = f
				break
			}
		}
		if res.Restore, err = c.restore(ctx, res.RestoredFrom); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if res.Notifications, err = c.notifications(ctx); err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	return res, nil
}

// restore restores the instance of a failed patch from the pre-patch snapshot of its run, the
// way a tenant would after a failed install, and waits until the restore ends. The request id
// comes from the cycle, so a resumed demo restores once.
func (c client) restore(ctx context.Context, f *reportingv1.FailedPatch) (*snapshotterv1.Restore, error) {
	fmt.Fprintf(c.cfg.Out, "\nRestoring %s from the pre-patch snapshot of %s (its install failed)\n", f.GetInstanceId(), f.GetRunId())
	path := fmt.Sprintf("/v1/tenants/%s/instances/%s:restore", url.PathEscape(c.cfg.Tenant), url.PathEscape(f.GetInstanceId()))
	body := fmt.Sprintf(`{"runId":%q,"reason":%q,"requestId":%q}`, f.GetRunId(), "demo: "+f.GetPatchId()+" failed to install", c.cfg.CycleID+"-restore")
	var res snapshotterv1.RestoreInstanceResponse
	if err := c.doAs(ctx, http.MethodPost, path, body, c.adminKey, &res); err != nil {
		return nil, err
	}
	r := res.GetRestore()
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	last := ""
	for r.GetState() != snapshotterv1.RestoreState_RESTORE_STATE_SUCCEEDED && r.GetState() != snapshotterv1.RestoreState_RESTORE_STATE_FAILED {
		if s := r.GetState().String(); s != last {
			fmt.Fprintf(c.cfg.Out, "  restore %s: %s\n", r.GetRestoreId(), strings.TrimPrefix(s, "RESTORE_STATE_"))
			last = s
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		var got snapshotterv1.GetRestoreResponse
		if err := c.get(ctx, fmt.Sprintf("/v1/tenants/%s/restores/%s", url.PathEscape(c.cfg.Tenant), url.PathEscape(r.GetRestoreId())), &got); err != nil {
			return nil, err
		}
		r = got.GetRestore()
	}
	fmt.Fprintf(c.cfg.Out, "  restore %s: %s (snapshot %s, by %s)%s\n", r.GetRestoreId(), strings.TrimPrefix(r.GetState().String(), "RESTORE_STATE_"),
		r.GetSnapshotId(), r.GetActor(), map[bool]string{true: ": " + r.GetError(), false: ""}[r.GetError() != ""])
	return r, nil
}

type client struct {
	cfg Config
	// baselineID is the approved baseline every wave pins.
	baselineID string
	// certifierKey and adminKey are the demo's certifier and the tenant admin (makeKeys).
	certifierKey, adminKey string
}

// Names of the keys the demo makes; their subjects are <name>@provider and <name>@<tenant>.
const (
	certifierName = "demo-certifier"
	adminName     = "admin"
)

// makeKeys makes the API keys of the roles the demo plays besides the operator: a certifier
// (provider) and the tenant's admin, each living a day. Each start makes new ones.
func (c *client) makeKeys(ctx context.Context) error {
	for _, k := range []struct {
		path, name, role string
		into             *string
	}{
		{"/v1/api-keys", certifierName, "certifier", &c.certifierKey},
		{"/v1/tenants/" + url.PathEscape(c.cfg.Tenant) + "/api-keys", adminName, "tenant-admin", &c.adminKey},
	} {
		var resp credentialsv1.CreateAPIKeyResponse
		body := fmt.Sprintf(`{"name":%q,"roles":[%q],"ttl":"1d"}`, k.name, k.role)
		if err := c.do(ctx, http.MethodPost, k.path, body, &resp); err != nil {
			return fmt.Errorf("API key %s: %w", k.name, err)
		}
		*k.into = resp.GetSecret()
	}
	fmt.Fprintf(c.cfg.Out, "API keys: %s@provider (certifier), %s@%s (tenant-admin), made by the operator\n", certifierName, adminName, c.cfg.Tenant)
	return nil
}

// compliance reads the coverage report. Reporting is its own projection of the stream and may
// be a moment behind the scheduler that completed the last run, so while instances are still
// unknown it asks again, for up to 10 seconds.
func (c client) compliance(ctx context.Context) (*reportingv1.GetComplianceResponse, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var comp reportingv1.GetComplianceResponse
		if err := c.get(ctx, "/v1/tenants/"+url.PathEscape(c.cfg.Tenant)+"/compliance", &comp); err != nil {
			return nil, err
		}
		if comp.GetTotal().GetUnknown() == 0 || time.Now().After(deadline) {
			return &comp, nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func (c client) startRun(ctx context.Context, wave int32) (*schedulerv1.Run, error) {
	path := fmt.Sprintf("/v1/tenants/%s/waves/%d/runs", url.PathEscape(c.cfg.Tenant), wave)
	var started schedulerv1.StartRunResponse
	body := fmt.Sprintf(`{"requestId":%q,"baselineId":%q}`, fmt.Sprintf("%s-wave-%d", c.cfg.CycleID, wave), c.baselineID)
	// The scheduler may not have seen the baseline yet right after start: 412 is retried.
	for attempt := 1; ; attempt++ {
		err := c.do(ctx, http.MethodPost, path, body, &started)
		var apiErr *APIError
		if err == nil {
			break
		}
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusPreconditionFailed || attempt >= 50 {
			return nil, err
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return started.GetRun(), nil
}

func (c client) runWave(ctx context.Context, wave int32) (WaveResult, error) {
	start := time.Now()
	run, err := c.startRun(ctx, wave)
	if err != nil {
		return WaveResult{}, err
	}
	fmt.Fprintf(c.cfg.Out, "wave %d: run %s started, %d instances\n", wave, run.GetRunId(), run.GetTotal())
	last := ""
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for !finished(run.GetState()) {
		select {
		case <-ctx.Done():
			return WaveResult{}, ctx.Err()
		case <-t.C:
		}
		var got schedulerv1.GetRunResponse
		if err := c.get(ctx, fmt.Sprintf("/v1/tenants/%s/runs/%s", url.PathEscape(c.cfg.Tenant), url.PathEscape(run.GetRunId())), &got); err != nil {
			return WaveResult{}, err
		}
		run = got.GetRun()
		line := progress(run)
		if line != last {
			fmt.Fprintln(c.cfg.Out, line)
			last = line
		}
	}
	wr := WaveResult{Wave: wave, Run: run, Duration: time.Since(start)}
	fmt.Fprintf(c.cfg.Out, "wave %d: %s: %d succeeded, %d failed, %d snapshot failures, %d skipped of %d (%.1fs)\n",
		wave, stateName(run.GetState()), run.GetSucceeded(), run.GetFailed(), run.GetSnapshotFailed(), run.GetSkipped(), run.GetTotal(), wr.Duration.Seconds())
	return wr, nil
}

func finished(s typesv1.RunState) bool {
	switch s {
	case typesv1.RunState_RUN_STATE_COMPLETED, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
		typesv1.RunState_RUN_STATE_HALTED, typesv1.RunState_RUN_STATE_CANCELLED, typesv1.RunState_RUN_STATE_SKIPPED_FROZEN:
		return true
	}
	return false
}

func progress(r *schedulerv1.Run) string {
	done := r.GetSucceeded() + r.GetFailed() + r.GetSnapshotFailed()
	const width = 30
	filled := 0
	if r.GetTotal() > 0 {
		filled = int(done) * width / int(r.GetTotal())
	}
	return fmt.Sprintf("  wave %d [%s%s] %d/%d done, %d in flight (at most %d), %d snapshotted, %d failed",
		r.GetWave(), strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		done, r.GetTotal(), r.GetInFlight(), r.GetMaxInFlight(), r.GetSnapshotted(), r.GetFailed()+r.GetSnapshotFailed())
}

func stateName(s typesv1.RunState) string {
	return strings.TrimPrefix(s.String(), "RUN_STATE_")
}

func printReport(w io.Writer, tenant string, res *Result) {
	fmt.Fprintf(w, "\nCompliance coverage for tenant %s\n", tenant)
	fmt.Fprintf(w, "  %-6s %9s %10s %14s %8s %9s\n", "wave", "in scope", "compliant", "non-compliant", "unknown", "coverage")
	row := func(name string, c *reportingv1.Coverage) {
		fmt.Fprintf(w, "  %-6s %9d %10d %14d %8d %8.1f%%\n", name, c.GetInScope(), c.GetCompliant(), c.GetNonCompliant(), c.GetUnknown(), 100*c.GetCoverage())
	}
	for _, wc := range res.Compliance.GetWaves() {
		row(fmt.Sprint(wc.GetWave()), wc.GetCoverage())
	}
	row("total", res.Compliance.GetTotal())
	fmt.Fprintf(w, "  %-18s %9s %10s %14s %8s %9s\n", "OS family", "in scope", "compliant", "non-compliant", "unknown", "coverage")
	for _, fc := range res.Compliance.GetOsFamilies() {
		c := fc.GetCoverage()
		fmt.Fprintf(w, "  %-18s %9d %10d %14d %8d %8.1f%%\n", fc.GetOsFamily(), c.GetInScope(), c.GetCompliant(), c.GetNonCompliant(), c.GetUnknown(), 100*c.GetCoverage())
	}
	fmt.Fprintf(w, "\nFailed patches: %d\n", len(res.Failed))
	for i, f := range res.Failed {
		if i == 5 {
			fmt.Fprintf(w, "  ... and %d more (GET /v1/tenants/%s/failed-patches)\n", len(res.Failed)-5, tenant)
			break
		}
		fmt.Fprintf(w, "  %s on %s (wave %d, %s): %s\n", f.GetPatchId(), f.GetInstanceId(), f.GetWave(), f.GetRunId(), f.GetError())
	}
}

// APIError is a non-2xx answer of the REST API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

func (c client) get(ctx context.Context, path string, out proto.Message) error {
	return c.do(ctx, http.MethodGet, path, "", out)
}

// do calls the API with the operator key.
func (c client) do(ctx context.Context, method, path, body string, out proto.Message) error {
	return c.doAs(ctx, method, path, body, "", out)
}

// doAs is do with another credential when key is set: what it changes is recorded as the
// key's subject.
func (c client) doAs(ctx context.Context, method, path, body, key string, out proto.Message) error {
	return c.send(ctx, method, path, []byte(body), "application/json", key, out)
}

// doRaw posts a raw body (a vendor document) with key (the operator's when empty).
func (c client) doRaw(ctx context.Context, path string, body []byte, key string, out proto.Message) error {
	return c.send(ctx, http.MethodPost, path, body, "application/octet-stream", key, out)
}

func (c client) send(ctx context.Context, method, path string, body []byte, contentType, key string, out proto.Message) error {
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, rd)
	if err != nil {
		return err
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", contentType)
	}
	if key == "" {
		key = c.cfg.Key
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Message}
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
