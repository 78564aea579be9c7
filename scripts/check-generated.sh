#!/usr/bin/env bash
# check-generated.sh fails when the committed generated code in proto/gen differs from what
# scripts/generate.sh produces from the current .proto sources and buf configs.
#
# It regenerates into a temporary copy of proto/ and compares directories, so it never touches
# the working tree and works without git (before the first commit, with uncommitted changes).
# Any difference counts: edited, missing, or extra files under proto/gen.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Copy the inputs (everything in proto/ except gen/ and nothing generated) and regenerate there.
mkdir -p "$tmp/proto"
tar -C "$root/proto" --exclude=./gen -cf - . | tar -C "$tmp/proto" -xf -
if ! "$root/scripts/generate.sh" "$tmp/proto" >"$tmp/generate.log" 2>&1; then
	cat "$tmp/generate.log" >&2
	echo "check-generated: generation failed (see above)" >&2
	exit 1
fi

committed="$root/proto/gen"
if [ ! -d "$committed" ]; then
	committed="$tmp/empty" # nothing generated yet: everything counts as missing
	mkdir -p "$committed"
fi

if diff -rq "$committed" "$tmp/proto/gen" >"$tmp/summary" 2>&1; then
	echo "check-generated: proto/gen is up to date"
	exit 0
fi

{
	echo "check-generated: proto/gen is out of date with the .proto sources or buf configs."
	echo "Run scripts/generate.sh (make generate) and commit the result. Differences:"
	sed -e "s#$tmp/proto/gen#<regenerated>#g" -e "s#$root/##g" "$tmp/summary"
	echo
	echo "Diff (committed -> regenerated, first 400 lines):"
	diff -ruN "$committed" "$tmp/proto/gen" |
		sed -e "s#$tmp/proto/gen#<regenerated>#g" -e "s#$root/##g" | head -n 400
} >&2
exit 1
