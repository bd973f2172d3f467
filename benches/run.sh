#!/usr/bin/env bash
# Benchmarks, run against local servers only, inside a loopback-only network namespace.
#
#   benches/run.sh [cli|servers|all] [options]
#
#   cli      benches/text_exchange.py: our `wormhole` CLI against the reference CLI 0.24.0
#            through one reference mailbox server (options: --runs N, default 7);
#   servers  wormhole-server/benches/servers.rs: our server against the reference mailbox
#            server 0.8.0 and transit relay 0.5.0 (option: --quick);
#   dilation benches/dilation.py: 1 GiB over one Dilation subchannel, direct and relay,
#            ours and the reference 0.24 in every pairing (options: --size MIB, --runs N,
#            --only ours-ours,ours-reference,…; --recovery N: instead, the time to
#            recover from N connection resets per run, through a cutting proxy);
#   all      cli and servers (the default; dilation runs only when asked for).
#
# Builds the release binaries and prepares the reference peers (scripts/setup-peers.sh)
# first. Each prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
WHAT="${1:-all}"
[ $# -gt 0 ] && shift
case "$WHAT" in cli|servers|dilation|all) ;; *) echo "usage: benches/run.sh [cli|servers|dilation|all] [options]" >&2; exit 2 ;; esac

if [ "${WORMHOLE_BENCH_INSIDE_NS:-}" = 1 ]; then
    ip link set lo up
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [ "$WHAT" = cli ] || [ "$WHAT" = all ]; then
        "$ROOT/.venv-ref/bin/python" "$ROOT/benches/text_exchange.py" \
            --ours "$WORMHOLE_BIN" --reference "$ROOT/.venv-ref/bin/wormhole" \
            --twist "$ROOT/.venv-ref/bin/twist" "$@"
    fi
    if [ "$WHAT" = servers ] || [ "$WHAT" = all ]; then
        "$WORMHOLE_SERVERS_BENCH" "$@"
    fi
    if [ "$WHAT" = dilation ]; then
        "$ROOT/.venv-ref/bin/python" "$ROOT/benches/dilation.py" --ours "$WORMHOLE_DILATION_PEER" \
            --server "$WORMHOLE_SERVER_BIN" --venv "$ROOT/.venv-ref" \
            --python "$WORMHOLE_BENCH_PYTHON" "$@"
    fi
    exit 0
fi
scripts/setup-peers.sh
cargo build --release -p wormhole-cli -p wormhole-server
[ "$WHAT" = dilation ] && cargo build --release -p wormhole-tests --bin dilation_peer
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
if [ "$WHAT" = dilation ]; then
    # Our Python module, release build, in a venv of its own (./.venv-bench-py, gitignored),
    # with the pinned Twisted the Python test suite uses.
    PYV="$ROOT/.venv-bench-py"
    if [ ! -x "$PYV/bin/maturin" ]; then
        python3 -m venv "$PYV"
        "$PYV/bin/pip" install -q --disable-pip-version-check "maturin==1.16.0" "twisted==26.10.0"
    fi
    rm -rf "$TARGET/wheels-bench"
    (cd "$ROOT/bindings/python" && "$PYV/bin/maturin" build --release -q -i "$PYV/bin/python" -o "$TARGET/wheels-bench")
    "$PYV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$TARGET"/wheels-bench/*.whl
    export WORMHOLE_BENCH_PYTHON="$PYV/bin/python"
fi
export WORMHOLE_BIN="$TARGET/release/wormhole"
export WORMHOLE_SERVER_BIN="$TARGET/release/wormhole-server"
export WORMHOLE_DILATION_PEER="$TARGET/release/dilation_peer"
export WORMHOLE_REF_VENV="$ROOT/.venv-ref"
# The bench binary itself (cargo bench --no-run prints its path).
WORMHOLE_SERVERS_BENCH="$(cargo bench -p wormhole-server --bench servers --no-run --message-format=json 2>/dev/null |
    "$ROOT/.venv-ref/bin/python" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "servers":
        print(m["executable"])')"
[ -x "$WORMHOLE_SERVERS_BENCH" ] || { echo "benches/run.sh: cannot build the servers bench" >&2; exit 1; }
export WORMHOLE_SERVERS_BENCH
export WORMHOLE_BENCH_INSIDE_NS=1
source "$(dirname "$0")/../scripts/lib/netns.sh"
loopback_ns -npf --mount-proc
exec "${NS[@]}" "$0" "$WHAT" "$@"
