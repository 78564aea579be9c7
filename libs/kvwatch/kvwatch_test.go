package kvwatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/kvwatch"
	"github.com/patchwave/patchwave/libs/testkit"
)

func TestFollowAppliesTheInitialValuesThenTheChangesUntilCancelled(t *testing.T) {
	js := testkit.StartNATS(t).JetStream(t)
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "follow"})
	require.NoError(t, err)
	_, err = kv.Put(ctx, "a", []byte("1"))
	require.NoError(t, err)
	w, err := kv.WatchAll(ctx)
	require.NoError(t, err)

	fctx, cancel := context.WithCancel(ctx)
	loaded := make(chan struct{})
	seen := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- kvwatch.Follow(fctx, w, func() { close(loaded) }, func(e jetstream.KeyValueEntry) {
			seen <- e.Key() + "=" + string(e.Value())
		})
	}()
	require.Equal(t, "a=1", <-seen)
	<-loaded
	_, err = kv.Put(ctx, "b", []byte("2"))
	require.NoError(t, err)
	require.Equal(t, "b=2", <-seen)
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return when its context was cancelled")
	}
}
