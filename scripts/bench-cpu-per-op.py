#!/usr/bin/env python3
"""bench-cpu-per-op.py TESTBINARY BENCH LO HI: the CPU (user + system) a Go benchmark spends per op.

Usage (docs/performance.md, "AWS SDK middleware per call (sdkmw)"):

    cd libs/provider/awsfleet && go test -c -o /tmp/awsfleet.test .
    scripts/bench-cpu-per-op.py /tmp/awsfleet.test CreateSnapshotSet 5000 45000

It runs the benchmark twice, with -benchtime LOx and HIx, and divides the difference of the
test process's CPU seconds by HI - LO: the setup both runs share (an emulator, a discovery)
cancels out. On a shared machine the CPU per op moves less than ns/op, which counts the time
other processes hold the cores. It also prints the last run's ns/op, B/op and allocs/op."""
import os, re, resource, subprocess, sys

binary, bench, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def run(n):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([binary, "-test.run", "^$", "-test.bench", bench, "-test.benchmem", "-test.benchtime", f"{n}x"],
                         capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [l for l in out.splitlines() if l.startswith("Benchmark")]
    if not lines:
        sys.exit(f"no benchmark line in the output of {binary}:\n{out}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), lines[-1]


cpu_lo, _ = run(lo)
cpu_hi, line = run(hi)
ns = re.search(r"([\d.]+) ns/op", line)
mem = re.search(r"(\d+) B/op\s+(\d+) allocs/op", line)
print(f"{os.path.basename(binary)} {bench}: cpu_us_per_op={(cpu_hi - cpu_lo) / (hi - lo) * 1e6:.1f} "
      f"ns_per_op={ns.group(1) if ns else '?'} B_per_op={mem.group(1) if mem else '?'} allocs_per_op={mem.group(2) if mem else '?'}")
