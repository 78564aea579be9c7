package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Run creates the consumers, starts every projection, waits until they have caught up, then
// runs the handlers and trackers until ctx is done. It returns nil after a clean shutdown.
//
// A temporary disconnect does not stop Run: while Config.Conn reconnects, the projections'
// ordered consumers and the handlers' and trackers' pulls wait, and they go on once it is
// back. When the connection is closed for good (closed by the process, or lost with no
// reconnect left), Run stops every consumer at once and returns an error wrapping
// ErrConnectionClosed, with the connection's last error, so that the process exits and its
// supervisor restarts it. Any other error that stops a consumer (its durable consumer deleted,
// a projection's checkpoint failing) stops Run with that error.
func (b *Bus) Run(ctx context.Context) error {
	err := b.run(ctx)
	if err != nil && b.cfg.Conn.IsClosed() {
		// What stopped is the consequence; the closed connection is the cause to report.
		b.log.Debug("bus stopped on a closed connection", "error", err)
		return closedError(b.cfg.Conn)
	}
	return err
}

func (b *Bus) run(ctx context.Context) error {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return errors.New("bus: Run called twice")
	}
	b.started = true
	handlers, trackers, projections := b.handlers, b.trackers, b.projections
	b.mu.Unlock()

	consumers := make(map[string]jetstream.Consumer, len(handlers))
	for _, h := range handlers {
		c, err := b.ensureConsumer(ctx, h.consumerSpec(b.cfg.Service, b.cfg.MaxAckPending))
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting
			}
			return err
		}
		consumers[h.consumer] = c
	}
	trackerCons := make([]jetstream.Consumer, len(trackers))
	for i, t := range trackers {
		c, err := b.ensureConsumer(ctx, t.consumerSpec(b.cfg.Service))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		trackerCons[i] = c
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	// A connection closed for good stops every consumer at once, whatever each of them would
	// notice of it (a tracker's pull, for one, sees only failing requests).
	// lost is closed with it, for the trackers' pulls in flight, which wait for nothing else.
	closed := b.cfg.Conn.StatusChanged(nats.CLOSED)
	defer b.cfg.Conn.RemoveStatusListener(closed)
	lost := make(chan struct{})
	g.Go(func() error {
		if !b.cfg.Conn.IsClosed() {
			select {
			case <-closed:
			case <-gctx.Done():
				return nil
			}
		}
		close(lost)
		return closedError(b.cfg.Conn)
	})
	for _, pg := range groupProjections(projections) {
		g.Go(func() error { return b.runGroup(gctx, pg) })
	}
	for _, p := range projections {
		select {
		case <-p.caughtUp:
		case <-gctx.Done():
			return waitClean(ctx, g)
		}
	}
	b.log.Info("projections caught up", "count", len(projections))

	for i, t := range trackers {
		g.Go(func() error { return b.runTracker(gctx, t, trackerCons[i], lost) })
	}
	if len(handlers) == 0 {
		close(b.running)
		<-gctx.Done()
		return waitClean(ctx, g)
	}

	router, sub, err := b.newRouter(consumers, handlers)
	if err != nil {
		cancel()
		_ = g.Wait()
		return err
	}
	g.Go(func() error {
		err := router.Run(gctx)
		_ = sub.Close()
		if err == nil && gctx.Err() == nil {
			// A failed subscription closes its output, and the router stops on that: the
			// failure says why, whichever of this and the wait below returns first.
			if err = sub.err(); err == nil {
				err = errors.New("bus: router stopped")
			}
		}
		return err
	})
	g.Go(func() error {
		select {
		case <-sub.failed:
			return sub.err()
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error {
		select {
		case <-router.Running():
			close(b.running)
			b.log.Info("handlers consuming", "handlers", len(handlers), "trackers", len(trackers))
		case <-gctx.Done():
		}
		return nil
	})
	return waitClean(ctx, g)
}

// waitClean waits for g and treats a shutdown asked for by ctx as success.
func waitClean(ctx context.Context, g *errgroup.Group) error {
	err := g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

func (b *Bus) newRouter(consumers map[string]jetstream.Consumer, handlers []*handler) (*message.Router, *pullSubscriber, error) {
	wlog := noTrace{watermill.NewSlogLoggerWithLevelMapping(b.cfg.Logger.With("component", "watermill"), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug, // watermill logs every subscription and shutdown step at info
	})}
	sub := newPullSubscriber(b, handlers, consumers)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return nil, nil, fmt.Errorf("router: %w", err)
	}
	for _, h := range handlers {
		// One subscription per handler and replica; it keeps up to Concurrency messages in
		// the router at once.
		rh := router.AddConsumerHandler(h.consumer, h.consumer, sub, b.watermillHandler(h))
		// settle is outermost: it acks or nacks once the dead-letter middleware has decided.
		rh.AddMiddleware(sub.settle(h), b.deadLetter(h), recoverer)
		b.log.Debug("handler registered", append(logAttrs(h), "concurrency", h.concurrency())...)
	}
	return router, sub, nil
}

// noTrace drops watermill's per-message trace lines before they are formatted.
type noTrace struct{ watermill.LoggerAdapter }

func (noTrace) Trace(string, watermill.LogFields) {}

func (l noTrace) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return noTrace{l.LoggerAdapter.With(fields)}
}
