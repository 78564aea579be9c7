package patchd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/natsauth"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/demo"
)

// TestPatchdRunsAWholeCycleThroughEveryService starts patchd in-process, drives a cycle of three
// waves through the REST API, and checks the event stream: every instance got exactly one
// outcome, nothing was installed without a completed snapshot, and the reports agree.
func TestPatchdRunsAWholeCycleThroughEveryService(t *testing.T) {
	const instances, waves = 60, 3
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	d, err := patchd.New(ctx, patchd.Config{
		DataDir: t.TempDir(), NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
		Tenant: "acme", Instances: instances, Waves: waves, PollInterval: 5 * time.Millisecond,
		Cloud: cloudsim.Config{
			Timing: cloudsim.Timing{Snapshot: 20 * time.Millisecond, Command: 20 * time.Millisecond},
			Faults: cloudsim.FaultConfig{PatchFailureRate: 0.05, SnapshotErrorRate: 0.03},
		},
		// The demo cycle starts the waves itself; the scheduler does not fire them too.
		FireInterval: -1,
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
		BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: "acme", Waves: waves, CycleID: "e2e", Out: &out, Poll: 50 * time.Millisecond,
	})
	require.NoError(t, err, out.String())
	require.Len(t, res.Waves, waves)
	t.Log(out.String())

	nc, err := nats.Connect(d.NATSURL(), natsauth.ConnectOptions(d.CredsFile(natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	log := readStream(t, ctx, nc)
	log.requireOneOutcomePerInstance(t, instances)

	// The catalog step: the tenant approved the cycle's baseline, and every wave pinned it.
	require.Equal(t, 1, log.count("baseline.approved"))
	for _, w := range res.Waves {
		require.Equal(t, "al2023-e2e", w.Run.GetBaselineId(), "wave %d installs the approved baseline", w.Wave)
	}
	for _, ev := range log.events {
		if rs, ok := ev.Data.(*eventsv1.RunStarted); ok {
			require.Equal(t, "al2023-e2e", rs.GetBaselineId())
			require.Len(t, rs.GetPatchIds(), 4)
		}
	}

	// The reports agree with the stream.
	var total int32
	for _, w := range res.Waves {
		total += w.Run.GetTotal()
		require.Equal(t, w.Run.GetTotal(), w.Run.GetSucceeded()+w.Run.GetFailed()+w.Run.GetSnapshotFailed(), "wave %d counts", w.Wave)
	}
	require.EqualValues(t, instances, total)
	require.EqualValues(t, instances, res.Compliance.GetTotal().GetInScope())
	require.EqualValues(t, log.count("install.succeeded"), res.Compliance.GetTotal().GetCompliant())
	require.EqualValues(t, log.count("install.failed")+log.count("snapshot.failed"), res.Compliance.GetTotal().GetNonCompliant())
	require.Positive(t, log.count("install.failed"), "a 5%% failure rate per patch over %d instances fails some", instances)
	require.Len(t, res.Failed, log.failedPatches(), "one failed-patch row per failed patch of a failed install")

	// The emulator saw exactly one snapshot set and one installation per instance.
	snapshotted, installed := 0, 0
	for _, id := range d.Cloud().InstanceIDs(cloudAccount, cloudRegion) {
		st := d.Cloud().InstanceStats(id)
		require.LessOrEqual(t, st["ec2:CreateSnapshots"], int64(1), "instance %s snapshotted once", id)
		require.LessOrEqual(t, st["ssm:SendCommand"], int64(1), "instance %s sent one command", id)
		snapshotted += int(st["ec2:CreateSnapshots"])
		installed += int(st["ssm:SendCommand"])
	}
	require.Equal(t, instances, snapshotted, "one snapshot set per instance (those that failed included)")
	require.Equal(t, log.count("install.succeeded")+log.count("install.failed"), installed)

	// The demo's subscriptions: one digest per run, one message per failed job, each sent once
	// (to cloudsim's SNS).
	failures := log.count("install.failed") + log.count("snapshot.failed")
	require.Eventually(t, func() bool {
		return readStream(t, ctx, nc).count("notification.sent") == failures+waves
	}, 30*time.Second, 50*time.Millisecond)
	require.Len(t, d.Cloud().SNSMessages(), failures+waves)
	digests := 0
	for _, n := range res.Notifications {
		require.Equal(t, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT, n.GetStatus(), n.GetDeliveryId())
		if n.GetEventType() == "run.digest" {
			digests++
		}
	}
	require.Equal(t, waves, digests, "one digest per wave, not one message per VM")

	require.Contains(t, out.String(), "Compliance coverage for tenant acme")
	require.Zero(t, countDeadLetters(t, ctx, nc), "nothing was dead-lettered")
	require.Zero(t, d.PermissionViolations(), "the server refused nothing to any service: the permission table covers what they do")

	// An integrator of the tenant reads the tenant's whole stream with its own credentials.
	cred, err := d.Integrators().Issue(ctx, natsauth.IssueRequest{Tenant: "acme", Name: "e2e"})
	require.NoError(t, err)
	credsFile := filepath.Join(t.TempDir(), "acme-e2e.creds")
	require.NoError(t, os.WriteFile(credsFile, cred.Creds, 0o600))
	integ, err := nats.Connect(d.NATSURL(), nats.UserCredentials(credsFile), nats.CustomInboxPrefix(cred.InboxPrefix))
	require.NoError(t, err)
	defer integ.Close()
	ijs, err := jetstream.New(integ)
	require.NoError(t, err)
	cons, err := ijs.Consumer(ctx, cred.Stream, cred.Consumer)
	require.NoError(t, err)
	// The tenant's events: the provider-wide ones (patch.provider.>) are not the integrator's.
	tenantEvents := 0
	for _, ev := range log.events {
		if ev.Tenant == "acme" {
			tenantEvents++
		}
	}
	read := 0
	for read < tenantEvents {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			require.True(t, strings.HasPrefix(m.Subject(), "patch.acme."), m.Subject())
			require.NoError(t, m.Ack())
			n++
		}
		require.NoError(t, batch.Error())
		require.NotZero(t, n, "read %d of %d events", read, tenantEvents)
		read += n
	}
	require.NoError(t, d.Integrators().Revoke(ctx, "acme", "e2e"))

	// The demo restored the first failed instance over REST, from its run's pre-patch snapshot.
	require.NotNil(t, res.Restore, "an install failed, so the demo restored its instance")
	require.Equal(t, snapshotterv1.RestoreState_RESTORE_STATE_SUCCEEDED, res.Restore.GetState(), res.Restore.GetError())
	require.Equal(t, res.RestoredFrom.GetInstanceId(), res.Restore.GetInstanceId())
	require.Equal(t, "admin@acme", res.Restore.GetActor(), "the restore is recorded as the tenant admin's key that asked for it")
	require.Equal(t, int64(1), d.Cloud().InstanceStats(res.Restore.GetInstanceId())["ec2:CreateReplaceRootVolumeTask"])
	restoreRefusals(t, d.URL(), d.OperatorKey(), res.Restore.GetInstanceId())

	// The ops endpoints answer with the bus metrics of every service.
	for path, want := range map[string]string{
		"/livez":   "ok",
		"/readyz":  "ready",
		"/metrics": `patchwave_bus_handled_total{handler="InstallOnSnapshotCreated",outcome="ok",service="installer"}`,
	} {
		resp, err := http.Get("http://" + d.OpsAddr() + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, resp.Body.Close())
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, string(body), want, path)
	}
}

// restoreRefusals checks the REST answers of refused restores.
func restoreRefusals(t *testing.T, base, key, instance string) {
	t.Helper()
	post := func(body, key string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/tenants/acme/instances/"+instance+":restore", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, resp.Body.Close())
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := post(`{"runId":"run-none","reason":"x"}`, key)
	require.Equal(t, http.StatusNotFound, code, body)
	require.Contains(t, body, "no pre-patch snapshot of run run-none for instance "+instance)
	code, body = post(`{"runId":"run-none","reason":"x"}`, "")
	require.Equal(t, http.StatusUnauthorized, code, "no credential, no restore: %s", body)
	code, body = post(`{"runId":"run-none","reason":"x","color":"red"}`, key)
	require.Equal(t, http.StatusBadRequest, code, body)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/tenants/acme/instances/"+instance+"/restores", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(b), `"state":"RESTORE_STATE_SUCCEEDED"`)
}

// The emulated account and region of patchd's tenant.
const (
	cloudAccount = "111111111111"
	cloudRegion  = "eu-central-1"
)

// countDeadLetters returns how many dead letters the DLQ stream holds.
func countDeadLetters(t *testing.T, ctx context.Context, nc *nats.Conn) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, events.StreamDLQ)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// streamLog is the tenant stream read back in order.
type streamLog struct {
	events []*events.Event
}

func readStream(t *testing.T, ctx context.Context, nc *nats.Conn) streamLog {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, events.StreamTenant)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var log streamLog
	if info.State.Msgs == 0 {
		return log
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	for seq := uint64(0); seq < info.State.LastSeq; {
		batch, err := cons.FetchNoWait(500)
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			require.NoError(t, err)
			seq = meta.Sequence.Stream
			ev, err := events.Unmarshal(m.Subject(), m.Data())
			require.NoError(t, err, "every stored event decodes")
			ev.Sequence = seq
			log.events = append(log.events, ev)
		}
		require.NoError(t, batch.Error())
		if n == 0 {
			break
		}
	}
	return log
}

func kind(ev *events.Event) string {
	parts := strings.SplitN(ev.Subject, ".", 3)
	return parts[2]
}

func (l streamLog) count(k string) int {
	n := 0
	for _, ev := range l.events {
		if kind(ev) == k {
			n++
		}
	}
	return n
}

// failedPatches counts the FAILED per-patch results of the stream's install failures.
func (l streamLog) failedPatches() int {
	n := 0
	for _, ev := range l.events {
		if m, ok := ev.Data.(*eventsv1.InstallFailed); ok {
			for _, r := range m.GetResults() {
				if r.GetState() == typesv1.PatchState_PATCH_STATE_FAILED {
					n++
				}
			}
		}
	}
	return n
}

// requireOneOutcomePerInstance checks, per run and instance: one job, one snapshot outcome, an
// install outcome only after a completed snapshot, and exactly one of them.
func (l streamLog) requireOneOutcomePerInstance(t *testing.T, instances int) {
	t.Helper()
	type job struct{ requested, snapCreated, snapFailed, started, succeeded, failed int }
	jobs := map[string]*job{}
	get := func(run, inst string) *job {
		k := run + "/" + inst
		if jobs[k] == nil {
			jobs[k] = &job{}
		}
		return jobs[k]
	}
	for _, ev := range l.events {
		switch m := ev.Data.(type) {
		case *eventsv1.JobRequested:
			get(m.GetRunId(), m.GetInstanceId()).requested++
		case *eventsv1.SnapshotCreated:
			get(m.GetRunId(), m.GetInstanceId()).snapCreated++
		case *eventsv1.SnapshotFailed:
			get(m.GetRunId(), m.GetInstanceId()).snapFailed++
		case *eventsv1.InstallStarted:
			j := get(m.GetRunId(), m.GetInstanceId())
			require.Equal(t, 1, j.snapCreated, "install of %s/%s started without a completed snapshot before it", m.GetRunId(), m.GetInstanceId())
			j.started++
		case *eventsv1.InstallSucceeded:
			get(m.GetRunId(), m.GetInstanceId()).succeeded++
		case *eventsv1.InstallFailed:
			get(m.GetRunId(), m.GetInstanceId()).failed++
		}
	}
	require.Len(t, jobs, instances, "one job per instance")
	for k, j := range jobs {
		desc := fmt.Sprintf("%s: %+v", k, *j)
		require.Equal(t, 1, j.requested, desc)
		require.Equal(t, 1, j.snapCreated+j.snapFailed, desc)
		if j.snapFailed == 1 {
			require.Zero(t, j.started+j.succeeded+j.failed, "no install without a snapshot: "+desc)
			continue
		}
		require.Equal(t, 1, j.started, desc)
		require.Equal(t, 1, j.succeeded+j.failed, desc)
	}
}

// TestACloudThatKeepsThrottlingStillCompletesTheRun throttles every SendCommand at the emulator:
// each job's install is retried (throttling waited out longer than other errors), then
// dead-lettered, and the dead-letter hook gives it an InstallFailed naming why, so the run
// completes instead of staying RUNNING for good.
func TestACloudThatKeepsThrottlingStillCompletesTheRun(t *testing.T) {
	const instances = 6
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	d, err := patchd.New(ctx, patchd.Config{
		DataDir: t.TempDir(), NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "-",
		Tenant: "acme", Instances: instances, Waves: 1, PollInterval: 5 * time.Millisecond,
		Bus: bus.Config{RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond,
			ThrottledBackoff: 10 * time.Millisecond, MaxDeliverThrottled: 6},
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
	require.NoError(t, d.Cloud().InjectFault(cloudsim.Fault{Kind: cloudsim.FaultThrottle, Operation: "SendCommand", Rate: 1}))

	var out strings.Builder
	res, err := demo.Run(ctx, demo.Config{BaseURL: d.URL(), Key: d.OperatorKey(), Tenant: "acme", Waves: 1, CycleID: "throttled", Out: &out, Poll: 20 * time.Millisecond})
	require.NoError(t, err, out.String())
	run := res.Waves[0].Run
	// The demo's waves tolerate half of the wave failing: past that the run halts, the jobs in
	// flight finish (failing too) and the rest is skipped.
	require.Equal(t, typesv1.RunState_RUN_STATE_HALTED, run.GetState())
	require.EqualValues(t, instances, run.GetTotal())
	require.Greater(t, run.GetFailed(), run.GetErrorBudget(), "halted past the budget")
	// HALTED is set when the budget is exceeded; the jobs then in flight end afterwards, so the
	// run's counts reach every job a moment later (the read model applies their outcomes).
	api := rest{t: t, base: d.URL(), key: d.OperatorKey()}
	require.Eventually(t, func() bool {
		var got schedulerv1.GetRunResponse
		api.json(http.MethodGet, "/v1/tenants/acme/runs/"+run.GetRunId(), "", &got)
		run = got.GetRun()
		return run.GetFailed()+run.GetSkipped() == instances
	}, time.Minute, 20*time.Millisecond, "every job failed or was skipped, none is left waiting")
	require.Equal(t, typesv1.RunState_RUN_STATE_HALTED, run.GetState())

	nc, err := nats.Connect(d.NATSURL(), natsauth.ConnectOptions(d.CredsFile(natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	log := readStream(t, ctx, nc)
	require.EqualValues(t, run.GetFailed(), log.count("install.failed"))
	for _, ev := range log.events {
		if m, ok := ev.Data.(*eventsv1.InstallFailed); ok {
			require.Regexp(t, `^dead-lettered after 6 attempts: install on i-[0-9a-f]+: .*[Tt]hrottl`, m.GetReason())
		}
	}
}
