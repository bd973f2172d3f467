"""Twisted flow control on Dilation subchannels, between two of our wormholes in one
reactor (run by test_dilation.py):

    python twisted_dilation.py RELAY_URL

The receiving protocol calls ``transport.pauseProducing()`` at once; the sender streams
64 MiB from a streaming producer registered with ``registerProducer(p, True)``. While the
receiver is paused, the sender's producer must be paused by the transport with far less
than the stream written; after ``resumeProducing()`` everything arrives, in order, one
``dataReceived`` per ``write``. Prints one JSON line with what it saw; exits 1 on failure.
"""

import hashlib
import json
import sys

from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

import wormhole

APPID = "example.com/wormhole-python-tests/twisted-dilation"
CHUNK = 65536
TOTAL = 64 << 20


class Receiver(protocol.Protocol):
    def connectionMade(self):
        self.transport.pauseProducing()
        self.records = 0
        self.bytes = 0
        self.h = hashlib.sha256()
        self.sizes_ok = True
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.records += 1
        self.bytes += len(data)
        self.sizes_ok = self.sizes_ok and len(data) == CHUNK
        self.h.update(data)
        if self.bytes == TOTAL:
            self.done.callback(None)


@implementer(IPushProducer)
class Pump:
    def __init__(self, reactor, transport):
        self.reactor, self.t = reactor, transport
        self.sent = 0
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.h = hashlib.sha256()
        self.finished = defer.Deferred()
        reactor.callLater(0, self.run)

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.resumes += 1
        if self.paused:
            self.paused = False
            self.reactor.callLater(0, self.run)

    def stopProducing(self):
        self.paused = True

    def run(self):
        for _ in range(16):
            if self.paused or self.sent >= TOTAL:
                break
            i = self.sent // CHUNK
            data = i.to_bytes(8, "big") * (CHUNK // 8)
            self.h.update(data)
            self.sent += CHUNK
            self.t.write(data)
        if self.sent >= TOTAL:
            if not self.finished.called:
                self.finished.callback(None)
        elif not self.paused:
            self.reactor.callLater(0, self.run)


def sleep(reactor, s):
    return task.deferLater(reactor, s, lambda: None)


@defer.inlineCallbacks
def main(reactor, relay_url):
    a = wormhole.create(APPID, relay_url, reactor, dilation=True)
    b = wormhole.create(APPID, relay_url, reactor, dilation=True)
    a.allocate_code()
    b.set_code((yield a.get_code()))
    da, db = a.dilate(), b.dilate()
    receivers = []

    class F(protocol.Factory):
        def buildProtocol(self, addr):
            p = Receiver()
            p.factory = self
            receivers.append(p)
            return p

    yield db.listener_for("bulk").listen(F())
    yield da.when_dilated()
    sender = yield da.connector_for("bulk").connect(protocol.Factory.forProtocol(protocol.Protocol))
    pump = Pump(reactor, sender.transport)
    sender.transport.registerProducer(pump, True)
    # The receiver does not read: the sender must be held back well short of the stream.
    for _ in range(100):
        yield sleep(reactor, 0.1)
        if pump.paused and receivers:
            break
    yield sleep(reactor, 1.0)
    seen = {
        "paused_while_receiver_paused": pump.paused,
        "sent_while_paused": pump.sent,
        "delivered_while_paused": receivers[0].records if receivers else None,
    }
    r = receivers[0]
    r.transport.resumeProducing()
    yield r.done
    yield pump.finished
    sender.transport.unregisterProducer()
    sender.transport.loseConnection()
    seen.update(
        {
            "records": r.records,
            "bytes": r.bytes,
            "sizes_ok": r.sizes_ok,
            "digest_ok": r.h.hexdigest() == pump.h.hexdigest(),
            "pauses": pump.pauses,
            "resumes": pump.resumes,
        }
    )
    print(json.dumps(seen))
    yield a.close()
    yield b.close()
    ok = (
        seen["paused_while_receiver_paused"]
        and seen["sent_while_paused"] < TOTAL // 2
        and seen["delivered_while_paused"] == 0
        and r.records == TOTAL // CHUNK
        and r.sizes_ok
        and seen["digest_ok"]
        and pump.resumes >= 1
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
