package adapters_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	libdesign "github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/testkit"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/adapters"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

func openDesign(t *testing.T) (*adapters.DesignKV, *testkit.NATS) {
	t.Helper()
	n := testkit.StartNATS(t)
	kv, err := adapters.OpenDesignKV(t.Context(), n.JetStream(t), 1)
	require.NoError(t, err)
	return kv, n
}

func tenantDoc(name string) *typesv1.TenantDesign {
	return &typesv1.TenantDesign{Tenant: &typesv1.Tenant{TenantId: "acme", DisplayName: name}}
}

func TestDesignKVWritesAreCompareAndSet(t *testing.T) {
	kv, _ := openDesign(t)
	ctx := t.Context()
	doc, rev, err := kv.Tenant(ctx, "acme")
	require.NoError(t, err)
	require.Nil(t, doc, "an unknown tenant has no document")
	require.Zero(t, rev)

	r1, err := kv.PutTenant(ctx, "acme", tenantDoc("Acme"), 0)
	require.NoError(t, err)
	_, err = kv.PutTenant(ctx, "acme", tenantDoc("Acme again"), 0)
	require.ErrorIs(t, err, design.ErrConflict, "creating an existing document conflicts")

	r2, err := kv.PutTenant(ctx, "acme", tenantDoc("Acme Corp"), r1)
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = kv.PutTenant(ctx, "acme", tenantDoc("Stale"), r1)
	require.ErrorIs(t, err, design.ErrConflict, "a write based on an old revision conflicts")

	doc, rev, err = kv.Tenant(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, r2, rev)
	require.Equal(t, "Acme Corp", doc.GetTenant().GetDisplayName())
}

func TestDesignKVTwoWritersOneWins(t *testing.T) {
	kv, _ := openDesign(t)
	ctx := t.Context()
	base, err := kv.PutTenant(ctx, "acme", tenantDoc("Acme"), 0)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = kv.PutTenant(ctx, "acme", tenantDoc("writer"), base) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, design.ErrConflict)
	}
	require.Equal(t, 1, won, "exactly one of the writers based on the same revision wins")
}

func TestDesignKVWritesADocumentAndARequestAtomically(t *testing.T) {
	kv, _ := openDesign(t)
	ctx := t.Context()
	docRev, err := kv.PutTenant(ctx, "acme", tenantDoc("Acme"), 0)
	require.NoError(t, err)
	req := &typesv1.ServiceRequest{Tenant: "acme", RequestId: "sr-20270101T090000Z-a1b2c3", State: design.StateOpen, Reason: "r"}
	reqRev, err := kv.PutRequest(ctx, req, 0)
	require.NoError(t, err)

	applied := &typesv1.ServiceRequest{Tenant: "acme", RequestId: req.RequestId, State: design.StateApplied, Reason: "r"}

	// A stale request revision writes neither key.
	_, _, err = kv.PutTenantAndRequest(ctx, tenantDoc("Acme Corp"), docRev, applied, reqRev-1)
	require.ErrorIs(t, err, design.ErrConflict)
	// A stale document revision writes neither key either.
	_, _, err = kv.PutTenantAndRequest(ctx, tenantDoc("Acme Corp"), docRev-1, applied, reqRev)
	require.ErrorIs(t, err, design.ErrConflict)
	doc, rev, err := kv.Tenant(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, docRev, rev)
	require.Equal(t, "Acme", doc.GetTenant().GetDisplayName())
	r, rr, err := kv.Request(ctx, "acme", req.RequestId)
	require.NoError(t, err)
	require.Equal(t, reqRev, rr)
	require.Equal(t, design.StateOpen, r.GetState())

	newDoc, newReq, err := kv.PutTenantAndRequest(ctx, tenantDoc("Acme Corp"), docRev, applied, reqRev)
	require.NoError(t, err)
	require.Equal(t, newDoc+1, newReq)
	doc, rev, err = kv.Tenant(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, newDoc, rev)
	require.Equal(t, "Acme Corp", doc.GetTenant().GetDisplayName())
	r, rr, err = kv.Request(ctx, "acme", req.RequestId)
	require.NoError(t, err)
	require.Equal(t, newReq, rr)
	require.Equal(t, design.StateApplied, r.GetState())
}

func TestAuditFeedHandsOutEveryRevisionUntilHandled(t *testing.T) {
	kv, n := openDesign(t)
	ctx := t.Context()
	r1, err := kv.PutTenant(ctx, "acme", tenantDoc("Acme"), 0)
	require.NoError(t, err)
	_, err = kv.PutGlobal(ctx, &typesv1.GlobalDesign{}, 0)
	require.NoError(t, err)

	feed := adapters.NewAuditFeed(n.JetStream(t), 10*time.Millisecond)
	runCtx, cancel := context.WithCancel(ctx)
	seen := make(chan adapters.AuditEntry, 16)
	failed := false
	done := make(chan error, 1)
	go func() {
		done <- feed.Run(runCtx, func(_ context.Context, e adapters.AuditEntry) error {
			if e.Revision == r1 && !failed {
				failed = true
				return context.DeadlineExceeded // the first attempt fails: handed out again
			}
			seen <- e
			return nil
		})
	}()
	first := <-seen
	require.Equal(t, libdesign.TenantKey("acme"), first.Key)
	require.Equal(t, r1, first.Revision, "a failed revision comes again before the next one")
	second := <-seen
	require.Equal(t, libdesign.KeyGlobal, second.Key)
	cancel()
	require.NoError(t, <-done)

	// A revision written while no relay runs is handed out when one runs again.
	r3, err := kv.PutTenant(ctx, "acme", tenantDoc("Acme Corp"), r1)
	require.NoError(t, err)
	runCtx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- feed.Run(runCtx, func(_ context.Context, e adapters.AuditEntry) error { seen <- e; return nil })
	}()
	third := <-seen
	require.Equal(t, r3, third.Revision, "the relay resumes after what it handled")
	cancel()
	require.NoError(t, <-done)
}

// Replicas starting together all open the bucket: the ones that lose the race to create it
// update it instead of stopping ("stream name already in use").
func TestReplicasStartingTogetherAllOpenTheDesignBucket(t *testing.T) {
	for round := range 5 {
		n := testkit.StartNATS(t)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			js := n.JetStream(t)
			wg.Go(func() {
				_, errs[i] = adapters.OpenDesignKV(t.Context(), js, 1)
			})
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "round %d, replica %d", round, i)
		}
	}
}
