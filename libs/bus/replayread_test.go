package bus_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
)

// A replay long and dense enough to be read without a filter (half of the stream is on the
// projection's subject) applies exactly the projection's events in stream order, none of the
// others, and the projection then goes on live through the filtered consumer.
func TestDenseReplayReadUnfilteredGivesTheSameEvents(t *testing.T) {
	e := newEnv(t)
	pub := newBus(t, e.config(t, "scheduler"))
	const n = 6000 // 12,000 messages, 6,000 of them run.started
	var evs []*events.Event
	for i := range n {
		run := fmt.Sprintf("run-%d", i)
		evs = append(evs, runStarted(t, "acme", run), jobRequested(t, "acme", run, "i-1"))
		if len(evs) == 1000 {
			require.NoError(t, pub.Publish(t.Context(), evs...))
			evs = evs[:0]
		}
	}
	want := e.msgs(t, events.StreamTenant, "patch.*.run.started")
	require.Len(t, want, n)

	m := newRunsModel()
	b := newBus(t, e.config(t, "reader"))
	require.NoError(t, b.Project(m.spec("Runs", 0)))
	start(t, b)
	_, seqs, live := m.snapshot()
	require.Len(t, seqs, n, "every run.started, and nothing else")
	for i, w := range want {
		require.Equal(t, w.Sequence, seqs[i], "in stream order")
		require.False(t, live[i])
	}
	require.Equal(t, int32(1), m.caughtUp.Load())
	require.Equal(t, n, m.appliedAt)

	// Live, after the switch back to the filter: a job.requested is not delivered, a
	// run.started is.
	require.NoError(t, pub.Publish(t.Context(), jobRequested(t, "acme", "run-live", "i-1"), runStarted(t, "acme", "run-live")))
	require.Eventually(t, func() bool { return m.applied() == n+1 }, eventually, tick)
	runs, _, live := m.snapshot()
	require.Equal(t, "run-live", runs["acme"][len(runs["acme"])-1])
	require.True(t, live[n])
}
