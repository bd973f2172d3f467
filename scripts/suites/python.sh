#!/usr/bin/env bash
# Test suite hook for the Python module (bindings/python), called by scripts/test.sh.
#
#   scripts/suites/python.sh prepare   # network available: fresh ./.venv-py with pinned
#                                      # tools, build the abi3 wheel with maturin, install it
#   scripts/suites/python.sh run       # inside the loopback-only namespace: pytest
#
# `run` needs WORMHOLE_REF_VENV (the reference peers; never installed into .venv-py, which
# would clash: both packages install a module named `wormhole`).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
VENV="$ROOT/.venv-py"
VENV_MIN="$ROOT/.venv-py39"
PY_PINS=(
    "maturin==1.16.0"
    "pytest==9.2.0"
    "pytest-asyncio==1.5.0"
    "twisted==26.10.0"
    "mypy==2.4.1"
)
WHEEL_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/wheels-py"
case "$WHEEL_DIR" in /*) ;; *) WHEEL_DIR="$ROOT/$WHEEL_DIR" ;; esac

log() { printf 'suite python: %s\n' "$*" >&2; }

prepare() {
    local python="${PYTHON:-python3}"
    log "fresh venv $VENV ($("$python" --version 2>&1))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PINS[@]}"
    rm -rf "$WHEEL_DIR"
    log "maturin build (debug profile; abi3 wheel for CPython >= 3.9)"
    (cd bindings/python && "$VENV/bin/maturin" build -q -i "$VENV/bin/python" -o "$WHEEL_DIR")
    local wheels=("$WHEEL_DIR"/*.whl)
    [ ${#wheels[@]} -eq 1 ] || { log "expected one wheel in $WHEEL_DIR"; exit 1; }
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "${wheels[0]}"
    log "installed $(basename "${wheels[0]}")"
    # The same abi3 wheel in the oldest supported CPython (3.9), when one is available;
    # test_min_python.py smoke-tests it there (and skips without it).
    rm -rf "$VENV_MIN"
    local min
    if min="$(find_min_python)"; then
        log "abi3 check venv $VENV_MIN ($("$min" --version 2>&1))"
        "$min" -m venv "$VENV_MIN"
        "$VENV_MIN/bin/pip" install -q --disable-pip-version-check --no-deps --no-index "${wheels[0]}"
    else
        log "no CPython 3.9 found (set PYTHON_MIN): the minimum-version smoke test will be skipped"
    fi
}

find_min_python() {
    local c
    for c in "${PYTHON_MIN:-}" python3.9 "$HOME"/.pyenv/versions/3.9*/bin/python3.9; do
        [ -n "$c" ] || continue
        if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 9)' >/dev/null 2>&1; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

run() {
    [ -x "$VENV/bin/python" ] || { log "missing $VENV: run '$0 prepare' first"; exit 1; }
    : "${WORMHOLE_REF_VENV:?WORMHOLE_REF_VENV must point at the reference peers venv}"
    # Run from the tests directory so `import wormhole` is the installed wheel, never
    # the source tree.
    cd bindings/python/tests
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 prepare|run [pytest args]" >&2; exit 2 ;;
esac
