#!/usr/bin/env bash
# check-domain-imports.sh fails when a domain package imports infrastructure, directly or
# through a dependency: NATS, gRPC, Redis, watermill, the AWS SDK, Prometheus, net/http, or the
# libs packages that wrap them. Domain packages are every `internal/domain` package of every
# module, and the pure libs packages listed in PURE below (their whole point is to be usable from
# a domain package). `make lint` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GO:=go}"

# Pure libs packages (import paths relative to the libs module).
PURE=(apierr events calendar provider baseline)
# Forbidden import path prefixes.
FORBIDDEN='^(github\.com/nats-io/|google\.golang\.org/grpc($|/)|github\.com/redis/|github\.com/go-redis/|github\.com/ThreeDotsLabs/|github\.com/aws/|github\.com/prometheus/|net/http($|/)|database/sql$|github\.com/patchwave/patchwave/libs/(bus|store|host|idem|natsembed|obs|testkit|grpcerr)($|/))'

mapfile -t modules < <(sed -n 's/^[[:space:]]*\.\/\(.*\)$/\1/p' go.work)
failed=0
checked=0
for m in "${modules[@]}"; do
	pkgs=()
	while IFS= read -r p; do
		case "$p" in
		*/internal/domain | */internal/domain/*) pkgs+=("$p") ;;
		esac
		if [ "$m" = libs ]; then
			for pure in "${PURE[@]}"; do
				[ "$p" = "github.com/patchwave/patchwave/libs/$pure" ] && pkgs+=("$p")
			done
		fi
	done < <(cd "$m" && "$GO" list ./... 2>/dev/null)
	for p in "${pkgs[@]}"; do
		checked=$((checked + 1))
		bad=$(cd "$m" && "$GO" list -deps "$p" | grep -E "$FORBIDDEN" || true)
		if [ -n "$bad" ]; then
			failed=1
			echo "check-domain-imports: $p imports infrastructure:" >&2
			sed 's/^/  /' <<<"$bad" >&2
			echo "  (find the path with: cd $m && go mod why -m or go list -deps -f '{{.ImportPath}}: {{.Imports}}' $p)" >&2
		fi
	done
done
if [ "$failed" -ne 0 ]; then
	exit 1
fi
echo "check-domain-imports: $checked domain packages import no infrastructure"
