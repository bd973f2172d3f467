"""Twisted scenarios, one per process (a Twisted reactor cannot be restarted).

    python twisted_scenarios.py SCENARIO RELAY_URL

Each scenario runs under ``twisted.internet.task.react``, asserts as it goes, and
prints ``SCENARIO OK`` at the end. test_twisted.py runs them.
"""

import sys
import threading

from twisted.internet import defer, task
from twisted.internet.defer import inlineCallbacks

import wormhole
from wormhole.errors import (
    AlreadyChoseNameplateError,
    KeyFormatError,
    LonelyError,
    MustChooseNameplateFirstError,
    NoKeyError,
    WormholeClosed,
    WrongPasswordError,
)

APPID = "example.com/wormhole-python-tests/twisted"
MAIN = threading.main_thread()


def in_reactor_thread():
    assert threading.current_thread() is MAIN, threading.current_thread()


def checked(d):
    """Assert that ``d`` fires (either way) in the reactor thread."""

    def check(res):
        in_reactor_thread()
        return res

    return d.addBoth(check)


@defer.inlineCallbacks
def expect_failure(d, exc_type):
    try:
        yield d
    except exc_type:
        in_reactor_thread()
        return
    raise AssertionError("expected %s" % exc_type.__name__)


@inlineCallbacks
def deferred_all(reactor, url):
    a = wormhole.create(APPID, url, reactor, versions={"me": "a"})
    b = wormhole.create(APPID, url, reactor, versions={"me": "b"})
    assert isinstance(a, wormhole.DeferredWormhole)
    welcome = yield checked(a.get_welcome())
    assert isinstance(welcome, dict)
    a.allocate_code(3)
    code = yield checked(a.get_code())
    assert len(code.split("-")) == 4, code
    b.set_code(code)
    assert (yield checked(b.get_code())) == code
    ka = yield checked(a.get_unverified_key())
    kb = yield checked(b.get_unverified_key())
    assert ka == kb and len(ka) == 32
    va = yield checked(a.get_verifier())
    vb = yield checked(b.get_verifier())
    assert va == vb and len(va) == 32
    assert (yield checked(a.get_versions())) == {"me": "b"}
    assert (yield checked(b.get_versions())) == {"me": "a"}
    assert a.derive_key("p", 24) == b.derive_key("p", 24)
    d1, d2 = b.get_message(), b.get_message()
    a.send_message(b"one")
    a.send_message(b"two")
    assert (yield checked(d1)) == b"one"
    assert (yield checked(d2)) == b"two"
    b.send_message(b"back")
    assert (yield checked(a.get_message())) == b"back"
    assert (yield checked(a.close())) == "happy"
    assert (yield checked(b.close())) == "happy"
    yield expect_failure(a.get_message(), WormholeClosed)


@inlineCallbacks
def errors(reactor, url):
    # Wrong code: both sides fail with WrongPasswordError.
    a = wormhole.create(APPID, url, reactor)
    b = wormhole.create(APPID, url, reactor)
    a.allocate_code()
    code = yield a.get_code()
    b.set_code(code.split("-")[0] + "-not-it")
    yield expect_failure(b.get_verifier(), WrongPasswordError)
    yield expect_failure(a.get_verifier(), WrongPasswordError)
    yield expect_failure(a.close(), WrongPasswordError)
    yield expect_failure(b.close(), WrongPasswordError)
    # KeyFormatError, lonely close, NoKeyError.
    c = wormhole.create(APPID, url, reactor)
    try:
        c.set_code("x-y")
    except KeyFormatError:
        pass
    else:
        raise AssertionError("KeyFormatError expected")
    c.allocate_code()
    yield c.get_code()
    try:
        c.derive_key("p", 16)
    except NoKeyError:
        pass
    else:
        raise AssertionError("NoKeyError expected")
    yield expect_failure(c.close(), LonelyError)


@inlineCallbacks
def input_helper(reactor, url):
    a = wormhole.create(APPID, url, reactor)
    a.allocate_code()
    code = yield a.get_code()
    nameplate, words = code.split("-", 1)
    b = wormhole.create(APPID, url, reactor)
    h = b.input_code()
    try:
        h.get_word_completions("")
    except MustChooseNameplateFirstError:
        pass
    else:
        raise AssertionError("MustChooseNameplateFirstError expected")
    for _ in range(250):
        h.refresh_nameplates()
        yield task.deferLater(reactor, 0.02, lambda: None)
        if nameplate + "-" in h.get_nameplate_completions(""):
            break
    assert nameplate + "-" in h.get_nameplate_completions(nameplate)
    h.choose_nameplate(nameplate)
    try:
        h.refresh_nameplates()
    except AlreadyChoseNameplateError:
        pass
    else:
        raise AssertionError("AlreadyChoseNameplateError expected")
    yield checked(h.when_wordlist_is_available())
    assert h.get_word_completions("su") == {"supportive-", "surrender-", "suspicious-"}
    h.choose_words(words)
    assert (yield b.get_code()) == code
    a.send_message(b"hi")
    assert (yield b.get_message()) == b"hi"
    yield a.get_verifier()  # a has seen b too, so both closes are happy
    yield a.close()
    yield b.close()


class Recorder:
    """A delegate that records (event, value) pairs and checks the calling thread."""

    def __init__(self):
        self.events = []
        self.closed = defer.Deferred()
        self.got_code = defer.Deferred()
        self.got_message = defer.Deferred()

    def _rec(self, name, value):
        in_reactor_thread()
        self.events.append((name, value))

    def wormhole_got_welcome(self, welcome):
        self._rec("welcome", welcome)

    def wormhole_got_code(self, code):
        self._rec("code", code)
        self.got_code.callback(code)

    def wormhole_got_unverified_key(self, key):
        self._rec("unverified_key", key)

    def wormhole_got_verifier(self, verifier):
        self._rec("verifier", verifier)

    def wormhole_got_versions(self, versions):
        self._rec("versions", versions)

    def wormhole_got_message(self, msg):
        self._rec("message", msg)
        if not self.got_message.called:
            self.got_message.callback(msg)

    def wormhole_closed(self, result):
        self._rec("closed", result)
        self.closed.callback(result)


@inlineCallbacks
def delegated(reactor, url):
    da, db = Recorder(), Recorder()
    a = wormhole.create(APPID, url, reactor, delegate=da, versions={"v": 1})
    b = wormhole.create(APPID, url, reactor, delegate=db)
    assert isinstance(a, wormhole.DelegatedWormhole)
    a.allocate_code()
    code = yield da.got_code
    b.set_code(code)
    a.send_message(b"from a")
    assert (yield db.got_message) == b"from a"
    b.send_message(b"from b")
    assert (yield da.got_message) == b"from b"
    assert a.derive_key("k", 8) == b.derive_key("k", 8)
    assert a.close() is None
    b.close()
    assert (yield da.closed) == "happy"
    assert (yield db.closed) == "happy"
    names = [n for n, _ in db.events]
    assert names == [
        "welcome", "code", "unverified_key", "verifier", "versions", "message", "closed"
    ], names
    assert dict(db.events)["versions"] == {"v": 1}
    assert dict(da.events)["verifier"] == dict(db.events)["verifier"]
    # A lonely delegated wormhole reports the error instance to wormhole_closed.
    dc = Recorder()
    c = wormhole.create(APPID, url, reactor, delegate=dc)
    c.allocate_code()
    yield dc.got_code
    c.close()
    result = yield dc.closed
    assert isinstance(result, LonelyError), result


@inlineCallbacks
def input_with_completion_stdin(reactor, url):
    """input_with_completion reading the code from stdin (no terminal)."""
    a = wormhole.create(APPID, url, reactor)
    a.set_code("5-purple-sausages")
    b = wormhole.create(APPID, url, reactor)
    used = yield checked(
        wormhole.input_with_completion("Wormhole code: ", b.input_code(), reactor)
    )
    assert used is False
    assert (yield b.get_code()) == "5-purple-sausages"
    a.send_message(b"ok")
    assert (yield b.get_message()) == b"ok"
    yield a.get_verifier()
    yield a.close()
    yield b.close()


@inlineCallbacks
def file_transfer(reactor, url):
    """send_file / receive_offer / accept as Deferreds, progress in the reactor thread,
    and Deferred.cancel() cancelling a transfer."""
    import os
    import tempfile

    from wormhole.errors import TransferError

    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "payload.bin")
    data = os.urandom(1 << 20)
    with open(src, "wb") as f:
        f.write(data)
    inbox = os.path.join(tmp, "inbox")
    os.mkdir(inbox)
    a = wormhole.create(wormhole.TRANSFER_APPID, url, reactor)
    b = wormhole.create(wormhole.TRANSFER_APPID, url, reactor)
    a.allocate_code()
    code = yield checked(a.get_code())
    b.set_code(code)
    reports = []

    def progress(done, total):
        in_reactor_thread()
        reports.append((done, total))

    sending = checked(a.send_file(src, progress=progress))
    offer = yield checked(b.receive_offer())
    assert (offer.kind, offer.name, offer.size) == ("file", "payload.bin", len(data))
    path = yield checked(offer.accept(inbox, progress=progress))
    yield sending
    with open(path, "rb") as f:
        assert f.read() == data
    assert reports and reports[-1] == (len(data), len(data)), reports

    # Refusing to overwrite, then cancelling a big transfer with Deferred.cancel().
    sending = checked(a.send_file(src))
    offer = yield checked(b.receive_offer())
    yield expect_failure(offer.accept(inbox), TransferError)
    yield expect_failure(sending, TransferError)
    big = os.path.join(tmp, "big.bin")
    with open(big, "wb") as f:
        f.truncate(512 << 20)
    started = []
    sending = a.send_file(big)
    offer = yield checked(b.receive_offer())
    receiving = offer.accept(inbox, progress=lambda d, t: started.append(d))
    while not started:
        yield task.deferLater(reactor, 0.01, lambda: None)
    # Cancelling the sender: the receiver, reading, sees the connection end at once.
    sending.cancel()
    yield expect_failure(sending, defer.CancelledError)
    yield expect_failure(receiving, wormhole.errors.WormholeError)
    yield task.deferLater(reactor, 0.5, lambda: None)  # the cleanup runs off-thread
    assert sorted(os.listdir(inbox)) == ["payload.bin"], os.listdir(inbox)
    yield checked(a.close())
    yield checked(b.close())


SCENARIOS = {
    f.__name__: f
    for f in [
        deferred_all,
        errors,
        input_helper,
        delegated,
        input_with_completion_stdin,
        file_transfer,
    ]
}


def main(reactor, name, url):
    d = defer.maybeDeferred(SCENARIOS[name], reactor, url)
    d.addTimeout(30, reactor)  # fail (non-zero exit) rather than hang
    d.addCallback(lambda _: print("%s OK" % name, flush=True))
    return d


if __name__ == "__main__":
    task.react(main, sys.argv[1:3])
