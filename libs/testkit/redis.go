package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/patchwave/patchwave/libs/store"
)

// redisStartAttempts bounds retries when another process takes the port
// between picking it and redis-server binding it.
const redisStartAttempts = 3

// redisReadyTimeout bounds how long StartRedis waits for PING to answer.
const redisReadyTimeout = 10 * time.Second

// Redis is a redis-server process private to one test. It keeps nothing on
// disk between runs: no RDB snapshots, no append-only file.
type Redis struct {
	addr string
}

// StartRedis starts redis-server on a random loopback port, waits until it
// answers PING, and kills it when the test ends. It fails the test when the
// binary is missing or the server does not come up.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("testkit: redis-server not found: run scripts/ensure-redis.sh (make test does this)")
	}
	dir := t.TempDir()
	var failures []string
	for attempt := 1; attempt <= redisStartAttempts; attempt++ {
		proc, err := startRedisProcess(t, bin, dir)
		if err == nil {
			t.Cleanup(proc.stop)
			return &Redis{addr: proc.addr}
		}
		failures = append(failures, fmt.Sprintf("attempt %d: %v", attempt, err))
	}
	t.Fatalf("testkit: start redis-server:\n%s", strings.Join(failures, "\n"))
	return nil
}

// Addr returns the server's host:port, for example "127.0.0.1:41234".
func (r *Redis) Addr() string { return r.addr }

// Client returns a go-redis client for the server, closed when the test ends. It has the
// timeouts a store's own client has (store.RedisOptions), not go-redis's 5 s default, so a
// test that builds a store over it (store.NewRedisFromClient) behaves as the service would on
// a busy machine instead of failing a large commit the service would have waited for.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(store.RedisOptions(store.RedisConfig{Addr: r.addr}))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Flush deletes every key in every database of the server.
func (r *Redis) Flush(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.addr})
	defer func() { _ = c.Close() }()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("testkit: flush redis %s: %v", r.addr, err)
	}
}

// redisProcess is one running redis-server.
type redisProcess struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	output *Buffer
}

// stop kills the process and waits for it to exit.
func (p *redisProcess) stop() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// startRedisProcess starts redis-server on a free port and waits until it
// answers PING, or fails with the server's own output when it exits early
// (for example because the port was taken in the meantime).
func startRedisProcess(t testing.TB, bin, dir string) (*redisProcess, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	out := &Buffer{}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = redisSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	p := &redisProcess{addr: addr, cmd: cmd, exited: make(chan struct{}), output: out}
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(p.exited)
	}()

	if err := waitForPing(addr, p.exited); err != nil {
		p.stop()
		if errors.Is(err, errRedisExited) && waitErr != nil {
			err = fmt.Errorf("%w: %w", err, waitErr)
		}
		return nil, fmt.Errorf("redis-server on %s: %w; output:\n%s", addr, err, out.String())
	}
	return p, nil
}

var errRedisExited = errors.New("redis-server exited before answering PING")

// waitForPing polls PING until it answers, the process exits or
// redisReadyTimeout passes.
func waitForPing(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{
		Addr:        addr,
		DialTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
	})
	defer func() { _ = c.Close() }()
	deadline := time.NewTimer(redisReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		lastErr = c.Ping(ctx).Err()
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			return errRedisExited
		case <-deadline.C:
			return fmt.Errorf("no answer to PING after %s: %w", redisReadyTimeout, lastErr)
		case <-tick.C:
		}
	}
}

// freePort asks the kernel for a free loopback port. The port is released
// before redis-server binds it, so another process may take it first; the
// caller retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("release port %d: %w", port, err)
	}
	return port, nil
}
