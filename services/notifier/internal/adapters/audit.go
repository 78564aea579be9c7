package adapters

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// AuditConsumer is the durable consumer of the subscriptions' audit relay
// ("notifier_subscriptions_audit" in libs/natsauth's table).
const AuditConsumer = "notifier_subscriptions_audit"

// Revision is one revision of a subscription, as the audit relay reads it from the bucket's
// stream.
type Revision struct {
	Tenant, ID string
	Revision   uint64
	// Subscription is nil for a KV delete or purge marker (the notifier writes tombstones
	// instead, so these come only from outside tools).
	Subscription *typesv1.Subscription
}

// RunAudit hands every revision of the subscriptions bucket, in order, to handle, through a
// durable consumer shared by the replicas: the outbox of SubscriptionChanged. A revision is
// acknowledged once handle succeeded, so one whose event was not published (a crash between the
// write and the publish) is handed out again. It returns when ctx is done.
func (s *Subscriptions) RunAudit(ctx context.Context, js jetstream.JetStream, retry time.Duration, handle func(context.Context, Revision) error) error {
	stream := "KV_" + SubscriptionsBucket
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       AuditConsumer,
		Description:   "notifier: publishes SubscriptionChanged for every revision of a subscription",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       10 * time.Second,
		MaxAckPending: 1, // events follow revisions, across replicas too
		MaxDeliver:    -1,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil //nolint:nilerr // stopping is not a failure
		}
		return fmt.Errorf("audit consumer on %s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(1, jetstream.FetchContext(ctx))
		switch {
		case ctx.Err() != nil:
			return nil //nolint:nilerr // stopping is not a failure
		case err != nil:
			return fmt.Errorf("audit consumer: %w", err)
		}
		for msg := range batch.Messages() {
			s.relay(ctx, msg, retry, handle)
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("audit consumer: %w", err)
		}
	}
}

func (s *Subscriptions) relay(ctx context.Context, msg jetstream.Msg, retry time.Duration, handle func(context.Context, Revision) error) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	key := strings.TrimPrefix(msg.Subject(), "$KV."+SubscriptionsBucket+".")
	tenant, id, ok := strings.Cut(key, ".")
	if !ok {
		_ = msg.Term()
		return
	}
	r := Revision{Tenant: tenant, ID: id, Revision: meta.Sequence.Stream}
	if op := msg.Headers().Get("KV-Operation"); op != "DEL" && op != "PURGE" {
		sub := &typesv1.Subscription{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(msg.Data(), sub); err != nil {
			s.log.Warn("subscription revision does not decode; not audited", "key", key, "revision", r.Revision, "error", err)
			_ = msg.Term()
			return
		}
		sub.Revision = r.Revision
		r.Subscription = sub
	}
	if err := handle(ctx, r); err != nil {
		if ctx.Err() != nil {
			_ = msg.Nak()
			return
		}
		s.log.Warn("subscription audit event", "key", key, "revision", r.Revision, "error", err)
		_ = msg.NakWithDelay(retry)
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		s.log.Warn("subscription audit: ack", "revision", r.Revision, "error", err)
	}
}
