#!/usr/bin/env bash
# Runs every benchmark and rewrites docs/BENCHMARKS.md. Called by `make bench` after
# `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs
go run ./scripts/bench -bin bin -out docs/BENCHMARKS.md "$@"
