package bus

import (
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func TestBackoffDoublesUpToTheLimit(t *testing.T) {
	tests := []struct {
		name    string
		attempt int
		want    time.Duration
	}{
		{"the first attempt waits the base", 1, 100 * time.Millisecond},
		{"the second attempt waits twice the base", 2, 200 * time.Millisecond},
		{"the third attempt waits four times the base", 3, 400 * time.Millisecond},
		{"a late attempt waits the limit", 10, time.Second},
		{"attempt zero waits the base", 0, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, backoff(100*time.Millisecond, time.Second, tt.attempt))
		})
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad tenant")
	require.NoError(t, Permanent(nil))
	p := Permanent(base)
	require.True(t, IsPermanent(p))
	require.ErrorIs(t, p, base)
	require.Equal(t, "bad tenant", p.Error())
	require.True(t, IsPermanent(fmt.Errorf("handle: %w", p)), "wrapped stays permanent")
	require.False(t, IsPermanent(base))
	require.False(t, IsPermanent(nil))
}

func TestTraceParents(t *testing.T) {
	format := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)
	root := NewTraceParent()
	require.Regexp(t, format, root)
	require.NotEqual(t, root, NewTraceParent())

	child := childTraceParent(root)
	require.Regexp(t, format, child)
	require.Equal(t, root[:36], child[:36], "the trace id is kept")
	require.NotEqual(t, root[36:52], child[36:52], "the span id is new")

	require.Regexp(t, format, childTraceParent("garbage"), "a bad parent starts a new trace")
	require.Len(t, NewCorrelationID(), 24)
}

func TestPermanentPublishErrors(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"a message over the size limit", nats.ErrMaxPayload, true},
		{"a refused message", &jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, true},
		{"a wrong last sequence", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, true},
		{"an unavailable stream", &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, false},
		{"a timeout", jetstream.ErrAsyncPublishTimeout, false},
		{"a lost connection", nats.ErrDisconnected, false},
		{"no stream", jetstream.ErrNoStreamResponse, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.permanent, permanentPublishError(tt.err))
		})
	}
}

func TestTrackerCheckDelayDoublesFromThePollIntervalUpToTheMaxCheckInterval(t *testing.T) {
	tests := []struct {
		name   string
		spec   TrackerSpec
		checks int
		want   time.Duration
	}{
		{"after the first check, one poll interval", TrackerSpec{PollInterval: time.Second}, 1, time.Second},
		{"after the second, two", TrackerSpec{PollInterval: time.Second}, 2, 2 * time.Second},
		{"after the fourth, eight", TrackerSpec{PollInterval: time.Second}, 4, 8 * time.Second},
		{"the default bound is eight poll intervals", TrackerSpec{PollInterval: time.Second}, 30, 8 * time.Second},
		{"the default poll interval is 2s", TrackerSpec{}, 1, 2 * time.Second},
		{"a set bound caps the doubling", TrackerSpec{PollInterval: time.Second, MaxCheckInterval: 3 * time.Second}, 3, 3 * time.Second},
		{"a bound below the poll interval checks at every tick", TrackerSpec{PollInterval: time.Second, MaxCheckInterval: time.Millisecond}, 5, time.Second},
		{"a huge number of checks does not overflow", TrackerSpec{PollInterval: time.Second, MaxCheckInterval: time.Hour}, 1 << 20, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, (&tracker{spec: tc.spec}).checkDelay(tc.checks))
		})
	}
}
