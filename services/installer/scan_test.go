package installer_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/installer"
)

// scanRequested publishes a ScanRequested of ids as reporting does (its producer).
func (h *harness) scanRequested(t *testing.T, scanID string, ids []string) {
	t.Helper()
	ev := events.MustNew(tenant, scanID+"/1", &eventsv1.ScanRequested{
		Tenant: tenant, ScanId: scanID, Chunk: 1, Location: h.Location(), OsFamily: "al2023", BaselineId: baseline,
		PatchIds: patches, InstanceIds: ids, RequestedBy: "test",
	})
	require.NoError(t, stagetest.Publisher(t, h.NC, "reporting").Publish(t.Context(), ev))
}

func TestAScanReadsEachPatchOnTheMachineWithoutInstalling(t *testing.T) {
	h := newHarness(t, 60, nil)
	h.start(t, installer.Config{})
	ids := h.InstanceIDs()
	noAgent, err := h.Cloud.Sim.AddInstances(cloudsim.InstanceSpec{Account: h.Target().Account, NoAgent: true})
	require.NoError(t, err)
	// The first ten have the baseline installed; the others miss it.
	h.job(t, "run-1", ids[:10], nil)
	h.WaitCount(t, "install.succeeded", 10)

	h.scanRequested(t, "scan-1", append(append([]string{}, ids...), noAgent...))
	h.WaitCount(t, "scan.completed", 60)
	h.WaitCount(t, "scan.failed", 1)
	require.Equal(t, 61, h.Count(t, "scan.started"), "the instance without an agent is refused by its command, not at the start")
	for _, ev := range h.Read(t, "scan.completed") {
		m := ev.Data.(*eventsv1.ScanCompleted)
		require.Equal(t, "al2023", m.GetOsFamily())
		require.Equal(t, baseline, m.GetBaselineId())
		require.Len(t, m.GetResults(), len(patches))
		want := typesv1.PatchState_PATCH_STATE_MISSING
		for _, id := range ids[:10] {
			if id == m.GetInstanceId() {
				want = typesv1.PatchState_PATCH_STATE_INSTALLED
			}
		}
		for _, r := range m.GetResults() {
			require.Equal(t, want, r.GetState(), "%s %s", m.GetInstanceId(), r.GetPatchId())
		}
	}
	for i, id := range ids {
		// A scan that finds the baseline installed is settled by the patch summary; one that
		// finds patches missing reads them.
		want := int64(1)
		if i < 10 {
			want = 0
		}
		require.Equal(t, want, h.Calls(id, "ssm:DescribeInstancePatches"), "per-patch reads of %s", id)
	}
	f := h.Read(t, "scan.failed")[0].Data.(*eventsv1.ScanFailed)
	require.Equal(t, noAgent[0], f.GetInstanceId())
	require.Contains(t, strings.ToLower(f.GetReason()), "agent")
	inst, ok := h.Cloud.Sim.Instance(ids[20])
	require.True(t, ok)
	require.NotEqual(t, "INSTALLED", inst.Patches[patches[0]], "a scan installs nothing")

	// A redelivered or repeated request starts nothing twice.
	h.scanRequested(t, "scan-1", ids)
	require.Eventually(t, func() bool {
		return stagetest.Drained(t, h.JS, installer.Name, installer.HandlerScan) && stagetest.Drained(t, h.JS, installer.Name, installer.TrackerScans)
	}, eventually, tick)
	require.Equal(t, 61, h.Count(t, "scan.started"), "the instance without an agent is refused by its command, not at the start")
}
