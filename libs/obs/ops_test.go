package obs_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/obs"
)

var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// startOps starts an ops server on a random loopback port and stops it when
// the test ends, failing the test if Run does not return cleanly.
func startOps(t *testing.T, cfg obs.OpsConfig) *obs.Ops {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	o, err := obs.NewOps(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return o
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestOpsLivezAnswersOK(t *testing.T) {
	o := startOps(t, obs.OpsConfig{})
	require.Regexp(t, `^127\.0\.0\.1:\d+$`, o.Addr())
	code, body := get(t, "http://"+o.Addr()+"/livez")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok", body)
}

func TestOpsMetricsServesTheRegistry(t *testing.T) {
	reg := obs.NewRegistry()
	jobs := prometheus.NewCounter(prometheus.CounterOpts{Name: "patchwave_jobs_total", Help: "Jobs."})
	reg.MustRegister(jobs)
	jobs.Add(3)
	o := startOps(t, obs.OpsConfig{Registry: reg})
	require.Same(t, reg, o.Registry())

	code, body := get(t, "http://"+o.Addr()+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "patchwave_jobs_total 3")
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, "process_cpu_seconds_total")
}

func TestOpsReadyz(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tests := []struct {
		name        string
		checks      map[string]obs.ReadinessCheck
		wantCode    int
		wantStatus  string
		wantFailing map[string]string
	}{
		{
			name:       "no checks means ready",
			wantCode:   http.StatusOK,
			wantStatus: "ready",
		},
		{
			name: "passing checks mean ready",
			checks: map[string]obs.ReadinessCheck{
				"nats":  func(context.Context) error { return nil },
				"redis": func(context.Context) error { return nil },
			},
			wantCode:   http.StatusOK,
			wantStatus: "ready",
		},
		{
			name: "one failing check makes it unready and is listed with its error",
			checks: map[string]obs.ReadinessCheck{
				"nats":  func(context.Context) error { return nil },
				"redis": func(context.Context) error { return errors.New("connection refused") },
			},
			wantCode:    http.StatusServiceUnavailable,
			wantStatus:  "not ready",
			wantFailing: map[string]string{"redis": "connection refused"},
		},
		{
			name: "a panicking check fails instead of crashing",
			checks: map[string]obs.ReadinessCheck{
				"broken": func(context.Context) error { panic("nil map") },
			},
			wantCode:    http.StatusServiceUnavailable,
			wantStatus:  "not ready",
			wantFailing: map[string]string{"broken": "check panicked: nil map"},
		},
		{
			name: "a check that outlives the timeout fails",
			checks: map[string]obs.ReadinessCheck{
				"stuck": func(context.Context) error { <-release; return nil },
				"fast":  func(context.Context) error { return nil },
			},
			wantCode:    http.StatusServiceUnavailable,
			wantStatus:  "not ready",
			wantFailing: map[string]string{"stuck": "no answer within 50ms: context deadline exceeded"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := startOps(t, obs.OpsConfig{ReadinessTimeout: 50 * time.Millisecond})
			for name, check := range tt.checks {
				o.AddReadiness(name, check)
			}
			code, body := get(t, "http://"+o.Addr()+"/readyz")
			require.Equal(t, tt.wantCode, code)
			var got struct {
				Status  string            `json:"status"`
				Checks  []string          `json:"checks"`
				Failing map[string]string `json:"failing"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &got), body)
			require.Equal(t, tt.wantStatus, got.Status)
			require.Len(t, got.Checks, len(tt.checks))
			if tt.wantFailing == nil {
				require.Empty(t, got.Failing)
			} else {
				require.Equal(t, tt.wantFailing, got.Failing)
			}
		})
	}
}

func TestOpsReadyzFollowsItsChecks(t *testing.T) {
	o := startOps(t, obs.OpsConfig{})
	var up atomic.Bool
	o.AddReadiness("nats", func(context.Context) error {
		if !up.Load() {
			return errors.New("not connected")
		}
		return nil
	})
	url := "http://" + o.Addr() + "/readyz"
	code, _ := get(t, url)
	require.Equal(t, http.StatusServiceUnavailable, code)
	up.Store(true)
	code, _ = get(t, url)
	require.Equal(t, http.StatusOK, code)
}

func TestOpsRunShutsDownWhenItsContextEnds(t *testing.T) {
	o, err := obs.NewOps(obs.OpsConfig{Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	code, _ := get(t, "http://"+o.Addr()+"/livez")
	require.Equal(t, http.StatusOK, code)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	_, err = net.Dial("tcp", o.Addr())
	require.Error(t, err, "the port is released")
	require.Error(t, o.Run(t.Context()), "Run may be called once")
}

func TestOpsCloseReleasesTheAddressWithoutRun(t *testing.T) {
	o, err := obs.NewOps(obs.OpsConfig{Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	addr := o.Addr()
	require.NoError(t, o.Close())
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the address can be bound again")
	require.NoError(t, l.Close())
}

func TestOpsReadyzIsUnreadyOnceClosing(t *testing.T) {
	o, err := obs.NewOps(obs.OpsConfig{Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, o.Close())

	rec := httptest.NewRecorder()
	o.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.JSONEq(t, `{"status":"shutting down"}`, rec.Body.String())
}

func TestOpsWithoutAddrIsDisabled(t *testing.T) {
	o, err := obs.NewOps(obs.OpsConfig{})
	require.NoError(t, err)
	require.Empty(t, o.Addr())
	o.AddReadiness("x", func(context.Context) error { return nil })

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, o.Close())
}

func TestNewOpsRejectsBadConfig(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })

	tests := []struct {
		name    string
		cfg     obs.OpsConfig
		wantErr []string
	}{
		{"an address without a port is named", obs.OpsConfig{Addr: "localhost"}, []string{"Addr: must be host:port"}},
		{"negative timeouts are named", obs.OpsConfig{ReadinessTimeout: -1, ShutdownTimeout: -1}, []string{"ReadinessTimeout: must not be negative", "ShutdownTimeout: must not be negative"}},
		{"a taken port fails at construction", obs.OpsConfig{Addr: taken.Addr().String()}, []string{"ops server listen on"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := obs.NewOps(tt.cfg)
			require.Nil(t, o)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}
