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

	// progress ticks every AckWait/2 for every message being handled (settle), one ticker
	// for the subscriber instead of one per message.
	progress     progressClock
	progressOnce sync.Once
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
	s.progressOnce.Do(func() {
		if every := s.b.cfg.AckWait / 2; every > 0 {
			s.progress.ch = make(chan struct{})
			s.wg.Go(func() { s.progress.run(s.closing, every) })
		}
	})
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
		wm, d := toMessage(mctx, msg)
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
			s.settle(h, d, wm)
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

// settle acks or nacks the delivery once the router has decided, and keeps it in progress
// meanwhile: every tick of the subscriber's progress clock, so at most AckWait/2 apart (the
// first may come sooner after the delivery, which costs JetStream nothing but a signal).
func (s *pullSubscriber) settle(h *handler, d *delivery, wm *message.Message) {
	tick := s.progress.next()
	for {
		select {
		case <-wm.Acked():
			if err := d.msg.Ack(); err != nil {
				s.b.log.Warn("ack failed", append(logAttrs(h), "msg_id", wm.UUID, "error", err)...)
			}
			return
		case <-wm.Nacked():
			// The dead-letter middleware chose the delay; without it (a nack from elsewhere)
			// the default backoff applies.
			delay := s.b.keepDelay(d.delivered)
			if d.delaySet {
				delay = d.retryDelay
			}
			if err := d.msg.NakWithDelay(delay); err != nil {
				s.b.log.Warn("nak failed", append(logAttrs(h), "msg_id", wm.UUID, "error", err)...)
			}
			return
		case <-tick:
			_ = d.msg.InProgress()
			tick = s.progress.next()
		case <-s.closing:
			// The router gave up waiting for the handler; JetStream redelivers after AckWait.
			return
		}
	}
}

// progressClock is a ticker every message being handled listens to: each tick closes the
// channel next returned and makes a new one. Without AckWait it never ticks (next is nil).
type progressClock struct {
	mu sync.Mutex
	ch chan struct{}
}

// next returns the channel the next tick closes.
func (p *progressClock) next() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch
}

// run ticks every interval until stop closes.
func (p *progressClock) run(stop <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.mu.Lock()
			close(p.ch)
			p.ch = make(chan struct{})
			p.mu.Unlock()
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

// delivery is a JetStream message handed to the router, with what the handler, the
// dead-letter middleware and settle need of it, read once. It is the watermill message's
// context (the message's own cancellable context, answering Value(deliveryKey{}) with the
// delivery), so nothing of it is copied into watermill's metadata map: a map of the headers,
// the subject and the numbers as strings was most of what a delivery allocated in the bus.
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
