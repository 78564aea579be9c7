package installer_test

import (
	"context"
	"fmt"
	"sync"
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
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/installer"
)

const (
	tenant   = "acme"
	baseline = "al2023-v7"
)

var patches = []string{"ALAS-2024-001", "kernel-6.1.2", "ALAS-2024-007"}

// countingFleet counts the installations the service asks for, idempotent repeats included.
type countingFleet struct {
	provider.Fleet
	installs atomic.Int64
}

func (f *countingFleet) Install(ctx context.Context, req provider.InstallRequest) (provider.Installation, error) {
	f.installs.Add(1)
	return f.Fleet.Install(ctx, req)
}

// manualClock is a clock that moves only when told.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFleet(t *testing.T, cfg simfleet.Config, instances int) *simfleet.Fleet {
	t.Helper()
	f, err := simfleet.New(cfg)
	require.NoError(t, err)
	require.NoError(t, f.Populate(tenant, instances, 3))
	return f
}

func newService(t *testing.T, cfg installer.Config, deps installer.Deps) *installer.Service {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	if deps.Store == nil {
		deps.Store = store.NewMemory()
	}
	svc, err := installer.New(cfg, deps)
	require.NoError(t, err)
	return svc
}

func instanceID(i int) string { return fmt.Sprintf("i-%s-%04d", tenant, i) }

// snapshotCreated snapshots instance i for run in the fleet, as the snapshotter would, and
// returns the event saying so.
func snapshotCreated(t *testing.T, fleet provider.Fleet, run string, i int) *events.Event {
	t.Helper()
	snap, err := fleet.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: tenant, RunID: run, InstanceID: instanceID(i)})
	require.NoError(t, err)
	return forged(t, run, i, snap.ID, "")
}

// forged returns a SnapshotCreated naming snapshotID, whether or not it exists; suffix makes
// a new event id for the same job.
func forged(t *testing.T, run string, i int, snapshotID, suffix string) *events.Event {
	t.Helper()
	ev, err := events.New(tenant, run+"/"+instanceID(i)+suffix, &eventsv1.SnapshotCreated{
		Tenant: tenant, RunId: run, Wave: 1, InstanceId: instanceID(i), SnapshotId: snapshotID,
		BaselineId: baseline, PatchIds: patches,
	})
	require.NoError(t, err)
	return ev
}

var (
	succeededP = events.Pattern[*eventsv1.InstallSucceeded]()
	failedP    = events.Pattern[*eventsv1.InstallFailed]()
	startedP   = events.Pattern[*eventsv1.InstallStarted]()
)

func TestInstallerOutcomesMatchTheFleet(t *testing.T) {
	const n = 12
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	fleetCfg := simfleet.Config{Seed: 7, InstallFailureRate: 0.4}
	fleet := newFleet(t, fleetCfg, n)
	counting := &countingFleet{Fleet: fleet}
	stop := stagetest.RunComponent(t, nc, newService(t, installer.Config{RebootPolicy: provider.RebootNever}, installer.Deps{Fleet: counting}))

	// What the fleet decides for each job, from a twin fleet with the same seed.
	twin := newFleet(t, fleetCfg, n)
	want := map[string]provider.Installation{}
	var inputs []*events.Event
	for i := 1; i <= n; i++ {
		inputs = append(inputs, snapshotCreated(t, fleet, "run-1", i))
		in, err := twin.Install(t.Context(), provider.InstallRequest{
			Tenant: tenant, RunID: "run-1", InstanceID: instanceID(i), BaselineID: baseline,
			PatchIDs: patches, RebootPolicy: provider.RebootNever,
		})
		require.NoError(t, err)
		want[instanceID(i)] = in
	}
	require.NoError(t, stagetest.Publisher(t, nc, "snapshotter").Publish(t.Context(), inputs...))
	require.Eventually(t, func() bool {
		return stagetest.CountEvents(t, js, events.StreamTenant, succeededP)+stagetest.CountEvents(t, js, events.StreamTenant, failedP) == n
	}, 20*time.Second, 20*time.Millisecond)

	var nSucceeded, nFailed int
	for _, ev := range stagetest.ReadEvents(t, js, succeededP) {
		nSucceeded++
		m, ok := ev.Data.(*eventsv1.InstallSucceeded)
		require.True(t, ok)
		w := want[m.GetInstanceId()]
		assert.Equal(t, provider.InstallSucceeded, w.State, "%s succeeded, the fleet says %s", m.GetInstanceId(), w.State)
		assert.Equal(t, "run-1/"+m.GetInstanceId(), ev.Key)
		assert.True(t, m.GetRebootPending(), "the kernel patch waits for a reboot under RebootNever")
		assert.NotEmpty(t, m.GetInstallationId())
		assert.NotEmpty(t, m.GetSnapshotId())
		require.Len(t, m.GetResults(), len(patches))
		for _, r := range m.GetResults() {
			wantState := typesv1.PatchState_PATCH_STATE_INSTALLED
			if r.GetPatchId() == "kernel-6.1.2" {
				wantState = typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT
			}
			assert.Equal(t, wantState, r.GetState(), r.GetPatchId())
		}
		assert.ElementsMatch(t, patches, fleet.InstalledPatches(tenant, m.GetInstanceId()))
	}
	for _, ev := range stagetest.ReadEvents(t, js, failedP) {
		nFailed++
		m, ok := ev.Data.(*eventsv1.InstallFailed)
		require.True(t, ok)
		w := want[m.GetInstanceId()]
		assert.Equal(t, provider.InstallFailed, w.State, "%s failed, the fleet says %s", m.GetInstanceId(), w.State)
		assert.Contains(t, m.GetReason(), w.Error)
		assert.Contains(t, m.GetReason(), "package conflict")
		require.Len(t, m.GetResults(), len(patches))
		states := map[typesv1.PatchState]int{}
		for _, r := range m.GetResults() {
			states[r.GetState()]++
		}
		assert.Equal(t, map[typesv1.PatchState]int{
			typesv1.PatchState_PATCH_STATE_FAILED: 1, typesv1.PatchState_PATCH_STATE_MISSING: len(patches) - 1,
		}, states)
	}
	require.NotZero(t, nSucceeded, "the seed gives both outcomes")
	require.NotZero(t, nFailed, "the seed gives both outcomes")
	assert.Equal(t, n, stagetest.CountEvents(t, js, events.StreamTenant, startedP))
	assert.Equal(t, n, fleet.Stats().InstallsStarted)

	// Replay: the same jobs under new event ids, and a restarted installer with an empty store
	// whose consumer starts over.
	stop()
	require.NoError(t, js.DeleteConsumer(t.Context(), events.StreamTenant, bus.Consumer(installer.Name, installer.HandlerInstall)))
	var again []*events.Event
	for i := 1; i <= n; i++ {
		snap, err := fleet.FindSnapshot(t.Context(), tenant, "run-1", instanceID(i))
		require.NoError(t, err)
		again = append(again, forged(t, "run-1", i, snap.ID, "/replay"))
	}
	require.NoError(t, stagetest.Publisher(t, nc, "snapshotter").Publish(t.Context(), again...))
	calls := counting.installs.Load()
	stagetest.RunComponent(t, nc, newService(t, installer.Config{RebootPolicy: provider.RebootNever}, installer.Deps{Fleet: counting}))
	require.Eventually(t, func() bool { return stagetest.Drained(t, js, installer.Name, installer.HandlerInstall) },
		20*time.Second, 20*time.Millisecond)

	assert.Equal(t, n, fleet.Stats().InstallsStarted, "installations in the fleet")
	assert.Equal(t, calls, counting.installs.Load(), "the marks rebuilt from the stream stop every provider call")
	assert.Equal(t, nSucceeded, stagetest.CountEvents(t, js, events.StreamTenant, succeededP))
	assert.Equal(t, nFailed, stagetest.CountEvents(t, js, events.StreamTenant, failedP))
	assert.Equal(t, n, stagetest.CountEvents(t, js, events.StreamTenant, startedP))
}

func TestInstallerRefusesWithoutACompletedSnapshot(t *testing.T) {
	tests := []struct {
		name       string
		fleet      simfleet.Config
		event      func(t *testing.T, f *simfleet.Fleet) *events.Event
		wantReason string
	}{
		{
			name: "a snapshot the provider never took",
			event: func(t *testing.T, f *simfleet.Fleet) *events.Event {
				return forged(t, "run-1", 1, "snapset-forged", "")
			},
			wantReason: "the provider has no snapshot of this instance for this run",
		},
		{
			name: "a snapshot of another run",
			event: func(t *testing.T, f *simfleet.Fleet) *events.Event {
				other := snapshotCreated(t, f, "run-0", 1)
				return forged(t, "run-1", 1, other.Data.(*eventsv1.SnapshotCreated).GetSnapshotId(), "")
			},
			wantReason: "the provider has no snapshot of this instance for this run",
		},
		{
			name: "an event naming another snapshot than the run's",
			event: func(t *testing.T, f *simfleet.Fleet) *events.Event {
				snapshotCreated(t, f, "run-1", 1)
				return forged(t, "run-1", 1, "snapset-other", "")
			},
			wantReason: "the event names snapshot snapset-other but the run's snapshot is snapset-",
		},
		{
			name: "an event naming no snapshot",
			event: func(t *testing.T, f *simfleet.Fleet) *events.Event {
				snapshotCreated(t, f, "run-1", 1)
				return forged(t, "run-1", 1, "", "")
			},
			wantReason: "the event names no snapshot",
		},
		{
			name:  "a snapshot that is still pending",
			fleet: simfleet.Config{Latency: time.Hour},
			event: func(t *testing.T, f *simfleet.Fleet) *events.Event {
				return snapshotCreated(t, f, "run-1", 1)
			},
			wantReason: "is pending",
		},
		{
			name:  "a snapshot that ended in error",
			fleet: simfleet.Config{SnapshotFailureRate: 1},
			event: func(t *testing.T, f *simfleet.Fleet) *events.Event {
				return snapshotCreated(t, f, "run-1", 1)
			},
			wantReason: "is error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nt := testkit.StartNATS(t)
			nc, js := nt.Connect(t), nt.JetStream(t)
			fleet := newFleet(t, tt.fleet, 1)
			stagetest.RunComponent(t, nc, newService(t, installer.Config{}, installer.Deps{Fleet: fleet}))
			in := tt.event(t, fleet)
			require.NoError(t, stagetest.Publisher(t, nc, "snapshotter").Publish(t.Context(), in))

			require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, failedP) == 1 },
				20*time.Second, 20*time.Millisecond)
			ev := stagetest.ReadEvents(t, js, failedP)[0]
			m, ok := ev.Data.(*eventsv1.InstallFailed)
			require.True(t, ok)
			assert.Equal(t, "run-1/"+instanceID(1), ev.Key)
			assert.Contains(t, m.GetReason(), "no completed pre-patch snapshot for this run: ")
			assert.Contains(t, m.GetReason(), tt.wantReason)
			assert.Empty(t, m.GetInstallationId())
			assert.Equal(t, in.Data.(*eventsv1.SnapshotCreated).GetSnapshotId(), m.GetSnapshotId())
			assert.Zero(t, fleet.Stats().InstallsStarted, "Install was never called")
			assert.Zero(t, stagetest.CountEvents(t, js, events.StreamTenant, startedP))
		})
	}
}

func TestInstallerFailsAnInstallationThatOutlivesTheTimeout(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	clock := &manualClock{now: time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)}
	fleet := newFleet(t, simfleet.Config{Latency: time.Hour, Clock: clock.Now}, 1)
	in := snapshotCreated(t, fleet, "run-1", 1)
	clock.Advance(2 * time.Hour) // the snapshot completes; the installation will stay in progress
	stagetest.RunComponent(t, nc, newService(t, installer.Config{InstallTimeout: 150 * time.Millisecond},
		installer.Deps{Fleet: fleet, Clock: clock.Now}))
	require.NoError(t, stagetest.Publisher(t, nc, "snapshotter").Publish(t.Context(), in))

	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, failedP) == 1 },
		20*time.Second, 20*time.Millisecond)
	m, ok := stagetest.ReadEvents(t, js, failedP)[0].Data.(*eventsv1.InstallFailed)
	require.True(t, ok)
	assert.Contains(t, m.GetReason(), "did not finish within 150ms")
	assert.NotEmpty(t, m.GetInstallationId())
	assert.Equal(t, 1, fleet.Stats().InstallsStarted)
	assert.Equal(t, 1, stagetest.CountEvents(t, js, events.StreamTenant, startedP))
}

func TestInstallerRetriesThrottledProviderCalls(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	fleet := newFleet(t, simfleet.Config{}, 1)
	in := snapshotCreated(t, fleet, "run-1", 1)
	throttled := fmt.Errorf("ThrottlingException: %w", provider.ErrThrottled)
	fleet.FailNext(simfleet.OpFindSnapshot, throttled)
	fleet.FailNext(simfleet.OpInstall, throttled)
	stagetest.RunComponent(t, nc, newService(t, installer.Config{}, installer.Deps{Fleet: fleet}))
	require.NoError(t, stagetest.Publisher(t, nc, "snapshotter").Publish(t.Context(), in))

	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, succeededP) == 1 },
		20*time.Second, 20*time.Millisecond)
	m, ok := stagetest.ReadEvents(t, js, succeededP)[0].Data.(*eventsv1.InstallSucceeded)
	require.True(t, ok)
	assert.False(t, m.GetRebootPending(), "if-required reboots for the kernel patch")
	assert.Equal(t, 1, fleet.Stats().InstallsStarted)
	assert.Equal(t, 1, fleet.Reboots(tenant, instanceID(1)))
	assert.Zero(t, stagetest.CountEvents(t, js, events.StreamTenant, failedP))
}

func TestInstallerReportsAnInstallTheProviderRejects(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	fleet := newFleet(t, simfleet.Config{}, 1)
	snap, err := fleet.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: tenant, RunID: "run-1", InstanceID: instanceID(1)})
	require.NoError(t, err)
	in, err := events.New(tenant, "run-1/"+instanceID(1), &eventsv1.SnapshotCreated{
		Tenant: tenant, RunId: "run-1", Wave: 1, InstanceId: instanceID(1), SnapshotId: snap.ID,
		PatchIds: []string{"p1", "p1"}, // no baseline, a duplicate patch
	})
	require.NoError(t, err)
	stagetest.RunComponent(t, nc, newService(t, installer.Config{}, installer.Deps{Fleet: fleet}))
	require.NoError(t, stagetest.Publisher(t, nc, "snapshotter").Publish(t.Context(), in))

	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, failedP) == 1 },
		20*time.Second, 20*time.Millisecond)
	m, ok := stagetest.ReadEvents(t, js, failedP)[0].Data.(*eventsv1.InstallFailed)
	require.True(t, ok)
	assert.Contains(t, m.GetReason(), "BaselineID is required")
	assert.Contains(t, m.GetReason(), `PatchIDs[1] duplicate "p1"`)
	assert.Zero(t, fleet.Stats().InstallsStarted)
}

func TestConfigValidateNamesEveryBadField(t *testing.T) {
	valid := installer.Deps{Fleet: &countingFleet{}, Store: store.NewMemory()}
	tests := []struct {
		name string
		cfg  installer.Config
		deps installer.Deps
		want []string
	}{
		{
			name: "missing dependencies are named",
			want: []string{"Fleet: required", "Store: required"},
		},
		{
			name: "an unknown reboot policy is refused",
			cfg:  installer.Config{RebootPolicy: "sometimes"},
			deps: valid,
			want: []string{`RebootPolicy "sometimes": must be one of if-required, always, never`},
		},
		{
			name: "negative durations are refused",
			cfg:  installer.Config{InstallTimeout: -time.Minute, PollInterval: -time.Second},
			deps: valid,
			want: []string{"InstallTimeout -1m0s: must be > 0", "PollInterval -1s: must be > 0"},
		},
		{
			name: "a poll interval above the timeout is refused",
			cfg:  installer.Config{InstallTimeout: time.Second, PollInterval: time.Minute},
			deps: valid,
			want: []string{"PollInterval 1m0s: must not exceed InstallTimeout 1s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := installer.New(tt.cfg, tt.deps)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestNewFillsDefaults(t *testing.T) {
	svc, err := installer.New(installer.Config{}, installer.Deps{Fleet: &countingFleet{}, Store: store.NewMemory()})
	require.NoError(t, err)
	assert.Equal(t, installer.Config{
		InstallTimeout: 2 * time.Hour, PollInterval: 2 * time.Second,
		RebootPolicy: provider.RebootIfRequired, Concurrency: 32,
	}, svc.Config())
	assert.Equal(t, "installer", svc.Name())
}
