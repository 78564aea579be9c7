// Package app is the catalog's application layer: ingesting vendor documents into patch
// records, certification by people and by auto-approval rules, publishing baselines, the
// tenants' approvals and auto-approve policies, and the queries the API serves. State lives
// in JetStream KV buckets (kvstore), each change is also an event on the bus.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/events"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/kvstore"
)

// Publisher publishes events (the bus).
type Publisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// Bucket names.
const (
	BucketPatches   = "catalog_patches"
	BucketBaselines = "catalog_baselines"
	BucketApprovals = "catalog_approvals"
	BucketPolicies  = "catalog_approval_policies"
	BucketRules     = "catalog_rules"
	BucketSources   = "catalog_sources"
)

// PatchHistory is how many revisions of each patch record the patches bucket keeps: the
// previous contents of an updated advisory and the steps of its certification.
const PatchHistory = 16

// Stores are the catalog's KV buckets.
type Stores struct {
	Patches   *kvstore.Bucket[*catalogv1.CatalogPatch]
	Baselines *kvstore.Bucket[*catalogv1.Baseline]
	Approvals *kvstore.Bucket[*catalogv1.Approval]
	Policies  *kvstore.Bucket[*catalogv1.ApprovalPolicy]
	Rules     *kvstore.Bucket[*catalogv1.AutoApprovalRule]
	Sources   *kvstore.Bucket[*catalogv1.Source]
}

// OpenStores creates or opens every bucket.
func OpenStores(ctx context.Context, js jetstream.JetStream, replicas int, storage jetstream.StorageType) (Stores, error) {
	var s Stores
	var err error
	cfg := func(name, desc string, history uint8) kvstore.Config {
		return kvstore.Config{Name: name, Description: desc, History: history, Replicas: replicas, Storage: storage}
	}
	if s.Patches, err = kvstore.Open(ctx, js, cfg(BucketPatches, "catalog: normalized patches and their certification", PatchHistory), func() *catalogv1.CatalogPatch { return &catalogv1.CatalogPatch{} }); err != nil {
		return s, err
	}
	if s.Baselines, err = kvstore.Open(ctx, js, cfg(BucketBaselines, "catalog: published baselines (b.<id>) and version claims (v.<family>.<version>)", 1), func() *catalogv1.Baseline { return &catalogv1.Baseline{} }); err != nil {
		return s, err
	}
	if s.Approvals, err = kvstore.Open(ctx, js, cfg(BucketApprovals, "catalog: tenants' decisions on baselines (<tenant>.<baseline>)", 8), func() *catalogv1.Approval { return &catalogv1.Approval{} }); err != nil {
		return s, err
	}
	if s.Policies, err = kvstore.Open(ctx, js, cfg(BucketPolicies, "catalog: tenants' auto-approve policies", 8), func() *catalogv1.ApprovalPolicy { return &catalogv1.ApprovalPolicy{} }); err != nil {
		return s, err
	}
	if s.Rules, err = kvstore.Open(ctx, js, cfg(BucketRules, "catalog: auto-approval rules", 8), func() *catalogv1.AutoApprovalRule { return &catalogv1.AutoApprovalRule{} }); err != nil {
		return s, err
	}
	if s.Sources, err = kvstore.Open(ctx, js, cfg(BucketSources, "catalog: feed sources' polling state", 4), func() *catalogv1.Source { return &catalogv1.Source{} }); err != nil {
		return s, err
	}
	return s, nil
}

// Run mirrors every bucket until ctx is done.
func (s Stores) Run(ctx context.Context) error {
	errs := make(chan error, 6)
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{s.Patches.Run, s.Baselines.Run, s.Approvals.Run, s.Policies.Run, s.Rules.Run, s.Sources.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Ready returns once every mirror is loaded.
func (s Stores) Ready(ctx context.Context) error {
	for _, ready := range []func(context.Context) error{s.Patches.Ready, s.Baselines.Ready, s.Approvals.Ready, s.Policies.Ready, s.Rules.Ready, s.Sources.Ready} {
		if err := ready(ctx); err != nil {
			return err
		}
	}
	return nil
}

// App is the catalog's use cases.
type App struct {
	st      Stores
	pub     Publisher
	tenants TenantChecker
	log     *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	digests map[string]int // source document digests of the stored patches, with counts

	announced announced
	heard     heard
	wake      chan struct{}
}

// New returns the application over st, publishing on pub. tenants says which tenants exist
// (ShapeOnly when nil).
func New(st Stores, pub Publisher, tenants TenantChecker, log *slog.Logger, now func() time.Time) *App {
	if tenants == nil {
		tenants = ShapeOnly{}
	}
	a := &App{st: st, pub: pub, tenants: tenants, log: log, now: now, digests: map[string]int{}, wake: make(chan struct{}, 1)}
	st.Patches.OnChange(func(key string, prev, next *kvstore.Entry[*catalogv1.CatalogPatch]) {
		a.indexDigests(key, prev, next)
		a.signal()
	})
	// The mirror keeps no per-document contributions (the merged patch has every list and its
	// sources): a replica holds each patch about once, not twice.
	st.Patches.Compact(func(c *catalogv1.CatalogPatch) *catalogv1.CatalogPatch {
		c.Contributions = nil
		return c
	})
	st.Rules.OnChange(func(string, *kvstore.Entry[*catalogv1.AutoApprovalRule], *kvstore.Entry[*catalogv1.AutoApprovalRule]) {
		a.signal()
	})
	st.Policies.OnChange(func(string, *kvstore.Entry[*catalogv1.ApprovalPolicy], *kvstore.Entry[*catalogv1.ApprovalPolicy]) {
		a.signal()
	})
	st.Baselines.OnChange(func(string, *kvstore.Entry[*catalogv1.Baseline], *kvstore.Entry[*catalogv1.Baseline]) { a.signal() })
	return a
}

// Changed is signalled when rules, policies, baselines or patches change, so the evaluation
// timer can recompute when the next rule or policy falls due.
func (a *App) Changed() <-chan struct{} { return a.wake }

func (a *App) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Stores returns the buckets.
func (a *App) Stores() Stores { return a.st }

// Now returns the application clock's time.
func (a *App) Now() time.Time { return a.now() }

// indexDigests keeps the digest index in step with the patches mirror: the merged patch lists
// the sources of every contribution.
func (a *App) indexDigests(_ string, prev, next *kvstore.Entry[*catalogv1.CatalogPatch]) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev != nil {
		for _, s := range prev.Value.GetPatch().GetSources() {
			if a.digests[s.GetDigest()]--; a.digests[s.GetDigest()] <= 0 {
				delete(a.digests, s.GetDigest())
			}
		}
	}
	if next != nil {
		for _, s := range next.Value.GetPatch().GetSources() {
			a.digests[s.GetDigest()]++
		}
	}
}

// KnownDigest reports whether a document with this digest was ingested (its patches hold it).
func (a *App) KnownDigest(digest string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.digests[digest] > 0
}

func (a *App) publish(ctx context.Context, evs ...*events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if err := a.pub.Publish(ctx, evs...); err != nil {
		return fmt.Errorf("%w: publish %s: %w", errUnavailable, evs[0].Subject, err)
	}
	return nil
}
