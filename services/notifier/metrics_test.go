package notifier_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

func TestTheMetricsCountAttemptsByOutcome(t *testing.T) {
	nt := testkit.StartNATS(t)
	nc := nt.Connect(t)
	svc, err := notifier.New(fastRetry(notifier.Config{}), notifier.Deps{Store: store.NewMemory()})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	stagetest.RunWithMetrics(t, nc, svc, reg)
	require.Eventually(t, func() bool { return svc.Ready(t.Context()) == nil }, 10*time.Second, 10*time.Millisecond)
	wh := newHook(t)
	wh.failFirst(2)
	_, err = svc.Server().PutSubscription(t.Context(), &notifierv1.PutSubscriptionRequest{Tenant: tenant, SubscriptionId: "hook", Subscription: &typesv1.Subscription{
		Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE, Url: wh.srv.URL}})
	require.NoError(t, err)
	ev := events.MustNew(tenant, "run-m/i-1", &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-m", Wave: 1, InstanceId: "i-1", Reason: "x"})
	stagetest.Publish(t, nc, ev)
	attempts := func(outcome string) float64 {
		return stagetest.Metric(t, reg, "patchwave_notifier_delivery_attempts_total", map[string]string{"channel": "webhook", "outcome": outcome})
	}
	require.Eventually(t, func() bool { return attempts("sent") == 1 }, 10*time.Second, 10*time.Millisecond)
	assert.InDelta(t, 2, attempts("retry"), 0)
	assert.InDelta(t, 1, stagetest.Metric(t, reg, "patchwave_notifier_deliveries_queued_total", map[string]string{"channel": "webhook"}), 0)
	require.Eventually(t, func() bool { return stagetest.Metric(t, reg, "patchwave_notifier_deliveries_pending", nil) == 0 }, 5*time.Second, 10*time.Millisecond)
}
