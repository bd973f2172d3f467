"""Dilation from Python: the reference 0.24 API (Twisted), the seed's endpoints, asyncio
streams, flow control, bad input, and interoperation with the reference library both ways.

The interop tests run ``tests/scripts/ref_dilate.py``, a program written for the reference
0.24, twice: once on the reference (its venv) and once, unchanged, on this module."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import wormhole
from wormhole.errors import AlreadyClosedError, CanOnlyDilateOnceError

from conftest import HERE, twist_server

ROOT = HERE.parent.parent.parent
REF_DILATE = ROOT / "tests" / "scripts" / "ref_dilate.py"
SEED_EXAMPLE = HERE / "seed_dilation_example.py"
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def transit_relay(ref_venv):
    """``tcp:127.0.0.1:PORT`` of a reference transit relay."""
    with twist_server(ref_venv, "transitrelay") as port:
        yield "tcp:127.0.0.1:%d" % port


class Peer:
    """A ref_dilate.py process (on the reference or on this module) reporting JSON lines.
    Every wait is bounded: a peer that stops answering fails the test."""

    def __init__(self, python, relay_url, appid, *args):
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [str(python), str(REF_DILATE), relay_url, appid, *[str(a) for a in args]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def _fail(self, why):
        self.kill()
        raise AssertionError(
            "%s; lines %r; stderr %s" % (why, self.lines, self.proc.stderr.read()[-3000:])
        )

    def until(self, key, timeout=TIMEOUT):
        """Read lines until one has ``key``; fail on an error line, the end of the
        process or the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._fail("no %r within %d s" % (key, timeout))
            if line is None:
                self.proc.wait(10)
                self._fail("peer ended (%s) before %r" % (self.proc.returncode, key))
            obj = json.loads(line)
            self.lines.append(obj)
            if "error" in obj:
                self._fail("peer error %r" % (obj,))
            if key in obj:
                return obj

    def finish(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self._fail("peer did not exit after stdin closed")
        while True:
            line = self._queue.get(timeout=10)
            if line is None:
                break
            obj = json.loads(line)
            self.lines.append(obj)
            assert "error" not in obj, (obj, self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _pair(first, second, relay_url, appid, opts_a, opts_b, scen_a, scen_b):
    """Start ``first`` (allocating) and ``second`` (with its code) on ref_dilate.py."""
    a = Peer(first, relay_url, appid, "--allocate", *opts_a, *scen_a)
    try:
        code = a.until("code")["code"]
        b = Peer(second, relay_url, appid, "--code", code, *opts_b, *scen_b)
    except BaseException:
        a.kill()
        raise
    return a, b


def _python_of(which, ref_venv):
    return sys.executable if which == "ours" else ref_venv / "bin" / "python"


@pytest.mark.parametrize("client,server", [("ours", "ref"), ("ref", "ours")])
@pytest.mark.parametrize("path", ["direct", "relay"])
def test_echo_client_and_server_with_the_reference(client, server, path, ref_venv, relay_url, transit_relay):
    """The client opens a subchannel whose OPEN is held (no listener), an echo subchannel
    checked with records of every size around the Noise limit (empty and 1 MiB included),
    then 64 echo subchannels at once. Relay: both sides without direct hints."""
    opts = ["--relay", transit_relay] + (["--no-listen"] if path == "relay" else [])
    a, b = _pair(
        _python_of(server, ref_venv), _python_of(client, ref_venv), relay_url,
        "example.com/py-dilation", opts, opts, ["serve"], ["client"],
    )
    try:
        assert b.until("ok") == {"ok": True}
        a.until("dilated")
        b.finish()
        a.finish()
        statuses = [x["status"] for x in a.lines + b.lines if "status" in x]
        assert any("ConnectedPeer" in s for s in statuses), statuses
        if path == "relay":
            connected = [s for s in statuses if "ConnectedPeer" in s]
            assert all("relay" in s for s in connected), connected
    finally:
        a.kill()
        b.kill()


@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours")])
def test_stream_with_the_reference(sender, receiver, ref_venv, relay_url, transit_relay):
    """16 MiB through a streaming producer into the peer's sink; the SHA-256 of what
    arrived matches what was sent (each chunk carries its index: lost, repeated or
    reordered records change the digest)."""
    n = 16 << 20
    a, b = _pair(
        _python_of(receiver, ref_venv), _python_of(sender, ref_venv), relay_url,
        "example.com/py-dilation", ["--relay", transit_relay], ["--relay", transit_relay],
        ["serve"], ["send", n],
    )
    try:
        sent = b.until("sent")
        got = a.until("sink")
        assert sent["sent"] == n
        assert got["bytes"] == n
        assert got["sha256"] == sent["sha256"]
        b.finish()
        a.finish()
    finally:
        a.kill()
        b.kill()


def test_the_seed_file_sending_example(relay_url, tmp_path):
    """The seed document's file-sending example (FileSender over the seed's client
    endpoint, the receiver on the server endpoint), between two of our wormholes."""
    src = tmp_path / "source.bin"
    src.write_bytes(os.urandom(3 << 20) + b"tail")
    out = tmp_path / "received"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, str(SEED_EXAMPLE), relay_url, str(src), str(out)],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=str(HERE),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    got = out / "source.bin"
    assert got.read_bytes() == src.read_bytes()
    assert "control: pong" in r.stdout, r.stdout


# --- asyncio ------------------------------------------------------------------------------


async def _dilated_pair(relay_url, appid, **kw):
    a = wormhole.create(appid, relay_url, dilation=True)
    b = wormhole.create(appid, relay_url, dilation=True)
    a.allocate_code()
    b.set_code(await a.get_code())
    return a, b, a.dilate(**kw), b.dilate(**kw)


@pytest.mark.asyncio
async def test_asyncio_streams_with_the_reference(ref_venv, relay_url):
    """asyncio ``connect()`` to the reference's echo, and asyncio ``listen()`` taking the
    reference's 4 MiB stream."""
    appid = "example.com/py-dilation"
    loop = asyncio.get_running_loop()
    w = wormhole.create(appid, relay_url, dilation=True)
    w.allocate_code()
    code = await w.get_code()
    ref = await loop.run_in_executor(
        None,
        lambda: Peer(ref_venv / "bin" / "python", relay_url, appid, "--code", code, "send", 4 << 20),
    )
    try:
        dw = w.dilate()
        sink = dw.listen("sink")
        await asyncio.wait_for(dw.when_dilated(), 60)
        # The reference's "send" scenario streams into our sink; it does not serve echo.
        reader, writer = await asyncio.wait_for(sink.accept(), 60)
        h, total = hashlib.sha256(), 0
        while True:
            chunk = await asyncio.wait_for(reader.read(1 << 16), 60)
            if not chunk:
                break
            h.update(chunk)
            total += len(chunk)
        writer.close()
        sent = await loop.run_in_executor(None, ref.until, "sent")
        assert total == 4 << 20
        assert h.hexdigest() == sent["sha256"]
        assert writer.get_extra_info("subprotocol") == "sink"
        await loop.run_in_executor(None, ref.finish)
    finally:
        ref.kill()
        await w.close()


@pytest.mark.asyncio
async def test_asyncio_connect_to_the_reference_echo(ref_venv, relay_url):
    appid = "example.com/py-dilation"
    loop = asyncio.get_running_loop()
    w = wormhole.create(appid, relay_url, dilation=True)
    w.allocate_code()
    code = await w.get_code()
    ref = await loop.run_in_executor(
        None, lambda: Peer(ref_venv / "bin" / "python", relay_url, appid, "--code", code, "serve")
    )
    try:
        dw = w.dilate()
        reader, writer = await asyncio.wait_for(dw.connect("echo"), 60)
        for n in (1, 65519, 65520, 300000):
            data = os.urandom(n)
            writer.write(data)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(n), 60) == data
        writer.close()
        assert await asyncio.wait_for(reader.read(), 60) == b""
        await loop.run_in_executor(None, ref.until, "dilated")
        await loop.run_in_executor(None, ref.finish)
    finally:
        ref.kill()
        await w.close()


@pytest.mark.asyncio
async def test_asyncio_records_backpressure_and_status(relay_url, appid):
    """Ours with ours: every write is one ``data_received``; a protocol that stops reading
    stops the writer (``pause_writing``) with a bounded queue, and everything arrives once
    it reads again; status updates report the connection."""
    statuses = []
    a, b, da, db = await _dilated_pair(relay_url, appid, on_status_update=statuses.append)
    received = []
    lost = asyncio.get_running_loop().create_future()

    class Rec(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t

        def data_received(self, data):
            received.append(data)

        def connection_lost(self, exc):
            lost.set_result(exc)

    await db.listener_for("rec").listen(Rec)
    sizes = [0, 1, 65519, 65520, 1 << 20, 0, 7]
    records = [os.urandom(n) for n in sizes]

    class Send(asyncio.Protocol):
        paused = 0

        def connection_made(self, t):
            self.t = t

        def pause_writing(self):
            Send.paused += 1

        def resume_writing(self):
            pass

    p = await da.connector_for("rec").connect(Send)
    for r in records:
        p.t.write(r)
    p.t.close()
    assert await asyncio.wait_for(lost, 60) is None
    assert received == records
    with pytest.raises(AlreadyClosedError):
        p.t.write(b"late")
    assert any(isinstance(s.peer_connection, wormhole._status.ConnectedPeer) for s in statuses)

    # Backpressure: the reader pauses; 64 MiB are written as fast as drain() allows.
    listener = db.listen("bulk")
    reader_task = asyncio.ensure_future(listener.accept())
    reader_w, writer = await da.connect("bulk")
    r, w2 = await asyncio.wait_for(reader_task, 60)
    r._transport.pause_reading()  # the application stops reading
    chunk = os.urandom(256 << 10)
    total = 64 << 20
    sent = 0

    async def write_all():
        nonlocal sent
        while sent < total:
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()

    task = asyncio.ensure_future(write_all())
    await asyncio.sleep(2.0)
    # The writer is held: far less than 64 MiB went out, and the queue here is bounded.
    assert not task.done()
    assert sent < total // 2, sent
    assert writer.transport.get_write_buffer_size() <= (2 << 20)
    r._transport.resume_reading()
    h_in = hashlib.sha256()
    got = 0
    while got < total:
        data = await asyncio.wait_for(r.read(1 << 20), 60)
        assert data
        h_in.update(data)
        got += len(data)
    await asyncio.wait_for(task, 60)
    assert h_in.hexdigest() == hashlib.sha256(chunk * (total // len(chunk))).hexdigest()
    writer.close()
    await a.close()
    await b.close()


@pytest.mark.asyncio
async def test_bad_input(relay_url, appid):
    plain = wormhole.create(appid, relay_url)
    with pytest.raises(NotImplementedError):
        plain.dilate()
    plain.cancel()
    a, b, da, db = await _dilated_pair(relay_url, appid)
    with pytest.raises(CanOnlyDilateOnceError):
        a.dilate()
    with pytest.raises(ValueError):
        da.listener_for("")
    with pytest.raises(ValueError):
        da.connector_for("")
    with pytest.raises(ValueError):
        da.listen("")
    da.listen("twice")
    with pytest.raises(ValueError):
        da.listen("twice")
    with pytest.raises(ValueError):
        await da.listener_for("twice").listen(asyncio.Protocol)
    c = wormhole.create(appid, relay_url, dilation=True)
    with pytest.raises(ValueError):
        c.dilate(ping_interval=-1)
    with pytest.raises(TypeError):
        c.dilate(transit_relay_location=5)
    with pytest.raises(ValueError, match="tcp:HOST:PORT"):
        c.dilate(transit_relay_location="not a hint")
    c.cancel()
    reader, writer = await asyncio.wait_for(da.connect("nobody-listens"), 60)
    with pytest.raises(TypeError):
        writer.write("text")
    with pytest.raises(NotImplementedError):
        writer.write_eof()
    writer.close()
    with pytest.raises(AlreadyClosedError):
        writer.write(b"after close")
    await a.close()
    await b.close()


def test_twisted_flow_control_both_ways(relay_url):
    """Twisted, ours with ours: a receiver that calls ``pauseProducing()`` gets nothing
    and pauses the sender's streaming producer (registered with ``registerProducer``) well
    short of the stream; after ``resumeProducing()`` every record arrives whole and in
    order (see twisted_dilation.py)."""
    r = subprocess.run(
        [sys.executable, str(HERE / "twisted_dilation.py"), relay_url],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=str(HERE),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["paused_while_receiver_paused"], seen
    assert seen["delivered_while_paused"] == 0, seen
    assert seen["sent_while_paused"] < (32 << 20), seen
    assert seen["records"] == (64 << 20) // 65536 and seen["sizes_ok"] and seen["digest_ok"], seen
