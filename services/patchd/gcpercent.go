package patchd

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
)

// DefaultGCPercent is the GC percent patchd's process runs with (debug.SetGCPercent) unless
// GOGC or -gc-percent says otherwise: 200, twice the runtime's. The heap may grow to three
// times the live heap instead of two before a collection, so the waves run half as many GC
// cycles, and the soft memory limit (DefaultMemoryLimit) still bounds the heap once the
// live heap passes about a third of it: at 20,000 instances with the emulator in its own
// process the waves took about a tenth less CPU for 780 MiB of peak RSS instead of 574, and
// at 100,000 the RSS stayed at the limit's 820-835 MiB either way. See docs/decisions.md
// ("patchd's GC percent").
const DefaultGCPercent = 200

// SetGCPercent applies patchd's GC percent: spec is a percent ("100", "200") or "off" (the
// collector then runs only to keep the heap under the soft memory limit); empty means GOGC if
// set, else DefaultGCPercent. It returns the percent in effect (-1: off).
func SetGCPercent(spec string) (int, error) {
	if spec == "" {
		if os.Getenv("GOGC") != "" {
			return GCPercent(), nil // the runtime applied it at start
		}
		debug.SetGCPercent(DefaultGCPercent)
		return DefaultGCPercent, nil
	}
	p, err := ParseGCPercent(spec)
	if err != nil {
		return 0, fmt.Errorf("GC percent %q: %w", spec, err)
	}
	debug.SetGCPercent(p)
	return p, nil
}

// GCPercent is the GC percent in effect (-1: off), read from the runtime's metrics so that
// reading it changes nothing.
func GCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(int64(s[0].Value.Uint64())) // off reads as the uint64 of -1
}

// ParseGCPercent parses a GC percent as GOGC does: a positive number, or "off" (-1).
func ParseGCPercent(s string) (int, error) {
	if s == "off" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("must be a positive percent such as 100 or 200, or off")
	}
	return n, nil
}
