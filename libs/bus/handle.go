package bus

import (
	"context"
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
}

type handler struct {
	spec     HandlerSpec
	stream   string
	consumer string
	dlq      string
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

// ensureConsumer creates or updates the handler's durable pull consumer.
func (b *Bus) ensureConsumer(ctx context.Context, h *handler) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        h.consumer,
		Description:    fmt.Sprintf("%s handler %s", b.cfg.Service, h.spec.Name),
		FilterSubjects: h.spec.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        b.cfg.AckWait,
		// Unlimited at the server: the bus counts deliveries and dead-letters the message
		// itself, so a message is never dropped silently.
		MaxDeliver:    -1,
		MaxAckPending: b.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if h.spec.DeliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, h.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", h.consumer, h.stream, err)
	}
	return c, nil
}

// watermillHandler decodes the message and calls the handler with correlation and trace context.
func (b *Bus) watermillHandler(h *handler) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		if bad := m.Metadata.Get(mdBadHeader); bad != "" {
			return Permanent(fmt.Errorf("%w: repeated header(s) %s", events.ErrMalformed, bad))
		}
		ev, err := events.Unmarshal(m.Metadata.Get(mdSubject), m.Payload)
		if err != nil {
			return Permanent(err)
		}
		ev.Sequence, _ = strconv.ParseUint(m.Metadata.Get(mdSequence), 10, 64)
		ev.Delivered, _ = strconv.ParseUint(m.Metadata.Get(mdDelivered), 10, 64)
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
// failure is permanent or the message has used up its deliveries. Other failures nack the
// message, so it is redelivered after a backoff; the middleware logs them itself and returns
// no error, so the router does not log each failure a second time.
func (b *Bus) deadLetter(hd *handler) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			out, err := next(m)
			if err == nil {
				return out, nil
			}
			delivered, _ := strconv.ParseUint(m.Metadata.Get(mdDelivered), 10, 64)
			if m.Context().Err() != nil && !IsPermanent(err) {
				// The bus is stopping; the message is redelivered, not dead-lettered.
				m.Nack()
				return nil, nil
			}
			log := b.log.With("handler", hd.spec.Name, "msg_id", m.UUID,
				"subject", m.Metadata.Get(mdSubject), "delivered", delivered,
				"correlation_id", m.Metadata.Get(events.HeaderCorrelationID))
			if !IsPermanent(err) && delivered < uint64(b.cfg.MaxDeliver) {
				log.Warn("handler failed, will retry", "error", err)
				m.Nack()
				return nil, nil
			}
			if dlqErr := b.publishDeadLetter(m.Context(), hd, m, err); dlqErr != nil {
				log.Error("dead-letter publish failed, will retry", "error", dlqErr, "cause", err)
				m.Nack()
				return nil, nil
			}
			log.Error("message dead-lettered", "error", err, "dlq", hd.dlq)
			b.metrics.deadLettered.WithLabelValues(hd.spec.Name).Inc()
			return nil, nil
		}
	}
}

func (b *Bus) publishDeadLetter(ctx context.Context, hd *handler, m *message.Message, cause error) error {
	dl := nats.NewMsg(hd.dlq)
	dl.Data = m.Payload
	for k, v := range m.Metadata {
		// Nats-* headers (message id, expected stream or sequence) would change how the dead
		// letter is stored, so they are left out.
		if orig, ok := strings.CutPrefix(k, mdHeader); ok && !strings.HasPrefix(strings.ToLower(orig), "nats-") {
			dl.Header.Set(orig, v)
		}
	}
	seq := m.Metadata.Get(mdSequence)
	reason := cause.Error()
	if len(reason) > 2048 {
		reason = reason[:2048]
	}
	dl.Header.Set(events.HeaderDLQReason, headerSafe.Replace(reason))
	dl.Header.Set(events.HeaderDLQSubject, m.Metadata.Get(mdSubject))
	dl.Header.Set(events.HeaderDLQSequence, seq)
	dl.Header.Set(events.HeaderDLQHandler, hd.consumer)
	// One dead letter per stored message and handler, however often this runs.
	dl.Header.Set(nats.MsgIdHdr, "dlq/"+hd.consumer+"/"+seq)
	return b.publishMsgs(ctx, []*nats.Msg{dl})
}

// headerSafe keeps a header value on one line.
var headerSafe = strings.NewReplacer("\r\n", " | ", "\n", " | ", "\r", " ")

func logAttrs(h *handler) []any {
	return []any{slog.String("handler", h.spec.Name), slog.String("consumer", h.consumer), slog.String("stream", h.stream)}
}
