package patchd_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/demo"
)

// TestRunsOverREST runs the demo's first wave, then works with runs over REST: counts per job
// state, jobs paged and filtered by state, illegal moves answered 412 naming the state, a
// re-run of the failed instances with the same pin, paused, resumed and cancelled.
func TestRunsOverREST(t *testing.T) {
	const instances = 16
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	d, err := patchd.New(ctx, patchd.Config{
		DataDir: t.TempDir(), NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "-",
		Tenant: "acme", Instances: instances, Waves: 1, PollInterval: 5 * time.Millisecond,
		Cloud: cloudsim.Config{
			Timing: cloudsim.Timing{Snapshot: 100 * time.Millisecond, Command: 300 * time.Millisecond},
			Faults: cloudsim.FaultConfig{PatchFailureRate: 0.1},
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
	res, err := demo.Run(ctx, demo.Config{BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: "acme", Waves: 1, CycleID: "rest", Out: &out, Poll: 20 * time.Millisecond})
	require.NoError(t, err, out.String())
	a := &api{t: t, base: d.URL(), key: d.OperatorKey(), d: d}
	runID := res.Waves[0].Run.GetRunId()
	base := "/v1/tenants/acme/runs/" + runID

	run := a.ok(a.get(base)).body["run"].(map[string]any)
	require.Equal(t, "RUN_STATE_COMPLETED_WITH_ERRORS", run["state"], "a 10%% failure rate per patch fails some of %d: %v", instances, run)
	require.EqualValues(t, 4, run["maxInFlight"], "25%% of the wave")
	counts := map[string]int{}
	for _, c := range run["jobCounts"].([]any) {
		m := c.(map[string]any)
		counts[m["state"].(string)] = int(m["count"].(float64))
	}
	require.Equal(t, instances, counts["JOB_STATE_SUCCEEDED"]+counts["JOB_STATE_FAILED"]+counts["JOB_STATE_SNAPSHOT_FAILED"], "%v", counts)
	failed := counts["JOB_STATE_FAILED"]
	require.Positive(t, failed)

	// Jobs, paged by 5, then only the failed ones.
	seen := map[string]bool{}
	token := ""
	for {
		page := a.ok(a.get(base + "/jobs?pageSize=5&pageToken=" + token)).body
		jobs, _ := page["jobs"].([]any)
		require.LessOrEqual(t, len(jobs), 5)
		for _, j := range jobs {
			job := j.(map[string]any)
			require.False(t, seen[job["instanceId"].(string)], "each job once")
			seen[job["instanceId"].(string)] = true
			require.Equal(t, "al2023-rest", job["baselineId"])
			require.Equal(t, "amazon-linux-2023", job["osFamily"])
		}
		next, _ := page["nextPageToken"].(string)
		if next == "" {
			break
		}
		token = next
	}
	require.Len(t, seen, instances)
	onlyFailed := a.ok(a.get(base + "/jobs?states=JOB_STATE_FAILED")).body["jobs"].([]any)
	require.Len(t, onlyFailed, failed)
	badRequest(t, a.get(base+"/jobs?pageSize=5000"), "page_size", "must be from 1 to 1000")

	// A completed run is not cancelled, paused or resumed: 412 naming its state.
	for _, verb := range []string{"cancel", "pause", "resume"} {
		r := a.write(http.MethodPost, base+":"+verb, `{"reason":"test"}`)
		require.Equal(t, http.StatusPreconditionFailed, r.status, "%s: %s", verb, r.raw)
		require.Contains(t, r.body["message"], "run "+runID+" is COMPLETED_WITH_ERRORS", verb)
	}
	require.Equal(t, http.StatusNotFound, a.write(http.MethodPost, "/v1/tenants/acme/runs/run-404:cancel", `{}`).status)

	// The failed instances again, same pin, in a new run; paused, resumed, then cancelled.
	again := a.ok(a.write(http.MethodPost, base+":rerunFailed", `{"reason":"after the fix","requestId":"retry-1"}`)).body["run"].(map[string]any)
	againID := again["runId"].(string)
	require.NotEqual(t, runID, againID)
	require.Equal(t, runID, again["rerunOf"])
	require.EqualValues(t, failed, again["total"])
	require.Equal(t, run["pins"], again["pins"], "the same pin")
	paused := a.write(http.MethodPost, "/v1/tenants/acme/runs/"+againID+":pause", `{"reason":"hold on"}`)
	t.Logf("re-run %s of %d instances: pause answered %d", againID, failed, paused.status)
	if paused.status == http.StatusOK {
		require.Equal(t, true, paused.body["run"].(map[string]any)["paused"])
		r := a.write(http.MethodPost, "/v1/tenants/acme/runs/"+againID+":pause", `{}`)
		require.Equal(t, http.StatusPreconditionFailed, r.status, r.raw)
		require.Contains(t, r.body["message"], "is RUNNING and paused")
		a.ok(a.write(http.MethodPost, "/v1/tenants/acme/runs/"+againID+":resume", `{}`))
		a.ok(a.write(http.MethodPost, "/v1/tenants/acme/runs/"+againID+":cancel", `{"reason":"enough"}`))
	} else {
		// The re-run was quicker than the call: it has completed, which the answer names.
		require.Equal(t, http.StatusPreconditionFailed, paused.status, paused.raw)
		require.Contains(t, paused.body["message"], "run "+againID+" is COMPLETED")
	}
	require.Eventually(t, func() bool {
		r := a.ok(a.get("/v1/tenants/acme/runs/" + againID)).body["run"].(map[string]any)
		return r["completedAt"] != nil
	}, 60*time.Second, 50*time.Millisecond, "the re-run ends")
	final := a.ok(a.get("/v1/tenants/acme/runs/" + againID)).body["run"].(map[string]any)
	if paused.status == http.StatusOK {
		require.Equal(t, "RUN_STATE_CANCELLED", final["state"])
		r := a.write(http.MethodPost, "/v1/tenants/acme/runs/"+againID+":cancel", `{}`)
		require.Equal(t, http.StatusPreconditionFailed, r.status, r.raw)
		require.Contains(t, r.body["message"], fmt.Sprintf("run %s is CANCELLED", againID))
	}
	list := a.ok(a.get("/v1/tenants/acme/runs")).body["runs"].([]any)
	require.Len(t, list, 2)
}
