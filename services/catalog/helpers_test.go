package catalog_test

import (
	"context"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog"
	"github.com/patchwave/patchwave/services/catalog/samplefeeds"
)

// fakeClock is a settable clock; After channels fire when Advance passes their time.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock on and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// t0 is the tests' "now": after every sample document's release.
var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

type env struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	client catalogv1.CatalogServiceClient
	clock  *fakeClock
	stop   func()
}

func start(t *testing.T, cfg catalog.Config, deps catalog.Deps) *env {
	t.Helper()
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	return startOn(t, nc, cfg, deps)
}

func startOn(t *testing.T, nc *nats.Conn, cfg catalog.Config, deps catalog.Deps) *env {
	t.Helper()
	return startOnWith(t, nc, cfg, deps, stagetest.BusConfig())
}

func startOnWith(t *testing.T, nc *nats.Conn, cfg catalog.Config, deps catalog.Deps, busCfg bus.Config) *env {
	t.Helper()
	clock, _ := deps.Clock.(*fakeClock)
	if clock == nil {
		clock = newClock(t0)
		deps.Clock = clock
	}
	svc, err := catalog.New(cfg, deps)
	require.NoError(t, err)
	cc, stop := stagetest.RunGRPCComponentWith(t, nc, svc, busCfg)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &env{nc: nc, js: js, client: catalogv1.NewCatalogServiceClient(cc), clock: clock, stop: stop}
}

// as makes a call act as actor, an operator, as the gateway forwards an authenticated caller.
func as(ctx context.Context, actor string) context.Context {
	return stagetest.As(ctx, auth.Identity{Subject: actor, Roles: []auth.Role{auth.RoleOperator}})
}

func sampleDoc(t *testing.T, name string) []byte {
	t.Helper()
	data, err := fs.ReadFile(samplefeeds.Files, name)
	require.NoError(t, err)
	return data
}

// catalogEvents returns every event of the catalog stream on subjects matching filter.
func catalogEvents(t *testing.T, js jetstream.JetStream, filter string) []*events.Event {
	t.Helper()
	return streamEvents(t, js, events.StreamCatalog, filter)
}

func streamEvents(t *testing.T, js jetstream.JetStream, stream, filter string) []*events.Event {
	t.Helper()
	n := stagetest.CountEvents(t, js, stream, filter)
	if n == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(t.Context(), stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	require.NoError(t, err)
	var out []*events.Event
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		got := 0
		for msg := range batch.Messages() {
			ev, err := events.Unmarshal(msg.Subject(), msg.Data())
			require.NoError(t, err)
			out = append(out, ev)
			got++
		}
		require.NoError(t, batch.Error())
		require.NotZero(t, got, "read %d of %d events on %s", len(out), n, filter)
	}
	return out
}

func importDoc(t *testing.T, e *env, name string, data []byte) *catalogv1.ImportAdvisoryResponse {
	t.Helper()
	resp, err := e.client.ImportAdvisory(as(t.Context(), "ops@provider"), &catalogv1.ImportAdvisoryRequest{Document: data, Name: name})
	require.NoError(t, err)
	return resp
}

func jetstreamMsgID(id string) jetstream.PublishOpt { return jetstream.WithMsgID(id) }

// waitCatalogEvents waits until the catalog stream holds n events on filter (an event is
// published just after the write it announces) and returns them.
func waitCatalogEvents(t *testing.T, js jetstream.JetStream, filter string, n int) []*events.Event {
	t.Helper()
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamCatalog, filter) >= n },
		10*time.Second, 10*time.Millisecond, "%d events on %s", n, filter)
	return catalogEvents(t, js, filter)
}
