package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/events"
)

// A bus reads the stream once for all of its projections on it: the projections of one stream
// form a group with one ordered consumer over the union of their subjects, and the group's
// reader decodes each message once and hands it to every projection whose subjects it is on.
// Each projection keeps its own checkpoint (the group starts at the lowest, and a projection
// skips what is at or below its own), its own catch-up target and CaughtUp, and its own
// goroutine, so a slow read model delays the others of its group only once its queue is full.
// A projection that asks for a replay (ErrReplay, Replay) restarts the group: it reads its
// Checkpoint again, and the others go on from where they are.

// projGroup is the projections of one bus that share an ordered consumer of one stream.
type projGroup struct {
	stream  string
	members []*projection
	// filters are the members' subjects merged: none overlaps another (JetStream refuses
	// overlapping filters), a subject covered by a wider one is left out.
	filters []string
	// wants caches, per subject, the members whose subjects it is on; only the reader uses it.
	wants map[string][]int
}

// memberQueue is how many batches a group's reader hands a projection ahead of its Apply.
const memberQueue = 8

// groupFetch bounds the messages the reader takes before it hands them out, and groupLinger
// the time it spends taking them.
const (
	groupFetch  = DefaultProjectionBatch
	groupLinger = 20 * time.Millisecond
)

// heldLinger is how long the reader waits for the next message while a replayed batch that
// is not full waits for more (its projection was busy), before it hands that batch out.
const heldLinger = 50 * time.Millisecond

// held says whether a member has events read and not handed to it yet.
func held(st []memberState) bool {
	for i := range st {
		if len(st[i].evs) > 0 {
			return true
		}
	}
	return false
}

// progressEvery is how far the group may read past a projection's last batch before the
// projection is told (an empty batch), so a restart of the group does not read far back for a
// projection whose subjects are quiet.
const progressEvery = 10000

// groupProjections puts the projections of each stream into as few groups as it can, in
// registration order: a projection joins the first group of its stream whose filters its
// subjects merge with.
func groupProjections(ps []*projection) []*projGroup {
	var groups []*projGroup
next:
	for _, p := range ps {
		for _, g := range groups {
			if g.stream != p.stream {
				continue
			}
			if merged, ok := mergeFilters(g.filters, p.spec.Subjects); ok {
				g.filters = merged
				g.members = append(g.members, p)
				continue next
			}
		}
		filters, ok := mergeFilters(nil, p.spec.Subjects)
		if !ok {
			// Overlapping subjects of one projection: JetStream says what is wrong.
			filters = slices.Clone(p.spec.Subjects)
		}
		groups = append(groups, &projGroup{stream: p.stream, members: []*projection{p}, filters: filters})
	}
	return groups
}

// mergeFilters adds subjects to the filters have, leaving out a subject a filter covers and a
// filter a subject covers; it reports false when a subject overlaps a filter without either
// covering the other.
func mergeFilters(have, subjects []string) ([]string, bool) {
	out := slices.Clone(have)
	for _, s := range subjects {
		st := strings.Split(s, ".")
		covered := false
		keep := out[:0]
		for _, f := range out {
			ft := strings.Split(f, ".")
			switch {
			case covered:
				keep = append(keep, f)
			case subjectCovers(ft, st):
				covered = true
				keep = append(keep, f)
			case subjectCovers(st, ft):
				// s is wider: f goes.
			case subjectsOverlap(ft, st):
				return nil, false
			default:
				keep = append(keep, f)
			}
		}
		out = keep
		if !covered {
			out = append(out, s)
		}
	}
	return out, true
}

// subjectMatch reports whether the subject (tokens, no wildcards) is on the filter.
func subjectMatch(filter, subject []string) bool {
	for i, t := range filter {
		if t == ">" {
			return len(subject) > i
		}
		if i >= len(subject) || (t != "*" && t != subject[i]) {
			return false
		}
	}
	return len(filter) == len(subject)
}

// subjectCovers reports whether every subject on filter b is on filter a.
func subjectCovers(a, b []string) bool {
	for i, t := range a {
		if t == ">" {
			return len(b) > i
		}
		if i >= len(b) || b[i] == ">" || (t != "*" && (b[i] == "*" || b[i] != t)) {
			return false
		}
	}
	return len(a) == len(b)
}

// subjectsOverlap reports whether some subject is on both filters.
func subjectsOverlap(a, b []string) bool {
	for i := 0; ; i++ {
		if i == len(a) || i == len(b) {
			return len(a) == len(b)
		}
		if a[i] == ">" || b[i] == ">" {
			return true
		}
		if a[i] != "*" && b[i] != "*" && a[i] != b[i] {
			return false
		}
	}
}

// want returns the members whose subjects subject is on.
func (g *projGroup) want(subject string) []int {
	if w, ok := g.wants[subject]; ok {
		return w
	}
	if len(g.wants) >= 4096 {
		clear(g.wants) // subjects are per tenant and kind: this bounds the cache, never hit in practice
	}
	tokens := strings.Split(subject, ".")
	var w []int
	for i, m := range g.members {
		if m.wants(tokens) {
			w = append(w, i)
		}
	}
	g.wants[subject] = w
	return w
}

// runGroup runs a group until ctx ends or an error stops it; a projection's replay restarts it.
func (b *Bus) runGroup(ctx context.Context, g *projGroup) error {
	g.wants = map[string][]int{}
	for _, m := range g.members {
		m.reread = true
	}
	for {
		err := b.groupFromCheckpoints(ctx, g)
		if !errors.Is(err, ErrReplay) || ctx.Err() != nil {
			return err
		}
		var names []string
		for _, m := range g.members {
			if m.reread {
				names = append(names, m.spec.Name)
			}
		}
		b.log.Warn("projection replays from its checkpoint", "projection", strings.Join(names, ","), "reason", err)
	}
}

// startMember reads a member's checkpoint and catch-up target when it (re)starts, and puts it
// where the group has to read from for it: just before the first message on its subjects after
// its checkpoint, or at the end of the stream when there is none. A projection whose subjects are
// quiet (or have never had a message) thus never makes its group read the stream from its old
// checkpoint again after a restart: only the projections with something to read set where the
// group starts.
func (b *Bus) startMember(ctx context.Context, stream string, m *projection) error {
	var from uint64
	if m.spec.Checkpoint != nil {
		var err error
		if from, err = m.spec.Checkpoint(ctx); err != nil {
			return fmt.Errorf("projection %s checkpoint: %w", m.spec.Name, err)
		}
	}
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("projection %s: stream %s: %w", m.spec.Name, stream, err)
	}
	// The stream's end, taken before the lookups below: a message on the projection's subjects
	// stored after it has a higher sequence, so none is skipped.
	end := s.CachedInfo().State.LastSeq
	// The last message on the projection's subjects when it starts: once it is applied, or at
	// once when the checkpoint is past it or nothing matches, the projection has caught up.
	target, err := lastSequence(ctx, s, m.spec.Subjects)
	if err != nil {
		return fmt.Errorf("projection %s: %w", m.spec.Name, err)
	}
	pos := from
	if target > from {
		next, err := nextSequence(ctx, s, m.spec.Subjects, from+1)
		if err != nil {
			return fmt.Errorf("projection %s: %w", m.spec.Name, err)
		}
		if next > from+1 {
			pos = next - 1
		}
	} else {
		pos = max(from, end)
	}
	m.pos.Store(pos)
	m.target, m.live, m.reread = target, false, false
	return nil
}

// markCaughtUp makes the member live and calls its CaughtUp the first time.
func (b *Bus) markCaughtUp(ctx context.Context, m *projection) error {
	m.live = true
	var err error
	m.once.Do(func() {
		if m.spec.CaughtUp != nil {
			if err = m.spec.CaughtUp(ctx); err != nil {
				err = fmt.Errorf("projection %s caught up: %w", m.spec.Name, err)
				return
			}
		}
		close(m.caughtUp)
		b.log.Debug("projection caught up", "projection", m.spec.Name, "target", m.target)
	})
	return err
}

// groupFromCheckpoints reads the stream for the group from its members' positions until ctx
// ends, an error stops it, or a member asks for a replay (an error wrapping ErrReplay).
func (b *Bus) groupFromCheckpoints(ctx context.Context, g *projGroup) error {
	start, stored := uint64(math.MaxUint64), uint64(0)
	for _, m := range g.members {
		if m.reread {
			if err := b.startMember(ctx, g.stream, m); err != nil {
				return err
			}
		}
		start = min(start, m.pos.Load())
		stored = max(stored, m.target)
	}
	b.log.Debug("projections read the stream", "projections", g.names(), "stream", g.stream, "after", start)
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: g.filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if start > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start + 1
	}
	it, err := b.groupMessages(ctx, g.stream, cfg, stored)
	if err != nil {
		return fmt.Errorf("projections %s %w", g.names(), err)
	}
	defer it.Stop()

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(actx, it.Stop)
	defer stop()
	// What the reader starts from, taken before the members' goroutines run.
	st := make([]memberState, len(g.members))
	for i, m := range g.members {
		p := m.pos.Load()
		st[i] = memberState{skip: p, live: m.live || m.target <= p, last: p, sent: p}
	}
	var wg sync.WaitGroup
	for _, m := range g.members {
		m.replay.Store(false)
		m.ch = make(chan projBatch, memberQueue)
		wg.Go(func() { b.runMember(actx, m, cancel) })
		if m.spec.Replay != nil {
			wg.Go(func() {
				select {
				case <-m.spec.Replay:
					m.replay.Store(true)
					cancel(fmt.Errorf("projection %s: asked to replay: %w", m.spec.Name, ErrReplay))
				case <-actx.Done():
				}
			})
		}
	}
	rerr := b.readGroup(actx, g, it, st, stored)
	cancel(rerr)
	wg.Wait()
	for _, m := range g.members {
		if m.replay.Load() {
			m.reread = true
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	err = context.Cause(actx)
	if errors.Is(err, ErrReplay) || !errors.Is(err, errReaderStopped) {
		return err
	}
	// The ordered consumer recreates itself after server restarts; an error here means it
	// cannot go on (closed connection).
	return fmt.Errorf("projections %s: %w", g.names(), rerr)
}

// errReaderStopped wraps the error that stopped a group's reader.
var errReaderStopped = errors.New("reading stopped")

func (g *projGroup) names() string {
	names := make([]string, len(g.members))
	for i, m := range g.members {
		names[i] = m.spec.Name
	}
	return strings.Join(names, ",")
}

// runMember applies the batches the reader hands a member, settles it (its Settle) when none
// waits, and marks it caught up once it has applied up to its target and settled. It cancels
// the group's run with the reason when it must stop: a replay, or a CaughtUp error.
func (b *Bus) runMember(ctx context.Context, m *projection, cancel context.CancelCauseFunc) {
	// failed stops the group for err: a replay, a CaughtUp error; or ctx ended.
	failed := func(err error) {
		if errors.Is(err, ErrReplay) {
			m.replay.Store(true)
			cancel(fmt.Errorf("projection %s: %w", m.spec.Name, err))
		} else if ctx.Err() == nil {
			cancel(err)
		}
	}
	caughtUp := func() error {
		// What the projection left under way is written before it counts as caught up.
		if err := b.settle(ctx, m); err != nil {
			return err
		}
		return b.markCaughtUp(ctx, m)
	}
	if !m.live && m.target <= m.pos.Load() {
		if err := caughtUp(); err != nil {
			failed(err)
			return
		}
	}
	for {
		var pb projBatch
		select {
		case pb = <-m.ch:
		default:
			// Nothing waits: settle what the projection left under way, then wait.
			if err := b.settle(ctx, m); err != nil {
				failed(err)
				return
			}
			m.waiting.Store(true)
			select {
			case pb = <-m.ch:
				m.waiting.Store(false)
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return // the group stops (a replay): what is queued is read again, not applied now
		}
		if len(pb.evs) > 0 {
			if err := b.applyAll(ctx, m, pb.evs, pb.live); err != nil {
				if errors.Is(err, ErrReplay) {
					failed(err)
				}
				return // or ctx done
			}
			m.projected.Add(float64(len(pb.evs)))
		}
		m.pos.Store(pb.last)
		if !m.live && pb.last >= m.target {
			if err := caughtUp(); err != nil {
				failed(err)
				return
			}
		}
	}
}

// memberState is what the reader keeps per member while it reads.
type memberState struct {
	skip uint64 // the member's position when the group started: it has seen up to there
	live bool   // the reader has passed the member's target
	evs  []*events.Event
	last uint64 // the last sequence read for it
	sent uint64 // the last sequence handed to it
}

// readGroup reads the group's consumer and hands every member its events in batches that are
// all replayed or all live, until reading fails; it returns that failure wrapping
// errReaderStopped.
func (b *Bus) readGroup(ctx context.Context, g *projGroup, it *groupReader, st []memberState, stored uint64) error {
	log := b.log.With("projections", g.names())
	send := func(i int) bool {
		s := &st[i]
		pb := projBatch{evs: s.evs, last: s.last, live: s.live}
		s.evs, s.sent = nil, s.last
		select {
		case g.members[i].ch <- pb:
			return true
		case <-ctx.Done():
			return false
		}
	}
	read := b.metrics.groupRead.WithLabelValues(g.names())
	raw := make([]projMsg, 0, groupFetch)
	for {
		var wait time.Duration
		if held(st) {
			// A batch waits for more: if nothing comes for a while, it goes as it is.
			wait = heldLinger
		}
		msg, meta, err := it.Next(wait)
		if errors.Is(err, nats.ErrTimeout) {
			for i := range st {
				if len(st[i].evs) > 0 && !send(i) {
					return nil
				}
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errReaderStopped, err)
		}
		clear(raw) // the last round's messages and events, for the collector
		raw = raw[:0]
		var rerr error
		deadline := time.Now().Add(groupLinger)
		for {
			seq := meta.Sequence.Stream
			subject := msg.Subject()
			raw = append(raw, projMsg{subject: subject, data: msg.Data(), seq: seq, live: seq > stored, want: g.want(subject)})
			if len(raw) >= groupFetch || time.Now().After(deadline) {
				break
			}
			if msg, meta, err = it.Next(batchLinger); err != nil {
				if !errors.Is(err, nats.ErrTimeout) {
					rerr = fmt.Errorf("%w: %w", errReaderStopped, err)
				}
				break
			}
		}
		read.Add(float64(len(raw)))
		decodeAll(log, raw)
		for ri := range raw {
			r := &raw[ri]
			w := r.want
			for i, m := range g.members {
				wanted := len(w) > 0 && w[0] == i
				if wanted {
					w = w[1:]
				}
				s := &st[i]
				if r.seq <= s.skip {
					continue
				}
				if wanted && r.ev != nil {
					s.evs = append(s.evs, r.ev)
				}
				s.last = r.seq
				switch {
				case !s.live && r.seq >= m.target:
					// The last replayed batch: what follows is live.
					if !send(i) {
						return nil
					}
					s.live = true
				case len(s.evs) >= m.batchSize():
					if !send(i) {
						return nil
					}
				}
			}
		}
		for i, m := range g.members {
			// What a round read goes out now when it is live or the projection waits for it;
			// while the projection is busy with a replay, its batch grows to its BatchSize (a
			// projection with ApplyBatch applies it in one go: fewer round trips to its
			// store), or until nothing comes for heldLinger.
			s := &st[i]
			if (len(s.evs) > 0 && (s.live || m.waiting.Load())) || s.last-s.sent >= progressEvery {
				if !send(i) {
					return nil
				}
			}
		}
		if rerr != nil {
			return rerr
		}
	}
}
