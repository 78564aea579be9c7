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
// Concurrency of them in the router at once. The settle middleware, outermost around the
// handler, acks a handled message, or nacks it with the redelivery backoff, in the router's own
// goroutine for the message as soon as the handler returns: no goroutine, ticker or context of
// its own per message. One progress loop per subscription keeps the messages still being
// handled in progress, so that JetStream does not hand them to another replica meanwhile.
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

// inRouter is one subscription's messages handed to the router and not settled yet.
type inRouter struct {
	// slots holds one token per message pulled and not settled: at most the handler's
	// Concurrency.
	slots chan struct{}

	mu sync.Mutex
	m  map[*delivery]struct{}
}

func (r *inRouter) add(d *delivery) {
	r.mu.Lock()
	r.m[d] = struct{}{}
	r.mu.Unlock()
}

func (r *inRouter) remove(d *delivery) {
	r.mu.Lock()
	delete(r.m, d)
	r.mu.Unlock()
}

// settled forgets a settled message and frees its slot.
func (r *inRouter) settled(d *delivery) {
	r.remove(d)
	<-r.slots
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
	r := &inRouter{slots: make(chan struct{}, h.concurrency()), m: map[*delivery]struct{}{}}
	s.wg.Add(2)
	go s.pull(ctx, h, c, it, r, out)
	go s.progress(ctx, r)
	return out, nil
}

func (s *pullSubscriber) pull(ctx context.Context, h *handler, c jetstream.Consumer, it jetstream.MessagesContext, r *inRouter, out chan<- *message.Message) {
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

	slots := r.slots
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
		// The handler's context is ctx: it ends when the subscription stops.
		wm, d := toMessage(ctx, msg)
		d.sub, d.signalled = r, time.Now()
		r.add(d)
		select {
		case out <- wm:
		case <-ctx.Done():
			r.remove(d)
			// Not handled: let another replica have it now rather than after AckWait.
			_ = msg.Nak()
			<-slots
			return
		}
	}
}

// progress keeps the subscription's messages in the router in progress: one loop for all of
// them. It ticks every AckWait/4 and signals the messages JetStream has not heard of for
// AckWait/4 or more, so none goes AckWait/2 without a signal, and one settled within AckWait/4
// of its delivery (nearly all, with fast handlers) costs none.
func (s *pullSubscriber) progress(ctx context.Context, r *inRouter) {
	defer s.wg.Done()
	every := s.b.cfg.AckWait / 4
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			// The router gave up waiting for the handlers; JetStream redelivers what is still
			// being handled after AckWait.
			return
		case <-t.C:
		}
		now := time.Now()
		msgs = msgs[:0]
		r.mu.Lock()
		for d := range r.m {
			if now.Sub(d.signalled) >= every {
				msgs = append(msgs, d.msg)
				d.signalled = now
			}
		}
		r.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
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

// settle is the outermost middleware of every handler: once the handler and the dead-letter
// middleware have decided, it acks the message, or nacks it with the delay the dead-letter
// middleware chose, and frees its slot. It runs in the router's goroutine for the message, so
// a delivery costs no goroutine of the bus's own. The handler's outputs were acknowledged by
// JetStream before it returned, so the ack follows them, as before.
func (s *pullSubscriber) settle(h *handler) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(wm *message.Message) (out []*message.Message, err error) {
			d := deliveryOf(wm)
			if d == nil {
				return next(wm) // not one of this subscriber's messages
			}
			defer d.sub.settled(d)
			defer func() {
				if r := recover(); r != nil {
					// Past the recoverer: a panic in the dead-letter path itself. The message
					// is redelivered after the default backoff, and the router stays up.
					err = fmt.Errorf("handler %s: panic settling a message: %v", h.spec.Name, r)
					s.nak(h, d, wm)
				}
			}()
			out, err = next(wm)
			select {
			case <-wm.Nacked():
				s.nak(h, d, wm)
				return out, err
			default:
			}
			if err != nil {
				s.nak(h, d, wm)
				return out, err
			}
			if aerr := d.msg.Ack(); aerr != nil {
				s.b.log.Warn("ack failed", append(logAttrs(h), "msg_id", wm.UUID, "error", aerr)...)
			}
			return out, nil
		}
	}
}

// nak asks for a redelivery of msg after the delay the dead-letter middleware chose; without
// one (an error that got past it) the default backoff applies.
func (s *pullSubscriber) nak(h *handler, d *delivery, wm *message.Message) {
	delay := s.b.keepDelay(d.delivered)
	if d.delaySet {
		delay = d.retryDelay
	}
	if err := d.msg.NakWithDelay(delay); err != nil {
		s.b.log.Warn("nak failed", append(logAttrs(h), "msg_id", wm.UUID, "error", err)...)
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

// Close stops every subscription and waits for their pull and progress loops. A handler still
// running settles its message when it returns; one the router stopped waiting for is
// redelivered by JetStream after AckWait.
func (s *pullSubscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
	return nil
}

// delivery is a JetStream message handed to the router, from then until it is settled, with
// what the handler, the dead-letter middleware and settle need of it, read once. It is the
// watermill message's context (the subscription's context, which ends when the subscription
// stops, answering Value(deliveryKey{}) with the delivery), so nothing of it is copied into
// watermill's metadata map: a map of the headers, the subject and the numbers as strings was
// most of what a delivery allocated in the bus.
type delivery struct {
	context.Context
	msg       jetstream.Msg
	subject   string
	seq       uint64
	delivered uint64
	// bad lists the headers that came more than once ("" when none).
	bad string
	// retryDelay is the redelivery delay the dead-letter middleware chose before it nacked
	// the message (delaySet); settle reads it after the nack.
	retryDelay time.Duration
	delaySet   bool
	// sub is the subscription whose router holds the message until it is settled.
	sub *inRouter
	// signalled is when JetStream last heard of the message: its delivery, then its last
	// in-progress signal (guarded by sub.mu).
	signalled time.Time
}

type deliveryKey struct{}

// Value answers the delivery itself for deliveryKey{}, and the parent's values otherwise.
func (d *delivery) Value(key any) any {
	if key == (deliveryKey{}) {
		return d
	}
	return d.Context.Value(key)
}

// deliveryOf returns the delivery a watermill message of the bus carries, nil for any other
// message.
func deliveryOf(m *message.Message) *delivery {
	d, _ := m.Context().Value(deliveryKey{}).(*delivery)
	return d
}

// setRetryDelay records the delay for settle's nack.
func (d *delivery) setRetryDelay(delay time.Duration) { d.retryDelay, d.delaySet = delay, true }

// correlationID is the message's correlation id header, "" when it has none or several.
func (d *delivery) correlationID() string {
	if v := d.msg.Headers().Values(events.HeaderCorrelationID); len(v) == 1 {
		return v[0]
	}
	return ""
}

// toMessage turns a JetStream message into a watermill message whose context (ctx below) is
// its delivery, and never fails: what is wrong with the message (a repeated header) is
// recorded, so the handler dead-letters it instead of the consumer stalling on it.
func toMessage(ctx context.Context, msg jetstream.Msg) (*message.Message, *delivery) {
	d := &delivery{Context: ctx, msg: msg, subject: msg.Subject()}
	hdr := msg.Headers()
	var bad []string
	for k, v := range hdr {
		if len(v) > 1 {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		d.bad = strings.Join(bad, ",")
	}
	id := ""
	if v := hdr.Values(nats.MsgIdHdr); len(v) > 0 {
		id = v[0]
	}
	if meta, err := msg.Metadata(); err == nil {
		d.seq, d.delivered = meta.Sequence.Stream, meta.NumDelivered
		if id == "" {
			id = "seq-" + strconv.FormatUint(d.seq, 10)
		}
	}
	wm := message.NewMessage(id, msg.Data())
	wm.SetContext(d)
	return wm, d
}
