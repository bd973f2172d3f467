"""The code examples of the API documents, run against a local server.

    python seed_examples.py NAME RELAY_URL

The examples are copied from the seed documents (the magic-wormhole API and the older
wormhole-sync "transcribe" API) and changed only where they used Python 2 ``print``
statements (and one unbalanced parenthesis in the transcribe Initiator example). They
run with the free names the documents assume (``appid``, ``relay_url``, ``reactor``)
and a ``print`` that also records what was printed, so a peer can react to it. The
transcribe examples are run directly by test_seed_examples.py.
"""

import sys
import textwrap

from twisted.internet import defer, task

import wormhole

APPID = "example.com/wormhole-python-tests/seed"

QUICK = '''
import wormhole
from twisted.internet.defer import inlineCallbacks

@inlineCallbacks
def go():
    w = wormhole.create(appid, relay_url, reactor)
    w.allocate_code()
    code = yield w.get_code()
    print("code:", code)
    w.send_message(b"outbound data")
    inbound = yield w.get_message()
    yield w.close()
'''

DELEGATED = '''
class MyDelegate:
    def wormhole_got_code(self, code):
        print("code: %s" % code)
    def wormhole_got_message(self, msg): # called for each message
        print("got data, %d bytes" % len(msg))

w = wormhole.create(appid, relay_url, reactor, delegate=MyDelegate())
w.allocate_code()
'''

DEFERRED = '''
w = wormhole.create(appid, relay_url, reactor)
w.allocate_code()
def print_code(code):
    print("code: %s" % code)
w.get_code().addCallback(print_code)
def received(msg):
    print("got data, %d bytes" % len(msg))
w.get_message().addCallback(received) # gets exactly one message
'''

INPUT = '''
from wormhole import create, input_with_completion
w = create(appid, relay_url, reactor)
input_with_completion("Wormhole code:", w.input_code(), reactor)
d = w.get_code()
'''

WELCOME = '''
@inlineCallbacks
def go():
    w = wormhole.create(appid, relay_url, reactor)
    welcome = yield w.get_welcome()
    if "motd" in welcome:
        print(welcome["motd"])
    input_with_completion("Wormhole code:", w.input_code(), reactor)
    ...
'''


class Printed:
    """A ``print`` that writes through and lets the harness wait for a line."""

    def __init__(self):
        self.lines = []
        self.waiters = []

    def __call__(self, *args):
        line = " ".join(str(a) for a in args)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self.lines.append(line)
        for prefix, d in list(self.waiters):
            if line.startswith(prefix):
                self.waiters.remove((prefix, d))
                d.callback(line)

    def wait_for(self, prefix):
        for line in self.lines:
            if line.startswith(prefix):
                return defer.succeed(line)
        d = defer.Deferred()
        self.waiters.append((prefix, d))
        return d


def namespace(reactor, url, printed):
    from twisted.internet.defer import inlineCallbacks

    return {
        "appid": APPID,
        "relay_url": url,
        "reactor": reactor,
        "print": printed,
        "wormhole": wormhole,
        "inlineCallbacks": inlineCallbacks,
        "input_with_completion": wormhole.input_with_completion,
        "__name__": "seed_example",
    }


@defer.inlineCallbacks
def peer_from_printed_code(reactor, url, printed, prefix, send=b"peer data"):
    """The other side: waits for the example to print its code, then joins."""
    line = yield printed.wait_for(prefix)
    code = line.split()[-1]
    p = wormhole.create(APPID, url, reactor)
    p.set_code(code)
    if send is not None:
        p.send_message(send)
    got = yield p.get_message()
    return p, got


@defer.inlineCallbacks
def quick(reactor, url):
    printed = Printed()
    ns = namespace(reactor, url, printed)
    exec(textwrap.dedent(QUICK), ns)
    done = ns["go"]()
    p, got = yield peer_from_printed_code(reactor, url, printed, "code:")
    assert got == b"outbound data", got
    yield done  # the example's close() fired happily
    assert (yield p.close()) == "happy"


@defer.inlineCallbacks
def delegated(reactor, url):
    printed = Printed()
    ns = namespace(reactor, url, printed)
    exec(textwrap.dedent(DELEGATED), ns)
    line = yield printed.wait_for("code: ")
    p = wormhole.create(APPID, url, reactor)
    p.set_code(line.split()[-1])
    p.send_message(b"12345")
    yield printed.wait_for("got data, 5 bytes")
    yield p.get_verifier()
    ns["w"].close()
    yield p.close()


@defer.inlineCallbacks
def deferred(reactor, url):
    printed = Printed()
    ns = namespace(reactor, url, printed)
    exec(textwrap.dedent(DEFERRED), ns)
    line = yield printed.wait_for("code: ")
    p = wormhole.create(APPID, url, reactor)
    p.set_code(line.split()[-1])
    p.send_message(b"1234567")
    yield printed.wait_for("got data, 7 bytes")
    yield p.get_verifier()
    assert (yield ns["w"].close()) == "happy"
    assert (yield p.close()) == "happy"


@defer.inlineCallbacks
def _typed_code_peer(reactor, url, code, w_of):
    p = wormhole.create(APPID, url, reactor)
    p.set_code(code)
    p.send_message(b"typed")
    w = w_of()
    got = yield w.get_message()
    assert got == b"typed", got
    w.send_message(b"ack")
    assert (yield p.get_message()) == b"ack"
    yield p.close()
    yield w.close()


@defer.inlineCallbacks
def input(reactor, url):
    """stdin holds the code (the test writes it)."""
    printed = Printed()
    ns = namespace(reactor, url, printed)
    exec(textwrap.dedent(INPUT), ns)
    code = yield ns["d"]
    yield _typed_code_peer(reactor, url, code, lambda: ns["w"])


@defer.inlineCallbacks
def welcome(reactor, url):
    printed = Printed()
    ns = namespace(reactor, url, printed)
    exec(textwrap.dedent(WELCOME), ns)
    yield ns["go"]()
    # go() returned after the welcome; the example keeps no reference to its wormhole.


SCENARIOS = {f.__name__: f for f in [quick, delegated, deferred, input, welcome]}


def main(reactor, name, url):
    d = defer.maybeDeferred(SCENARIOS[name], reactor, url)
    d.addTimeout(30, reactor)  # fail (non-zero exit) rather than hang
    d.addCallback(lambda _: print("%s OK" % name, flush=True))
    return d


if __name__ == "__main__":
    task.react(main, sys.argv[1:3])
