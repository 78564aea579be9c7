#!/usr/bin/env bash
# Runs patchbench once per size in BENCH_INSTANCES (default 10000; a list such as "10000 20000"
# runs each, one after the other, each in a fresh process) and, with more than one size, prints
# how the wall time grew from the first size to each next one. BENCH_FLAGS passes more flags
# (e.g. "-waves 2 -max-concurrency 5000 -cpuprofile /tmp/cpu.prof", or "-cloudsim-process" to
# run the emulator in a process of its own, so patchd's peak RSS is measured without it and
# the last line adds cloudsim_rss_mib=). It measures and never fails on time: it fails only
# when a run does not complete.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GO:=go}"
sizes=(${BENCH_INSTANCES:-10000})
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
(cd services/patchd && "$GO" build -o "$bin/patchbench" ./cmd/patchbench)
lines=()
for n in "${sizes[@]}"; do
  echo "=== patchbench -instances $n ${BENCH_FLAGS:-}"
  # shellcheck disable=SC2086
  "$bin/patchbench" -instances "$n" ${BENCH_FLAGS:-} | tee "$bin/out-$n.txt"
  lines+=("$(tail -n 1 "$bin/out-$n.txt")")
done
if [ ${#lines[@]} -gt 1 ]; then
  echo
  echo "=== growth (wall time of each size over the first's)"
  first=${lines[0]}
  for l in "${lines[@]}"; do echo "$l"; done
  for l in "${lines[@]:1}"; do
    awk -v a="$first" -v b="$l" 'BEGIN {
      split(a, fa, " "); split(b, fb, " ")
      for (i in fa) { split(fa[i], kv, "="); A[kv[1]] = kv[2] }
      for (i in fb) { split(fb[i], kv, "="); B[kv[1]] = kv[2] }
      printf "growth=%.2f from_instances=%d to_instances=%d size_factor=%.2f from_wall_s=%s to_wall_s=%s\n",
        B["wall_s"] / A["wall_s"], A["instances"], B["instances"], B["instances"] / A["instances"], A["wall_s"], B["wall_s"]
    }'
  done
fi
