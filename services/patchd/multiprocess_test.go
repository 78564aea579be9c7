package patchd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/cloudsim"
)

// maxInFlight is the wave's rollout limit in the multi-process tests.
const maxInFlight = 3

// cluster is nats-server, redis-server, cloudsim and the services as separate processes (the
// real binaries), each service on its own fleet adapter against the one cloudsim, with the
// tenant's service design put through the scheduler's API (wave 1 at most maxInFlight
// instances at once) and a baseline published as the catalog would.
type cluster struct {
	bins          map[string]string
	natsURL       string
	secrets       string
	info          startInfo
	env           []string
	schedulerAddr string
	reportingAddr string
	pki           map[string]mtls.Files
	schedulers    []*process
	sched         schedulerv1.SchedulerServiceClient
}

// startCluster starts the cluster with replicas of the scheduler, snapshotter and installer;
// the wave's operations take opDuration at the emulator.
func startCluster(t *testing.T, ctx context.Context, instances, waves, replicas int, opDuration time.Duration) *cluster {
	t.Helper()
	c := &cluster{bins: buildBinaries(t, "github.com/nats-io/nats-server/v2",
		"github.com/patchwave/patchwave/services/cloudsim/cmd/cloudsim",
		"github.com/patchwave/patchwave/services/scheduler/cmd/scheduler",
		"github.com/patchwave/patchwave/services/snapshotter/cmd/snapshotter",
		"github.com/patchwave/patchwave/services/installer/cmd/installer",
		"github.com/patchwave/patchwave/services/reporting/cmd/reporting")}
	natsPort := freePort(t)
	c.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	// nats-server runs secured, from deploy/nats/server.conf and the secrets `natsauth init`
	// writes beside it; every service connects as its own NATS user.
	c.secrets = deployNATS(t)
	startProcess(t, "nats-server", c.bins["nats-server"], nil, "-c", filepath.Join(filepath.Dir(c.secrets), "server.conf"),
		"-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-m", strconv.Itoa(freePort(t)))
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", natsPort))
	redis := testkit.StartRedis(t)

	sim := startProcess(t, "cloudsim", c.bins["cloudsim"], nil, "-listen", "127.0.0.1:0", "-tenant", "acme", "-regions", "eu-central-1",
		"-instances", strconv.Itoa(instances), "-waves", strconv.Itoa(waves), "-os-mix", "amazon-linux-2023:1", "-print-config", "-log-level", "warn",
		"-snapshot-duration", opDuration.String(), "-command-duration", opDuration.String(), "-patch-failure-rate", "0.1")
	c.info = readStartInfo(t, sim)

	c.schedulerAddr, c.reportingAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// The services take gRPC calls over mutual TLS only, from the gateway's certificate.
	c.pki = stagetest.PKI(t)
	srv := c.pki[mtls.Services]
	c.env = []string{
		"PATCHWAVE_TLS_CA=" + srv.CA, "PATCHWAVE_TLS_CERT=" + srv.Cert, "PATCHWAVE_TLS_KEY=" + srv.Key,
		"PATCHWAVE_NATS_URL=" + c.natsURL, "PATCHWAVE_REDIS_ADDR=" + redis.Addr(), "PATCHWAVE_OPS_ADDR=127.0.0.1:0",
		"PATCHWAVE_LOG_LEVEL=warn", "PATCHWAVE_POLL_INTERVAL=50ms",
		"PATCHWAVE_AWS_ENDPOINT_URL=" + c.info.Endpoint, "PATCHWAVE_AWS_ACCESS_KEY_ID=" + c.info.Provider.AccessKeyID,
		// No PATCHWAVE_AWS_ACCOUNTS: the services take the tenant's account from the service design.
		"PATCHWAVE_AWS_SECRET_ACCESS_KEY=" + c.info.Provider.SecretAccessKey,
	}
	for _, svc := range []string{"EC2", "SSM", "S3", "STS"} {
		c.env = append(c.env, "PATCHWAVE_AWS_"+svc+"_RATE=10000", "PATCHWAVE_AWS_"+svc+"_BURST=10000")
	}
	for i := range replicas {
		// The first scheduler serves the API the test calls; the others run the same
		// projections and controller.
		addr := c.schedulerAddr
		if i > 0 {
			addr = "127.0.0.1:0"
		}
		c.schedulers = append(c.schedulers, c.startScheduler(t, addr))
		startProcess(t, "snapshotter", c.bins["snapshotter"], append(c.env, "PATCHWAVE_GRPC_ADDR=127.0.0.1:0", c.creds("snapshotter")))
		startProcess(t, "installer", c.bins["installer"], append(c.env, c.creds("installer")))
	}
	startProcess(t, "reporting", c.bins["reporting"], append(c.env, "PATCHWAVE_GRPC_ADDR="+c.reportingAddr, c.creds("reporting")))

	schedConn := dial(t, c.schedulerAddr, c.pki)
	seedDesign(t, ctx, designv1.NewDesignServiceClient(schedConn), c.info.Accounts[0])
	publishBaseline(t, ctx, c.natsURL, natsauth.CredsPath(c.secrets, "catalog"))
	c.sched = schedulerv1.NewSchedulerServiceClient(schedConn)
	return c
}

func (c *cluster) creds(service string) string {
	return "PATCHWAVE_NATS_CREDS=" + natsauth.CredsPath(c.secrets, service)
}

func (c *cluster) startScheduler(t *testing.T, addr string) *process {
	t.Helper()
	return startProcess(t, "scheduler", c.bins["scheduler"], append(c.env, "PATCHWAVE_GRPC_ADDR="+addr, c.creds("scheduler")))
}

// startRun starts wave 1, retrying until the scheduler has the baseline.
func (c *cluster) startRun(t *testing.T, ctx context.Context) *schedulerv1.Run {
	t.Helper()
	var run *schedulerv1.Run
	require.Eventually(t, func() bool {
		resp, err := c.sched.StartRun(ctx, &schedulerv1.StartRunRequest{Tenant: "acme", Wave: 1, RequestId: "multiprocess"})
		if err != nil {
			code := status.Code(err)
			require.Contains(t, []codes.Code{codes.Unavailable, codes.FailedPrecondition}, code, err)
			return false
		}
		run = resp.GetRun()
		return true
	}, 60*time.Second, 100*time.Millisecond)
	return run
}

// waitCompleted waits until the run has completed and returns it.
func (c *cluster) waitCompleted(t *testing.T, ctx context.Context, runID string) *schedulerv1.Run {
	t.Helper()
	var run *schedulerv1.Run
	require.Eventually(t, func() bool {
		got, err := c.sched.GetRun(ctx, &schedulerv1.GetRunRequest{Tenant: "acme", RunId: runID})
		if err != nil {
			return false
		}
		run = got.GetRun()
		return run.GetState() == typesv1.RunState_RUN_STATE_COMPLETED || run.GetState() == typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS
	}, 120*time.Second, 100*time.Millisecond, "the wave completes")
	return run
}

// checkRun checks a completed run against the stream and the emulator: every instance had
// exactly one job, one snapshot set, one command and one outcome, and the emulator never had
// more than maxInFlight instances busy at once.
func (c *cluster) checkRun(t *testing.T, ctx context.Context, run *schedulerv1.Run) {
	t.Helper()
	require.Equal(t, run.GetTotal(), run.GetSucceeded()+run.GetFailed()+run.GetSnapshotFailed()+run.GetTimedOut())
	require.Positive(t, run.GetSucceeded())
	require.EqualValues(t, maxInFlight, run.GetMaxInFlight())
	nc, err := nats.Connect(c.natsURL, natsauth.ConnectOptions(natsauth.CredsPath(c.secrets, natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	log := readStream(t, ctx, nc)
	log.requireOneOutcomePerInstance(t, int(run.GetTotal()))
	for _, ev := range log.events {
		if ev.Type == "patchwave.events.v1.JobRequested" {
			id := strings.TrimPrefix(ev.Key, run.GetRunId()+"/")
			st := adminStats(t, c.info.Endpoint, id)
			require.Equal(t, int64(1), st["ec2:CreateSnapshots"], "one snapshot set for %s", id)
			require.Equal(t, int64(1), st["ssm:SendCommand"], "one command for %s", id)
		}
	}
	busy := adminBusy(t, c.info.Endpoint)
	t.Logf("cloudsim: at most %d instances busy at once (limit %d)", busy.MaxInFlight, maxInFlight)
	require.Positive(t, busy.MaxInFlight)
	require.LessOrEqual(t, busy.MaxInFlight, int64(maxInFlight), "the emulator never had more operations in flight than the wave allows")
}

// TestServicesAsSeparateProcessesCompleteAWave runs two replicas of the scheduler, snapshotter
// and installer, and reporting, as separate processes: the wave completes under its rollout
// limit (the emulator's figures show at most maxInFlight instances busy at once), every
// instance gets exactly one snapshot set, one command and one outcome, and the report agrees.
// With one simulated fleet per process this could not work; with cloudsim it does.
func TestServicesAsSeparateProcessesCompleteAWave(t *testing.T) {
	const instances = 30 // 10 per wave
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, instances, 3, 2, 100*time.Millisecond)
	run := c.startRun(t, ctx)
	require.EqualValues(t, instances/3, run.GetTotal(), "the wave's instances, discovered by tag in cloudsim")
	run = c.waitCompleted(t, ctx, run.GetRunId())
	t.Logf("wave 1: %s, %d succeeded, %d failed of %d", run.GetState(), run.GetSucceeded(), run.GetFailed(), run.GetTotal())
	c.checkRun(t, ctx, run)

	rep := reportingv1.NewReportingServiceClient(dial(t, c.reportingAddr, c.pki))
	require.Eventually(t, func() bool {
		comp, err := rep.GetCompliance(ctx, &reportingv1.GetComplianceRequest{Tenant: "acme"})
		return err == nil && comp.GetTotal().GetInScope() == run.GetTotal() && comp.GetTotal().GetCompliant() == run.GetSucceeded()
	}, 30*time.Second, 100*time.Millisecond, "reporting agrees with the run")
}

// TestTheSchedulerKilledWhileItDispatchesFinishesTheRun kills the scheduler (SIGKILL) while it
// releases a wave's jobs under the rollout limit, lets the jobs in flight end without it, and
// starts it again: the run completes, every instance has exactly one job and one outcome, and
// the limit was never exceeded at the emulator.
func TestTheSchedulerKilledWhileItDispatchesFinishesTheRun(t *testing.T) {
	const instances = 24
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, instances, 1, 1, 300*time.Millisecond)
	nc, err := nats.Connect(c.natsURL, natsauth.ConnectOptions(natsauth.CredsPath(c.secrets, natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	run := c.startRun(t, ctx)
	require.EqualValues(t, instances, run.GetTotal())
	count := func(kind string) int { return readStream(t, ctx, nc).count(kind) }
	require.Eventually(t, func() bool { return count("job.requested") >= 2*maxInFlight }, 60*time.Second, 20*time.Millisecond,
		"the scheduler releases jobs as earlier ones end")
	require.Less(t, count("job.requested"), instances, "killed in the middle of the dispatch")

	require.NoError(t, c.schedulers[0].cmd.Process.Kill())
	_ = c.schedulers[0].cmd.Wait()
	killedAt := count("job.requested")
	// The jobs in flight end without a scheduler; nothing more is released meanwhile.
	require.Eventually(t, func() bool {
		l := readStream(t, ctx, nc)
		return l.count("install.succeeded")+l.count("install.failed")+l.count("snapshot.failed") >= killedAt
	}, 60*time.Second, 50*time.Millisecond)
	require.Equal(t, killedAt, count("job.requested"))

	c.schedulers[0] = c.startScheduler(t, c.schedulerAddr)
	conn := dial(t, c.schedulerAddr, c.pki)
	c.sched = schedulerv1.NewSchedulerServiceClient(conn)
	run = c.waitCompleted(t, ctx, run.GetRunId())
	t.Logf("after the restart: %s, %d succeeded, %d failed of %d (killed after %d jobs)", run.GetState(), run.GetSucceeded(), run.GetFailed(), run.GetTotal(), killedAt)
	c.checkRun(t, ctx, run)
}

// deployNATS writes deploy/nats/server.conf into a temporary directory with the operator,
// accounts and every user's credentials natsauth makes (as `natsauth init` does) in its secrets
// subdirectory, and returns that directory.
func deployNATS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "server.conf"))
	require.NoError(t, err)
	// The JetStream store goes into the test's directory, not the working directory.
	conf = []byte(strings.Replace(string(conf), `store_dir: "./data/jetstream"`, fmt.Sprintf("store_dir: %q", filepath.Join(dir, "jetstream")), 1))
	require.Contains(t, string(conf), filepath.Join(dir, "jetstream"), "deploy/nats/server.conf names its store_dir")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.conf"), conf, 0o600))
	secrets := filepath.Join(dir, "secrets")
	m, err := natsauth.LoadOrCreate(secrets)
	require.NoError(t, err)
	require.NoError(t, m.WriteCreds(natsauth.Default))
	require.NoError(t, m.WriteServerConfig(natsauth.ServerConfig{ResolverDir: filepath.Join(dir, "resolver")}))
	return secrets
}

// seedDesign puts tenant acme with the emulator's account and wave 1 (at most maxInFlight
// instances at once, any number of failures tolerated) into the service design, retrying
// while the scheduler starts.
func seedDesign(t *testing.T, ctx context.Context, c designv1.DesignServiceClient, acc cloudsim.AccountInfo) {
	t.Helper()
	// The connection calls as an operator (stagetest.Operator).
	require.Eventually(t, func() bool {
		_, err := c.PutTenant(ctx, &designv1.PutTenantRequest{Tenant: "acme", Settings: &typesv1.Tenant{DisplayName: "Acme"}})
		return err == nil
	}, 60*time.Second, 100*time.Millisecond, "the scheduler's design API answers")
	_, err := c.PutAccount(ctx, &designv1.PutAccountRequest{Tenant: "acme", AccountId: acc.ID, Account: &typesv1.CloudAccount{
		Provider: "aws", RoleArn: acc.RoleARN, ExternalId: acc.ExternalID, Regions: acc.Regions}})
	require.NoError(t, err)
	_, err = c.PutWave(ctx, &designv1.PutWaveRequest{Tenant: "acme", Wave: 1, Definition: &typesv1.Wave{Schedule: &typesv1.Schedule{
		WeekOfMonth: 2, DayOfWeek: "TUESDAY", OffsetDays: 1, StartTime: "02:00", EndTime: "06:00", TimeZone: "Europe/Berlin",
	}, Policy: &typesv1.RolloutPolicy{
		MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Count{Count: maxInFlight}},
		ErrorBudget:    &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 100}},
	}}})
	require.NoError(t, err)
}

// publishBaseline publishes a baseline of four patches as the catalog does once it is certified.
func publishBaseline(t *testing.T, ctx context.Context, natsURL, catalogCreds string) {
	t.Helper()
	nc, err := nats.Connect(natsURL, natsauth.ConnectOptions(catalogCreds, "catalog")...)
	require.NoError(t, err)
	defer nc.Close()
	b, err := bus.New(ctx, bus.Config{Service: "catalog", Conn: nc})
	require.NoError(t, err)
	ev := events.MustNew("", "al2023-mp", &eventsv1.BaselinePublished{BaselineId: "al2023-mp", OsFamily: "amazon-linux-2023", Version: 1,
		Patches: []*typesv1.Patch{{Id: "ALAS2023-1"}, {Id: "ALAS2023-2"}, {Id: "ALAS2023-3"}, {Id: "ALAS2023-4"}}})
	require.NoError(t, b.Publish(ctx, ev))
}

// buildBinaries builds the main packages into a temporary directory with one go build and
// returns their paths by binary name.
func buildBinaries(t *testing.T, pkgs ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	// nats-server is a dependency of libs: build it from there, the services from the workspace.
	var ours []string
	out := map[string]string{}
	for _, p := range pkgs {
		name := filepath.Base(p)
		if strings.HasPrefix(p, "github.com/nats-io/") {
			name = "nats-server"
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), p)
			cmd.Dir = filepath.Join("..", "..", "libs")
			b, err := cmd.CombinedOutput()
			require.NoError(t, err, "go build %s:\n%s", p, b)
		} else {
			ours = append(ours, p)
		}
		out[name] = filepath.Join(dir, name)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(os.PathSeparator)}, ours...)...)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build:\n%s", b)
	return out
}

type process struct {
	name string
	cmd  *exec.Cmd
	out  *testkit.Buffer
	// stdout is the process's standard output, for processes that report something on it.
	stdout *bufio.Reader
}

// startProcess starts bin with env (added to the test's environment) and args; it is stopped
// with SIGINT when the test ends, and its output is logged if the test failed.
func startProcess(t *testing.T, name, bin string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &process{name: name, cmd: cmd, out: &testkit.Buffer{}}
	cmd.Stderr = p.out
	pipe, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p.stdout = bufio.NewReader(pipe)
	require.NoError(t, cmd.Start(), name)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// startInfo is what cloudsim -print-config prints.
type startInfo struct {
	Endpoint string `json:"endpoint"`
	Provider struct {
		AccessKeyID     string `json:"access_key_id"`
		SecretAccessKey string `json:"secret_access_key"`
	} `json:"provider"`
	Accounts []cloudsim.AccountInfo `json:"accounts"`
}

func readStartInfo(t *testing.T, p *process) startInfo {
	t.Helper()
	var info startInfo
	require.NoError(t, json.NewDecoder(p.stdout).Decode(&info), "cloudsim -print-config:\n%s", p.out.String())
	go func() { _, _ = io.Copy(io.Discard, p.stdout) }()
	require.NotEmpty(t, info.Endpoint)
	require.Len(t, info.Accounts, 1)
	return info
}

// adminStats reads cloudsim's per-instance call counts from its admin API.
func adminStats(t *testing.T, endpoint, instance string) map[string]int64 {
	t.Helper()
	resp, err := http.Get(endpoint + "/_cloudsim/stats/instances/" + instance)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var doc map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	ops, _ := doc["operations"].(map[string]any)
	if ops == nil {
		ops = doc
	}
	out := map[string]int64{}
	for k, v := range ops {
		if n, ok := v.(float64); ok {
			out[k] = int64(n)
		}
	}
	return out
}

// adminBusy reads cloudsim's busy-instance figures from its admin API.
func adminBusy(t *testing.T, endpoint string) cloudsim.BusyStats {
	t.Helper()
	resp, err := http.Get(endpoint + "/_cloudsim/stats")
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st cloudsim.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st.Busy
}

// dial connects to a service as the gateway does: its certificate of the test's CA, and an
// operator's identity in the metadata.
func dial(t *testing.T, addr string, pki map[string]mtls.Files) *grpc.ClientConn {
	t.Helper()
	return stagetest.Dial(t, addr, pki[mtls.Gateway])
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 30*time.Second, 50*time.Millisecond, "%s accepts connections", addr)
}
