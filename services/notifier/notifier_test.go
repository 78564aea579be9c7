package notifier_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier"
)

const tenant = "acme"

var (
	sentP   = events.Pattern[*eventsv1.NotificationSent]()
	failedP = events.Pattern[*eventsv1.NotificationFailed]()
)

// outcomes returns one event of every kind the notifier notifies about, and the summary of each.
func outcomes(t *testing.T) ([]*events.Event, map[string]string) {
	t.Helper()
	evs := []*events.Event{
		events.MustNew(tenant, "run-x/i-0001", &eventsv1.InstallSucceeded{
			Tenant: tenant, RunId: "run-x", Wave: 1, InstanceId: "i-0001", InstallationId: "cmd-1",
			Results: []*typesv1.PatchResult{{PatchId: "p1", State: typesv1.PatchState_PATCH_STATE_INSTALLED}, {PatchId: "p2", State: typesv1.PatchState_PATCH_STATE_INSTALLED}},
		}),
		events.MustNew(tenant, "run-x/i-0002", &eventsv1.InstallFailed{
			Tenant: tenant, RunId: "run-x", Wave: 1, InstanceId: "i-0002",
			Reason: "patch p2: exit status 1: package conflict",
		}),
		events.MustNew(tenant, "run-x/i-0003", &eventsv1.SnapshotFailed{
			Tenant: tenant, RunId: "run-x", Wave: 1, InstanceId: "i-0003", Reason: "internal error",
		}),
		events.MustNew(tenant, "run-x", &eventsv1.RunCompleted{
			Tenant: tenant, RunId: "run-x", Wave: 1, State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS,
			Total: 100, Succeeded: 95, Failed: 5,
		}),
	}
	want := map[string]string{
		evs[0].ID: "acme wave 1 run run-x: i-0001 install succeeded (2 patches)",
		evs[1].ID: "acme wave 1 run run-x: i-0002 install failed: patch p2: exit status 1: package conflict",
		evs[2].ID: "acme wave 1 run run-x: i-0003 snapshot failed: internal error",
		evs[3].ID: "acme wave 1 run run-x completed with errors: 95 succeeded, 5 failed",
	}
	return evs, want
}

func newService(t *testing.T, cfg notifier.Config, st store.Store) *notifier.Service {
	t.Helper()
	svc, err := notifier.New(cfg, notifier.Deps{Store: st})
	require.NoError(t, err)
	return svc
}

// restartFresh stops the notifier, empties its store with flush, deletes its consumer so that
// every outcome event is delivered again, and starts a new notifier on st.
func restartFresh(t *testing.T, nc *nats.Conn, js jetstream.JetStream, stop, flush func(), cfg notifier.Config, st store.Store) *notifier.Service {
	t.Helper()
	stop()
	flush()
	require.NoError(t, js.DeleteConsumer(t.Context(), events.StreamTenant, bus.Consumer(notifier.Name, notifier.HandlerNotify)))
	svc := newService(t, cfg, st)
	stagetest.RunComponent(t, nc, svc)
	require.Eventually(t, func() bool { return stagetest.Drained(t, js, notifier.Name, notifier.HandlerNotify) },
		20*time.Second, 20*time.Millisecond)
	return svc
}

func TestNotifierSendsOneNotificationPerOutcome(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T) (st store.Store, flush func())
	}{
		{
			name: "with the delivery log in memory",
			store: func(t *testing.T) (store.Store, func()) {
				st := store.NewMemory()
				return st, func() { require.NoError(t, st.FlushPrefix(t.Context(), "")) }
			},
		},
		{
			name: "with the delivery log in redis",
			store: func(t *testing.T) (store.Store, func()) {
				r := testkit.StartRedis(t)
				st, err := store.NewRedis(store.RedisConfig{Addr: r.Addr(), Prefix: "patchwave:"})
				require.NoError(t, err)
				t.Cleanup(func() { _ = st.Close() })
				return st, func() { r.Flush(t) }
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nt := testkit.StartNATS(t)
			nc, js := nt.Connect(t), nt.JetStream(t)
			st, flush := tt.store(t)
			svc := newService(t, notifier.Config{}, st)
			stop := stagetest.RunComponent(t, nc, svc)
			in, want := outcomes(t)
			require.NoError(t, stagetest.Publisher(t, nc, "installer").Publish(t.Context(), in...))

			require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, sentP) == len(in) },
				20*time.Second, 20*time.Millisecond)
			got := map[string]string{}
			for _, ev := range stagetest.ReadEvents(t, js, sentP) {
				m, ok := ev.Data.(*eventsv1.NotificationSent)
				require.True(t, ok)
				assert.Equal(t, notifier.ChannelLog, m.GetChannel())
				assert.Equal(t, m.GetNotificationId()+"/log", ev.Key)
				assert.Regexp(t, `^n-[0-9a-f]{16}$`, m.GetNotificationId())
				got[m.GetAboutEventId()] = m.GetSummary()
			}
			assert.Equal(t, want, got)
			log := requireLog(t, svc, len(in), want)

			// Every outcome delivered again to a notifier whose store was emptied: nothing
			// is sent twice, and the delivery log comes back from the stream as it was.
			svc = restartFresh(t, nc, js, stop, flush, notifier.Config{}, st)
			assert.Equal(t, len(in), stagetest.CountEvents(t, js, events.StreamTenant, sentP))
			assert.Equal(t, log, requireLog(t, svc, len(in), want))
		})
	}
}

// requireLog waits for n deliveries in the tenant's log, checks them against the summaries by
// event id, and returns them.
func requireLog(t *testing.T, svc *notifier.Service, n int, want map[string]string) []notifier.Delivery {
	t.Helper()
	var log []notifier.Delivery
	require.Eventually(t, func() bool {
		var err error
		log, err = svc.Deliveries(t.Context(), tenant)
		require.NoError(t, err)
		return len(log) == n
	}, 10*time.Second, 20*time.Millisecond)
	for i, d := range log {
		assert.Equal(t, want[d.AboutEventID], d.Summary)
		assert.Equal(t, notifier.ChannelLog, d.Channel)
		assert.Equal(t, notifier.StatusSent, d.Status)
		assert.Empty(t, d.Error)
		assert.False(t, d.Time.IsZero())
		if i > 0 {
			assert.False(t, d.Time.Before(log[i-1].Time), "newest last")
		}
	}
	return log
}

// webhook is a test endpoint that answers with the status status returns, counting posts.
type webhook struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	posts  []*http.Request
	bodies [][]byte
}

func newWebhook(t *testing.T, status int) *webhook {
	t.Helper()
	w := &webhook{}
	w.status.Store(int32(status))
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.posts = append(w.posts, r)
		w.bodies = append(w.bodies, body)
		w.mu.Unlock()
		rw.WriteHeader(int(w.status.Load()))
		_, _ = rw.Write([]byte("busy\n"))
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.posts)
}

func TestNotifierPostsCloudEventsToTheWebhook(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	hook := newWebhook(t, http.StatusAccepted)
	cfg := notifier.Config{WebhookURL: hook.srv.URL + "/hooks/patchwave?token=s3cret"}
	st := store.NewMemory()
	svc := newService(t, cfg, st)
	assert.Equal(t, []string{"log", "webhook"}, svc.Channels())
	stop := stagetest.RunComponent(t, nc, svc)
	in, want := outcomes(t)
	require.NoError(t, stagetest.Publisher(t, nc, "installer").Publish(t.Context(), in...))

	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, sentP) == 2*len(in) },
		20*time.Second, 20*time.Millisecond)
	require.Equal(t, len(in), hook.count())
	stored := map[string]*events.Event{}
	for _, ev := range stagetest.ReadEvents(t, js, sentP) {
		stored[ev.ID] = ev
	}
	hook.mu.Lock()
	for i, r := range hook.posts {
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "/hooks/patchwave", r.URL.Path)
		assert.Equal(t, "application/cloudevents+json; charset=utf-8", r.Header.Get("Content-Type"))
		ev, err := events.Unmarshal("", hook.bodies[i])
		require.NoError(t, err, "the body is a CloudEvents document")
		assert.Equal(t, "patchwave.events.v1.NotificationSent", ev.Type)
		assert.Equal(t, "/patchwave/notifier", ev.Source)
		assert.Equal(t, tenant, ev.Tenant)
		m, ok := ev.Data.(*eventsv1.NotificationSent)
		require.True(t, ok)
		assert.Equal(t, notifier.ChannelWebhook, m.GetChannel())
		assert.Equal(t, want[m.GetAboutEventId()], m.GetSummary())
		require.Contains(t, stored, ev.ID, "the posted event is the NotificationSent in the stream")
		assert.Equal(t, m.GetNotificationId(), stored[ev.ID].Data.(*eventsv1.NotificationSent).GetNotificationId())
	}
	hook.mu.Unlock()

	// Redelivered to a notifier with an empty store: the webhook gets nothing more.
	restartFresh(t, nc, js, stop, func() {}, cfg, store.NewMemory())
	assert.Equal(t, len(in), hook.count())
	assert.Equal(t, 2*len(in), stagetest.CountEvents(t, js, events.StreamTenant, sentP))
}

func TestNotifierGivesUpOnAFailingWebhook(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	hook := newWebhook(t, http.StatusServiceUnavailable)
	svc := newService(t, notifier.Config{WebhookURL: hook.srv.URL, MaxAttempts: 3}, store.NewMemory())
	stagetest.RunComponent(t, nc, svc)
	in, want := outcomes(t)
	require.NoError(t, stagetest.Publisher(t, nc, "installer").Publish(t.Context(), in[1]))

	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, failedP) == 1 },
		20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return stagetest.Drained(t, js, notifier.Name, notifier.HandlerNotify) },
		20*time.Second, 20*time.Millisecond)
	assert.Equal(t, 3, hook.count(), "one POST per delivery, three deliveries")
	ev := stagetest.ReadEvents(t, js, failedP)[0]
	m, ok := ev.Data.(*eventsv1.NotificationFailed)
	require.True(t, ok)
	assert.Equal(t, notifier.ChannelWebhook, m.GetChannel())
	assert.Equal(t, in[1].ID, m.GetAboutEventId())
	assert.Equal(t, m.GetNotificationId()+"/webhook", ev.Key)
	assert.Contains(t, m.GetReason(), "webhook answered status 503 Service Unavailable")
	assert.Contains(t, m.GetReason(), "gave up after 3 attempts")
	assert.Equal(t, 1, stagetest.CountEvents(t, js, events.StreamTenant, sentP), "the log channel was delivered once")

	log, err := svc.Deliveries(t.Context(), tenant)
	require.NoError(t, err)
	require.Len(t, log, 2)
	assert.Equal(t, notifier.ChannelLog, log[0].Channel)
	assert.Equal(t, notifier.StatusSent, log[0].Status)
	assert.Equal(t, notifier.ChannelWebhook, log[1].Channel)
	assert.Equal(t, notifier.StatusFailed, log[1].Status)
	assert.Equal(t, m.GetReason(), log[1].Error)
	assert.Equal(t, want[in[1].ID], log[1].Summary)
}

func TestNotifierRetriesAWebhookThatRecovers(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc, js := nt.Connect(t), nt.JetStream(t)
	hook := newWebhook(t, http.StatusBadGateway)
	svc := newService(t, notifier.Config{WebhookURL: hook.srv.URL, MaxAttempts: 5}, store.NewMemory())
	stagetest.RunComponent(t, nc, svc)
	in, _ := outcomes(t)
	require.NoError(t, stagetest.Publisher(t, nc, "installer").Publish(t.Context(), in[3]))

	require.Eventually(t, func() bool { return hook.count() >= 2 }, 20*time.Second, 10*time.Millisecond)
	hook.status.Store(http.StatusOK)
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, sentP) == 2 },
		20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return stagetest.Drained(t, js, notifier.Name, notifier.HandlerNotify) },
		20*time.Second, 20*time.Millisecond)
	assert.Zero(t, stagetest.CountEvents(t, js, events.StreamTenant, failedP))
	log, err := svc.Deliveries(t.Context(), tenant)
	require.NoError(t, err)
	require.Len(t, log, 2)
	assert.Equal(t, notifier.StatusSent, log[1].Status)
	assert.Equal(t, notifier.ChannelWebhook, log[1].Channel)
}

func TestConfigValidateNamesEveryBadField(t *testing.T) {
	tests := []struct {
		name string
		cfg  notifier.Config
		deps notifier.Deps
		want []string
	}{
		{
			name: "a missing store is named",
			want: []string{"Store: required"},
		},
		{
			name: "a webhook URL that is not http is refused",
			cfg:  notifier.Config{WebhookURL: "ftp://example.com/x"},
			deps: notifier.Deps{Store: store.NewMemory()},
			want: []string{`WebhookURL: scheme "ftp": must be http or https`},
		},
		{
			name: "a webhook URL without host is refused",
			cfg:  notifier.Config{WebhookURL: "https:///path"},
			deps: notifier.Deps{Store: store.NewMemory()},
			want: []string{"WebhookURL: must name a host"},
		},
		{
			name: "a webhook URL that does not parse is refused without echoing it",
			cfg:  notifier.Config{WebhookURL: "https://h/%zz?token=s3cret"},
			deps: notifier.Deps{Store: store.NewMemory()},
			want: []string{"WebhookURL: must be an absolute http or https URL"},
		},
		{
			name: "bad attempts, timeout and concurrency are refused",
			cfg:  notifier.Config{MaxAttempts: -1, WebhookTimeout: -time.Second, Concurrency: -2},
			deps: notifier.Deps{Store: store.NewMemory()},
			want: []string{"MaxAttempts -1: must be from 1 to 100", "WebhookTimeout -1s: must be > 0", "Concurrency -2: must be from 1 to 1024"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := notifier.New(tt.cfg, tt.deps)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestDeliveriesRefusesABadTenant(t *testing.T) {
	svc := newService(t, notifier.Config{}, store.NewMemory())
	_, err := svc.Deliveries(t.Context(), "Not A Tenant")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `tenant "Not A Tenant": must match`)
}
