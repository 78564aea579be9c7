package stagetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// completer is a trivial stage: it completes every started run.
type completer struct{}

const handlerComplete = "CompleteOnRunStarted"

func (completer) Name() string { return "scheduler" }

func (completer) Register(b *bus.Bus) error {
	return bus.Handle(b, handlerComplete, func(ctx context.Context, ev *events.Event, msg *eventsv1.RunStarted) error {
		out, err := events.New(ev.Tenant, ev.Key, &eventsv1.RunCompleted{Tenant: ev.Tenant, RunId: msg.GetRunId(), Wave: msg.GetWave()})
		if err != nil {
			return err
		}
		return b.Publish(ctx, out)
	})
}

func TestAStageRunsAndItsOutputIsReadBack(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stop := stagetest.RunComponent(t, nc, completer{})

	var in []*events.Event
	for _, run := range []string{"run-1", "run-2", "run-3"} {
		in = append(in, events.MustNew("acme", run, &eventsv1.RunStarted{Tenant: "acme", RunId: run, Wave: 1}))
	}
	require.NoError(t, stagetest.Publisher(t, nc, "scheduler").Publish(t.Context(), in...))

	completed := events.Pattern[*eventsv1.RunCompleted]()
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, completed) == len(in) },
		10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return stagetest.Drained(t, js, "scheduler", handlerComplete) },
		10*time.Second, 10*time.Millisecond)
	stop()
	stop() // a second stop does nothing

	got := stagetest.ReadEvents(t, js, completed)
	require.Len(t, got, len(in))
	runs := make([]string, 0, len(got))
	for _, ev := range got {
		m, ok := ev.Data.(*eventsv1.RunCompleted)
		require.True(t, ok, "payload %T", ev.Data)
		assert.Equal(t, "acme", ev.Tenant)
		assert.Equal(t, events.SourcePrefix+"scheduler", ev.Source, "the component publishes as itself")
		runs = append(runs, m.GetRunId())
	}
	assert.ElementsMatch(t, []string{"run-1", "run-2", "run-3"}, runs)
	assert.Equal(t, len(in), stagetest.CountEvents(t, js, events.StreamTenant, events.Pattern[*eventsv1.RunStarted]()))
	assert.Empty(t, stagetest.ReadEvents(t, js, events.Pattern[*eventsv1.SnapshotFailed]()))
}

// apiCompleter is completer with a gRPC API: it records the registrar it was given.
type apiCompleter struct {
	completer
	registered *bool
}

func (c apiCompleter) RegisterGRPC(s grpc.ServiceRegistrar) { *c.registered = s != nil }

func TestAGRPCComponentAnswersThroughTheReturnedConn(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	registered := false
	conn, stop := stagetest.RunGRPCComponent(t, nc, apiCompleter{registered: &registered})
	require.True(t, registered, "the component registered its API on the host's gRPC server")

	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())

	run := events.MustNew("acme", "run-1", &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1", Wave: 1})
	require.NoError(t, stagetest.Publisher(t, nc, "scheduler").Publish(t.Context(), run))
	require.Eventually(t, func() bool {
		return stagetest.CountEvents(t, js, events.StreamTenant, events.Pattern[*eventsv1.RunCompleted]()) == 1
	}, 10*time.Second, 10*time.Millisecond, "the component's handlers consume as well")

	stop()
	stop() // a second stop does nothing
	require.Equal(t, connectivity.Shutdown, conn.GetState(), "stop closes the connection")
}

func TestBusConfigRetriesQuickly(t *testing.T) {
	cfg := stagetest.BusConfig()

	assert.Positive(t, cfg.RetryBackoff)
	assert.LessOrEqual(t, cfg.MaxRetryBackoff, time.Second)
	assert.LessOrEqual(t, cfg.RetryBackoff, cfg.MaxRetryBackoff)
}
