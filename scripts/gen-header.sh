#!/usr/bin/env bash
# Regenerate include/wormhole.h from wormhole-ffi/src with the pinned cbindgen.
#
#   scripts/gen-header.sh           # rewrite include/wormhole.h
#   scripts/gen-header.sh --check   # fail (exit 1, with a diff) if the committed header drifted
#
# cbindgen is pinned to CBINDGEN_VERSION and installed on first use into .tools/cbindgen
# (gitignored) with `cargo install --locked`, which needs crates.io once; afterwards it
# works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
CBINDGEN_VERSION=0.29.2
TOOL_ROOT="$PWD/.tools/cbindgen"
CBINDGEN="$TOOL_ROOT/bin/cbindgen"
HEADER=include/wormhole.h

if ! [ -x "$CBINDGEN" ] || ! "$CBINDGEN" --version | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    if [ "${1:-}" = --install-only ] || [ "${1:-}" = "" ] || [ "${1:-}" = --check ]; then
        echo "gen-header: installing cbindgen $CBINDGEN_VERSION into $TOOL_ROOT" >&2
        cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --root "$TOOL_ROOT" >&2
    fi
fi
[ "${1:-}" = --install-only ] && exit 0

generate() {
    "$CBINDGEN" --quiet --config wormhole-ffi/cbindgen.toml --crate wormhole-ffi \
        --output "$1" wormhole-ffi
}

case "${1:-}" in
    --check)
        tmp="$(mktemp)"
        trap 'rm -f "$tmp"' EXIT
        generate "$tmp"
        if ! diff -u "$HEADER" "$tmp"; then
            echo "gen-header: $HEADER is out of date: run scripts/gen-header.sh and commit it" >&2
            exit 1
        fi
        echo "gen-header: $HEADER is up to date"
        ;;
    "")
        generate "$HEADER"
        echo "gen-header: wrote $HEADER"
        ;;
    *)
        echo "usage: $0 [--check|--install-only]" >&2
        exit 2
        ;;
esac
