#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each (default 20s). The seed
# corpora in testdata/fuzz/ also run as plain tests in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-20s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "== $pkg $target"
		# Shrinking a new input may take a minute of its own by default; cap it so the
		# time goes to fuzzing.
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime=10s "$pkg"
	done
done
