#!/usr/bin/env bash
# Benchmarks, run against local servers only, inside a loopback-only network namespace.
#
#   benches/run.sh [--runs N]
#
# Builds our CLI in release mode, prepares the reference peers (scripts/setup-peers.sh) and
# runs benches/text_exchange.py: our `wormhole` CLI against the reference CLI 0.24.0
# through one reference mailbox server, printing a table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
if [ "${WORMHOLE_BENCH_INSIDE_NS:-}" = 1 ]; then
    ip link set lo up
    exec "$ROOT/.venv-ref/bin/python" "$ROOT/benches/text_exchange.py" \
        --ours "$WORMHOLE_BIN" --reference "$ROOT/.venv-ref/bin/wormhole" \
        --twist "$ROOT/.venv-ref/bin/twist" "$@"
fi
scripts/setup-peers.sh
cargo build --release -p wormhole-cli
export WORMHOLE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wormhole"
case "$WORMHOLE_BIN" in /*) ;; *) WORMHOLE_BIN="$ROOT/$WORMHOLE_BIN" ;; esac
export WORMHOLE_BENCH_INSIDE_NS=1
NS_FLAGS=(-npf --mount-proc)
if unshare -r "${NS_FLAGS[@]}" true 2>/dev/null; then
    exec unshare -r "${NS_FLAGS[@]}" "$0" "$@"
fi
exec unshare "${NS_FLAGS[@]}" "$0" "$@"
