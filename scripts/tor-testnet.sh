#!/usr/bin/env bash
# A private Tor network on 127.0.0.1 for the Tor tests (tests/tests/tor_network.rs), built
# from the facts in ../shared/TOR.md: 3 directory authorities (also relays), 1 exit,
# 2 middle relays and 2 clients, all real `tor` processes with `TestingTorNetwork 1`.
#
#   scripts/tor-testnet.sh start DIR PORTBASE   # build and start; prints "ready" when both
#                                               # clients have bootstrapped
#   scripts/tor-testnet.sh stop DIR             # kill every node
#
# Ports: PORTBASE+0..9 for the relays' ORPorts and DirPorts; client N (0, 1) has its SOCKS
# port at PORTBASE+20+2N and its control port (cookie auth) at PORTBASE+21+2N; client2 has
# only a SOCKS port, the default 127.0.0.1:9050 (for SOCKS-only mode). The clients
# map the names mailbox.tor.test and relay.tor.test to 127.0.0.1 (MapAddress), so servers
# on loopback are reachable through the exit.
#
# Run it only inside the loopback-only namespace: the exit would otherwise be a real exit.
set -euo pipefail

cmd="${1:-}"
DIR="${2:-}"
[ -n "$DIR" ] || { echo "usage: $0 start DIR PORTBASE | stop DIR" >&2; exit 2; }

stop() {
    for pid in "$DIR"/*/pid; do
        [ -f "$pid" ] && kill -9 "$(cat "$pid")" 2>/dev/null || true
    done
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start DIR PORTBASE | stop DIR" >&2; exit 2; }
BASE="${3:?PORTBASE}"
TOR="$(command -v tor || echo /usr/sbin/tor)"
GENCERT="$(command -v tor-gencert || echo /usr/bin/tor-gencert)"
mkdir -p "$DIR"
: >"$DIR/resolv.conf"
echo "nameserver 127.0.0.1" >"$DIR/resolv.conf"

# Authorities: identity keys (tor-gencert) and relay fingerprints, then the DirAuthority lines.
DIRAUTH=""
for i in 0 1 2; do
    n="auth$i"
    orport=$((BASE + i))
    dirport=$((BASE + 3 + i))
    mkdir -p "$DIR/$n/keys"
    chmod 700 "$DIR/$n"
    (cd "$DIR/$n/keys" && echo "" | "$GENCERT" --create-identity-key -m 12 \
        -a "127.0.0.1:$dirport" --passphrase-fd 0 >/dev/null 2>&1)
    v3=$(grep '^fingerprint ' "$DIR/$n/keys/authority_certificate" | awk '{print $2}')
    fp=$("$TOR" --list-fingerprint --DataDirectory "$DIR/$n" --ORPort "$orport" \
        --Nickname "$n" --quiet 2>/dev/null | tail -1 | awk '{$1=""; gsub(/ /,""); print}')
    DIRAUTH+="DirAuthority $n orport=$orport no-v2 v3ident=$v3 127.0.0.1:$dirport $fp"$'\n'
done

common() { # common NAME
    cat <<EOF
TestingTorNetwork 1
DataDirectory $DIR/$1
Nickname $1
PidFile $DIR/$1/pid
Log notice file $DIR/$1/notice.log
SafeLogging 0
ShutdownWaitLength 0
ClientUseIPv6 0
$DIRAUTH
EOF
}

relay() { # relay NAME ORPORT
    cat <<EOF
ORPort 127.0.0.1:$2
Address 127.0.0.1
AssumeReachable 1
AddressDisableIPv6 1
ContactInfo $1@tor.test
SocksPort 0
EOF
}

start_node() { # start_node NAME (torrc already written)
    mkdir -p "$DIR/$1"
    chmod 700 "$DIR/$1"
    "$TOR" -f "$DIR/$1/torrc" --RunAsDaemon 1 >/dev/null
}

for i in 0 1 2; do
    n="auth$i"
    { common "$n"; relay "$n" $((BASE + i)); cat <<EOF
DirPort 127.0.0.1:$((BASE + 3 + i))
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
TestingV3AuthVotingStartOffset 0
TestingDirAuthVoteExit *
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
AuthDirTestReachability 0
ExitPolicy reject *:*
EOF
    } >"$DIR/$n/torrc"
    start_node "$n"
done

mkdir -p "$DIR/exit0"
{ common exit0; relay exit0 $((BASE + 6)); cat <<EOF
ExitRelay 1
ExitPolicyRejectPrivate 0
ExitPolicyRejectLocalInterfaces 0
ExitPolicy accept 127.0.0.0/8:*,reject private:*,accept *:*
ServerDNSResolvConfFile $DIR/resolv.conf
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
ServerDNSAllowBrokenConfig 1
EOF
} >"$DIR/exit0/torrc"
start_node exit0

for i in 0 1; do
    n="middle$i"
    mkdir -p "$DIR/$n"
    { common "$n"; relay "$n" $((BASE + 7 + i)); echo "ExitRelay 0"; echo "ExitPolicy reject *:*"; } >"$DIR/$n/torrc"
    start_node "$n"
done

# Clients only once a consensus lists all six relays (TOR.md: earlier clients could not
# build circuits for minutes).
consensus_relays() {
    local out
    out=$(exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 3))" &&
        printf 'GET /tor/status-vote/current/consensus HTTP/1.0\r\n\r\n' >&3 &&
        timeout 5 cat <&3) 2>/dev/null || true
    printf '%s\n' "$out" | grep -c '^r ' || true
}
deadline=$((SECONDS + 120))
until [ "$(consensus_relays)" -ge 6 ]; do
    if [ $SECONDS -gt $deadline ]; then
        echo "tor-testnet: no consensus with 6 relays after 120 s" >&2
        stop
        exit 1
    fi
    sleep 1
done

for i in 0 1 2; do
    n="client$i"
    mkdir -p "$DIR/$n"
    if [ "$i" = 2 ]; then
        ports="SocksPort 127.0.0.1:9050"
    else
        ports="SocksPort 127.0.0.1:$((BASE + 20 + 2 * i))"$'\n'"ControlPort 127.0.0.1:$((BASE + 21 + 2 * i))"$'\n'"CookieAuthentication 1"
    fi
    { common "$n"; cat <<EOF
$ports
MapAddress mailbox.tor.test 127.0.0.1
MapAddress relay.tor.test 127.0.0.1
EOF
    } >"$DIR/$n/torrc"
    start_node "$n"
done

deadline=$((SECONDS + 120))
# The torrc lines a tor launched elsewhere (--launch-tor, WORMHOLE_TOR_LAUNCH_CONFIG) needs
# to join this network.
{
    echo "TestingTorNetwork 1"
    echo "ClientUseIPv6 0"
    printf '%s' "$DIRAUTH"
    echo "MapAddress mailbox.tor.test 127.0.0.1"
    echo "MapAddress relay.tor.test 127.0.0.1"
} >"$DIR/client.conf"

for i in 0 1 2; do
    until grep -q 'Bootstrapped 100%' "$DIR/client$i/notice.log" 2>/dev/null; do
        if [ $SECONDS -gt $deadline ]; then
            echo "tor-testnet: client$i did not bootstrap within 120 s" >&2
            tail -5 "$DIR/client$i/notice.log" >&2 || true
            stop
            exit 1
        fi
        sleep 0.5
    done
done
# Bootstrapped is not yet usable: the first exit circuit can still fail ("general SOCKS
# server failure") while the exit's descriptor spreads. Wait until a stream through each
# client's SOCKS port reaches a loopback listener (the probe's own) via the exit. (Not a
# relay's port: exits refuse streams to known relays' addresses and ports.)
probe_exit() { # probe_exit SOCKSPORT
    python3 - "$1" <<'PY'
import socket, sys
try:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        sys.exit(1)
    host = b"mailbox.tor.test"
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + port.to_bytes(2, "big"))
    reply = s.recv(10)
    sys.exit(0 if len(reply) >= 2 and reply[1] == 0 else 1)
except OSError:
    sys.exit(1)
PY
}
for socks in $((BASE + 20)) $((BASE + 22)) 9050; do
    until probe_exit "$socks"; do
        if [ $SECONDS -gt $deadline ]; then
            echo "tor-testnet: no exit stream through SOCKS port $socks within 120 s" >&2
            stop
            exit 1
        fi
        sleep 1
    done
done
echo ready
