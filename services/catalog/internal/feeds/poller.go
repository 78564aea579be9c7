package feeds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
	"github.com/patchwave/patchwave/services/catalog/internal/app"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// Clock is the poller's time: Now, and a timer channel.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// namePattern is the rule for source names.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Feed is one configured source.
type Feed struct {
	// Name of the source, ^[a-z0-9][a-z0-9-]{0,62}$. Required.
	Name string
	// Vendor, for people. Optional.
	Vendor string
	// Kind: "dir", "http", "s3" or "csaf-provider". Required.
	Kind string
	// Location for people: the directory, URL(s), s3://bucket/prefix or provider.
	Location string
	// Format of its documents; empty detects each.
	Format advisory.Format
	// Interval between polls. Optional, default 24h.
	Interval time.Duration
	// Source fetches the documents. Required.
	Source Source
}

// Config configures the poller.
type Config struct {
	Feeds []Feed
	// Workers ingest a poll's documents in parallel. Optional, default 8.
	Workers int
	// RetryBackoff is the first retry delay of a failed poll; it doubles up to the feed's
	// interval. Optional, default 1 minute.
	RetryBackoff time.Duration
}

// Validate reports every problem, naming the feed and field.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i, f := range c.Feeds {
		field := fmt.Sprintf("Sources[%d]", i)
		if !namePattern.MatchString(f.Name) {
			errs = append(errs, fmt.Errorf("%s.Name %q: must match %s", field, f.Name, namePattern))
		} else if j, dup := seen[f.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.Name %q: duplicate of Sources[%d]", field, f.Name, j))
		} else {
			seen[f.Name] = i
		}
		if f.Source == nil {
			errs = append(errs, fmt.Errorf("%s: no source for kind %q", field, f.Kind))
		}
		if f.Interval < 0 {
			errs = append(errs, fmt.Errorf("%s.Interval %s: must not be negative", field, f.Interval))
		}
		if !slices.Contains(append(advisory.Formats, ""), f.Format) {
			errs = append(errs, fmt.Errorf("%s.Format %q: must be one of csaf, osv, updateinfo, cvrf or empty", field, f.Format))
		}
	}
	return errors.Join(errs...)
}

// ErrSourceNotFound is returned for a source that is not configured.
var ErrSourceNotFound = fmt.Errorf("source %w", apierr.ErrNotFound)

// maxFailures is how many failed documents a source's state names.
const maxFailures = 20

// Result is one poll's outcome.
type Result struct {
	Source                                            *catalogv1.Source
	Documents, Unchanged, Discovered, Updated, Failed int
	Failures                                          []string
}

// Poller polls the feeds.
type Poller struct {
	cfg   Config
	app   *app.App
	pub   app.Publisher
	clock Clock
	log   *slog.Logger
	polls *prometheus.CounterVec
	docs  *prometheus.CounterVec

	locks map[string]*sync.Mutex
	feeds map[string]Feed
}

// NewPoller returns the poller of cfg's feeds. reg, when not nil, gets its metrics.
func NewPoller(cfg Config, a *app.App, pub app.Publisher, clock Clock, log *slog.Logger, reg prometheus.Registerer) (*Poller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Minute
	}
	p := &Poller{
		cfg: cfg, app: a, pub: pub, clock: clock, log: log,
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "patchwave", Subsystem: "catalog", Name: "source_polls_total", Help: "Polls of feed sources by outcome (ok, failed)."}, []string{"source", "outcome"}),
		docs:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "patchwave", Subsystem: "catalog", Name: "source_documents_total", Help: "Documents read from feed sources by outcome (ingested, unchanged, failed)."}, []string{"source", "outcome"}),
		locks: map[string]*sync.Mutex{}, feeds: map[string]Feed{},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{p.polls, p.docs} {
			if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return nil, err
			}
		}
	}
	for i, f := range cfg.Feeds {
		if f.Interval == 0 {
			cfg.Feeds[i].Interval = 24 * time.Hour
		}
		p.locks[f.Name] = &sync.Mutex{}
		p.feeds[f.Name] = cfg.Feeds[i]
	}
	return p, nil
}

// Run polls every feed on its schedule until ctx is done. Feeds poll independently: a slow or
// failing one never delays the others.
func (p *Poller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, f := range p.cfg.Feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.loop(ctx, p.feeds[f.Name])
		}()
	}
	wg.Wait()
	return nil
}

func (p *Poller) loop(ctx context.Context, f Feed) {
	for {
		st, _, err := p.state(ctx, f)
		wait := time.Duration(0)
		if err == nil && st.GetNextPollAt() != nil {
			wait = st.GetNextPollAt().AsTime().Sub(p.clock.Now())
		}
		if err != nil {
			wait = p.cfg.RetryBackoff
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.clock.After(wait):
			}
		}
		if ctx.Err() != nil {
			return
		}
		if _, err := p.poll(ctx, f, false); err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "source poll failed", "source", f.Name, "error", err)
		}
	}
}

// state returns the source's stored state (a fresh one when none) and its revision.
func (p *Poller) state(ctx context.Context, f Feed) (*catalogv1.Source, uint64, error) {
	e, found, err := p.app.Stores().Sources.Get(ctx, f.Name)
	if err != nil {
		return nil, 0, err
	}
	st := &catalogv1.Source{}
	var rev uint64
	if found {
		st, rev = e.Value, e.Revision
	}
	st.Name, st.Vendor, st.Kind, st.Location, st.Format = f.Name, f.Vendor, f.Kind, f.Location, string(f.Format)
	st.Interval = durationpb.New(f.Interval)
	return st, rev, nil
}

// List returns every source with its state.
func (p *Poller) List(ctx context.Context) ([]*catalogv1.Source, error) {
	out := make([]*catalogv1.Source, 0, len(p.cfg.Feeds))
	for _, f := range p.cfg.Feeds {
		st, _, err := p.state(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Get returns one source with its state.
func (p *Poller) Get(ctx context.Context, name string) (*catalogv1.Source, error) {
	f, ok := p.feeds[name]
	if !ok {
		return nil, fmt.Errorf("source %q: %w", name, ErrSourceNotFound)
	}
	st, _, err := p.state(ctx, f)
	return st, err
}

// PollNow polls a source at once (waiting for a poll in progress to end first).
func (p *Poller) PollNow(ctx context.Context, name string) (Result, error) {
	f, ok := p.feeds[name]
	if !ok {
		return Result{}, fmt.Errorf("source %q: %w", name, ErrSourceNotFound)
	}
	return p.poll(ctx, f, true)
}

// poll fetches and ingests one source. A scheduled poll (now false) first takes the source in
// KV (a compare-and-set of its state), so with several replicas one polls and the others
// skip; a poll on demand always runs.
func (p *Poller) poll(ctx context.Context, f Feed, now bool) (Result, error) {
	mu := p.locks[f.Name]
	mu.Lock()
	defer mu.Unlock()
	start := p.clock.Now().UTC()
	st, rev, err := p.state(ctx, f)
	if err != nil {
		return Result{}, err
	}
	if !now && st.GetNextPollAt() != nil && st.GetNextPollAt().AsTime().After(start) {
		return Result{Source: st}, nil // another replica polled it
	}
	st.LastAttemptAt = pb.Time(start)
	if !now {
		claimed := proto.CloneOf(st)
		claimed.NextPollAt = pb.Time(start.Add(f.Interval)) // provisional: replicas skip meanwhile
		if rev, err = p.app.Stores().Sources.Put(ctx, f.Name, claimed, rev); err != nil {
			return Result{Source: st}, nil // another replica took it
		}
	}

	res := Result{}
	var resMu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.cfg.Workers)
	validators, fetchErr := f.Source.Fetch(gctx, Validators(st.GetValidators()), func(d Document) error {
		if d.Err != nil {
			resMu.Lock()
			res.Documents++
			res.fail(d.Name, d.Err)
			resMu.Unlock()
			p.docs.WithLabelValues(f.Name, "failed").Inc()
			return nil //nolint:nilerr // a document that cannot be fetched fails alone; the feed goes on
		}
		g.Go(func() error {
			ir, err := p.app.Ingest(gctx, advisory.Document{Name: d.Name, Source: f.Name, Data: d.Data},
				app.IngestOptions{Format: f.Format, SkipKnown: true})
			resMu.Lock()
			defer resMu.Unlock()
			res.Documents++
			switch {
			case err != nil && errors.Is(err, apierr.ErrInvalidArgument):
				res.fail(d.Name, err)
				p.docs.WithLabelValues(f.Name, "failed").Inc()
				p.log.WarnContext(gctx, "feed document refused", "source", f.Name, "document", d.Name, "error", err)
			case err != nil:
				return err // the catalog itself failed: the poll fails and is retried
			case ir.Skipped:
				res.Unchanged++
				p.docs.WithLabelValues(f.Name, "unchanged").Inc()
			default:
				disc, upd, unch := ir.Counts()
				res.Discovered += disc
				res.Updated += upd
				if disc+upd == 0 && unch > 0 {
					res.Unchanged++
				}
				p.docs.WithLabelValues(f.Name, "ingested").Inc()
			}
			return nil
		})
		return nil
	})
	if err := g.Wait(); err != nil && fetchErr == nil {
		fetchErr = err
	}
	end := p.clock.Now().UTC()
	if fetchErr != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		st.ConsecutiveFailures++
		st.LastError, st.LastErrorAt = fetchErr.Error(), pb.Time(end)
		backoff := min(p.cfg.RetryBackoff<<min(st.ConsecutiveFailures-1, 20), f.Interval)
		st.NextPollAt = pb.Time(end.Add(backoff))
		p.polls.WithLabelValues(f.Name, "failed").Inc()
		stored, err := p.store(ctx, f.Name, st, rev)
		if err != nil {
			return res, err
		}
		// Keyed by the state's revision: unique per poll, the same if this publish is retried.
		ev := events.MustNew("", f.Name+"/"+strconv.FormatUint(stored, 10), &eventsv1.SourceFailed{
			Source: f.Name, StartedAt: pb.Time(start), Error: fetchErr.Error(),
			ConsecutiveFailures: st.ConsecutiveFailures, NextAttemptAt: st.NextPollAt,
		})
		if err := p.pub.Publish(ctx, ev); err != nil {
			p.log.WarnContext(ctx, "publish source failure", "source", f.Name, "error", err)
		}
		res.Source = st
		return res, fmt.Errorf("%w: source %s: %w", apierr.ErrUnavailable, f.Name, fetchErr)
	}
	st.ConsecutiveFailures = 0
	st.LastSuccessAt = pb.Time(end)
	st.NextPollAt = pb.Time(end.Add(f.Interval))
	st.LastDocuments, st.LastFailedDocuments, st.LastFailures = int32(res.Documents), int32(res.Failed), res.Failures
	if validators != nil {
		st.Validators = validators
	}
	p.polls.WithLabelValues(f.Name, "ok").Inc()
	stored, err := p.store(ctx, f.Name, st, rev)
	if err != nil {
		return res, err
	}
	if res.Discovered+res.Updated+res.Failed > 0 {
		ev := events.MustNew("", f.Name+"/"+strconv.FormatUint(stored, 10), &eventsv1.SourcePolled{
			Source: f.Name, StartedAt: pb.Time(start), Documents: int32(res.Documents), Unchanged: int32(res.Unchanged),
			PatchesDiscovered: int32(res.Discovered), PatchesUpdated: int32(res.Updated),
			FailedDocuments: int32(res.Failed), Failures: res.Failures,
		})
		if err := p.pub.Publish(ctx, ev); err != nil {
			return res, err
		}
	}
	res.Source = st
	p.log.InfoContext(ctx, "source polled", "source", f.Name, "documents", res.Documents, "unchanged", res.Unchanged,
		"discovered", res.Discovered, "updated", res.Updated, "failed", res.Failed)
	return res, nil
}

func (r *Result) fail(name string, err error) {
	r.Failed++
	if len(r.Failures) < maxFailures {
		r.Failures = append(r.Failures, cmp.Or(name, "?")+": "+err.Error())
	}
}

// store writes the source's state, last writer wins: the state is the poller's own record.
func (p *Poller) store(ctx context.Context, name string, st *catalogv1.Source, rev uint64) (uint64, error) {
	next, err := p.app.Stores().Sources.Put(ctx, name, st, rev)
	if err == nil {
		return next, nil
	}
	e, found, gerr := p.app.Stores().Sources.Get(ctx, name)
	if gerr != nil {
		return 0, gerr
	}
	var cur uint64
	if found {
		cur = e.Revision
	}
	return p.app.Stores().Sources.Put(ctx, name, st, cur)
}
