package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/patchwave/patchwave/services/cloudsim"
	"github.com/patchwave/patchwave/services/patchd/internal/cloud"
)

// The emulator in a process of its own (Config.CloudProcess): patchbench starts itself again
// with childEnv set, and that child runs nothing but cloudsim, as patchd's in-process emulator
// would be configured, prints its endpoint and credentials as one JSON line, and serves until
// its standard input closes (the parent ended, however it ended). Its peak RSS is read from
// /proc, beside patchd's.

// childEnv carries the child's configuration (JSON childConfig).
const childEnv = "PATCHBENCH_CLOUDSIM_CHILD"

type childConfig struct {
	StateDir    string  `json:"state_dir"`
	Tenant      string  `json:"tenant"`
	Instances   int     `json:"instances"`
	Waves       int     `json:"waves"`
	FailureRate float64 `json:"failure_rate"`
	// CPUProfile, if set, is the file the child writes its CPU profile to: from when it
	// serves (after its fleet is built) until it stops.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// GCPercent, if not 0, is the child's GC percent (as GOGC; negative: off), set before its
	// fleet is built.
	GCPercent int `json:"gc_percent,omitempty"`
}

// Child runs the emulator and returns true when this process was started as a bench's
// emulator (Config.CloudProcess), false at once otherwise. Main calls it first; a test binary
// running benches with CloudProcess calls it from its TestMain.
func Child(ctx context.Context, stdout io.Writer) (bool, error) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return false, nil
	}
	return true, runChild(ctx, spec, os.Stdin, stdout)
}

// runChild is the child's main: cloudsim until stdin closes or ctx is done (a signal).
func runChild(ctx context.Context, spec string, stdin io.Reader, stdout io.Writer) error {
	var c childConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		return fmt.Errorf("%s: %w", childEnv, err)
	}
	if c.GCPercent != 0 {
		debug.SetGCPercent(c.GCPercent)
	}
	srv, err := cloudsim.New(cloud.SimConfig(cloud.Config{
		Sim:    cloudsim.Config{StateDir: c.StateDir, Faults: cloudsim.FaultConfig{PatchFailureRate: c.FailureRate}},
		Tenant: c.Tenant, Instances: c.Instances, Waves: c.Waves,
	}))
	if err != nil {
		return fmt.Errorf("cloudsim: %w", err)
	}
	srv.Start()
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return errors.Join(fmt.Errorf("cloudsim cpu profile: %w", err), srv.Close())
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return errors.Join(fmt.Errorf("cloudsim cpu profile: %w", err), f.Close(), srv.Close())
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	key, secret := srv.ProviderCredentials()
	err = json.NewEncoder(stdout).Encode(cloud.Remote{Endpoint: srv.URL(), AccessKeyID: key, SecretAccessKey: secret, Accounts: srv.Accounts()})
	if err == nil {
		closed := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, stdin); close(closed) }()
		select {
		case <-closed:
		case <-ctx.Done():
		}
	}
	return errors.Join(err, srv.Close())
}

// cloudProc is the running child, seen from the bench.
type cloudProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	remote cloud.Remote
}

// startCloudProc starts the child and reads its endpoint.
func startCloudProc(ctx context.Context, c childConfig, stderr io.Writer) (*cloudProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cloudsim process: %w", err)
	}
	spec, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cloudsim process: %w", err)
	}
	p := &cloudProc{cmd: cmd, stdin: stdin}
	got := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &p.remote)
		}
		got <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err = <-got:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("cloudsim process: its endpoint: %w", err)
	}
	return p, nil
}

func (p *cloudProc) pid() string { return strconv.Itoa(p.cmd.Process.Pid) }

// close ends the child (it flushes its state and exits when its stdin closes).
func (p *cloudProc) close() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// admin calls the child's admin API (GET or POST /_cloudsim/<path>) and decodes the answer
// into out, if not nil.
func (p *cloudProc) admin(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, p.remote.Endpoint+"/_cloudsim/"+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cloudsim %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("cloudsim %s %s: %s: %s", method, path, resp.Status, body)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
