"""Deferred mode on asyncio (``reactor=None``): every API function."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

import wormhole
from wormhole.errors import (
    KeyFormatError,
    LonelyError,
    NoKeyError,
    OnlyOneCodeError,
    WormholeClosed,
    WormholeError,
    WrongPasswordError,
)

T = 20  # seconds: generous upper bound for any single step on loopback


async def pair(appid, relay_url, versions_a=None, versions_b=None):
    a = wormhole.create(appid, relay_url, versions=versions_a)
    b = wormhole.create(appid, relay_url, versions=versions_b)
    a.allocate_code()
    code = await asyncio.wait_for(a.get_code(), T)
    b.set_code(code)
    return a, b, code


@pytest.mark.asyncio
async def test_full_exchange_every_getter(appid, relay_url):
    a, b, code = await pair(appid, relay_url, {"side": "a"}, {"side": "b"})
    assert code.split("-", 1)[0].isdigit() and len(code.split("-")) == 3

    welcome = await asyncio.wait_for(a.get_welcome(), T)
    assert isinstance(welcome, dict)
    assert await asyncio.wait_for(b.get_code(), T) == code

    ka = await asyncio.wait_for(a.get_unverified_key(), T)
    kb = await asyncio.wait_for(b.get_unverified_key(), T)
    assert isinstance(ka, bytes) and len(ka) == 32 and ka == kb

    va = await asyncio.wait_for(a.get_verifier(), T)
    vb = await asyncio.wait_for(b.get_verifier(), T)
    assert isinstance(va, bytes) and len(va) == 32 and va == vb

    assert await asyncio.wait_for(a.get_versions(), T) == {"side": "b"}
    assert await asyncio.wait_for(b.get_versions(), T) == {"side": "a"}

    k1 = a.derive_key("purpose-1", 16)
    assert k1 == b.derive_key("purpose-1", 16) and len(k1) == 16
    assert a.derive_key("purpose-2", 32) != a.derive_key("purpose-1", 32)

    # Several outstanding get_message() calls resolve in order.
    pending = [b.get_message() for _ in range(3)]
    for i in range(3):
        a.send_message(b"msg %d" % i)
    got = await asyncio.wait_for(asyncio.gather(*pending), T)
    assert got == [b"msg 0", b"msg 1", b"msg 2"]
    b.send_message(b"reply")
    assert await asyncio.wait_for(a.get_message(), T) == b"reply"

    assert await asyncio.wait_for(a.close(), T) == "happy"
    assert await asyncio.wait_for(b.close(), T) == "happy"
    # Getters after a happy close fail with WormholeClosed (not a WormholeError).
    with pytest.raises(WormholeClosed):
        await asyncio.wait_for(a.get_message(), T)
    assert not issubclass(WormholeClosed, WormholeError)


@pytest.mark.asyncio
async def test_verifier_matches_key(appid, relay_url):
    """The verifier is derived from the key the same way on both sides, and differs
    from the key itself."""
    a, b, _ = await pair(appid, relay_url)
    key = await asyncio.wait_for(a.get_unverified_key(), T)
    ver = await asyncio.wait_for(a.get_verifier(), T)
    assert ver != key and ver != hashlib.sha256(key).digest()
    assert await asyncio.wait_for(b.get_verifier(), T) == ver
    await asyncio.wait_for(asyncio.gather(a.close(), b.close()), T)


@pytest.mark.asyncio
async def test_offline_code_both_sides(appid, relay_url):
    a = wormhole.create(appid, relay_url)
    b = wormhole.create(appid, relay_url)
    a.set_code("913-166532")
    b.set_code("913-166532")
    a.send_message(b"x")
    assert await asyncio.wait_for(b.get_message(), T) == b"x"
    # close() is happy once this side has verified the peer.
    await asyncio.wait_for(a.get_verifier(), T)
    assert await asyncio.wait_for(a.close(), T) == "happy"
    assert await asyncio.wait_for(b.close(), T) == "happy"


@pytest.mark.asyncio
async def test_wrong_code(appid, relay_url):
    a = wormhole.create(appid, relay_url)
    b = wormhole.create(appid, relay_url)
    a.allocate_code()
    code = await asyncio.wait_for(a.get_code(), T)
    nameplate = code.split("-", 1)[0]
    b.set_code(nameplate + "-wrong-words")
    a.send_message(b"secret")
    with pytest.raises(WrongPasswordError):
        await asyncio.wait_for(b.get_message(), T)
    with pytest.raises(WrongPasswordError):
        await asyncio.wait_for(a.get_verifier(), T)
    with pytest.raises(WrongPasswordError):
        await asyncio.wait_for(a.close(), T)
    with pytest.raises(WrongPasswordError):
        await asyncio.wait_for(b.close(), T)


@pytest.mark.asyncio
async def test_key_format_error(appid, relay_url):
    w = wormhole.create(appid, relay_url)
    for bad in ["abc-purple-sausages", " 4-purple-sausages", "4-purple sausages", "-x"]:
        with pytest.raises(KeyFormatError):
            w.set_code(bad)
    assert issubclass(KeyFormatError, WormholeError)
    w.set_code("4-purple-sausages")
    with pytest.raises(OnlyOneCodeError):
        w.allocate_code()
    with pytest.raises(OnlyOneCodeError):
        w.input_code()
    with pytest.raises(LonelyError):
        await asyncio.wait_for(w.close(), T)


@pytest.mark.asyncio
async def test_lonely_close_and_no_key(appid, relay_url):
    w = wormhole.create(appid, relay_url)
    w.allocate_code()
    await asyncio.wait_for(w.get_code(), T)
    with pytest.raises(NoKeyError):
        w.derive_key("x", 16)
    pending = w.get_message()
    with pytest.raises(LonelyError):
        await asyncio.wait_for(w.close(), T)
    # A pending getter fails with the close error.
    with pytest.raises(LonelyError):
        await asyncio.wait_for(pending, T)


@pytest.mark.asyncio
async def test_argument_types(appid, relay_url):
    w = wormhole.create(appid, relay_url)
    with pytest.raises(TypeError):
        w.send_message("not bytes")
    with pytest.raises(TypeError):
        w.set_code(4)
    with pytest.raises(ValueError):
        wormhole.create(appid, "http://127.0.0.1:1/v1")
    w.cancel()


@pytest.mark.asyncio
async def test_server_connection_error():
    w = wormhole.create("x", "ws://127.0.0.1:1/v1", connect_timeout=5)
    with pytest.raises(wormhole.errors.ServerConnectionError):
        await asyncio.wait_for(w.get_welcome(), T)


@pytest.mark.asyncio
async def test_input_helper(appid, relay_url):
    """The completion helper against the server's nameplate list, and its errors."""
    from wormhole.errors import (
        AlreadyChoseNameplateError,
        AlreadyChoseWordsError,
        MustChooseNameplateFirstError,
    )

    a = wormhole.create(appid, relay_url)
    a.allocate_code()
    code = await asyncio.wait_for(a.get_code(), T)
    nameplate, words = code.split("-", 1)

    b = wormhole.create(appid, relay_url)
    h = b.input_code()
    with pytest.raises(MustChooseNameplateFirstError):
        h.get_word_completions("pr")
    with pytest.raises(MustChooseNameplateFirstError):
        h.choose_words("purple-sausages")
    h.refresh_nameplates()
    for _ in range(200):
        if nameplate + "-" in h.get_nameplate_completions(""):
            break
        await asyncio.sleep(0.02)
    assert nameplate + "-" in h.get_nameplate_completions(nameplate[0])
    assert all(c.endswith("-") for c in h.get_nameplate_completions(""))
    assert h.get_nameplate_completions("x") == set()
    with pytest.raises(KeyFormatError):
        h.choose_nameplate("abc")
    h.choose_nameplate(nameplate)
    with pytest.raises(AlreadyChoseNameplateError):
        h.choose_nameplate(nameplate)
    with pytest.raises(AlreadyChoseNameplateError):
        h.refresh_nameplates()
    with pytest.raises(AlreadyChoseNameplateError):
        h.get_nameplate_completions("")
    assert await asyncio.wait_for(h.when_wordlist_is_available(), T) is None
    assert h.get_word_completions("pr") == {"processor-", "provincial-", "proximate-"}
    assert h.get_word_completions("opulent-pr") == {
        "opulent-preclude",
        "opulent-prefer",
        "opulent-preshrunk",
        "opulent-printer",
        "opulent-prowler",
    }
    first = words.split("-")[0]
    assert first + "-" in h.get_word_completions(first[:2])
    h.choose_words(words)
    with pytest.raises(AlreadyChoseWordsError):
        h.choose_words(words)
    with pytest.raises(AlreadyChoseWordsError):
        h.get_word_completions("")
    assert await asyncio.wait_for(b.get_code(), T) == code
    b.send_message(b"typed in")
    assert await asyncio.wait_for(a.get_message(), T) == b"typed in"
    await asyncio.wait_for(b.get_verifier(), T)
    assert await asyncio.wait_for(a.close(), T) == "happy"
    assert await asyncio.wait_for(b.close(), T) == "happy"


@pytest.mark.asyncio
async def test_text_helpers_between_two_of_ours(relay_url):
    a = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    b = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    a.allocate_code()
    b.set_code(await asyncio.wait_for(a.get_code(), T))
    sent = a.send_text("hëllo\nwörld")
    assert await asyncio.wait_for(b.receive_text(), T) == "hëllo\nwörld"
    assert await asyncio.wait_for(sent, T) is None
    await asyncio.wait_for(asyncio.gather(a.close(), b.close()), T)


@pytest.mark.asyncio
async def test_explicit_loop_argument(appid, relay_url):
    loop = asyncio.get_running_loop()
    w = wormhole.create(appid, relay_url, loop)
    assert isinstance(await asyncio.wait_for(w.get_welcome(), T), dict)
    w.cancel()


def test_create_without_loop_is_an_error(appid, relay_url):
    with pytest.raises(RuntimeError):
        wormhole.create(appid, relay_url)
    with pytest.raises(TypeError):
        wormhole.create(appid, relay_url, reactor=object())
