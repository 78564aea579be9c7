package natsauth_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit"
)

// tableWithBucket is the default table and a bucket the scheduler owns and the installer reads.
func tableWithBucket() natsauth.Table {
	t := natsauth.Default
	t.Buckets = append(slices.Clone(t.Buckets), natsauth.Bucket{Name: "design", Owner: "scheduler", Readers: []string{"installer"}})
	return t
}

func TestABucketIsWrittenByItsOwnerAndOnlyReadByItsReaders(t *testing.T) {
	n := testkit.StartSecureNATS(t, tableWithBucket())
	ctx := t.Context()
	owner := connect(t, n, "scheduler")
	kv, err := owner.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "design", History: 5})
	require.NoError(t, err, "the owner creates its bucket")
	_, err = owner.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "design", History: 5})
	require.NoError(t, err, "and ensures it again at the next start")
	rev, err := kv.Put(ctx, "tenants.acme", []byte(`{"waves":3}`))
	require.NoError(t, err)
	_, err = kv.Update(ctx, "tenants.acme", []byte(`{"waves":2}`), rev)
	require.NoError(t, err, "it writes with revisions")

	reader := connect(t, n, "installer")
	rkv, err := reader.js.KeyValue(ctx, "design")
	require.NoError(t, err)
	entry, err := rkv.Get(ctx, "tenants.acme")
	require.NoError(t, err, "a reader gets a key")
	require.JSONEq(t, `{"waves":2}`, string(entry.Value()))
	w, err := rkv.WatchAll(ctx)
	require.NoError(t, err, "a reader watches")
	defer func() { require.NoError(t, w.Stop()) }()
	watched := nextUpdate(t, w)
	require.Equal(t, "tenants.acme", watched.Key())
	require.Nil(t, nextUpdate(t, w), "the initial values end with a nil entry")
	_, err = kv.Put(ctx, "tenants.globex", []byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, "tenants.globex", nextUpdate(t, w).Key(), "and sees live changes")
	reader.requireNoViolation(t)

	reader.requireDenied(t, "$KV.design.tenants.acme", func(ctx context.Context) error {
		_, err := rkv.Put(ctx, "tenants.acme", []byte(`{}`))
		return err
	})
	reader.requireDenied(t, "$JS.API.STREAM.DELETE.KV_design", func(ctx context.Context) error {
		return reader.js.DeleteKeyValue(ctx, "design")
	})
	reader.requireDenied(t, "$JS.API.STREAM.UPDATE.KV_design", func(ctx context.Context) error {
		_, err := reader.nc.RequestWithContext(ctx, "$JS.API.STREAM.UPDATE.KV_design", []byte(`{"name":"KV_design","subjects":["$KV.design.>"],"max_msgs_per_subject":1}`))
		return err
	})
	stranger := connect(t, n, "notifier")
	stranger.requireDenied(t, "$JS.API.STREAM.INFO.KV_design", func(ctx context.Context) error {
		_, err := stranger.js.KeyValue(ctx, "design")
		return err
	})
	stranger.requireDenied(t, "$JS.API.DIRECT.GET.KV_design.$KV.design.tenants.acme", func(ctx context.Context) error {
		_, err := stranger.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_design.$KV.design.tenants.acme", nil)
		return err
	})
	owner.requireNoViolation(t)
}

func nextUpdate(t *testing.T, w jetstream.KeyWatcher) jetstream.KeyValueEntry {
	t.Helper()
	select {
	case e := <-w.Updates():
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no update from the watcher")
		return nil
	}
}

func TestTheSchedulersDesignAuditConsumerIsItsAlone(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	ctx := t.Context()
	scheduler := connect(t, n, "scheduler")
	kv, err := scheduler.js.CreateOrUpdateKeyValue(ctx, design.BucketConfig(1))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "tenants.acme", []byte(`{}`))
	require.NoError(t, err)
	stream := natsauth.BucketStream(design.Bucket)
	const audit = "scheduler_design_audit"
	cons, err := scheduler.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: audit, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1})
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	require.NoError(t, msg.DoubleAck(ctx), "the scheduler acknowledges its audit relay's revisions")
	scheduler.requireNoViolation(t)

	reader := connect(t, n, "reporting")
	_, err = reader.js.KeyValue(ctx, design.Bucket)
	require.NoError(t, err, "reporting reads the design")
	reader.requireDenied(t, "$JS.API.CONSUMER.MSG.NEXT."+stream+"."+audit, func(ctx context.Context) error {
		_, err := reader.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT."+stream+"."+audit, []byte(`{"batch":1}`))
		return err
	})
	reader.requireDenied(t, "$JS.API.CONSUMER.DELETE."+stream+"."+audit, func(ctx context.Context) error {
		return reader.js.DeleteConsumer(ctx, stream, audit)
	})
}
