#!/usr/bin/env bash
# The project's test command.
#
#   scripts/test.sh [extra `cargo test` arguments, e.g. a test-name filter]
#
# 1. prepares the reference peers (scripts/setup-peers.sh: ./.venv-ref, ip, unshare);
# 2. checks formatting and lints (cargo fmt --check, scripts/check-import-cycles.py,
#    clippy -D warnings);
# 3. builds everything, including the test binaries (needs crates.io the first time);
# 4. runs `cargo test --workspace --offline --no-fail-fast` inside a private network namespace whose only
#    interface is loopback, so no test can reach (or be reached from) a real network;
# 5. runs every language suite in scripts/suites/*.sh: each is called with `prepare` before
#    the namespace (installs what it needs: pip, apt, Maven; builds) and with `run` inside it.
#    A failing suite fails the run, but the others still run.
#
# Environment: RUST_TEST_THREADS (default 4) sets the test parallelism per test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
T0=$(date +%s)

section() { printf '\n========== %s ==========\n' "$*"; }
die() { printf 'test.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# Inner stage: we are inside the namespace (see the end of this script).
if [ "${WORMHOLE_TEST_INSIDE_NS:-}" = 1 ]; then
    ip link set lo up
    # sysfs shows the namespace of whoever mounted it: mount our own (private mount
    # namespace, so the host is unaffected) so /sys/class/net lists only `lo`.
    mount -t sysfs sysfs /sys || echo "test.sh: warning: could not mount a private sysfs" >&2
    printf 'interfaces in the test namespace: %s\n' "$(ls /sys/class/net | tr '\n' ' ')"
    # Not exec'd: this shell is PID 1 of the namespace's PID namespace, so when it exits
    # the kernel kills anything a test left behind (e.g. a mailbox server).
    # The 1000-pair test holds a few thousand sockets.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    failed=()
    cargo test --workspace --offline --no-fail-fast "$@" || failed+=("cargo test")
    if [ $# -eq 0 ]; then
        for suite in "$ROOT"/scripts/suites/*.sh; do
            [ -e "$suite" ] || continue
            section "suite $(basename "$suite" .sh): run"
            "$suite" run || failed+=("$(basename "$suite" .sh)")
        done
    fi
    if [ ${#failed[@]} -gt 0 ]; then
        printf 'test.sh: FAILED: %s\n' "${failed[*]}" >&2
        exit 1
    fi
    exit 0
fi

report() {
    local rc=$?
    section "scripts/test.sh $([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (exit $rc)") after $(($(date +%s) - T0)) s"
}
trap report EXIT

section "1/5 reference peers: scripts/setup-peers.sh"
scripts/setup-peers.sh

section "2/5 cargo fmt --all --check; no file imports one that imports it back"
cargo fmt --all --check
python3 scripts/check-import-cycles.py

section "3/5 cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "4/5 build: cargo fetch; cargo build --workspace --all-targets; cargo test --workspace --no-run"
# Every package of Cargo.lock, for every target: cbindgen's `cargo metadata` (the header
# check, inside the offline namespace) needs them all, not only this host's.
cargo fetch
cargo build --workspace --all-targets
cargo test --workspace --no-run

# Language suites: install and build what they need while the network is still here.
# With extra arguments (a cargo test filter) only the cargo tests run.
if [ $# -eq 0 ]; then
    for suite in scripts/suites/*.sh; do
        [ -e "$suite" ] || continue
        section "suite $(basename "$suite" .sh): prepare"
        "$suite" prepare
    done
fi

export WORMHOLE_REF_VENV="$ROOT/.venv-ref"
export WORMHOLE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/wormhole"
case "$WORMHOLE_BIN" in /*) ;; *) WORMHOLE_BIN="$ROOT/$WORMHOLE_BIN" ;; esac
[ -x "$WORMHOLE_BIN" ] || die "the wormhole binary is missing at $WORMHOLE_BIN"
export WORMHOLE_SERVER_BIN="${WORMHOLE_BIN%/wormhole}/wormhole-server"
[ -x "$WORMHOLE_SERVER_BIN" ] || die "the server binary is missing at $WORMHOLE_SERVER_BIN"
export WORMHOLE_RS_BIN="$ROOT/.tools/wormhole-rs/bin/wormhole-rs"
export WORMHOLE_WILLIAM_BIN="$ROOT/.tools/wormhole-william/bin/wormhole-william"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
export WORMHOLE_TEST_INSIDE_NS=1

# New network, mount (for a private sysfs) and PID namespaces (no process outlives the run).
source "$ROOT/scripts/lib/netns.sh"
loopback_ns

section "5/5 cargo test --workspace --offline, in a loopback-only namespace (${NS[*]})"
"${NS[@]}" "$ROOT/scripts/test.sh" "$@"
