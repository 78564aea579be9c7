package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
)

// cmdComponent is a trivial component: its Run calls work, then reports that it runs and
// waits for the end.
type cmdComponent struct {
	work    func(ctx context.Context) error
	running chan struct{}
	closed  atomic.Bool
}

func newCmdComponent(work func(ctx context.Context) error) *cmdComponent {
	return &cmdComponent{work: work, running: make(chan struct{})}
}

func (c *cmdComponent) Name() string            { return "cmdtest" }
func (c *cmdComponent) Register(*bus.Bus) error { return nil }
func (c *cmdComponent) Close() error            { c.closed.Store(true); return nil }

func (c *cmdComponent) Run(ctx context.Context) error {
	if c.work != nil {
		if err := c.work(ctx); err != nil {
			return err
		}
	}
	close(c.running)
	<-ctx.Done()
	return nil
}

// buslessComponent is a cmdComponent that needs no bus.
type buslessComponent struct{ *cmdComponent }

func (buslessComponent) Busless() {}

// commandOf returns a command that builds comp, and records its deps in deps unless nil.
func commandOf(comp Component, deps *CommandDeps) Command {
	return Command{
		Name: "cmdtest",
		Build: func(_ context.Context, _ config.Env, d CommandDeps) (Component, []any, error) {
			if deps != nil {
				*deps = d
			}
			return comp, nil, nil
		},
	}
}

// logBuffer collects the log lines of a command.
type logBuffer struct{ testkit.Buffer }

// lines returns the JSON log lines.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %q", sc.Text())
		out = append(out, m)
	}
	return out
}

// withMsg returns the lines whose msg is msg.
func withMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// runUntilRunning runs cmd in the background, waits until comp runs, stops the command and
// returns its exit code.
func runUntilRunning(t *testing.T, cmd Command, env map[string]string, comp *cmdComponent, stderr *logBuffer) int {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	code := make(chan int, 1)
	go func() { code <- runCommand(ctx, cmd, config.Map(env), stderr) }()
	select {
	case <-comp.running:
	case c := <-code:
		t.Fatalf("command ended with code %d before its component ran: %v", c, stderr.lines(t))
	case <-time.After(30 * time.Second):
		t.Fatal("component did not start running")
	}
	cancel()
	return <-code
}

func TestRunCommandStopsWithCodeZeroWhenItsContextEnds(t *testing.T) {
	srv := testkit.StartNATS(t)
	comp := newCmdComponent(nil)
	var deps CommandDeps
	cmd := Command{
		Name:    "cmdtest",
		OpsAddr: "127.0.0.1:0",
		Build: func(_ context.Context, env config.Env, d CommandDeps) (Component, []any, error) {
			deps = d
			return comp, []any{"greeting", env.String("PATCHWAVE_GREETING", "hello")}, nil
		},
	}
	var stderr logBuffer
	env := map[string]string{"PATCHWAVE_NATS_URL": srv.URL(), "PATCHWAVE_REDIS_PASSWORD": "s3cret"}

	require.Equal(t, 0, runUntilRunning(t, cmd, env, comp, &stderr))

	assert.IsType(t, &store.Memory{}, deps.Store, "no PATCHWAVE_REDIS_ADDR: in-memory store")
	require.NotNil(t, deps.Logger)
	lines := stderr.lines(t)
	cfg := withMsg(lines, "config")
	require.Len(t, cfg, 1)
	assert.Equal(t, "cmdtest", cfg[0]["service"])
	assert.Equal(t, srv.URL(), cfg[0]["nats_url"])
	assert.Equal(t, config.Masked, cfg[0]["redis_password"])
	assert.Equal(t, "hello", cfg[0]["greeting"], "the component's attrs are logged with the config")
	assert.Equal(t, "INFO", cfg[0]["log_level"])
	assert.NotContains(t, stderr.String(), "s3cret")
	assert.Empty(t, withMsg(lines, "cmdtest stopped"), "a graceful stop logs no error")
}

func TestRunCommandFailsWithCodeOneNamingTheBadVariable(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		variable string
		built    bool
	}{
		{
			name:     "An unknown log level fails before the component is built",
			env:      map[string]string{"PATCHWAVE_LOG_LEVEL": "verbose"},
			variable: "PATCHWAVE_LOG_LEVEL",
		},
		{
			name:     "A service duration without a unit fails the build",
			env:      map[string]string{"PATCHWAVE_SNAPSHOT_TIMEOUT": "30"},
			variable: "PATCHWAVE_SNAPSHOT_TIMEOUT",
			built:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			built := false
			cmd := Command{
				Name: "cmdtest",
				Build: func(_ context.Context, env config.Env, _ CommandDeps) (Component, []any, error) {
					built = true
					if _, err := env.Duration("PATCHWAVE_SNAPSHOT_TIMEOUT", 0); err != nil {
						return nil, nil, err
					}
					return newCmdComponent(nil), nil, nil
				},
			}
			var stderr logBuffer

			require.Equal(t, 1, runCommand(t.Context(), cmd, config.Map(tt.env), &stderr))

			assert.Equal(t, tt.built, built)
			lines := stderr.lines(t)
			require.Len(t, lines, 1, "the failure is logged once, and nothing else is")
			assert.Equal(t, "cmdtest stopped", lines[0]["msg"])
			assert.Equal(t, "ERROR", lines[0]["level"])
			assert.Contains(t, lines[0]["error"], tt.variable)
		})
	}
}

func TestRunCommandLogsAtTheConfiguredLevel(t *testing.T) {
	srv := testkit.StartNATS(t)
	comp := newCmdComponent(nil)
	cmd := commandOf(comp, nil)
	var stderr logBuffer
	env := map[string]string{"PATCHWAVE_NATS_URL": srv.URL(), "PATCHWAVE_LOG_LEVEL": "Warn"}

	require.Equal(t, 0, runUntilRunning(t, cmd, env, comp, &stderr))

	assert.Empty(t, stderr.lines(t), "info lines are below warn")
}

func TestRunCommandKeepsRedisKeysUnderTheServicePrefix(t *testing.T) {
	srv := testkit.StartNATS(t)
	rds := testkit.StartRedis(t)
	var deps CommandDeps
	comp := newCmdComponent(func(ctx context.Context) error {
		return deps.Store.Set(ctx, "checkpoint", []byte("42"))
	})
	cmd := commandOf(comp, &deps)
	var stderr logBuffer
	env := map[string]string{"PATCHWAVE_NATS_URL": srv.URL(), "PATCHWAVE_REDIS_ADDR": rds.Addr()}

	require.Equal(t, 0, runUntilRunning(t, cmd, env, comp, &stderr))

	keys, err := rds.Client(t).Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"patchwave:cmdtest:checkpoint"}, keys)
	assert.Equal(t, "patchwave:cmdtest:", cmd.redisPrefix())
	assert.ErrorIs(t, deps.Store.Set(t.Context(), "after", nil), store.ErrClosed, "RunCommand closes the store")
}

func TestRunCommandFailsAndClosesTheComponentWhenNATSIsUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "nats://" + lis.Addr().String()
	require.NoError(t, lis.Close())
	comp := newCmdComponent(nil)
	cmd := commandOf(comp, nil)
	var stderr logBuffer

	require.Equal(t, 1, runCommand(t.Context(), cmd, config.Map(map[string]string{"PATCHWAVE_NATS_URL": url}), &stderr))

	assert.True(t, comp.closed.Load(), "a component that never ran is closed")
	failed := withMsg(stderr.lines(t), "cmdtest stopped")
	require.Len(t, failed, 1)
	assert.Contains(t, failed[0]["error"], "connect nats "+url)
}

func TestRunCommandWithoutNATSNeitherConnectsNorBuildsAStore(t *testing.T) {
	comp := buslessComponent{newCmdComponent(nil)}
	var deps CommandDeps
	cmd := commandOf(comp, &deps)
	cmd.NoNATS = true
	var stderr logBuffer
	env := map[string]string{"PATCHWAVE_NATS_URL": "nats://127.0.0.1:1", "PATCHWAVE_GRPC_ADDR": "not an address"}

	require.Equal(t, 0, runUntilRunning(t, cmd, env, comp.cmdComponent, &stderr))

	assert.Nil(t, deps.Store)
	assert.False(t, comp.closed.Load(), "a component that ran closes itself")
	cfg := withMsg(stderr.lines(t), "config")
	require.Len(t, cfg, 1)
	assert.NotContains(t, cfg[0], "nats_url")
	assert.NotContains(t, cfg[0], "grpc_addr")
}

func TestRunCommandRejectsAnIncompleteCommand(t *testing.T) {
	var stderr logBuffer

	require.Equal(t, 1, runCommand(t.Context(), Command{Name: "cmdtest"}, config.Map(nil), &stderr))

	lines := stderr.lines(t)
	require.Len(t, lines, 1)
	assert.Contains(t, lines[0]["error"], "Build: required")
}

func TestRunCommandWithAGRPCServerNeedsTheTLSFiles(t *testing.T) {
	comp := newCmdComponent(nil)
	cmd := commandOf(comp, nil)
	cmd.GRPCAddr = "127.0.0.1:0"
	var stderr logBuffer

	require.Equal(t, 1, runCommand(t.Context(), cmd, config.Map(map[string]string{"PATCHWAVE_TLS_CERT": "/nonexistent/cert.pem"}), &stderr))

	lines := stderr.lines(t)
	require.Len(t, lines, 1)
	for _, want := range []string{"PATCHWAVE_TLS_CA", "CA: required", "Cert: stat /nonexistent/cert.pem", "Key: required"} {
		assert.Contains(t, lines[0]["error"], want)
	}
}

// stageComponent is a component named after a real service with one handler on the tenant
// stream; it runs until the end.
type stageComponent struct {
	name, handler string
	running       chan struct{}
}

func (c *stageComponent) Name() string { return c.name }

func (c *stageComponent) Register(b *bus.Bus) error {
	return b.Handle(bus.HandlerSpec{Name: c.handler, Subjects: []string{"patch.*.snapshot.created"},
		Handle: func(context.Context, *events.Event) error { return nil }})
}

func (c *stageComponent) Run(ctx context.Context) error {
	close(c.running)
	<-ctx.Done()
	return nil
}

// installerCommand is a command hosting an "installer" with one handler, and the environment
// that connects it to srv as the installer's NATS user.
func installerCommand(srv *testkit.NATS, handler string) (*stageComponent, Command, map[string]string) {
	comp := &stageComponent{name: "installer", handler: handler, running: make(chan struct{})}
	cmd := Command{Name: "installer", Build: func(context.Context, config.Env, CommandDeps) (Component, []any, error) { return comp, nil, nil }}
	return comp, cmd, map[string]string{"PATCHWAVE_NATS_URL": srv.URL(), "PATCHWAVE_NATS_CREDS": srv.CredsFile("installer")}
}

func TestRunCommandConnectsAsTheServicesNATSUser(t *testing.T) {
	srv := testkit.StartSecureNATS(t)
	comp, cmd, env := installerCommand(srv, "InstallOnSnapshotCreated")
	var stderr logBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	code := make(chan int, 1)
	go func() { code <- runCommand(ctx, cmd, config.Map(env), &stderr) }()
	select {
	case <-comp.running:
	case c := <-code:
		t.Fatalf("command ended with code %d: %s", c, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("component did not start running")
	}
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := js.Consumer(t.Context(), events.StreamTenant, "installer_InstallOnSnapshotCreated")
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "its user created its consumer")
	cancel()
	require.Equal(t, 0, <-code, stderr.String())
	cfg := withMsg(stderr.lines(t), "config")
	require.Len(t, cfg, 1)
	assert.Equal(t, srv.CredsFile("installer"), cfg[0]["nats_creds"], "the file is logged, not its content")
}

func TestRunCommandRefusesAHandlerThePermissionTableDoesNotDeclare(t *testing.T) {
	srv := testkit.StartSecureNATS(t)
	_, cmd, env := installerCommand(srv, "RebootOnInstallSucceeded")
	var stderr logBuffer
	require.Equal(t, 1, runCommand(t.Context(), cmd, config.Map(env), &stderr))
	require.Contains(t, stderr.String(), "installer: handler RebootOnInstallSucceeded on PATCH_EVENTS is not in the NATS permission table")
}

func TestRunCommandFailsWithoutCredentialsOnASecuredServer(t *testing.T) {
	srv := testkit.StartSecureNATS(t)
	comp := newCmdComponent(nil)
	var stderr logBuffer
	require.Equal(t, 1, runCommand(t.Context(), commandOf(comp, nil), config.Map(map[string]string{"PATCHWAVE_NATS_URL": srv.URL()}), &stderr))
	require.Contains(t, stderr.String(), "Authorization Violation")
	require.True(t, comp.closed.Load())
}
