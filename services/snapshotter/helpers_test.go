package snapshotter_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/snapshotter"
)

const (
	tenant     = "acme"
	eventually = cloudtest.Eventually
	tick       = cloudtest.Tick
)

// harness is a stagetest.Stage whose input comes from the scheduler, and the snapshotter
// replicas started on it.
type harness struct {
	*cloudtest.Stage
	// sweeper is the last replica started, for retention sweeps.
	sweeper *snapshotter.Service
}

func newHarness(t *testing.T, instances int, sim func(*cloudsim.Config)) *harness {
	t.Helper()
	return &harness{Stage: cloudtest.NewStage(t, "scheduler", instances, sim)}
}

// replica is one running snapshotter.
type replica struct {
	reg  *prometheus.Registry
	stop func()
}

func (h *harness) newService(t *testing.T, cfg snapshotter.Config) *snapshotter.Service {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.BatchLinger == 0 {
		cfg.BatchLinger = 5 * time.Millisecond
	}
	svc, err := snapshotter.New(cfg, snapshotter.Deps{Fleet: h.Cloud.Fleet, Store: store.NewMemory(), Clock: h.Clock.Now})
	require.NoError(t, err)
	h.sweeper = svc
	return svc
}

// start hosts a snapshotter replica with its own memory store and metrics.
func (h *harness) start(t *testing.T, cfg snapshotter.Config) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	return &replica{reg: reg, stop: stagetest.RunWithMetrics(t, h.NC, h.newService(t, cfg), reg)}
}

// startGRPC hosts a snapshotter replica with its gRPC API and returns a RestoreService client.
func (h *harness) startGRPC(t *testing.T, cfg snapshotter.Config) snapshotterv1.RestoreServiceClient {
	t.Helper()
	conn, _ := stagetest.RunGRPCComponent(t, h.NC, h.newService(t, cfg))
	return snapshotterv1.NewRestoreServiceClient(conn)
}

// actor returns ctx whose calls act as who, an operator, as the gateway forwards an
// authenticated caller; "" is a call without an identity.
func actor(ctx context.Context, who string) context.Context {
	if who == "" {
		return metadata.AppendToOutgoingContext(ctx, auth.MetadataSubject, "")
	}
	return stagetest.As(ctx, auth.Identity{Subject: who, Roles: []auth.Role{auth.RoleOperator}})
}

// jobs publishes a JobRequested of run for each instance.
func (h *harness) jobs(t *testing.T, run string, ids []string, policy *typesv1.JobPolicy) {
	t.Helper()
	evs := make([]*events.Event, len(ids))
	for i, id := range ids {
		evs[i] = events.MustNew(tenant, run+"/"+id, &eventsv1.JobRequested{
			Tenant: tenant, RunId: run, Wave: 1, InstanceId: id, BaselineId: "al2023-v7",
			PatchIds: []string{"ALAS-2024-001", "ALAS-2024-007"}, Location: h.Location(), Policy: policy,
		})
	}
	require.NoError(t, h.In.Publish(t.Context(), evs...))
}

// drained reports whether the named consumers of the snapshotter have nothing left to do.
func (h *harness) drained(t *testing.T, names ...string) bool {
	t.Helper()
	for _, n := range names {
		if !stagetest.Drained(t, h.JS, snapshotter.Name, n) {
			return false
		}
	}
	return true
}
