package adapters_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/adapters"
	"github.com/patchwave/patchwave/services/reporting/internal/app"
)

type allTenants struct{}

func (allTenants) RequireTenant(context.Context, string) error { return nil }

func auditEvent(t *testing.T, tenant string, seq uint64) *events.Event {
	t.Helper()
	id := "a-" + strconv.FormatUint(seq, 10)
	ev, err := events.New(tenant, id, &eventsv1.AuditRecorded{AuditId: id, Tenant: tenant, Actor: "dana@" + tenant})
	require.NoError(t, err)
	ev.Sequence = seq
	return ev
}

func ids(recs []*eventsv1.AuditRecorded) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.GetAuditId()
	}
	return out
}

// TestTheAuditTrailPagesNewestFirstAndSurvivesAReplay applies audit events (one twice, as a
// replay after a crash would), pages through a tenant's trail, and rebuilds it from nothing.
func TestTheAuditTrailPagesNewestFirstAndSurvivesAReplay(t *testing.T) {
	stores(t, func(t *testing.T, repo *adapters.Store) {
		ctx := t.Context()
		au := app.NewAudit(repo, allTenants{})
		require.NoError(t, au.CaughtUp(ctx))
		for seq := uint64(1); seq <= 5; seq++ {
			require.NoError(t, au.Apply(ctx, auditEvent(t, "acme", seq), true))
		}
		require.NoError(t, au.Apply(ctx, auditEvent(t, "acme", 5), false), "a replayed event is not appended again")
		require.NoError(t, au.Apply(ctx, auditEvent(t, "globex", 6), true))
		cp, err := au.Checkpoint(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 6, cp)

		page, next, err := au.List(ctx, "acme", 2, "")
		require.NoError(t, err)
		require.Equal(t, []string{"a-5", "a-4"}, ids(page))
		page, next, err = au.List(ctx, "acme", 2, next)
		require.NoError(t, err)
		require.Equal(t, []string{"a-3", "a-2"}, ids(page))
		page, next, err = au.List(ctx, "acme", 2, next)
		require.NoError(t, err)
		require.Equal(t, []string{"a-1"}, ids(page))
		require.Empty(t, next)

		other, _, err := au.List(ctx, "globex", 0, "")
		require.NoError(t, err)
		require.Equal(t, []string{"a-6"}, ids(other), "each tenant has its own trail")

		_, _, err = au.List(ctx, "acme", 501, "")
		require.ErrorContains(t, err, "pageSize: must be from 1 to 500")
		_, _, err = au.List(ctx, "acme", 2, "99")
		require.ErrorContains(t, err, "pageToken")
	})
}
