#!/usr/bin/env bash
# Build libwormhole and install it into a prefix:
#
#   scripts/install-ffi.sh PREFIX [--debug]
#
# installs PREFIX/lib/libwormhole.{so,a}, PREFIX/include/wormhole.h,
# PREFIX/lib/pkgconfig/wormhole.pc and PREFIX/lib/cmake/wormhole/wormholeConfig*.cmake.
# Then: `cc app.c $(pkg-config --cflags --libs wormhole)` with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig,
# or CMake `find_package(wormhole)` + `target_link_libraries(app PRIVATE wormhole::wormhole)`
# with -DCMAKE_PREFIX_PATH=PREFIX. Release build unless --debug. Set CARGO_OFFLINE=1 to build
# with --offline.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
[ $# -ge 1 ] || { echo "usage: $0 PREFIX [--debug]" >&2; exit 2; }
PREFIX="$1"
mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"
PROFILE=release
CARGO_ARGS=(--release)
if [ "${2:-}" = --debug ]; then PROFILE=debug; CARGO_ARGS=(); fi
[ "${CARGO_OFFLINE:-}" = 1 ] && CARGO_ARGS+=(--offline)

cargo build -p wormhole-ffi --lib "${CARGO_ARGS[@]}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
OUT="$TARGET/$PROFILE"
VERSION="$(sed -n 's/^#define WH_VERSION "\(.*\)"$/\1/p' include/wormhole.h)"
[ -n "$VERSION" ] || { echo "install-ffi: no WH_VERSION in include/wormhole.h" >&2; exit 1; }

install -d "$PREFIX/lib/pkgconfig" "$PREFIX/lib/cmake/wormhole" "$PREFIX/include"
SHARED=libwormhole.so
[ "$(uname -s)" = Darwin ] && SHARED=libwormhole.dylib
install -m 0755 "$OUT/$SHARED" "$PREFIX/lib/$SHARED"
install -m 0644 "$OUT/libwormhole.a" "$PREFIX/lib/libwormhole.a"
install -m 0644 include/wormhole.h "$PREFIX/include/wormhole.h"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@VERSION@|$VERSION|g" wormhole-ffi/pkgconfig/wormhole.pc.in \
    > "$PREFIX/lib/pkgconfig/wormhole.pc"
install -m 0644 wormhole-ffi/cmake/wormholeConfig.cmake "$PREFIX/lib/cmake/wormhole/"
sed -e "s|@VERSION@|$VERSION|g" wormhole-ffi/cmake/wormholeConfigVersion.cmake.in \
    > "$PREFIX/lib/cmake/wormhole/wormholeConfigVersion.cmake"
echo "install-ffi: installed libwormhole $VERSION ($PROFILE) into $PREFIX"
