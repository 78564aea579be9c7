package patchd_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/natsembed"
)

// TestPatchdKilledMidRunFinishesTheRunAfterRestart builds the real patchd binary, kills it with
// SIGKILL in the middle of a cycle, starts it again on the same data directory, and checks that
// the cycle finishes with exactly one snapshot and one install outcome per instance.
func TestPatchdKilledMidRunFinishesTheRunAfterRestart(t *testing.T) {
	const instances = 45
	bin := buildPatchd(t)

	dataDir := t.TempDir()
	args := []string{
		"-demo", "-cycle", "crash", "-data-dir", dataDir, "-http", "127.0.0.1:0", "-ops", "-", "-nats-port", "-1",
		"-instances", strconv.Itoa(instances), "-waves", "3", "-failure-rate", "0.1", "-latency", "150ms",
	}

	// First start: kill it once wave 2 has made progress.
	first := startPatchd(t, bin, args)
	progressed := regexp.MustCompile(`wave 2 \[[#.]+\] ([1-9][0-9]*)/`)
	require.True(t, first.waitLine(90*time.Second, progressed.MatchString), "wave 2 makes progress before the kill:\n%s", first.output())
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	_ = first.cmd.Wait()
	keyFile := filepath.Join(dataDir, "operator.key")
	require.Contains(t, first.output(), "wrote a new operator API key to "+keyFile+" (mode 0600)", "the first start writes the key")
	st, err := os.Stat(keyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Second start: the same cycle resumes and completes.
	second := startPatchd(t, bin, args)
	require.True(t, second.waitLine(120*time.Second, func(s string) bool { return strings.HasPrefix(s, "Failed patches:") }),
		"the resumed cycle completes:\n%s", second.output())
	waitCtx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, waitExit(waitCtx, second.cmd), second.output())
	out := second.output()
	require.NotContains(t, out, "wrote a new operator API key", "a restart keeps the key, and the demo calls with it")
	require.Contains(t, out, "Authorization: Bearer $(cat "+keyFile+")")
	for w := 1; w <= 3; w++ {
		require.Regexp(t, `wave `+strconv.Itoa(w)+`: COMPLETED`, out)
	}

	// The stream, read from the same store, has exactly one outcome per instance.
	authDir := filepath.Join(dataDir, "nats")
	ns, err := natsembed.Run(natsembed.Options{Port: natsembed.RandomPort, StoreDir: filepath.Join(dataDir, "jetstream"), ServerName: "patchd", AuthDir: authDir})
	require.NoError(t, err)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect(ns.ClientURL(), natsauth.ConnectOptions(natsauth.CredsPath(authDir, natsauth.UserAdmin), natsauth.UserAdmin)...)
	require.NoError(t, err)
	defer nc.Close()
	readStream(t, t.Context(), nc).requireOneOutcomePerInstance(t, instances)
}

type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan string
}

func startPatchd(t *testing.T, bin string, args []string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, seen: make(chan string, 1024)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.seen <- sc.Text():
			default:
			}
		}
		close(p.seen)
	}()
	return p
}

func (p *proc) waitLine(timeout time.Duration, match func(string) bool) bool {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.seen:
			if !ok {
				return false
			}
			if match(l) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func waitExit(ctx context.Context, cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return ctx.Err()
	}
}

// TestPatchdStopsCleanlyOnInterrupt sends SIGINT (Ctrl-C) to a serving patchd: it stops its
// services, exits 0 and says so.
func TestPatchdStopsCleanlyOnInterrupt(t *testing.T) {
	bin := buildPatchd(t)
	p := startPatchd(t, bin, []string{"-data-dir", t.TempDir(), "-http", "127.0.0.1:0", "-ops", "127.0.0.1:0", "-nats-port", "-1", "-instances", "10"})
	require.True(t, p.waitLine(60*time.Second, func(s string) bool { return strings.HasPrefix(s, "patchd: REST API") }), p.output())
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, waitExit(ctx, p.cmd), "exit status after SIGINT:\n%s", p.output())
	require.Contains(t, p.output(), "patchd: stopped")
}

// buildPatchd builds the patchd binary once per test binary run.
func buildPatchd(t *testing.T) string {
	t.Helper()
	patchdBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "patchd-bin")
		if err != nil {
			patchdBinary.err = err
			return
		}
		patchdBinary.path = filepath.Join(dir, "patchd")
		build := exec.Command("go", "build", "-o", patchdBinary.path, "./cmd/patchd")
		out, err := build.CombinedOutput()
		if err != nil {
			patchdBinary.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(t, patchdBinary.err)
	return patchdBinary.path
}

var patchdBinary struct {
	once sync.Once
	path string
	err  error
}
