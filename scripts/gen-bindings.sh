#!/usr/bin/env bash
# Generates the Kotlin and Swift sources of libwormhole's uniffi layer from the built
# library, with the workspace's pinned uniffi-bindgen (bindings/uniffi-bindgen):
#
#   scripts/gen-bindings.sh           # regenerate bindings/kotlin and bindings/swift
#   scripts/gen-bindings.sh --check   # regenerate into a temporary directory and fail if
#                                     # the committed sources differ (CI's drift check)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1

cargo build -q -p wormhole-ffi -p uniffi-bindgen
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
LIB="$TARGET/debug/libwormhole.so"
BINDGEN="$TARGET/debug/uniffi-bindgen"

OUT="$ROOT"
if [ "$CHECK" = 1 ]; then
    OUT="$(mktemp -d)"
    trap 'rm -rf "$OUT"' EXIT
fi
KOTLIN="$OUT/bindings/kotlin/src/main/kotlin"
SWIFT="$OUT/bindings/swift/Sources"
mkdir -p "$KOTLIN" "$SWIFT/Wormhole" "$SWIFT/WormholeFFI"
"$BINDGEN" generate --library "$LIB" --language kotlin --no-format --out-dir "$KOTLIN" >/dev/null
SWIFT_TMP="$(mktemp -d)"
"$BINDGEN" generate --library "$LIB" --language swift --no-format --out-dir "$SWIFT_TMP" >/dev/null
# Swift package layout: the Swift sources, and the system-library module (header and
# module map, linking libwormhole) that the Swift code imports.
mv "$SWIFT_TMP/Wormhole.swift" "$SWIFT/Wormhole/Wormhole.swift"
mv "$SWIFT_TMP/WormholeFFI.h" "$SWIFT/WormholeFFI/WormholeFFI.h"
cat >"$SWIFT/WormholeFFI/module.modulemap" <<'MAP'
module WormholeFFI {
    header "WormholeFFI.h"
    link "wormhole"
    export *
}
MAP
rm -rf "$SWIFT_TMP"

if [ "$CHECK" = 1 ]; then
    status=0
    for d in bindings/kotlin/src/main/kotlin bindings/swift/Sources; do
        diff -ru "$ROOT/$d" "$OUT/$d" || status=1
    done
    if [ "$status" != 0 ]; then
        echo "gen-bindings: the committed bindings differ from the generated ones: run scripts/gen-bindings.sh" >&2
        exit 1
    fi
    echo "gen-bindings: Kotlin and Swift bindings are up to date"
fi
