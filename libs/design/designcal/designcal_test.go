package designcal_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/calendar"
	"github.com/patchwave/patchwave/libs/design/designcal"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

func TestAStoredWaveReadsAsItsCalendarWithTheTenantsAndProvidersFreezes(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	w := &typesv1.Wave{Number: 1, Schedule: &typesv1.Schedule{WeekOfMonth: 2, DayOfWeek: "TUESDAY", StartTime: "02:00", EndTime: "06:00", TimeZone: "Europe/Berlin"}}
	jan := time.Date(2027, 1, 12, 2, 0, 0, 0, berlin) // second Tuesday of January 2027
	doc := &typesv1.TenantDesign{Freezes: []*typesv1.Freeze{{Id: "jan", Policy: typesv1.FreezePolicy_FREEZE_POLICY_SKIP,
		Start: timestamppb.New(jan.Add(-time.Hour)), End: timestamppb.New(jan.Add(time.Hour))}}}
	global := &typesv1.GlobalDesign{Freezes: []*typesv1.Freeze{{Id: "feb", Policy: typesv1.FreezePolicy_FREEZE_POLICY_DEFER, DeferDays: 7,
		Start: timestamppb.New(time.Date(2027, 2, 9, 0, 0, 0, 0, berlin)), End: timestamppb.New(time.Date(2027, 2, 10, 0, 0, 0, 0, berlin))}}}

	s, o, err := designcal.WaveCalendar(doc, global, w)
	require.NoError(t, err)
	occ, err := calendar.Occurrences(s, o, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), 3)
	require.NoError(t, err)
	require.Len(t, occ, 3)
	assert.Equal(t, calendar.StatusSkippedFrozen, occ[0].Status)
	assert.True(t, jan.Equal(occ[0].Start))
	assert.Equal(t, calendar.StatusDeferred, occ[1].Status)
	assert.Equal(t, []string{"provider/feb"}, occ[1].Freezes)
	assert.Equal(t, calendar.StatusScheduled, occ[2].Status)

	_, _, err = designcal.WaveCalendar(doc, global, &typesv1.Wave{Number: 2, Schedule: &typesv1.Schedule{DayOfWeek: "FUNDAY"}})
	require.Error(t, err)
}
