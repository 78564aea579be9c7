#!/usr/bin/env bash
# check-breaking.sh runs `buf breaking` (FILE rules, see proto/buf.yaml) on the working tree's
# proto/ against the proto/ directory of a git branch, main by default:
#   buf breaking --against '<repo>/.git#branch=main,subdir=proto'
# It exits 0 with a message when there is nothing to compare against yet: no commit on the
# branch, or no .proto file under proto/ on it.
#
# Usage: scripts/check-breaking.sh            (BRANCH=<name> to compare against another branch)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
branch="${BRANCH:-main}"

export PATH="$root/.bin:$PATH"
if [ -x "$root/scripts/tools.sh" ]; then
	"$root/scripts/tools.sh" buf
else
	(cd "$root/scripts/tools/buf" && GOWORK=off GOBIN="$root/.bin" go install tool)
fi

if ! git -C "$root" rev-parse --verify --quiet "refs/heads/$branch^{commit}" >/dev/null; then
	echo "check-breaking: branch $branch has no commits here yet; nothing to compare against, skipping"
	exit 0
fi
if ! git -C "$root" ls-tree -r --name-only "refs/heads/$branch" -- proto | grep -q '\.proto$'; then
	echo "check-breaking: branch $branch has no .proto files under proto/ yet; nothing to compare against, skipping"
	exit 0
fi

# --git-common-dir also works from a linked worktree, where .git is a file.
git_dir="$(git -C "$root" rev-parse --path-format=absolute --git-common-dir)"
cd "$root/proto"
buf breaking --against "$git_dir#branch=$branch,subdir=proto"
echo "check-breaking: no breaking changes against $branch"
