package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/events"
)

// HandlerFunc handles one event. Return nil to acknowledge it, an error to have it redelivered
// after a backoff, or a Permanent error to dead-letter it.
type HandlerFunc func(ctx context.Context, ev *events.Event) error

// HandlerSpec describes one stage handler.
type HandlerSpec struct {
	// Name of the handler, e.g. "TakeSnapshotOnJobRequested". Required; with the service
	// name it names the durable consumer and the dead-letter subject.
	Name string
	// Subjects the handler consumes (filters, wildcards allowed), all in one stream. Required.
	Subjects []string
	// Handle is called for each event. Required.
	Handle HandlerFunc
	// DeliverNew makes a new consumer start at the end of the stream instead of its start.
	DeliverNew bool
	// Concurrency is how many events this replica handles at once. Optional, default 8.
	Concurrency int
	// FetchBatch is how many messages this replica pulls ahead. Optional, default
	// min(Config.FetchBatch, Concurrency): messages pulled ahead get no in-progress signal, so
	// behind a slow handler they would outlive AckWait and be redelivered elsewhere. Raise it
	// only for fast handlers.
	FetchBatch int
	// OnDeadLetter runs before a valid event of this handler goes to the dead-letter subject
	// (its deliveries are used up, or the error is Permanent), so the stage can publish the
	// job's failure outcome. When it fails the message is redelivered later, never lost.
	// Optional.
	OnDeadLetter DeadLetterFunc
}

// DeadLetterFunc is called with a valid event that is about to be dead-lettered. Return nil
// once whatever must follow from the failure (a failure outcome) is stored; an error keeps the
// message and retries it after a backoff.
type DeadLetterFunc func(ctx context.Context, dl DeadLetter) error

// DeadLetter describes an event that is about to be dead-lettered.
type DeadLetter struct {
	// Event is the decoded event.
	Event *events.Event
	// Cause is the last handler (or tracker) error.
	Cause error
	// Deliveries is how many times the message was delivered.
	Deliveries uint64
	// Reason is the sentence a failure outcome should carry: "dead-lettered after 5 attempts:
	// <cause>", or "dead-lettered: <cause>" for a Permanent error.
	Reason string
}

// deadLetterReason is DeadLetter.Reason.
func deadLetterReason(cause error, deliveries uint64) string {
	if IsPermanent(cause) {
		return "dead-lettered: " + cause.Error()
	}
	return fmt.Sprintf("dead-lettered after %d attempts: %v", deliveries, cause)
}

type handler struct {
	spec     HandlerSpec
	stream   string
	consumer string
	dlq      string
}

// retry decides what happens to a message that failed with err at its delivered-th delivery:
// dead-lettered (Permanent, or out of deliveries), or redelivered after delay.
func (b *Bus) retry(err error, delivered uint64) (deadLetter bool, delay time.Duration) {
	if IsPermanent(err) {
		return true, 0
	}
	limit, base := b.cfg.MaxDeliver, b.cfg.RetryBackoff
	if IsThrottled(err) {
		limit, base = b.cfg.MaxDeliverThrottled, b.cfg.ThrottledBackoff
	}
	if delivered >= uint64(limit) {
		return true, 0
	}
	return false, backoff(base, max(base, b.cfg.MaxRetryBackoff), int(min(delivered, 32)))
}

// defaultConcurrency is HandlerSpec.Concurrency's default.
const defaultConcurrency = 8

func (h *handler) concurrency() int {
	if h.spec.Concurrency > 0 {
		return h.spec.Concurrency
	}
	return defaultConcurrency
}

// fetchBatch is how many messages the handler's subscription pulls ahead.
func (h *handler) fetchBatch(limit int) int {
	if h.spec.FetchBatch > 0 {
		return h.spec.FetchBatch
	}
	return max(1, min(limit, h.concurrency()))
}

// Consumer returns the durable consumer name of a handler of service.
func Consumer(service, handler string) string { return service + "_" + handler }

// Handle registers a handler. It must be called before Run.
func (b *Bus) Handle(spec HandlerSpec) error {
	if !namePattern.MatchString(spec.Name) {
		return fmt.Errorf("handler name %q: must match %s", spec.Name, namePattern)
	}
	if len(spec.Subjects) == 0 || spec.Handle == nil {
		return fmt.Errorf("handler %s: Subjects and Handle are required", spec.Name)
	}
	stream, err := streamOf(spec.Subjects)
	if err != nil {
		return fmt.Errorf("handler %s: %w", spec.Name, err)
	}
	dlq, err := events.DLQSubject(b.cfg.Service, spec.Name)
	if err != nil {
		return fmt.Errorf("handler %s: %w", spec.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return fmt.Errorf("handler %s: registered after Run", spec.Name)
	}
	for _, h := range b.handlers {
		if h.spec.Name == spec.Name {
			return fmt.Errorf("handler %s: registered twice", spec.Name)
		}
	}
	b.handlers = append(b.handlers, &handler{
		spec: spec, stream: stream, consumer: Consumer(b.cfg.Service, spec.Name), dlq: dlq,
	})
	return nil
}

// Handle registers a handler for one payload type T. An event of another type is dead-lettered.
func Handle[T proto.Message](b *Bus, name string, fn func(ctx context.Context, ev *events.Event, msg T) error, subjects ...string) error {
	if len(subjects) == 0 {
		subjects = []string{events.Pattern[T]()}
	}
	return b.Handle(HandlerSpec{
		Name:     name,
		Subjects: subjects,
		Handle: func(ctx context.Context, ev *events.Event) error {
			msg, ok := ev.Data.(T)
			if !ok {
				return Permanent(fmt.Errorf("handler %s: event %s has type %s, want %T", name, ev.ID, ev.Type, *new(T)))
			}
			return fn(ctx, ev, msg)
		},
	})
}

func streamOf(subjects []string) (string, error) {
	var stream string
	for _, s := range subjects {
		st, err := events.StreamFor(s)
		if err != nil {
			return "", err
		}
		if stream != "" && st != stream {
			return "", fmt.Errorf("subjects %v span streams %s and %s", subjects, stream, st)
		}
		stream = st
	}
	return stream, nil
}

// consumerSpec is what a durable pull consumer of a handler or tracker is made of.
type consumerSpec struct {
	name, stream, description string
	subjects                  []string
	deliverNew                bool
	maxAckPending             int
}

// ensureConsumer creates or updates a handler's or tracker's durable pull consumer.
func (b *Bus) ensureConsumer(ctx context.Context, cs consumerSpec) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        cs.name,
		Description:    cs.description,
		FilterSubjects: cs.subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        b.cfg.AckWait,
		// Unlimited at the server: the bus counts deliveries and dead-letters the message
		// itself, so a message is never dropped silently.
		MaxDeliver:    -1,
		MaxAckPending: cs.maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if cs.deliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, cs.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", cs.name, cs.stream, err)
	}
	return c, nil
}

func (h *handler) consumerSpec(service string, maxAckPending int) consumerSpec {
	return consumerSpec{
		name: h.consumer, stream: h.stream, description: fmt.Sprintf("%s handler %s", service, h.spec.Name),
		subjects: h.spec.Subjects, deliverNew: h.spec.DeliverNew, maxAckPending: maxAckPending,
	}
}

// watermillHandler decodes the message and calls the handler with correlation and trace context.
func (b *Bus) watermillHandler(h *handler) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		d := deliveryOf(m)
		if d == nil {
			return Permanent(errors.New("not a message of the bus's subscriber"))
		}
		if d.bad != "" {
			return Permanent(fmt.Errorf("%w: repeated header(s) %s", events.ErrMalformed, d.bad))
		}
		ev, err := decoded.unmarshal(d.subject, m.Payload)
		if err != nil {
			return Permanent(err)
		}
		ev.Sequence, ev.Delivered = d.seq, d.delivered
		ctx := m.Context()
		corr := ev.CorrelationID
		if corr == "" {
			corr = NewCorrelationID()
		}
		ctx = WithCorrelationID(ctx, corr)
		if ev.TraceParent != "" {
			ctx = WithTraceParent(ctx, childTraceParent(ev.TraceParent))
		}
		start := time.Now()
		err = h.spec.Handle(ctx, ev)
		b.metrics.handled.WithLabelValues(h.spec.Name, outcome(err)).Inc()
		b.metrics.handleSeconds.WithLabelValues(h.spec.Name).Observe(time.Since(start).Seconds())
		return err
	}
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case IsPermanent(err):
		return "permanent"
	default:
		return "error"
	}
}

// recoverer turns a handler panic into an error, so a redelivery and then the dead-letter path
// take care of it.
func recoverer(h message.HandlerFunc) message.HandlerFunc {
	return func(m *message.Message) (msgs []*message.Message, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
			}
		}()
		return h(m)
	}
}

// deadLetter acknowledges a failing message after it goes to the dead-letter subject, when the
// failure is permanent or the message has used up its deliveries; the handler's OnDeadLetter
// hook runs first for a valid event. Other failures nack the message, so it is redelivered
// after a backoff; the middleware logs them itself and returns no error, so the router does
// not log each failure a second time.
func (b *Bus) deadLetter(hd *handler) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			out, err := next(m)
			if err == nil {
				return out, nil
			}
			d := deliveryOf(m)
			if d == nil {
				m.Nack()
				return nil, nil
			}
			delivered := d.delivered
			if m.Context().Err() != nil && !IsPermanent(err) {
				// The bus is stopping; the message is redelivered, not dead-lettered.
				d.setRetryDelay(0)
				m.Nack()
				return nil, nil
			}
			log := b.log.With("handler", hd.spec.Name, "msg_id", m.UUID,
				"subject", d.subject, "delivered", delivered,
				"correlation_id", d.correlationID())
			dead, delay := b.retry(err, delivered)
			if !dead {
				log.Warn("handler failed, will retry", "error", err, "retry_in", delay)
				d.setRetryDelay(delay)
				m.Nack()
				return nil, nil
			}
			raw := rawFromDelivery(d)
			if ok := b.sendToDeadLetter(m.Context(), log, dlqTarget{name: hd.spec.Name, consumer: hd.consumer, subject: hd.dlq, hook: hd.spec.OnDeadLetter}, raw, err, delivered); !ok {
				d.setRetryDelay(b.keepDelay(delivered))
				m.Nack()
			}
			return nil, nil
		}
	}
}

// keepDelay is the redelivery delay of a message that could not be dead-lettered yet.
func (b *Bus) keepDelay(delivered uint64) time.Duration {
	return backoff(b.cfg.RetryBackoff, b.cfg.MaxRetryBackoff, int(min(delivered, 32)))
}

// dlqTarget is where a handler's or tracker's dead letters go.
type dlqTarget struct {
	name, consumer, subject string
	hook                    DeadLetterFunc
}

// rawMsg is a received message as the dead-letter path needs it.
type rawMsg struct {
	subject string
	seq     string
	data    []byte
	// header holds the original headers, first value of each.
	header nats.Header
	// malformed says why the message is not a valid event ("" when it is one).
	malformed string
}

// rawFromDelivery is the dead-letter path's view of a handler's delivery: the first value of
// each header, and the repeated headers as the reason it is malformed.
func rawFromDelivery(d *delivery) rawMsg {
	r := rawMsg{subject: d.subject, seq: strconv.FormatUint(d.seq, 10), data: d.msg.Data(), header: nats.Header{}, malformed: d.bad}
	for k, v := range d.msg.Headers() {
		if len(v) > 0 {
			r.header.Set(k, v[0])
		}
	}
	return r
}

// sendToDeadLetter runs the hook for a valid event, then publishes the dead letter. It reports
// false when the message must be kept (and retried later) because the hook or the publish
// failed.
func (b *Bus) sendToDeadLetter(ctx context.Context, log *slog.Logger, t dlqTarget, raw rawMsg, cause error, delivered uint64) bool {
	reason := deadLetterReason(cause, delivered)
	if t.hook != nil && raw.malformed == "" {
		if ev, err := events.Unmarshal(raw.subject, raw.data); err == nil {
			ev.Sequence, _ = strconv.ParseUint(raw.seq, 10, 64)
			ev.Delivered = delivered
			if err := t.hook(ctx, DeadLetter{Event: ev, Cause: cause, Deliveries: delivered, Reason: reason}); err != nil {
				log.Error("dead-letter hook failed, will retry", "error", err, "cause", cause)
				b.metrics.deadLetterHookFailed.WithLabelValues(t.name).Inc()
				return false
			}
		}
	}
	if err := b.publishDeadLetter(ctx, t, raw, reason); err != nil {
		log.Error("dead-letter publish failed, will retry", "error", err, "cause", cause)
		return false
	}
	log.Error("message dead-lettered", "error", cause, "dlq", t.subject)
	b.metrics.deadLettered.WithLabelValues(t.name).Inc()
	return true
}

func (b *Bus) publishDeadLetter(ctx context.Context, t dlqTarget, raw rawMsg, reason string) error {
	dl := nats.NewMsg(t.subject)
	dl.Data = raw.data
	for k, v := range raw.header {
		// Nats-* headers (message id, expected stream or sequence) would change how the dead
		// letter is stored, so they are left out.
		if len(v) > 0 && !strings.HasPrefix(strings.ToLower(k), "nats-") {
			dl.Header.Set(k, v[0])
		}
	}
	if len(reason) > 2048 {
		reason = reason[:2048]
	}
	dl.Header.Set(events.HeaderDLQReason, headerSafe.Replace(reason))
	dl.Header.Set(events.HeaderDLQSubject, raw.subject)
	dl.Header.Set(events.HeaderDLQSequence, raw.seq)
	dl.Header.Set(events.HeaderDLQHandler, t.consumer)
	// One dead letter per stored message and handler, however often this runs.
	dl.Header.Set(nats.MsgIdHdr, "dlq/"+t.consumer+"/"+raw.seq)
	_, err := b.publishMsgs(ctx, []*nats.Msg{dl})
	return err
}

// headerSafe keeps a header value on one line.
var headerSafe = strings.NewReplacer("\r\n", " | ", "\n", " | ", "\r", " ")

func logAttrs(h *handler) []any {
	return []any{slog.String("handler", h.spec.Name), slog.String("consumer", h.consumer), slog.String("stream", h.stream)}
}
