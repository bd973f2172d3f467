"""The seed's Twisted-friendly ``wormhole.transcribe`` flow, one scenario per process (a
Twisted reactor cannot be restarted).

    python transcribe_twisted.py SCENARIO RELAY_URL [CODE]

Each scenario runs under ``twisted.internet.task.react``, asserts as it goes, and prints
``SCENARIO OK`` at the end; test_transcribe_twisted.py runs them.
"""

import sys
import threading

from twisted.internet import defer, task, threads
from twisted.internet.defer import Deferred, inlineCallbacks

from wormhole.errors import WrongPasswordError
from wormhole.transcribe import Initiator, Receiver

APPID = "example.com/wormhole-python-tests/transcribe"
MAIN = threading.main_thread()


def deferred(x):
    """Each call of the Twisted flow returns a Deferred, fired in the reactor thread."""
    assert isinstance(x, Deferred), type(x)

    def check(res):
        assert threading.current_thread() is MAIN, threading.current_thread()
        return res

    return x.addBoth(check)


@inlineCallbacks
def both_twisted(reactor, url):
    """The seed's two snippets in one reactor, exactly as written there (no reactor=)."""
    i = Initiator(APPID, b"initiator's blob", rendezvous=url, timeout=20)
    code = yield deferred(i.start())
    assert code.split("-")[0].isdigit(), code
    r = Receiver(APPID, code, b"receiver's blob", rendezvous=url, timeout=20)
    theirs_r = deferred(r.finish())
    theirs_i = yield deferred(i.finish())
    assert theirs_i == b"receiver's blob", theirs_i
    assert (yield theirs_r) == b"initiator's blob"


@inlineCallbacks
def twisted_initiator_blocking_receiver(reactor, url):
    """The receiver is the blocking form in a thread (no reactor there: it blocks)."""
    i = Initiator(APPID, b"from twisted", rendezvous=url, timeout=20)
    code = yield deferred(i.start())
    blocking = threads.deferToThread(
        lambda: Receiver(APPID, code, b"from blocking", rendezvous=url, timeout=20).finish()
    )
    assert (yield deferred(i.finish())) == b"from blocking"
    assert (yield blocking) == b"from twisted"


@inlineCallbacks
def blocking_initiator_twisted_receiver(reactor, url):
    i = Initiator(APPID, b"from blocking", rendezvous=url, timeout=20)
    code = yield threads.deferToThread(i.start)
    blocking = threads.deferToThread(i.finish)
    r = Receiver(APPID, code, b"from twisted", rendezvous=url, reactor=reactor, timeout=20)
    assert (yield deferred(r.finish())) == b"from blocking"
    assert (yield blocking) == b"from twisted"


@inlineCallbacks
def wrong_code(reactor, url):
    i = Initiator(APPID, b"a", rendezvous=url, timeout=20)
    code = yield deferred(i.start())
    r = Receiver(APPID, code.split("-")[0] + "-wrong-code", b"b", rendezvous=url, timeout=20)
    for d in (deferred(i.finish()), deferred(r.finish())):
        try:
            yield d
        except WrongPasswordError:
            continue
        raise AssertionError("a wrong code must fail with WrongPasswordError")


@inlineCallbacks
def malformed_code(reactor, url):
    r = Receiver(APPID, "purple-sausages", b"b", rendezvous=url, timeout=20)
    try:
        yield deferred(r.finish())
    except Exception as e:
        assert type(e).__name__ == "KeyFormatError", repr(e)
        return
    raise AssertionError("a code without a nameplate must fail")


@inlineCallbacks
def initiator_for_reference(reactor, url):
    """Our Twisted initiator; the test runs the reference library as the receiver."""
    i = Initiator(APPID, b"from our twisted initiator", rendezvous=url, timeout=30)
    code = yield deferred(i.start())
    print("CODE", code, flush=True)
    theirs = yield deferred(i.finish())
    assert theirs == b"from the reference", theirs


@inlineCallbacks
def receiver_for_reference(reactor, url, code):
    r = Receiver(APPID, code, b"from our twisted receiver", rendezvous=url, timeout=30)
    theirs = yield deferred(r.finish())
    assert theirs == b"from the reference", theirs


SCENARIOS = {
    f.__name__: f
    for f in [
        both_twisted,
        twisted_initiator_blocking_receiver,
        blocking_initiator_twisted_receiver,
        wrong_code,
        malformed_code,
        initiator_for_reference,
        receiver_for_reference,
    ]
}


def main(reactor, name, url, *rest):
    d = defer.maybeDeferred(SCENARIOS[name], reactor, url, *rest)
    d.addTimeout(45, reactor)  # fail (non-zero exit) rather than hang
    d.addCallback(lambda _: print("%s OK" % name, flush=True))
    return d


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
