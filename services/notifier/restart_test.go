package notifier_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier"
)

func TestAPendingDeliverySurvivesARestartAndIsSentOnce(t *testing.T) {
	cfg := fastRetry(notifier.Config{MaxAttempts: 50})
	e := start(t, cfg, notifier.Deps{})
	wh := newHook(t)
	wh.failFirst(1 << 20)
	resp := e.put(t, webhookSub("hook", wh.srv.URL))
	wh.setSecret(resp.GetSecret())
	stagetest.Publish(t, e.nc, events.MustNew(tenant, "run-r/i-1", &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-r", Wave: 1, InstanceId: "i-1", Reason: "x"}))
	require.Eventually(t, func() bool { r, _ := wh.counts(); return r >= 2 }, 10*time.Second, 10*time.Millisecond, "a few attempts fail")

	e.stop() // the replica goes away with the delivery pending
	ds := e.deliveriesAfterStop(t)
	require.Len(t, ds, 1)
	assert.Equal(t, notifierv1.DeliveryStatus_DELIVERY_STATUS_PENDING, ds[0].GetStatus())
	wh.failFirst(0)
	e.run(t, cfg, notifier.Deps{Store: store.NewMemory()})
	got := e.waitStatus(t, "hook", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	assert.Greater(t, got[0].GetAttempts(), int32(2))
	time.Sleep(200 * time.Millisecond)
	assert.Len(t, wh.received(), 1)
}

// deliveriesAfterStop reads the pending deliveries straight from the bucket while no notifier
// runs, and checks each has its schedule entry.
func (e *env) deliveriesAfterStop(t *testing.T) []*notifierv1.Delivery {
	t.Helper()
	kv, err := e.nt.JetStream(t).KeyValue(t.Context(), notifier.DeliveriesBucket)
	require.NoError(t, err)
	keys, err := kv.Keys(t.Context())
	require.NoError(t, err)
	var out []*notifierv1.Delivery
	for _, k := range keys {
		if len(k) > 2 && k[:2] == "d." {
			out = append(out, &notifierv1.Delivery{DeliveryId: k, Status: notifierv1.DeliveryStatus_DELIVERY_STATUS_PENDING})
		}
	}
	due := 0
	for _, k := range keys {
		if len(k) > 4 && k[:4] == "due." {
			due++
		}
	}
	require.Equal(t, len(out), due, "every pending delivery is on the schedule")
	return out
}

func TestTwoReplicasDeliverEachNotificationExactlyOnce(t *testing.T) {
	const n = 200
	cfg := fastRetry(notifier.Config{SendConcurrency: 8})
	a := start(t, cfg, notifier.Deps{})
	b := &env{nt: a.nt, nc: a.nt.Connect(t)}
	b.run(t, cfg, notifier.Deps{})
	wh := newHook(t)
	wh.failFirst(n / 4) // some retries too
	resp := a.put(t, webhookSub("hook", wh.srv.URL))
	wh.setSecret(resp.GetSecret())
	require.Eventually(t, func() bool { _, ok := lookupVia(t, b); return ok }, 5*time.Second, 10*time.Millisecond)

	evs := make([]*events.Event, n)
	for i := range evs {
		inst := fmt.Sprintf("i-%04d", i)
		evs[i] = events.MustNew(tenant, "run-2r/"+inst, &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-2r", Wave: 1, InstanceId: inst, Reason: "x"})
	}
	stagetest.Publish(t, a.nc, evs...)
	a.waitStatus(t, "hook", n, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	time.Sleep(200 * time.Millisecond)
	seen := map[string]int{}
	for _, body := range wh.received() {
		seen[body.DeliveryID]++
	}
	assert.Len(t, seen, n)
	for id, c := range seen {
		assert.Equal(t, 1, c, "delivery %s", id)
	}
}

func lookupVia(t *testing.T, e *env) (*typesv1.Subscription, bool) {
	resp, err := e.api.GetSubscription(t.Context(), &notifierv1.GetSubscriptionRequest{Tenant: tenant, SubscriptionId: "hook"})
	if err != nil {
		return nil, false
	}
	list, err := e.api.ListSubscriptions(t.Context(), &notifierv1.ListSubscriptionsRequest{Tenant: tenant})
	return resp.GetSubscription(), err == nil && len(list.GetSubscriptions()) == 1
}

func TestADigestListsTheFailuresEvenAfterARestartWithAnEmptyStore(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T) (store.Store, func())
	}{
		{"in memory", func(t *testing.T) (store.Store, func()) { return store.NewMemory(), func() {} }},
		{"in redis, flushed", func(t *testing.T) (store.Store, func()) {
			r := testkit.StartRedis(t)
			st, err := store.NewRedis(store.RedisConfig{Addr: r.Addr(), Prefix: "patchwave:"})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st, func() { r.Flush(t) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, flush := tt.store(t)
			cfg := fastRetry(notifier.Config{})
			e := start(t, cfg, notifier.Deps{Store: st})
			wh := newHook(t)
			resp := e.put(t, &typesv1.Subscription{SubscriptionId: "digest", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST, Url: wh.srv.URL})
			wh.setSecret(resp.GetSecret())
			evs := runEvents("run-x", 3)
			stagetest.Publish(t, e.nc, evs[:4]...)
			require.Eventually(t, func() bool { return stagetest.Drained(t, e.nt.JetStream(t), notifier.Name, notifier.HandlerNotify) }, 10*time.Second, 10*time.Millisecond)
			e.stop()
			flush()
			next := st
			if tt.name == "in memory" {
				next = store.NewMemory()
			}
			e.run(t, cfg, notifier.Deps{Store: next})
			stagetest.Publish(t, e.nc, evs[4])
			e.waitStatus(t, "digest", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
			got := wh.received()
			require.Len(t, got, 1)
			d := got[0].Notification.Digest
			require.NotNil(t, d)
			require.Len(t, d.Failures, 2)
			assert.Equal(t, "i-2", d.Failures[0].InstanceID)
			assert.Equal(t, "install", d.Failures[0].Stage)
			assert.Equal(t, "i-3", d.Failures[1].InstanceID)
			assert.Equal(t, "snapshot", d.Failures[1].Stage)
			assert.Equal(t, "volume busy", d.Failures[1].Reason)
			assert.Equal(t, 1, d.FailedInstall)
			assert.Equal(t, 1, d.FailedSnapshot)
			assert.Contains(t, got[0].Text, "Failed at: install 1, snapshot 1")
		})
	}
}
