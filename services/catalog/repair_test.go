package catalog_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/testkit"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog"
)

// kvWrite does what the catalog does before it publishes: a compare-and-set of a value.
func kvWrite(t *testing.T, e *env, bucket, key string, edit func(proto.Message), msg proto.Message) {
	t.Helper()
	kv, err := e.js.KeyValue(t.Context(), bucket)
	require.NoError(t, err)
	var rev uint64
	if entry, err := kv.Get(t.Context(), key); err == nil {
		require.NoError(t, protojson.Unmarshal(entry.Value(), msg))
		rev = entry.Revision()
	}
	edit(msg)
	data, err := protojson.Marshal(msg)
	require.NoError(t, err)
	if rev == 0 {
		_, err = kv.Create(t.Context(), key, data)
	} else {
		_, err = kv.Update(t.Context(), key, data, rev)
	}
	require.NoError(t, err)
}

// TestChangesStoredWithoutTheirEventsArePublishedAtRestart simulates a crash between a KV
// write and its publish (the write is made, the event never sent) for a certification step, a
// tenant's approval and a baseline; the restarted catalog publishes each missing event, once.
func TestChangesStoredWithoutTheirEventsArePublishedAtRestart(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	e := startOn(t, nc, catalog.Config{}, catalog.Deps{})
	designtest.PutTenant(t, e.js, "acme", nil)
	importDoc(t, e, "updateinfo.xml", sampleDoc(t, updateinfo))
	certify(t, e, "ALAS2023-2026-1001")
	ops := as(t.Context(), "bob@provider")
	_, err := e.client.PublishBaseline(ops, &catalogv1.PublishBaselineRequest{BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023",
		Patches: []*typesv1.DeploymentRule{{PatchId: "ALAS2023-2026-1001"}}})
	require.NoError(t, err)
	got, err := e.client.GetBaseline(t.Context(), &catalogv1.GetBaselineRequest{BaselineId: "al2023-2026.11"})
	require.NoError(t, err)
	e.stop()

	// The crashed writes.
	kvWrite(t, e, "catalog_patches", "ALAS2023-2026-1007", func(m proto.Message) {
		c := m.(*catalogv1.CatalogPatch)
		c.State = typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST
		c.History = append(c.History, &typesv1.CertificationStep{From: typesv1.CertificationState_CERTIFICATION_STATE_NEW,
			To: c.State, Actor: "alice@provider", At: timestamppb.New(t0)})
	}, &catalogv1.CatalogPatch{})
	kvWrite(t, e, "catalog_approvals", "acme.al2023-2026.11", func(m proto.Message) {
		proto.Merge(m, &catalogv1.Approval{Tenant: "acme", BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023", Version: 1,
			State: catalogv1.ApprovalState_APPROVAL_STATE_APPROVED, Actor: "carol@acme", DecidedAt: timestamppb.New(t0)})
	}, &catalogv1.Approval{})
	kvWrite(t, e, "catalog_baselines", "b.al2023-2026.12", func(m proto.Message) {
		proto.Merge(m, got.GetBaseline())
		b := m.(*catalogv1.Baseline)
		b.BaselineId, b.Version = "al2023-2026.12", 2
	}, &catalogv1.Baseline{})

	e = startOn(t, nc, catalog.Config{}, catalog.Deps{})
	started := catalogEvents(t, e.js, "catalog.patch.test_started")
	require.Len(t, started, 2, "the certified patch's step and the crashed one")
	require.Equal(t, "catalog.patch.test_started/ALAS2023-2026-1007/step-1", started[1].ID)
	approved := streamEvents(t, e.js, "PATCH_EVENTS", "patch.acme.baseline.approved")
	require.Len(t, approved, 1)
	require.Equal(t, "acme", approved[0].Tenant)
	require.Equal(t, "carol@acme", approved[0].Data.(*eventsv1.BaselineApproved).GetApprovedBy())
	published := catalogEvents(t, e.js, "catalog.baseline.published")
	require.Len(t, published, 2)
	require.Equal(t, "catalog.baseline.published/al2023-2026.12", published[1].ID)

	// Nothing else was missing, and another restart publishes nothing.
	before := len(catalogEvents(t, e.js, "catalog.>"))
	e.stop()
	e = startOn(t, nc, catalog.Config{}, catalog.Deps{})
	require.Len(t, catalogEvents(t, e.js, "catalog.>"), before)
	require.Len(t, streamEvents(t, e.js, "PATCH_EVENTS", "patch.acme.baseline.approved"), 1)
}
