// Package designtest puts service design documents into a test's JetStream, as the scheduler
// (the design's only writer) would, so that services that read the design through
// libs/design's View can be tested without a scheduler.
package designtest

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/design"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// PutTenant creates the design bucket if needed and writes doc as tenant's document
// (overwriting any), returning its revision. A doc without a tenant gets one named tenant
// with the defaults (wave tag key PatchWave, wave limit 3).
func PutTenant(t testing.TB, js jetstream.JetStream, tenant string, doc *typesv1.TenantDesign) uint64 {
	t.Helper()
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), design.BucketConfig(1))
	require.NoError(t, err)
	if doc == nil {
		doc = &typesv1.TenantDesign{}
	}
	if doc.Tenant == nil {
		doc.Tenant = &typesv1.Tenant{TenantId: tenant, DisplayName: tenant, WaveTagKey: "PatchWave", WaveLimit: 3}
	}
	b, err := design.Marshal(doc)
	require.NoError(t, err)
	rev, err := kv.Put(t.Context(), design.TenantKey(tenant), b)
	require.NoError(t, err)
	return rev
}
