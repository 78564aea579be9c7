package bus

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

func TestDecodeCacheAnswersPrivateCopies(t *testing.T) {
	c := newDecodeCache(2)
	ev := events.MustNew("acme", "run-1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-1", Total: 3})
	raw, err := events.Marshal(ev)
	require.NoError(t, err)

	first, err := c.unmarshal(ev.Subject, raw)
	require.NoError(t, err)
	second, err := c.unmarshal(ev.Subject, raw)
	require.NoError(t, err)
	require.True(t, proto.Equal(first.Data, second.Data), "a hit decodes to the same event")
	require.Equal(t, first.ID, second.ID)

	// Consumers change what they received; the next one still gets the event as stored.
	first.Data.(*eventsv1.RunCompleted).Total = 99
	second.Sequence = 7
	third, err := c.unmarshal(ev.Subject, raw)
	require.NoError(t, err)
	require.EqualValues(t, 3, third.Data.(*eventsv1.RunCompleted).GetTotal())
	require.Zero(t, third.Sequence)

	// The same bytes on another subject are checked, not answered from the cache.
	_, err = c.unmarshal("patch.globex.run.completed", raw)
	require.ErrorIs(t, err, events.ErrMalformed)

	// Old entries make room: after two other events the first is decoded again, still right.
	for _, id := range []string{"run-2", "run-3"} {
		o := events.MustNew("acme", id, &eventsv1.RunCompleted{Tenant: "acme", RunId: id})
		b, err := events.Marshal(o)
		require.NoError(t, err)
		_, err = c.unmarshal(o.Subject, b)
		require.NoError(t, err)
	}
	require.Len(t, c.m, 2)
	again, err := c.unmarshal(ev.Subject, raw)
	require.NoError(t, err)
	require.EqualValues(t, 3, again.Data.(*eventsv1.RunCompleted).GetTotal())
}

func TestDecodeCacheSharesOneEventWithProjections(t *testing.T) {
	c := newDecodeCache(4)
	ev := events.MustNew("acme", "run-1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-1", Total: 3})
	raw, err := events.Marshal(ev)
	require.NoError(t, err)
	first, err := c.shared(ev.Subject, raw)
	require.NoError(t, err)
	second, err := c.shared(ev.Subject, raw)
	require.NoError(t, err)
	require.Same(t, first.Data, second.Data, "projections share the decoded payload")
	first.Sequence = 7
	require.Zero(t, second.Sequence, "each gets its own attributes")
	own, err := c.unmarshal(ev.Subject, raw)
	require.NoError(t, err)
	require.NotSame(t, first.Data, own.Data, "a handler gets its own payload")
	require.True(t, proto.Equal(first.Data, own.Data))
}

// A projection group decodes a round of messages into one slice of events: one allocation for
// the round, whatever its size, when the decode cache holds the events (as it does for every
// consumer after the first); before, each message wanted was an allocation of its own.
// AllocsPerRun runs on one core, so the count is the round decoded in one goroutine; the round
// checked after it is decoded on every core.
func TestDecodeAllDecodesARoundIntoOneAllocation(t *testing.T) {
	const n = 200
	raw := make([]projMsg, n)
	for i := range raw {
		ev := events.MustNew("acme", fmt.Sprintf("run-%d", i), &eventsv1.RunCompleted{Tenant: "acme", RunId: fmt.Sprintf("run-%d", i), Total: int32(i)})
		b, err := events.Marshal(ev)
		require.NoError(t, err)
		raw[i] = projMsg{subject: ev.Subject, data: b, seq: uint64(i + 1), live: true}
		if i%4 != 3 {
			raw[i].want = []int{0} // a quarter no projection wants
		}
	}
	log := slog.New(slog.DiscardHandler)
	decodeAll(log, raw) // the first consumer decodes; the cache keeps the events
	round := func() {
		for i := range raw {
			raw[i].ev = nil
		}
		decodeAll(log, raw)
	}
	allocs := testing.AllocsPerRun(20, round)
	t.Logf("allocations per round of %d: %.1f", n, allocs)
	require.LessOrEqual(t, allocs, 1.0)

	round()
	for i, r := range raw {
		if len(r.want) == 0 {
			require.Nil(t, r.ev, "message %d is wanted by no projection", i)
			continue
		}
		require.NotNil(t, r.ev)
		require.Equal(t, uint64(i+1), r.ev.Sequence)
		require.EqualValues(t, 1, r.ev.Delivered)
		require.EqualValues(t, i, r.ev.Data.(*eventsv1.RunCompleted).GetTotal())
	}
}

func TestDecodeAllLeavesOutMalformedMessages(t *testing.T) {
	ev := events.MustNew("acme", "run-1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-1"})
	b, err := events.Marshal(ev)
	require.NoError(t, err)
	raw := []projMsg{
		{subject: ev.Subject, data: []byte(`{"specversion":"0.3"}`), seq: 1, want: []int{0}},
		{subject: ev.Subject, data: b, seq: 2, want: []int{0}},
		{subject: "patch.globex.run.completed", data: b, seq: 3, live: true, want: []int{0}},
	}
	decodeAll(slog.New(slog.DiscardHandler), raw)
	require.Nil(t, raw[0].ev, "not an event")
	require.NotNil(t, raw[1].ev)
	require.Equal(t, ev.ID, raw[1].ev.ID)
	require.EqualValues(t, 2, raw[1].ev.Sequence)
	require.Nil(t, raw[2].ev, "on another tenant's subject")
}
