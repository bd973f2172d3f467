"""Delegated mode on asyncio: delegate methods run on the loop thread, in order."""

import asyncio
import threading

import pytest

import wormhole
from wormhole.errors import LonelyError, WrongPasswordError

T = 20


class Delegate:
    def __init__(self, loop):
        self.loop = loop
        self.events = []
        self.threads = set()
        self.code = loop.create_future()
        self.message = loop.create_future()
        self.closed = loop.create_future()

    def _rec(self, name, value):
        self.threads.add(threading.get_ident())
        self.events.append((name, value))

    def wormhole_got_welcome(self, welcome):
        self._rec("welcome", welcome)

    def wormhole_got_code(self, code):
        self._rec("code", code)
        self.code.set_result(code)

    def wormhole_got_unverified_key(self, key):
        self._rec("unverified_key", key)

    def wormhole_got_verifier(self, verifier):
        self._rec("verifier", verifier)

    def wormhole_got_versions(self, versions):
        self._rec("versions", versions)

    def wormhole_got_message(self, msg):
        self._rec("message", msg)
        if not self.message.done():
            self.message.set_result(msg)

    def wormhole_closed(self, result):
        self._rec("closed", result)
        self.closed.set_result(result)


@pytest.mark.asyncio
async def test_delegated_exchange(appid, relay_url):
    loop = asyncio.get_running_loop()
    da, db = Delegate(loop), Delegate(loop)
    welcomes = []
    a = wormhole.create(appid, relay_url, delegate=da, versions={"x": 1})
    b = wormhole.create(
        appid, relay_url, delegate=db, welcome_handler=welcomes.append
    )
    assert isinstance(a, wormhole.DelegatedWormhole)
    assert not hasattr(a, "get_message")
    a.allocate_code()
    code = await asyncio.wait_for(da.code, T)
    # set_code() reports the code at once; wait for b's welcome first so the order
    # checked below does not depend on how fast the server answers.
    for _ in range(2000):
        if welcomes:
            break
        await asyncio.sleep(0.01)
    b.set_code(code)
    a.send_message(b"m1")
    a.send_message(b"m2")
    assert await asyncio.wait_for(db.message, T) == b"m1"
    b.send_message(b"r1")
    assert await asyncio.wait_for(da.message, T) == b"r1"
    assert a.derive_key("p", 16) == b.derive_key("p", 16)
    # Let m2 arrive before closing.
    for _ in range(500):
        if [v for n, v in db.events if n == "message"] == [b"m1", b"m2"]:
            break
        await asyncio.sleep(0.01)
    assert a.close() is None
    b.close()
    assert await asyncio.wait_for(da.closed, T) == "happy"
    assert await asyncio.wait_for(db.closed, T) == "happy"

    names = [n for n, _ in db.events]
    assert names == [
        "welcome", "code", "unverified_key", "verifier", "versions",
        "message", "message", "closed",
    ], names
    ev = dict(db.events)
    assert ev["code"] == code
    assert ev["versions"] == {"x": 1}
    assert ev["verifier"] == dict(da.events)["verifier"]
    assert isinstance(ev["welcome"], dict) and welcomes == [ev["welcome"]]
    assert da.threads == db.threads == {threading.get_ident()}


@pytest.mark.asyncio
async def test_delegated_errors(appid, relay_url):
    loop = asyncio.get_running_loop()
    da, db = Delegate(loop), Delegate(loop)
    a = wormhole.create(appid, relay_url, delegate=da)
    b = wormhole.create(appid, relay_url, delegate=db)
    a.allocate_code()
    code = await asyncio.wait_for(da.code, T)
    b.set_code(code.split("-")[0] + "-bad-code")
    # Without close(): a WrongPasswordError shuts the wormhole down by itself.
    assert isinstance(await asyncio.wait_for(da.closed, T), WrongPasswordError)
    assert isinstance(await asyncio.wait_for(db.closed, T), WrongPasswordError)

    dc = Delegate(loop)
    c = wormhole.create(appid, relay_url, delegate=dc)
    c.allocate_code()
    await asyncio.wait_for(dc.code, T)
    c.close()
    assert isinstance(await asyncio.wait_for(dc.closed, T), LonelyError)


@pytest.mark.asyncio
async def test_delegate_exception_cancels(appid, relay_url, caplog):
    loop = asyncio.get_running_loop()

    class Bad(Delegate):
        def wormhole_got_welcome(self, welcome):
            raise ValueError("delegate bug")

    d = Bad(loop)
    w = wormhole.create(appid, relay_url, delegate=d)
    result = await asyncio.wait_for(d.closed, T)
    assert isinstance(result, wormhole.errors.WormholeCancelled), result
    assert "delegate method raised" in caplog.text
    del w


@pytest.mark.asyncio
async def test_partial_delegate(appid, relay_url):
    """A delegate may define only some methods (as in the seed's example)."""
    loop = asyncio.get_running_loop()
    got = loop.create_future()

    class OnlyCode:
        def wormhole_got_code(self, code):
            got.set_result(code)

    w = wormhole.create(appid, relay_url, delegate=OnlyCode())
    w.set_code("77-partial-delegate")
    assert await asyncio.wait_for(got, T) == "77-partial-delegate"
    w.close()


@pytest.mark.asyncio
async def test_delegated_input_code(appid, relay_url):
    """input_code() and its helper in delegated mode; the code arrives via the delegate."""
    loop = asyncio.get_running_loop()
    da, db = Delegate(loop), Delegate(loop)
    a = wormhole.create(appid, relay_url, delegate=da)
    b = wormhole.create(appid, relay_url, delegate=db)
    a.allocate_code()
    code = await asyncio.wait_for(da.code, T)
    nameplate, words = code.split("-", 1)
    h = b.input_code()
    for _ in range(250):
        h.refresh_nameplates()
        await asyncio.sleep(0.02)
        if nameplate + "-" in h.get_nameplate_completions(""):
            break
    assert nameplate + "-" in h.get_nameplate_completions(nameplate)
    h.choose_nameplate(nameplate)
    await asyncio.wait_for(h.when_wordlist_is_available(), T)
    first = words.split("-")[0]
    assert first + "-" in h.get_word_completions(first[:2])
    assert code.split("-", 1)[1] in h.get_word_completions(words[:-1])
    h.choose_words(words)
    assert await asyncio.wait_for(db.code, T) == code
    b.send_message(b"typed")
    assert await asyncio.wait_for(da.message, T) == b"typed"
    a.send_message(b"back")
    assert await asyncio.wait_for(db.message, T) == b"back"
    a.close()
    b.close()
    assert await asyncio.wait_for(da.closed, T) == "happy"
    assert await asyncio.wait_for(db.closed, T) == "happy"
