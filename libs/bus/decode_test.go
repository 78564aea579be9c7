package bus

import (
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
