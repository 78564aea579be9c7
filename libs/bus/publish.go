package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/events"
)

// Publish stores evs in their streams and returns once JetStream acknowledged every one. Every
// event must be one the bus's service produces (events.Def.Producer). It fills in source, time,
// correlation id and trace context from ctx where the event has none. Each
// event is published with its id as Nats-Msg-Id; an attempt that fails or is not acknowledged
// within Config.PublishTimeout is sent again with the same id, up to Config.PublishAttempts.
// An error no retry can fix (an invalid event, one the stream refuses) is Permanent, so a
// handler that returns it dead-letters its input at once.
func (b *Bus) Publish(ctx context.Context, evs ...*events.Event) error {
	outs := make([]*outMsg, 0, len(evs))
	msgs := make([]*nats.Msg, 0, len(evs))
	for _, e := range evs {
		o := getOutMsg()
		if err := b.encode(ctx, e, o); err != nil {
			o.put()
			return Permanent(err)
		}
		outs = append(outs, o)
		msgs = append(msgs, &o.msg)
	}
	clean, err := b.publishMsgs(ctx, msgs)
	if clean {
		// Every message was acknowledged at its first send, so nothing (nats.go's futures, a
		// retry it schedules) refers to one any more. After anything else the messages are
		// left to the collector: a send given up on may still be answered or retried.
		for _, o := range outs {
			o.put()
		}
	}
	return err
}

// outMsg is a published event's NATS message with its header map and values and the
// document's buffer: one allocation, used again for a later event once JetStream has
// acknowledged this one (Publish), so a publish allocates no document, message or header map
// while the free list has one.
type outMsg struct {
	msg  nats.Msg
	hdr  nats.Header
	vals [3]string
	buf  []byte
}

// outMsgs is the free list of outMsgs, bounded: a call of thousands of events has as many
// messages in flight, and a pool that kept them all (sync.Pool keeps what it is given until
// the second collection after) would hold megabytes of documents between waves. What does
// not fit is left to the collector.
var outMsgs = make(chan *outMsg, maxFreeOutMsgs)

// maxFreeOutMsgs is how many outMsgs the free list keeps: about 1.5 MB of 1 KB documents.
const maxFreeOutMsgs = 1024

func getOutMsg() *outMsg {
	select {
	case o := <-outMsgs:
		return o
	default:
		return &outMsg{hdr: make(nats.Header, 3)}
	}
}

// maxPooledDoc is the largest document buffer an outMsg keeps for the next event.
const maxPooledDoc = 64 << 10

// put returns o to the free list; nothing may use o or its message afterwards.
func (o *outMsg) put() {
	if cap(o.buf) > maxPooledDoc {
		return
	}
	buf := o.buf[:0]
	clear(o.hdr)
	*o = outMsg{hdr: o.hdr, buf: buf}
	select {
	case outMsgs <- o:
	default:
	}
}

// encode checks e and writes its message into o.
func (b *Bus) encode(ctx context.Context, e *events.Event, o *outMsg) error {
	if e == nil {
		return errors.New("publish: nil event")
	}
	// An event built by hand must still be one a consumer can read back.
	d, err := events.DefOf(e.Data)
	if err != nil {
		return fmt.Errorf("publish event %s: %w", e.ID, err)
	}
	if !d.HasSubject(e.Tenant, e.Subject) || e.Type != string(d.Message) {
		return fmt.Errorf("publish event %s: subject %q and type %q do not match payload %s with tenant %q (want subject %q); build events with events.New",
			e.ID, e.Subject, e.Type, d.Message, e.Tenant, d.Subject(e.Tenant))
	}
	// Only an event's producer publishes it (its NATS user could not publish the subject
	// anyway): say so before the server refuses with a bare permissions violation.
	if d.Producer != b.cfg.Service {
		return fmt.Errorf("publish event %s: service %q does not publish %s, its producer is %q (events registry)",
			e.ID, b.cfg.Service, d.Message, d.Producer)
	}
	if e.Source == "" {
		e.Source = d.Source()
	}
	if e.Source != d.Source() {
		return fmt.Errorf("publish event %s: source %q is not the producer of %s (want %q)", e.ID, e.Source, d.Message, d.Source())
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.CorrelationID == "" {
		e.CorrelationID = CorrelationID(ctx)
	}
	if e.TraceParent == "" {
		e.TraceParent = TraceParent(ctx)
	}
	data, err := events.MarshalAppend(o.buf[:0], e)
	if err != nil {
		return err
	}
	o.buf = data
	// The header values are slices of o.vals (what nats.NewMsg and Header.Set, a slice per
	// value, would allocate one by one).
	o.vals = [3]string{e.ID, e.CorrelationID, e.TraceParent}
	o.msg = nats.Msg{Subject: e.Subject, Data: data, Header: o.hdr}
	o.hdr[nats.MsgIdHdr] = o.vals[0:1:1]
	if e.CorrelationID != "" {
		o.hdr[events.HeaderCorrelationID] = o.vals[1:2:2]
	}
	if e.TraceParent != "" {
		o.hdr[events.HeaderTraceParent] = o.vals[2:3:3]
	}
	return nil
}

// publishMsgs sends msgs asynchronously in windows and retries the ones not acknowledged. clean
// reports that every message was acknowledged at its first send: no send was given up on or
// failed, so nats.go holds none of them any more.
func (b *Bus) publishMsgs(ctx context.Context, msgs []*nats.Msg) (clean bool, err error) {
	pending := msgs
	var lastErr error
	for attempt := 1; len(pending) > 0; attempt++ {
		if attempt > b.cfg.PublishAttempts {
			b.metrics.publishFailed.Add(float64(len(pending)))
			return false, fmt.Errorf("publish %d events (first %s) after %d attempts: %w",
				len(pending), pending[0].Header.Get(nats.MsgIdHdr), b.cfg.PublishAttempts, lastErr)
		}
		if attempt > 1 {
			b.metrics.publishRetries.Add(float64(len(pending)))
			if err := sleepCtx(ctx, backoff(b.cfg.RetryBackoff/5, time.Second, attempt-1)); err != nil {
				return false, fmt.Errorf("publish: %w", err)
			}
		}
		var failed []*nats.Msg
		for start := 0; start < len(pending); start += b.cfg.PublishWindow {
			end := min(start+b.cfg.PublishWindow, len(pending))
			f, err := b.publishWindow(ctx, pending[start:end])
			if IsPermanent(err) {
				b.metrics.publishFailed.Add(float64(len(pending) - start))
				return false, err
			}
			if err != nil {
				lastErr = err
			}
			failed = append(failed, f...)
			if ctx.Err() != nil {
				return false, fmt.Errorf("publish: %w", ctx.Err())
			}
		}
		pending = failed
		clean = attempt == 1 && len(failed) == 0
	}
	b.metrics.published.Add(float64(len(msgs)))
	return clean, nil
}

// publishWindow sends msgs without waiting, then waits for every ack. Sending is bounded by
// PublishTimeout (a send waits while the connection has PublishWindow acks outstanding), and so
// is each message's ack, counted from that message's own send: the JetStream context fails a
// future PublishTimeout after its send (WithPublishAsyncTimeout). A whole window is not bounded
// by one deadline taken before its first send: a window of thousands sent behind other
// publishes of the same connection left its last messages a fraction of the timeout, and under
// a wave's load 12-14% of them were sent again although their acks were on the way. It returns
// the messages that must be sent again.
func (b *Bus) publishWindow(ctx context.Context, msgs []*nats.Msg) ([]*nats.Msg, error) {
	sendDeadline := time.Now().Add(b.cfg.PublishTimeout)
	futures := make([]jetstream.PubAckFuture, len(msgs))
	var failed []*nats.Msg
	var lastErr error
	for i, m := range msgs {
		stall := time.Until(sendDeadline)
		if stall <= 0 {
			lastErr = fmt.Errorf("too many publishes in flight for %s", b.cfg.PublishTimeout)
			failed = append(failed, msgs[i:]...)
			break
		}
		f, err := b.js.PublishMsgAsync(m, jetstream.WithStallWait(stall))
		if err != nil {
			if permanentPublishError(err) {
				return nil, Permanent(fmt.Errorf("publish %s: %w", m.Header.Get(nats.MsgIdHdr), err))
			}
			lastErr = err
			failed = append(failed, m)
			continue
		}
		futures[i] = f
	}
	// The per-message ack timeout answers every future; this guard only bounds the wait should
	// one never be answered (it fires a second after the last send's own timeout).
	guard := time.NewTimer(b.cfg.PublishTimeout + time.Second)
	defer guard.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if permanentPublishError(err) {
				return nil, Permanent(fmt.Errorf("publish %s: %w", msgs[i].Header.Get(nats.MsgIdHdr), err))
			}
			if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
				b.metrics.publishTimeouts.Inc()
				err = fmt.Errorf("no ack within %s", b.cfg.PublishTimeout)
			}
			lastErr = err
			failed = append(failed, msgs[i])
		case <-guard.C:
			lastErr = fmt.Errorf("no ack within %s", b.cfg.PublishTimeout)
			// Everything still unacknowledged is sent again with the same id; what was in fact
			// stored is dropped by the stream's duplicate window.
			for j := i; j < len(futures); j++ {
				if futures[j] == nil {
					continue
				}
				select {
				case <-futures[j].Ok():
					continue
				default:
				}
				failed = append(failed, msgs[j])
			}
			return failed, lastErr
		case <-ctx.Done():
			return failed, ctx.Err()
		}
	}
	return failed, lastErr
}

// permanentPublishError reports errors that no retry can fix.
func permanentPublishError(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// Wrong stream or a message the stream refuses (for example over its size limit).
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.Code == 400
	}
	return errors.Is(err, nats.ErrMaxPayload)
}

// backoff returns base doubled per attempt (from 1), capped at limit.
func backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
