// Package demo drives one patch cycle through patchd's REST API, the way an operator would with
// patchctl: it starts a run per wave in order, shows progress, and prints per-wave results and
// compliance coverage. Runs are started with request ids, so a demo restarted after a crash
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

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Config configures a demo cycle.
type Config struct {
	// BaseURL of the REST API, e.g. "http://127.0.0.1:8080". Required.
	BaseURL string
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
}

// Run runs the cycle and prints the report.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Poll == 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	c := client{cfg: cfg}
	base, err := c.waitBaseline(ctx)
	if err != nil {
		return nil, err
	}
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
	if err := c.get(ctx, "/v1/tenants/"+url.PathEscape(cfg.Tenant)+"/failed-patches", &failed); err != nil {
		return nil, fmt.Errorf("failed patches: %w", err)
	}
	res.Failed = failed.GetFailedPatches()
	printReport(cfg.Out, cfg.Tenant, res)
	return res, nil
}

type client struct{ cfg Config }

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

// waitBaseline waits until the catalog has published a baseline (it does so at start).
func (c client) waitBaseline(ctx context.Context) (*catalogv1.Baseline, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var resp catalogv1.ListBaselinesResponse
		err := c.get(ctx, "/v1/baselines", &resp)
		if err == nil && len(resp.GetBaselines()) > 0 {
			return resp.GetBaselines()[0], nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("the catalog lists none")
			}
			return nil, fmt.Errorf("no baseline published after 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (c client) runWave(ctx context.Context, wave int32) (WaveResult, error) {
	start := time.Now()
	path := fmt.Sprintf("/v1/tenants/%s/waves/%d/runs", url.PathEscape(c.cfg.Tenant), wave)
	var started schedulerv1.StartRunResponse
	body := fmt.Sprintf(`{"requestId":%q}`, fmt.Sprintf("%s-wave-%d", c.cfg.CycleID, wave))
	// The scheduler may not have seen the baseline yet right after start: 412 is retried.
	for attempt := 1; ; attempt++ {
		err := c.do(ctx, http.MethodPost, path, body, &started)
		var apiErr *APIError
		if err == nil {
			break
		}
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusPreconditionFailed || attempt >= 50 {
			return WaveResult{}, err
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return WaveResult{}, err
		}
	}
	run := started.GetRun()
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
	fmt.Fprintf(c.cfg.Out, "wave %d: %s: %d succeeded, %d failed, %d snapshot failures of %d (%.1fs)\n",
		wave, stateName(run.GetState()), run.GetSucceeded(), run.GetFailed(), run.GetSnapshotFailed(), run.GetTotal(), wr.Duration.Seconds())
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
	return fmt.Sprintf("  wave %d [%s%s] %d/%d done, %d snapshotted, %d failed",
		r.GetWave(), strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		done, r.GetTotal(), r.GetSnapshotted(), r.GetFailed()+r.GetSnapshotFailed())
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

func (c client) do(ctx context.Context, method, path, body string, out proto.Message) error {
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, rd)
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
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
