#!/usr/bin/env bash
# apt-install.sh NAME PACKAGE... installs Debian packages with apt-get (as root, or through
# sudo -n), for the ensure-*.sh scripts that install what tests need. NAME prefixes the
# messages. It prints apt's log only when a step fails.
set -euo pipefail
name="$1"
shift

if ! command -v apt-get >/dev/null 2>&1; then
	echo "$name: apt-get is not available; install $* by hand" >&2
	exit 1
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo_cmd=(sudo -n)
	else
		echo "$name: installing $* needs root, but sudo is not available" >&2
		exit 1
	fi
fi

echo "$name: installing $* with apt-get" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1; then
	cat "$log" >&2
	echo "$name: apt-get update failed" >&2
	exit 1
fi
if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
	cat "$log" >&2
	echo "$name: apt-get install $* failed" >&2
	exit 1
fi
