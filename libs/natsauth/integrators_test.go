package natsauth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// integrationEnv is a secured server with the streams, an issuer, and events of two tenants.
type integrationEnv struct {
	n     *testkit.NATS
	admin jetstream.JetStream
	x     *natsauth.Integrators
}

func newIntegrationEnv(t *testing.T, change func(*natsauth.IntegratorsConfig)) *integrationEnv {
	t.Helper()
	n := testkit.StartSecureNATS(t)
	e := &integrationEnv{n: n, admin: ensureStreams(t, n)}
	cfg := natsauth.IntegratorsConfig{
		Conn:     n.ConnectAs(t, natsauth.UserIntegrations),
		System:   n.ConnectAs(t, natsauth.UserSystem),
		Material: n.Material(t),
	}
	if change != nil {
		change(&cfg)
	}
	x, err := natsauth.NewIntegrators(cfg)
	require.NoError(t, err)
	e.x = x
	return e
}

// publishRuns publishes one RunStarted per tenant and run, as the scheduler.
func (e *integrationEnv) publishRuns(t *testing.T, tenants ...string) {
	t.Helper()
	b, err := bus.New(t.Context(), bus.Config{Service: "scheduler", Conn: e.n.ConnectAs(t, "scheduler")})
	require.NoError(t, err)
	for _, tenant := range tenants {
		require.NoError(t, b.Publish(t.Context(), events.MustNew(tenant, "run-1", &eventsv1.RunStarted{Tenant: tenant, RunId: "run-1"})))
	}
}

func (e *integrationEnv) issue(t *testing.T, tenant, name string) (natsauth.IssuedIntegrator, *client) {
	t.Helper()
	cred, err := e.x.Issue(t.Context(), natsauth.IssueRequest{Tenant: tenant, Name: name})
	require.NoError(t, err)
	c, err := connectCreds(t, e.n.URL(), cred.Creds, cred.InboxPrefix)
	require.NoError(t, err)
	return cred, c
}

func fetchAll(t *testing.T, c *client, consumer string, want int) []jetstream.Msg {
	t.Helper()
	cons, err := c.js.Consumer(t.Context(), events.StreamTenant, consumer)
	require.NoError(t, err)
	var got []jetstream.Msg
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		batch, err := cons.Fetch(want-len(got), jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			got = append(got, m)
		}
		require.NoError(t, batch.Error())
	}
	return got
}

func TestAnIntegratorReadsItsTenantsEventsAndNothingElse(t *testing.T) {
	e := newIntegrationEnv(t, nil)
	e.publishRuns(t, "acme", "globex", "acme-eu")
	cred, integ := e.issue(t, "acme", "splunk")
	require.Equal(t, "integ_acme_splunk", cred.Consumer)
	require.Equal(t, "patch.acme.>", cred.FilterSubject)

	// It fetches and acknowledges its tenant's events, and only those.
	msgs := fetchAll(t, integ, cred.Consumer, 1)
	require.Len(t, msgs, 1)
	require.Equal(t, "patch.acme.run.started", msgs[0].Subject())
	ev, err := events.Unmarshal(msgs[0].Subject(), msgs[0].Data())
	require.NoError(t, err, "an integrator reads plain CloudEvents")
	require.Equal(t, "acme", ev.Tenant)
	require.NoError(t, msgs[0].DoubleAck(t.Context()), "it acknowledges")
	info, err := jetStream(t, e.n.Connect(t)).Consumer(t.Context(), events.StreamTenant, cred.Consumer)
	require.NoError(t, err)
	require.Zero(t, info.CachedInfo().NumAckPending)
	require.Zero(t, info.CachedInfo().NumPending, "globex and acme-eu are not in its consumer")
	integ.requireNoViolation(t)

	// Another tenant's integrator and a stage consumer for the denials below.
	other, _ := e.issue(t, "globex", "splunk")
	const stage = "notifier_NotifyOnOutcome"
	_, err = e.admin.CreateOrUpdateConsumer(t.Context(), events.StreamTenant, jetstream.ConsumerConfig{Durable: stage, AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)

	denied := []struct {
		name    string
		subject string
		op      func(ctx context.Context) error
	}{
		{"creating a consumer on another tenant", "$JS.API.CONSUMER.CREATE.PATCH_EVENTS.mine.patch.globex.>", func(ctx context.Context) error {
			_, err := integ.js.CreateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{Name: "mine", FilterSubject: "patch.globex.>"})
			return err
		}},
		{"creating a consumer on its own tenant", "$JS.API.CONSUMER.CREATE.PATCH_EVENTS.mine.patch.acme.>", func(ctx context.Context) error {
			_, err := integ.js.CreateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{Name: "mine", FilterSubject: "patch.acme.>"})
			return err
		}},
		{"widening its own consumer", "$JS.API.CONSUMER.CREATE.PATCH_EVENTS." + cred.Consumer + ".patch.>", func(ctx context.Context) error {
			_, err := integ.js.CreateOrUpdateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{Durable: cred.Consumer, FilterSubject: "patch.>"})
			return err
		}},
		{"fetching from another tenant's integrator consumer", "$JS.API.CONSUMER.MSG.NEXT.PATCH_EVENTS." + other.Consumer, func(ctx context.Context) error {
			_, err := integ.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.PATCH_EVENTS."+other.Consumer, []byte(`{"batch":1}`))
			return err
		}},
		{"fetching from a stage consumer", "$JS.API.CONSUMER.MSG.NEXT.PATCH_EVENTS." + stage, func(ctx context.Context) error {
			_, err := integ.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.PATCH_EVENTS."+stage, []byte(`{"batch":1}`))
			return err
		}},
		{"looking at a stage consumer", "$JS.API.CONSUMER.INFO.PATCH_EVENTS." + stage, func(ctx context.Context) error {
			_, err := integ.js.Consumer(ctx, events.StreamTenant, stage)
			return err
		}},
		{"deleting its own consumer", "$JS.API.CONSUMER.DELETE.PATCH_EVENTS." + cred.Consumer, func(ctx context.Context) error {
			return integ.js.DeleteConsumer(ctx, events.StreamTenant, cred.Consumer)
		}},
		{"reading the stream's messages directly", "$JS.API.DIRECT.GET.PATCH_EVENTS.patch.globex.run.started", func(ctx context.Context) error {
			_, err := integ.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.PATCH_EVENTS.patch.globex.run.started", nil)
			return err
		}},
		{"getting a stored message", "$JS.API.STREAM.MSG.GET.PATCH_EVENTS", func(ctx context.Context) error {
			_, err := integ.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.PATCH_EVENTS", []byte(`{"seq":2}`))
			return err
		}},
		{"publishing an event through JetStream", "patch.acme.install.succeeded", func(ctx context.Context) error {
			_, err := integ.js.Publish(ctx, "patch.acme.install.succeeded", []byte(`{}`))
			return err
		}},
	}
	for _, tt := range denied {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			integ.requireDenied(t, tt.subject, tt.op)
		})
	}
	for _, subject := range []string{"patch.acme.install.succeeded", "catalog.baseline.published", "dlq.integ.x"} {
		t.Run("publishing "+subject+" is refused", func(t *testing.T) {
			integ.requirePublishDenied(t, subject)
		})
	}
	for _, subject := range []string{"patch.globex.>", "patch.acme.>", ">", "_INBOX.>", other.InboxPrefix + ".>", "_INBOX.scheduler.>"} {
		t.Run("subscribing to "+subject+" is refused", func(t *testing.T) {
			integ.requireSubscribeDenied(t, subject)
		})
	}
	require.Equal(t, 3, stagetest.CountEvents(t, e.admin, events.StreamTenant, "patch.>"), "nothing was published")
}

func TestListShowsATenantsIntegratorsOnly(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := newIntegrationEnv(t, func(c *natsauth.IntegratorsConfig) { c.Clock = func() time.Time { return now } })
	for _, r := range []natsauth.IssueRequest{
		{Tenant: "acme", Name: "splunk", TTL: 24 * time.Hour},
		{Tenant: "acme", Name: "datadog"},
		{Tenant: "acme-eu", Name: "splunk"},
	} {
		_, err := e.x.Issue(t.Context(), r)
		require.NoError(t, err)
	}
	got, err := e.x.List(t.Context(), "acme")
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "datadog", got[0].Name)
	require.Equal(t, "splunk", got[1].Name)
	require.Equal(t, now.Add(24*time.Hour), got[1].Expires)
	require.Equal(t, now.Add(30*24*time.Hour), got[0].Expires, "the default lifetime")
	require.Equal(t, now, got[1].Issued)
	require.Equal(t, "integ_acme_splunk", got[1].Consumer)
	require.Equal(t, "_INBOX.integ_acme_splunk", got[1].InboxPrefix)
	require.NotEmpty(t, got[1].User)
	require.False(t, got[1].Expired)

	other, err := e.x.List(t.Context(), "acme-eu")
	require.NoError(t, err)
	require.Len(t, other, 1)
	none, err := e.x.List(t.Context(), "globex")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestARevokedIntegratorIsCutOffAtOnceAndRefusedAfterwards(t *testing.T) {
	e := newIntegrationEnv(t, nil)
	e.publishRuns(t, "acme")
	cred, integ := e.issue(t, "acme", "splunk")
	require.Len(t, fetchAll(t, integ, cred.Consumer, 1), 1, "it reads before the revocation")
	closed := make(chan struct{})
	integ.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })

	require.NoError(t, e.x.Revoke(t.Context(), "acme", "splunk"))
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked integrator's connection stays open")
	}
	_, err := connectCreds(t, e.n.URL(), cred.Creds, cred.InboxPrefix)
	require.ErrorIs(t, err, nats.ErrAuthorization, "its credentials are refused")
	_, err = e.admin.Consumer(t.Context(), events.StreamTenant, cred.Consumer)
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "its consumer is gone")
	list, err := e.x.List(t.Context(), "acme")
	require.NoError(t, err)
	require.Empty(t, list)

	// A new credential of the same name works; the old one stays refused.
	again, integ2 := e.issue(t, "acme", "splunk")
	require.Len(t, fetchAll(t, integ2, again.Consumer, 1), 1)
	_, err = connectCreds(t, e.n.URL(), cred.Creds, cred.InboxPrefix)
	require.ErrorIs(t, err, nats.ErrAuthorization)

	// The revocation survives a restart of the server.
	e.n.Restart(t)
	_, err = connectCreds(t, e.n.URL(), cred.Creds, cred.InboxPrefix)
	require.ErrorIs(t, err, nats.ErrAuthorization, "refused after a restart")
	_, err = connectCreds(t, e.n.URL(), again.Creds, again.InboxPrefix)
	require.NoError(t, err, "the new one still works")
}

func TestAnExpiredIntegratorIsRefusedAndPruned(t *testing.T) {
	past := time.Now().Add(-2 * time.Hour)
	e := newIntegrationEnv(t, func(c *natsauth.IntegratorsConfig) { c.Clock = func() time.Time { return past } })
	cred, err := e.x.Issue(t.Context(), natsauth.IssueRequest{Tenant: "acme", Name: "splunk", TTL: time.Hour})
	require.NoError(t, err)
	_, err = connectCreds(t, e.n.URL(), cred.Creds, cred.InboxPrefix)
	require.ErrorIs(t, err, nats.ErrAuthorization, "an expired credential is refused")

	e.x = newIntegrators(t, e.n, nil)
	list, err := e.x.List(t.Context(), "acme")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.True(t, list[0].Expired)
	pruned, err := e.x.Prune(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{cred.Consumer}, pruned)
	_, err = e.admin.Consumer(t.Context(), events.StreamTenant, cred.Consumer)
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound)
}

func TestAnIntegratorsConnectionClosesWhenItsCredentialExpires(t *testing.T) {
	e := newIntegrationEnv(t, func(c *natsauth.IntegratorsConfig) { c.MinTTL = time.Second })
	cred, err := e.x.Issue(t.Context(), natsauth.IssueRequest{Tenant: "acme", Name: "splunk", TTL: 3 * time.Second})
	require.NoError(t, err)
	integ, err := connectCreds(t, e.n.URL(), cred.Creds, cred.InboxPrefix)
	require.NoError(t, err)
	require.Eventually(t, integ.nc.IsClosed, 10*time.Second, 20*time.Millisecond, "the server closes it at expiry")
	// The server compares whole seconds, so a connection may still be let in within the second
	// of the expiry.
	require.Eventually(t, func() bool {
		c, err := connectCreds(t, e.n.URL(), cred.Creds, cred.InboxPrefix)
		if err == nil {
			c.nc.Close()
		}
		return errors.Is(err, nats.ErrAuthorization)
	}, 10*time.Second, 50*time.Millisecond, "then refuses it")
}

func newIntegrators(t *testing.T, n *testkit.NATS, change func(*natsauth.IntegratorsConfig)) *natsauth.Integrators {
	t.Helper()
	cfg := natsauth.IntegratorsConfig{
		Conn: n.ConnectAs(t, natsauth.UserIntegrations), System: n.ConnectAs(t, natsauth.UserSystem), Material: n.Material(t),
	}
	if change != nil {
		change(&cfg)
	}
	x, err := natsauth.NewIntegrators(cfg)
	require.NoError(t, err)
	return x
}

func TestIssueAndRevokeRefuseBadRequests(t *testing.T) {
	e := newIntegrationEnv(t, nil)
	_, err := e.x.Issue(t.Context(), natsauth.IssueRequest{Tenant: "acme", Name: "splunk"})
	require.NoError(t, err)

	tests := []struct {
		name   string
		req    natsauth.IssueRequest
		target error
		field  string
	}{
		{"a tenant that is not a subject token", natsauth.IssueRequest{Tenant: "ac.me", Name: "x"}, apierr.ErrInvalidArgument, "tenant"},
		{"a wildcard tenant", natsauth.IssueRequest{Tenant: "*", Name: "x"}, apierr.ErrInvalidArgument, "tenant"},
		{"an empty name", natsauth.IssueRequest{Tenant: "acme"}, apierr.ErrInvalidArgument, "name"},
		{"a name with an underscore", natsauth.IssueRequest{Tenant: "acme", Name: "a_b"}, apierr.ErrInvalidArgument, "name"},
		{"a lifetime under the minimum", natsauth.IssueRequest{Tenant: "acme", Name: "x", TTL: time.Second}, apierr.ErrInvalidArgument, "ttl"},
		{"a lifetime over the maximum", natsauth.IssueRequest{Tenant: "acme", Name: "x", TTL: 400 * 24 * time.Hour}, apierr.ErrInvalidArgument, "ttl"},
		{"a name that is live already", natsauth.IssueRequest{Tenant: "acme", Name: "splunk"}, apierr.ErrFailedPrecondition, "revoke it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			_, err := e.x.Issue(t.Context(), tt.req)
			require.ErrorIs(t, err, tt.target)
			require.ErrorContains(t, err, tt.field)
		})
	}
	var verr *apierr.ValidationError
	_, err = e.x.Issue(t.Context(), natsauth.IssueRequest{Tenant: "A", Name: "_"})
	require.ErrorAs(t, err, &verr)
	require.Len(t, verr.Violations, 2, "every problem is named")

	require.ErrorIs(t, e.x.Revoke(t.Context(), "acme", "nope"), apierr.ErrNotFound)
	require.ErrorIs(t, e.x.Revoke(t.Context(), "Acme", "nope"), apierr.ErrInvalidArgument)
	_, err = e.x.List(t.Context(), "ac.me")
	require.ErrorIs(t, err, apierr.ErrInvalidArgument)
}

func TestTheIssuerCannotTouchAStageConsumer(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	ensureStreams(t, n)
	c := connect(t, n, natsauth.UserIntegrations)
	const stage = "installer_InstallOnSnapshotCreated"
	c.requireDenied(t, "$JS.API.CONSUMER.CREATE.PATCH_EVENTS."+stage+".patch.*.>", func(ctx context.Context) error {
		_, err := c.js.CreateOrUpdateConsumer(ctx, events.StreamTenant, jetstream.ConsumerConfig{Durable: stage, FilterSubject: "patch.*.>"})
		return err
	})
	c.requireDenied(t, "$JS.API.CONSUMER.DELETE.PATCH_EVENTS."+stage, func(ctx context.Context) error {
		return c.js.DeleteConsumer(ctx, events.StreamTenant, stage)
	})
	c.requirePublishDenied(t, "patch.acme.run.started")
}

func TestIntegratorsConfigIsValidated(t *testing.T) {
	_, err := natsauth.NewIntegrators(natsauth.IntegratorsConfig{MinTTL: time.Hour, MaxTTL: time.Minute})
	require.Error(t, err)
	for _, field := range []string{"Conn", "System", "Material", "MaxTTL", "DefaultTTL"} {
		require.ErrorContains(t, err, field)
	}
}
