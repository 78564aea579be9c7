package patchd

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestSetMemoryLimitRaisesTheGCPercentOnlyUnderALimit: with a limit in effect (and GOGC not
// set) the GC percent is GCPercentWithLimit; without one it is the runtime's default, 100.
func TestSetMemoryLimitRaisesTheGCPercentOnlyUnderALimit(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	prevLimit, prevPercent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit); debug.SetGCPercent(prevPercent) })

	n, err := SetMemoryLimit("512MiB")
	if err != nil || n != 512<<20 {
		t.Fatalf("SetMemoryLimit(512MiB) = %d, %v", n, err)
	}
	if got := debug.SetGCPercent(GCPercentWithLimit); got != GCPercentWithLimit {
		t.Fatalf("GC percent under a limit = %d, want %d", got, GCPercentWithLimit)
	}
	if got := debug.SetMemoryLimit(-1); got != 512<<20 {
		t.Fatalf("memory limit = %d, want %d", got, 512<<20)
	}

	n, err = SetMemoryLimit("off")
	if err != nil || n != math.MaxInt64 {
		t.Fatalf("SetMemoryLimit(off) = %d, %v", n, err)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent without a limit = %d, want 100", got)
	}

	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	if _, err := SetMemoryLimit(""); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(50); got != 50 {
		t.Fatalf("GC percent with GOGC=50 set = %d, want 50 (left alone)", got)
	}
}
