#!/usr/bin/env bash
# ensure-redis.sh makes sure a redis-server binary is on PATH, installing it
# with apt-get when it is missing. Tests that need Redis (libs/testkit
# StartRedis) start a real redis-server per test, so `make test` and CI call
# this first. Idempotent: it prints nothing when redis-server is already there.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-redis: redis-server is not on PATH and apt-get is not available; install redis-server (Redis 6+) by hand" >&2
	exit 1
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo_cmd=(sudo -n)
	else
		echo "ensure-redis: redis-server is missing and installing it needs root, but sudo is not available" >&2
		exit 1
	fi
fi

echo "ensure-redis: redis-server not found, installing it with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1; then
	cat "$log" >&2
	echo "ensure-redis: apt-get update failed" >&2
	exit 1
fi
if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >"$log" 2>&1; then
	cat "$log" >&2
	echo "ensure-redis: apt-get install redis-server failed" >&2
	exit 1
fi

# The Debian package may try to start a system service; tests start their own
# redis-server per test, so a running system one is harmless but not needed.
if ! command -v redis-server >/dev/null 2>&1; then
	echo "ensure-redis: redis-server was installed but is still not on PATH" >&2
	exit 1
fi
echo "ensure-redis: installed $(redis-server --version | head -n1)" >&2
