package bus_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/testkit"
)

// deployDir holds the stream definitions operators apply with `nats stream add --config FILE`.
const deployDir = "../../deploy/nats"

// relevant is what must agree between code and deploy files.
type relevant struct {
	Name       string
	Subjects   []string
	Retention  jetstream.RetentionPolicy
	Storage    jetstream.StorageType
	Duplicates time.Duration
	MaxAge     time.Duration
	Replicas   int
	Discard    jetstream.DiscardPolicy
}

func relevantOf(c jetstream.StreamConfig) relevant {
	return relevant{c.Name, c.Subjects, c.Retention, c.Storage, c.Duplicates, c.MaxAge, c.Replicas, c.Discard}
}

func loadDeployStreams(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "*.json"))
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	return out
}

func TestDeployStreamFilesMatchStreams(t *testing.T) {
	files := loadDeployStreams(t)
	want := bus.Streams(bus.StreamOptions{})
	var names []string
	for _, w := range want {
		names = append(names, w.Name)
	}
	require.ElementsMatch(t, names, slices.Collect(mapKeys(files)), "one file per stream, named after it")

	for _, w := range want {
		t.Run(w.Name, func(t *testing.T) {
			var got jetstream.StreamConfig
			require.NoError(t, json.Unmarshal(files[w.Name], &got))
			require.Equal(t, relevantOf(w), relevantOf(got))
			require.Equal(t, w.Description, got.Description)
		})
	}
}

func mapKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestDeployStreamFilesAreAcceptedAndKeptByEnsureStreams creates the streams from the files the
// way the nats CLI does (the file is the body of a stream create request), then runs
// EnsureStreams: a service starting against operator-made streams changes nothing that matters.
func TestDeployStreamFilesAreAcceptedAndKeptByEnsureStreams(t *testing.T) {
	srv := testkit.StartNATS(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for name, body := range loadDeployStreams(t) {
		resp, err := nc.RequestWithContext(t.Context(), "$JS.API.STREAM.CREATE."+name, body)
		require.NoError(t, err)
		var r struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(resp.Data, &r))
		require.Nil(t, r.Error, "server refused %s: %+v", name, r.Error)
	}
	before := map[string]jetstream.StreamConfig{}
	for _, w := range bus.Streams(bus.StreamOptions{}) {
		s, err := js.Stream(t.Context(), w.Name)
		require.NoError(t, err)
		before[w.Name] = s.CachedInfo().Config
	}

	require.NoError(t, bus.EnsureStreams(t.Context(), js, bus.StreamOptions{}))

	for _, w := range bus.Streams(bus.StreamOptions{}) {
		s, err := js.Stream(t.Context(), w.Name)
		require.NoError(t, err)
		got := s.CachedInfo().Config
		require.Equal(t, relevantOf(w), relevantOf(got))
		require.Equal(t, before[w.Name].MaxMsgs, got.MaxMsgs)
		require.Equal(t, before[w.Name].MaxBytes, got.MaxBytes)
		require.Equal(t, before[w.Name].MaxMsgSize, got.MaxMsgSize)
	}
}

func TestEnsureStreamsIsIdempotent(t *testing.T) {
	js := testkit.StartNATS(t).JetStream(t)
	ctx := t.Context()
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))

	_, err := js.Publish(ctx, "patch.acme.run.started", []byte("x"))
	require.NoError(t, err)

	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}), "a second run changes nothing")
	for _, w := range bus.Streams(bus.StreamOptions{}) {
		s, err := js.Stream(ctx, w.Name)
		require.NoError(t, err)
		require.Equal(t, relevantOf(w), relevantOf(s.CachedInfo().Config))
	}
	s, err := js.Stream(ctx, events.StreamTenant)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.CachedInfo().State.Msgs, "existing events are kept")

	// A changed option updates the stream in place.
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{MaxAge: 90 * 24 * time.Hour, DuplicateWindow: time.Hour}))
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 90*24*time.Hour, info.Config.MaxAge)
	require.Equal(t, time.Hour, info.Config.Duplicates)
	require.Equal(t, uint64(1), info.State.Msgs)
}

func TestStreamOptions(t *testing.T) {
	defaults := bus.Streams(bus.StreamOptions{})
	require.Len(t, defaults, 3)
	for _, s := range defaults {
		require.Equal(t, 1, s.Replicas)
		require.Equal(t, jetstream.FileStorage, s.Storage)
		require.Equal(t, 2*time.Hour, s.Duplicates)
		require.Equal(t, jetstream.LimitsPolicy, s.Retention)
	}
	require.Equal(t, 30*24*time.Hour, defaults[2].MaxAge, "dead letters expire")
	require.Zero(t, defaults[0].MaxAge, "events are kept")

	tests := []struct {
		name  string
		opts  bus.StreamOptions
		field string
	}{
		{"more than 5 replicas is refused", bus.StreamOptions{Replicas: 7}, "Replicas"},
		{"negative replicas are refused", bus.StreamOptions{Replicas: -1}, "Replicas"},
		{"a negative duplicate window is refused", bus.StreamOptions{DuplicateWindow: -time.Second}, "DuplicateWindow"},
		{"a negative max age is refused", bus.StreamOptions{MaxAge: -time.Second}, "MaxAge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorContains(t, tt.opts.Validate(), tt.field)
		})
	}
	require.NoError(t, bus.StreamOptions{Replicas: 3, Storage: jetstream.MemoryStorage}.Validate())
}

// TestEnsureStreamsRacesOnAFreshServer is how services start in a fresh deployment: several
// processes, each on its own connection, ensure the same streams at the same moment. Every one
// of them starts, and the streams have their definitions (CI once saw nats-server refuse one
// racer with "error creating store for stream").
func TestEnsureStreamsRacesOnAFreshServer(t *testing.T) {
	const servers, racers = 8, 6
	for range servers {
		srv := testkit.StartNATS(t)
		jss := make([]jetstream.JetStream, racers)
		for i := range jss {
			jss[i] = srv.JetStream(t)
		}
		var wg sync.WaitGroup
		errs := make([]error, racers)
		startLine := make(chan struct{})
		for i, js := range jss {
			wg.Go(func() {
				<-startLine
				errs[i] = bus.EnsureStreams(t.Context(), js, bus.StreamOptions{})
			})
		}
		close(startLine)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "racer %d", i)
		}
		for _, w := range bus.Streams(bus.StreamOptions{}) {
			s, err := jss[0].Stream(t.Context(), w.Name)
			require.NoError(t, err)
			require.Equal(t, relevantOf(w), relevantOf(s.CachedInfo().Config))
		}
	}
}

// refusingJS refuses the first creates of each stream with a given API error, then passes
// them to the server.
type refusingJS struct {
	jetstream.JetStream
	refusal *jetstream.APIError
	refuse  int
	creates map[string]int
}

func (r *refusingJS) CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	r.creates[cfg.Name]++
	if r.creates[cfg.Name] <= r.refuse {
		return nil, r.refusal
	}
	return r.JetStream.CreateStream(ctx, cfg)
}

func TestEnsureStreamsRetriesOnlyTransientRefusals(t *testing.T) {
	storeFailed := &jetstream.APIError{Code: 500, ErrorCode: 10049, Description: "error creating store for stream"}
	noLeader := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	badRequest := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeBadRequest, Description: "bad request"}
	tests := []struct {
		name        string
		refusal     *jetstream.APIError
		refuse      int
		wantErr     bool
		wantCreates int
	}{
		{"a store that failed in a create race is asked again", storeFailed, 3, false, 4},
		{"a cluster without a leader yet is asked again", noLeader, 2, false, 3},
		{"a bad request is not retried", badRequest, 1, true, 1},
		{"a refusal that lasts is returned after the last attempt", storeFailed, 1000, true, 12},
	}
	bus.ShortenEnsureBackoff(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := &refusingJS{JetStream: testkit.StartNATS(t).JetStream(t), refusal: tt.refusal, refuse: tt.refuse, creates: map[string]int{}}
			err := bus.EnsureStreams(t.Context(), js, bus.StreamOptions{})
			first := bus.Streams(bus.StreamOptions{})[0].Name
			require.Equal(t, tt.wantCreates, js.creates[first], "creates of %s", first)
			if tt.wantErr {
				require.ErrorIs(t, err, tt.refusal)
				require.ErrorContains(t, err, "ensure stream "+first)
				return
			}
			require.NoError(t, err)
			for _, w := range bus.Streams(bus.StreamOptions{}) {
				s, err := js.Stream(t.Context(), w.Name)
				require.NoError(t, err)
				require.Equal(t, relevantOf(w), relevantOf(s.CachedInfo().Config))
			}
		})
	}
}

func TestEnsureStreamsStopsRetryingWhenTheCallerGivesUp(t *testing.T) {
	storeFailed := &jetstream.APIError{Code: 500, ErrorCode: 10049, Description: "error creating store for stream"}
	js := &refusingJS{JetStream: testkit.StartNATS(t).JetStream(t), refusal: storeFailed, refuse: 1000, creates: map[string]int{}}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := bus.EnsureStreams(ctx, js, bus.StreamOptions{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "error creating store for stream", "the last refusal is named")
}
