#!/usr/bin/env bash
# ensure-awscli.sh makes sure AWS's command-line client is installed at /usr/bin/aws (Debian's
# awscli package), installing it with apt-get when it is missing. cloudsim's CLI test runs
# /usr/bin/aws against the emulator (not an `aws` found on PATH, which may be a pyenv shim or a
# different version), so `make test` and CI call this first. Idempotent: it prints nothing when
# /usr/bin/aws is already there.
set -euo pipefail

if [ -x /usr/bin/aws ]; then
	exit 0
fi
"$(dirname "$0")/apt-install.sh" ensure-awscli awscli
if [ ! -x /usr/bin/aws ]; then
	echo "ensure-awscli: awscli was installed but /usr/bin/aws is still missing" >&2
	exit 1
fi
echo "ensure-awscli: installed $(/usr/bin/aws --version 2>&1 | head -n1)" >&2
