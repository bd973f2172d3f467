"""The seed document's Dilation example (bidirectional file transfer over the seed's
endpoints), run between two of our wormholes in one reactor.

    python seed_dilation_example.py RELAY_URL SOURCE_FILE DEST_DIR

The two protocols are the document's, changed only where they cannot run as written:
``def FileSendingProtocol(...)`` / ``def FileReceivingProtocol(...)`` are classes,
``_done`` takes ``self``, ``state`` is ``self.state``, ``protocols.basic`` is
``twisted.protocols.basic``, ``parse(data)`` reads JSON metadata, and
``protocol.ClientCreator`` (not a factory: endpoints call ``buildProtocol``) is a
factory that passes the same arguments. Both sides then use the control endpoint: each
writes ``ping`` and answers a ``ping`` with ``pong``; ``control: pong`` is printed.
"""

import json
import os
import sys

from twisted.internet import defer, protocol, task
from twisted.protocols import basic

import wormhole

APPID = "example.com/wormhole-python-tests/seed-dilation"
INITIAL, DATA = "initial", "data"
DEST = "."
received = defer.Deferred()


def parse(data):
    class Metadata:
        pass

    m = Metadata()
    m.filename = os.path.join(DEST, os.path.basename(json.loads(data)["filename"]))
    return m


# --- the document's example -----------------------------------------------------------
class FileSendingProtocol(protocol.Protocol):
    def __init__(self, metadata, filename):
        self.file_metadata = metadata
        self.file_name = filename

    def connectionMade(self):
        self.transport.write(self.file_metadata)
        sender = basic.FileSender()
        f = open(self.file_name, "rb")
        d = sender.beginFileTransfer(f, self.transport)
        d.addBoth(self._done, f)

    def _done(self, res, f):
        self.transport.loseConnection()
        f.close()


class ClientCreator(protocol.Factory):
    """``protocol.ClientCreator(reactor, cls, *args)`` as a factory."""

    def __init__(self, reactor, cls, *args):
        self.cls, self.args = cls, args

    def buildProtocol(self, addr):
        return self.cls(*self.args)


def _send(subchannel_client_ep, metadata, filename, reactor):
    f = ClientCreator(reactor, FileSendingProtocol, metadata, filename)
    return subchannel_client_ep.connect(f)


class FileReceivingProtocol(protocol.Protocol):
    state = INITIAL

    def dataReceived(self, data):
        if self.state == INITIAL:
            self.state = DATA
            metadata = parse(data)
            self.f = open(metadata.filename, "wb")
        else:
            # local file writes are blocking, so don't bother with IConsumer
            self.f.write(data)

    def connectionLost(self, reason):
        self.f.close()
        received.callback(None)


def _dilated(res):
    (control_channel_ep, subchannel_client_ep, subchannel_server_ep) = res
    f = protocol.Factory.forProtocol(FileReceivingProtocol)
    subchannel_server_ep.listen(f)
    return res


# --- the control channel ------------------------------------------------------------------
class Control(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"ping")

    def dataReceived(self, data):
        if data == b"ping":
            self.transport.write(b"pong")
        elif data == b"pong":
            print("control: pong")
            self.factory.done.callback(None)


def control_factory():
    f = protocol.Factory.forProtocol(Control)
    f.done = defer.Deferred()
    return f


@defer.inlineCallbacks
def main(reactor, relay_url, source, dest):
    global DEST
    DEST = dest
    sender = wormhole.create(APPID, relay_url, reactor, dilation=True)
    receiver = wormhole.create(APPID, relay_url, reactor, dilation=True)
    sender.allocate_code()
    receiver.set_code((yield sender.get_code()))

    receiver.dilate().addCallback(_dilated)
    (control_s, client_s, server_s) = yield sender.dilate()
    metadata = json.dumps({"filename": os.path.basename(source)}).encode()
    yield _send(client_s, metadata, source, reactor)
    yield received
    print("received %d bytes" % os.path.getsize(os.path.join(dest, os.path.basename(source))))

    control_r = list(receiver._dilated)[0]
    fs, fr = control_factory(), control_factory()
    yield defer.gatherResults([control_s.connect(fs), control_r.connect(fr)])
    yield defer.gatherResults([fs.done, fr.done])
    yield sender.close()
    yield receiver.close()


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
