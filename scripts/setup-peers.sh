#!/usr/bin/env bash
# Prepare the reference peers the interop tests and the demo run against (idempotent).
#
#  * ./.venv-ref (repository root, gitignored): a Python venv with the pinned reference
#    packages magic-wormhole 0.24.0, magic-wormhole-mailbox-server 0.8.0 and
#    magic-wormhole-transit-relay 0.5.0. Left alone when it already holds those versions.
#  * ./.venv-fowl (gitignored): fowl 26.8.0 (`fowl`, `fowld`: TCP forwarding over Dilation,
#    the peer of `wormhole forward`) with every dependency pinned, in a venv of its own
#    (it brings its own magic-wormhole). Left alone when it already holds those versions.
#  * ./.tools/wormhole-rs: the Rust CLI wormhole-rs 0.8.1 (cargo install magic-wormhole-cli).
#  * ./.tools/wormhole-william: the Go CLI wormhole-william v1.0.8 (Go module proxy, with
#    gospake2 from Debian's package; see below).
#  * `ip` (Debian iproute2) and `unshare` (util-linux), needed to run the tests inside a
#    loopback-only network namespace, the SOCKS5 proxy `microsocks`, tor, strace, and
#    PostgreSQL 15 and HAProxy (multi-process server tests). Installed with apt-get only
#    when missing.
#
# Works on a fresh Debian machine as root with only the PyPI, crates.io, Go proxy and Debian registries
# reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="$ROOT/.venv-ref"
PINS=(
    "magic-wormhole==0.24.0"
    "magic-wormhole-mailbox-server==0.8.0"
    "magic-wormhole-transit-relay==0.5.0"
    # Dilation (the reference's `dilate` extra): Noise for its L2.
    "noiseprotocol==0.3.1"
)

log() { printf 'setup-peers: %s\n' "$*" >&2; }
die() { printf 'setup-peers: ERROR: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing $*, and apt-get is not available to install it"
    if [ "$(id -u)" -ne 0 ]; then
        die "missing $*: run this script as root (or install it: apt-get install $*)"
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# --- system tools -------------------------------------------------------------------------
command -v ip >/dev/null 2>&1 || apt_install iproute2
command -v unshare >/dev/null 2>&1 || apt_install util-linux
# A SOCKS5 proxy for tests/tests/socks5.rs (Debian's microsocks, pinned).
MICROSOCKS_DEB_VERSION="1.0.3-2"
[ -x /usr/bin/microsocks ] || apt_install "microsocks=$MICROSOCKS_DEB_VERSION"
# tor for tests/tests/tor.rs (Debian's package, pinned; the package's service is not started
# in a container, and the tests run their own tor with its network disabled).
TOR_DEB_VERSION="0.4.9.11-0+deb12u1"
[ -x /usr/bin/tor ] || [ -x /usr/sbin/tor ] || apt_install "tor=$TOR_DEB_VERSION"
# strace for the proxy leak tests (every connect() of our CLI goes to the proxy).
STRACE_DEB_VERSION="6.1-0.1"
command -v strace >/dev/null 2>&1 || apt_install "strace=$STRACE_DEB_VERSION"
# PostgreSQL 15 and HAProxy for the multi-process mailbox server tests (Debian's packages,
# pinned; tests/src/postgres.rs runs its own throwaway cluster and haproxy on free loopback
# ports). The packages' own services are not wanted: in a container policy-rc.d refuses to
# start them; elsewhere they are stopped right after the install.
POSTGRESQL_DEB_VERSION="15.18-0+deb12u1"
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    apt_install "postgresql-15=$POSTGRESQL_DEB_VERSION"
    invoke-rc.d postgresql stop >/dev/null 2>&1 || true
fi
HAPROXY_DEB_VERSION="2.6.12-1+deb12u4"
if [ ! -x /usr/sbin/haproxy ] && ! command -v haproxy >/dev/null 2>&1; then
    apt_install "haproxy=$HAPROXY_DEB_VERSION"
    invoke-rc.d haproxy stop >/dev/null 2>&1 || true
fi
command -v ip >/dev/null 2>&1 || die "'ip' is still missing after installing iproute2"
command -v unshare >/dev/null 2>&1 || die "'unshare' is still missing after installing util-linux"

# --- the reference venv -------------------------------------------------------------------
# Serialise concurrent runs (flock is part of util-linux, like unshare).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$ROOT/.venv-ref.lock"
    flock 9
fi

# venv_holds VENV PIN...: whether VENV's Python has exactly these NAME==VERSION pins.
venv_holds() {
    local venv="$1"
    shift
    "$venv/bin/python" - "$@" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    if version(name) != want:
        sys.exit(1)
PY
}

# ensure_venv VENV CHECK LABEL PIN...: VENV holds LABEL (CHECK, a function of no argument,
# says whether it does); otherwise it is (re)created from the system Python with PIN...
ensure_venv() {
    local venv="$1" check="$2" label="$3"
    shift 3
    if "$check"; then
        log "$venv already holds $label"
        return
    fi
    PYTHON="${PYTHON:-python3}"
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        apt_install python3 python3-venv
        PYTHON=python3
    fi
    # Debian ships venv/ensurepip separately (python3-venv).
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    if [ -e "$venv" ]; then
        log "recreating $venv (missing or wrong versions)"
        rm -rf "$venv"
    fi
    log "creating $venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "$@"
    "$check" || die "$venv does not hold $* after pip install"
    log "installed $label into $venv"
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/twist" ] && [ -x "$VENV/bin/wormhole" ] || return 1
    venv_holds "$VENV" "${PINS[@]}"
}
ensure_venv "$VENV" venv_ok "${PINS[*]}" "${PINS[@]}"

# --- fowl, the peer of `wormhole forward` --------------------------------------------------
# fowl 26.8.0 and its whole dependency tree, pinned (as resolved on Debian 12's Python 3.11).
FOWL_VENV="$ROOT/.venv-fowl"
FOWL_PINS=(
    "fowl==26.8.0"
    "attrs==26.1.0" "autobahn==26.11.1" "Automat==25.4.16" "cbor2==6.3.0" "cffi==2.1.1"
    "click==8.5.1" "constantly==23.10.4" "cryptography==50.0.2" "humanize==4.17.0"
    "hyperlink==21.0.0" "idna==3.21" "Incremental==24.11.0" "ipaddress==1.0.23"
    "iterable-io==1.0.4" "magic-wormhole==0.24.0" "markdown-it-py==4.3.0" "mdurl==0.1.2"
    "msgpack==1.2.4" "noiseprotocol==0.3.1" "packaging==26.4" "pycparser==3.12"
    "Pygments==2.21.0" "PyNaCl==1.6.2" "pyOpenSSL==26.4.0" "qrcode==8.2" "rich==15.0.0"
    "service-identity==26.1.0" "six==1.17.0" "spake2==0.9" "tqdm==4.70.1" "Twisted==26.10.0"
    "txaio==26.6.1" "txtorcon==26.6.0" "typing_extensions==4.16.0" "ujson==6.1.0"
    "zipstream-ng==1.9.3" "zope.interface==8.7"
)
fowl_venv_ok() {
    [ -x "$FOWL_VENV/bin/python" ] && [ -x "$FOWL_VENV/bin/fowld" ] && [ -x "$FOWL_VENV/bin/fowl" ] || return 1
    venv_holds "$FOWL_VENV" "${FOWL_PINS[@]}"
}
ensure_venv "$FOWL_VENV" fowl_venv_ok "fowl 26.8.0" "${FOWL_PINS[@]}"

# --- the Rust peer: wormhole-rs (crates.io magic-wormhole-cli), pinned ------------------------
# Built once into ./.tools/wormhole-rs (gitignored); a few minutes on two cores.
WRS_VERSION=0.8.1
WRS_ROOT="$ROOT/.tools/wormhole-rs"
if [ -x "$WRS_ROOT/bin/wormhole-rs" ] && "$WRS_ROOT/bin/wormhole-rs" --version 2>/dev/null | grep -q " $WRS_VERSION\$"; then
    log "$WRS_ROOT holds wormhole-rs $WRS_VERSION"
else
    log "building wormhole-rs $WRS_VERSION (cargo install magic-wormhole-cli) into $WRS_ROOT"
    cargo install magic-wormhole-cli --version "$WRS_VERSION" --locked --root "$WRS_ROOT" --quiet
    "$WRS_ROOT/bin/wormhole-rs" --version | grep -q " $WRS_VERSION\$" || die "wormhole-rs $WRS_VERSION did not install"
fi

# --- the Go peer: wormhole-william (Go module proxy), pinned --------------------------------
# The proxy serves wormhole-william v1.0.8 itself but refuses its dependency
# salsa.debian.org/vasudev/gospake2 (host not on the proxy's allow-list). Debian packages
# that same library (golang-debian-vasudev-gospake2-dev 0.2.1, the upstream 2021 code), so
# we build v1.0.8 in a scratch module whose go.mod points gospake2 at the Debian sources.
WW_VERSION=v1.0.8
GOSPAKE2_DEB_VERSION=0.2.1-2
WW_ROOT="$ROOT/.tools/wormhole-william"
if [ -x "$WW_ROOT/bin/wormhole-william" ]; then
    log "$WW_ROOT holds wormhole-william"
else
    command -v go >/dev/null 2>&1 || die "no Go toolchain: needed to build wormhole-william"
    log "building wormhole-william $WW_VERSION into $WW_ROOT"
    rm -rf "$WW_ROOT/build" && mkdir -p "$WW_ROOT/build" "$WW_ROOT/bin"
    (
        cd "$WW_ROOT/build"
        if ! apt-get download "golang-debian-vasudev-gospake2-dev=$GOSPAKE2_DEB_VERSION" >&2; then
            [ "$(id -u)" -eq 0 ] || die "apt-get download gospake2 failed (run as root to update the index)"
            DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
            apt-get download "golang-debian-vasudev-gospake2-dev=$GOSPAKE2_DEB_VERSION" >&2
        fi
        dpkg-deb -x golang-debian-vasudev-gospake2-dev_*.deb deb
        SPAKE="$WW_ROOT/build/deb/usr/share/gocode/src/salsa.debian.org/vasudev/gospake2"
        printf 'module salsa.debian.org/vasudev/gospake2\n\ngo 1.13\n\nrequire golang.org/x/crypto v0.31.0\n' \
            > "$SPAKE/go.mod"
        printf 'module wwbuild\n\ngo 1.21\n\nrequire github.com/psanford/wormhole-william %s\n\nreplace salsa.debian.org/vasudev/gospake2 => %s\n' \
            "$WW_VERSION" "$SPAKE" > go.mod
        printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/psanford/wormhole-william"\n' > tools.go
        go mod tidy >&2
        go build -o "$WW_ROOT/bin/wormhole-william" github.com/psanford/wormhole-william >&2
    ) || die "could not build wormhole-william $WW_VERSION"
    "$WW_ROOT/bin/wormhole-william" --version >&2
fi
