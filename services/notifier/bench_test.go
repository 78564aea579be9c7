package notifier_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier"
)

// BenchmarkAWaveOfTenThousandInstancesToItsDigest publishes a 10,000-instance wave's outcomes
// (1% failed) and its end per iteration, and measures until the digest subscription's one
// message is sent; it reports outcome events per second through the notifier.
func BenchmarkAWaveOfTenThousandInstancesToItsDigest(b *testing.B) {
	const total = 10000
	e := start(b, fastRetry(notifier.Config{}), notifier.Deps{})
	wh := newHook(b)
	e.put(b, &typesv1.Subscription{SubscriptionId: "digest", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK,
		Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST, Url: wh.srv.URL})
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		run := fmt.Sprintf("run-%d", i)
		evs := make([]*events.Event, 0, total+1)
		failed := 0
		for j := range total {
			inst := fmt.Sprintf("i-%05d", j)
			if j%100 == 0 {
				failed++
				evs = append(evs, events.MustNew(tenant, run+"/"+inst, &eventsv1.InstallFailed{Tenant: tenant, RunId: run, Wave: 1, InstanceId: inst, Reason: "exit 1"}))
				continue
			}
			evs = append(evs, events.MustNew(tenant, run+"/"+inst, &eventsv1.InstallSucceeded{Tenant: tenant, RunId: run, Wave: 1, InstanceId: inst}))
		}
		evs = append(evs, events.MustNew(tenant, run, &eventsv1.RunCompleted{Tenant: tenant, RunId: run, Wave: 1,
			State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: total, Succeeded: int32(total - failed), Failed: int32(failed)}))
		began := time.Now()
		stagetest.Publish(b, e.nc, evs...)
		e.waitStatus(b, "digest", i+1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
		elapsed += time.Since(began)
	}
	require.Len(b, wh.received(), b.N)
	b.ReportMetric(float64(b.N*(total+1))/elapsed.Seconds(), "events/s")
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/wave")
}
