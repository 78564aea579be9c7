package notifier_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/cloudsim"

	"github.com/patchwave/patchwave/services/notifier"
)

var (
	sentP   = events.Pattern[*eventsv1.NotificationSent]()
	failedP = events.Pattern[*eventsv1.NotificationFailed]()
)

func webhookSub(id, url string) *typesv1.Subscription {
	return &typesv1.Subscription{SubscriptionId: id, Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE, Url: url}
}

func TestSubscriptionsAreManagedOverTheAPIWithoutShowingSecrets(t *testing.T) {
	e := start(t, fastRetry(notifier.Config{}), notifier.Deps{})
	ctx := t.Context()

	sub := webhookSub("ops", "https://hooks.example.com/T000/B000/XXXXSECRETTOKEN")
	sub.Filter = &typesv1.SubscriptionFilter{EventTypes: []string{"install.failed"}, Waves: []int32{1, 2}, MinSeverity: typesv1.NotificationSeverity_NOTIFICATION_SEVERITY_WARNING}
	resp := e.put(t, sub)
	require.True(t, strings.HasPrefix(resp.GetSecret(), "whsec_"), "a generated secret is returned once")
	got := resp.GetSubscription()
	assert.Equal(t, tenant, got.GetTenant())
	assert.Empty(t, got.GetSecret())
	assert.True(t, got.GetHasSecret())
	assert.Equal(t, "https://hooks.example.com/***", got.GetUrl(), "the URL's token is masked")
	assert.NotEmpty(t, got.GetUpdatedBy(), "the actor is the caller's subject")
	assert.Positive(t, got.GetRevision())

	g, err := e.api.GetSubscription(ctx, &notifierv1.GetSubscriptionRequest{Tenant: tenant, SubscriptionId: "ops"})
	require.NoError(t, err)
	assert.Empty(t, g.GetSubscription().GetSecret())
	assert.NotContains(t, g.GetSubscription().String(), resp.GetSecret())
	assert.NotContains(t, g.GetSubscription().String(), "XXXXSECRETTOKEN")

	// A replace without a secret keeps the stored one (no new secret is returned).
	again := e.put(t, sub)
	assert.Empty(t, again.GetSecret())
	assert.True(t, again.GetSubscription().GetHasSecret())

	// A write based on a stale revision is refused.
	_, err = e.api.PutSubscription(ctx, &notifierv1.PutSubscriptionRequest{Tenant: tenant, SubscriptionId: "ops", Subscription: sub, Revision: got.GetRevision()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), err)

	// Bad input names each field and rule.
	bad := &typesv1.Subscription{
		Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_EMAIL, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST, EmailTo: []string{"not an address"},
		Filter:     &typesv1.SubscriptionFilter{EventTypes: []string{"install.exploded"}, Waves: []int32{4}},
		QuietHours: &typesv1.QuietHours{Start: "25:00", End: "06:00", TimeZone: "Mars/Olympus"},
		Templates:  &typesv1.MessageTemplates{Text: "{{.NoSuchField}}"},
	}
	_, err = e.api.PutSubscription(ctx, &notifierv1.PutSubscriptionRequest{Tenant: tenant, SubscriptionId: "Bad_Id", Subscription: bad})
	require.Equal(t, codes.InvalidArgument, status.Code(err), err)
	for _, field := range []string{"subscription_id", "subscription.email_to[0]", "subscription.filter.event_types[0]",
		"subscription.filter.waves[0]", "subscription.quiet_hours.start", "subscription.quiet_hours.time_zone", "subscription.templates.text"} {
		assert.Contains(t, err.Error(), field)
	}
	_, err = e.api.PutSubscription(ctx, &notifierv1.PutSubscriptionRequest{Tenant: tenant, SubscriptionId: "x",
		Subscription: &typesv1.Subscription{Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE, Url: "ftp://x"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, err.Error(), "subscription.url")

	e.put(t, &typesv1.Subscription{SubscriptionId: "mail", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_EMAIL, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST, EmailTo: []string{"ops@acme.example"}})
	list, err := e.api.ListSubscriptions(ctx, &notifierv1.ListSubscriptionsRequest{Tenant: tenant})
	require.NoError(t, err)
	require.Len(t, list.GetSubscriptions(), 2)
	assert.Equal(t, []string{"mail", "ops"}, []string{list.GetSubscriptions()[0].GetSubscriptionId(), list.GetSubscriptions()[1].GetSubscriptionId()})

	_, err = e.api.DeleteSubscription(ctx, &notifierv1.DeleteSubscriptionRequest{Tenant: tenant, SubscriptionId: "ops"})
	require.NoError(t, err)
	_, err = e.api.GetSubscription(ctx, &notifierv1.GetSubscriptionRequest{Tenant: tenant, SubscriptionId: "ops"})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = e.api.DeleteSubscription(ctx, &notifierv1.DeleteSubscriptionRequest{Tenant: tenant, SubscriptionId: "ops"})
	require.Equal(t, codes.NotFound, status.Code(err))
	list, err = e.api.ListSubscriptions(ctx, &notifierv1.ListSubscriptionsRequest{Tenant: tenant})
	require.NoError(t, err)
	require.Len(t, list.GetSubscriptions(), 1)

	// Every change is an event of the audit trail, with its actor and without the secret.
	js := e.nt.JetStream(t)
	changedP := events.Pattern[*eventsv1.SubscriptionChanged]()
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, changedP) == 4 }, 10*time.Second, 20*time.Millisecond)
	var changes []*eventsv1.SubscriptionChanged
	for _, ev := range stagetest.ReadEvents(t, js, changedP) {
		c := ev.Data.(*eventsv1.SubscriptionChanged)
		changes = append(changes, c)
		assert.NotContains(t, c.String(), resp.GetSecret())
		assert.NotContains(t, c.String(), "XXXXSECRETTOKEN")
		assert.Equal(t, got.GetUpdatedBy(), c.GetActor())
		assert.Equal(t, fmt.Sprintf("%s/%d", c.GetSubscriptionId(), c.GetRevision()), ev.Key)
	}
	assert.Equal(t, []string{"ops", "ops", "mail", "ops"}, []string{changes[0].GetSubscriptionId(), changes[1].GetSubscriptionId(), changes[2].GetSubscriptionId(), changes[3].GetSubscriptionId()})
	assert.False(t, changes[0].GetDeleted())
	assert.Equal(t, "https://hooks.example.com/***", changes[0].GetSubscription().GetUrl())
	assert.True(t, changes[3].GetDeleted())
	assert.Nil(t, changes[3].GetSubscription())
}

func TestEveryChannelReceivesEachNotificationOnceAndAReplaySendsNothingAgain(t *testing.T) {
	box := newMailbox(t)
	sim, err := cloudsim.New(cloudsim.Config{})
	require.NoError(t, err)
	sim.Start()
	t.Cleanup(func() { _ = sim.Close() })
	key, secret := sim.ProviderCredentials()
	host, port := splitHostPort(t, box.addr)
	cfg := fastRetry(notifier.Config{
		SMTP: notifier.SMTP{Host: host, Port: port, TLS: "starttls", Username: smtpUser, Password: smtpPassword, From: "patchwave@msp.example"},
		SNS:  notifier.SNS{Region: "eu-central-1", Endpoint: sim.URL(), AccessKeyID: key, SecretAccessKey: secret},
	})
	e := start(t, cfg, notifier.Deps{SMTPTLS: box.tlsCfg})

	wh, slack := newHook(t), newHook(t)
	resp := e.put(t, webhookSub("hook", wh.srv.URL+"/patchwave"))
	wh.setSecret(resp.GetSecret())
	e.put(t, &typesv1.Subscription{SubscriptionId: "slack", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE,
		Url: slack.srv.URL + "/services/T0/B0/token", Filter: &typesv1.SubscriptionFilter{FailuresOnly: true}})
	e.put(t, &typesv1.Subscription{SubscriptionId: "mail", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_EMAIL, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE,
		EmailTo: []string{"ops@acme.example", "oncall@acme.example"}, Filter: &typesv1.SubscriptionFilter{EventTypes: []string{"run.completed"}}})
	topic := "arn:aws:sns:eu-central-1:100000000000:patch-events"
	e.put(t, &typesv1.Subscription{SubscriptionId: "sns", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SNS, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE,
		TopicArn: topic, Filter: &typesv1.SubscriptionFilter{MinSeverity: typesv1.NotificationSeverity_NOTIFICATION_SEVERITY_CRITICAL},
		Templates: &typesv1.MessageTemplates{Text: "{{upper .SeverityName}} {{.Type}}: {{.Summary}}"}})

	evs := runEvents("run-a", 1)
	stagetest.Publish(t, e.nc, evs...)

	// webhook: everything (5 events); slack: the failures (2 jobs and the run with errors);
	// mail: the run's end; sns: the critical ones (2 failed jobs).
	e.waitStatus(t, "hook", 5, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	e.waitStatus(t, "slack", 3, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	e.waitStatus(t, "mail", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	e.waitStatus(t, "sns", 2, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)

	bodies := wh.received()
	require.Len(t, bodies, 5)
	_, bad := wh.counts()
	assert.Zero(t, bad, "every webhook is correctly signed")
	types := map[string]bool{}
	for _, b := range bodies {
		types[b.Type] = true
		assert.Equal(t, tenant, b.Tenant)
		assert.Equal(t, "hook", b.SubscriptionID)
		assert.NotContains(t, b.Text, resp.GetSecret())
	}
	assert.Equal(t, map[string]bool{"run.started": true, "install.succeeded": true, "install.failed": true, "snapshot.failed": true, "run.completed": true}, types)
	for _, raw := range wh.texts() {
		assert.NotContains(t, raw, resp.GetSecret(), "no message carries the secret")
	}

	st := slack.texts()
	require.Len(t, st, 3)
	joined := strings.Join(st, "\n")
	assert.Contains(t, joined, "i-2 install failed: patch p2: exit status 1")
	assert.Contains(t, joined, ":x: 2 failed")
	assert.Contains(t, joined, "<https://patchwave.example/v1/tenants/acme/runs/run-a|Open the run>")

	mails := box.received()
	require.Len(t, mails, 1)
	m := mails[0]
	assert.True(t, m.TLS, "STARTTLS was used")
	assert.Equal(t, smtpUser, m.User, "AUTH PLAIN was used")
	assert.Equal(t, "patchwave@msp.example", m.From)
	assert.ElementsMatch(t, []string{"ops@acme.example", "oncall@acme.example"}, m.To)
	assert.Contains(t, m.Subject, "acme wave 1 run run-a completed with errors")
	assert.Contains(t, m.Text, "Instances: 3 in scope, 1 succeeded, 2 failed")
	assert.Contains(t, m.HTML, `<a href="https://patchwave.example/v1/tenants/acme/runs/run-a">Open the run</a>`)

	msgs := sim.SNSMessages()
	require.Len(t, msgs, 2)
	for _, msg := range msgs {
		assert.Equal(t, topic, msg.TopicARN)
		assert.Regexp(t, `^CRITICAL (install|snapshot)\.failed: acme wave 1 run run-a: i-[23] `, msg.Message)
		assert.Regexp(t, `^acme\.sns\.n-[0-9a-f]{16}$`, msg.Attributes["patchwave_delivery"])
	}
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, e.nt.JetStream(t), events.StreamTenant, sentP) == 11 },
		10*time.Second, 20*time.Millisecond)

	// The whole stream delivered again (consumer re-created, and the same events published
	// again under new ids would be new events, so only redelivery is replay): nothing is
	// sent twice.
	js := e.nt.JetStream(t)
	e.stop()
	require.NoError(t, js.DeleteConsumer(t.Context(), events.StreamTenant, bus.Consumer(notifier.Name, notifier.HandlerNotify)))
	e.run(t, cfg, notifier.Deps{SMTPTLS: box.tlsCfg})
	require.Eventually(t, func() bool { return stagetest.Drained(t, js, notifier.Name, notifier.HandlerNotify) }, 20*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a few dispatcher ticks: anything queued would be sent
	assert.Len(t, wh.received(), 5)
	assert.Len(t, slack.texts(), 3)
	assert.Len(t, box.received(), 1)
	assert.Len(t, sim.SNSMessages(), 2)
	assert.Equal(t, 11, stagetest.CountEvents(t, js, events.StreamTenant, sentP))
}

func TestAReceiverDownForTheFirstAttemptsGetsExactlyOneCopyLater(t *testing.T) {
	e := start(t, fastRetry(notifier.Config{MaxAttempts: 8}), notifier.Deps{})
	wh := newHook(t)
	wh.failFirst(4)
	resp := e.put(t, webhookSub("hook", wh.srv.URL))
	wh.setSecret(resp.GetSecret())
	stagetest.Publish(t, e.nc, events.MustNew(tenant, "run-b/i-9", &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-b", Wave: 2, InstanceId: "i-9", Reason: "boom"}))

	ds := e.waitStatus(t, "hook", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	assert.EqualValues(t, 5, ds[0].GetAttempts(), "four refused attempts, then the one that got through")
	require.Len(t, wh.received(), 1)
	requests, bad := wh.counts()
	assert.Equal(t, 5, requests)
	assert.Zero(t, bad, "every attempt is signed anew")
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, e.nt.JetStream(t), events.StreamTenant, sentP) == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	assert.Len(t, wh.received(), 1, "exactly one copy")
}

func TestADeliveryThatNeverGetsThroughIsDeadLetteredAndCanBeSentAgain(t *testing.T) {
	e := start(t, fastRetry(notifier.Config{MaxAttempts: 3}), notifier.Deps{})
	wh := newHook(t)
	wh.failFirst(1000)
	resp := e.put(t, webhookSub("hook", wh.srv.URL))
	wh.setSecret(resp.GetSecret())
	stagetest.Publish(t, e.nc, events.MustNew(tenant, "run-c/i-1", &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-c", Wave: 1, InstanceId: "i-1", Reason: "x"}))

	ds := e.waitStatus(t, "hook", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD)
	assert.EqualValues(t, 3, ds[0].GetAttempts())
	assert.Contains(t, ds[0].GetLastError(), "status 503")
	js := e.nt.JetStream(t)
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, failedP) == 1 }, 5*time.Second, 10*time.Millisecond)
	failed := stagetest.ReadEvents(t, js, failedP)[0].Data.(*eventsv1.NotificationFailed)
	assert.Equal(t, "hook", failed.GetSubscriptionId())
	assert.Contains(t, failed.GetReason(), "dead-lettered after 3 attempts")

	dead, err := e.api.ListDeliveries(t.Context(), &notifierv1.ListDeliveriesRequest{Tenant: tenant, Status: notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD})
	require.NoError(t, err)
	require.Len(t, dead.GetDeliveries(), 1)

	wh.failFirst(0)
	again, err := e.api.RedeliverDelivery(t.Context(), &notifierv1.RedeliverDeliveryRequest{Tenant: tenant, DeliveryId: ds[0].GetDeliveryId()})
	require.NoError(t, err)
	assert.Equal(t, notifierv1.DeliveryStatus_DELIVERY_STATUS_PENDING, again.GetDelivery().GetStatus())
	ds = e.waitStatus(t, "hook", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	assert.EqualValues(t, 1, ds[0].GetAttempts())
	require.Len(t, wh.received(), 1)
	require.Eventually(t, func() bool { return stagetest.CountEvents(t, js, events.StreamTenant, sentP) == 1 }, 5*time.Second, 10*time.Millisecond)

	_, err = e.api.RedeliverDelivery(t.Context(), &notifierv1.RedeliverDeliveryRequest{Tenant: tenant, DeliveryId: "hook.n-0000000000000000"})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = e.api.RedeliverDelivery(t.Context(), &notifierv1.RedeliverDeliveryRequest{Tenant: tenant, DeliveryId: "../etc"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, err.Error(), "delivery_id")
}

func TestAWebhookToALoopbackAddressIsRefusedWithoutTheOperatorsAllowList(t *testing.T) {
	cfg := fastRetry(notifier.Config{MaxAttempts: 2})
	cfg.AllowNetworks = []netipPrefix{}
	e := start(t, cfg, notifier.Deps{})
	wh := newHook(t)
	e.put(t, webhookSub("hook", wh.srv.URL))
	e.put(t, &typesv1.Subscription{SubscriptionId: "metadata", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE,
		Url: "http://169.254.169.254/latest/meta-data/"})
	stagetest.Publish(t, e.nc, events.MustNew(tenant, "run-d/i-1", &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-d", Wave: 1, InstanceId: "i-1", Reason: "x"}))

	ds := e.waitStatus(t, "hook", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD)
	assert.Contains(t, ds[0].GetLastError(), "is a loopback address")
	ds = e.waitStatus(t, "metadata", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD)
	assert.Contains(t, ds[0].GetLastError(), "is a link-local address")
	requests, _ := wh.counts()
	assert.Zero(t, requests, "the receiver was never reached")
}

func TestARedirectToAnAddressThatIsNotAllowedIsNotFollowed(t *testing.T) {
	inner := newHook(t) // on 127.0.0.1: not allowed
	outer := httptest.NewUnstartedServer(http.RedirectHandler(inner.srv.URL+"/stolen", http.StatusTemporaryRedirect))
	ln, err := netListen("127.0.0.2:0")
	require.NoError(t, err)
	outer.Listener = ln
	outer.Start()
	t.Cleanup(outer.Close)

	cfg := fastRetry(notifier.Config{MaxAttempts: 1})
	cfg.AllowNetworks = []netipPrefix{mustPrefix("127.0.0.2/32")}
	e := start(t, cfg, notifier.Deps{})
	e.put(t, webhookSub("hook", outer.URL))
	stagetest.Publish(t, e.nc, events.MustNew(tenant, "run-e/i-1", &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-e", Wave: 1, InstanceId: "i-1", Reason: "x"}))
	ds := e.waitStatus(t, "hook", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD)
	assert.Contains(t, ds[0].GetLastError(), "127.0.0.1 is a loopback address")
	requests, _ := inner.counts()
	assert.Zero(t, requests)
}

func TestATenThousandInstanceWaveIsOneDigestPerSubscription(t *testing.T) {
	const total, failed = 10000, 120
	e := start(t, fastRetry(notifier.Config{}), notifier.Deps{})
	wh, slack, runEnd := newHook(t), newHook(t), newHook(t)
	resp := e.put(t, &typesv1.Subscription{SubscriptionId: "digest-hook", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST, Url: wh.srv.URL})
	wh.setSecret(resp.GetSecret())
	e.put(t, &typesv1.Subscription{SubscriptionId: "digest-slack", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST, Url: slack.srv.URL})
	e.put(t, &typesv1.Subscription{SubscriptionId: "wave-2-only", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST,
		Url: slack.srv.URL, Filter: &typesv1.SubscriptionFilter{Waves: []int32{2}}})
	resp = e.put(t, &typesv1.Subscription{SubscriptionId: "run-end", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE,
		Url: runEnd.srv.URL, Filter: &typesv1.SubscriptionFilter{EventTypes: []string{"run.completed"}}})
	runEnd.setSecret(resp.GetSecret())

	evs := make([]*events.Event, 0, total+1)
	for i := range total {
		inst := fmt.Sprintf("i-%05d", i)
		if i%(total/failed) == 0 {
			evs = append(evs, events.MustNew(tenant, "run-big/"+inst, &eventsv1.InstallFailed{Tenant: tenant, RunId: "run-big", Wave: 1, InstanceId: inst, Reason: "exit status 1 on " + inst}))
			continue
		}
		evs = append(evs, events.MustNew(tenant, "run-big/"+inst, &eventsv1.InstallSucceeded{Tenant: tenant, RunId: "run-big", Wave: 1, InstanceId: inst}))
	}
	nFailed := countFailed(evs)
	evs = append(evs, events.MustNew(tenant, "run-big", &eventsv1.RunCompleted{Tenant: tenant, RunId: "run-big", Wave: 1,
		State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: total, Succeeded: int32(total - nFailed), Failed: int32(nFailed)}))
	stagetest.Publish(t, e.nc, evs...)

	// 10,001 events through the handler: generous bounds, for the race detector on 2 cores.
	require.Eventually(t, func() bool { return stagetest.Drained(t, e.nt.JetStream(t), notifier.Name, notifier.HandlerNotify) }, 4*time.Minute, 50*time.Millisecond)
	e.waitStatusWithin(t, "digest-hook", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT, 2*time.Minute)
	e.waitStatus(t, "digest-slack", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	e.waitStatus(t, "run-end", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	assert.Empty(t, e.deliveries(t, "wave-2-only"), "the wave filter applies to digests")

	bodies := wh.received()
	require.Len(t, bodies, 1, "one digest for the whole wave")
	d := bodies[0]
	assert.Equal(t, "run.digest", d.Type)
	require.NotNil(t, d.Notification.Digest)
	assert.EqualValues(t, total, d.Notification.Digest.Total)
	assert.EqualValues(t, nFailed, d.Notification.Digest.Failed)
	assert.Len(t, d.Notification.Digest.Failures, 50, "the digest lists a bounded number of failures")
	assert.Equal(t, nFailed-50, d.Notification.Digest.MoreFailures)
	assert.Equal(t, "i-00000", d.Notification.Digest.Failures[0].InstanceID)
	assert.Equal(t, "exit status 1 on i-00000", d.Notification.Digest.Failures[0].Reason)
	assert.Less(t, len(wh.texts()[0]), 64<<10, "the digest does not grow with the fleet")
	st := slack.texts()
	require.Len(t, st, 1)
	assert.Contains(t, st[0], fmt.Sprintf(":x: %d failed", nFailed))
	assert.Contains(t, st[0], fmt.Sprintf("… and %d more", nFailed-50))
	require.Len(t, runEnd.received(), 1)
	assert.Equal(t, "run.completed", runEnd.received()[0].Type)
}

func countFailed(evs []*events.Event) int {
	n := 0
	for _, ev := range evs {
		if _, ok := ev.Data.(*eventsv1.InstallFailed); ok {
			n++
		}
	}
	return n
}
