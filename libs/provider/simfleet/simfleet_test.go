package simfleet_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/simfleet"
)

func ids(instances []provider.Instance) []string {
	out := []string{}
	for _, in := range instances {
		out = append(out, in.ID)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     simfleet.Config
		wantErr []string
	}{
		{name: "the zero config is valid", cfg: simfleet.Config{}},
		{name: "rates of exactly 0 and 1 are valid", cfg: simfleet.Config{InstallFailureRate: 1, SnapshotFailureRate: 0}},
		{name: "an install failure rate above 1 is rejected", cfg: simfleet.Config{InstallFailureRate: 1.5}, wantErr: []string{"InstallFailureRate: must be in [0, 1], got 1.5"}},
		{name: "a negative snapshot failure rate is rejected", cfg: simfleet.Config{SnapshotFailureRate: -0.1}, wantErr: []string{"SnapshotFailureRate: must be in [0, 1]"}},
		{name: "a NaN rate is rejected", cfg: simfleet.Config{InstallFailureRate: math.NaN()}, wantErr: []string{"InstallFailureRate"}},
		{name: "a negative latency is rejected", cfg: simfleet.Config{Latency: -time.Second}, wantErr: []string{"Latency: must be >= 0"}},
		{
			name:    "every problem is reported at once",
			cfg:     simfleet.Config{InstallFailureRate: 2, SnapshotFailureRate: 2, Latency: -1},
			wantErr: []string{"InstallFailureRate", "SnapshotFailureRate", "Latency"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, newErr := simfleet.New(tt.cfg)
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				require.NoError(t, newErr)
				return
			}
			require.Error(t, err)
			require.Error(t, newErr)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestDiscoverInstances(t *testing.T) {
	f := populated(t, simfleet.Config{}, 9)
	require.NoError(t, f.Populate("globex", 4, 2))
	require.NoError(t, f.SetInstanceState("acme", "i-acme-0005", provider.InstanceStopped))
	require.NoError(t, f.SetInstanceState("acme", "i-acme-0008", provider.InstanceTerminated))

	tests := []struct {
		name    string
		q       provider.DiscoverQuery
		want    []string
		wantErr error
	}{
		{
			name: "a wave tag finds the running instances of that wave",
			q:    provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "2"},
			want: []string{"i-acme-0002"},
		},
		{
			name: "stopped instances are found when asked for, terminated ones never",
			q:    provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "2", IncludeStopped: true},
			want: []string{"i-acme-0002", "i-acme-0005"},
		},
		{
			name: "a tag key alone finds every running instance carrying it",
			q:    provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave"},
			want: []string{"i-acme-0001", "i-acme-0002", "i-acme-0003", "i-acme-0004", "i-acme-0006", "i-acme-0007", "i-acme-0009"},
		},
		{
			name: "another tenant's instances are never returned",
			q:    provider.DiscoverQuery{Tenant: "globex", TagKey: "PatchWave", TagValue: "1"},
			want: []string{"i-globex-0001", "i-globex-0003"},
		},
		{
			name: "a tag nobody carries finds nothing",
			q:    provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave", TagValue: "7"},
			want: []string{},
		},
		{
			name: "a tenant without instances finds nothing",
			q:    provider.DiscoverQuery{Tenant: "initech"},
			want: []string{},
		},
		{
			name:    "an invalid tenant is rejected",
			q:       provider.DiscoverQuery{Tenant: "Acme Corp"},
			wantErr: provider.ErrInvalidArgument,
		},
		{
			name:    "a tag value without a tag key is rejected",
			q:       provider.DiscoverQuery{Tenant: "acme", TagValue: "1"},
			wantErr: provider.ErrInvalidArgument,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.DiscoverInstances(t.Context(), tt.q)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, ids(got))
			for _, in := range got {
				require.Equal(t, tt.q.Tenant, in.Tenant)
			}
		})
	}
}

func TestPopulate(t *testing.T) {
	t.Run("instances get ids, names, wave tags round-robin, an OS family and two volumes", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 4)
		got := f.Instances("acme")
		require.Equal(t, []string{"i-acme-0001", "i-acme-0002", "i-acme-0003", "i-acme-0004"}, ids(got))
		waves := []string{}
		for _, in := range got {
			waves = append(waves, in.Tags["PatchWave"])
			require.Equal(t, provider.InstanceRunning, in.State)
			require.Equal(t, "amazon-linux-2023", in.OSFamily)
			require.Equal(t, in.Name, in.Tags["Name"])
			require.Len(t, in.VolumeIDs, 2)
			require.NotEqual(t, in.VolumeIDs[0], in.VolumeIDs[1])
		}
		require.Equal(t, []string{"1", "2", "3", "1"}, waves)
		require.Equal(t, "acme-vm-0001", got[0].Name)
	})
	t.Run("populating again keeps existing instances and adds only missing ones", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 3)
		require.NoError(t, f.SetInstanceState("acme", "i-acme-0001", provider.InstanceStopped))
		require.NoError(t, f.Populate("acme", 5, 3))
		got := f.Instances("acme")
		require.Len(t, got, 5)
		require.Equal(t, provider.InstanceStopped, got[0].State)
	})
	t.Run("bad arguments are rejected naming the rule", func(t *testing.T) {
		f := newFleet(t, simfleet.Config{})
		require.ErrorContains(t, f.Populate("acme", -1, 3), "n: must be >= 0")
		require.ErrorContains(t, f.Populate("acme", 3, 0), "waves: must be >= 1")
		require.ErrorIs(t, f.Populate("ACME", 3, 3), provider.ErrInvalidArgument)
		require.Empty(t, f.Instances("acme"))
	})
}

func TestAddInstances(t *testing.T) {
	t.Run("an instance gets defaults for what its spec leaves out", func(t *testing.T) {
		f := newFleet(t, simfleet.Config{})
		require.NoError(t, f.AddInstances("acme", simfleet.InstanceSpec{ID: "i-1", Tags: map[string]string{"Name": "web"}}))
		got := f.Instances("acme")
		require.Len(t, got, 1)
		require.Equal(t, "web", got[0].Name)
		require.Equal(t, simfleet.DefaultOSFamily, got[0].OSFamily)
		require.Equal(t, provider.InstanceRunning, got[0].State)
		require.Len(t, got[0].VolumeIDs, 2)
	})
	t.Run("a batch with a duplicate id adds nothing", func(t *testing.T) {
		f := newFleet(t, simfleet.Config{})
		require.NoError(t, f.AddInstances("acme", simfleet.InstanceSpec{ID: "i-1"}))
		err := f.AddInstances("acme", simfleet.InstanceSpec{ID: "i-2"}, simfleet.InstanceSpec{ID: "i-1"})
		require.ErrorIs(t, err, provider.ErrInvalidArgument)
		require.ErrorContains(t, err, `specs[1].ID: "i-1" already exists`)
		require.Len(t, f.Instances("acme"), 1)
	})
	t.Run("the same id in two tenants is two instances", func(t *testing.T) {
		f := newFleet(t, simfleet.Config{})
		require.NoError(t, f.AddInstances("acme", simfleet.InstanceSpec{ID: "i-1"}))
		require.NoError(t, f.AddInstances("globex", simfleet.InstanceSpec{ID: "i-1", State: provider.InstanceStopped}))
		require.Equal(t, provider.InstanceRunning, f.Instances("acme")[0].State)
		require.Equal(t, provider.InstanceStopped, f.Instances("globex")[0].State)
	})
	t.Run("a spec without id or with an unknown state is rejected", func(t *testing.T) {
		f := newFleet(t, simfleet.Config{})
		err := f.AddInstances("acme", simfleet.InstanceSpec{}, simfleet.InstanceSpec{ID: "i-2", State: "asleep"})
		require.ErrorContains(t, err, "specs[0].ID: is required")
		require.ErrorContains(t, err, `specs[1].State: unknown state "asleep"`)
	})
	t.Run("returned instances are copies the caller cannot use to change the fleet", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 1)
		got := f.Instances("acme")
		got[0].Tags["PatchWave"] = "9"
		got[0].VolumeIDs[0] = "vol-mine"
		again := f.Instances("acme")
		require.Equal(t, "1", again[0].Tags["PatchWave"])
		require.NotEqual(t, "vol-mine", again[0].VolumeIDs[0])
	})
}

func TestCreateSnapshot(t *testing.T) {
	t.Run("a repeated request returns the first snapshot and creates no second one", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 3)
		req := provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", Tags: map[string]string{"retain": "7d"}}
		first, err := f.CreateSnapshot(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, provider.SnapshotCompleted, first.State)
		require.Len(t, first.VolumeSnapshotIDs, 2)
		require.Equal(t, map[string]string{"retain": "7d"}, first.Tags)
		for range 3 {
			again, err := f.CreateSnapshot(t.Context(), req)
			require.NoError(t, err)
			require.Equal(t, first, again)
		}
		require.Equal(t, 1, f.Stats().SnapshotsCreated)

		found, err := f.FindSnapshot(t.Context(), "acme", "run-1", "i-acme-0001")
		require.NoError(t, err)
		require.Equal(t, first, found)
		got, err := f.GetSnapshot(t.Context(), "acme", first.ID)
		require.NoError(t, err)
		require.Equal(t, first, got)
	})
	t.Run("each instance of a run gets exactly one snapshot, and a new run a new one", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 5)
		seen := map[string]bool{}
		for _, run := range []string{"run-1", "run-1", "run-2"} {
			for _, in := range f.Instances("acme") {
				s, err := f.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: run, InstanceID: in.ID})
				require.NoError(t, err)
				seen[s.ID] = true
			}
		}
		require.Len(t, seen, 10)
		require.Equal(t, 10, f.Stats().SnapshotsCreated)
	})

	f := populated(t, simfleet.Config{}, 3)
	require.NoError(t, f.Populate("globex", 1, 1))
	require.NoError(t, f.SetInstanceState("acme", "i-acme-0002", provider.InstanceStopped))
	require.NoError(t, f.SetInstanceState("acme", "i-acme-0003", provider.InstanceTerminated))
	tests := []struct {
		name    string
		req     provider.SnapshotRequest
		wantErr error
	}{
		{name: "a stopped instance can be snapshotted", req: provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0002"}},
		{name: "a terminated instance cannot", req: provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0003"}, wantErr: provider.ErrInstanceNotRunning},
		{name: "an unknown instance is not found", req: provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-nope"}, wantErr: provider.ErrNotFound},
		{name: "another tenant's instance is not found", req: provider.SnapshotRequest{Tenant: "acme", RunID: "r", InstanceID: "i-globex-0001"}, wantErr: provider.ErrNotFound},
		{name: "a request without run is invalid", req: provider.SnapshotRequest{Tenant: "acme", InstanceID: "i-acme-0001"}, wantErr: provider.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.CreateSnapshot(t.Context(), tt.req)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestSnapshotLookups(t *testing.T) {
	f := populated(t, simfleet.Config{}, 1)
	require.NoError(t, f.Populate("globex", 1, 1))
	s, err := f.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001"})
	require.NoError(t, err)

	tests := []struct {
		name string
		call func() error
	}{
		{name: "another tenant cannot read the snapshot", call: func() error { _, err := f.GetSnapshot(t.Context(), "globex", s.ID); return err }},
		{name: "an unknown snapshot id is not found", call: func() error { _, err := f.GetSnapshot(t.Context(), "acme", "snapset-nope"); return err }},
		{name: "another run has no snapshot", call: func() error { _, err := f.FindSnapshot(t.Context(), "acme", "run-2", "i-acme-0001"); return err }},
		{name: "another tenant finds no snapshot by key", call: func() error { _, err := f.FindSnapshot(t.Context(), "globex", "run-1", "i-acme-0001"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.call(), provider.ErrNotFound)
		})
	}
}

func TestDeleteSnapshot(t *testing.T) {
	f := populated(t, simfleet.Config{}, 1)
	req := provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001"}
	s, err := f.CreateSnapshot(t.Context(), req)
	require.NoError(t, err)

	require.NoError(t, f.DeleteSnapshot(t.Context(), "globex", s.ID), "another tenant's delete is a no-op")
	_, err = f.GetSnapshot(t.Context(), "acme", s.ID)
	require.NoError(t, err, "another tenant must not delete the snapshot")

	require.NoError(t, f.DeleteSnapshot(t.Context(), "acme", s.ID))
	_, err = f.GetSnapshot(t.Context(), "acme", s.ID)
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = f.FindSnapshot(t.Context(), "acme", "run-1", "i-acme-0001")
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.NoError(t, f.DeleteSnapshot(t.Context(), "acme", s.ID), "deleting twice succeeds")
	require.Equal(t, simfleet.Stats{SnapshotsCreated: 1, SnapshotsDeleted: 1}, f.Stats())
}

func TestInstall(t *testing.T) {
	t.Run("a repeated request returns the first installation and starts no second one", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 1)
		req := provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "al2023-2026.03", PatchIDs: []string{"ALAS-1", "ALAS-2"}}
		first, err := f.Install(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, provider.InstallSucceeded, first.State)
		require.Equal(t, []provider.PatchResult{
			{PatchID: "ALAS-1", State: provider.PatchInstalled},
			{PatchID: "ALAS-2", State: provider.PatchInstalled},
		}, first.Results)

		req.PatchIDs = []string{"ALAS-3"}
		again, err := f.Install(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, first, again, "the first request wins")
		found, err := f.FindInstallation(t.Context(), "acme", "run-1", "i-acme-0001")
		require.NoError(t, err)
		require.Equal(t, first, found)
		got, err := f.GetInstallation(t.Context(), "acme", first.ID)
		require.NoError(t, err)
		require.Equal(t, first, got)

		require.Equal(t, 1, f.Stats().InstallsStarted)
		require.Equal(t, []string{"ALAS-1", "ALAS-2"}, f.InstalledPatches("acme", "i-acme-0001"))
	})

	f := populated(t, simfleet.Config{}, 2)
	require.NoError(t, f.Populate("globex", 1, 1))
	require.NoError(t, f.SetInstanceState("acme", "i-acme-0002", provider.InstanceStopped))
	tests := []struct {
		name    string
		req     provider.InstallRequest
		wantErr error
	}{
		{name: "a stopped instance cannot be patched", req: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0002", BaselineID: "b"}, wantErr: provider.ErrInstanceNotRunning},
		{name: "an unknown instance is not found", req: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-nope", BaselineID: "b"}, wantErr: provider.ErrNotFound},
		{name: "another tenant's instance is not found", req: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-globex-0001", BaselineID: "b"}, wantErr: provider.ErrNotFound},
		{name: "a request without baseline is invalid", req: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001"}, wantErr: provider.ErrInvalidArgument},
		{name: "a duplicate patch id is invalid", req: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"p", "p"}}, wantErr: provider.ErrInvalidArgument},
		{name: "an unknown reboot policy is invalid", req: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001", BaselineID: "b", RebootPolicy: "sometimes"}, wantErr: provider.ErrInvalidArgument},
		{name: "an empty patch set succeeds with no results", req: provider.InstallRequest{Tenant: "acme", RunID: "r", InstanceID: "i-acme-0001", BaselineID: "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.Install(t.Context(), tt.req)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, provider.InstallSucceeded, got.State)
			require.Empty(t, got.Results)
		})
	}
}

func TestRebootPolicy(t *testing.T) {
	tests := []struct {
		name              string
		policy            provider.RebootPolicy
		patches           []string
		wantStates        []provider.PatchState
		wantRebootPending bool
		wantReboots       int
	}{
		{
			name: "if-required reboots when a kernel patch is in the set", policy: provider.RebootIfRequired,
			patches: []string{"ALAS-kernel-1", "ALAS-2"}, wantStates: []provider.PatchState{provider.PatchInstalled, provider.PatchInstalled}, wantReboots: 1,
		},
		{
			name: "the default policy is if-required", policy: "",
			patches: []string{"ALAS-Kernel-1"}, wantStates: []provider.PatchState{provider.PatchInstalled}, wantReboots: 1,
		},
		{
			name: "if-required does not reboot for patches that need none", policy: provider.RebootIfRequired,
			patches: []string{"ALAS-2"}, wantStates: []provider.PatchState{provider.PatchInstalled}, wantReboots: 0,
		},
		{
			name: "always reboots even when no patch needs it", policy: provider.RebootAlways,
			patches: []string{"ALAS-2"}, wantStates: []provider.PatchState{provider.PatchInstalled}, wantReboots: 1,
		},
		{
			name: "never leaves kernel patches pending a reboot", policy: provider.RebootNever,
			patches:    []string{"ALAS-kernel-1", "ALAS-2"},
			wantStates: []provider.PatchState{provider.PatchInstalledPendingReboot, provider.PatchInstalled}, wantRebootPending: true, wantReboots: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := populated(t, simfleet.Config{}, 1)
			got, err := f.Install(t.Context(), provider.InstallRequest{
				Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: tt.patches, RebootPolicy: tt.policy,
			})
			require.NoError(t, err)
			require.Equal(t, provider.InstallSucceeded, got.State)
			var states []provider.PatchState
			for _, r := range got.Results {
				states = append(states, r.State)
			}
			require.Equal(t, tt.wantStates, states)
			require.Equal(t, tt.wantRebootPending, got.RebootPending)
			require.Equal(t, tt.wantReboots, f.Reboots("acme", "i-acme-0001"))
			require.ElementsMatch(t, tt.patches, f.InstalledPatches("acme", "i-acme-0001"))
		})
	}
}

func TestRebootAndHealth(t *testing.T) {
	f := populated(t, simfleet.Config{}, 2)
	require.NoError(t, f.SetInstanceState("acme", "i-acme-0002", provider.InstanceStopped))

	t.Run("a running instance reboots and is healthy", func(t *testing.T) {
		require.NoError(t, f.Reboot(t.Context(), "acme", "i-acme-0001"))
		require.Equal(t, 1, f.Reboots("acme", "i-acme-0001"))
		h, err := f.CheckHealth(t.Context(), "acme", "i-acme-0001")
		require.NoError(t, err)
		require.True(t, h.Healthy)
	})
	t.Run("a stopped instance cannot reboot and is unhealthy", func(t *testing.T) {
		require.ErrorIs(t, f.Reboot(t.Context(), "acme", "i-acme-0002"), provider.ErrInstanceNotRunning)
		h, err := f.CheckHealth(t.Context(), "acme", "i-acme-0002")
		require.NoError(t, err)
		require.Equal(t, provider.Health{Healthy: false, Detail: "instance is stopped"}, h)
	})
	t.Run("an unknown instance is not found", func(t *testing.T) {
		require.ErrorIs(t, f.Reboot(t.Context(), "acme", "i-nope"), provider.ErrNotFound)
		_, err := f.CheckHealth(t.Context(), "globex", "i-acme-0001")
		require.ErrorIs(t, err, provider.ErrNotFound)
	})
	t.Run("SetHealth makes a running instance report unhealthy until reset", func(t *testing.T) {
		require.NoError(t, f.SetHealth("acme", "i-acme-0001", provider.Health{Healthy: false, Detail: "sshd down"}))
		h, err := f.CheckHealth(t.Context(), "acme", "i-acme-0001")
		require.NoError(t, err)
		require.Equal(t, provider.Health{Healthy: false, Detail: "sshd down"}, h)
		require.NoError(t, f.SetHealth("acme", "i-acme-0001", provider.Health{Healthy: true}))
		h, err = f.CheckHealth(t.Context(), "acme", "i-acme-0001")
		require.NoError(t, err)
		require.True(t, h.Healthy)
	})
	t.Run("a reboot clears a pending reboot left by an installation", func(t *testing.T) {
		in, err := f.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "run-9", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"kernel-6.1"}, RebootPolicy: provider.RebootNever})
		require.NoError(t, err)
		require.True(t, in.RebootPending)
		before := f.Stats().Reboots
		require.NoError(t, f.Reboot(t.Context(), "acme", "i-acme-0001"))
		require.Equal(t, before+1, f.Stats().Reboots)
	})
}

// installAll installs one patch set on every running instance of acme in a run and returns the
// ids of those whose installation has already failed.
func installAll(t *testing.T, f *simfleet.Fleet, run string) map[string]bool {
	t.Helper()
	failed := map[string]bool{}
	for _, in := range f.Instances("acme") {
		if in.State != provider.InstanceRunning {
			continue
		}
		got, err := f.Install(t.Context(), provider.InstallRequest{
			Tenant: "acme", RunID: run, InstanceID: in.ID, BaselineID: "b", PatchIDs: []string{"ALAS-1", "ALAS-2", "ALAS-3"},
		})
		require.NoError(t, err)
		if got.State == provider.InstallFailed {
			failed[in.ID] = true
		}
	}
	return failed
}

// failures lists the running instances of acme whose installation in the run failed.
func failures(t *testing.T, f *simfleet.Fleet, run string) map[string]bool {
	t.Helper()
	failed := map[string]bool{}
	for _, in := range f.Instances("acme") {
		if in.State != provider.InstanceRunning {
			continue
		}
		got, err := f.FindInstallation(t.Context(), "acme", run, in.ID)
		require.NoError(t, err)
		require.True(t, got.State.Terminal())
		if got.State == provider.InstallFailed {
			failed[in.ID] = true
		}
	}
	return failed
}

func TestDeterministicInstallFailures(t *testing.T) {
	tests := []struct {
		name          string
		rate          float64
		min, max      int
		instanceCount int
	}{
		{name: "rate 0 fails nothing", rate: 0, min: 0, max: 0, instanceCount: 200},
		{name: "rate 1 fails everything", rate: 1, min: 200, max: 200, instanceCount: 200},
		{name: "rate 0.3 fails about 30 percent of 1000 instances", rate: 0.3, min: 240, max: 360, instanceCount: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := populated(t, simfleet.Config{Seed: 42, InstallFailureRate: tt.rate}, tt.instanceCount)
			failed := installAll(t, f, "run-1")
			require.GreaterOrEqual(t, len(failed), tt.min)
			require.LessOrEqual(t, len(failed), tt.max)
		})
	}

	t.Run("the same seed fails the same installations, in any call order", func(t *testing.T) {
		a := populated(t, simfleet.Config{Seed: 7, InstallFailureRate: 0.3}, 300)
		b := populated(t, simfleet.Config{Seed: 7, InstallFailureRate: 0.3}, 300)
		// b installs in reverse order, with other installations in between.
		instances := b.Instances("acme")
		bFailed := map[string]bool{}
		for i := len(instances) - 1; i >= 0; i-- {
			_, err := b.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "other", InstanceID: instances[i].ID, BaselineID: "b"})
			require.NoError(t, err)
			got, err := b.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: instances[i].ID, BaselineID: "b", PatchIDs: []string{"ALAS-1"}})
			require.NoError(t, err)
			if got.State == provider.InstallFailed {
				bFailed[instances[i].ID] = true
			}
		}
		require.Equal(t, installAll(t, a, "run-1"), bFailed)
	})
	t.Run("another seed or another run fails other installations", func(t *testing.T) {
		a := populated(t, simfleet.Config{Seed: 7, InstallFailureRate: 0.3}, 300)
		b := populated(t, simfleet.Config{Seed: 8, InstallFailureRate: 0.3}, 300)
		aFailed := installAll(t, a, "run-1")
		require.NotEqual(t, aFailed, installAll(t, b, "run-1"))
		require.NotEqual(t, aFailed, installAll(t, a, "run-2"))
	})
	t.Run("a failed installation fails one patch, installs nothing and says why", func(t *testing.T) {
		f := populated(t, simfleet.Config{InstallFailureRate: 1}, 1)
		got, err := f.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1", "ALAS-2", "ALAS-3"}})
		require.NoError(t, err)
		require.Equal(t, provider.InstallFailed, got.State)
		require.Contains(t, got.Error, "exit status 1: package conflict")
		var failed, missing int
		for _, r := range got.Results {
			switch r.State {
			case provider.PatchFailed:
				failed++
				require.Equal(t, "exit status 1: package conflict", r.Error)
				require.Contains(t, got.Error, r.PatchID)
			case provider.PatchMissing:
				missing++
			}
		}
		require.Equal(t, 1, failed)
		require.Equal(t, 2, missing)
		require.Empty(t, f.InstalledPatches("acme", "i-acme-0001"))
		require.Equal(t, 0, f.Reboots("acme", "i-acme-0001"))
	})
}

func TestDeterministicSnapshotFailures(t *testing.T) {
	run := func(f *simfleet.Fleet) map[string]bool {
		failed := map[string]bool{}
		for _, in := range f.Instances("acme") {
			s, err := f.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: in.ID})
			require.NoError(t, err)
			if s.State == provider.SnapshotError {
				require.Contains(t, s.Error, "snapshot of volume vol-")
				failed[in.ID] = true
			}
		}
		return failed
	}
	tests := []struct {
		name     string
		rate     float64
		min, max int
	}{
		{name: "rate 0 fails no snapshot", rate: 0, min: 0, max: 0},
		{name: "rate 1 fails every snapshot", rate: 1, min: 500, max: 500},
		{name: "rate 0.5 fails about half", rate: 0.5, min: 200, max: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failed := run(populated(t, simfleet.Config{SnapshotFailureRate: tt.rate}, 500))
			require.GreaterOrEqual(t, len(failed), tt.min)
			require.LessOrEqual(t, len(failed), tt.max)
		})
	}
	t.Run("the same seed fails the same snapshots", func(t *testing.T) {
		first := run(populated(t, simfleet.Config{Seed: 3, SnapshotFailureRate: 0.5}, 100))
		second := run(populated(t, simfleet.Config{Seed: 3, SnapshotFailureRate: 0.5}, 100))
		require.NotEmpty(t, first)
		require.Equal(t, first, second)
	})
}

func TestLatency(t *testing.T) {
	clock := newFakeClock()
	f := populated(t, simfleet.Config{Latency: 10 * time.Minute, Clock: clock.Now}, 1)
	start := clock.Now()

	snap, err := f.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001"})
	require.NoError(t, err)
	require.Equal(t, provider.SnapshotPending, snap.State)
	require.Equal(t, start, snap.CreatedAt)

	inst, err := f.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1"}})
	require.NoError(t, err)
	require.Equal(t, provider.InstallInProgress, inst.State)
	require.Empty(t, inst.Results)
	require.True(t, inst.FinishedAt.IsZero())

	_, err = f.RestoreFromSnapshot(t.Context(), provider.RestoreRequest{Tenant: "acme", InstanceID: "i-acme-0001", SnapshotID: snap.ID, RestoreKey: "k"})
	require.ErrorIs(t, err, provider.ErrSnapshotNotCompleted, "a pending snapshot cannot be restored")

	clock.Advance(10*time.Minute - time.Nanosecond)
	snap, err = f.GetSnapshot(t.Context(), "acme", snap.ID)
	require.NoError(t, err)
	require.Equal(t, provider.SnapshotPending, snap.State, "still pending just before the latency is over")
	inst, err = f.FindInstallation(t.Context(), "acme", "run-1", "i-acme-0001")
	require.NoError(t, err)
	require.Equal(t, provider.InstallInProgress, inst.State)
	require.Empty(t, f.InstalledPatches("acme", "i-acme-0001"))

	clock.Advance(time.Nanosecond)
	snap, err = f.FindSnapshot(t.Context(), "acme", "run-1", "i-acme-0001")
	require.NoError(t, err)
	require.Equal(t, provider.SnapshotCompleted, snap.State)
	inst, err = f.GetInstallation(t.Context(), "acme", inst.ID)
	require.NoError(t, err)
	require.Equal(t, provider.InstallSucceeded, inst.State)
	require.Equal(t, start, inst.StartedAt)
	require.Equal(t, start.Add(10*time.Minute), inst.FinishedAt)
	require.Equal(t, []string{"ALAS-1"}, f.InstalledPatches("acme", "i-acme-0001"))

	restore, err := f.RestoreFromSnapshot(t.Context(), provider.RestoreRequest{Tenant: "acme", InstanceID: "i-acme-0001", SnapshotID: snap.ID, RestoreKey: "k"})
	require.NoError(t, err)
	require.Equal(t, provider.RestoreInProgress, restore.State)
	clock.Advance(10 * time.Minute)
	restore, err = f.GetRestore(t.Context(), "acme", restore.ID)
	require.NoError(t, err)
	require.Equal(t, provider.RestoreSucceeded, restore.State)
	require.Empty(t, f.InstalledPatches("acme", "i-acme-0001"), "the snapshot was taken before the patch was installed")
}

func TestRestoreFromSnapshot(t *testing.T) {
	setup := func(t *testing.T) (*simfleet.Fleet, provider.Snapshot) {
		f := populated(t, simfleet.Config{}, 2)
		ctx := t.Context()
		_, err := f.Install(ctx, provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1"}})
		require.NoError(t, err)
		snap, err := f.CreateSnapshot(ctx, provider.SnapshotRequest{Tenant: "acme", RunID: "run-2", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		_, err = f.Install(ctx, provider.InstallRequest{Tenant: "acme", RunID: "run-2", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-2", "ALAS-3"}})
		require.NoError(t, err)
		require.Equal(t, []string{"ALAS-1", "ALAS-2", "ALAS-3"}, f.InstalledPatches("acme", "i-acme-0001"))
		return f, snap
	}

	t.Run("a restore brings back the patches of the snapshot and a new root volume, once per key", func(t *testing.T) {
		f, snap := setup(t)
		before := f.Instances("acme")[0]
		req := provider.RestoreRequest{Tenant: "acme", InstanceID: "i-acme-0001", SnapshotID: snap.ID, RestoreKey: "restore-1"}
		first, err := f.RestoreFromSnapshot(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, provider.RestoreSucceeded, first.State)
		require.Equal(t, []string{"ALAS-1"}, f.InstalledPatches("acme", "i-acme-0001"))
		after := f.Instances("acme")[0]
		require.NotEqual(t, before.VolumeIDs[0], after.VolumeIDs[0], "the root volume is replaced")
		require.Equal(t, before.VolumeIDs[1], after.VolumeIDs[1], "other volumes stay")

		again, err := f.RestoreFromSnapshot(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, first, again)
		got, err := f.GetRestore(t.Context(), "acme", first.ID)
		require.NoError(t, err)
		require.Equal(t, first, got)
		require.Equal(t, 1, f.Stats().Restores)

		req.RestoreKey = "restore-2"
		second, err := f.RestoreFromSnapshot(t.Context(), req)
		require.NoError(t, err)
		require.NotEqual(t, first.ID, second.ID, "a new key is a new restore")
		require.Equal(t, 2, f.Stats().Restores)
	})

	tests := []struct {
		name    string
		mutate  func(t *testing.T, f *simfleet.Fleet, req *provider.RestoreRequest)
		wantErr error
	}{
		{
			name: "a key reused for another snapshot is rejected",
			mutate: func(t *testing.T, f *simfleet.Fleet, req *provider.RestoreRequest) {
				_, err := f.RestoreFromSnapshot(t.Context(), *req)
				require.NoError(t, err)
				other, err := f.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "run-3", InstanceID: "i-acme-0001"})
				require.NoError(t, err)
				req.SnapshotID = other.ID
			},
			wantErr: provider.ErrInvalidArgument,
		},
		{
			name:    "a snapshot of another instance is rejected",
			mutate:  func(t *testing.T, f *simfleet.Fleet, req *provider.RestoreRequest) { req.InstanceID = "i-acme-0002" },
			wantErr: provider.ErrInvalidArgument,
		},
		{
			name: "a stopped instance cannot be restored",
			mutate: func(t *testing.T, f *simfleet.Fleet, req *provider.RestoreRequest) {
				require.NoError(t, f.SetInstanceState("acme", "i-acme-0001", provider.InstanceStopped))
			},
			wantErr: provider.ErrInstanceNotRunning,
		},
		{
			name: "a deleted snapshot is not found",
			mutate: func(t *testing.T, f *simfleet.Fleet, req *provider.RestoreRequest) {
				require.NoError(t, f.DeleteSnapshot(t.Context(), "acme", req.SnapshotID))
			},
			wantErr: provider.ErrNotFound,
		},
		{
			name:    "another tenant's snapshot is not found",
			mutate:  func(t *testing.T, f *simfleet.Fleet, req *provider.RestoreRequest) { req.Tenant = "globex" },
			wantErr: provider.ErrNotFound,
		},
		{
			name:    "a request without key is invalid",
			mutate:  func(t *testing.T, f *simfleet.Fleet, req *provider.RestoreRequest) { req.RestoreKey = "" },
			wantErr: provider.ErrInvalidArgument,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, snap := setup(t)
			req := provider.RestoreRequest{Tenant: "acme", InstanceID: "i-acme-0001", SnapshotID: snap.ID, RestoreKey: "restore-1"}
			tt.mutate(t, f, &req)
			_, err := f.RestoreFromSnapshot(t.Context(), req)
			require.ErrorIs(t, err, tt.wantErr)
		})
	}

	t.Run("a snapshot in error cannot be restored", func(t *testing.T) {
		f := populated(t, simfleet.Config{SnapshotFailureRate: 1}, 1)
		snap, err := f.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		require.Equal(t, provider.SnapshotError, snap.State)
		_, err = f.RestoreFromSnapshot(t.Context(), provider.RestoreRequest{Tenant: "acme", InstanceID: "i-acme-0001", SnapshotID: snap.ID, RestoreKey: "k"})
		require.ErrorIs(t, err, provider.ErrSnapshotNotCompleted)
	})
}

func TestPersistence(t *testing.T) {
	t.Run("a new fleet on the same state file continues where the last one stopped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sim", "fleet.json")
		clock := newFakeClock()
		cfg := simfleet.Config{StatePath: path, Clock: clock.Now, Latency: time.Minute, InstallFailureRate: 0.5}
		first := populated(t, cfg, 20)
		ctx := t.Context()
		snap, err := first.CreateSnapshot(ctx, provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		inst, err := first.Install(ctx, provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1"}})
		require.NoError(t, err)
		require.Equal(t, provider.InstallInProgress, inst.State)
		require.NoError(t, first.SetInstanceState("acme", "i-acme-0002", provider.InstanceStopped))

		installAll(t, first, "run-2")
		clock.Advance(time.Minute)
		firstOutcome, err := first.GetInstallation(ctx, "acme", inst.ID)
		require.NoError(t, err)
		firstFailures := failures(t, first, "run-2")
		require.NotEmpty(t, firstFailures)

		second := newFleet(t, cfg)
		require.Equal(t, first.Instances("acme"), second.Instances("acme"))
		require.Equal(t, first.Stats(), second.Stats())
		again, err := second.CreateSnapshot(ctx, provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001"})
		require.NoError(t, err)
		require.Equal(t, snap.ID, again.ID)
		require.Equal(t, provider.SnapshotCompleted, again.State)
		got, err := second.Install(ctx, provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1"}})
		require.NoError(t, err)
		require.Equal(t, firstOutcome, got)
		require.Equal(t, first.InstalledPatches("acme", "i-acme-0001"), second.InstalledPatches("acme", "i-acme-0001"))
		require.Equal(t, first.Stats(), second.Stats(), "repeats after a restart create nothing")

		require.Equal(t, firstFailures, installAll(t, second, "run-2"), "replayed installs keep their outcome")
		require.Equal(t, firstFailures, failures(t, second, "run-2"))
		require.Equal(t, first.Stats(), second.Stats())

		entries, err := os.ReadDir(filepath.Dir(path))
		require.NoError(t, err)
		require.Len(t, entries, 1, "no temporary file is left behind")
	})
	t.Run("an installation pending at a restart completes after it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fleet.json")
		clock := newFakeClock()
		cfg := simfleet.Config{StatePath: path, Clock: clock.Now, Latency: time.Hour}
		first := populated(t, cfg, 1)
		inst, err := first.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1"}, RebootPolicy: provider.RebootAlways})
		require.NoError(t, err)

		second := newFleet(t, cfg)
		got, err := second.GetInstallation(t.Context(), "acme", inst.ID)
		require.NoError(t, err)
		require.Equal(t, provider.InstallInProgress, got.State)
		clock.Advance(time.Hour)
		got, err = second.GetInstallation(t.Context(), "acme", inst.ID)
		require.NoError(t, err)
		require.Equal(t, provider.InstallSucceeded, got.State)
		require.Equal(t, []string{"ALAS-1"}, second.InstalledPatches("acme", "i-acme-0001"))
		require.Equal(t, 1, second.Reboots("acme", "i-acme-0001"))
	})
	t.Run("a corrupt state file is an error, not an empty fleet", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fleet.json")
		require.NoError(t, os.WriteFile(path, []byte("{not json"), 0o600))
		_, err := simfleet.New(simfleet.Config{StatePath: path})
		require.ErrorContains(t, err, "load simfleet state")
	})
}

func TestFailNext(t *testing.T) {
	errBoom := errors.New("boom")
	throttled := fmt.Errorf("request limit exceeded: %w", provider.ErrThrottled)
	snapReq := provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001"}
	installReq := provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: "i-acme-0001", BaselineID: "b", PatchIDs: []string{"ALAS-1"}}

	tests := []struct {
		name      string
		op        string
		call      func(t *testing.T, f *simfleet.Fleet) error
		wantStats simfleet.Stats
	}{
		{
			name: "a failed snapshot call creates nothing and a retry creates one",
			op:   simfleet.OpCreateSnapshot,
			call: func(t *testing.T, f *simfleet.Fleet) error {
				_, err := f.CreateSnapshot(t.Context(), snapReq)
				return err
			},
			wantStats: simfleet.Stats{SnapshotsCreated: 1},
		},
		{
			name: "a failed install call starts nothing and a retry starts one",
			op:   simfleet.OpInstall,
			call: func(t *testing.T, f *simfleet.Fleet) error {
				_, err := f.Install(t.Context(), installReq)
				return err
			},
			wantStats: simfleet.Stats{InstallsStarted: 1},
		},
		{
			name: "a failed discovery returns the error once",
			op:   simfleet.OpDiscoverInstances,
			call: func(t *testing.T, f *simfleet.Fleet) error {
				_, err := f.DiscoverInstances(t.Context(), provider.DiscoverQuery{Tenant: "acme"})
				return err
			},
		},
		{
			name: "a failed reboot does not reboot",
			op:   simfleet.OpReboot,
			call: func(t *testing.T, f *simfleet.Fleet) error {
				return f.Reboot(t.Context(), "acme", "i-acme-0001")
			},
			wantStats: simfleet.Stats{Reboots: 1},
		},
		{
			name: "a failed health check returns the error once",
			op:   simfleet.OpCheckHealth,
			call: func(t *testing.T, f *simfleet.Fleet) error {
				_, err := f.CheckHealth(t.Context(), "acme", "i-acme-0001")
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := populated(t, simfleet.Config{}, 1)
			f.FailNext(tt.op, throttled)
			f.FailNext(tt.op, errBoom)

			err := tt.call(t, f)
			require.ErrorIs(t, err, provider.ErrThrottled)
			require.True(t, provider.IsRetryable(err))
			require.Equal(t, simfleet.Stats{}, f.Stats())

			err = tt.call(t, f)
			require.ErrorIs(t, err, errBoom, "faults stack in order")
			require.False(t, provider.IsRetryable(err))

			require.NoError(t, tt.call(t, f))
			require.Equal(t, tt.wantStats, f.Stats())
		})
	}

	t.Run("a fault fires only for its own op", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 1)
		f.FailNext(simfleet.OpInstall, errBoom)
		_, err := f.CreateSnapshot(t.Context(), snapReq)
		require.NoError(t, err)
		_, err = f.Install(t.Context(), installReq)
		require.ErrorIs(t, err, errBoom)
	})
	t.Run("an unknown op or a nil error is a bug in the test and panics", func(t *testing.T) {
		f := newFleet(t, simfleet.Config{})
		require.PanicsWithValue(t, `simfleet: FailNext: unknown op "Instal", want one of [DiscoverInstances CreateSnapshot GetSnapshot FindSnapshot DeleteSnapshot RestoreFromSnapshot GetRestore Install GetInstallation FindInstallation Reboot CheckHealth]`,
			func() { f.FailNext("Instal", errBoom) })
		require.Panics(t, func() { f.FailNext(simfleet.OpInstall, nil) })
	})
	t.Run("a cancelled context fails the call before anything happens", func(t *testing.T) {
		f := populated(t, simfleet.Config{}, 1)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := f.CreateSnapshot(ctx, snapReq)
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, simfleet.Stats{}, f.Stats())
	})
}

func TestConcurrentCallers(t *testing.T) {
	const instances, workers = 100, 8
	path := filepath.Join(t.TempDir(), "fleet.json")
	f := populated(t, simfleet.Config{InstallFailureRate: 0.2, StatePath: path}, instances)
	all := f.Instances("acme")

	type outcome struct{ snapshotID, installID string }
	results := make([]map[string]outcome, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			seen := map[string]outcome{}
			// Workers walk the fleet from different places, so they collide on every instance.
			for i := range all {
				in := all[(i+w*13)%len(all)]
				s, err := f.CreateSnapshot(t.Context(), provider.SnapshotRequest{Tenant: "acme", RunID: "run-1", InstanceID: in.ID})
				if err != nil {
					errs <- err
					return
				}
				inst, err := f.Install(t.Context(), provider.InstallRequest{Tenant: "acme", RunID: "run-1", InstanceID: in.ID, BaselineID: "b", PatchIDs: []string{"ALAS-1"}})
				if err != nil {
					errs <- err
					return
				}
				if _, err := f.DiscoverInstances(t.Context(), provider.DiscoverQuery{Tenant: "acme", TagKey: "PatchWave"}); err != nil {
					errs <- err
					return
				}
				seen[in.ID] = outcome{s.ID, inst.ID}
			}
			results[w] = seen
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, simfleet.Stats{SnapshotsCreated: instances, InstallsStarted: instances}, f.Stats())
	for w := 1; w < workers; w++ {
		require.Equal(t, results[0], results[w], "every caller saw the same snapshot and installation")
	}
	restarted := newFleet(t, simfleet.Config{InstallFailureRate: 0.2, StatePath: path})
	require.Equal(t, f.Stats(), restarted.Stats())
}
