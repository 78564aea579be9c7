package benchkit_test

import (
	"crypto/sha256"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/benchkit"
)

// TestCPUTimeIsTheProcessRusage burns CPU and checks that /proc's figure for this process,
// read by its pid, agrees with getrusage to within the ticks' resolution.
func TestCPUTimeIsTheProcessRusage(t *testing.T) {
	before, err := benchkit.CPUTime(strconv.Itoa(os.Getpid()))
	require.NoError(t, err)
	sum := sha256.Sum256(nil)
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		sum = sha256.Sum256(sum[:])
	}
	got, err := benchkit.CPUTime("self")
	require.NoError(t, err)
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	want := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())

	require.Greater(t, got, before, "the loop used CPU")
	require.InDelta(t, want.Seconds(), got.Seconds(), 0.05, "getrusage %s, /proc %s", want, got)
}

func TestCPUTimeOfAMissingProcessIsAnError(t *testing.T) {
	_, err := benchkit.CPUTime("0")
	require.Error(t, err)
}
