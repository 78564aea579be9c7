package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/events"
)

// pullSubscriber is the watermill Subscriber that feeds the router from the handlers' durable
// pull consumers. A topic is a consumer name. It replaces watermill-nats' JetStream subscriber,
// which can send on a closed channel (a panic) when it is stopped with messages buffered, drops
// messages it cannot unmarshal, and drains its connection on Close.
//
// One Subscribe pulls batches of Config.FetchBatch messages and keeps up to the handler's
// Concurrency of them in the router at once. A message the router acknowledges is acked, one it
// rejects is nacked with the redelivery backoff, and one still being handled gets an in-progress
// signal every AckWait/2 so that JetStream does not hand it to another replica meanwhile.
type pullSubscriber struct {
	b        *Bus
	handlers map[string]*handler
	cons     map[string]jetstream.Consumer

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	// failed is closed when a subscription stops while its context is alive, after failure is
	// set to the first such error. It is set before the subscription's output closes, so the
	// router that stops on that sees it.
	failed   chan struct{}
	failOnce sync.Once
	failure  error
}

var _ message.Subscriber = (*pullSubscriber)(nil)

func newPullSubscriber(b *Bus, handlers []*handler, cons map[string]jetstream.Consumer) *pullSubscriber {
	hs := make(map[string]*handler, len(handlers))
	for _, h := range handlers {
		hs[h.consumer] = h
	}
	return &pullSubscriber{b: b, handlers: hs, cons: cons, closing: make(chan struct{}), failed: make(chan struct{})}
}

// Subscribe starts pulling from the consumer named topic. The output channel closes when ctx is
// done or the subscriber is closed.
func (s *pullSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	h, ok := s.handlers[topic]
	c := s.cons[topic]
	if !ok || c == nil {
		return nil, fmt.Errorf("subscribe: no consumer %q", topic)
	}
	select {
	case <-s.closing:
		return nil, errors.New("subscribe: subscriber closed")
	default:
	}
	it, err := c.Messages(jetstream.PullMaxMessages(h.fetchBatch(s.b.cfg.FetchBatch)), jetstream.PullExpiry(s.b.pullExpiry))
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go s.pull(ctx, h, c, it, out)
	return out, nil
}

func (s *pullSubscriber) pull(ctx context.Context, h *handler, c jetstream.Consumer, it jetstream.MessagesContext, out chan<- *message.Message) {
	defer s.wg.Done()
	// out is closed only here, by its only sender.
	defer close(out)
	defer it.Stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Stop unblocks Next. Messages still buffered are not acknowledged; JetStream redelivers them
	// after AckWait.
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	slots := make(chan struct{}, h.concurrency())
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := it.Next()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				s.fail(fmt.Errorf("handler %s: consumer %s stopped: %w", h.spec.Name, h.consumer, err))
				return
			}
			// Missing heartbeats: the server is away (the iterator pulls again once the
			// connection is back), or the consumer was deleted and pull requests go unanswered,
			// which would stall the handler for good.
			if gone := consumerGone(ctx, c); gone != nil {
				s.fail(fmt.Errorf("handler %s: consumer %s stopped: %w", h.spec.Name, h.consumer, gone))
				return
			}
			s.b.log.Warn("pull interrupted", append(logAttrs(h), "error", err)...)
			continue
		}
		mctx, mcancel := context.WithCancel(ctx)
		wm := toMessage(msg)
		wm.SetContext(mctx)
		select {
		case out <- wm:
		case <-ctx.Done():
			mcancel()
			// Not handled: let another replica have it now rather than after AckWait.
			_ = msg.Nak()
			<-slots
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-slots }()
			defer mcancel()
			s.settle(h, msg, wm)
		}()
	}
}

// consumerGone returns an error when the consumer no longer exists, nil when it does or when that
// cannot be told now (the server is unreachable).
func consumerGone(ctx context.Context, c jetstream.Consumer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.Info(ctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	return nil
}

// settle acks or nacks msg once the router has decided, and keeps it in progress meanwhile.
func (s *pullSubscriber) settle(h *handler, msg jetstream.Msg, wm *message.Message) {
	var tick <-chan time.Time
	if every := s.b.cfg.AckWait / 2; every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-wm.Acked():
			if err := msg.Ack(); err != nil {
				s.b.log.Warn("ack failed", append(logAttrs(h), "msg_id", wm.UUID, "error", err)...)
			}
			return
		case <-wm.Nacked():
			// The dead-letter middleware chose the delay; without it (a nack from elsewhere)
			// the default backoff applies.
			delay, err := time.ParseDuration(wm.Metadata.Get(mdRetryDelay))
			if err != nil {
				delivered, _ := strconv.ParseUint(wm.Metadata.Get(mdDelivered), 10, 64)
				delay = s.b.keepDelay(delivered)
			}
			if err := msg.NakWithDelay(delay); err != nil {
				s.b.log.Warn("nak failed", append(logAttrs(h), "msg_id", wm.UUID, "error", err)...)
			}
			return
		case <-tick:
			_ = msg.InProgress()
		case <-s.closing:
			// The router gave up waiting for the handler; JetStream redelivers after AckWait.
			return
		}
	}
}

func (s *pullSubscriber) fail(err error) {
	s.failOnce.Do(func() {
		s.failure = err
		close(s.failed)
	})
}

// err returns the error that stopped a subscription, nil if none has failed.
func (s *pullSubscriber) err() error {
	select {
	case <-s.failed:
		return s.failure
	default:
		return nil
	}
}

// Close stops every subscription and waits for them and the pending acks.
func (s *pullSubscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
	return nil
}

// Metadata keys set on watermill messages.
const (
	mdSubject   = "nats_subject"
	mdSequence  = "nats_sequence"
	mdDelivered = "nats_delivered"
	mdBadHeader = "nats_bad_header"
	// mdRetryDelay carries the redelivery delay from the dead-letter middleware to settle.
	mdRetryDelay = "patchwave_retry_delay"
	mdHeader     = "hdr_"
)

// toMessage turns a JetStream message into a watermill message and never fails: what is wrong
// with the message (a repeated header) is recorded in metadata, so the handler dead-letters it
// instead of the consumer stalling on it.
func toMessage(msg jetstream.Msg) *message.Message {
	hdr := msg.Headers()
	md := make(message.Metadata, 6+len(hdr))
	md.Set(mdSubject, msg.Subject())
	var bad []string
	for k, v := range hdr {
		if len(v) > 1 {
			bad = append(bad, k)
		}
		if len(v) > 0 {
			// The original headers are kept for dead-lettering.
			md.Set(mdHeader+k, v[0])
		}
	}
	if len(bad) > 0 {
		md.Set(mdBadHeader, strings.Join(bad, ","))
	}
	id := ""
	if v := hdr.Values(nats.MsgIdHdr); len(v) > 0 {
		id = v[0]
	}
	if meta, err := msg.Metadata(); err == nil {
		md.Set(mdSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
		md.Set(mdDelivered, strconv.FormatUint(meta.NumDelivered, 10))
		if id == "" {
			id = "seq-" + strconv.FormatUint(meta.Sequence.Stream, 10)
		}
	}
	if v := hdr.Values(events.HeaderCorrelationID); len(v) == 1 {
		md.Set(events.HeaderCorrelationID, v[0])
	}
	wm := message.NewMessage(id, msg.Data())
	wm.Metadata = md
	return wm
}
