"""Serialization and journaled mode from Python: ``w.serialize()``,
``wormhole.from_serialized(data, reactor, delegate)`` and ``wormhole.journal.Journal``.

Our side (``serialize_peer.py``, journaled) is killed with SIGKILL right after a
checkpoint, restored in a new process, and finishes the exchange with the reference
library (magic-wormhole 0.24.0, in its own venv), which notices nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import wormhole
from wormhole.journal import ImmediateJournal, Journal

HERE = Path(__file__).parent
T = 60

REFERENCE_PEER = r'''
import sys
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import react
import wormhole

@inlineCallbacks
def main(reactor, url, code):
    w = wormhole.create("wormhole-rs.example/tests/python-serialize", url, reactor)
    w.set_code(code)
    msg = yield w.get_message()
    print("REFERENCE GOT", msg.decode(), flush=True)
    w.send_message(b"reply from the reference")
    result = yield w.close()
    print("REFERENCE CLOSED", result, flush=True)

react(main, sys.argv[1:])
'''


def ours(state: Path, relay_url: str, stop: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "serialize_peer.py"), str(state), relay_url, stop],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(p: subprocess.Popen, prefix: str) -> str:
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError("%s never came; stderr: %s" % (prefix, p.stderr.read() if p.stderr else ""))


@pytest.mark.parametrize("stop", ["welcome", "code", "verifier"])
def test_killed_after_a_checkpoint_then_restored(tmp_path, ref_venv, relay_url, stop):
    """Killed after the checkpoint of: the welcome (before a code: the allocation was held
    and never reached the server), the code, the verifier (mid-exchange: our message was
    held until the save)."""
    state = tmp_path / "state.json"
    first = ours(state, relay_url, stop)
    reference = second = None

    def start_reference(code):
        return subprocess.Popen(
            [str(ref_venv / "bin" / "python"), "-c", REFERENCE_PEER, relay_url, code],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    try:
        code = None if stop == "welcome" else read_until(first, "CODE ")
        if stop == "verifier":
            reference = start_reference(code)
        # One checkpoint per event handled; the process sleeps (to be killed) after STOP's.
        saved = [read_until(first, "SAVED ")]
        while saved[-1] != stop:
            assert len(saved) < 10, saved
            saved.append(read_until(first, "SAVED "))
        first.kill()
        first.wait(T)
        second = ours(state, relay_url, "never")
        head = ""  # what the restored process printed before its code
        if code is None:
            assert second.stdout is not None
            for line in second.stdout:
                head += line
                if line.startswith("CODE "):
                    code = line[len("CODE "):].strip()
                    break
            assert code, head
        if reference is None:
            # The peer arrives while we are dead (or, at "welcome", once we have a code).
            reference = start_reference(code)
        out, err = second.communicate(timeout=T)
        out = head + out
        assert second.returncode == 0, err
        assert "RESTORED after %s" % stop in out, out
        assert "GOT reply from the reference" in out, out
        assert "CLOSED happy" in out, out
        rout, rerr = reference.communicate(timeout=T)
        assert reference.returncode == 0, rerr
        # Exactly one hello, although it was sent (held) before the kill at "verifier".
        assert rout.count("REFERENCE GOT hello from python") == 1, rout
        assert "REFERENCE CLOSED happy" in rout, rout
    finally:
        for p in (first, second, reference):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.asyncio
async def test_bad_data_is_refused_without_being_quoted():
    class D:
        pass

    for data in ["not json", {}, {"format": "magic-wormhole serialized wormhole", "version": 9}]:
        with pytest.raises(ValueError) as e:
            wormhole.from_serialized(data, None, D())
        assert "hunter2" not in str(e.value)
    with pytest.raises(ValueError):
        wormhole.from_serialized("{}", None, None)
    damaged = {
        "format": "magic-wormhole serialized wormhole",
        "version": 1,
        "relay_url": "ws://127.0.0.1:1/v1",
        "session": {"version": 1, "side": "hunter2"},
        "events": [],
    }
    with pytest.raises(ValueError) as e:
        wormhole.from_serialized(json.dumps(damaged), None, D())
    assert "damaged" in str(e.value) and "hunter2" not in str(e.value)


def test_journal_rules():
    with pytest.raises(TypeError):
        Journal(42)  # type: ignore[arg-type]
    saves = []
    j = Journal(lambda: saves.append(1))
    with j.process():
        with j.process():  # nested: one save, at the end of the outer block
            pass
    assert saves == [1]
    with pytest.raises(RuntimeError):
        with j.process():
            raise RuntimeError("handler failed")
    assert saves == [1]  # no save after a failure
    with ImmediateJournal().process():
        pass
    with pytest.raises(ValueError):
        wormhole.create("a", "ws://127.0.0.1:1/v1", journal=j)


def test_suspend_then_restore_in_one_process(ref_venv, relay_url):
    """``w.suspend()``: the wormhole stops without a word to the server (no
    ``wormhole_closed``, calls raise), the reference library waits, and the wormhole
    restored from the returned dict sends what the suspended one never sent."""
    import asyncio

    from wormhole.errors import WormholeClosed

    class Delegate:
        def __init__(self, loop):
            self.events = asyncio.Queue()
            self.loop = loop

        def _put(self, *ev):
            self.events.put_nowait(ev)

        def wormhole_got_welcome(self, welcome):
            pass

        def wormhole_got_code(self, code):
            self._put("code", code)

        def wormhole_got_unverified_key(self, key):
            pass

        def wormhole_got_verifier(self, verifier):
            pass

        def wormhole_got_versions(self, versions):
            pass

        def wormhole_got_message(self, msg):
            self._put("message", msg)

        def wormhole_closed(self, result):
            self._put("closed", result)

    async def run():
        loop = asyncio.get_running_loop()
        first = Delegate(loop)
        w = wormhole.create(
            "wormhole-rs.example/tests/python-serialize", relay_url, None, delegate=first
        )
        w.allocate_code()
        kind, code = await asyncio.wait_for(first.events.get(), T)
        assert kind == "code"
        ref = subprocess.Popen(
            [str(ref_venv / "bin" / "python"), "-c", REFERENCE_PEER, relay_url, code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            saved = w.suspend()
            assert saved["format"] == "magic-wormhole serialized wormhole"
            with pytest.raises(WormholeClosed):
                w.send_message(b"too late")
            await asyncio.sleep(1.0)
            assert first.events.empty(), "a suspended wormhole reports nothing more"
            second = Delegate(loop)
            w2 = wormhole.from_serialized(json.loads(json.dumps(saved)), None, second)
            w2.send_message(b"sent after a suspend")
            kind, msg = await asyncio.wait_for(second.events.get(), T)
            assert (kind, msg) == ("message", b"reply from the reference")
            w2.close()
            kind, result = await asyncio.wait_for(second.events.get(), T)
            assert (kind, result) == ("closed", "happy")
            out, err = ref.communicate(timeout=T)
            assert ref.returncode == 0, out + err
            assert "REFERENCE GOT sent after a suspend" in out, out + err
            assert first.events.empty()
        finally:
            ref.kill()

    asyncio.run(run())
