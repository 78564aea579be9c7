package patchd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// TestTheNotifierAsItsOwnProcessOnSecuredNATSSendsADigest runs nats-server secured from
// deploy/nats (every user from libs/natsauth's table) and the notifier's real binary as its
// own NATS user; a subscription is put over its gRPC API (mutual TLS), a run's outcomes are
// published as their producers (installer, snapshotter, scheduler), and one digest reaches the
// webhook, which the notifier may reach on loopback only because the operator allows it. Its
// buckets, its audit relay and its consumers are all within its NATS permissions.
func TestTheNotifierAsItsOwnProcessOnSecuredNATSSendsADigest(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bins := buildBinaries(t, "github.com/nats-io/nats-server/v2", "github.com/patchwave/patchwave/services/notifier/cmd/notifier")
	natsPort := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	secrets := deployNATS(t)
	startProcess(t, "nats-server", bins["nats-server"], nil, "-c", filepath.Join(filepath.Dir(secrets), "server.conf"),
		"-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-m", strconv.Itoa(freePort(t)))
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", natsPort))

	pki := stagetest.PKI(t)
	srv := pki[mtls.Services]
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "notifier", bins["notifier"], []string{
		"PATCHWAVE_TLS_CA=" + srv.CA, "PATCHWAVE_TLS_CERT=" + srv.Cert, "PATCHWAVE_TLS_KEY=" + srv.Key,
		"PATCHWAVE_NATS_URL=" + natsURL, "PATCHWAVE_NATS_CREDS=" + natsauth.CredsPath(secrets, "notifier"),
		"PATCHWAVE_GRPC_ADDR=" + addr, "PATCHWAVE_OPS_ADDR=127.0.0.1:0", "PATCHWAVE_LOG_LEVEL=warn",
		"PATCHWAVE_NOTIFY_ALLOW_NETWORKS=127.0.0.0/8", "PATCHWAVE_PUBLIC_URL=https://patchwave.example",
	})
	bodies := make(chan []byte, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- b
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	api := notifierv1.NewNotifierServiceClient(dial(t, addr, pki))
	require.Eventually(t, func() bool {
		_, err := api.PutSubscription(ctx, &notifierv1.PutSubscriptionRequest{Tenant: "acme", SubscriptionId: "digest", Subscription: &typesv1.Subscription{
			Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST, Url: hook.URL}})
		return err == nil
	}, 60*time.Second, 100*time.Millisecond, "the notifier's API answers")

	publishAs := func(service string, evs ...*events.Event) {
		t.Helper()
		nc, err := nats.Connect(natsURL, natsauth.ConnectOptions(natsauth.CredsPath(secrets, service), service)...)
		require.NoError(t, err)
		defer nc.Close()
		b, err := bus.New(ctx, bus.Config{Service: service, Conn: nc})
		require.NoError(t, err)
		require.NoError(t, b.Publish(ctx, evs...))
	}
	publishAs("installer",
		events.MustNew("acme", "run-p/i-1", &eventsv1.InstallSucceeded{Tenant: "acme", RunId: "run-p", Wave: 1, InstanceId: "i-1"}),
		events.MustNew("acme", "run-p/i-2", &eventsv1.InstallFailed{Tenant: "acme", RunId: "run-p", Wave: 1, InstanceId: "i-2", Reason: "exit 1"}))
	publishAs("snapshotter", events.MustNew("acme", "run-p/i-3", &eventsv1.SnapshotFailed{Tenant: "acme", RunId: "run-p", Wave: 1, InstanceId: "i-3", Reason: "busy"}))
	publishAs("scheduler", events.MustNew("acme", "run-p", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-p", Wave: 1,
		State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: 3, Succeeded: 1, Failed: 2}))

	select {
	case b := <-bodies:
		var body struct {
			Type         string `json:"type"`
			Notification struct {
				Digest struct {
					Total    int32 `json:"total"`
					Failures []struct {
						InstanceID string `json:"instance_id"`
					} `json:"failures"`
				} `json:"digest"`
			} `json:"notification"`
		}
		require.NoError(t, json.Unmarshal(b, &body))
		require.Equal(t, "run.digest", body.Type)
		require.EqualValues(t, 3, body.Notification.Digest.Total)
		require.Len(t, body.Notification.Digest.Failures, 2)
	case <-ctx.Done():
		t.Fatal("no digest reached the webhook")
	}
	resp, err := api.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{Tenant: "acme"})
	require.NoError(t, err)
	require.Len(t, resp.GetDeliveries(), 1)

	// The subscription's change was published as the notifier, through its audit relay.
	nc, err := nats.Connect(natsURL, natsauth.ConnectOptions(natsauth.CredsPath(secrets, natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	require.Eventually(t, func() bool {
		return readStream(t, ctx, nc).count("subscription.changed") == 1
	}, 30*time.Second, 100*time.Millisecond)
}
