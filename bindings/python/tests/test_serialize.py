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


@pytest.mark.parametrize("stop", ["code", "verifier"])
def test_killed_after_a_checkpoint_then_restored(tmp_path, ref_venv, relay_url, stop):
    state = tmp_path / "state.json"
    first = ours(state, relay_url, stop)
    reference = None
    try:
        code = read_until(first, "CODE ")
        if stop == "verifier":
            reference = subprocess.Popen(
                [str(ref_venv / "bin" / "python"), "-c", REFERENCE_PEER, relay_url, code],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        assert read_until(first, "SAVED ") == stop
        first.kill()
        first.wait(T)
        if reference is None:
            # The peer arrives while we are dead.
            reference = subprocess.Popen(
                [str(ref_venv / "bin" / "python"), "-c", REFERENCE_PEER, relay_url, code],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        second = ours(state, relay_url, "never")
        out, err = second.communicate(timeout=T)
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
        for p in (first, reference):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_bad_data_is_refused_without_being_quoted():
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
