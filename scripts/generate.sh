#!/usr/bin/env bash
# generate.sh regenerates everything generated from proto/: Go messages, gRPC stubs and
# grpc-gateway handlers into proto/gen/go/patchwave/<domain>/v1, and the merged OpenAPI v2
# document into proto/gen/openapi (see proto/buf.gen.yaml). It lints the .proto files first
# (buf STANDARD rules).
#
# Tools come from <repo>/.bin only (installed or refreshed by scripts/tools.sh, a no-op when
# they are current); nothing is fetched from a schema registry or as a remote plugin.
#
# Usage: scripts/generate.sh [output-proto-dir]
#   With an argument, generates into a copy: the directory must hold the proto sources and
#   buf configs (scripts/check-generated.sh uses this); default is <repo>/proto itself.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="${1:-$root/proto}"

# Pinned tools first on PATH so buf resolves its `local:` plugins to .bin.
export PATH="$root/.bin:$PATH"
if [ -x "$root/scripts/tools.sh" ]; then
	"$root/scripts/tools.sh" buf protoc
else
	for mod in buf protoc; do
		(cd "$root/scripts/tools/$mod" && GOWORK=off GOBIN="$root/.bin" go install tool)
	done
fi
for tool in buf protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2; do
	if [ "$(command -v "$tool")" != "$root/.bin/$tool" ]; then
		echo "generate: $tool is not installed in $root/.bin (run scripts/tools.sh)" >&2
		exit 1
	fi
done

cd "$proto_dir"
buf lint
# buf.gen.yaml has clean: true, so stale files from removed .proto files disappear.
buf generate
