"""A Dilation peer on the reference library (magic-wormhole 0.24.0 + noiseprotocol 0.3.1)
for tests/tests/dilation.rs. It reports on stdout, one JSON object per line.

    ref_dilate.py MAILBOX_URL APPID (--code CODE | --allocate) [--relay tcp:H:P]
                  [--no-listen] [--ping-interval S] [--crc32] SCENARIO [ARGS]

Every scenario prints {"code": ...} once the code is known, {"status": ...} for each
status update whose peer connection changed, and {"dilated": true} once dilated.

Scenarios:
  serve       listen for "echo" (every record written back as one record) and "sink"
              (prints {"sink": SCID, "bytes": N, "sha256": HEX, "first": T, "last": T}
              when the peer closes it; T: Unix time of the first and last byte);
              runs until stdin closes, then closes the wormhole.
  client      open "late" at once and write b"sent before the listener"; then, once
              dilated, an "echo" subchannel: records of many sizes (empty and 1 MiB
              included), each compared with its echo; then 64 "echo" subchannels at once;
              prints {"ok": true} or {"error": ...}, then waits for stdin to close.
  send N      open "sink" and write N bytes (a counter pattern) with a streaming
              producer (each chunk begins with its index), then close it; prints
              {"sent": N, "sha256": HEX}; waits for stdin.
--crc32 reports "crc32" (CRC-32) instead of "sha256", for benchmarks.
"""

import hashlib
import json
import sys
import time
import zlib

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

import wormhole

SIZES = [0, 1, 5, 65509, 65510, 65519, 65520, 200000, 1 << 20, 0]


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def pattern(i, n):
    return bytes((i * 31 + j) % 256 for j in range(n)) if n < 4096 else (
        bytes((i * 31 + j) % 256 for j in range(256)) * (n // 256 + 1))[:n]


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


CRC32 = False


class Check:
    """SHA-256, or CRC-32 with --crc32 (for benchmarks: much cheaper)."""

    def __init__(self):
        self.h = None if CRC32 else hashlib.sha256()
        self.crc = 0

    def update(self, data):
        if CRC32:
            self.crc = zlib.crc32(data, self.crc)
        else:
            self.h.update(data)

    def result(self):
        return ("crc32", "%08x" % self.crc) if CRC32 else ("sha256", self.h.hexdigest())


class Sink(protocol.Protocol):
    def connectionMade(self):
        self.h = Check()
        self.n = 0
        self.first = self.last = 0.0

    def dataReceived(self, data):
        if self.n == 0:
            self.first = time.time()
        self.h.update(data)
        self.n += len(data)
        self.last = time.time()

    def connectionLost(self, reason):
        key, digest = self.h.result()
        out({"sink": self.transport._scid, "bytes": self.n, key: digest,
             "first": self.first, "last": self.last})


class Collect(protocol.Protocol):
    """Records as they arrive, for the client scenario."""

    def connectionMade(self):
        self.records = []
        self.waiting = None

    def dataReceived(self, data):
        self.records.append(data)
        if self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(None)

    def next(self):
        if self.records:
            return defer.succeed(self.records.pop(0))
        self.waiting = defer.Deferred()
        return self.waiting.addCallback(lambda _: self.records.pop(0))


@implementer(IPushProducer)
class Pump:
    CHUNK = 65510

    def __init__(self, transport, total, done):
        self.t, self.left, self.done = transport, total, done
        self.paused = True
        self.h = Check()
        self.index = 0
        self.block = bytes(i % 251 for i in range(self.CHUNK * 4))
        self.offset = 0

    def resumeProducing(self):
        if self.paused:
            self.paused = False
            reactor.callLater(0, self.run)

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.paused = True

    def run(self):
        for _ in range(64):
            if self.paused or self.left == 0:
                break
            n = min(self.CHUNK, self.left)
            start = self.offset % (self.CHUNK * 3)
            # Each chunk begins with its index: swapped, lost or repeated chunks change
            # the digest.
            data = self.index.to_bytes(8, "little") + self.block[start + 8:start + n]
            data = data[:n]
            self.index += 1
            self.offset += n
            self.left -= n
            self.h.update(data)
            self.t.write(data)
        if self.left == 0:
            if self.done is not None:
                d, self.done = self.done, None
                d.callback(self.h.result())
        elif not self.paused:
            reactor.callLater(0, self.run)


class F(protocol.Factory):
    def __init__(self, cls):
        self.cls = cls

    def buildProtocol(self, addr):
        p = self.cls()
        p.factory = self
        return p


def stdin_closed():
    d = defer.Deferred()

    class In(protocol.Protocol):
        def connectionLost(self, reason):
            d.callback(None)

    from twisted.internet import stdio
    stdio.StandardIO(In())
    return d


@defer.inlineCallbacks
def client(dw):
    late = yield dw.connector_for("late").connect(F(Collect))
    late.transport.write(b"sent before the listener")
    yield dw.when_dilated()
    p = yield dw.connector_for("echo").connect(F(Collect))
    for i, n in enumerate(SIZES):
        m = pattern(i, n)
        p.transport.write(m)
        back = yield p.next()
        if back != m:
            raise Exception("echo %d of %d bytes came back as %d bytes" % (i, n, len(back)))
    p.transport.loseConnection()
    many = []
    for i in range(64):
        q = yield dw.connector_for("echo").connect(F(Collect))
        q.transport.write(b"subchannel %d" % i)
        many.append((i, q))
    for i, q in many:
        back = yield q.next()
        if back != b"subchannel %d" % i:
            raise Exception("subchannel %d echoed %r" % (i, back))
        q.transport.loseConnection()


@defer.inlineCallbacks
def main(argv):
    args = list(argv)
    url, appid = args.pop(0), args.pop(0)
    code = relay = None
    no_listen = False
    ping = None
    while args and args[0].startswith("--"):
        a = args.pop(0)
        if a == "--code":
            code = args.pop(0)
        elif a == "--allocate":
            code = None
        elif a == "--relay":
            relay = args.pop(0)
        elif a == "--no-listen":
            no_listen = True
        elif a == "--ping-interval":
            ping = float(args.pop(0))
        elif a == "--crc32":
            global CRC32
            CRC32 = True
    scenario = args.pop(0)
    w = wormhole.create(appid, url, reactor, dilation=True)
    if code:
        w.set_code(code)
    else:
        w.allocate_code()
    code = yield w.get_code()
    out({"code": code})
    last = [None]

    def status(st):
        pc = repr(st.peer_connection)
        if pc != last[0]:
            last[0] = pc
            out({"status": pc, "generation": st.generation, "t": time.time()})

    kw = {"transit_relay_location": relay, "no_listen": no_listen, "on_status_update": status}
    if ping is not None:
        kw["ping_interval"] = ping
    dw = w.dilate(**kw)
    ended = stdin_closed()
    if scenario == "serve":
        dw.listener_for("echo").listen(F(Echo))
        dw.listener_for("sink").listen(F(Sink))
        yield dw.when_dilated()
        out({"dilated": True})
    elif scenario == "client":
        try:
            yield client(dw)
            out({"ok": True})
        except Exception as e:
            out({"error": str(e)})
    elif scenario == "send":
        total = int(args.pop(0))
        yield dw.when_dilated()
        out({"dilated": True})
        p = yield dw.connector_for("sink").connect(F(protocol.Protocol))
        done = defer.Deferred()
        pump = Pump(p.transport, total, done)
        p.transport.registerProducer(pump, True)
        pump.resumeProducing()
        key, digest = yield done
        p.transport.unregisterProducer()
        p.transport.loseConnection()
        out({"sent": total, key: digest})
    yield ended
    try:
        yield w.close()
    except Exception as e:
        out({"close": str(e)})


def run():
    def go():
        d = main(sys.argv[1:])

        def fail(f):
            out({"error": f.getErrorMessage()})
        d.addErrback(fail)
        d.addBoth(lambda _: reactor.stop())
    reactor.callWhenRunning(go)
    reactor.run()


if __name__ == "__main__":
    run()
