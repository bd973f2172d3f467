#!/usr/bin/env bash
# A bounded soak test of the mailbox server (not part of scripts/test.sh).
#
#   scripts/soak.sh [--minutes N | --secs N] [more soak options: scripts/soak.sh --help]
#
# Builds wormhole-server and the soak binary (tests/src/bin/soak.rs), installs the sqlite3
# command if it is missing, then runs the soak inside new network, mount and PID namespaces
# whose only interface is loopback. For N minutes (default 2): honest sessions with random
# disconnects, abandoned connections, half-open handshakes, oversized frames, and kill -9 +
# restart of the server every 20-30 s; then it checks that no acknowledged message was lost,
# that the server's descriptors and RSS came back down, and that nothing stays in the
# database beyond its expiry. Exits with the soak's status (0: every property held).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

die() { printf 'soak.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# Inner stage: inside the namespaces (see the end of this script).
if [ "${WORMHOLE_SOAK_INSIDE_NS:-}" = 1 ]; then
    ip link set lo up
    # sysfs shows the namespace of whoever mounted it: mount our own, so that
    # /sys/class/net lists only `lo` (the soak refuses to run otherwise).
    mount -t sysfs sysfs /sys || echo "soak.sh: warning: could not mount a private sysfs" >&2
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    # Not exec'd: this shell is PID 1 of the PID namespace, so when it exits the kernel
    # kills anything left behind (a server).
    status=0
    "$SOAK_BIN" "$@" || status=$?
    exit "$status"
fi

for arg in "$@"; do
    case "$arg" in -h|--help) SOAK_HELP=1 ;; esac
done

if ! command -v sqlite3 >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "the sqlite3 command is missing: apt-get install sqlite3"
    echo "soak.sh: installing sqlite3"
    DEBIAN_FRONTEND=noninteractive apt-get install -y sqlite3 >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y sqlite3 >/dev/null; } \
        || die "cannot install sqlite3"
fi
command -v ip >/dev/null || die "the ip command is missing: apt-get install iproute2"
command -v unshare >/dev/null || die "the unshare command is missing: apt-get install util-linux"

cargo build -p wormhole-server
cargo build -p wormhole-tests --bin soak
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
export WORMHOLE_SERVER_BIN="$TARGET/debug/wormhole-server"
export SOAK_BIN="$TARGET/debug/soak"
[ -x "$WORMHOLE_SERVER_BIN" ] || die "the server binary is missing at $WORMHOLE_SERVER_BIN"
[ -x "$SOAK_BIN" ] || die "the soak binary is missing at $SOAK_BIN"
if [ -n "${SOAK_HELP:-}" ]; then
    exec "$SOAK_BIN" --help
fi
export WORMHOLE_SOAK_INSIDE_NS=1

source "$ROOT/scripts/lib/netns.sh"
loopback_ns
echo "soak.sh: running the soak in a loopback-only namespace (${NS[*]})"
"${NS[@]}" "$ROOT/scripts/soak.sh" "$@"
