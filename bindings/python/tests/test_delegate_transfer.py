"""Transfers on delegated wormholes (``delegate=``): core's transfer events reach the
delegate in order with the others. A file and a directory each way against the
reference CLI 0.24.0, plus the one-transfer-at-a-time and no-offer errors."""

import asyncio
import random
from pathlib import Path

import pytest

import wormhole
from wormhole.errors import InvalidStateError, TransferInProgressError

from test_transfer import T, finish, kill, make_file, make_tree, read_tree, ref_cli


class Recorder:
    """A delegate that records every event as ``(name, value)`` and accepts offers into
    ``dest`` when given one."""

    def __init__(self, dest=None):
        self.events = []
        self.dest = dest
        self.w = None
        self.closed = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()

    def _note(self, name, value=None):
        self.events.append((name, value))

    def wormhole_got_code(self, code):
        self._note("code", code)

    def wormhole_got_verifier(self, v):
        self._note("verifier", v)

    def wormhole_got_offer(self, offer):
        self._note("offer", offer)
        if self.dest is not None:
            self.w.accept_offer(self.dest)

    def wormhole_transfer_progress(self, done, total):
        self._note("progress", (done, total))

    def _end(self, name, value):
        self._note(name, value)
        if not self.done.done():
            self.done.set_result(value)
        self.w.close()

    def wormhole_file_sent(self, result):
        self._end("file_sent", result)

    def wormhole_file_received(self, result):
        self._end("file_received", result)

    def wormhole_text_received(self, result):
        self._end("text_received", result)

    def wormhole_closed(self, result):
        self._note("closed", result)
        if not self.closed.done():
            self.closed.set_result(result)


def payload(tmp_path, what):
    """A file or directory to send, what it holds, an empty inbox and a fresh code."""
    src = tmp_path / ("tree" if what == "directory" else "payload.bin")
    if what == "directory":
        src.mkdir()
        expected = make_tree(src)
    else:
        expected = make_file(src, 700_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return src, expected, inbox, "%d-purple-sausages" % random.randint(100, 999)


def names(rec):
    return [n for n, _ in rec.events]


@pytest.mark.asyncio
@pytest.mark.parametrize("what", ["file", "directory"])
async def test_delegated_receive_from_reference(ref_venv, relay_url, tmp_path, what):
    src, expected, inbox, code = payload(tmp_path, what)
    p = ref_cli(ref_venv, relay_url, "send", "--hide-progress", "--no-qr", "--code", code, str(src))
    try:
        rec = Recorder(dest=str(inbox))
        w = wormhole.create(wormhole.TRANSFER_APPID, relay_url, delegate=rec)
        rec.w = w
        w.receive_file()
        with pytest.raises(TransferInProgressError):
            w.receive_file()
        w.set_code(code)
        result = await asyncio.wait_for(rec.done, T)
        assert await asyncio.wait_for(rec.closed, T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, out + err
        assert isinstance(result, str), result
        path = Path(result)
        assert path == inbox / src.name
        if what == "directory":
            assert read_tree(path) == expected
        else:
            assert path.read_bytes() == expected
        seq = names(rec)
        assert seq[-1] == "closed" and seq[-2] == "file_received", seq
        offer = dict(rec.events)["offer"]
        assert (offer.kind, offer.name) == (what, src.name)
        assert seq.index("offer") < seq.index("progress") < seq.index("file_received")
    finally:
        kill(p)


@pytest.mark.asyncio
@pytest.mark.parametrize("what", ["file", "directory"])
async def test_delegated_send_to_reference(ref_venv, relay_url, tmp_path, what):
    src, expected, inbox, code = payload(tmp_path, what)
    rec = Recorder()
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url, delegate=rec)
    rec.w = w
    w.set_code(code)
    w.send_file(src)
    with pytest.raises(TransferInProgressError):
        w.send_text("x")
    p = ref_cli(ref_venv, relay_url, "receive", "--hide-progress", "--accept-file", code, cwd=str(inbox))
    try:
        assert await asyncio.wait_for(rec.done, T) is None
        assert await asyncio.wait_for(rec.closed, T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, out + err
        got = inbox / src.name
        if what == "directory":
            assert read_tree(got) == expected
        else:
            assert got.read_bytes() == expected
        seq = names(rec)
        assert "progress" in seq and seq[-2:] == ["file_sent", "closed"], seq
    finally:
        kill(p)


@pytest.mark.asyncio
async def test_delegated_errors_without_an_offer(relay_url):
    rec = Recorder()
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url, delegate=rec)
    rec.w = w
    with pytest.raises(InvalidStateError):
        w.accept_offer(".")
    with pytest.raises(InvalidStateError):
        w.reject_offer()
    w.cancel_transfer()  # nothing runs: harmless
    w.receive_text()
    w.cancel_transfer()
    await asyncio.sleep(0.2)
    w.close()
    await asyncio.wait_for(rec.closed, T)
    received = [v for n, v in rec.events if n == "text_received"]
    assert len(received) == 1 and isinstance(received[0], wormhole.errors.WormholeCancelled)
