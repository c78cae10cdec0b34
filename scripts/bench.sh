#!/usr/bin/env bash
# Runs every benchmark and rewrites docs/BENCHMARKS.md. Called by `make bench` after
# `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs
# GStreamer, for the video section only (a real RTP H.264 stream): not a `make test`
# dependency. Without it (not root, nothing installed) that section fails alone.
bash scripts/setup-deps.sh video || echo "bench: the video section needs GStreamer (scripts/setup-deps.sh video)" >&2
go run ./scripts/bench -bin bin -out docs/BENCHMARKS.md "$@"
