package ports

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/calendar"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

var statuses = map[calendar.Status]designv1.OccurrenceStatus{
	calendar.StatusScheduled:        designv1.OccurrenceStatus_OCCURRENCE_STATUS_SCHEDULED,
	calendar.StatusSkippedFrozen:    designv1.OccurrenceStatus_OCCURRENCE_STATUS_SKIPPED_FROZEN,
	calendar.StatusDeferred:         designv1.OccurrenceStatus_OCCURRENCE_STATUS_DEFERRED,
	calendar.StatusOverridden:       designv1.OccurrenceStatus_OCCURRENCE_STATUS_OVERRIDDEN,
	calendar.StatusSkippedPaused:    designv1.OccurrenceStatus_OCCURRENCE_STATUS_SKIPPED_PAUSED,
	calendar.StatusSkippedByRequest: designv1.OccurrenceStatus_OCCURRENCE_STATUS_SKIPPED_BY_REQUEST,
}

// occurrenceOut is a calendar occurrence as the API shows it: instants in UTC, durations in
// Go's compact form ("4h", "3h").
func occurrenceOut(o calendar.Occurrence) *designv1.Occurrence {
	out := &designv1.Occurrence{
		Key: o.Key, Start: stamp(o.Start), End: stamp(o.End), Status: statuses[o.Status],
		NominalDuration: design.FormatDuration(o.NominalDuration), Duration: design.FormatDuration(o.Duration),
		Note: o.Note, DispatchStopAt: stamp(o.DispatchStopAt), Freezes: o.Freezes, Reason: o.Reason,
	}
	if o.Status == calendar.StatusDeferred {
		out.OriginalStart = stamp(o.OriginalStart)
	}
	return out
}

func occurrencesOut(occs []calendar.Occurrence) []*designv1.Occurrence {
	out := make([]*designv1.Occurrence, len(occs))
	for i, o := range occs {
		out[i] = occurrenceOut(o)
	}
	return out
}

func stamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// timeOf is a request's optional instant; zero when absent.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
