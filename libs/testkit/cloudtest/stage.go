package cloudtest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/cloudsim"
)

// Waits of the Stage helpers.
const (
	Eventually = 20 * time.Second
	Tick       = 10 * time.Millisecond
)

// Stage is what the test of a provider stage (snapshotter, installer) stands on: an embedded
// NATS, an emulated AWS account of one tenant (cloudsim through the AWS adapter), a
// bus publishing the stage's input as the upstream service would, and a clock for the stage.
type Stage struct {
	Tenant string
	Cloud  *Env
	NC     *nats.Conn
	JS     jetstream.JetStream
	// In publishes test input as the service Upstream.
	In *bus.Bus
	// Clock is the stage's clock; it moves only when the test says so.
	Clock *testkit.Clock

	// producers publish the events Upstream does not produce, each as its producer.
	producers map[string]*bus.Bus
}

// NewStage starts a Stage whose tenant "acme" has instances running instances (wave 1) in the
// emulator, configured by sim (may be nil); In publishes as upstream.
func NewStage(t testing.TB, upstream string, instances int, sim func(*cloudsim.Config)) *Stage {
	t.Helper()
	acc := DefaultAccount()
	acc.Instances, acc.Waves = instances, 1
	s := &Stage{Tenant: acc.Tenant, Cloud: Start(t, Options{Accounts: []cloudsim.AccountConfig{acc}, Sim: sim}), Clock: testkit.NewClock(time.Now())}
	s.NC = testkit.StartNATS(t).Connect(t)
	s.In = stagetest.Publisher(t, s.NC, upstream)
	s.JS = s.In.JetStream()
	return s
}

// Target is the tenant's account and region in the emulator.
func (s *Stage) Target() provider.Target { return s.Cloud.Target(s.Tenant) }

// InstanceIDs lists the tenant's instances in creation order.
func (s *Stage) InstanceIDs() []string {
	t := s.Target()
	return s.Cloud.Sim.InstanceIDs(t.Account, t.Region)
}

// Location is where the tenant's instances live, as events name it.
func (s *Stage) Location() *typesv1.Location {
	t := s.Target()
	return &typesv1.Location{Account: t.Account, Region: t.Region}
}

// Publish publishes one event of the tenant as its producer would (Upstream for the stage's
// input), stamped with Clock.
func (s *Stage) Publish(t testing.TB, key string, msg proto.Message) {
	t.Helper()
	ev := events.MustNew(s.Tenant, key, msg)
	ev.Time = s.Clock.Now()
	d, err := events.DefOf(msg)
	require.NoError(t, err)
	pub := s.In
	if d.Producer != s.In.Service() {
		if s.producers == nil {
			s.producers = map[string]*bus.Bus{}
		}
		if pub = s.producers[d.Producer]; pub == nil {
			pub = stagetest.Publisher(t, s.NC, d.Producer)
			s.producers[d.Producer] = pub
		}
	}
	require.NoError(t, pub.Publish(t.Context(), ev))
}

// Count is how many events of kind ("snapshot.created") of the tenant the stream holds.
func (s *Stage) Count(t testing.TB, kind string) int {
	t.Helper()
	return stagetest.CountEvents(t, s.JS, events.StreamTenant, "patch."+s.Tenant+"."+kind)
}

// Read returns the tenant's events of kind in stream order.
func (s *Stage) Read(t testing.TB, kind string) []*events.Event {
	t.Helper()
	return stagetest.ReadEvents(t, s.JS, "patch."+s.Tenant+"."+kind)
}

// WaitCount waits until the stream holds n events of kind, and fails if it holds more.
func (s *Stage) WaitCount(t testing.TB, kind string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Count(t, kind) >= n }, Eventually, Tick, "%d %s", n, kind)
	require.Equal(t, n, s.Count(t, kind), kind)
}

// Calls is how many calls of op ("ec2:CreateSnapshots") the emulator received naming instance id.
func (s *Stage) Calls(id, op string) int64 { return s.Cloud.Sim.InstanceStats(id)[op] }
