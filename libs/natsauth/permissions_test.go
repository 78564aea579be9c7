package natsauth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// ensureStreams creates the streams as the admin would.
func ensureStreams(t *testing.T, n *testkit.NATS) jetstream.JetStream {
	t.Helper()
	js := jetStream(t, n.Connect(t))
	require.NoError(t, bus.EnsureStreams(t.Context(), js, bus.StreamOptions{}))
	return js
}

func TestEveryServicePublishesOnlyTheEventsItProduces(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	admin := ensureStreams(t, n)
	for _, s := range natsauth.Default.Services {
		t.Run(s.Name, func(t *testing.T) {
			c := connect(t, n, s.Name)
			for _, d := range events.Defs() {
				subject := d.Subject("acme")
				if d.Producer == s.Name {
					_, err := c.js.Publish(t.Context(), subject, []byte(`{}`))
					require.NoError(t, err, "%s publishes %s, which it produces", s.Name, subject)
					continue
				}
				c.requirePublishDenied(t, subject)
			}
		})
	}
	for _, d := range events.Defs() {
		require.Equal(t, 1, stagetest.CountEvents(t, admin, streamOf(t, d), d.Subject("acme")), "%s was stored once, by %s", d.Message, d.Producer)
	}
}

func streamOf(t *testing.T, d events.Def) string {
	t.Helper()
	st, err := events.StreamFor(d.Subject("acme"))
	require.NoError(t, err)
	return st
}

func TestTheNotifierCannotPublishAnInstallOutcome(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	admin := ensureStreams(t, n)
	notifier := connect(t, n, "notifier")
	notifier.requirePublishDenied(t, "patch.acme.install.succeeded")
	notifier.requireDenied(t, "patch.acme.install.succeeded", func(ctx context.Context) error {
		_, err := notifier.js.Publish(ctx, "patch.acme.install.succeeded", []byte(`{}`))
		return err
	})
	// Nor through the bus, which refuses before the server does.
	b, err := bus.New(t.Context(), bus.Config{Service: "notifier", Conn: notifier.nc})
	require.NoError(t, err)
	err = b.Publish(t.Context(), events.MustNew("acme", "run-1/i-1", &eventsv1.InstallSucceeded{Tenant: "acme", RunId: "run-1", InstanceId: "i-1"}))
	require.ErrorContains(t, err, `its producer is "installer"`)
	require.Zero(t, stagetest.CountEvents(t, admin, events.StreamTenant, "patch.acme.install.>"))
}

func TestNothingButTheCatalogPublishesABaseline(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	admin := ensureStreams(t, n)
	subject := events.Pattern[*eventsv1.BaselinePublished]()
	users := []string{natsauth.UserIntegrations}
	for _, s := range natsauth.Default.Services {
		if s.Name != "catalog" {
			users = append(users, s.Name)
		}
	}
	for _, u := range users {
		t.Run(u+" is refused", func(t *testing.T) {
			connect(t, n, u).requirePublishDenied(t, subject)
		})
	}
	require.Zero(t, stagetest.CountEvents(t, admin, events.StreamCatalog, subject))
	_, err := connect(t, n, "catalog").js.Publish(t.Context(), subject, []byte(`{}`))
	require.NoError(t, err, "the catalog publishes it")
	require.Equal(t, 1, stagetest.CountEvents(t, admin, events.StreamCatalog, subject))
}

func TestServicesDeadLetterOnlyUnderTheirOwnName(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	ensureStreams(t, n)
	c := connect(t, n, "installer")
	_, err := c.js.Publish(t.Context(), "dlq.installer.InstallOnSnapshotCreated", []byte(`{}`))
	require.NoError(t, err)
	c.requirePublishDenied(t, "dlq.snapshotter.TakeSnapshotOnJobRequested")
}

func TestAServiceCannotTouchAnotherServicesConsumersOrTheStreams(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	ensureStreams(t, n)
	ctx := t.Context()
	const stage = "installer_InstallOnSnapshotCreated"
	installer := connect(t, n, "installer")
	_, err := installer.js.CreateOrUpdateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{
		Durable: stage, FilterSubject: events.Pattern[*eventsv1.SnapshotCreated](), AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err, "the installer creates its own stage consumer")

	notifier := connect(t, n, "notifier")
	tests := []struct {
		name    string
		subject string
		op      func(ctx context.Context) error
	}{
		{"creating another service's consumer", "$JS.API.CONSUMER.CREATE.PATCH_EVENTS." + stage + ".patch.*.snapshot.created", func(ctx context.Context) error {
			_, err := notifier.js.CreateOrUpdateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{
				Durable: stage, FilterSubject: events.Pattern[*eventsv1.SnapshotCreated](), AckPolicy: jetstream.AckExplicitPolicy,
			})
			return err
		}},
		{"reconfiguring another service's consumer with several filters", "$JS.API.CONSUMER.CREATE.PATCH_EVENTS." + stage, func(ctx context.Context) error {
			_, err := notifier.js.CreateOrUpdateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{
				Durable: stage, FilterSubjects: []string{"patch.*.snapshot.created", "patch.*.install.failed"}, AckPolicy: jetstream.AckExplicitPolicy,
			})
			return err
		}},
		{"deleting another service's consumer", "$JS.API.CONSUMER.DELETE.PATCH_EVENTS." + stage, func(ctx context.Context) error {
			return notifier.js.DeleteConsumer(ctx, events.StreamTenant, stage)
		}},
		{"pulling from another service's consumer", "$JS.API.CONSUMER.MSG.NEXT.PATCH_EVENTS." + stage, func(ctx context.Context) error {
			_, err := notifier.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.PATCH_EVENTS."+stage, []byte(`{"batch":1}`))
			return err
		}},
		{"deleting a stream", "$JS.API.STREAM.DELETE.PATCH_EVENTS", func(ctx context.Context) error {
			return notifier.js.DeleteStream(ctx, events.StreamTenant)
		}},
		{"purging a stream", "$JS.API.STREAM.PURGE.PATCH_EVENTS", func(ctx context.Context) error {
			_, err := notifier.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.PATCH_EVENTS", nil)
			return err
		}},
		{"changing a stream's definition", "$JS.API.STREAM.UPDATE.PATCH_EVENTS", func(ctx context.Context) error {
			_, err := notifier.js.UpdateStream(ctx, jetstream.StreamConfig{Name: events.StreamTenant, Subjects: []string{"patch.>"}, MaxAge: time.Second})
			return err
		}},
		{"deleting a stored event", "$JS.API.STREAM.MSG.DELETE.PATCH_EVENTS", func(ctx context.Context) error {
			_, err := notifier.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.DELETE.PATCH_EVENTS", []byte(`{"seq":1}`))
			return err
		}},
		{"looking at another service's consumer", "$JS.API.CONSUMER.INFO.PATCH_EVENTS." + stage, func(ctx context.Context) error {
			_, err := notifier.js.Consumer(ctx, events.StreamTenant, stage)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			notifier.requireDenied(t, tt.subject, tt.op)
		})
	}
	c, err := installer.js.Consumer(ctx, events.StreamTenant, stage)
	require.NoError(t, err, "the installer's consumer is still there")
	require.Equal(t, []string{events.Pattern[*eventsv1.SnapshotCreated]()}, []string{c.CachedInfo().Config.FilterSubject}, "unchanged")
	installer.requireNoViolation(t)

	// A service deletes none of its own durable consumers either: replaying one is the operator's.
	installer.requireDenied(t, "$JS.API.CONSUMER.DELETE.PATCH_EVENTS."+stage, func(ctx context.Context) error {
		return installer.js.DeleteConsumer(ctx, events.StreamTenant, stage)
	})
}

func TestEveryServiceRunsItsHandlersAndProjectionsUnderItsOwnUser(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	admin := ensureStreams(t, n)
	// One event per stream a service reads, published as its producer would.
	for _, ev := range []*events.Event{
		events.MustNew("acme", "run-1", &eventsv1.RunStarted{Tenant: "acme", RunId: "run-1"}),
		events.MustNew("", "b-1", &eventsv1.BaselinePublished{BaselineId: "b-1"}),
	} {
		data, err := events.Marshal(ev)
		require.NoError(t, err)
		_, err = admin.Publish(t.Context(), ev.Subject, data)
		require.NoError(t, err)
	}
	for _, s := range natsauth.Default.Services {
		t.Run(s.Name, func(t *testing.T) {
			c := connect(t, n, s.Name)
			b, err := bus.New(t.Context(), bus.Config{Service: s.Name, Conn: c.nc})
			require.NoError(t, err, "the bus ensures the streams as %s", s.Name)
			var handlers []natsauth.Handler
			for _, h := range s.Handlers {
				// Bus handlers read event streams; a consumer on a bucket's stream is the
				// service's own (TestTheSchedulersDesignAuditConsumerIsItsAlone).
				if !strings.HasPrefix(h.Stream, "KV_") {
					handlers = append(handlers, h)
				}
			}
			for _, h := range handlers {
				// Every handler dead-letters what it gets, so its dead-letter path runs too.
				require.NoError(t, b.Handle(bus.HandlerSpec{
					Name: h.Name, Subjects: []string{subjectsOf(h.Stream)},
					Handle: func(context.Context, *events.Event) error { return bus.Permanent(fmt.Errorf("refused")) },
				}))
			}
			projected := make(chan string, len(s.Projects))
			for _, st := range s.Projects {
				require.NoError(t, b.Project(bus.ProjectionSpec{
					Name: "read-" + st, Subjects: []string{subjectsOf(st)},
					Apply: func(context.Context, *events.Event, bool) error { projected <- st; return nil },
				}))
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			defer func() { cancel(); require.NoError(t, <-done) }()
			select {
			case <-b.Running():
			case err := <-done:
				t.Fatalf("bus stopped: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("bus not running")
			}
			require.Len(t, projected, len(s.Projects), "every projection read its stream's event")
			for _, h := range handlers {
				dlq := "dlq." + s.Name + "." + h.Name
				require.Eventually(t, func() bool { return stagetest.CountEvents(t, admin, events.StreamDLQ, dlq) == 1 }, 10*time.Second, 10*time.Millisecond,
					"%s handled and dead-lettered the event", h.Name)
			}
			c.requireNoViolation(t)
		})
	}
}

// subjectsOf returns a filter matching every event of stream.
func subjectsOf(stream string) string {
	switch stream {
	case events.StreamCatalog:
		return events.RootCatalog + ".>"
	case events.StreamDLQ:
		return events.RootDLQ + ".>"
	}
	return events.RootTenant + ".>"
}
