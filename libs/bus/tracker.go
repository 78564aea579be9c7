package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/events"
)

// TrackerSpec describes a tracker: a durable pull consumer (named "<service>_<name>", shared by
// every replica) for events that describe operations running elsewhere, such as a snapshot a
// cloud takes in minutes. A replica holds up to MaxHeld of those messages unacknowledged while
// their operations run, keeps them in progress with one loop (so JetStream does not redeliver
// them), and every PollInterval hands the held messages due for a check to Check, which looks at
// the operations with as few batched calls as it can and decides per message: Done (acknowledged),
// Retry (redelivered after a backoff, dead-lettered once its deliveries are used up), Fail
// (dead-lettered now), or nothing (held on). A replica that dies leaves its held messages
// unacknowledged, so JetStream redelivers them after AckWait to another replica, which resumes
// tracking; a replica that stops cleanly hands them back at once.
//
// A message is due at the first tick after it arrives, then after 1, 2, 4, ... PollIntervals,
// at most MaxCheckInterval apart: an operation that runs long is looked at less and less often,
// so what one check costs follows the operations that are young or due, not every operation in
// flight, and a replica holding 100,000 long operations does not read all of them every tick.
type TrackerSpec struct {
	// Name of the tracker, e.g. "TrackSnapshots". Required; with the service name it names the
	// durable consumer and the dead-letter subject.
	Name string
	// Subjects the tracker consumes (filters, wildcards allowed), all in one stream. Required.
	Subjects []string
	// Check decides about the held messages. Required. It is called from one goroutine, never
	// twice at once, with the held set sorted by stream sequence; what it decided is applied
	// even when it returns an error (which is logged and counted).
	Check CheckFunc
	// OnDeadLetter runs before a held event goes to the dead-letter subject, as
	// HandlerSpec.OnDeadLetter does. Optional.
	OnDeadLetter DeadLetterFunc
	// MaxHeld bounds the messages this replica holds, and so its memory. Optional, default 10000.
	MaxHeld int
	// PollInterval is the pause between two checks. Optional, default 2s.
	PollInterval time.Duration
	// MaxCheckInterval bounds the pause between two checks of one held message (the backoff
	// described above), and so how late a finished operation is noticed. Optional, default
	// 8 × PollInterval; PollInterval or less checks every held message at every tick.
	MaxCheckInterval time.Duration
	// FetchBatch caps one pull request; a pull never asks for more than the free room.
	// Optional, default Config.FetchBatch.
	FetchBatch int
	// MaxAckPending bounds the messages held across every replica (the consumer's limit).
	// Optional, default 10 × MaxHeld.
	MaxAckPending int
	// DeliverNew makes a new consumer start at the end of the stream instead of its start.
	DeliverNew bool
}

// CheckFunc looks at the operations the held messages describe and decides about each with
// Held.Done, Held.Retry or Held.Fail; a message it leaves undecided stays held and is handed to
// Check again when it is next due.
type CheckFunc func(ctx context.Context, held []*Held) error

// Held is one message a tracker holds.
type Held struct {
	// Event is the decoded event; Event.Delivered counts its deliveries.
	Event *events.Event
	// Received is when this replica took the message.
	Received time.Time
	// Checks is how many checks this replica made of the message before the current one: 0 at
	// its first, when a stage looks for work a previous delivery may have finished.
	Checks int

	verdict verdict
	cause   error
}

type verdict int

const (
	verdictKeep verdict = iota
	verdictDone
	verdictRetry
	verdictFail
)

// Decided reports whether the current check decided about the message.
func (h *Held) Decided() bool { return h.verdict != verdictKeep }

// Done acknowledges the message: its operation is finished and its outcome stored.
func (h *Held) Done() { h.verdict, h.cause = verdictDone, nil }

// Retry releases the message to be redelivered after a backoff (Throttled errors wait longer
// and get more deliveries); once its deliveries are used up it is dead-lettered with err.
func (h *Held) Retry(err error) { h.verdict, h.cause = verdictRetry, err }

// Fail dead-letters the message now (after the OnDeadLetter hook) with err as the cause.
func (h *Held) Fail(err error) { h.verdict, h.cause = verdictFail, err }

type tracker struct {
	spec     TrackerSpec
	stream   string
	consumer string
	dlq      string
}

// defaultMaxHeld is TrackerSpec.MaxHeld's default.
const defaultMaxHeld = 10000

func (t *tracker) maxHeld() int {
	if t.spec.MaxHeld > 0 {
		return t.spec.MaxHeld
	}
	return defaultMaxHeld
}

func (t *tracker) pollInterval() time.Duration {
	if t.spec.PollInterval > 0 {
		return t.spec.PollInterval
	}
	return 2 * time.Second
}

func (t *tracker) maxCheckInterval() time.Duration {
	if t.spec.MaxCheckInterval > 0 {
		return max(t.spec.MaxCheckInterval, t.pollInterval())
	}
	return 8 * t.pollInterval()
}

// checkDelay is how long after its checks-th check a held message is due again: one
// PollInterval after the first, doubling with each check, at most MaxCheckInterval.
func (t *tracker) checkDelay(checks int) time.Duration {
	poll, most := t.pollInterval(), t.maxCheckInterval()
	d := poll
	for i := 1; i < checks && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

func (t *tracker) consumerSpec(service string) consumerSpec {
	mp := t.spec.MaxAckPending
	if mp <= 0 {
		mp = 10 * t.maxHeld()
	}
	return consumerSpec{
		name: t.consumer, stream: t.stream, description: fmt.Sprintf("%s tracker %s", service, t.spec.Name),
		subjects: t.spec.Subjects, deliverNew: t.spec.DeliverNew, maxAckPending: mp,
	}
}

// Track registers a tracker. It must be called before Run.
func (b *Bus) Track(spec TrackerSpec) error {
	if !namePattern.MatchString(spec.Name) {
		return fmt.Errorf("tracker name %q: must match %s", spec.Name, namePattern)
	}
	if len(spec.Subjects) == 0 || spec.Check == nil {
		return fmt.Errorf("tracker %s: Subjects and Check are required", spec.Name)
	}
	if spec.MaxHeld < 0 || spec.PollInterval < 0 || spec.MaxCheckInterval < 0 || spec.FetchBatch < 0 || spec.MaxAckPending < 0 {
		return fmt.Errorf("tracker %s: MaxHeld, PollInterval, MaxCheckInterval, FetchBatch and MaxAckPending must not be negative", spec.Name)
	}
	stream, err := streamOf(spec.Subjects)
	if err != nil {
		return fmt.Errorf("tracker %s: %w", spec.Name, err)
	}
	dlq, err := events.DLQSubject(b.cfg.Service, spec.Name)
	if err != nil {
		return fmt.Errorf("tracker %s: %w", spec.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return fmt.Errorf("tracker %s: registered after Run", spec.Name)
	}
	for _, h := range b.handlers {
		if h.spec.Name == spec.Name {
			return fmt.Errorf("tracker %s: a handler has that name", spec.Name)
		}
	}
	for _, t := range b.trackers {
		if t.spec.Name == spec.Name {
			return fmt.Errorf("tracker %s: registered twice", spec.Name)
		}
	}
	b.trackers = append(b.trackers, &tracker{spec: spec, stream: stream, consumer: Consumer(b.cfg.Service, spec.Name), dlq: dlq})
	return nil
}

// trackerPullWait bounds one pull of a tracker, and so how long a stopping tracker waits for the
// pull in flight.
const trackerPullWait = time.Second

// heldMsg is a held message with what the bus needs to settle it.
type heldMsg struct {
	msg       jetstream.Msg
	held      *Held
	seq       uint64
	delivered uint64
	// due is when the message is next handed to Check (guarded by trackRun.mu, like
	// signalled).
	due time.Time
	// signalled is when JetStream last heard of the message: its delivery, then its last
	// in-progress signal.
	signalled time.Time
}

// trackRun is one replica's running tracker.
type trackRun struct {
	b    *Bus
	t    *tracker
	cons jetstream.Consumer
	// lost is closed when the connection is closed for good.
	lost <-chan struct{}

	mu   sync.Mutex
	held map[uint64]*heldMsg
	// room is signalled when held shrinks, so a fetch loop waiting for room pulls again.
	room chan struct{}
}

func (b *Bus) runTracker(ctx context.Context, t *tracker, cons jetstream.Consumer, lost <-chan struct{}) error {
	r := &trackRun{b: b, t: t, cons: cons, lost: lost, held: map[uint64]*heldMsg{}, room: make(chan struct{}, 1)}
	log := b.log.With("tracker", t.spec.Name, "consumer", t.consumer)
	log.Debug("tracker started", "max_held", t.maxHeld(), "poll_interval", t.pollInterval())

	loopCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	fatal := make(chan error, 1)
	wg.Go(func() {
		if err := r.fetchLoop(loopCtx); err != nil {
			fatal <- err
			cancel()
		}
	})
	wg.Go(func() { r.progressLoop(loopCtx) })

	tick := time.NewTicker(t.pollInterval())
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-loopCtx.Done():
			break loop
		case <-tick.C:
			r.check(loopCtx)
		}
	}
	cancel()
	wg.Wait()
	select {
	case err = <-fatal:
	default:
	}
	r.release()
	return err
}

// fetchLoop pulls messages while there is room, and returns an error only when the consumer is
// gone or the connection is closed.
func (r *trackRun) fetchLoop(ctx context.Context) error {
	batchMax := r.t.spec.FetchBatch
	if batchMax <= 0 {
		batchMax = r.b.cfg.FetchBatch
	}
	failures := 0
	for ctx.Err() == nil {
		r.mu.Lock()
		free := r.t.maxHeld() - len(r.held)
		r.mu.Unlock()
		if free <= 0 {
			select {
			case <-r.room:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		// The pull is never cut short on the client side (no context): a message the server
		// sent before the pull expired would be lost to this replica and wait AckWait before
		// another got it. The pull ends with the server's expiry status instead, after every
		// message it sent; the short expiry keeps a stop prompt, and what arrives is held and
		// handed back by release.
		batch, err := r.cons.Fetch(min(free, batchMax), jetstream.FetchMaxWait(min(r.b.pullExpiry, trackerPullWait)))
		if err == nil {
			err = r.receive(ctx, batch)
		}
		if ctx.Err() != nil {
			return nil //nolint:nilerr // stopping: a pull cut short by the shutdown is no failure
		}
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			failures = 0
			continue
		}
		if connClosed(err) || r.b.cfg.Conn.IsClosed() {
			// No pull can succeed again: retrying would keep the tracker, and Run, for ever.
			return fmt.Errorf("tracker %s: consumer %s stopped: %w", r.t.spec.Name, r.t.consumer, err)
		}
		if gone := consumerGone(ctx, r.cons); gone != nil {
			return fmt.Errorf("tracker %s: consumer %s stopped: %w", r.t.spec.Name, r.t.consumer, gone)
		}
		failures++
		r.b.log.Warn("tracker pull interrupted", "tracker", r.t.spec.Name, "error", err)
		if sleepCtx(ctx, backoff(100*time.Millisecond, 5*time.Second, failures)) != nil {
			return nil //nolint:nilerr // stopping while waiting to pull again
		}
	}
	return nil
}

// receive holds every message of a pull until it ends, and returns its error. It gives up on
// the pull when the connection is closed for good: the pull would end only at its expiry
// (plus a second), and its messages could be neither acknowledged nor handed back.
func (r *trackRun) receive(ctx context.Context, batch jetstream.MessageBatch) error {
	msgs := batch.Messages()
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				return batch.Error()
			}
			r.add(ctx, msg)
		case <-r.lost:
			return ErrConnectionClosed
		}
	}
}

// add holds a fetched message, or dead-letters it at once when it is not a valid event.
func (r *trackRun) add(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message; it cannot be acknowledged either.
		r.b.log.Warn("tracker got a message without metadata", "tracker", r.t.spec.Name, "error", err)
		return
	}
	seq, delivered := meta.Sequence.Stream, meta.NumDelivered
	ev, err := decodeMsg(msg)
	if err != nil {
		r.settleDead(ctx, &heldMsg{msg: msg, seq: seq, delivered: delivered}, Permanent(err))
		return
	}
	ev.Sequence, ev.Delivered = seq, delivered
	now := time.Now()
	h := &heldMsg{msg: msg, seq: seq, delivered: delivered, held: &Held{Event: ev, Received: now}, due: now, signalled: now}
	r.mu.Lock()
	// A message redelivered to this replica while held replaces the old delivery, whose ack
	// would no longer count.
	r.held[seq] = h
	n := len(r.held)
	r.mu.Unlock()
	r.b.metrics.trackerHeld.WithLabelValues(r.t.spec.Name).Set(float64(n))
}

// decodeMsg decodes a JetStream message into an event; a repeated header is malformed, as in
// handlers.
func decodeMsg(msg jetstream.Msg) (*events.Event, error) {
	for k, v := range msg.Headers() {
		if len(v) > 1 {
			return nil, fmt.Errorf("%w: repeated header(s) %s", events.ErrMalformed, k)
		}
	}
	return decoded.unmarshal(msg.Subject(), msg.Data())
}

// progressLoop keeps every held message in progress: one loop for the whole set. It ticks every
// AckWait/4 and signals the messages JetStream has not heard of for AckWait/4 or more, so no
// message goes AckWait/2 without a signal, and one settled within AckWait/4 of its delivery
// (most, when operations are quick) costs none.
func (r *trackRun) progressLoop(ctx context.Context) {
	every := r.b.cfg.AckWait / 4
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		r.mu.Lock()
		var msgs []jetstream.Msg
		for _, h := range r.held {
			if now.Sub(h.signalled) >= every {
				msgs = append(msgs, h.msg)
				h.signalled = now
			}
		}
		r.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

// check hands the held messages that are due to Check and applies its verdicts.
func (r *trackRun) check(ctx context.Context) {
	now := time.Now()
	// Half a tick of slack: a message due one PollInterval after the start of the last check
	// is due at this tick, not the next one.
	horizon := now.Add(r.t.pollInterval() / 2)
	r.mu.Lock()
	var list []*heldMsg
	for _, h := range r.held {
		if !h.due.After(horizon) {
			list = append(list, h)
		}
	}
	r.mu.Unlock()
	if len(list) == 0 {
		return
	}
	slices.SortFunc(list, func(a, b *heldMsg) int { return cmp.Compare(a.seq, b.seq) })
	helds := make([]*Held, len(list))
	for i, h := range list {
		h.held.verdict, h.held.cause = verdictKeep, nil
		helds[i] = h.held
	}

	start := time.Now()
	err := r.callCheck(ctx, helds)
	r.b.metrics.trackerCheckSeconds.WithLabelValues(r.t.spec.Name).Observe(time.Since(start).Seconds())
	r.b.metrics.trackerChecks.WithLabelValues(r.t.spec.Name, map[bool]string{true: "ok", false: "error"}[err == nil]).Inc()
	if err != nil {
		r.b.log.Warn("tracker check failed", "tracker", r.t.spec.Name, "held", len(list), "error", err)
		if errors.Is(err, errCheckPanic) {
			return
		}
	}
	for _, h := range list {
		h.held.Checks++
		switch h.held.verdict {
		case verdictKeep:
			r.mu.Lock()
			h.due = now.Add(r.t.checkDelay(h.held.Checks))
			r.mu.Unlock()
			continue
		case verdictDone:
			if err := h.msg.Ack(); err != nil {
				r.b.log.Warn("ack failed", "tracker", r.t.spec.Name, "seq", h.seq, "error", err)
			}
			r.b.metrics.trackerOutcomes.WithLabelValues(r.t.spec.Name, "done").Inc()
		case verdictRetry:
			dead, delay := r.b.retry(h.held.cause, h.delivered)
			if dead {
				r.settleDead(ctx, h, h.held.cause)
			} else {
				_ = h.msg.NakWithDelay(delay)
				r.b.metrics.trackerOutcomes.WithLabelValues(r.t.spec.Name, "retry").Inc()
			}
		case verdictFail:
			r.settleDead(ctx, h, Permanent(h.held.cause))
		}
		r.remove(h)
	}
}

var errCheckPanic = errors.New("check panicked")

func (r *trackRun) callCheck(ctx context.Context, helds []*Held) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v\n%s", errCheckPanic, p, debug.Stack())
		}
	}()
	return r.t.spec.Check(ctx, helds)
}

// settleDead dead-letters a message (hook first) and acknowledges it, or keeps it for a later
// delivery when that fails.
func (r *trackRun) settleDead(ctx context.Context, h *heldMsg, cause error) {
	hdr := h.msg.Headers()
	raw := rawMsg{subject: h.msg.Subject(), seq: strconv.FormatUint(h.seq, 10), data: h.msg.Data(), header: hdr}
	if h.held == nil {
		raw.malformed = cause.Error()
	}
	log := r.b.log.With("tracker", r.t.spec.Name, "subject", raw.subject, "seq", h.seq, "delivered", h.delivered)
	target := dlqTarget{name: r.t.spec.Name, consumer: r.t.consumer, subject: r.t.dlq, hook: r.t.spec.OnDeadLetter}
	if !r.b.sendToDeadLetter(ctx, log, target, raw, cause, h.delivered) {
		_ = h.msg.NakWithDelay(r.b.keepDelay(h.delivered))
		r.b.metrics.trackerOutcomes.WithLabelValues(r.t.spec.Name, "retry").Inc()
		return
	}
	if err := h.msg.Ack(); err != nil {
		log.Warn("ack failed", "error", err)
	}
	r.b.metrics.trackerOutcomes.WithLabelValues(r.t.spec.Name, "dead_lettered").Inc()
}

func (r *trackRun) remove(h *heldMsg) {
	r.mu.Lock()
	if cur, ok := r.held[h.seq]; ok && cur == h {
		delete(r.held, h.seq)
	}
	n := len(r.held)
	r.mu.Unlock()
	r.b.metrics.trackerHeld.WithLabelValues(r.t.spec.Name).Set(float64(n))
	select {
	case r.room <- struct{}{}:
	default:
	}
}

// release hands every held message back to JetStream at shutdown, so another replica resumes
// tracking it now rather than after AckWait.
func (r *trackRun) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for seq, h := range r.held {
		_ = h.msg.Nak()
		delete(r.held, seq)
	}
	r.b.metrics.trackerHeld.WithLabelValues(r.t.spec.Name).Set(0)
}
