#!/usr/bin/env bash
# lint.sh runs golangci-lint (pinned in scripts/tools/lint, config .golangci.yml at the repo
# root) in every module listed in go.work, one module at a time: `golangci-lint run ./...`.
# It goes through all modules and exits non-zero if any of them has findings or fails to load.
#
# Usage: scripts/lint.sh [--fix] [module-dir...]
#   module-dir  lint only these modules (paths as in go.work, e.g. ./libs ./proto);
#               default: every `use` entry of go.work.
#   --fix       let golangci-lint apply automatic fixes (formatting, imports, ...).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.bin:$PATH"

fix=()
modules=()
for arg in "$@"; do
	case "$arg" in
	--fix) fix=(--fix) ;;
	-*)
		echo "lint: unknown flag $arg (usage: scripts/lint.sh [--fix] [module-dir...])" >&2
		exit 2
		;;
	*) modules+=("$arg") ;;
	esac
done

if [ -x "$root/scripts/tools.sh" ]; then
	"$root/scripts/tools.sh" lint
else
	(cd "$root/scripts/tools/lint" && GOWORK=off GOBIN="$root/.bin" go install tool)
fi
if [ "$(command -v golangci-lint)" != "$root/.bin/golangci-lint" ]; then
	echo "lint: golangci-lint is not installed in $root/.bin (run scripts/tools.sh)" >&2
	exit 1
fi

# go.work `use` entries: single-line (`use ./x`) and block (`use ( ./x ./y )`) forms,
# ignoring comments.
if [ "${#modules[@]}" -eq 0 ]; then
	mapfile -t modules < <(awk '
		{ sub(/\/\/.*/, "") }
		/^use[ \t]*\(/ { block = 1; next }
		block && /^\)/ { block = 0; next }
		block && NF { print $1; next }
		/^use[ \t]+[^( \t]/ { print $2 }
	' "$root/go.work" | tr -d '"')
fi
if [ "${#modules[@]}" -eq 0 ]; then
	echo "lint: no modules found in go.work" >&2
	exit 1
fi

failed=()
for mod in "${modules[@]}"; do
	dir="$root/${mod#./}"
	if [ ! -f "$dir/go.mod" ]; then
		echo "lint: skipping $mod (no go.mod)" >&2
		continue
	fi
	if [ -z "$(find "$dir" -name '*.go' -not -path '*/testdata/*' -print -quit)" ]; then
		echo "lint: skipping $mod (no Go files yet)" >&2
		continue
	fi
	echo "lint: $mod" >&2
	if ! (cd "$dir" && golangci-lint run --config "$root/.golangci.yml" "${fix[@]}" ./...); then
		failed+=("$mod")
	fi
done

if [ "${#failed[@]}" -gt 0 ]; then
	echo "lint: findings or errors in: ${failed[*]}" >&2
	exit 1
fi
echo "lint: ok" >&2
