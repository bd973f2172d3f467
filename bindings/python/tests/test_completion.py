"""``input_with_completion``'s completer, driven directly (no terminal), against the
server's nameplate list."""

import asyncio
import threading

import pytest

import wormhole
from wormhole import CodeCompleter
from wormhole.errors import AlreadyInputNameplateError, KeyFormatError

T = 20


async def allocated(appid, relay_url):
    a = wormhole.create(appid, relay_url)
    a.allocate_code()
    return a, await asyncio.wait_for(a.get_code(), T)


def in_thread(fn, *args):
    """Completion blocks (it waits for the server), so run it off the loop thread."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


@pytest.mark.asyncio
async def test_completer_nameplates_then_words(appid, relay_url):
    a, code = await allocated(appid, relay_url)
    nameplate, words = code.split("-", 1)
    b = wormhole.create(appid, relay_url)
    c = CodeCompleter(b.input_code(), nameplate_wait=5.0)

    matches = await in_thread(c.completions, "")
    assert nameplate + "-" in matches and matches == sorted(matches)
    assert await in_thread(c.completions, nameplate) == [
        m for m in matches if m.startswith(nameplate)
    ]
    # readline protocol: state 0, 1, ... until None
    first = await in_thread(c.complete, nameplate, 0)
    assert first is not None and first.startswith(nameplate)
    assert c.used_completion

    # The first text with "-" commits the nameplate and waits for the wordlist.
    word1 = words.split("-")[0]
    got = await in_thread(c.completions, nameplate + "-" + word1[:2])
    assert nameplate + "-" + word1 + "-" in got
    assert all(g.startswith(nameplate + "-" + word1[:2]) for g in got)
    got2 = await in_thread(c.completions, nameplate + "-" + word1 + "-")
    assert code in got2 and len(got2) == 256
    with pytest.raises(AlreadyInputNameplateError):
        await in_thread(c.completions, "999999-")
    with pytest.raises(AlreadyInputNameplateError):
        await in_thread(c.completions, "1")
    assert await in_thread(c.complete, "999999-x", 0) is None  # errors never escape

    assert await in_thread(c.finish, code + "\n") == code
    assert await asyncio.wait_for(b.get_code(), T) == code
    a.send_message(b"via completion")
    assert await asyncio.wait_for(b.get_message(), T) == b"via completion"
    await asyncio.wait_for(a.get_verifier(), T)
    await asyncio.wait_for(asyncio.gather(a.close(), b.close()), T)


@pytest.mark.asyncio
async def test_completer_finish_errors(appid, relay_url):
    b = wormhole.create(appid, relay_url)
    c = CodeCompleter(b.input_code())
    with pytest.raises(KeyFormatError):
        await in_thread(c.finish, "12")
    with pytest.raises(KeyFormatError):
        await in_thread(c.finish, "abc-def")
    b.cancel()


@pytest.mark.asyncio
async def test_input_with_completion_asyncio(appid, relay_url, monkeypatch):
    """input_with_completion with asyncio: input() runs in a thread (here a fake one
    that types the code), the awaitable fires with used_completion."""
    a, code = await allocated(appid, relay_url)
    seen = []

    def fake_input(prompt):
        seen.append((prompt, threading.current_thread() is threading.main_thread()))
        return code

    monkeypatch.setattr("builtins.input", fake_input)
    b = wormhole.create(appid, relay_url)
    used = await asyncio.wait_for(
        wormhole.input_with_completion("Wormhole code: ", b.input_code()), T
    )
    assert used is False
    assert seen == [("Wormhole code: ", False)]
    assert await asyncio.wait_for(b.get_code(), T) == code
    b.send_message(b"x")
    assert await asyncio.wait_for(a.get_message(), T) == b"x"
    await asyncio.wait_for(b.get_verifier(), T)
    await asyncio.wait_for(asyncio.gather(a.close(), b.close()), T)
