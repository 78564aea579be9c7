package patchd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// openNow is a monthly schedule (UTC) whose window is open now and for about three more hours:
// today's weekday in today's week of the month, from a few minutes ago. It returns the
// schedule and its occurrence key.
func openNow(now time.Time) (*typesv1.Schedule, string) {
	now = now.UTC()
	week := int32((now.Day()-1)/7 + 1)
	if week > 4 {
		week = -1 // days 29-31: the last such weekday of the month
	}
	start := now.Add(-5 * time.Minute)
	if start.Day() != now.Day() {
		start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	}
	return &typesv1.Schedule{
		WeekOfMonth: week, DayOfWeek: now.Weekday().String(), StartTime: start.Format("15:04"), Duration: "3h", TimeZone: "UTC",
	}, now.Format("2006-01")
}

// TestSchedulersKilledWhileFiringAndRacingFireTheOccurrenceOnce runs nats-server, cloudsim
// and scheduler processes (the real binaries) on the secured deployment. Two schedulers race
// for an occurrence whose window is open; cloudsim answers DescribeInstances after 3 s, so the
// winner's claim sits in the firing bucket, unconfirmed, while it discovers the wave: both are
// SIGKILLed then. Two new schedulers race to take the claim over (after its lease) and start
// the run: exactly one RunStarted is published (counted on a core subscription, which sees
// what the stream's duplicate window would drop), the claim is confirmed, and every instance
// of the wave has exactly one job.
func TestSchedulersKilledWhileFiringAndRacingFireTheOccurrenceOnce(t *testing.T) {
	bins := buildBinaries(t, "github.com/nats-io/nats-server/v2",
		"github.com/patchwave/patchwave/services/cloudsim/cmd/cloudsim",
		"github.com/patchwave/patchwave/services/scheduler/cmd/scheduler")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	natsPort := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	secrets := deployNATS(t)
	startProcess(t, "nats-server", bins["nats-server"], nil, "-c", filepath.Join(filepath.Dir(secrets), "server.conf"),
		"-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-m", strconv.Itoa(freePort(t)))
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", natsPort))
	sim := startProcess(t, "cloudsim", bins["cloudsim"], nil, "-listen", "127.0.0.1:0", "-tenant", "acme", "-regions", "eu-central-1",
		"-instances", "30", "-waves", "3", "-print-config", "-log-level", "warn", "-latency", "DescribeInstances=3s")
	info := readStartInfo(t, sim)

	admin, err := nats.Connect(natsURL, natsauth.ConnectOptions(natsauth.CredsPath(secrets, natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer admin.Close()
	var published atomic.Int64
	_, err = admin.Subscribe("patch.acme.run.started", func(*nats.Msg) { published.Add(1) })
	require.NoError(t, err)
	require.NoError(t, admin.Flush())

	pki := stagetest.PKI(t)
	srv := pki[mtls.Services]
	env := []string{
		"PATCHWAVE_TLS_CA=" + srv.CA, "PATCHWAVE_TLS_CERT=" + srv.Cert, "PATCHWAVE_TLS_KEY=" + srv.Key,
		"PATCHWAVE_NATS_URL=" + natsURL, "PATCHWAVE_OPS_ADDR=127.0.0.1:0", "PATCHWAVE_LOG_LEVEL=info",
		"PATCHWAVE_NATS_CREDS=" + natsauth.CredsPath(secrets, "scheduler"),
		"PATCHWAVE_FIRE_INTERVAL=100ms", "PATCHWAVE_FIRE_LEASE=2s",
		"PATCHWAVE_AWS_ENDPOINT_URL=" + info.Endpoint, "PATCHWAVE_AWS_ACCESS_KEY_ID=" + info.Provider.AccessKeyID,
		"PATCHWAVE_AWS_SECRET_ACCESS_KEY=" + info.Provider.SecretAccessKey,
	}
	startScheduler := func(name string) (*process, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		return startProcess(t, name, bins["scheduler"], append(env, "PATCHWAVE_GRPC_ADDR="+addr)), addr
	}
	a, addrA := startScheduler("scheduler-a")
	b, _ := startScheduler("scheduler-b")

	// The baseline and the tenant's approval, as the catalog publishes them.
	publishBaseline(t, ctx, natsURL, natsauth.CredsPath(secrets, "catalog"))
	catalog, err := nats.Connect(natsURL, natsauth.ConnectOptions(natsauth.CredsPath(secrets, "catalog"), "catalog")...)
	require.NoError(t, err)
	defer catalog.Close()
	cb, err := bus.New(ctx, bus.Config{Service: "catalog", Conn: catalog})
	require.NoError(t, err)
	require.NoError(t, cb.Publish(ctx, events.MustNew("acme", "al2023-mp/1", &eventsv1.BaselineApproved{
		Tenant: "acme", BaselineId: "al2023-mp", ApprovedBy: "admin@acme", OsFamily: "amazon-linux-2023", Version: 1})))

	// Watch the firing bucket (the schedulers create it) before the wave exists.
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	var kv jetstream.KeyValue
	require.Eventually(t, func() bool { kv, err = js.KeyValue(ctx, "patchwave-firing"); return err == nil }, 60*time.Second, 50*time.Millisecond)
	schedule, key := openNow(time.Now())
	occKey := "occ.acme.1." + key
	watch, err := kv.Watch(ctx, occKey)
	require.NoError(t, err)
	defer func() { _ = watch.Stop() }()

	design := designv1.NewDesignServiceClient(dial(t, addrA, pki))
	seedDesign(t, ctx, design, info.Accounts[0])
	_, err = design.PutWave(ctx, &designv1.PutWaveRequest{Tenant: "acme", Wave: 1, Definition: &typesv1.Wave{Schedule: schedule}})
	require.NoError(t, err)

	// The first claim of the occurrence: RUNNING, not confirmed. Kill both schedulers now.
	type record struct {
		RunID     string `json:"run_id"`
		State     int    `json:"state"`
		Confirmed bool   `json:"confirmed"`
	}
	var claim record
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case e := <-watch.Updates():
			if e == nil {
				continue
			}
			require.NoError(t, json.Unmarshal(e.Value(), &claim))
			if claim.State == int(typesv1.RunState_RUN_STATE_RUNNING) && !claim.Confirmed {
				break wait
			}
		case <-deadline:
			t.Fatalf("no claim of %s", occKey)
		}
	}
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGKILL))
	_, _ = a.cmd.Process.Wait()
	_, _ = b.cmd.Process.Wait()
	require.Zero(t, storedCount(t, ctx, js, "patch.acme.run.started"), "killed while discovering: no RunStarted yet")
	entry, err := kv.Get(ctx, occKey)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(entry.Value(), &claim))
	require.False(t, claim.Confirmed, "the claim is left unconfirmed")

	// Two new schedulers race to take the claim over and start the run.
	_, addrC := startScheduler("scheduler-c")
	startScheduler("scheduler-d")
	require.Eventually(t, func() bool {
		e, err := kv.Get(ctx, occKey)
		if err != nil {
			return false
		}
		var r record
		return json.Unmarshal(e.Value(), &r) == nil && r.Confirmed
	}, 90*time.Second, 100*time.Millisecond, "a restarted scheduler starts the run and confirms its claim")
	require.Equal(t, 1, storedCount(t, ctx, js, "patch.acme.run.started"))
	require.NoError(t, admin.Flush())
	require.EqualValues(t, 1, published.Load(), "one RunStarted was ever published")

	sched := schedulerv1.NewSchedulerServiceClient(dial(t, addrC, pki))
	var run *schedulerv1.Run
	require.Eventually(t, func() bool {
		resp, err := sched.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme", RunId: claim.RunID})
		run = resp.GetRun()
		return err == nil && run.GetOccurrenceKey() == key
	}, 30*time.Second, 100*time.Millisecond)
	require.EqualValues(t, 10, run.GetTotal(), "wave 1's instances")
	list, err := sched.ListRuns(ctx, &schedulerv1.ListRunsRequest{Tenant: "acme"})
	require.NoError(t, err)
	require.Len(t, list.GetRuns(), 1, "one run of the occurrence")

	// Every instance of the wave is in the membership once, and no instance got two jobs (with
	// no snapshotter running, the controller releases one job at a time: max concurrency 10%).
	require.Eventually(t, func() bool { return storedCount(t, ctx, js, "patch.acme.job.requested") >= 1 }, 30*time.Second, 100*time.Millisecond)
	members, jobs := map[string]int{}, map[string]int{}
	for _, ev := range readStream(t, ctx, admin).events {
		switch m := ev.Data.(type) {
		case *eventsv1.RunMembership:
			require.Equal(t, claim.RunID, m.GetRunId())
			for _, mem := range m.GetMembers() {
				members[mem.GetInstanceId()]++
			}
		case *eventsv1.JobRequested:
			require.Equal(t, claim.RunID, m.GetRunId())
			jobs[m.GetInstanceId()]++
		}
	}
	require.Len(t, members, 10)
	for id, n := range members {
		require.Equal(t, 1, n, "instance %s is in the membership once", id)
	}
	for id, n := range jobs {
		require.Equal(t, 1, n, "instance %s has one job", id)
	}
	require.NoError(t, admin.Flush())
	require.EqualValues(t, 1, published.Load(), "still one RunStarted: nobody took the confirmed claim over")
}

// storedCount counts the messages the tenant stream holds on subject.
func storedCount(t *testing.T, ctx context.Context, js jetstream.JetStream, subject string) int {
	t.Helper()
	s, err := js.Stream(ctx, events.StreamTenant)
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}
