package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/patchd"
	"github.com/patchwave/patchwave/services/patchd/internal/bench"
)

// TestMain lets this test binary be the emulator process of a bench with CloudProcess (the
// bench starts its own executable again for it).
func TestMain(m *testing.M) {
	if ran, err := bench.Child(context.Background(), os.Stdout); ran {
		if err != nil {
			fmt.Fprintln(os.Stderr, "cloudsim child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lastLine is the report's last line as scripts read it.
var lastLine = regexp.MustCompile(`^ratio=([0-9.]+) instances=([0-9]+) wall_s=([0-9.]+) floor_s=([0-9.]+) peak_rss_mib=([0-9]+)( cloudsim_rss_mib=[0-9]+)?$`)

// TestBenchSmoke runs the bench command at a small size so it cannot rot: the waves complete
// through patchd's wiring, every instance ends, and the last line parses. It asserts no time.
func TestBenchSmoke(t *testing.T) {
	var out strings.Builder
	err := bench.Main(t.Context(), []string{"-instances", "100", "-waves", "2", "-failure-rate", "0.05", "-poll", "20ms",
		"-data-dir", t.TempDir()}, &out, &out)
	require.NoError(t, err, out.String())
	t.Log(out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	m := lastLine.FindStringSubmatch(lines[len(lines)-1])
	require.NotNil(t, m, "last line %q", lines[len(lines)-1])
	require.Equal(t, "200", m[2], "instances of both waves")
	for _, f := range []string{m[1], m[3], m[4], m[5]} {
		v, err := strconv.ParseFloat(f, 64)
		require.NoError(t, err)
		require.Positive(t, v)
	}
	require.Contains(t, out.String(), "wave 1: COMPLETED")
	require.Contains(t, out.String(), "wave 2: COMPLETED")
	require.Contains(t, out.String(), "events     1")
}

// TestBenchResult checks what Run returns: every run completed with each instance counted
// once, the events of five per instance stored, and the floor moved as many.
func TestBenchResult(t *testing.T) {
	var out strings.Builder
	res, err := bench.Run(t.Context(), bench.Config{Instances: 150, DataDir: t.TempDir(), Out: &out})
	require.NoError(t, err, out.String())
	require.Len(t, res.Runs, 1)
	r := res.Runs[0]
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, r.GetState())
	require.EqualValues(t, 150, r.GetTotal())
	require.EqualValues(t, 150, r.GetSucceeded())
	// Notifications are digests per subscription since issue 11, not one event per instance.
	require.GreaterOrEqual(t, res.Events, 150*5, "job, snapshot started and created, install started and succeeded per instance")
	require.Equal(t, res.Floor.Events, 150*(res.Floor.Events/150))
	require.InDelta(t, res.Events, res.Floor.Events, 150, "the floor moves about as many events")
	require.GreaterOrEqual(t, res.CloudCalls["ec2:CreateSnapshots"], int64(150), "one CreateSnapshots per instance (AWS takes one instance per call)")
	require.GreaterOrEqual(t, res.BusCounters["handled_total TakeSnapshotOnJobRequested ok"], 150.0, "one handler call per job at least")
	require.GreaterOrEqual(t, res.BusCounters["tracker_outcomes_total TrackSnapshots done"], 150.0, "every SnapshotStarted acknowledged")
	require.Contains(t, out.String(), "bus counters during the waves")
	require.Equal(t, bench.Scans{}, res.Scans, "the daily scan is off by default: the wave runs its jobs only")
	require.Contains(t, out.String(), "0 ordered, 0 instances scanned, 0 failed (daily scan off)")
	require.Positive(t, res.PeakRSSMiB)
	require.Equal(t, res.Line(), strings.TrimSpace(out.String()[strings.LastIndex(strings.TrimSpace(out.String()), "\n")+1:]))
}

// TestBenchWithCloudsimInItsOwnProcess runs a wave against the emulator in a child process:
// the run completes, the emulator's counters come from its admin API, and both processes'
// peak RSS are reported.
func TestBenchWithCloudsimInItsOwnProcess(t *testing.T) {
	var out strings.Builder
	var allocProfile bytes.Buffer
	cloudProfile := filepath.Join(t.TempDir(), "cloudsim.prof")
	res, err := bench.Run(t.Context(), bench.Config{Instances: 100, DataDir: t.TempDir(), Out: &out, CloudProcess: true, FloorRuns: 1, AllocProfile: &allocProfile,
		CloudCPUProfile: cloudProfile, CloudGCPercent: 300})
	require.NoError(t, err, out.String())
	t.Log(out.String())
	require.Len(t, res.Runs, 1)
	require.Equal(t, typesv1.RunState_RUN_STATE_COMPLETED, res.Runs[0].GetState())
	require.EqualValues(t, 100, res.Runs[0].GetSucceeded())
	require.GreaterOrEqual(t, res.CloudCalls["ec2:CreateSnapshots"], int64(100), "the child's counters, through its admin API")
	require.Positive(t, res.CloudRSSMiB)
	require.Positive(t, res.CloudCPU, "the child's CPU during the wave, from /proc")
	require.Regexp(t, `cloudsim.s process [0-9.]+s during the waves`, out.String(), "the cpu line names the child's CPU")
	require.Positive(t, res.PeakRSSMiB)
	require.Positive(t, res.PeakLiveMiB)
	require.Positive(t, res.AllocBytes, "the waves allocate")
	require.Greater(t, res.AllocBytes, res.AllocObjects, "bytes and objects are both counted")
	require.Contains(t, out.String(), fmt.Sprintf("gc         %d cycles during the waves", res.GCCycles))
	require.Contains(t, out.String(), fmt.Sprintf("GC percent %d,", patchd.GCPercent()), "the first line names the GC percent in effect")
	require.Contains(t, out.String(), "allocated  ")
	require.True(t, bytes.HasPrefix(allocProfile.Bytes(), []byte{0x1f, 0x8b}), "the allocation profile is written, gzipped as pprof writes it")
	require.Contains(t, out.String(), "cloudsim's process")
	prof, err := os.ReadFile(cloudProfile)
	require.NoError(t, err, "the child wrote its CPU profile before it exited")
	require.True(t, bytes.HasPrefix(prof, []byte{0x1f, 0x8b}), "the child's CPU profile is gzipped as pprof writes it")
	m := lastLine.FindStringSubmatch(res.Line())
	require.NotNil(t, m, res.Line())
	require.NotEmpty(t, m[6], "the last line names the emulator's RSS")
}

func TestBenchRefusesBadFlags(t *testing.T) {
	var out strings.Builder
	err := bench.Main(t.Context(), []string{"-instances", "0", "-waves", "11", "-max-concurrency", "200000", "-daily-scan", "3am", "-data-dir", t.TempDir()}, &out, &out)
	require.ErrorContains(t, err, "instances 0: must be from 1")
	require.ErrorContains(t, err, "waves 11: must be from 1 to 10")
	require.ErrorContains(t, err, "max-concurrency 200000")
	require.ErrorContains(t, err, `daily-scan "3am": must be a UTC time of day HH:MM or off`)

	err = bench.Main(t.Context(), []string{"-cloudsim-cpuprofile", filepath.Join(t.TempDir(), "c.prof")}, &out, &out)
	require.ErrorContains(t, err, "-cloudsim-cpuprofile needs -cloudsim-process")
}
