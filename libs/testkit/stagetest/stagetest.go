// Package stagetest helps test a pipeline stage (a host.Component with bus handlers) through
// the bus: host it on a test's embedded NATS (with its gRPC API on a loopback port if it has
// one), publish its input as the upstream service would, and read or count what it wrote to
// the streams. It sits beside testkit, which starts the servers and depends on no Patchwave
// package beyond them.
package stagetest

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/mtls"
)

// BusConfig returns the bus template of components under test: quick retries (throttled ones
// too, and fewer of them), so a test that provokes a retry does not wait for the production
// backoff.
func BusConfig() bus.Config {
	return bus.Config{RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond,
		ThrottledBackoff: 20 * time.Millisecond, MaxDeliverThrottled: 8}
}

// RunComponent hosts comp on nc with BusConfig until the returned stop is called (or the test
// ends), and returns once its handlers consume. stop waits for the host to stop and fails the
// test if it stopped with an error; calling it again does nothing.
func RunComponent(t testing.TB, nc *nats.Conn, comp host.Component) (stop func()) {
	t.Helper()
	_, stop = runWith(t, nc, comp, "", mtls.Files{}, BusConfig(), nil, nil)
	return stop
}

// RunWithMetrics is RunComponent with the host's metrics in reg, so a test can read the bus's
// figures (held messages, checks, outcomes).
func RunWithMetrics(t testing.TB, nc *nats.Conn, comp host.Component, reg *prometheus.Registry) (stop func()) {
	t.Helper()
	_, stop = runWith(t, nc, comp, "", mtls.Files{}, BusConfig(), reg, nil)
	return stop
}

// RunGRPCComponent is RunComponent with the host's gRPC server on a free loopback port (comp's
// API, if it is a host.GRPCRegistrar, and the health service), behind mutual TLS with a CA of
// the test's own (PKI): it returns a client connection to it as well, which presents the
// gateway's certificate and calls as Operator unless the call's context names another
// identity (As). stop closes the connection first, then stops the host as RunComponent's does.
func RunGRPCComponent(t testing.TB, nc *nats.Conn, comp host.Component) (conn *grpc.ClientConn, stop func()) {
	t.Helper()
	return RunGRPCComponentWith(t, nc, comp, BusConfig())
}

// RunGRPCComponentWith is RunGRPCComponent with bus configuration busCfg (for example stream
// options a test needs from the start).
func RunGRPCComponentWith(t testing.TB, nc *nats.Conn, comp host.Component, busCfg bus.Config) (conn *grpc.ClientConn, stop func()) {
	t.Helper()
	pki := PKI(t)
	h, stop := runWith(t, nc, comp, "127.0.0.1:0", pki[mtls.Services], busCfg, nil, func() {
		if conn != nil {
			_ = conn.Close()
		}
	})
	conn = Dial(t, h.GRPCAddr(), pki[mtls.Gateway])
	return conn, stop
}

// Intruder is the peer name of PKI's third certificate: signed by the test CA, but not the
// gateway's.
const Intruder = "intruder"

// PKI makes a CA and certificates in a temporary directory: mtls.Services (a server
// certificate for 127.0.0.1 and localhost), mtls.Gateway and Intruder.
func PKI(t testing.TB) map[string]mtls.Files {
	t.Helper()
	files, err := mtls.Ensure(t.TempDir(), time.Now(),
		mtls.Leaf{Name: mtls.Services, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}},
		mtls.Leaf{Name: mtls.Gateway}, mtls.Leaf{Name: Intruder})
	require.NoError(t, err)
	return files
}

// ServerTLS is the gRPC server configuration of files.
func ServerTLS(t testing.TB, files mtls.Files) *tls.Config {
	t.Helper()
	c, err := files.ServerConfig()
	require.NoError(t, err)
	return c
}

// Operator is the identity a connection of Dial calls as unless the context names another.
var Operator = auth.Identity{Subject: "operator@test", Roles: []auth.Role{auth.RoleOperator}, CredentialID: "test-key", CredentialKind: auth.KindAPIKey}

// As returns ctx whose calls over a Dial connection act as id (the gateway forwards the caller
// the same way).
func As(ctx context.Context, id auth.Identity) context.Context { return auth.OutgoingContext(ctx, &id) }

// Dial connects to a gRPC server of the test PKI with the client certificate of files. Calls
// act as Operator unless their context names an identity (As). The connection is closed when
// the test ends.
func Dial(t testing.TB, addr string, files mtls.Files) *grpc.ClientConn {
	t.Helper()
	tc, err := files.ClientConfig("127.0.0.1")
	require.NoError(t, err)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(auth.MetadataSubject)) == 0 {
				ctx = As(ctx, Operator)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// runWith hosts comp with bus configuration busCfg and the host's metrics in reg (a new
// registry when nil), gRPC on grpcAddr (with the server certificate of files) unless empty,
// and returns once the host is ready. Its stop, also registered as a cleanup before waiting,
// calls beforeStop (if not nil) before stopping the host.
func runWith(t testing.TB, nc *nats.Conn, comp host.Component, grpcAddr string, files mtls.Files, busCfg bus.Config, reg *prometheus.Registry, beforeStop func()) (*host.Host, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cfg := host.Config{Name: "test-" + comp.Name(), Conn: nc, GRPCAddr: grpcAddr, Bus: busCfg, Registry: reg}
	if grpcAddr != "" {
		cfg.GRPCTLS = ServerTLS(t, files)
	}
	h, err := host.New(ctx, cfg, comp)
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if beforeStop != nil {
			beforeStop()
		}
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	readyCtx, cancelReady := context.WithTimeout(ctx, 30*time.Second)
	defer cancelReady()
	require.NoError(t, h.Ready(readyCtx), "host did not become ready")
	return h, stop
}

// Publisher returns a bus that publishes test input as service would. The bus publishes only
// the events service produces (events.Def.Producer); Publish takes events of any producer.
func Publisher(t testing.TB, nc *nats.Conn, service string) *bus.Bus {
	t.Helper()
	b, err := bus.New(t.Context(), bus.Config{Service: service, Conn: nc})
	require.NoError(t, err)
	return b
}

// Publish publishes evs in order, each as its producer would (through a bus of the service
// that produces it), so that consumers, which refuse an event whose source is not its
// producer, take them.
func Publish(t testing.TB, nc *nats.Conn, evs ...*events.Event) {
	t.Helper()
	buses := map[string]*bus.Bus{}
	for start := 0; start < len(evs); {
		d, err := events.DefOf(evs[start].Data)
		require.NoError(t, err)
		// A run of consecutive events of one producer goes in one call.
		end := start + 1
		for end < len(evs) {
			next, err := events.DefOf(evs[end].Data)
			require.NoError(t, err)
			if next.Producer != d.Producer {
				break
			}
			end++
		}
		b, ok := buses[d.Producer]
		if !ok {
			b = Publisher(t, nc, d.Producer)
			buses[d.Producer] = b
		}
		require.NoError(t, b.Publish(t.Context(), evs[start:end]...))
		start = end
	}
}

// CountEvents returns how many events on subjects matching filter the stream holds.
func CountEvents(t testing.TB, js jetstream.JetStream, stream, filter string) int {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// ReadEvents returns, in stream order, every event of the tenant stream (PATCH_EVENTS) on
// subjects matching filter.
func ReadEvents(t testing.TB, js jetstream.JetStream, filter string) []*events.Event {
	t.Helper()
	n := CountEvents(t, js, events.StreamTenant, filter)
	cons, err := js.OrderedConsumer(t.Context(), events.StreamTenant, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	require.NoError(t, err)
	var out []*events.Event
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n {
		require.True(t, time.Now().Before(deadline), "read %d of %d events on %s", len(out), n, filter)
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for msg := range batch.Messages() {
			ev, err := events.Unmarshal(msg.Subject(), msg.Data())
			require.NoError(t, err)
			out = append(out, ev)
		}
		require.NoError(t, batch.Error())
	}
	return out
}

// Drained reports whether the durable consumer of a handler of service on the tenant stream
// has nothing left to deliver or to be acknowledged.
func Drained(t testing.TB, js jetstream.JetStream, service, handler string) bool {
	t.Helper()
	c, err := js.Consumer(t.Context(), events.StreamTenant, bus.Consumer(service, handler))
	require.NoError(t, err)
	info, err := c.Info(t.Context())
	require.NoError(t, err)
	return info.NumPending == 0 && info.NumAckPending == 0
}

// Metric returns the sum of every sample of the counter or gauge called name in reg whose labels
// include labels.
func Metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
