#!/usr/bin/env bash
# Fails when gofmt would change a hand-written Go file (generated code is checked by check-generated).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(find libs services proto scripts -name '*.go' -not -path '*/gen/*' -print0 | xargs -0 gofmt -l)
if [ -n "$bad" ]; then
  echo "gofmt would change:" >&2
  echo "$bad" >&2
  exit 1
fi
