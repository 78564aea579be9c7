package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o options)
		err   string
	}{
		{"the default account", []string{"-tenant", "acme", "-instances", "7"}, func(t *testing.T, o options) {
			require.Len(t, o.cfg.Accounts, 1)
			require.Equal(t, "acme", o.cfg.Accounts[0].Tenant)
			require.Equal(t, 7, o.cfg.Accounts[0].Instances)
			require.Equal(t, 3, o.cfg.Accounts[0].Waves)
		}, ""},
		{"accounts replace the default one", []string{"-account", "tenant=globex,id=222222222222,regions=eu-west-1+us-east-1,instances=500,os=rhel-9:1",
			"-account", "tenant=initech,id=333333333333,instances=5,agentless=0.2"}, func(t *testing.T, o options) {
			require.Len(t, o.cfg.Accounts, 2)
			require.Equal(t, []string{"eu-west-1", "us-east-1"}, o.cfg.Accounts[0].Regions)
			require.Equal(t, map[string]float64{"rhel-9": 1}, o.cfg.Accounts[0].OSMix)
			require.InDelta(t, 0.2, o.cfg.Accounts[1].AgentlessFraction, 1e-9)
		}, ""},
		{"faults per operation", []string{"-latency", "*=5ms", "-jitter", "DescribeInstances=2ms", "-throttle-rate", "ssm:SendCommand=0.1",
			"-error-rate", "CreateSnapshots=0.05:InternalError"}, func(t *testing.T, o options) {
			require.Equal(t, "5ms", o.cfg.Faults.Operations["*"].Latency.String())
			require.InDelta(t, 0.1, o.cfg.Faults.Operations["ssm:SendCommand"].ThrottleRate, 1e-9)
			require.Equal(t, "InternalError", o.cfg.Faults.Operations["CreateSnapshots"].ErrorCode)
		}, ""},
		{"a bad account key is refused", []string{"-account", "tenant=x,colour=red"}, nil, `unknown key "colour"`},
		{"a bad latency is refused", []string{"-latency", "DescribeInstances"}, nil, "OP=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			tt.check(t, o)
		})
	}
}

func TestCommandServesAndStopsOnSIGINT(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cloudsim")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	cmd := exec.CommandContext(t.Context(), bin, "-listen", "127.0.0.1:0", "-tenant", "acme", "-instances", "4", "-print-config",
		"-state-dir", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var info startInfo
	require.NoError(t, json.NewDecoder(bufio.NewReader(stdout)).Decode(&info))
	require.Len(t, info.Accounts, 1)
	require.Equal(t, 4, info.Accounts[0].Instances)
	require.Regexp(t, `^AKIA`, info.Provider.AccessKeyID)
	require.NotEmpty(t, info.Accounts[0].ExternalID)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, info.Endpoint+"/_cloudsim/stats", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait(), "a clean stop exits 0")
}
