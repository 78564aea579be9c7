package benchkit_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/benchkit"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit"
)

func TestFloorMovesEveryMessageThroughEveryStage(t *testing.T) {
	srv := testkit.StartNATS(t)
	js := srv.JetStream(t)
	require.NoError(t, bus.EnsureStreams(t.Context(), js, bus.StreamOptions{}))

	res, err := benchkit.Floor(t.Context(), benchkit.FloorConfig{
		JS: js, Stream: events.StreamTenant, SubjectPrefix: "patch.floor-test", Instances: 1200, Stages: 3, Batch: 100,
	})
	require.NoError(t, err)
	require.Equal(t, 1200*4, res.Events)
	require.Positive(t, res.EventsPerSecond())

	s, err := js.Stream(t.Context(), events.StreamTenant)
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("patch.floor-test.>"))
	require.NoError(t, err)
	for stage, subject := range []string{"patch.floor-test.s0", "patch.floor-test.s1", "patch.floor-test.s2", "patch.floor-test.s3"} {
		require.EqualValues(t, 1200, info.State.Subjects[subject], "stage %d stored every message once", stage)
	}
	names := s.ConsumerNames(t.Context())
	for name := range names.Name() {
		t.Fatalf("the floor leaves no consumer behind, found %s", name)
	}
	require.NoError(t, names.Err())
}

func TestFloorRefusesABadConfig(t *testing.T) {
	_, err := benchkit.Floor(t.Context(), benchkit.FloorConfig{})
	require.ErrorContains(t, err, "JS: required")
	require.ErrorContains(t, err, "Instances 0, Stages 0: must be > 0")
}

func TestPeakRSSOfThisProcess(t *testing.T) {
	mib, err := benchkit.PeakRSSMiB("self")
	require.NoError(t, err)
	require.Greater(t, mib, 1.0)
}
