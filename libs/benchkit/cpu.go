package benchkit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// CPUTime returns the user and system CPU time the process pid ("self" for this one) has used
// so far, all its threads together, from /proc/<pid>/stat (Linux only; 10 ms resolution). It
// reads another process's CPU, which getrusage cannot while the process runs.
func CPUTime(pid string) (time.Duration, error) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces: the fields counted
	// from 3 start after its last ')'.
	end := strings.LastIndexByte(string(raw), ')')
	if end < 0 {
		return 0, fmt.Errorf("cpu time: /proc/%s/stat: no command name", pid)
	}
	fields := strings.Fields(string(raw[end+1:]))
	// utime and stime are fields 14 and 15, so 11 and 12 after the name.
	if len(fields) < 13 {
		return 0, fmt.Errorf("cpu time: /proc/%s/stat: %d fields", pid, len(fields)+2)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time: /proc/%s/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}
