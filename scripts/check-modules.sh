#!/usr/bin/env bash
# Every module in go.work must also build on its own (GOWORK=off, through its replace
# directives) and have a tidy go.mod; go.work.sum must be current.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${GO:=go}"
mapfile -t modules < <(sed -n 's/^[[:space:]]*\.\/\(.*\)$/\1/p' go.work)
failed=()
for m in "${modules[@]}"; do
  if ! out=$(cd "$m" && GOWORK=off "$GO" build ./... 2>&1); then
    echo "$m: does not build with GOWORK=off:" >&2
    echo "$out" >&2
    failed+=("$m")
    continue
  fi
  if ! out=$(cd "$m" && GOWORK=off "$GO" mod tidy -diff 2>&1); then
    echo "$m: go.mod/go.sum not tidy (run: cd $m && GOWORK=off go mod tidy):" >&2
    echo "$out" | head -40 >&2
    failed+=("$m")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "check-modules: failed in: ${failed[*]}" >&2
  exit 1
fi
echo "check-modules: ${#modules[@]} modules build alone and are tidy"
