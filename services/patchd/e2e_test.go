package patchd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
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
		Fleet: simfleet.Config{InstallFailureRate: 0.15, SnapshotFailureRate: 0.05, Latency: 20 * time.Millisecond},
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
		BaseURL: "http://" + d.HTTPAddr(), Tenant: "acme", Waves: waves, CycleID: "e2e", Out: &out, Poll: 50 * time.Millisecond,
	})
	require.NoError(t, err, out.String())
	require.Len(t, res.Waves, waves)
	t.Log(out.String())

	nc, err := nats.Connect(d.NATSURL())
	require.NoError(t, err)
	defer nc.Close()
	log := readStream(t, ctx, nc)
	log.requireOneOutcomePerInstance(t, instances)

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
	require.Positive(t, log.count("install.failed"), "a 15%% failure rate over %d instances fails some", instances)
	require.Len(t, res.Failed, log.count("install.failed"), "one failed patch per failed install")

	// The simulated fleet saw exactly one snapshot and one installation per instance.
	stats := d.Fleet().Stats()
	require.Equal(t, instances, stats.SnapshotsCreated, "one snapshot per instance (those that failed included)")
	require.Equal(t, log.count("snapshot.created")+log.count("snapshot.failed"), stats.SnapshotsCreated)
	require.Equal(t, log.count("install.succeeded")+log.count("install.failed"), stats.InstallsStarted)

	// Every outcome and every run completion was notified once.
	require.Eventually(t, func() bool {
		return readStream(t, ctx, nc).count("notification.sent") == instances+waves
	}, 30*time.Second, 50*time.Millisecond)

	require.Contains(t, out.String(), "Compliance coverage for tenant acme")

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
