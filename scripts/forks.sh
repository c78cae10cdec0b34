#!/usr/bin/env bash
# forks.sh: the upstream code umbra patches lives in third_party/ as packages of this module.
# Each fork is upstream at a pinned version, cut to the files umbra builds, with its
# *.patch files applied in name order and its import paths rewritten to the in-module path.
#
#   scripts/forks.sh verify   rebuild every fork from upstream and fail on any difference
#   scripts/forks.sh apply    rewrite the forks from upstream and their patches (after a
#                             patch changed, or to move to a new upstream version)
#
# Upstream comes from the Go module proxy (go mod download), so no git remote is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

module=$(go list -m)

# fork DIR UPSTREAM_MODULE VERSION
forks=(
	"third_party/quic-go github.com/quic-go/quic-go v0.65.0"
)

# own lists the files of a fork that are umbra's, not upstream's.
own() { case "$1" in LICENSE | UMBRA.md | *.patch) return 0 ;; esac; return 1; }

# build DIR UPSTREAM VERSION OUT writes into OUT what DIR must hold.
build() {
	local dir=$1 up=$2 ver=$3 out=$4 src f
	src=$(go mod download -json "$up@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { echo "forks: cannot download $up@$ver" >&2; return 1; }
	# The fork's file set is the fork's own: upstream's copy of each, then the patches
	# (which may add files), then the import rewrite.
	(cd "$dir" && git ls-files 2>/dev/null || find . -type f) | while read -r f; do
		own "$(basename "$f")" && continue
		if [ -f "$src/$f" ]; then
			mkdir -p "$out/$(dirname "$f")"
			cp "$src/$f" "$out/$f"
			chmod u+w "$out/$f"
		fi
	done
	for p in "$dir"/*.patch; do
		[ -f "$p" ] || continue
		patch -s -p1 -d "$out" <"$p" || { echo "forks: $p no longer applies to $up@$ver" >&2; return 1; }
	done
	find "$out" -name '*.orig' -delete
	find "$out" -name '*.go' -exec sed -i "s#\"$up\\([/\"]\\)#\"$module/$dir\\1#g" {} +
	gofmt -w "$out"
}

cmd=${1:-verify}
status=0
for spec in "${forks[@]}"; do
	read -r dir up ver <<<"$spec"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	build "$dir" "$up" "$ver" "$tmp"
	case $cmd in
	verify)
		if diff -r -q -x LICENSE -x UMBRA.md -x '*.patch' "$tmp" "$dir" >/dev/null; then
			echo "forks: $dir is $up@$ver with its patches"
		else
			echo "forks: $dir differs from $up@$ver with its patches:" >&2
			diff -r -u -x LICENSE -x UMBRA.md -x '*.patch' "$tmp" "$dir" | head -40 >&2
			status=1
		fi
		;;
	apply)
		cp -r "$tmp"/. "$dir"/
		echo "forks: wrote $dir from $up@$ver and its patches"
		;;
	*)
		echo "usage: scripts/forks.sh verify|apply" >&2
		exit 2
		;;
	esac
	rm -rf "$tmp"
done
exit $status
