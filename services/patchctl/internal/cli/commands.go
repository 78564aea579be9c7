package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"time"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

func tenantFlag(fs *flag.FlagSet) *string {
	return fs.String("tenant", "", "tenant id (required)")
}

func tenantPath(tenant string) string { return "/v1/tenants/" + url.PathEscape(tenant) }

func (c *CLI) runsStart(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("runs start")
	tenant := tenantFlag(fs)
	wave := fs.Int("wave", 0, "wave number, 1..N (required)")
	baseline := fs.String("baseline", "", "baseline id to pin (default: the newest)")
	requestID := fs.String("request-id", "", "idempotency key: the same id starts the run once")
	wait := fs.Bool("wait", false, "follow the run until it ends")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}); err != nil {
		return err
	}
	if *wave < 1 || *wave > 1<<31-1 {
		return usagef("%s: --wave %d: required, must be a wave number from 1", fs.Name(), *wave)
	}
	req := &schedulerv1.StartRunRequest{
		Tenant: *tenant, Wave: int32(*wave), BaselineId: *baseline, RequestId: *requestID,
	}
	var resp schedulerv1.StartRunResponse
	path := fmt.Sprintf("%s/waves/%d/runs", tenantPath(*tenant), *wave)
	if err := o.client.call(ctx, http.MethodPost, path, req, &resp); err != nil {
		return err
	}
	if !*wait {
		return c.print(o, &resp, func(t *table) { runRows(t, resp.GetRun()) })
	}
	return c.follow(ctx, o, *tenant, resp.GetRun())
}

// follow polls the run until it reaches a final state, printing its progress when it changes.
func (c *CLI) follow(ctx context.Context, o options, tenant string, run *schedulerv1.Run) error {
	interval := c.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	progress := c.Stdout
	if o.json {
		progress = c.Stderr // stdout holds only the final JSON document
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	last := ""
	for {
		if line := progressLine(run); line != last {
			_, _ = fmt.Fprintln(progress, line)
			last = line
		}
		if finalRunState(run.GetState()) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for run %s: %w", run.GetRunId(), ctx.Err())
		case <-ticker.C:
		}
		var resp schedulerv1.GetRunResponse
		path := tenantPath(tenant) + "/runs/" + url.PathEscape(run.GetRunId())
		if err := o.client.call(ctx, http.MethodGet, path, nil, &resp); err != nil {
			return err
		}
		run = resp.GetRun()
	}
	if o.json {
		return c.print(o, &schedulerv1.GetRunResponse{Run: run}, nil)
	}
	_, _ = fmt.Fprintf(c.Stdout, "wave %d %s: %s\n", run.GetWave(), run.GetRunId(), stateName(run.GetState()))
	return nil
}

// progressLine is "wave 1 run-x: 120/200 done (3 failed)"; failed counts failed installs and
// failed snapshots.
func progressLine(r *schedulerv1.Run) string {
	failed := r.GetFailed() + r.GetSnapshotFailed()
	done := r.GetSucceeded() + failed
	return fmt.Sprintf("wave %d %s: %d/%d done (%d failed)", r.GetWave(), r.GetRunId(), done, r.GetTotal(), failed)
}

// finalRunState reports whether a run in state s will not change any more on its own.
func finalRunState(s typesv1.RunState) bool {
	switch s {
	case typesv1.RunState_RUN_STATE_COMPLETED, typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
		typesv1.RunState_RUN_STATE_HALTED, typesv1.RunState_RUN_STATE_CANCELLED,
		typesv1.RunState_RUN_STATE_SKIPPED_FROZEN:
		return true
	default:
		return false
	}
}

func (c *CLI) runsGet(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("runs get")
	tenant := tenantFlag(fs)
	run := fs.String("run", "", "run id (required)")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}, [2]string{"run", *run}); err != nil {
		return err
	}
	var resp schedulerv1.GetRunResponse
	if err := o.client.call(ctx, http.MethodGet, tenantPath(*tenant)+"/runs/"+url.PathEscape(*run), nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) { runRows(t, resp.GetRun()) })
}

func (c *CLI) runsList(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("runs list")
	tenant := tenantFlag(fs)
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}); err != nil {
		return err
	}
	var resp schedulerv1.ListRunsResponse
	if err := o.client.call(ctx, http.MethodGet, tenantPath(*tenant)+"/runs", nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) { runRows(t, resp.GetRuns()...) })
}

func (c *CLI) compliance(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("compliance")
	tenant := tenantFlag(fs)
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}); err != nil {
		return err
	}
	var resp reportingv1.GetComplianceResponse
	if err := o.client.call(ctx, http.MethodGet, tenantPath(*tenant)+"/compliance", nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) { complianceRows(t, &resp) })
}

func (c *CLI) failedPatches(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("failed-patches")
	tenant := tenantFlag(fs)
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}); err != nil {
		return err
	}
	var resp reportingv1.ListFailedPatchesResponse
	if err := o.client.call(ctx, http.MethodGet, tenantPath(*tenant)+"/failed-patches", nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) { failedPatchRows(t, resp.GetFailedPatches()) })
}

func (c *CLI) baselinesList(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("baselines list")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	var resp catalogv1.ListBaselinesResponse
	if err := o.client.call(ctx, http.MethodGet, "/v1/baselines", nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) { baselineRows(t, resp.GetBaselines()...) })
}

func (c *CLI) baselinesGet(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("baselines get")
	id := fs.String("baseline", "", "baseline id (required)")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"baseline", *id}); err != nil {
		return err
	}
	var resp catalogv1.GetBaselineResponse
	if err := o.client.call(ctx, http.MethodGet, "/v1/baselines/"+url.PathEscape(*id), nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) { patchRows(t, resp.GetBaseline()) })
}
