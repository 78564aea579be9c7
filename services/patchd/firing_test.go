package patchd_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/ratelimit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/demo"
)

// testClock is patchd's injected scheduler clock: the test opens the waves' windows by moving
// it, nothing sleeps until a real window.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// TestPatchdFiresAWaveByItselfAndHoldsTheNextBelowTheThreshold runs patchd in-process with an
// injected clock. The demo's design has waves on the second Tuesday + 2, 4 and 6 days,
// 02:00-06:00 Berlin: in December 2026 wave 1's window is 10 December 01:00-05:00 UTC and wave
// 2's 12 December. When the clock enters wave 1's window the scheduler starts its run by itself
// (nobody calls StartRun); half the patches fail in the emulator, so wave 1 misses the 95%
// success threshold and wave 2 is HELD when its window opens, until an operator releases it
// over REST with a reason.
func TestPatchdFiresAWaveByItselfAndHoldsTheNextBelowTheThreshold(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	d, err := patchd.New(ctx, patchd.Config{
		DataDir: t.TempDir(), NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "-",
		Tenant: "acme", Instances: 30, Waves: 3, PollInterval: 5 * time.Millisecond,
		RateLimit: ratelimit.Limit{Rate: 10000, Burst: 10000},
		Cloud: cloudsim.Config{
			Timing: cloudsim.Timing{Snapshot: 10 * time.Millisecond, Command: 10 * time.Millisecond},
			Faults: cloudsim.FaultConfig{PatchFailureRate: 0.5},
		},
		Clock: clk.now, FireInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-runErr)
	})
	require.NoError(t, d.Ready(ctx))
	a := &api{t: t, base: d.URL(), key: d.OperatorKey(), d: d}

	var out strings.Builder
	sess, err := demo.Prepare(ctx, demo.Config{BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: "acme", Waves: 3, CycleID: "firing", Out: &out})
	require.NoError(t, err, out.String())
	baseline := sess.BaselineID()
	require.Empty(t, runsOf(a), "nothing runs before a window opens")

	// Wave 1's window opens: its run starts by itself and ends below the threshold.
	clk.set(time.Date(2026, 12, 10, 1, 30, 0, 0, time.UTC))
	wave1 := waitRun(t, a, 1, func(r map[string]any) bool { return final(r["state"]) })
	require.Equal(t, "schedule", wave1["trigger"])
	require.Equal(t, "2026-12", wave1["cycle"])
	require.Equal(t, baseline, wave1["baselineId"], "the cycle's pin is the approved baseline")
	require.NotEqual(t, "RUN_STATE_COMPLETED", wave1["state"], "half the patches fail: %v", wave1)

	// Wave 2's window opens: held by the gate.
	clk.set(time.Date(2026, 12, 12, 1, 30, 0, 0, time.UTC))
	wave2 := waitRun(t, a, 2, func(r map[string]any) bool { return r["state"] == "RUN_STATE_HELD" })
	require.Contains(t, wave2["reason"], "wave 1's run "+wave1["runId"].(string))
	id := wave2["runId"].(string)
	time.Sleep(300 * time.Millisecond) // several firing ticks: a held run stays held
	require.Equal(t, "RUN_STATE_HELD", a.ok(a.get("/v1/tenants/acme/runs/" + id)).body["run"].(map[string]any)["state"])

	// Releasing needs a reason; with one the run starts, and the release is audited.
	badRequest(t, a.write(http.MethodPost, "/v1/tenants/acme/runs/"+id+":release", `{}`), "reason", "is required")
	r := a.ok(a.write(http.MethodPost, "/v1/tenants/acme/runs/"+id+":release", `{"reason":"wave 1 failures are the emulator's"}`))
	require.Equal(t, "RUN_STATE_RUNNING", r.body["run"].(map[string]any)["state"])
	again := a.write(http.MethodPost, "/v1/tenants/acme/runs/"+id+":release", `{"reason":"again"}`)
	require.Equal(t, http.StatusPreconditionFailed, again.status, again.raw)
	require.Contains(t, again.raw, "is RUNNING")

	nc, err := nats.Connect(d.NATSURL(), natsauth.ConnectOptions(d.CredsFile(natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	var log streamLog
	require.Eventually(t, func() bool {
		log = readStream(t, ctx, nc)
		return log.count("run.released") == 1 && log.count("run.started") == 2
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, 1, log.count("run.held"), "the hold is announced once")
	require.Equal(t, 1, log.count("cycle.pinned"))
	audited := false
	for _, ev := range log.events {
		switch m := ev.Data.(type) {
		case *eventsv1.RunReleased:
			require.Equal(t, "wave 1 failures are the emulator's", m.GetReason())
			require.NotEmpty(t, m.GetActor(), "the operator's subject")
		case *eventsv1.AuditRecorded:
			if strings.HasSuffix(m.GetMethod(), "/ReleaseRun") && m.GetOutcome() == "OK" {
				audited = true
			}
		}
	}
	require.Eventually(t, func() bool {
		if audited {
			return true
		}
		for _, ev := range readStream(t, ctx, nc).events {
			if m, ok := ev.Data.(*eventsv1.AuditRecorded); ok && strings.HasSuffix(m.GetMethod(), "/ReleaseRun") && m.GetOutcome() == "OK" {
				audited = true
			}
		}
		return audited
	}, 10*time.Second, 50*time.Millisecond, "the release is audited")
	require.Zero(t, d.PermissionViolations(), "the permission table covers the firing (its bucket, its events)")
}

func runsOf(a *api) []map[string]any {
	a.t.Helper()
	r := a.ok(a.get("/v1/tenants/acme/runs"))
	var out []map[string]any
	runs, _ := r.body["runs"].([]any)
	for _, x := range runs {
		out = append(out, x.(map[string]any))
	}
	return out
}

// waitRun waits until the tenant has a run of wave that satisfies ok, and returns it.
func waitRun(t *testing.T, a *api, wave int, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	var got map[string]any
	require.Eventually(t, func() bool {
		for _, r := range runsOf(a) {
			if w, _ := r["wave"].(float64); int(w) == wave && ok(r) {
				got = r
				return true
			}
		}
		return false
	}, 60*time.Second, 50*time.Millisecond, "a run of wave %d: %v", wave, runsOf(a))
	return got
}

func final(state any) bool {
	switch state {
	case "RUN_STATE_COMPLETED", "RUN_STATE_COMPLETED_WITH_ERRORS", "RUN_STATE_HALTED", "RUN_STATE_CANCELLED":
		return true
	}
	return false
}
