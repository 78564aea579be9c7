package testkit_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/testkit"
)

func TestStartNATSServesCoreNATSOnLoopback(t *testing.T) {
	n := testkit.StartNATS(t)
	require.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, n.URL())

	nc := n.Connect(t)
	sub, err := nc.SubscribeSync("greet.world")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("greet.world", []byte("hello")))
	msg, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "hello", string(msg.Data))
}

func TestStartNATSGivesEachTestItsOwnServer(t *testing.T) {
	a := testkit.StartNATS(t)
	b := testkit.StartNATS(t)
	require.NotEqual(t, a.URL(), b.URL())
	require.NotEqual(t, a.StoreDir(), b.StoreDir())
}

func TestStartNATSEnablesJetStream(t *testing.T) {
	n := testkit.StartNATS(t)
	js := n.JetStream(t)
	ctx := t.Context()

	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	ack, err := js.Publish(ctx, "orders.created", []byte("1"))
	require.NoError(t, err)
	require.Equal(t, uint64(1), ack.Sequence)
}

func TestRestartKeepsStreamsAndClientsReconnect(t *testing.T) {
	n := testkit.StartNATS(t)
	ctx := t.Context()
	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	for _, body := range []string{"a", "b", "c"} {
		_, err := js.Publish(ctx, "events.x", []byte(body))
		require.NoError(t, err)
	}
	urlBefore := n.URL()

	n.Restart(t)

	require.Equal(t, urlBefore, n.URL(), "the server comes back on the same address")
	require.Eventually(t, nc.IsConnected, 10*time.Second, 20*time.Millisecond, "the client reconnects")
	var info *jetstream.StreamInfo
	require.Eventually(t, func() bool {
		stream, err := js.Stream(ctx, "EVENTS")
		if err != nil {
			return false
		}
		info, err = stream.Info(ctx)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the stream is recovered from the store")
	require.Equal(t, uint64(3), info.State.Msgs)

	ack, err := js.Publish(ctx, "events.x", []byte("d"))
	require.NoError(t, err)
	require.Equal(t, uint64(4), ack.Sequence)
}

func TestRestartKeepsCoreSubscriptionsWorking(t *testing.T) {
	n := testkit.StartNATS(t)
	nc := n.Connect(t)
	sub, err := nc.SubscribeSync("ping")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	n.Restart(t)
	require.Eventually(t, func() bool { return nc.Status() == nats.CONNECTED }, 10*time.Second, 20*time.Millisecond)

	pub := n.Connect(t)
	// The resubscription travels with the reconnect; publish until it is
	// in place on the new server.
	require.Eventually(t, func() bool {
		if err := pub.Publish("ping", []byte("pong")); err != nil {
			return false
		}
		msg, err := sub.NextMsg(50 * time.Millisecond)
		return err == nil && string(msg.Data) == "pong"
	}, 10*time.Second, 10*time.Millisecond)
}
