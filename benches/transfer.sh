#!/usr/bin/env bash
# File-transfer benchmark on loopback, inside a loopback-only network namespace.
#
#   benches/transfer.sh [--size MIB] [--runs N] [--only PEER[,PEER…]] (ours, baseline, reference, wormhole-rs)
#                       [--disk] [--baseline WORMHOLE_BIN]
#
# --baseline adds the peer "baseline": another build of our CLI (e.g. the previous commit's
# release binary), measured in the same run as ours, to show a change does not slow it down.
#
# Sends one random file (default 1024 MiB) between two copies of each CLI (ours, the
# reference CLI 0.24.0, wormhole-rs 0.8.1), direct and forced through a relay, through our
# wormhole-server (mailbox + relay, release build). For each side it reports wall-clock
# MB/s (file size / receiver's wall time, start-up and key exchange included), CPU
# seconds per GiB (user + system) and peak RSS, from /usr/bin/time. Median of N runs
# (default 3) by receiver wall time. Files live in /dev/shm unless --disk, so the
# figures measure the transfer, not this machine's disk write-back. Memory is touched and
# freed before each run (see prefault), and the first line gives a receiver's floor: the
# CPU of writing the file alone with dd.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

SIZE_MIB=1024
RUNS=3
ONLY=""
DISK=0
BASELINE="${WORMHOLE_BASELINE_BIN:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE_MIB="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --disk) DISK=1; shift ;;
        --baseline) BASELINE="$(realpath "$2")"; shift 2 ;;
        *) echo "usage: benches/transfer.sh [--size MIB] [--runs N] [--only PEER] [--disk] [--baseline BIN]" >&2; exit 2 ;;
    esac
done

if [ "${WORMHOLE_BENCH_INSIDE_NS:-}" != 1 ]; then
    scripts/setup-peers.sh >&2
    cargo build --release -p wormhole-cli -p wormhole-server >&2
    TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
    case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
    export WORMHOLE_BIN="$TARGET/release/wormhole"
    export WORMHOLE_SERVER_BIN="$TARGET/release/wormhole-server"
    export WORMHOLE_BENCH_INSIDE_NS=1
    export WORMHOLE_BASELINE_BIN="$BASELINE"
    if unshare -r -nmpf --mount-proc true 2>/dev/null; then
        exec unshare -r -nmpf --mount-proc "$0" --size "$SIZE_MIB" --runs "$RUNS" ${ONLY:+--only "$ONLY"} $([ "$DISK" = 1 ] && echo --disk)
    else
        exec unshare -nmpf --mount-proc "$0" --size "$SIZE_MIB" --runs "$RUNS" ${ONLY:+--only "$ONLY"} $([ "$DISK" = 1 ] && echo --disk)
    fi
fi

# ---- inside the namespace ----------------------------------------------------------------
ip link set lo up
REF="$ROOT/.venv-ref/bin/wormhole"
RS="$ROOT/.tools/wormhole-rs/bin/wormhole-rs"
# tmpfs by default, so the disk's write-back does not dominate (--disk: use $TMPDIR).
if [ "$DISK" = 0 ] && [ -w /dev/shm ]; then
    WORK="$(mktemp -d /dev/shm/wormhole-bench.XXXXXX)"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/wormhole-bench.XXXXXX")"
fi
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$WORMHOLE_SERVER_BIN" all --mailbox-listen 127.0.0.1:0 --relay-listen 127.0.0.1:0 --db :memory: \
    2>"$WORK/server.log" >/dev/null &
for _ in $(seq 100); do
    grep -q 'relay ready' "$WORK/server.log" 2>/dev/null && grep -q 'mailbox ready' "$WORK/server.log" && break
    sleep 0.1
done
MAILBOX="ws://$(grep -o 'mailbox ready: ws://[^/]*' "$WORK/server.log" | sed 's|.*ws://||')/v1"
RELAY="tcp:$(grep -o 'relay ready: tcp:[^ ]*' "$WORK/server.log" | sed 's|.*tcp:||')"
[ -n "$MAILBOX" ] && [ -n "$RELAY" ] || { cat "$WORK/server.log"; exit 1; }

mkdir -p "$WORK/src"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/src/payload.bin"
BYTES=$((SIZE_MIB * 1024 * 1024))

# This VM backs guest memory lazily: the first write to a page the guest has not used yet
# costs the kernel several times a normal page-cache write (seen: 0.35 to 1.3 s of system time
# for the same 1 GiB dd to tmpfs), which lands on whichever receiver writes first. So before
# each run, touch and free enough memory for the received file, for every peer alike.
prefault() {
    python3 -c "
import mmap
n = ($SIZE_MIB + 1024) << 20
m = mmap.mmap(-1, n)
for o in range(0, n, 4096):
    m[o] = 1
"
}

# The floor for a receiver: writing the file alone (dd, 1 MiB blocks), CPU s/GiB.
write_floor() {
    prefault
    /usr/bin/time -f '%U %S' -o "$WORK/dd.time" \
        dd if="$WORK/src/payload.bin" of="$WORK/floor.bin" bs=1M status=none
    rm -f "$WORK/floor.bin"
    read -r u s < "$WORK/dd.time"
    echo "scale=2; ($u + $s) * 1073741824 / $BYTES" | bc
}

# run PEER MODE RUN: one transfer; appends "recv_wall send_cpu recv_cpu send_rss recv_rss"
run_one() {
    local peer=$1 mode=$2 n=$3 code="$((n + 10))-guitarist-revenge"
    local out="$WORK/out-$peer-$mode-$n"
    mkdir -p "$out"
    local s_args r_args
    case "$peer" in
        ours|baseline|reference)
            local bin="$WORMHOLE_BIN"; [ "$peer" = reference ] && bin="$REF"
            [ "$peer" = baseline ] && bin="$BASELINE"
            local nl=""; [ "$mode" = relay ] && nl="--no-listen"
            s_args=("$bin" --relay-url "$MAILBOX" --transit-helper "$RELAY" send --hide-progress --no-qr $nl --code "$code" "$WORK/src/payload.bin")
            r_args=("$bin" --relay-url "$MAILBOX" --transit-helper "$RELAY" receive --hide-progress --accept-file $nl "$code")
            ;;
        wormhole-rs)
            local fr=""; [ "$mode" = relay ] && fr="--force-relay"
            s_args=("$RS" send --rendezvous-server "$MAILBOX" --relay-server "tcp://${RELAY#tcp:}" --no-qr $fr --code "$code" "$WORK/src/payload.bin")
            r_args=("$RS" receive --rendezvous-server "$MAILBOX" --relay-server "tcp://${RELAY#tcp:}" --noconfirm $fr --out-dir "$out" "$code")
            ;;
    esac
    prefault
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/s.time" "${s_args[@]}" >"$WORK/s.log" 2>&1 &
    local spid=$!
    sleep 0.3
    (cd "$out" && /usr/bin/time -f '%e %U %S %M' -o "$WORK/r.time" "${r_args[@]}" >"$WORK/r.log" 2>&1) || {
        echo "receiver failed ($peer $mode):" >&2; cat "$WORK/r.log" "$WORK/s.log" >&2; }
    wait "$spid" || { echo "sender failed ($peer $mode):" >&2; cat "$WORK/s.log" >&2; }
    if ! cmp -s "$WORK/src/payload.bin" "$out/payload.bin"; then
        echo "($peer $mode: received file differs)" >&2
    fi
    rm -rf "$out"
    local sw su ss sm rw ru rs rm_
    read -r sw su ss sm < <(tail -1 "$WORK/s.time")
    read -r rw ru rs rm_ < <(tail -1 "$WORK/r.time")
    echo "$rw $(echo "$su + $ss" | bc) $(echo "$ru + $rs" | bc) $sm $rm_"
}

echo "writing the file alone (dd into $(dirname "$WORK")): $(write_floor) CPU s/GiB"
printf '\n%-12s %-7s %9s %14s %14s %13s %13s\n' peer path "MB/s" "send CPU s/GiB" "recv CPU s/GiB" "send RSS MiB" "recv RSS MiB"
# Runs interleave the peers (run 1 of each, then run 2 of each, …), so a slow phase of the
# machine hits every peer alike.
PEERS=()
for peer in ours baseline reference wormhole-rs; do
    [ -n "$ONLY" ] && [[ ",$ONLY," != *",$peer,"* ]] && continue
    [ "$peer" = baseline ] && [ -z "$BASELINE" ] && continue
    PEERS+=("$peer")
done
for mode in direct relay; do
    for peer in "${PEERS[@]}"; do : >"$WORK/results-$peer-$mode"; done
    for n in $(seq "$RUNS"); do
        for peer in "${PEERS[@]}"; do
            run_one "$peer" "$mode" "$n" >>"$WORK/results-$peer-$mode"
        done
    done
done
for peer in "${PEERS[@]}"; do
    for mode in direct relay; do
        # Median by receiver wall time.
        read -r w sc rc sm rm_ < <(sort -n "$WORK/results-$peer-$mode" | sed -n "$(((RUNS + 1) / 2))p")
        gib=$(echo "scale=6; $BYTES / 1073741824" | bc)
        printf '%-12s %-7s %9.0f %14.2f %14.2f %13.1f %13.1f\n' "$peer" "$mode" \
            "$(echo "$BYTES / 1000000 / $w" | bc -l)" \
            "$(echo "$sc / $gib" | bc -l)" "$(echo "$rc / $gib" | bc -l)" \
            "$(echo "$sm / 1024" | bc -l)" "$(echo "$rm_ / 1024" | bc -l)"
    done
done
