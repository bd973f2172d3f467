#!/usr/bin/env bash
# End-to-end demo of the main job: send a text with our `wormhole` CLI and receive it with
# our `wormhole` CLI, through our own `wormhole-server` (mailbox + transit relay) on
# 127.0.0.1, all inside a private loopback-only network namespace.
#
#   scripts/demo.sh ["text to send"]
#
# Exits 0 only if the receiver printed exactly the text that was sent (escaped like the
# reference receiver escapes it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TEXT="${1:-hello from wormhole-rs}"
TIMEOUT=60

say() { printf '\n--- %s\n' "$*"; }
die() { printf 'demo.sh: FAILED: %s\n' "$*" >&2; exit 1; }

if [ "${WORMHOLE_DEMO_INSIDE_NS:-}" != 1 ]; then
    say "preparing the reference peers (scripts/setup-peers.sh; the demo uses their Python)"
    scripts/setup-peers.sh
    say "building the wormhole CLI and server (cargo build -p wormhole-cli -p wormhole-server)"
    cargo build -p wormhole-cli -p wormhole-server
    export WORMHOLE_REF_VENV="$ROOT/.venv-ref"
    export WORMHOLE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/wormhole"
    case "$WORMHOLE_BIN" in /*) ;; *) WORMHOLE_BIN="$ROOT/$WORMHOLE_BIN" ;; esac
    [ -x "$WORMHOLE_BIN" ] || die "no wormhole binary at $WORMHOLE_BIN"
    export WORMHOLE_SERVER_BIN="${WORMHOLE_BIN%/wormhole}/wormhole-server"
    [ -x "$WORMHOLE_SERVER_BIN" ] || die "no wormhole-server binary at $WORMHOLE_SERVER_BIN"
    export WORMHOLE_DEMO_INSIDE_NS=1
    # New network, mount and PID namespaces: when the demo ends, nothing it started survives.
    source "$ROOT/scripts/lib/netns.sh"
    loopback_ns
    exec "${NS[@]}" "$ROOT/scripts/demo.sh" "$TEXT"
fi

# ---- inside the loopback-only namespace ----------------------------------------------------
ip link set lo up
say "network interfaces here: $(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/wormhole-demo.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=4000 # the namespace is private: nothing else can hold this port
URL="ws://127.0.0.1:$PORT/v1"
say "\$ wormhole-server all --mailbox-listen 127.0.0.1:$PORT --relay-listen 127.0.0.1:$((PORT + 1)) --db :memory:"
"$WORMHOLE_SERVER_BIN" all --mailbox-listen "127.0.0.1:$PORT" --relay-listen "127.0.0.1:$((PORT + 1))" \
    --db :memory: >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "${PIDS[0]}" 2>/dev/null || die "the mailbox server exited: $(tail -5 "$WORK/server.log")"
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || die "the mailbox server did not start within 30 s"

say "\$ wormhole --relay-url $URL send --text \"$TEXT\""
timeout "$TIMEOUT" "$WORMHOLE_BIN" --relay-url "$URL" send --text "$TEXT" \
    >"$WORK/send.out" 2>"$WORK/send.err" &
SENDER=$!
PIDS+=("$SENDER")

CODE=""
for _ in $(seq $((TIMEOUT * 10))); do
    CODE="$(sed -n 's/.*Wormhole code is: *\([^ ]*\).*/\1/p' "$WORK/send.err" | head -1)"
    [ -n "$CODE" ] && break
    kill -0 "$SENDER" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$CODE" ]; then
    cat "$WORK/send.err" >&2
    die "the sender printed no 'Wormhole code is: CODE'"
fi
echo "sender's code: $CODE"

say "\$ wormhole --relay-url $URL receive $CODE"
set +e
timeout "$TIMEOUT" "$WORMHOLE_BIN" --relay-url "$URL" receive "$CODE" \
    >"$WORK/recv.out" 2>"$WORK/recv.err"
RECV_RC=$?
wait "$SENDER"
SEND_RC=$?
set -e

say "sender (exit $SEND_RC) stderr:"
cat "$WORK/send.err"
say "sender stdout:"
cat "$WORK/send.out"
say "receiver (exit $RECV_RC) stderr:"
cat "$WORK/recv.err"
say "receiver stdout (the received text):"
cat "$WORK/recv.out"

[ "$SEND_RC" -eq 0 ] || die "the sender exited $SEND_RC"
[ "$RECV_RC" -eq 0 ] || die "the receiver exited $RECV_RC"
# The receiver prints the text the way the reference does, Python's repr() without the
# quotes (control characters and backslashes escaped).
if "$WORMHOLE_REF_VENV/bin/python" -c 'import sys; print(repr(sys.argv[1])[1:-1])' "$TEXT" |
    cmp -s - "$WORK/recv.out"; then
    say "OK: the text arrived intact"
else
    die "the received text differs from the sent text"
fi
