package catalog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog"
)

var (
	_ host.Component     = (*catalog.Service)(nil)
	_ host.GRPCRegistrar = (*catalog.Service)(nil)
)

var publishedAt = time.Date(2026, 11, 10, 8, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return publishedAt }

// storeKinds opens the read model's store: in memory, or in a real redis-server. Each call of
// the returned function for the redis kind reopens the same database, as a restarted process
// would.
func storeKinds() map[string]func(t *testing.T) func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) func(t *testing.T) store.Store{
		"memory": func(*testing.T) func(t *testing.T) store.Store {
			return func(t *testing.T) store.Store {
				s := store.NewMemory()
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
		},
		"redis": func(t *testing.T) func(t *testing.T) store.Store {
			r := testkit.StartRedis(t)
			return func(t *testing.T) store.Store {
				s, err := store.NewRedis(store.RedisConfig{Addr: r.Addr(), Prefix: "patchwave:"})
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
		},
	}
}

// running is a catalog hosted as cmd/catalog hosts it.
type running struct {
	client catalogv1.CatalogServiceClient
	stop   func()
}

func run(t *testing.T, nc *nats.Conn, st store.Store, cfg catalog.Config) *running {
	t.Helper()
	svc, err := catalog.New(cfg, catalog.Deps{Store: st, Clock: fixedClock})
	require.NoError(t, err)
	cc, stop := stagetest.RunGRPCComponent(t, nc, svc)
	return &running{client: catalogv1.NewCatalogServiceClient(cc), stop: stop}
}

// published returns every BaselinePublished event in the catalog stream, in order.
func published(t *testing.T, nc *nats.Conn) []*events.Event {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(t.Context(), events.StreamCatalog)
	require.NoError(t, err)
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	var out []*events.Event
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		msg, err := stream.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		ev, err := events.Unmarshal(msg.Subject, msg.Data)
		require.NoError(t, err)
		out = append(out, ev)
	}
	return out
}

func publish(t *testing.T, nc *nats.Conn, key string, payload *eventsv1.BaselinePublished) {
	t.Helper()
	b, err := bus.New(t.Context(), bus.Config{Service: "test", Conn: nc})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), events.MustNew("", key, payload)))
}

func ids(bs []*catalogv1.Baseline) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.GetBaselineId()
	}
	return out
}

func TestCatalogPublishesConfiguredBaselinesOnceAndServesThem(t *testing.T) {
	for kind, open := range storeKinds() {
		t.Run(kind, func(t *testing.T) {
			ns := testkit.StartNATS(t)
			nc := ns.Connect(t)
			newStore := open(t)

			c := run(t, nc, newStore(t), catalog.Config{})
			evs := published(t, nc)
			require.Len(t, evs, 1)
			require.Equal(t, "catalog.baseline.published/al2023-2026.11", evs[0].ID)
			require.Equal(t, "al2023-2026.11", evs[0].Key)
			require.Equal(t, "/patchwave/catalog", evs[0].Source)
			msg := evs[0].Data.(*eventsv1.BaselinePublished)
			require.Equal(t, "amazon-linux-2023", msg.GetOsFamily())
			require.Equal(t, int32(1), msg.GetVersion())
			require.Len(t, msg.GetPatches(), 4)
			require.True(t, publishedAt.Equal(msg.GetPublishedAt().AsTime()))

			list, err := c.client.ListBaselines(t.Context(), &catalogv1.ListBaselinesRequest{})
			require.NoError(t, err)
			require.Equal(t, []string{"al2023-2026.11"}, ids(list.GetBaselines()))

			got, err := c.client.GetBaseline(t.Context(), &catalogv1.GetBaselineRequest{BaselineId: "al2023-2026.11"})
			require.NoError(t, err)
			b := got.GetBaseline()
			require.True(t, publishedAt.Equal(b.GetPublishedAt().AsTime()))
			var reboot, critical, bugfix, enhancement int
			for _, p := range b.GetPatches() {
				require.Equal(t, "amazon-linux-2023", p.GetOsFamily())
				if p.GetRebootRequired() {
					reboot++
				}
				if p.GetSeverity() == typesv1.Severity_SEVERITY_CRITICAL && len(p.GetCves()) > 0 {
					critical++
				}
				switch p.GetClassification() {
				case typesv1.Classification_CLASSIFICATION_BUGFIX:
					bugfix++
				case typesv1.Classification_CLASSIFICATION_ENHANCEMENT:
					enhancement++
				}
			}
			require.Equal(t, []int{1, 1, 1, 1}, []int{reboot, critical, bugfix, enhancement})

			// A restart (same store for redis, a fresh one in memory) replays the stream and
			// publishes nothing again.
			c.stop()
			c = run(t, nc, newStore(t), catalog.Config{})
			require.Len(t, published(t, nc), 1)
			got, err = c.client.GetBaseline(t.Context(), &catalogv1.GetBaselineRequest{BaselineId: "al2023-2026.11"})
			require.NoError(t, err)
			require.True(t, publishedAt.Equal(got.GetBaseline().GetPublishedAt().AsTime()), "the first publication is kept")
		})
	}
}

func TestCatalogProjectsBaselinesPublishedByOthersNewestFirst(t *testing.T) {
	for kind, open := range storeKinds() {
		t.Run(kind, func(t *testing.T) {
			ns := testkit.StartNATS(t)
			nc := ns.Connect(t)
			patches := []*typesv1.Patch{{Id: "ALAS2023-2026-2001", OsFamily: "amazon-linux-2023"}}
			publish(t, nc, "al2023-2026.12", &eventsv1.BaselinePublished{
				BaselineId: "al2023-2026.12", OsFamily: "amazon-linux-2023", Version: 2, Patches: patches,
				PublishedAt: timestamppb.New(publishedAt.Add(24 * time.Hour)),
			})
			// An invalid baseline is skipped, not applied and not retried forever.
			publish(t, nc, "empty", &eventsv1.BaselinePublished{BaselineId: "empty", OsFamily: "x", Version: 1})

			c := run(t, nc, open(t)(t), catalog.Config{})
			list, err := c.client.ListBaselines(t.Context(), &catalogv1.ListBaselinesRequest{})
			require.NoError(t, err)
			require.Equal(t, []string{"al2023-2026.12", "al2023-2026.11"}, ids(list.GetBaselines()))

			// Live events reach the read model too.
			publish(t, nc, "al2023-2027.01", &eventsv1.BaselinePublished{
				BaselineId: "al2023-2027.01", OsFamily: "amazon-linux-2023", Version: 3, Patches: patches,
				PublishedAt: timestamppb.New(publishedAt.Add(48 * time.Hour)),
			})
			require.Eventually(t, func() bool {
				list, err := c.client.ListBaselines(t.Context(), &catalogv1.ListBaselinesRequest{})
				return err == nil && len(list.GetBaselines()) == 3 && list.GetBaselines()[0].GetBaselineId() == "al2023-2027.01"
			}, 10*time.Second, 20*time.Millisecond)
		})
	}
}

func TestGetBaselineErrors(t *testing.T) {
	ns := testkit.StartNATS(t)
	c := run(t, ns.Connect(t), store.NewMemory(), catalog.Config{})
	tests := []struct {
		name     string
		id       string
		wantCode codes.Code
		wantMsg  string
	}{
		{"an unknown id is NotFound", "al2023-2099.01", codes.NotFound, `baseline "al2023-2099.01": baseline not found`},
		{"a malformed id is InvalidArgument naming the rule", "AL2023/x", codes.InvalidArgument, `baseline id "AL2023/x": must match`},
		{"an empty id is InvalidArgument", "", codes.InvalidArgument, `baseline id ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.client.GetBaseline(t.Context(), &catalogv1.GetBaselineRequest{BaselineId: tt.id})
			st, ok := status.FromError(err)
			require.True(t, ok, "error %v is a status", err)
			require.Equal(t, tt.wantCode, st.Code())
			require.Contains(t, st.Message(), tt.wantMsg)
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	patch := func(id string) catalog.Patch { return catalog.Patch{ID: id} }
	good := func(id string) catalog.Baseline {
		return catalog.Baseline{ID: id, OSFamily: "amazon-linux-2023", Version: 1, Patches: []catalog.Patch{patch("p-1")}}
	}
	tests := []struct {
		name string
		cfg  catalog.Config
		deps catalog.Deps
		want []string
	}{
		{
			name: "a bad id names the field and index",
			cfg:  catalog.Config{Baselines: []catalog.Baseline{good("ok"), {ID: "Bad!", OSFamily: "x", Version: 1, Patches: []catalog.Patch{patch("p")}}}},
			deps: catalog.Deps{Store: store.NewMemory()},
			want: []string{`Baselines[1].ID "Bad!": must match`},
		},
		{
			name: "a baseline without patches is refused",
			cfg:  catalog.Config{Baselines: []catalog.Baseline{{ID: "b", OSFamily: "x", Version: 1}}},
			deps: catalog.Deps{Store: store.NewMemory()},
			want: []string{"Baselines[0].Patches: at least one patch is required"},
		},
		{
			name: "duplicate patch ids are refused",
			cfg:  catalog.Config{Baselines: []catalog.Baseline{{ID: "b", OSFamily: "x", Version: 1, Patches: []catalog.Patch{patch("p"), patch("q"), patch("p")}}}},
			deps: catalog.Deps{Store: store.NewMemory()},
			want: []string{`Baselines[0].Patches[2].ID "p": duplicate of Patches[0]`},
		},
		{
			name: "duplicate baseline ids are refused",
			cfg:  catalog.Config{Baselines: []catalog.Baseline{good("b"), good("c"), good("b")}},
			deps: catalog.Deps{Store: store.NewMemory()},
			want: []string{`Baselines[2].ID "b": duplicate of Baselines[0]`},
		},
		{
			name: "a missing store is refused with the config problems",
			cfg:  catalog.Config{Baselines: []catalog.Baseline{{ID: "b", OSFamily: "x"}}},
			want: []string{"Deps.Store: required", "Baselines[0].Version 0", "Baselines[0].Patches"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := catalog.New(tt.cfg, tt.deps)
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				require.NotEmpty(t, strings.TrimSpace(line))
			}
		})
	}
}

func TestDemoBaselinesAreValidAndTheDefault(t *testing.T) {
	demo := catalog.DemoBaselines()
	require.Len(t, demo, 1)
	require.Equal(t, "al2023-2026.11", demo[0].ID)
	_, err := catalog.New(catalog.Config{Baselines: demo}, catalog.Deps{Store: store.NewMemory()})
	require.NoError(t, err)
}

func TestAnEmptyBaselineListPublishesNothing(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	c := run(t, nc, store.NewMemory(), catalog.Config{Baselines: []catalog.Baseline{}})
	require.Empty(t, published(t, nc))
	list, err := c.client.ListBaselines(t.Context(), &catalogv1.ListBaselinesRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetBaselines())
}

func TestAChangedConfiguredBaselineIsNotRepublished(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	c := run(t, nc, store.NewMemory(), catalog.Config{})
	c.stop()

	changed := catalog.DemoBaselines()
	changed[0].Version = 7
	changed[0].Patches = changed[0].Patches[:1]
	c = run(t, nc, store.NewMemory(), catalog.Config{Baselines: changed})
	require.Len(t, published(t, nc), 1, "baselines are immutable: the id is published once")
	got, err := c.client.GetBaseline(t.Context(), &catalogv1.GetBaselineRequest{BaselineId: changed[0].ID})
	require.NoError(t, err)
	require.Equal(t, int32(1), got.GetBaseline().GetVersion())
	require.Len(t, got.GetBaseline().GetPatches(), 4)
}
