package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

func TestConfigValidate(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		cfg   bus.Config
		field string
	}{
		{"a service name is required", bus.Config{Conn: e.nc}, "Service"},
		{"a service name is a subject token", bus.Config{Service: "snap.shotter", Conn: e.nc}, "Service"},
		{"a connection is required", bus.Config{Service: "svc"}, "Conn"},
		{"a negative publish timeout is refused", bus.Config{Service: "svc", Conn: e.nc, PublishTimeout: -1}, "PublishTimeout"},
		{"a negative max deliver is refused", bus.Config{Service: "svc", Conn: e.nc, MaxDeliver: -2}, "MaxDeliver"},
		{"bad stream options are refused", bus.Config{Service: "svc", Conn: e.nc, Streams: bus.StreamOptions{Replicas: 9}}, "Streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bus.New(t.Context(), tt.cfg)
			require.ErrorContains(t, err, tt.field)
		})
	}
}

func TestRegistrationErrors(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	noop := func(context.Context, *events.Event) error { return nil }
	tests := []struct {
		name string
		spec bus.HandlerSpec
		msg  string
	}{
		{"a handler needs a valid name", bus.HandlerSpec{Name: "bad name", Subjects: []string{"patch.>"}, Handle: noop}, "must match"},
		{"a handler needs subjects", bus.HandlerSpec{Name: "H", Handle: noop}, "required"},
		{"a handler needs a function", bus.HandlerSpec{Name: "H", Subjects: []string{"patch.>"}}, "required"},
		{"a handler reads one stream", bus.HandlerSpec{Name: "H", Subjects: []string{"patch.>", "catalog.>"}, Handle: noop}, "span streams"},
		{"a handler reads known subjects", bus.HandlerSpec{Name: "H", Subjects: []string{"orders.>"}, Handle: noop}, "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorContains(t, b.Handle(tt.spec), tt.msg)
		})
	}
	require.NoError(t, b.Handle(bus.HandlerSpec{Name: "H", Subjects: []string{"patch.>"}, Handle: noop}))
	require.ErrorContains(t, b.Handle(bus.HandlerSpec{Name: "H", Subjects: []string{"patch.>"}, Handle: noop}), "twice")
	require.ErrorContains(t, b.Project(bus.ProjectionSpec{Name: "P", Subjects: []string{"patch.>"}}), "required")

	start(t, b)
	require.ErrorContains(t, b.Handle(bus.HandlerSpec{Name: "Late", Subjects: []string{"patch.>"}, Handle: noop}), "after Run")
	require.ErrorContains(t, b.Project(bus.ProjectionSpec{Name: "Late", Subjects: []string{"patch.>"},
		Apply: func(context.Context, *events.Event, bool) error { return nil }}), "after Run")
	require.ErrorContains(t, b.Run(t.Context()), "twice")
}

func TestPublishRefusesInvalidEvents(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t, "scheduler")
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b := newBus(t, cfg)
	ctx := t.Context()

	err := b.Publish(ctx, nil)
	require.ErrorContains(t, err, "nil event")
	require.True(t, bus.IsPermanent(err))

	handMade := &events.Event{ID: "x/1", Type: "patchwave.events.v1.RunStarted", Subject: "patch.acme.run.completed", Tenant: "acme",
		Key: "1", Data: &eventsv1.RunStarted{}}
	err = b.Publish(ctx, handMade)
	require.ErrorContains(t, err, "do not match")
	require.True(t, bus.IsPermanent(err), "no retry fixes an invalid event")
	require.Zero(t, e.count(t, events.StreamTenant, "patch.>"))

	notOurs := events.MustNew("acme", "run-1/i-1", &eventsv1.InstallSucceeded{Tenant: "acme", RunId: "run-1", InstanceId: "i-1"})
	err = b.Publish(ctx, notOurs)
	require.ErrorContains(t, err, `service "scheduler" does not publish patchwave.events.v1.InstallSucceeded, its producer is "installer"`)
	require.True(t, bus.IsPermanent(err))
	forged := runStarted(t, "acme", "run-1")
	forged.Source = "/patchwave/installer"
	err = b.Publish(ctx, forged)
	require.ErrorContains(t, err, `source "/patchwave/installer" is not the producer of patchwave.events.v1.RunStarted`)
	require.True(t, bus.IsPermanent(err))
	require.Zero(t, e.count(t, events.StreamTenant, "patch.>"))

	huge := runStarted(t, "acme", "huge")
	for i := range 80000 {
		huge.Data.(*eventsv1.RunStarted).InstanceIds = append(huge.Data.(*eventsv1.RunStarted).InstanceIds, fmt.Sprintf("i-%015d", i))
	}
	err = b.Publish(ctx, huge)
	require.ErrorIs(t, err, nats.ErrMaxPayload)
	require.True(t, bus.IsPermanent(err), "an event over the size limit is never stored")
	require.Zero(t, counterValue(t, reg, "patchwave_bus_publish_retries_total"), "and is not retried")
}

func TestHandlerContextContinuesThePublishersTrace(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	got := make(chan string, 1)
	require.NoError(t, bus.Handle(b, "H", func(ctx context.Context, _ *events.Event, _ *eventsv1.RunStarted) error {
		got <- bus.TraceParent(ctx)
		return nil
	}))
	start(t, b)
	root := bus.NewTraceParent()
	require.NoError(t, b.Publish(bus.WithTraceParent(t.Context(), root), runStarted(t, "acme", "run-1")))
	select {
	case tp := <-got:
		require.Equal(t, root[:36], tp[:36], "same trace id")
		require.NotEqual(t, root, tp, "a span of its own")
	case <-time.After(eventually):
		t.Fatal("handler not called")
	}
	stored := e.msgs(t, events.StreamTenant, "patch.>")[0]
	require.Equal(t, root, stored.Header.Get(events.HeaderTraceParent))
}

// (1) publish, consume, ack, with the correlation id carried through.
func TestHandlerReceivesDecodedEventWithCorrelationAndItsPublishesCarryIt(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	cfg := e.config(t, "scheduler")
	cfg.Registerer = reg
	b := newBus(t, cfg)

	type seen struct {
		ev   *events.Event
		msg  *eventsv1.RunStarted
		corr string
	}
	got := make(chan seen, 1)
	require.NoError(t, bus.Handle(b, "CompleteOnRunStarted", func(ctx context.Context, ev *events.Event, msg *eventsv1.RunStarted) error {
		out, err := events.New(ev.Tenant, ev.Key, &eventsv1.RunCompleted{Tenant: ev.Tenant, RunId: msg.GetRunId(), Wave: msg.GetWave()})
		if err != nil {
			return err
		}
		if err := b.Publish(ctx, out); err != nil {
			return err
		}
		got <- seen{ev, msg, bus.CorrelationID(ctx)}
		return nil
	}))
	require.ErrorContains(t, b.Ready(t.Context()), "not consuming")
	start(t, b)
	require.NoError(t, b.Ready(t.Context()))

	in := &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1", Wave: 2, BaselineId: "b-1", InstanceIds: []string{"i-1", "i-2"}}
	ctx := bus.WithCorrelationID(t.Context(), "corr-123")
	require.NoError(t, b.Publish(ctx, events.MustNew("acme", "run-1", in)))

	var s seen
	select {
	case s = <-got:
	case <-time.After(eventually):
		t.Fatal("handler not called")
	}
	require.True(t, proto.Equal(in, s.msg), "decoded payload")
	require.Equal(t, "corr-123", s.corr, "correlation id in the handler's context")
	require.Equal(t, "corr-123", s.ev.CorrelationID)
	require.Equal(t, "patch.acme.run.started/run-1", s.ev.ID)
	require.Equal(t, "/patchwave/scheduler", s.ev.Source)
	require.Equal(t, "acme", s.ev.Tenant)
	require.Equal(t, uint64(1), s.ev.Sequence)
	require.Equal(t, uint64(1), s.ev.Delivered)
	require.False(t, s.ev.Time.IsZero())

	require.Eventually(t, func() bool { return e.count(t, events.StreamTenant, "patch.acme.run.completed") == 1 }, eventually, tick)
	out := e.msgs(t, events.StreamTenant, "patch.acme.run.completed")[0]
	require.Equal(t, "corr-123", out.Header.Get(events.HeaderCorrelationID), "header of the handler's event")
	require.Equal(t, "patch.acme.run.completed/run-1", out.Header.Get(nats.MsgIdHdr))
	outEv, err := events.Unmarshal(out.Subject, out.Data)
	require.NoError(t, err)
	require.Equal(t, "corr-123", outEv.CorrelationID, "envelope of the handler's event")

	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_CompleteOnRunStarted") }, eventually, tick,
		"the input is acknowledged")
	require.Zero(t, e.count(t, events.StreamDLQ, "dlq.>"))

	families, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	require.True(t, names["patchwave_bus_published_total"])
	require.True(t, names["patchwave_bus_handled_total"])
}

func TestHandlerWithoutCorrelationGetsANewOne(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	got := make(chan string, 1)
	require.NoError(t, bus.Handle(b, "H", func(ctx context.Context, _ *events.Event, _ *eventsv1.RunStarted) error {
		got <- bus.CorrelationID(ctx)
		return nil
	}))
	start(t, b)
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "run-1")))
	select {
	case corr := <-got:
		require.Len(t, corr, 24)
	case <-time.After(eventually):
		t.Fatal("handler not called")
	}
}

// (2) redelivery after a failed handler.
func TestFailedHandlerIsRetriedUntilItSucceeds(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	rec := newRecorder()
	done := make(chan *events.Event, 1)
	require.NoError(t, bus.Handle(b, "FlakyOnRunStarted", func(_ context.Context, ev *events.Event, _ *eventsv1.RunStarted) error {
		if rec.add(ev) < 3 {
			return errBoom
		}
		done <- ev
		return nil
	}))
	start(t, b)
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "run-1")))

	select {
	case ev := <-done:
		require.Equal(t, uint64(3), ev.Delivered)
	case <-time.After(eventually):
		t.Fatal("handler never succeeded")
	}
	delivered := []uint64{}
	for _, ev := range rec.events() {
		delivered = append(delivered, ev.Delivered)
	}
	require.Equal(t, []uint64{1, 2, 3}, delivered)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_FlakyOnRunStarted") }, eventually, tick)
	require.Zero(t, e.count(t, events.StreamDLQ, "dlq.>"), "nothing dead-lettered")
}

// (3) dead-letter after retries, and at once for a Permanent error.
func TestFailingHandlerDeadLettersAndMovesOn(t *testing.T) {
	tests := []struct {
		name      string
		fail      error
		wantCalls int
		reason    string
	}{
		{"an error dead-letters after MaxDeliver deliveries", errBoom, 3, "boom"},
		{"a Permanent error dead-letters at the first delivery", bus.Permanent(fmt.Errorf("tenant unknown: %w", errBoom)), 1, "tenant unknown: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			b := newBus(t, e.config(t, "scheduler"))
			rec := newRecorder()
			require.NoError(t, bus.Handle(b, "PickyOnRunStarted", func(_ context.Context, ev *events.Event, _ *eventsv1.RunStarted) error {
				rec.add(ev)
				if ev.Key == "bad" {
					return tt.fail
				}
				return nil
			}))
			start(t, b)
			ctx := bus.WithCorrelationID(t.Context(), "corr-dlq")
			bad := runStarted(t, "acme", "bad")
			require.NoError(t, b.Publish(ctx, bad))

			require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.scheduler.PickyOnRunStarted") == 1 }, eventually, tick)
			dl := e.msgs(t, events.StreamDLQ, "dlq.scheduler.PickyOnRunStarted")[0]
			require.Contains(t, dl.Header.Get(events.HeaderDLQReason), tt.reason)
			require.Equal(t, "patch.acme.run.started", dl.Header.Get(events.HeaderDLQSubject))
			require.Equal(t, "1", dl.Header.Get(events.HeaderDLQSequence))
			require.Equal(t, "scheduler_PickyOnRunStarted", dl.Header.Get(events.HeaderDLQHandler))
			require.Equal(t, "corr-dlq", dl.Header.Get(events.HeaderCorrelationID), "original headers are kept")
			orig := e.msgs(t, events.StreamTenant, "patch.acme.run.started")[0]
			require.Equal(t, orig.Data, dl.Data, "the original payload")
			require.Equal(t, tt.wantCalls, rec.callsOf("bad"))

			// The consumer moves on.
			require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "good")))
			require.Eventually(t, func() bool { return rec.callsOf("good") == 1 }, eventually, tick)
			require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_PickyOnRunStarted") }, eventually, tick)
			require.Equal(t, tt.wantCalls, rec.callsOf("bad"), "a dead letter is not redelivered")
			require.Equal(t, uint64(1), e.count(t, events.StreamDLQ, "dlq.>"))
		})
	}
}

// (4) the same event published twice is stored once.
func TestDuplicatePublishIsStoredOnce(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	ctx := t.Context()
	require.NoError(t, b.Publish(ctx, runStarted(t, "acme", "run-1")))
	require.NoError(t, b.Publish(ctx, runStarted(t, "acme", "run-1")), "a retry of the same event")
	again := events.MustNew("acme", "run-1", &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1", Wave: 9})
	require.NoError(t, b.Publish(ctx, again, runStarted(t, "acme", "run-1")), "same id, other payload, same call")
	require.NoError(t, b.Publish(ctx, runStarted(t, "acme", "run-2")))

	msgs := e.msgs(t, events.StreamTenant, "patch.acme.run.started")
	require.Len(t, msgs, 2, "run-1 once, run-2 once")
	first, err := events.Unmarshal(msgs[0].Subject, msgs[0].Data)
	require.NoError(t, err)
	require.Equal(t, int32(1), first.Data.(*eventsv1.RunStarted).GetWave(), "the first copy wins")
}

// (5) messages that are not valid events are dead-lettered, and the consumer goes on.
func TestMalformedMessagesAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	rec := newRecorder()
	require.NoError(t, bus.Handle(b, "ReadOnRunStarted", func(_ context.Context, ev *events.Event, _ *eventsv1.RunStarted) error {
		rec.add(ev)
		return nil
	}))
	start(t, b)
	ctx := t.Context()
	const subject = "patch.acme.run.started"

	valid, err := events.Marshal(&events.Event{ID: subject + "/run-x", Source: "/patchwave/scheduler", Type: "patchwave.events.v1.RunStarted",
		Key: "run-x", Tenant: "acme", Data: &eventsv1.RunStarted{RunId: "run-x"}})
	require.NoError(t, err)
	unknown := strings.Replace(string(valid), "patchwave.events.v1.RunStarted", "patchwave.events.v1.Nope", 1)
	wrongTenant := strings.Replace(string(valid), `"tenant":"acme"`, `"tenant":"globex"`, 1)
	forged := strings.Replace(string(valid), `"/patchwave/scheduler"`, `"/patchwave/notifier"`, 1)
	dupHeader := nats.NewMsg(subject)
	dupHeader.Data = valid
	dupHeader.Header["X-Dup"] = []string{"a", "b"}

	bad := []struct {
		name   string
		msg    *nats.Msg
		reason string
	}{
		{"bad JSON", &nats.Msg{Subject: subject, Data: []byte("{not json")}, "not CloudEvents JSON"},
		{"an unknown type", &nats.Msg{Subject: subject, Data: []byte(unknown)}, "unknown type"},
		{"a tenant that does not match the subject", &nats.Msg{Subject: subject, Data: []byte(wrongTenant)}, "belongs on"},
		{"a repeated header", dupHeader, "repeated header(s) X-Dup"},
		{"a source that is not the type's producer", &nats.Msg{Subject: subject, Data: []byte(forged)},
			`source "/patchwave/notifier" is not the producer of patchwave.events.v1.RunStarted`},
		{"an empty body", &nats.Msg{Subject: subject}, "not CloudEvents JSON"},
	}
	for _, m := range bad {
		_, err := e.js.PublishMsg(ctx, m.msg)
		require.NoError(t, err, m.name)
	}
	require.NoError(t, b.Publish(ctx, runStarted(t, "acme", "good")))

	require.Eventually(t, func() bool { return rec.callsOf("good") == 1 }, eventually, tick, "the consumer goes on")
	require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.scheduler.ReadOnRunStarted") == uint64(len(bad)) }, eventually, tick)
	// Handlers run concurrently, so dead letters are matched by the sequence they name.
	bySeq := map[string]*jetstream.RawStreamMsg{}
	for _, dl := range e.msgs(t, events.StreamDLQ, "dlq.scheduler.ReadOnRunStarted") {
		bySeq[dl.Header.Get(events.HeaderDLQSequence)] = dl
	}
	for i, m := range bad {
		t.Run(m.name+" is dead-lettered with its reason", func(t *testing.T) {
			dl := bySeq[strconv.Itoa(i+1)]
			require.NotNil(t, dl)
			require.Contains(t, dl.Header.Get(events.HeaderDLQReason), m.reason)
			require.Contains(t, dl.Header.Get(events.HeaderDLQReason), events.ErrMalformed.Error())
			require.Equal(t, m.msg.Data, nilIfEmpty(dl.Data))
		})
	}
	require.Equal(t, 1, rec.len(), "the handler saw only the valid event")
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_ReadOnRunStarted") }, eventually, tick)
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func TestTypedHandlerDeadLettersOtherPayloads(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	calls := atomic.Int32{}
	require.NoError(t, bus.Handle(b, "OnlyRunStarted", func(context.Context, *events.Event, *eventsv1.RunStarted) error {
		calls.Add(1)
		return nil
	}, "patch.acme.>"))
	start(t, b)
	require.NoError(t, b.Publish(t.Context(), events.MustNew("acme", "run-1", &eventsv1.RunCompleted{RunId: "run-1"})))
	require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.scheduler.OnlyRunStarted") == 1 }, eventually, tick)
	dl := e.msgs(t, events.StreamDLQ, "dlq.>")[0]
	require.Contains(t, dl.Header.Get(events.HeaderDLQReason), "want *eventsv1.RunStarted")
	require.Zero(t, calls.Load())
}

// (6) a panic is a failure: retried, then dead-lettered, and the consumer keeps going.
func TestPanickingHandlerIsDeadLetteredAndConsumerKeepsGoing(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	rec := newRecorder()
	require.NoError(t, bus.Handle(b, "PanicOnRunStarted", func(_ context.Context, ev *events.Event, _ *eventsv1.RunStarted) error {
		rec.add(ev)
		if ev.Key == "bad" {
			panic("handler bug")
		}
		return nil
	}))
	start(t, b)
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "bad")))
	require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.scheduler.PanicOnRunStarted") == 1 }, eventually, tick)
	dl := e.msgs(t, events.StreamDLQ, "dlq.>")[0]
	reason := dl.Header.Get(events.HeaderDLQReason)
	require.Contains(t, reason, "handler panic: handler bug")
	require.NotContains(t, reason, "\n", "the stack is on one header line")
	require.Equal(t, 3, rec.callsOf("bad"))

	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "good")))
	require.Eventually(t, func() bool { return rec.callsOf("good") == 1 }, eventually, tick)
}

// (7) publishing is bounded in time when the server is down, and works again once it is back.
func TestPublishFailsInBoundedTimeWhileTheServerIsDown(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t, "scheduler")
	cfg.PublishTimeout = 300 * time.Millisecond
	cfg.PublishAttempts = 3
	cfg.RetryBackoff = 50 * time.Millisecond
	b := newBus(t, cfg)
	ev := runStarted(t, "acme", "run-1")

	e.srv.Server.Shutdown()
	e.srv.Server.WaitForShutdown()
	begin := time.Now()
	err := b.Publish(t.Context(), ev)
	elapsed := time.Since(begin)
	require.Error(t, err)
	require.False(t, bus.IsPermanent(err))
	require.Contains(t, err.Error(), "after 3 attempts")
	// Three attempts of 300ms, backoffs of 10ms and 20ms, and slack for a loaded machine.
	require.Less(t, elapsed, 3*cfg.PublishTimeout+3*time.Second, "publish took %s", elapsed)
	t.Logf("publish failed after %s: %v", elapsed, err)

	e.srv.Restart(t)
	require.Eventually(t, e.nc.IsConnected, eventually, tick)
	require.Eventually(t, func() bool { return b.Publish(t.Context(), ev) == nil }, eventually, 100*time.Millisecond,
		"the publish retried succeeds")
	require.Equal(t, uint64(1), e.count(t, events.StreamTenant, "patch.>"), "stored once, whatever reached the server while down")
}

func TestPublishInFlightAcrossAServerRestartStoresEveryEventOnce(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t, "scheduler")
	cfg.PublishTimeout = 2 * time.Second
	cfg.PublishAttempts = 10
	cfg.RetryBackoff = 100 * time.Millisecond
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b := newBus(t, cfg)

	const n = 20000
	evs := make([]*events.Event, n)
	for i := range evs {
		evs[i] = jobRequested(t, "acme", "run-1", fmt.Sprintf("i-%d", i))
	}
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), evs...) }()
	// Restart once the first events are stored, while the call is still in flight.
	require.Eventually(t, func() bool { return e.count(t, events.StreamTenant, "patch.>") >= 100 }, eventually, time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("publish finished before the restart (%v): make it bigger", err)
	default:
	}
	e.srv.Restart(t)

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("publish hangs")
	}
	require.Equal(t, uint64(n), e.count(t, events.StreamTenant, "patch.>"), "every event once")
	retries := counterValue(t, reg, "patchwave_bus_publish_retries_total")
	t.Logf("events sent again: %v", retries)
}

// counterValue sums the samples of the counter or gauge called name.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// (8) two replicas of a service share the durable consumer.
func TestReplicasShareTheDurableConsumer(t *testing.T) {
	e := newEnv(t)
	const n = 300
	var mu sync.Mutex
	handled := map[string]int{}
	byReplica := [2]atomic.Int32{}
	for r := range 2 {
		cfg := e.config(t, "scheduler")
		cfg.Conn = e.srv.Connect(t)
		cfg.FetchBatch = 16
		b := newBus(t, cfg)
		require.NoError(t, b.Handle(bus.HandlerSpec{
			Name: "CountOnJobRequested", Subjects: []string{events.Pattern[*eventsv1.JobRequested]()}, Concurrency: 4,
			Handle: func(_ context.Context, ev *events.Event) error {
				mu.Lock()
				handled[ev.Key]++
				mu.Unlock()
				byReplica[r].Add(1)
				return nil
			},
		}))
		start(t, b)
	}
	pub := newBus(t, e.config(t, "scheduler"))
	evs := make([]*events.Event, n)
	for i := range evs {
		evs[i] = jobRequested(t, "acme", "run-1", fmt.Sprintf("i-%d", i))
	}
	require.NoError(t, pub.Publish(t.Context(), evs...))

	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_CountOnJobRequested") }, eventually, tick)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, handled, n)
	for k, c := range handled {
		require.Equal(t, 1, c, "event %s handled once in total", k)
	}
	require.Equal(t, int32(n), byReplica[0].Load()+byReplica[1].Load())
	t.Logf("replica 0 handled %d, replica 1 handled %d", byReplica[0].Load(), byReplica[1].Load())
}

// (10) Run returns nil on cancel, promptly, also with a handler in flight.
func TestRunReturnsNilPromptlyOnCancel(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	inHandler := make(chan struct{})
	var once sync.Once
	require.NoError(t, bus.Handle(b, "BlockOnRunStarted", func(ctx context.Context, _ *events.Event, _ *eventsv1.RunStarted) error {
		once.Do(func() { close(inHandler) })
		<-ctx.Done()
		return ctx.Err()
	}))
	require.NoError(t, b.Project(bus.ProjectionSpec{Name: "P", Subjects: []string{"patch.>"},
		Apply: func(context.Context, *events.Event, bool) error { return nil }}))
	r := start(t, b)
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "run-1")))
	select {
	case <-inHandler:
	case <-time.After(eventually):
		t.Fatal("handler not called")
	}
	begin := time.Now()
	require.NoError(t, r.stop(t))
	require.Less(t, time.Since(begin), 5*time.Second)
	require.Zero(t, e.count(t, events.StreamDLQ, "dlq.>"), "a handler stopped by shutdown is not dead-lettered")
}

func TestRunWithoutHandlersOrProjectionsRunsUntilCancel(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	r := start(t, b)
	require.NoError(t, b.Ready(t.Context()))
	require.NoError(t, r.stop(t))
}

// Stopping with messages pulled but not handled loses none of them: they are redelivered to
// the next consumer.
func TestStopWithBufferedMessagesLosesNone(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t, "scheduler")
	cfg.AckWait = time.Second
	cfg.FetchBatch = 64
	const n = 200
	evs := make([]*events.Event, n)
	for i := range evs {
		evs[i] = jobRequested(t, "acme", "run-1", fmt.Sprintf("i-%d", i))
	}
	pub := newBus(t, cfg)
	require.NoError(t, pub.Publish(t.Context(), evs...))

	first := newBus(t, cfg)
	started := make(chan struct{}, n)
	require.NoError(t, first.Handle(bus.HandlerSpec{Name: "SlowOnJobRequested", Subjects: []string{"patch.*.job.requested"}, Concurrency: 2,
		Handle: func(ctx context.Context, _ *events.Event) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}}))
	r := start(t, first)
	<-started
	require.NoError(t, r.stop(t))

	var mu sync.Mutex
	handled := map[string]bool{}
	second := newBus(t, cfg)
	require.NoError(t, second.Handle(bus.HandlerSpec{Name: "SlowOnJobRequested", Subjects: []string{"patch.*.job.requested"},
		Handle: func(_ context.Context, ev *events.Event) error {
			mu.Lock()
			handled[ev.Key] = true
			mu.Unlock()
			return nil
		}}))
	start(t, second)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == n
	}, eventually, tick)
	require.Zero(t, e.count(t, events.StreamDLQ, "dlq.>"))
}

// A handler that runs longer than AckWait is kept in progress, not redelivered meanwhile.
func TestLongHandlerIsNotRedeliveredWhileRunning(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t, "scheduler")
	cfg.AckWait = 400 * time.Millisecond
	b := newBus(t, cfg)
	var calls atomic.Int32
	release := make(chan struct{})
	require.NoError(t, bus.Handle(b, "LongOnRunStarted", func(ctx context.Context, _ *events.Event, _ *eventsv1.RunStarted) error {
		calls.Add(1)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	start(t, b)
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "run-1")))
	require.Eventually(t, func() bool { return calls.Load() == 1 }, eventually, tick)
	require.Never(t, func() bool { return calls.Load() > 1 }, 5*cfg.AckWait, 20*time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_LongOnRunStarted") }, eventually, tick)
	require.Equal(t, int32(1), calls.Load())
}

// Slow and fast messages of one handler in the router at once: the fast ones are acked as their
// handler returns, while the subscription's one progress loop keeps every slow one in progress
// past several AckWaits, so none is redelivered; each slow one is acked once released.
func TestSlowMessagesStayInProgressWhileFastOnesAreAcked(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t, "scheduler")
	cfg.AckWait = 400 * time.Millisecond
	b := newBus(t, cfg)
	const slow, fast = 3, 20
	var mu sync.Mutex
	calls := map[string]int{}
	release := make(chan struct{})
	require.NoError(t, b.Handle(bus.HandlerSpec{Name: "MixedOnJobRequested", Subjects: []string{"patch.*.job.requested"}, Concurrency: slow + 2,
		Handle: func(ctx context.Context, ev *events.Event) error {
			mu.Lock()
			calls[ev.Key]++
			mu.Unlock()
			if !strings.HasPrefix(ev.Data.(*eventsv1.JobRequested).GetInstanceId(), "slow-") {
				return nil
			}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}))
	start(t, b)
	var evs []*events.Event
	for i := range slow {
		evs = append(evs, jobRequested(t, "acme", "run-1", fmt.Sprintf("slow-%d", i)))
	}
	for i := range fast {
		evs = append(evs, jobRequested(t, "acme", "run-1", fmt.Sprintf("fast-%d", i)))
	}
	require.NoError(t, b.Publish(t.Context(), evs...))

	// Every fast message is acked while the slow ones hold their slots.
	require.Eventually(t, func() bool {
		info := consumerInfo(t, e, "scheduler_MixedOnJobRequested")
		return info.NumPending == 0 && info.NumAckPending == slow
	}, eventually, tick)
	require.Never(t, func() bool { return consumerInfo(t, e, "scheduler_MixedOnJobRequested").NumRedelivered > 0 }, 5*cfg.AckWait, 50*time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return e.consumerIdle(t, events.StreamTenant, "scheduler_MixedOnJobRequested") }, eventually, tick)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, calls, slow+fast)
	for key, n := range calls {
		require.Equal(t, 1, n, key)
	}
	require.Zero(t, consumerInfo(t, e, "scheduler_MixedOnJobRequested").NumRedelivered)
}

func TestDeadLetterKeepsHeadersButNotNatsOnes(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	require.NoError(t, bus.Handle(b, "RefuseOnRunStarted", func(context.Context, *events.Event, *eventsv1.RunStarted) error {
		return bus.Permanent(errBoom)
	}))
	start(t, b)
	ev := runStarted(t, "acme", "run-1")
	ev.Source = "/patchwave/scheduler"
	ev.Time = time.Now()
	body, err := events.Marshal(ev)
	require.NoError(t, err)
	m := nats.NewMsg(ev.Subject)
	m.Data = body
	m.Header.Set(nats.MsgIdHdr, ev.ID)
	m.Header.Set("Nats-Expected-Stream", events.StreamTenant)
	m.Header.Set("X-Custom", "kept")
	_, err = e.js.PublishMsg(t.Context(), m)
	require.NoError(t, err)

	require.Eventually(t, func() bool { return e.count(t, events.StreamDLQ, "dlq.>") == 1 }, eventually, tick)
	dl := e.msgs(t, events.StreamDLQ, "dlq.>")[0]
	require.Equal(t, "kept", dl.Header.Get("X-Custom"))
	require.Empty(t, dl.Header.Get("Nats-Expected-Stream"))
	require.Equal(t, "dlq/scheduler_RefuseOnRunStarted/1", dl.Header.Get(nats.MsgIdHdr))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(dl.Data, &doc))
	require.Equal(t, ev.ID, doc["id"])
}

func TestRunFailsWhenItsConsumerIsDeleted(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	bus.SetPullExpiry(b, time.Second)
	require.NoError(t, bus.Handle(b, "H", func(context.Context, *events.Event, *eventsv1.RunStarted) error { return nil }))
	r := start(t, b)
	require.NoError(t, e.js.DeleteConsumer(t.Context(), events.StreamTenant, bus.Consumer("scheduler", "H")))
	select {
	case err := <-r.done:
		r.done <- err
		require.ErrorContains(t, err, "consumer scheduler_H stopped", "the process exits and starts over rather than stall")
	case <-time.After(eventually):
		t.Fatal("Run goes on without its consumer")
	}
}

func TestDeliverNewSkipsEventsStoredBeforeTheConsumer(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "old")))
	rec := newRecorder()
	require.NoError(t, b.Handle(bus.HandlerSpec{Name: "NewOnly", Subjects: []string{"patch.>"}, DeliverNew: true,
		Handle: func(_ context.Context, ev *events.Event) error { rec.add(ev); return nil }}))
	start(t, b)
	require.NoError(t, b.Publish(t.Context(), runStarted(t, "acme", "new")))
	require.Eventually(t, func() bool { return rec.callsOf("new") == 1 }, eventually, tick)
	require.Zero(t, rec.callsOf("old"))
}

func TestRunStoppedBeforeItStartsReturnsNil(t *testing.T) {
	e := newEnv(t)
	b := newBus(t, e.config(t, "scheduler"))
	require.NoError(t, bus.Handle(b, "H", func(context.Context, *events.Event, *eventsv1.RunStarted) error { return nil }))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, b.Run(ctx))
}
