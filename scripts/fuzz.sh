#!/usr/bin/env bash
# fuzz.sh runs every fuzz target kept in the repository for a while each: FUZZTIME per target
# (default 10s, what `make test` uses; `make fuzz FUZZTIME=10m` for a longer run). A crash
# leaves its input under the package's testdata/fuzz/<Target>/, which `go test` then replays
# as a regression case: commit it with the fix.
#
# Usage: scripts/fuzz.sh            (every target)
#        FUZZTIME=2m scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GO:=go}"
: "${FUZZTIME:=10s}"

# module:package:target, one per line.
targets=(
	"services/catalog:./internal/advisory:FuzzCSAF"
	"services/catalog:./internal/advisory:FuzzOSV"
	"services/catalog:./internal/advisory:FuzzUpdateInfo"
	"services/catalog:./internal/advisory:FuzzCVRF"
	"services/notifier:./internal/domain:FuzzSubscription"
	"libs:./provider/awsfleet:FuzzLeanDecoders"
	"libs:./provider/awsfleet:FuzzLeanCreateSnapshotsSerializer"
	"libs:./events:FuzzWireDecode"
	"libs:./events:FuzzWireEncode"
	"libs:./events:FuzzDecodeData"
)
for t in "${targets[@]}"; do
	IFS=: read -r module pkg target <<<"$t"
	echo "fuzz $module $pkg $target for $FUZZTIME"
	(cd "$module" && "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg")
done
