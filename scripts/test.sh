#!/usr/bin/env bash
# Runs the tests of the given modules (default: every module in go.work) with the race detector.
# Each module is tested on its own; the first failing module fails the run after all have run.
set -uo pipefail
cd "$(dirname "$0")/.."
modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  mapfile -t modules < <(sed -n 's/^[[:space:]]*\.\/\(.*\)$/\1/p' go.work)
fi
: "${GO:=go}"
failed=()
for m in "${modules[@]}"; do
  echo "=== go test ${m}"
  if ! (cd "$m" && "$GO" test -race -count=1 -timeout 10m ./...); then
    failed+=("$m")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED modules: ${failed[*]}" >&2
  exit 1
fi
echo "all modules passed"
