#!/usr/bin/env python3
"""Write the seed corpus, fuzz/corpus/TARGET/NAME, from PROTOCOL.md's transcripts (§12) and
the shapes the interop tests exchange. Deterministic: run it again after changing it and
commit what changes. Run: python3 fuzz/seed.py"""
import hashlib, io, json, os, zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FF = b"\xff"  # the piece separator of the multi-frame targets


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


PAKE = "7b2270616b655f7631223a202235330000000000000000000000000000000000000000000000000000000000000000227d"
server_frames = [
    {"welcome": {"motd": "hello from test", "your-address": {"port": 52352, "ipv4": "127.0.0.1"}}, "type": "welcome", "server_tx": 1795354269.490503},
    {"welcome": {"error": "go away"}, "type": "welcome"},
    {"id": "8ec1", "type": "ack", "server_tx": 1795354269.5075562},
    {"mailbox": "2lbdfy7pfg32a", "type": "claimed", "server_tx": 1795354269.555229},
    {"side": "4a026c08fb", "phase": "pake", "body": PAKE, "server_rx": 1795354269.5794468, "id": "26b2", "type": "message", "server_tx": 1795354269.58},
    {"side": "19f76d64db", "phase": "version", "body": "39ebffe29676", "server_rx": 1.0, "id": None, "type": "message"},
    {"type": "released", "server_tx": 1.5},
    {"type": "closed"},
    {"nameplates": [{"id": "7"}, {"id": "12"}], "type": "nameplates"},
    {"nameplate": "7", "type": "allocated"},
    {"pong": 7, "type": "pong"},
    {"error": "crowded", "orig": {"type": "claim", "nameplate": "7"}, "type": "error"},
    {"type": "future-thing", "x": [1, 2]},
]
for f in server_frames:
    put("server_frame", json.dumps(f))

client_frames = [
    {"appid": "lothar.com/wormhole/text-or-file-xfer", "side": "4a026c08fb", "client_version": ["python", "0.24.0"], "id": "8ec1", "type": "bind"},
    {"nameplate": "7", "id": "80ac", "type": "claim"},
    {"mailbox": "2lbdfy7pfg32a", "id": "4074", "type": "open"},
    {"phase": "pake", "body": PAKE, "id": "26b2", "type": "add"},
    {"nameplate": "7", "id": "4d2a", "type": "release"},
    {"mailbox": "2lbdfy7pfg32a", "mood": "happy", "id": "f10a", "type": "close"},
    {"id": "0001", "type": "list"},
    {"id": "0002", "type": "allocate"},
    {"ping": 5, "id": "0003", "type": "ping"},
]
session = [json.dumps(f).encode() for f in client_frames]
put("client_frames", FF.join(session))
put("client_frames", FF.join(session[:1] + [b'{"type": "allocate"}', b'{"type": "list"}']))
put("client_frames", FF.join([session[0], session[1], session[2], session[3], session[5]]))
put("client_frames", b'{"type": "add", "phase": "0", "body": "00"}')
put("client_frames", FF.join([session[0], b'[1,2]', b'not json']))

# The schedule: mostly deliveries (ops 0-5 = (0..2)<<1|peer), sends, reconnects.
put("session_schedule", bytes([0, 1] * 12 + [8, 4, 104, 105, 0, 1] * 6 + [14, 15] + [0, 1] * 8))
put("session_schedule", bytes([0, 1] * 10 + [9, 3, 111, 110, 101] + [6, 7, 7, 6] + [0, 1] * 10))
put("session_schedule", bytes([0, 1] * 6 + [10]) + json.dumps(server_frames[4]).encode() + FF + bytes([0, 1] * 8))
put("session_schedule", bytes([12, 3, 0, 1] * 10))

for c in ["7-guitarist-revenge", "913-166532", "123-HTTHHHTTHTTHHTHH", "0-", "42", "7-", "7-gui",
          "7-guitarist-re", "5-foo-bar", "-x", "7 -a", "07-x", "١٢-x", "12,7,125", ""]:
    put("code", c)

for k in ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl0c19hX3Rlc3Rfa2V5X25vdF9hX3JlYWxfb25l me@host\n",
          "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=",
          "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t\tkey",
          "command=\"true\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG x",
          "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB a\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB b", ""]:
    put("ssh_key", k)

for p in ["127.0.0.1:1080", "socks5://proxy.example:1080", "socks5h://[::1]:9050/",
          "socks5://user:secret@h:1", "a:b:c@h:2", "u@h:1", "http://h:1", "h:0", "h :1", ""]:
    put("socks5_proxy", p)

put("transit_handshake", bytes([0x11]) + b"transit receiver 9d6a95c299fcedc91c5aa88d38237d932189f5c3e7ec4916cf2ca7d3badf5bbc ready\n\n")
put("transit_handshake", bytes([0x13]) + b"ok\ntransit sender b831c9a4530c2ad29ebec202ce9e053088998d2d98234a29b830ff06dfc5f851 ready\n\ngo\n")
put("transit_handshake", bytes([0x06]) + b"bad handshake\n")
put("transit_handshake", bytes([0x01]) + b"nevermind\n")

hints = {"abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}], "hints-v1": [
    {"type": "direct-tcp-v1", "priority": 0.0, "hostname": "192.0.2.2", "port": 33445},
    {"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 14001}]}]}
put("transit_hints", json.dumps(hints))
put("transit_hints", json.dumps({"hints-v1": [{"type": "tor-tcp-v1", "hostname": "x.onion", "port": 80}, {"type": "direct-tcp-v1", "hostname": "::1", "port": 70000}]}))
for h in ["tcp:127.0.0.1:4001", "tcp:[::1]:4001", "tcp:relay.example:4001:priority=1.5", "tcp:host", "udp:x:1"]:
    put("transit_hints", h)

put("record_opener", bytes([0, 20]) + b"hello, twenty bytes!" + bytes([0, 5]) + b"again")
put("record_opener", bytes([0, 3]) + b"abc" + bytes([3 * 10, 3]) + b"xyz")
put("record_opener", bytes([1, 4, 0, 0, 0, 0x3c]) + bytes([1, 4, 0xff, 0, 0, 0]) + bytes([2, 40]) + bytes(40))

for m in [{"offer": {"message": "hello world"}}, {"offer": {"file": {"filename": "hello.txt", "filesize": 20}}},
          {"offer": {"directory": {"mode": "zipfile/deflated", "dirname": "d", "zipsize": 100, "numbytes": 40, "numfiles": 2}}},
          {"answer": {"message_ack": "ok"}}, {"answer": {"file_ack": "ok"}}, {"transit": hints},
          {"error": "transfer rejected"}, {"error": {"nested": 1}}, {"app": "other"}]:
    put("transfer_message", json.dumps(m))
put("transfer_message", "[1, 2]")

# transfer_machine schedules: (op, arg) byte pairs, see wormhole_fuzz::transfer_machine.
put("transfer_machine", bytes([0, 0, 2, 3, 2, 0]))               # send text, acked
put("transfer_machine", bytes([0, 3, 2, 5, 8, 1, 2, 1, 4, 0, 8, 2, 9, 1, 9, 7, 11, 0]))  # receive a file
put("transfer_machine", bytes([0, 2, 1, 0, 8, 0, 2, 5, 2, 4, 10, 0, 10, 3]))  # send a file
put("transfer_machine", bytes([0, 3, 2, 2, 5, 0, 0, 1, 3, 4, 1, 2, 3, 4, 7, 1, 0, 0]))  # reject, garbage, close


def zbytes(entries, deflate=False):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, data in entries:
            if data is None:
                z.writestr(zipfile.ZipInfo(name), b"")
            else:
                z.writestr(name, data)
    return b.getvalue()


put("zip_extract", zbytes([("a.txt", b"hello"), ("sub/b.txt", b"world" * 20)]))
put("zip_extract", zbytes([("a.txt", b"x" * 1000), ("empty/", None)], deflate=True))
put("zip_extract", zbytes([("../escape.txt", b"no")]))
put("zip_extract", zbytes([("/abs.txt", b"no")]))
put("zip_extract", zbytes([("big.bin", bytes(70000))], deflate=True))
link = zipfile.ZipInfo("link")
link.create_system = 3
link.external_attr = (0o120777 << 16)
b = io.BytesIO()
with zipfile.ZipFile(b, "w") as z:
    z.writestr(link, "/etc/passwd")
put("zip_extract", b.getvalue())

for line in ["please relay 33790d8a" + "0" * 56 + " for side b98a89a5d0a4c3d1", "please relay " + "a" * 64,
             "please relay short", "please relay " + "a" * 64 + " for side x"]:
    put("relay_handshake", line)

# dilation_wire: mode byte (0 body, 1 record, 2 connection, 3 endpoint), then the input.
for body in [{"type": "please", "side": "f8d6e0f4b1a2c3d4", "use-version": "ged"},
             {"type": "please", "side": "0123456789abcdef"},
             {"type": "connection-hints", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 41000},
                                                    {"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 4001}]}]},
             {"type": "reconnect"}, {"type": "reconnecting"}, {"type": "future"}]:
    put("dilation_wire", bytes([0]) + json.dumps(body).encode())
    put("dilation_wire", bytes([3]) + json.dumps(body).encode())
put("dilation_wire", bytes([3]) + json.dumps({"type": "please", "side": "0123456789abcdef", "use-version": "ged"}).encode()
    + FF + json.dumps({"type": "connection-hints", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 41000}]}).encode()
    + FF + json.dumps({"type": "reconnect"}).encode())
for rec in [b"\x00", b"\x01abcd", b"\x02abcd", b"\x03\x00\x00\x00\x01\x00\x00\x00\x00echo",
            b"\x04\x00\x00\x00\x01\x00\x00\x00\x01hello", b"\x05\x00\x00\x00\x01\x00\x00\x00\x02",
            b"\x06\x00\x00\x00\x02", b"\x07"]:
    put("dilation_wire", bytes([1]) + rec)
put("dilation_wire", bytes([2]) + b"Magic-Wormhole Dilation Handshake v1 Follower\n\n" + FF + b"\x00\x00\x00\x30" + bytes(48))
put("dilation_wire", bytes([6]) + b"Magic-Wormhole Dilation Handshake v1 Leader\n\n" + FF + b"\x00\x00\x00\x40" + bytes(64))
put("dilation_wire", bytes([10]) + b"ok\n" + FF + b"Magic-Wormhole Dilation Handshake v1 Follower\n\n")
put("dilation_wire", bytes([2]) + b"\xff\xff\xff\xff")

# forward_wire: fowl's 2-byte-length msgpack frames (as fowl 26.8.0 sends them), records
# separated by 0xff; one frame split over two records; a declared length past the data.
def fowl_frame(body):
    return len(body).to_bytes(2, "big") + body
OPEN = b"\x81\xabunique-name\xa3web"
YES = b"\x81\xa9connected\xc3"
NO = b"\x82\xa9connected\xc2\xa6reason\xa9No service"
REQ = b"\x83\xa4kind\xb0request-listener\xabunique-name\xa3web\xablisten-port\xcd\x1f\x90"
RESP = b"\x83\xa4kind\xb1listener-response\xabunique-name\xa3web\xa9listening\xc3"
for body in [OPEN, YES, NO, REQ, RESP]:
    put("forward_wire", fowl_frame(body))
put("forward_wire", fowl_frame(REQ)[:7] + FF + fowl_frame(REQ)[7:] + fowl_frame(RESP))
put("forward_wire", fowl_frame(OPEN) + b"raw bytes after the answer")
put("forward_wire", b"\x10\x00\x81")
