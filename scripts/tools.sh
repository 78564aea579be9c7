#!/usr/bin/env bash
# tools.sh installs the pinned developer tools into <repo>/.bin: every tool module under
# scripts/tools/<name>/ (buf, protoc plugins, golangci-lint) is built with `go install tool`.
#
# Idempotent and fast when nothing changed: after a successful build it writes
# .bin/.tools-<name>.stamp holding a hash of the module's go.mod, go.sum and the Go version;
# a module is rebuilt only when that hash changes or one of its binaries is missing.
#
# Usage: scripts/tools.sh [name...]   (default: every module under scripts/tools)
#        FORCE=1 scripts/tools.sh     (rebuild regardless of stamps)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.bin"
tools_dir="$root/scripts/tools"
mkdir -p "$bin"

# The tool modules are deliberately outside go.work: without GOWORK=off, `go install tool`
# would resolve "tool" against the workspace and silently match nothing.
export GOWORK=off
export GOBIN="$bin"

# tool_binaries prints the binary name of every `tool` directive in a go.mod: the last path
# element, or the one before it when the last is a major version suffix (vN).
tool_binaries() {
	awk '
		/^tool[ \t]*\($/ { block = 1; next }
		block && /^\)/ { block = 0; next }
		block && NF { print $1; next }
		/^tool[ \t]+[^(]/ { print $2 }
	' "$1" | while read -r path; do
		base="${path##*/}"
		if [[ "$base" =~ ^v[0-9]+$ ]]; then
			path="${path%/*}"
			base="${path##*/}"
		fi
		echo "$base"
	done
}

stamp_of() {
	local dir="$1"
	{
		go env GOVERSION
		cat "$dir/go.mod"
		[ -f "$dir/go.sum" ] && cat "$dir/go.sum"
	} | sha256sum | cut -d' ' -f1
}

if [ "$#" -gt 0 ]; then
	names=("$@")
else
	names=()
	for dir in "$tools_dir"/*/; do
		[ -f "$dir/go.mod" ] && names+=("$(basename "$dir")")
	done
fi

for name in "${names[@]}"; do
	dir="$tools_dir/$name"
	if [ ! -f "$dir/go.mod" ]; then
		echo "tools: $dir/go.mod not found" >&2
		exit 1
	fi
	stamp_file="$bin/.tools-$name.stamp"
	want="$(stamp_of "$dir")"

	up_to_date=1
	if [ "${FORCE:-0}" = 1 ] || [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$want" ]; then
		up_to_date=0
	fi
	mapfile -t binaries < <(tool_binaries "$dir/go.mod")
	if [ "${#binaries[@]}" -eq 0 ]; then
		echo "tools: $dir/go.mod has no tool directives" >&2
		exit 1
	fi
	for b in "${binaries[@]}"; do
		[ -x "$bin/$b" ] || up_to_date=0
	done
	if [ "$up_to_date" = 1 ]; then
		continue
	fi

	echo "tools: installing $name (${binaries[*]}) into .bin" >&2
	(cd "$dir" && go install tool)
	for b in "${binaries[@]}"; do
		if [ ! -x "$bin/$b" ]; then
			echo "tools: building $name did not produce .bin/$b" >&2
			exit 1
		fi
	done
	echo "$want" >"$stamp_file"
done
