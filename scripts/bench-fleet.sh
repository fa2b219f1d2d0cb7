#!/usr/bin/env bash
# The fleet benchmark: builds the release binaries, then runs fleet-bench, which starts one hub
# process (embedded broker, mutual TLS) and enrolls and connects N simulated agents on loopback.
# Arguments go to fleet-bench (--agents 1000 --rate 5000 --seconds 20 --batch 100 --push-rate 100000).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/gatewatch-target}"
cargo build --release --locked --workspace --bins
# Each agent holds a socket here and two in the hub (TLS in, broker out).
ulimit -n "$(ulimit -Hn)"
"$CARGO_TARGET_DIR/release/fleet-bench" "$@"
