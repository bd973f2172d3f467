#!/usr/bin/env bash
# Test suite hook for the fuzz targets (fuzz/), called by scripts/test.sh.
#
#   scripts/suites/fuzz.sh prepare   # network available: cargo-fuzz (pinned), the ASan +
#                                    # coverage build of every target on nightly
#   scripts/suites/fuzz.sh run       # inside the loopback-only namespace: a short campaign,
#                                    # WORMHOLE_FUZZ_SECS (default 30) seconds per target
#
# The committed corpus and regression inputs also run on stable in every `cargo test`
# (fuzz/tests/corpus.rs); this suite adds new inputs the way a campaign does. A crash
# fails the suite and leaves its input in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf 'suite fuzz: %s\n' "$*" >&2; }

prepare() {
    cargo +nightly --version >/dev/null 2>&1 || {
        log "cargo +nightly is missing (cargo fuzz needs it)"
        exit 1
    }
    # fuzz/run.sh installs its pinned cargo-fuzz when missing, then builds every target.
    log "cargo-fuzz and the fuzz build ($(cargo +nightly --version))"
    fuzz/run.sh --build-only
}

run() {
    CARGO_NET_OFFLINE=true fuzz/run.sh --secs "${WORMHOLE_FUZZ_SECS:-30}"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
