package bench

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDeliveriesSinceCountsWhatEachConsumerGotInBetween(t *testing.T) {
	before := map[string]Delivery{
		"installer_InstallOnSnapshotCreated": {Consumer: "installer_InstallOnSnapshotCreated", Delivered: 5},
		"gone_projections_X_1":               {Consumer: "gone_projections_X_1", Delivered: 7},
	}
	after := map[string]Delivery{
		"installer_InstallOnSnapshotCreated": {Consumer: "installer_InstallOnSnapshotCreated", Filters: []string{"patch.*.snapshot.created"}, Delivered: 25},
		"reporting_projections_Y_1":          {Consumer: "reporting_projections_Y_1", Delivered: 30},
		"idle":                               {Consumer: "idle", Delivered: 0},
	}
	got := deliveriesSince(before, after)
	require.Equal(t, []Delivery{
		{Consumer: "installer_InstallOnSnapshotCreated", Filters: []string{"patch.*.snapshot.created"}, Delivered: 20},
		{Consumer: "reporting_projections_Y_1", Delivered: 30},
	}, got, "a new consumer counts from zero, an idle or deleted one is left out")

	var out bytes.Buffer
	reportDeliveries(&out, got, 10)
	require.Contains(t, out.String(), "5.00 per instance")
}
