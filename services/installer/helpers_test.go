package installer_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/installer"
)

const (
	tenant     = "acme"
	baseline   = "al2023-v7"
	eventually = cloudtest.Eventually
	tick       = cloudtest.Tick
)

var patches = []string{"ALAS-2024-001", "ALAS-2024-007"}

// harness is a stagetest.Stage whose input comes from the snapshotter.
type harness struct{ *cloudtest.Stage }

func newHarness(t *testing.T, instances int, sim func(*cloudsim.Config)) *harness {
	t.Helper()
	return &harness{cloudtest.NewStage(t, "snapshotter", instances, sim)}
}

type replica struct {
	reg  *prometheus.Registry
	stop func()
}

// start hosts an installer replica with its own memory store and metrics.
func (h *harness) start(t *testing.T, cfg installer.Config) *replica {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.BatchLinger == 0 {
		cfg.BatchLinger = 10 * time.Millisecond
	}
	svc, err := installer.New(cfg, installer.Deps{Fleet: h.Cloud.Fleet, Store: store.NewMemory(), Clock: h.Clock.Now})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	return &replica{reg: reg, stop: stagetest.RunWithMetrics(t, h.NC, svc, reg)}
}

// snapshot takes the run's snapshot sets of ids at the provider, as the snapshotter does, and
// waits until they are completed.
func (h *harness) snapshot(t *testing.T, run string, ids []string) {
	t.Helper()
	reqs := make([]provider.SnapshotRequest, len(ids))
	sets := make([]string, len(ids))
	for i, id := range ids {
		reqs[i] = provider.SnapshotRequest{Tenant: tenant, RunID: run, InstanceID: id}
		sets[i] = provider.SnapshotSetID(tenant, run, id)
	}
	res, err := h.Cloud.Fleet.CreateSnapshots(t.Context(), h.Target(), reqs)
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	require.Eventually(t, func() bool {
		got, err := h.Cloud.Fleet.GetSnapshots(t.Context(), h.Target(), sets)
		if err != nil || len(got) != len(sets) {
			return false
		}
		for _, s := range got {
			if s.State != provider.SnapshotCompleted {
				return false
			}
		}
		return true
	}, eventually, tick)
}

// created publishes the SnapshotCreated of each instance, naming the run's set unless named
// says otherwise.
func (h *harness) created(t *testing.T, run string, ids []string, policy *typesv1.JobPolicy, named func(id string) string) {
	t.Helper()
	evs := make([]*events.Event, len(ids))
	for i, id := range ids {
		set := provider.SnapshotSetID(tenant, run, id)
		if named != nil {
			set = named(id)
		}
		evs[i] = events.MustNew(tenant, run+"/"+id, &eventsv1.SnapshotCreated{
			Tenant: tenant, RunId: run, Wave: 1, InstanceId: id, SnapshotId: set, BaselineId: baseline, PatchIds: patches,
			Location: h.Location(), Policy: policy,
		})
	}
	require.NoError(t, h.In.Publish(t.Context(), evs...))
}

// job snapshots ids for run and publishes their SnapshotCreated.
func (h *harness) job(t *testing.T, run string, ids []string, policy *typesv1.JobPolicy) {
	t.Helper()
	h.snapshot(t, run, ids)
	h.created(t, run, ids, policy, nil)
}

func (h *harness) drained(t *testing.T) bool {
	t.Helper()
	return stagetest.Drained(t, h.JS, installer.Name, installer.HandlerInstall) &&
		stagetest.Drained(t, h.JS, installer.Name, installer.TrackerInstallations)
}
