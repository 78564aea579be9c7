package patchd

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the soft memory limit patchd's process runs with (debug.SetMemoryLimit)
// unless GOMEMLIMIT or -memory-limit says otherwise: 768 MiB. What patchd keeps between events
// is small (about 130 MB at 20,000 instances in flight); its peak RSS is garbage, which the
// GC percent lets grow past the live heap before collecting. The limit makes
// the collector run earlier when the heap nears it, so the RSS stays near the limit at the
// cost of more GC CPU when the live heap is large; a live heap above the limit is collected
// with at most about half the CPU (the runtime's guard), never refused. The limit is also
// what bounds the heap under patchd's GC percent (DefaultGCPercent, 200). See
// docs/decisions.md ("patchd's memory limit").
const DefaultMemoryLimit = 768 << 20

// SetMemoryLimit applies patchd's soft memory limit: spec is a size ("768MiB", "1GiB",
// "900MB", bytes) or "off"; empty means GOMEMLIMIT if set, else DefaultMemoryLimit. It returns
// the limit in effect (math.MaxInt64: none).
func SetMemoryLimit(spec string) (int64, error) {
	if spec == "" {
		if os.Getenv("GOMEMLIMIT") != "" {
			return debug.SetMemoryLimit(-1), nil // the runtime applied it at start
		}
		debug.SetMemoryLimit(DefaultMemoryLimit)
		return DefaultMemoryLimit, nil
	}
	n, err := ParseSize(spec)
	if err != nil {
		return 0, fmt.Errorf("memory limit %q: %w", spec, err)
	}
	debug.SetMemoryLimit(n)
	return n, nil
}

// ParseSize parses a size with an optional unit (B, KiB, MiB, GiB, KB, MB, GB) or "off"
// (math.MaxInt64).
func ParseSize(s string) (int64, error) {
	if s == "off" {
		return math.MaxInt64, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("must be a positive size such as 768MiB or 1GiB, or off")
	}
	return n * mult, nil
}
