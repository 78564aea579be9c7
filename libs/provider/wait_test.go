package provider_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
)

const poll = time.Millisecond

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingFleet counts the Get calls the wait helpers make.
type countingFleet struct {
	provider.Fleet
	gets atomic.Int64
}

func (f *countingFleet) GetSnapshot(ctx context.Context, tenant, id string) (provider.Snapshot, error) {
	f.gets.Add(1)
	return f.Fleet.GetSnapshot(ctx, tenant, id)
}

func (f *countingFleet) GetInstallation(ctx context.Context, tenant, id string) (provider.Installation, error) {
	f.gets.Add(1)
	return f.Fleet.GetInstallation(ctx, tenant, id)
}

func (f *countingFleet) GetRestore(ctx context.Context, tenant, id string) (provider.Restore, error) {
	f.gets.Add(1)
	return f.Fleet.GetRestore(ctx, tenant, id)
}

type setup struct {
	sim   *simfleet.Fleet
	fleet *countingFleet
	clock *fakeClock
}

func newSetup(t *testing.T, cfg simfleet.Config) setup {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	cfg.Clock = clock.Now
	sim, err := simfleet.New(cfg)
	require.NoError(t, err)
	require.NoError(t, sim.Populate("acme", 1, 1))
	return setup{sim: sim, fleet: &countingFleet{Fleet: sim}, clock: clock}
}

type result[T any] struct {
	v   T
	err error
}

// await starts fn in a goroutine and returns a channel with its result.
func await[T any](fn func() (T, error)) <-chan result[T] {
	ch := make(chan result[T], 1)
	go func() {
		v, err := fn()
		ch <- result[T]{v, err}
	}()
	return ch
}

func receive[T any](t *testing.T, ch <-chan result[T]) result[T] {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not return")
		return result[T]{}
	}
}

func TestWaitSnapshot(t *testing.T) {
	t.Run("it polls a pending snapshot until it completes", func(t *testing.T) {
		s := newSetup(t, simfleet.Config{Latency: time.Minute})
		snap, err := s.sim.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		require.Equal(t, provider.SnapshotPending, snap.State)

		ch := await(func() (provider.Snapshot, error) {
			return provider.WaitSnapshot(t.Context(), s.fleet, "acme", snap.ID, poll)
		})
		require.Eventually(t, func() bool { return s.fleet.gets.Load() >= 3 }, 10*time.Second, poll)
		s.clock.Advance(time.Minute)
		r := receive(t, ch)
		require.NoError(t, r.err)
		require.Equal(t, provider.SnapshotCompleted, r.v.State)
		require.Equal(t, snap.ID, r.v.ID)
	})
	t.Run("a snapshot in error is returned as a result, not an error", func(t *testing.T) {
		s := newSetup(t, simfleet.Config{SnapshotFailureRate: 1})
		snap, err := s.sim.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		got, err := provider.WaitSnapshot(t.Context(), s.fleet, "acme", snap.ID, poll)
		require.NoError(t, err)
		require.Equal(t, provider.SnapshotError, got.State)
		require.EqualValues(t, 1, s.fleet.gets.Load(), "a terminal state is returned on the first read")
	})
	t.Run("throttled reads are polled through", func(t *testing.T) {
		s := newSetup(t, simfleet.Config{})
		snap, err := s.sim.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		s.sim.FailNext(simfleet.OpGetSnapshot, provider.ErrThrottled)
		s.sim.FailNext(simfleet.OpGetSnapshot, provider.ErrThrottled)
		got, err := provider.WaitSnapshot(t.Context(), s.fleet, "acme", snap.ID, poll)
		require.NoError(t, err)
		require.Equal(t, provider.SnapshotCompleted, got.State)
		require.EqualValues(t, 3, s.fleet.gets.Load())
	})
	t.Run("an error that is not retryable ends the wait at once", func(t *testing.T) {
		s := newSetup(t, simfleet.Config{})
		_, err := provider.WaitSnapshot(t.Context(), s.fleet, "acme", "snapset-nope", poll)
		require.ErrorIs(t, err, provider.ErrNotFound)
		require.ErrorContains(t, err, "wait snapshot snapset-nope")
		require.EqualValues(t, 1, s.fleet.gets.Load())
	})
	t.Run("a cancelled context ends the wait with the last snapshot seen", func(t *testing.T) {
		s := newSetup(t, simfleet.Config{Latency: time.Hour})
		snap, err := s.sim.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		ch := await(func() (provider.Snapshot, error) {
			return provider.WaitSnapshot(ctx, s.fleet, "acme", snap.ID, poll)
		})
		require.Eventually(t, func() bool { return s.fleet.gets.Load() >= 1 }, 10*time.Second, poll)
		cancel()
		r := receive(t, ch)
		require.ErrorIs(t, r.err, context.Canceled)
		require.Equal(t, snap.ID, r.v.ID)
		require.Equal(t, provider.SnapshotPending, r.v.State)
	})
	t.Run("a poll interval that is not positive is rejected", func(t *testing.T) {
		s := newSetup(t, simfleet.Config{})
		_, err := provider.WaitSnapshot(t.Context(), s.fleet, "acme", "x", 0)
		require.ErrorIs(t, err, provider.ErrInvalidArgument)
		require.EqualValues(t, 0, s.fleet.gets.Load())
	})
}

func TestWaitInstallation(t *testing.T) {
	tests := []struct {
		name      string
		rate      float64
		wantState provider.InstallState
	}{
		{name: "it returns a succeeded installation once it is done", rate: 0, wantState: provider.InstallSucceeded},
		{name: "it returns a failed installation as a result, not an error", rate: 1, wantState: provider.InstallFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, simfleet.Config{Latency: time.Minute, InstallFailureRate: tt.rate})
			in, err := s.sim.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1"}})
			require.NoError(t, err)
			require.Equal(t, provider.InstallInProgress, in.State)
			ch := await(func() (provider.Installation, error) {
				return provider.WaitInstallation(t.Context(), s.fleet, "acme", in.ID, poll)
			})
			require.Eventually(t, func() bool { return s.fleet.gets.Load() >= 2 }, 10*time.Second, poll)
			s.clock.Advance(time.Minute)
			r := receive(t, ch)
			require.NoError(t, r.err)
			require.Equal(t, tt.wantState, r.v.State)
			require.Len(t, r.v.Results, 1)
		})
	}
}

func TestWaitRestore(t *testing.T) {
	s := newSetup(t, simfleet.Config{Latency: time.Minute})
	snap, err := s.sim.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001"})
	require.NoError(t, err)
	s.clock.Advance(time.Minute)
	snap, err = provider.WaitSnapshot(t.Context(), s.fleet, "acme", snap.ID, poll)
	require.NoError(t, err)
	restore, err := s.sim.RestoreFromSnapshot(t.Context(), provider.RestoreRequest{Tenant: "acme", InstanceID: "i-acme-0001", SnapshotID: snap.ID, RestoreKey: "k"})
	require.NoError(t, err)
	require.Equal(t, provider.RestoreInProgress, restore.State)

	ch := await(func() (provider.Restore, error) {
		return provider.WaitRestore(t.Context(), s.fleet, "acme", restore.ID, poll)
	})
	s.clock.Advance(time.Minute)
	r := receive(t, ch)
	require.NoError(t, r.err)
	require.Equal(t, provider.RestoreSucceeded, r.v.State)
}
