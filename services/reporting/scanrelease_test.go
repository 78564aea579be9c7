package reporting_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting"
)

// fakeScanner stands in for the installer's scan stage: it takes every stored scan.requested,
// keeps its instances "running" for a while, then publishes their scan.completed, and records
// the most instances it had running at once and how often each instance was scanned.
type fakeScanner struct {
	mu      sync.Mutex
	running int
	max     int
	scanned map[string]int
	errs    []error
}

func (f *fakeScanner) run(ctx context.Context, js jetstream.JetStream, pub interface {
	Publish(context.Context, ...*events.Event) error
}, busy time.Duration) {
	cons, err := js.OrderedConsumer(ctx, events.StreamTenant, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"patch.acme.scan.requested"}})
	if err != nil {
		f.fail(err)
		return
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			continue
		}
		for msg := range batch.Messages() {
			ev, err := events.Unmarshal(msg.Subject(), msg.Data())
			if err != nil {
				f.fail(err)
				continue
			}
			sr := ev.Data.(*eventsv1.ScanRequested)
			f.mu.Lock()
			f.running += len(sr.GetInstanceIds())
			f.max = max(f.max, f.running)
			for _, id := range sr.GetInstanceIds() {
				f.scanned[id]++
			}
			f.mu.Unlock()
			go func() {
				select {
				case <-ctx.Done():
					return
				case <-time.After(busy):
				}
				var outs []*events.Event
				for _, id := range sr.GetInstanceIds() {
					out, err := events.New("acme", sr.GetScanId()+"/"+id, &eventsv1.ScanCompleted{Tenant: "acme", ScanId: sr.GetScanId(), InstanceId: id,
						OsFamily: sr.GetOsFamily(), BaselineId: sr.GetBaselineId(), ScannedAt: timestamppb.New(t0),
						Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_INSTALLED}}})
					if err != nil {
						f.fail(err)
						return
					}
					out.Time = t0
					outs = append(outs, out)
				}
				f.mu.Lock()
				f.running -= len(sr.GetInstanceIds())
				f.mu.Unlock()
				if err := pub.Publish(ctx, outs...); err != nil && ctx.Err() == nil {
					f.fail(err)
				}
			}()
		}
	}
}

func (f *fakeScanner) fail(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
}

// TestTwoReplicasReleaseScansWithinTheWaveLimitAcrossARestart runs two reporting replicas over
// one Redis. A scan of 30 instances of a wave whose max concurrency is 4 is released in chunks
// of 4, never more than 4 instances running at once, each chunk stored once though both
// replicas release, and every instance scanned once; one replica is restarted mid-scan.
func TestTwoReplicasReleaseScansWithinTheWaveLimitAcrossARestart(t *testing.T) {
	const instances, limit = 30, 4
	e := newEnv(t)
	designtest.PutTenant(t, e.js, "acme", &typesv1.TenantDesign{Waves: []*typesv1.Wave{{Number: 1, Name: "one",
		Policy: &typesv1.RolloutPolicy{MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Count{Count: limit}}}}}})
	var ids []string
	for i := 1; i <= instances; i++ {
		ids = append(ids, inst(i))
	}
	e.publish(t,
		keyed{"", "al-1", &eventsv1.BaselinePublished{BaselineId: "al-1", OsFamily: "al2023", Version: 1, PublishedAt: timestamppb.New(t0),
			Patches: []*typesv1.Patch{{Id: "p1", OsFamily: "al2023"}}}},
		keyed{"acme", "r1", &eventsv1.RunStarted{Tenant: "acme", RunId: "r1", Wave: 1, BaselineId: "al-1", StartedAt: timestamppb.New(t0),
			Groups: []*typesv1.InstanceGroup{{Location: &typesv1.Location{Account: "111111111111", Region: "eu-central-1"}, InstanceIds: ids}}}},
		// The run has ended: a scan leaves out instances whose job is still underway.
		keyed{"acme", "r1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "r1", Wave: 1, State: typesv1.RunState_RUN_STATE_COMPLETED,
			Total: instances, CompletedAt: timestamppb.New(t0)}},
	)
	client := testkit.StartRedis(t).Client(t)
	startReplica := func() *running {
		svc, err := reporting.New(reporting.Config{DailyScanAt: "off", ScanReleaseTick: 10 * time.Millisecond},
			reporting.Deps{Store: store.NewRedisFromClient(client, "patchwave:"), Clock: func() time.Time { return t0 }})
		require.NoError(t, err)
		conn, stop := stagetest.RunGRPCComponent(t, e.nc, svc)
		return &running{client: reportingv1.NewReportingServiceClient(conn), stop: stop}
	}
	one, two := startReplica(), startReplica()
	defer func() { two.stop() }()
	require.Eventually(t, func() bool {
		c, err := one.client.GetCompliance(t.Context(), &reportingv1.GetComplianceRequest{Tenant: "acme"})
		return err == nil && c.GetTotal().GetInScope() == instances
	}, 10*time.Second, 20*time.Millisecond)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := &fakeScanner{scanned: map[string]int{}}
	go f.run(ctx, e.js, stagetest.Publisher(t, e.nc, "installer"), 30*time.Millisecond)

	plan, err := one.client.RequestScan(t.Context(), &reportingv1.RequestScanRequest{Tenant: "acme", RequestId: "limits"})
	require.NoError(t, err)
	require.EqualValues(t, instances, plan.GetInstances())
	require.EqualValues(t, (instances+limit-1)/limit, plan.GetChunks(), "chunks of the wave's limit")
	completed := func() int { return stagetest.CountEvents(t, e.js, events.StreamTenant, "patch.acme.scan.completed") }
	require.Eventually(t, func() bool { return completed() >= 2*limit }, 20*time.Second, 5*time.Millisecond)
	two.stop() // restarted over the same read model
	two = startReplica()
	require.Eventually(t, func() bool { return completed() == instances }, 30*time.Second, 20*time.Millisecond, "every instance is scanned")

	f.mu.Lock()
	defer f.mu.Unlock()
	require.Empty(t, f.errs)
	require.Equal(t, limit, f.max, "instances scanning at once")
	require.Len(t, f.scanned, instances)
	for id, n := range f.scanned {
		require.Equal(t, 1, n, "%s scanned once", id)
	}
	require.Equal(t, int(plan.GetChunks()), stagetest.CountEvents(t, e.js, events.StreamTenant, "patch.acme.scan.requested"),
		"each chunk stored once, whichever replica released it")
}
