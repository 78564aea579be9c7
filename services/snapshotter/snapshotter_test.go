package snapshotter_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/snapshotter"
)

const tenant = "acme"

// countingFleet counts the snapshots the service asks for, idempotent repeats included.
type countingFleet struct {
	provider.Fleet
	creates atomic.Int64
}

func (f *countingFleet) CreateSnapshot(ctx context.Context, req provider.SnapshotRequest) (provider.Snapshot, error) {
	f.creates.Add(1)
	return f.Fleet.CreateSnapshot(ctx, req)
}

func newFleet(t *testing.T, cfg simfleet.Config, instances int) *simfleet.Fleet {
	t.Helper()
	f, err := simfleet.New(cfg)
	require.NoError(t, err)
	require.NoError(t, f.Populate(tenant, instances, 3))
	return f
}

func newService(t *testing.T, cfg snapshotter.Config, fleet provider.Fleet) *snapshotter.Service {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	svc, err := snapshotter.New(cfg, snapshotter.Deps{Fleet: fleet, Store: store.NewMemory()})
	require.NoError(t, err)
	return svc
}

func instanceID(i int) string { return fmt.Sprintf("i-%s-%04d", tenant, i) }

// jobs returns JobRequested events for instances 1..n of run; suffix makes the event ids new
// while run and instance stay the same, as a replay by another scheduler instance would.
func jobs(t *testing.T, run string, n int, suffix string) []*events.Event {
	t.Helper()
	var evs []*events.Event
	for i := 1; i <= n; i++ {
		id := instanceID(i)
		ev, err := events.New(tenant, run+"/"+id+suffix, &eventsv1.JobRequested{
			Tenant: tenant, RunId: run, Wave: int32((i-1)%3 + 1), InstanceId: id,
			BaselineId: "al2023-v7", PatchIds: []string{"ALAS-2024-001", "kernel-6.1.2"},
		})
		require.NoError(t, err)
		evs = append(evs, ev)
	}
	return evs
}

func TestSnapshotterSnapshotsEveryRequestedJobOnce(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	fleet := newFleet(t, simfleet.Config{}, 10)
	counting := &countingFleet{Fleet: fleet}
	stop := stagetest.RunComponent(t, nc, newService(t, snapshotter.Config{}, counting))
	pub := stagetest.Publisher(t, nc, "scheduler")

	require.NoError(t, pub.Publish(t.Context(), jobs(t, "run-1", 10, "")...))
	created := events.Pattern[*eventsv1.SnapshotCreated]()
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, created) == 10 },
		20*time.Second, 20*time.Millisecond)

	for _, ev := range stagetest.ReadEvents(t, js, created) {
		sc, ok := ev.Data.(*eventsv1.SnapshotCreated)
		require.True(t, ok)
		snap, err := fleet.FindSnapshot(t.Context(), tenant, "run-1", sc.GetInstanceId())
		require.NoError(t, err)
		assert.Equal(t, "run-1/"+sc.GetInstanceId(), ev.Key)
		assert.Equal(t, "/patchwave/snapshotter", ev.Source)
		assert.Equal(t, snap.ID, sc.GetSnapshotId())
		assert.Equal(t, provider.SnapshotCompleted, snap.State)
		assert.Equal(t, map[string]string{
			"patchwave:tenant": tenant, "patchwave:run": "run-1", "patchwave:instance": sc.GetInstanceId(),
		}, snap.Tags)
		assert.Equal(t, "al2023-v7", sc.GetBaselineId())
		assert.Equal(t, []string{"ALAS-2024-001", "kernel-6.1.2"}, sc.GetPatchIds())
		assert.NotZero(t, sc.GetWave())
		assert.NotNil(t, sc.GetCreatedAt())
	}
	require.Equal(t, 10, fleet.Stats().SnapshotsCreated)

	// Replay: the same jobs again under new event ids, and a restarted snapshotter with an
	// empty store whose consumer starts over, so it sees all twenty requests.
	stop()
	require.NoError(t, js.DeleteConsumer(t.Context(), events.StreamTenant, bus.Consumer(snapshotter.Name, snapshotter.HandlerTakeSnapshot)))
	require.NoError(t, pub.Publish(t.Context(), jobs(t, "run-1", 10, "/replay")...))
	calls := counting.creates.Load()
	stagetest.RunComponent(t, nc, newService(t, snapshotter.Config{}, counting))
	require.Eventually(t, func() bool { return stagetest.Drained(t, js, snapshotter.Name, snapshotter.HandlerTakeSnapshot) },
		20*time.Second, 20*time.Millisecond)

	assert.Equal(t, 10, fleet.Stats().SnapshotsCreated, "snapshots in the fleet")
	assert.Equal(t, 10, stagetest.CountEvents(t, js, events.StreamTenant, created), "SnapshotCreated events")
	assert.Equal(t, calls, counting.creates.Load(), "the marks rebuilt from the stream stop every provider call")
}

func TestSnapshotterPublishesSnapshotFailed(t *testing.T) {
	tests := []struct {
		name       string
		fleet      simfleet.Config
		cfg        snapshotter.Config
		noInstance bool
		prepare    func(t *testing.T, f *simfleet.Fleet)
		wantReason string
	}{
		{
			name:       "a snapshot that ends in error is a failure with the provider's reason",
			fleet:      simfleet.Config{SnapshotFailureRate: 1},
			wantReason: "failed: internal error: snapshot of volume vol-",
		},
		{
			name: "a terminated instance is a failure that says it is not running",
			prepare: func(t *testing.T, f *simfleet.Fleet) {
				require.NoError(t, f.SetInstanceState(tenant, instanceID(1), provider.InstanceTerminated))
			},
			wantReason: "instance " + instanceID(1) + " is not running",
		},
		{
			name:       "a snapshot still pending after SnapshotTimeout is a failure",
			fleet:      simfleet.Config{Latency: time.Hour},
			cfg:        snapshotter.Config{SnapshotTimeout: 150 * time.Millisecond},
			wantReason: "not completed within 150ms (state pending)",
		},
		{
			name:       "an instance the provider does not know is a failure",
			noInstance: true,
			wantReason: "not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nt := testkit.StartNATS(t)
			nc, js := nt.Connect(t), nt.JetStream(t)
			n := 1
			if tt.noInstance {
				n = 0
			}
			fleet := newFleet(t, tt.fleet, n)
			if tt.prepare != nil {
				tt.prepare(t, fleet)
			}
			stagetest.RunComponent(t, nc, newService(t, tt.cfg, fleet))
			require.NoError(t, stagetest.Publisher(t, nc, "scheduler").Publish(t.Context(), jobs(t, "run-9", 1, "")...))

			failed := events.Pattern[*eventsv1.SnapshotFailed]()
			require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, failed) == 1 },
				20*time.Second, 20*time.Millisecond)
			evs := stagetest.ReadEvents(t, js, failed)
			sf, ok := evs[0].Data.(*eventsv1.SnapshotFailed)
			require.True(t, ok)
			assert.Equal(t, "run-9/"+instanceID(1), evs[0].Key)
			assert.Equal(t, instanceID(1), sf.GetInstanceId())
			assert.Equal(t, int32(1), sf.GetWave())
			assert.Contains(t, sf.GetReason(), tt.wantReason)
			assert.Zero(t, stagetest.CountEvents(t, js, events.StreamTenant, events.Pattern[*eventsv1.SnapshotCreated]()))
		})
	}
}

func TestSnapshotterRetriesThrottledProviderCalls(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	fleet := newFleet(t, simfleet.Config{}, 1)
	throttled := fmt.Errorf("RequestLimitExceeded: %w", provider.ErrThrottled)
	fleet.FailNext(simfleet.OpCreateSnapshot, throttled)
	fleet.FailNext(simfleet.OpCreateSnapshot, throttled)
	stagetest.RunComponent(t, nc, newService(t, snapshotter.Config{}, fleet))
	require.NoError(t, stagetest.Publisher(t, nc, "scheduler").Publish(t.Context(), jobs(t, "run-2", 1, "")...))

	require.Eventually(t, func() bool {
		return stagetest.CountEvents(t, js, events.StreamTenant, events.Pattern[*eventsv1.SnapshotCreated]()) == 1
	}, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, 1, fleet.Stats().SnapshotsCreated)
	assert.Zero(t, stagetest.CountEvents(t, js, events.StreamTenant, events.Pattern[*eventsv1.SnapshotFailed]()))
}

func TestSnapshotterDeadLettersAJobWithoutInstance(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	fleet := newFleet(t, simfleet.Config{}, 1)
	stagetest.RunComponent(t, nc, newService(t, snapshotter.Config{}, fleet))
	ev, err := events.New(tenant, "run-3/none", &eventsv1.JobRequested{Tenant: tenant, RunId: "run-3", BaselineId: "b"})
	require.NoError(t, err)
	require.NoError(t, stagetest.Publisher(t, nc, "scheduler").Publish(t.Context(), ev))

	dlq := "dlq." + snapshotter.Name + "." + snapshotter.HandlerTakeSnapshot
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamDLQ, dlq) == 1 },
		20*time.Second, 20*time.Millisecond)
	s, err := js.Stream(t.Context(), events.StreamDLQ)
	require.NoError(t, err)
	msg, err := s.GetLastMsgForSubject(t.Context(), dlq)
	require.NoError(t, err)
	assert.Contains(t, msg.Header.Get(events.HeaderDLQReason), "instance_id: required")
	assert.Zero(t, fleet.Stats().SnapshotsCreated)
}

func TestConfigValidateNamesEveryBadField(t *testing.T) {
	valid := snapshotter.Deps{Fleet: &countingFleet{}, Store: store.NewMemory()}
	tests := []struct {
		name string
		cfg  snapshotter.Config
		deps snapshotter.Deps
		want []string
	}{
		{
			name: "missing dependencies are named",
			deps: snapshotter.Deps{},
			want: []string{"Fleet: required", "Store: required"},
		},
		{
			name: "negative durations and a poll longer than the timeout are refused",
			cfg:  snapshotter.Config{SnapshotTimeout: -time.Second, PollInterval: -1},
			deps: valid,
			want: []string{"SnapshotTimeout -1s: must be > 0", "PollInterval -1ns: must be > 0"},
		},
		{
			name: "a poll interval above the timeout is refused",
			cfg:  snapshotter.Config{SnapshotTimeout: time.Second, PollInterval: time.Minute},
			deps: valid,
			want: []string{"PollInterval 1m0s: must not exceed SnapshotTimeout 1s"},
		},
		{
			name: "an absurd concurrency is refused",
			cfg:  snapshotter.Config{Concurrency: 5000},
			deps: valid,
			want: []string{"Concurrency 5000: must be from 1 to 1024"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := snapshotter.New(tt.cfg, tt.deps)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestNewFillsDefaults(t *testing.T) {
	svc, err := snapshotter.New(snapshotter.Config{}, snapshotter.Deps{Fleet: &countingFleet{}, Store: store.NewMemory()})
	require.NoError(t, err)
	assert.Equal(t, snapshotter.Config{SnapshotTimeout: 30 * time.Minute, PollInterval: 2 * time.Second, Concurrency: 32}, svc.Config())
	assert.Equal(t, "snapshotter", svc.Name())
}
