package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// relayMsgs is how many events one relay run moves.
const relayMsgs = 20000

// benchStreams starts an embedded nats-server with the streams and returns a connection and
// its JetStream context (async publish window 4,000), for the benchmarks of this package.
func benchStreams(b *testing.B) (*nats.Conn, jetstream.JetStream) {
	b.Helper()
	srv := testkit.StartNATS(b)
	nc := srv.Connect(b)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	if err != nil {
		b.Fatal(err)
	}
	if err := bus.EnsureStreams(b.Context(), js, bus.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	return nc, js
}

// BenchmarkRelayStage measures a relay stage (consume an event, publish one, ack the input)
// through the bus and, in the same run on the same server, with raw nats.go JetStream calls:
// fetch a batch, publish the outputs asynchronously, wait for their acks, then ack the inputs.
// Both decode and encode CloudEvents the same way. It reports messages per second for each, the
// process's CPU per message for each (the embedded nats-server's included: what a delivery costs
// on both ends), and never asserts a time:
//
//	go test -run '^$' -bench RelayStage -benchtime 3x ./bus/
func BenchmarkRelayStage(b *testing.B) {
	nc, js := benchStreams(b)
	var busTime, rawTime, busCPU, rawCPU time.Duration
	b.ResetTimer()
	for i := range b.N {
		wall, cpu := relayThroughBus(b, nc, js, i)
		busTime, busCPU = busTime+wall, busCPU+cpu
		wall, cpu = relayRaw(b, nc, js, i)
		rawTime, rawCPU = rawTime+wall, rawCPU+cpu
	}
	b.StopTimer()
	total := float64(relayMsgs * b.N)
	b.ReportMetric(total/busTime.Seconds(), "bus-msgs/s")
	b.ReportMetric(total/rawTime.Seconds(), "raw-msgs/s")
	b.ReportMetric(busTime.Seconds()/rawTime.Seconds(), "bus/raw-time")
	b.ReportMetric(float64(busCPU.Microseconds())/total, "bus-cpu-µs/msg")
	b.ReportMetric(float64(rawCPU.Microseconds())/total, "raw-cpu-µs/msg")
}

// seedJobs stores relayMsgs JobRequested events of tenant, untimed.
func seedJobs(b *testing.B, js jetstream.JetStream, tenant string) { seedN(b, js, tenant, relayMsgs) }

// seedN stores n JobRequested events of tenant, untimed.
func seedN(b *testing.B, js jetstream.JetStream, tenant string, n int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	for i := range n {
		ev := events.MustNew(tenant, fmt.Sprintf("run-1/i-%d", i), &eventsv1.JobRequested{Tenant: tenant, RunId: "run-1",
			InstanceId: fmt.Sprintf("i-%d", i), PatchIds: []string{"KB5034441", "KB5034439"}})
		ev.Time = time.Now()
		data, err := events.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(ev.Subject)
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, ev.ID)
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("seeding did not complete")
	}
}

func output(ev *events.Event) (*events.Event, error) {
	job := ev.Data.(*eventsv1.JobRequested)
	return events.New(ev.Tenant, ev.Key, &eventsv1.SnapshotCreated{Tenant: ev.Tenant, RunId: job.GetRunId(),
		InstanceId: job.GetInstanceId(), SnapshotId: "snap-" + job.GetInstanceId(), PatchIds: job.GetPatchIds()})
}

// relayThroughBus relays relayMsgs events through a bus handler and returns the wall and CPU
// time from the start of Run until the last was handled.
func relayThroughBus(b *testing.B, nc *nats.Conn, js jetstream.JetStream, iter int) (time.Duration, time.Duration) {
	tenant := fmt.Sprintf("bus-%d", iter)
	seedJobs(b, js, tenant)

	bs, err := bus.New(b.Context(), bus.Config{Service: "snapshotter", Conn: nc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		FetchBatch: 512, SkipStreamSetup: true})
	if err != nil {
		b.Fatal(err)
	}
	var relayed atomic.Int64
	done := make(chan struct{})
	err = bs.Handle(bus.HandlerSpec{
		Name: fmt.Sprintf("RelayOnJobRequested%d", iter), Subjects: []string{events.DefFor[*eventsv1.JobRequested]().PatternFor(tenant)},
		Concurrency: 64, FetchBatch: 512, // a fast handler: pull well ahead
		Handle: func(ctx context.Context, ev *events.Event) error {
			out, err := output(ev)
			if err != nil {
				return err
			}
			if err := bs.Publish(ctx, out); err != nil {
				return err
			}
			if relayed.Add(1) == relayMsgs {
				close(done)
			}
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	begin, cpu := time.Now(), cpuTime()
	go func() { stopped <- bs.Run(ctx) }()
	select {
	case <-done:
	case err := <-stopped:
		b.Fatalf("bus stopped: %v", err)
	case <-time.After(5 * time.Minute):
		b.Fatalf("bus relayed %d of %d", relayed.Load(), relayMsgs)
	}
	elapsed, cpu := time.Since(begin), cpuTime()-cpu
	b.StopTimer()
	cancel()
	if err := <-stopped; err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return elapsed, cpu
}

// relayRaw relays relayMsgs events with raw nats.go calls and returns the wall and CPU time.
func relayRaw(b *testing.B, nc *nats.Conn, js jetstream.JetStream, iter int) (time.Duration, time.Duration) {
	tenant := fmt.Sprintf("raw-%d", iter)
	seedJobs(b, js, tenant)
	ctx := b.Context()

	begin, cpu := time.Now(), cpuTime()
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{
		Durable: fmt.Sprintf("raw_relay_%d", iter), FilterSubject: events.DefFor[*eventsv1.JobRequested]().PatternFor(tenant),
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 2000,
	})
	if err != nil {
		b.Fatal(err)
	}
	relayed := 0
	for relayed < relayMsgs {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		var inputs []jetstream.Msg
		var futures []jetstream.PubAckFuture
		for msg := range batch.Messages() {
			ev, err := events.Unmarshal(msg.Subject(), msg.Data())
			if err != nil {
				b.Fatal(err)
			}
			out, err := output(ev)
			if err != nil {
				b.Fatal(err)
			}
			out.Time, out.CorrelationID = time.Now(), ev.CorrelationID
			data, err := events.Marshal(out)
			if err != nil {
				b.Fatal(err)
			}
			m := nats.NewMsg(out.Subject)
			m.Data = data
			m.Header.Set(nats.MsgIdHdr, out.ID)
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
			inputs = append(inputs, msg)
		}
		if err := batch.Error(); err != nil {
			b.Fatal(err)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			case <-time.After(10 * time.Second):
				b.Fatal("no publish ack")
			}
		}
		for _, m := range inputs {
			if err := m.Ack(); err != nil {
				b.Fatal(err)
			}
		}
		relayed += len(inputs)
	}
	return time.Since(begin), cpuTime() - cpu
}
