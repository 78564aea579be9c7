package patchd_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/patchd"
)

// gcChildEnv makes the test binary a child that applies patchd's GC settings as patchd's flags
// would (the JSON gcChildSpec) and prints what is in effect, then exits (see TestMain). GOGC
// and GOMEMLIMIT are read by the runtime when a process starts, so only a fresh process shows
// whether they win over patchd's defaults.
const gcChildEnv = "PATCHD_TEST_GC_CHILD"

type gcChildSpec struct{ GCPercent, MemoryLimit string }

type gcChildResult struct {
	GCPercent, RuntimeGCPercent int
	MemoryLimit, RuntimeLimit   int64
	Err                         string
}

// runGCChild is the child's side: apply spec, report the settings and the runtime's.
func runGCChild(spec string) {
	var s gcChildSpec
	var r gcChildResult
	err := json.Unmarshal([]byte(spec), &s)
	if err == nil {
		r.GCPercent, err = patchd.SetGCPercent(s.GCPercent)
	}
	if err == nil {
		r.MemoryLimit, err = patchd.SetMemoryLimit(s.MemoryLimit)
	}
	if err != nil {
		r.Err = err.Error()
	}
	r.RuntimeGCPercent = debug.SetGCPercent(-1)
	r.RuntimeLimit = debug.SetMemoryLimit(-1)
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// gcChild runs the test binary as a child with env (GOGC and GOMEMLIMIT removed unless given).
func gcChild(t *testing.T, spec gcChildSpec, env ...string) gcChildResult {
	t.Helper()
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	for _, kv := range os.Environ() {
		if !hasKey(kv, "GOGC") && !hasKey(kv, "GOMEMLIMIT") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append(env, gcChildEnv+"="+string(b))...)
	out, err := cmd.Output()
	require.NoError(t, err, "child: %s", out)
	var r gcChildResult
	require.NoError(t, json.Unmarshal(out, &r), "child printed %q", out)
	return r
}

func hasKey(kv, key string) bool { return len(kv) > len(key) && kv[:len(key)+1] == key+"=" }

func TestPatchdGCSettingsDefaultsAndWhatWinsOverThem(t *testing.T) {
	tests := []struct {
		name        string
		spec        gcChildSpec
		env         []string
		wantPercent int
		wantLimit   int64
	}{
		{"with nothing set patchd's defaults apply", gcChildSpec{}, nil, patchd.DefaultGCPercent, patchd.DefaultMemoryLimit},
		{"GOGC wins over the default GC percent", gcChildSpec{}, []string{"GOGC=250"}, 250, patchd.DefaultMemoryLimit},
		{"GOGC off wins over the default GC percent", gcChildSpec{}, []string{"GOGC=off"}, -1, patchd.DefaultMemoryLimit},
		{"GOMEMLIMIT wins over the default limit", gcChildSpec{}, []string{"GOMEMLIMIT=1GiB"}, patchd.DefaultGCPercent, 1 << 30},
		{"the flags win over GOGC and GOMEMLIMIT", gcChildSpec{GCPercent: "150", MemoryLimit: "900MiB"}, []string{"GOGC=250", "GOMEMLIMIT=1GiB"}, 150, 900 << 20},
		{"off turns both off", gcChildSpec{GCPercent: "off", MemoryLimit: "off"}, nil, -1, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := gcChild(t, tt.spec, tt.env...)
			require.Empty(t, r.Err)
			require.Equal(t, tt.wantPercent, r.GCPercent, "SetGCPercent's answer")
			require.Equal(t, tt.wantPercent, r.RuntimeGCPercent, "the runtime's GC percent")
			require.Equal(t, tt.wantLimit, r.MemoryLimit, "SetMemoryLimit's answer")
			require.Equal(t, tt.wantLimit, r.RuntimeLimit, "the runtime's memory limit")
		})
	}
}

func TestPatchdGCSettingsRefuseBadValuesNamingTheSetting(t *testing.T) {
	for _, spec := range []gcChildSpec{{GCPercent: "0"}, {GCPercent: "-5"}, {GCPercent: "200%"}, {MemoryLimit: "lots"}, {MemoryLimit: "0MiB"}} {
		t.Run(fmt.Sprintf("%+v", spec), func(t *testing.T) {
			r := gcChild(t, spec)
			if spec.GCPercent != "" {
				require.Contains(t, r.Err, fmt.Sprintf("GC percent %q: must be a positive percent", spec.GCPercent))
			} else {
				require.Contains(t, r.Err, fmt.Sprintf("memory limit %q: must be a positive size", spec.MemoryLimit))
			}
		})
	}
}

func TestParseGCPercent(t *testing.T) {
	for in, want := range map[string]int{"100": 100, "1": 1, "400": 400, "off": -1} {
		got, err := patchd.ParseGCPercent(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1", "1.5", "OFF", "100%"} {
		_, err := patchd.ParseGCPercent(in)
		require.Error(t, err, in)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"768MiB": 768 << 20, "1GiB": 1 << 30, "900MB": 900e6, "4096": 4096, "2KiB": 2048, "off": math.MaxInt64} {
		got, err := patchd.ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1MiB", "1TiB", "MiB", "9223372036854775807GiB"} {
		_, err := patchd.ParseSize(in)
		require.Error(t, err, in)
	}
}
