package adapters_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/testkit"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/adapters"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

func TestClaimsAreCreatedOnceAndUpdatedByRevision(t *testing.T) {
	ctx := t.Context()
	n := testkit.StartNATS(t)
	c, err := adapters.OpenClaims(ctx, n.JetStream(t), 1)
	require.NoError(t, err)
	// A second open (another replica) finds the same bucket.
	c2, err := adapters.OpenClaims(ctx, n.JetStream(t), 1)
	require.NoError(t, err)

	_, _, ok, err := c.Occurrence(ctx, "acme", 1, "2026-12")
	require.NoError(t, err)
	require.False(t, ok)

	// Ten writers race to claim the occurrence: one wins.
	rec := domain.Occurrence{Tenant: "acme", Wave: 1, Key: "2026-12", RunID: domain.OccurrenceRunID("acme", 1, "2026-12"),
		State: typesv1.RunState_RUN_STATE_RUNNING, UpdatedAt: time.Unix(100, 0).UTC()}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := c
			if i%2 == 1 {
				cc = c2
			}
			_, errs[i] = cc.CreateOccurrence(ctx, rec)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, domain.ErrClaimTaken)
	}
	require.Equal(t, 1, won, "one writer wins the claim")

	got, rev, ok, err := c2.Occurrence(ctx, "acme", 1, "2026-12")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, rec, got)

	// An update from the revision read wins once; the same revision again is refused.
	got.Confirmed = true
	rev2, err := c.UpdateOccurrence(ctx, got, rev)
	require.NoError(t, err)
	require.Greater(t, rev2, rev)
	_, err = c2.UpdateOccurrence(ctx, got, rev)
	require.ErrorIs(t, err, domain.ErrClaimTaken)

	// A cycle is pinned once; the loser reads the winner's pin.
	pin := domain.CyclePin{Tenant: "acme", Cycle: "2026-12", Pins: []domain.Pin{{OSFamily: "al2023", BaselineID: "b1", Version: 1}}, RunID: rec.RunID}
	crev, err := c.CreateCycle(ctx, pin)
	require.NoError(t, err)
	other := pin
	other.Pins = []domain.Pin{{OSFamily: "al2023", BaselineID: "b2", Version: 2}}
	_, err = c2.CreateCycle(ctx, other)
	require.ErrorIs(t, err, domain.ErrClaimTaken)
	p, prev, ok, err := c2.Cycle(ctx, "acme", "2026-12")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, crev, prev)
	require.Equal(t, "b1", p.Pins[0].BaselineID)
	p.Announced = true
	require.NoError(t, c.UpdateCycle(ctx, p, prev))
	require.ErrorIs(t, c2.UpdateCycle(ctx, p, prev), domain.ErrClaimTaken, "an update from a stale revision")

	// The first sighting of a wave is kept.
	at, err := c.Seen(ctx, "acme", 1, 1000)
	require.NoError(t, err)
	require.EqualValues(t, 1000, at)
	at, err = c2.Seen(ctx, "acme", 1, 2000)
	require.NoError(t, err)
	require.EqualValues(t, 1000, at)
}
