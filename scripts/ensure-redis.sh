#!/usr/bin/env bash
# ensure-redis.sh makes sure a redis-server binary is on PATH, installing it
# with apt-get when it is missing. Tests that need Redis (libs/testkit
# StartRedis) start a real redis-server per test, so `make test` and CI call
# this first. Idempotent: it prints nothing when redis-server is already there.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
	exit 0
fi
"$(dirname "$0")/apt-install.sh" ensure-redis redis-server

# The Debian package may try to start a system service; tests start their own
# redis-server per test, so a running system one is harmless but not needed.
if ! command -v redis-server >/dev/null 2>&1; then
	echo "ensure-redis: redis-server was installed but is still not on PATH" >&2
	exit 1
fi
echo "ensure-redis: installed $(redis-server --version | head -n1)" >&2
