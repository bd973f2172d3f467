#!/usr/bin/env bash
# Run the fuzz targets with cargo-fuzz (libFuzzer, ASan) on nightly.
#
#   fuzz/run.sh [--secs N] [--jobs J] [--build-only] [TARGET ...]
#
# Every target (default: all of them, from `cargo fuzz list`) runs for N seconds (default
# 30) on the committed seeds (fuzz/corpus/TARGET, read only) plus a working corpus that
# grows between runs (fuzz/work/TARGET, gitignored). The last line of each run gives its
# executions per second and coverage; a summary table follows. A crash leaves its input
# in fuzz/artifacts/TARGET/: copy it to fuzz/regressions/TARGET/ with the fix, so every
# `cargo test` replays it. Exit status 1 if any target crashed.
#
# Installs cargo-fuzz (pinned) when missing; needs `cargo +nightly`.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=30
JOBS=1
BUILD_ONLY=0
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --build-only) BUILD_ONLY=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz/run.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi
# One build for all targets (ASan, debug assertions on); `fuzz run` below reuses it.
cargo +nightly fuzz build --features libfuzzer
[ "$BUILD_ONLY" = 1 ] && exit 0
mkdir -p fuzz/work fuzz/logs
summary=()
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/work/$t"
    log="fuzz/logs/$t.log"
    echo "fuzz/run.sh: $t for ${SECS}s" >&2
    parallel=()
    if [ "$JOBS" -gt 1 ]; then
        parallel=(-fork="$JOBS")
    fi
    if cargo +nightly fuzz run --features libfuzzer "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECS" "${parallel[@]}" -print_final_stats=1 \
        -timeout=20 -rss_limit_mb=2048 >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
        tail -40 "$log" >&2
    fi
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | tail -1 | awk '{print $2}')
    eps=$(grep -E '^stat::average_exec_per_sec' "$log" | tail -1 | awk '{print $2}')
    last=$(grep -E '#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$last")
    summary+=("$(printf '| %s | %s s | %s | %s | %s | %s | %s | %s |' "$t" "$SECS" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$status")")
done
echo
echo "| target | time | executions | exec/s | coverage (edges) | features | corpus | result |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
echo
echo "fuzz: $((${#TARGETS[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
