"""File transfer (PROTOCOL §8 over Transit): asyncio and blocking styles against each
other, and interop with the reference CLI 0.24.0 in both directions.

Inside the suite's loopback-only namespace the direct hints are 127.0.0.1, so Transit
connects directly without any relay."""

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import wormhole
from wormhole.errors import TransferError, WormholeCancelled, WormholeError
from wormhole.transfer import Receiver, Sender, receive_file, send_file

from conftest import HERE, twist_server

T = 60
# How long a sender may take to notice that the receiver cancelled. Usually at once; but
# when the receiver's window was full, core's FIN-only close leaves our sender probing a
# zero window until the kernel drops the receiver's orphaned FIN-WAIT-2 socket
# (net.ipv4.tcp_fin_timeout, 60 s, plus probe back-off: up to about 2 minutes) and answers
# with a reset. Core would avoid that by aborting a cancelled Transit connection with a
# reset (SO_LINGER 0). Past this limit the tests warn and cancel the sender themselves.
SENDER_NOTICES = 15


async def sender_fails(sending, a):
    """The sender's transfer fails after the receiver cancelled (see SENDER_NOTICES)."""
    import warnings

    done, _ = await asyncio.wait([asyncio.ensure_future(sending)], timeout=SENDER_NOTICES)
    if not done:
        warnings.warn(
            "the sender did not notice the receiver's cancellation within %d s "
            "(Transit closes with FIN, not RST); cancelling it" % SENDER_NOTICES
        )
        a.cancel_transfer()
    with pytest.raises(WormholeError):
        await asyncio.wait_for(sending, T)


def make_file(path: Path, size: int) -> bytes:
    data = random.Random(size).randbytes(size) if size else b""
    path.write_bytes(data)
    return data


def make_tree(root: Path) -> dict:
    """A directory with nested and empty folders; returns {relative path: bytes}."""
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": bytes(range(256)) * 40,
        "sub/deeper/c.txt": "ünïcode ✓\n".encode(),
        "empty-file": b"",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "sub" / "empty-dir").mkdir()
    return files


def read_tree(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


def leftovers(d: Path) -> list:
    """Hidden temporary names a transfer may leave (it must not)."""
    return [p.name for p in d.iterdir() if p.name.startswith(".")]


async def pair(relay_url, appid=wormhole.TRANSFER_APPID):
    a = wormhole.create(appid, relay_url)
    a.allocate_code()
    code = await asyncio.wait_for(a.get_code(), T)
    b = wormhole.create(appid, relay_url)
    b.set_code(code)
    return a, b


async def close_both(a, b):
    results = await asyncio.gather(a.close(), b.close(), return_exceptions=True)
    return results


# ---------------------------------------------------------------------------------------
# asyncio, Python to Python


@pytest.mark.asyncio
async def test_file_with_progress(relay_url, tmp_path):
    src = tmp_path / "src" / "data.bin"
    src.parent.mkdir()
    data = make_file(src, 3 * 1024 * 1024 + 17)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    loop_thread = threading.current_thread()
    sent_reports, recv_reports = [], []

    def on_sent(done, total):
        assert threading.current_thread() is loop_thread
        sent_reports.append((done, total))

    def on_recv(done, total):
        assert threading.current_thread() is loop_thread
        recv_reports.append((done, total))

    a, b = await pair(relay_url)
    sending = a.send_file(src, progress=on_sent)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    assert isinstance(offer, wormhole.Offer)
    assert (offer.kind, offer.name, offer.size) == ("file", "data.bin", len(data))
    assert offer.text is None
    assert offer.destination(inbox) == str(inbox / "data.bin")
    path = await asyncio.wait_for(offer.accept(inbox, progress=on_recv), T)
    assert await asyncio.wait_for(sending, T) is None
    assert path == str(inbox / "data.bin")
    assert Path(path).read_bytes() == data
    assert leftovers(inbox) == []
    assert await close_both(a, b) == ["happy", "happy"]
    for reports in (sent_reports, recv_reports):
        assert reports, "no progress reported"
        assert reports[-1] == (len(data), len(data))
        dones = [d for d, _ in reports]
        assert dones == sorted(dones)



class _Progress:
    def __init__(self):
        self.reports = []

    def __call__(self, done, total):
        self.reports.append((done, total))


@pytest.mark.asyncio
async def test_progress_callbacks_are_released(relay_url, tmp_path):
    """The native transfer holds the callback where the GC cannot see it; once the
    operation ended nothing may keep it (and its closure over the transfer) alive."""
    import gc
    import weakref

    from wormhole import _transfer

    src = tmp_path / "f.bin"
    make_file(src, 100_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    p_send, p_recv = _Progress(), _Progress()
    refs = [weakref.ref(p_send), weakref.ref(p_recv)]
    a, b = await pair(relay_url)
    sending = a.send_file(src, progress=p_send)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    await asyncio.wait_for(offer.accept(inbox, progress=p_recv), T)
    await asyncio.wait_for(sending, T)
    assert p_send.reports and p_recv.reports
    await asyncio.sleep(0.1)  # the release runs on the loop after the result
    del p_send, p_recv, offer, sending
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert _transfer._HOLDERS == {}
    assert await close_both(a, b) == ["happy", "happy"]


@pytest.mark.asyncio
async def test_directory(relay_url, tmp_path):
    src = tmp_path / "src" / "tree"
    src.mkdir(parents=True)
    files = make_tree(src)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    a, b = await pair(relay_url)
    sending = a.send_file(str(src), no_listen=True)  # the receiver listens
    offer = await asyncio.wait_for(b.receive_offer(), T)
    assert (offer.kind, offer.name, offer.numfiles) == ("directory", "tree", len(files))
    assert offer.numbytes == sum(len(d) for d in files.values())
    path = await asyncio.wait_for(offer.accept(inbox), T)
    await asyncio.wait_for(sending, T)
    assert path == str(inbox / "tree")
    assert read_tree(Path(path)) == files
    assert (Path(path) / "sub" / "empty-dir").is_dir()
    assert leftovers(inbox) == []
    assert await close_both(a, b) == ["happy", "happy"]


@pytest.mark.asyncio
async def test_empty_file(relay_url, tmp_path):
    src = tmp_path / "empty.txt"
    src.write_bytes(b"")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    reports = []
    a, b = await pair(relay_url)
    sending = a.send_file(src)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    assert (offer.kind, offer.size) == ("file", 0)
    dest = inbox / "renamed.txt"  # not an existing directory: the path itself
    path = await asyncio.wait_for(
        offer.accept(dest, progress=lambda d, t: reports.append((d, t))), T
    )
    await asyncio.wait_for(sending, T)
    assert path == str(dest) and dest.read_bytes() == b""
    assert reports[-1] == (0, 0)
    assert await close_both(a, b) == ["happy", "happy"]


@pytest.mark.asyncio
async def test_text_offer_arrives_as_text(relay_url):
    a, b = await pair(relay_url)
    sending = a.send_text("just text")
    offer = await asyncio.wait_for(b.receive_offer(), T)
    assert (offer.kind, offer.text, offer.name) == ("text", "just text", "")
    with pytest.raises(ValueError):
        offer.accept(".")
    await asyncio.wait_for(sending, T)
    assert await close_both(a, b) == ["happy", "happy"]


@pytest.mark.asyncio
async def test_reject(relay_url, tmp_path):
    src = tmp_path / "unwanted.bin"
    make_file(src, 1000)
    a, b = await pair(relay_url)
    sending = a.send_file(src)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    offer.reject()
    with pytest.raises(TransferError, match="transfer rejected"):
        await asyncio.wait_for(sending, T)
    with pytest.raises(ValueError):
        offer.reject()  # only once
    await close_both(a, b)


@pytest.mark.asyncio
async def test_no_overwrite_unless_asked(relay_url, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "f.txt").write_bytes(b"precious")
    src = tmp_path / "f.txt"
    make_file(src, 5000)

    a, b = await pair(relay_url)
    sending = a.send_file(src)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    with pytest.raises(TransferError, match="overwrite"):
        await asyncio.wait_for(offer.accept(inbox), T)
    with pytest.raises(TransferError):
        await asyncio.wait_for(sending, T)
    assert (inbox / "f.txt").read_bytes() == b"precious"
    assert leftovers(inbox) == []
    await close_both(a, b)

    a, b = await pair(relay_url)
    sending = a.send_file(src)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    await asyncio.wait_for(offer.accept(inbox, overwrite=True), T)
    await asyncio.wait_for(sending, T)
    assert (inbox / "f.txt").read_bytes() == src.read_bytes()
    assert await close_both(a, b) == ["happy", "happy"]


@pytest.mark.asyncio
async def test_existing_directory_is_never_replaced(relay_url, tmp_path):
    src = tmp_path / "src" / "tree"
    src.mkdir(parents=True)
    make_tree(src)
    inbox = tmp_path / "inbox"
    (inbox / "tree").mkdir(parents=True)
    (inbox / "tree" / "mine.txt").write_bytes(b"keep")
    a, b = await pair(relay_url)
    sending = a.send_file(src)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    with pytest.raises(TransferError):
        await asyncio.wait_for(offer.accept(inbox, overwrite=True), T)
    with pytest.raises(TransferError):
        await asyncio.wait_for(sending, T)
    assert read_tree(inbox / "tree") == {"mine.txt": b"keep"}
    await close_both(a, b)


BIG = 512 * 1024 * 1024  # sparse: cheap to create, long enough to cancel mid-way


def big_file(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(BIG)
    return path


@pytest.mark.asyncio
async def test_cancel_receiver_mid_transfer(relay_url, tmp_path):
    src = big_file(tmp_path / "big.bin")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    a, b = await pair(relay_url)
    sending = a.send_file(src)
    offer = await asyncio.wait_for(b.receive_offer(), T)
    seen = []

    def progress(done, total):
        seen.append(done)
        if done < total:
            b.cancel_transfer()

    with pytest.raises(WormholeCancelled):
        await asyncio.wait_for(offer.accept(inbox, progress=progress), T)
    assert seen and seen[0] < BIG
    await sender_fails(sending, a)  # the sender sees the connection drop
    assert list(inbox.iterdir()) == []  # no partial file, complete-looking or hidden
    await close_both(a, b)


@pytest.mark.asyncio
async def test_cancel_sender_by_cancelling_the_awaitable(relay_url, tmp_path):
    src = big_file(tmp_path / "big.bin")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    a, b = await pair(relay_url)
    started = asyncio.Event()
    sending = a.send_file(src, progress=lambda d, t: started.set())
    offer = await asyncio.wait_for(b.receive_offer(), T)
    receiving = asyncio.ensure_future(offer.accept(inbox))
    await asyncio.wait_for(started.wait(), T)
    sending.cancel()
    with pytest.raises(WormholeError):
        await asyncio.wait_for(receiving, T)
    assert list(inbox.iterdir()) == []
    await close_both(a, b)


@pytest.mark.asyncio
async def test_progress_callback_error_cancels(relay_url, tmp_path, caplog):
    src = big_file(tmp_path / "big.bin")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    a, b = await pair(relay_url)
    sending = a.send_file(src)
    offer = await asyncio.wait_for(b.receive_offer(), T)

    def bad_progress(done, total):
        raise RuntimeError("boom")

    with pytest.raises(WormholeCancelled):
        await asyncio.wait_for(offer.accept(inbox, progress=bad_progress), T)
    assert "progress callback raised" in caplog.text
    await sender_fails(sending, a)
    assert list(inbox.iterdir()) == []
    await close_both(a, b)


@pytest.mark.asyncio
async def test_missing_file_and_bad_helper(relay_url, tmp_path):
    a, b = await pair(relay_url)
    with pytest.raises(ValueError):
        await asyncio.wait_for(a.send_file(tmp_path / "nope"), T)
    with pytest.raises(ValueError):
        a.send_file(tmp_path, transit_helper="not a hint")
    with pytest.raises(TypeError):
        a.send_file(tmp_path, progress=42)
    a.cancel()
    b.cancel()


@pytest.fixture(scope="module")
def transit_helper(ref_venv):
    """``tcp:127.0.0.1:PORT`` of a reference transit relay (magic-wormhole-transit-relay)."""
    with twist_server(ref_venv, "transitrelay") as port:
        yield "tcp:127.0.0.1:%d" % port


@pytest.mark.asyncio
async def test_through_transit_relay(relay_url, transit_helper, tmp_path):
    """Neither side listens: the only path is the transit relay (our helper on one side
    reaches the other through the transit message)."""
    src = tmp_path / "relayed.bin"
    data = make_file(src, 500_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    a, b = await pair(relay_url)
    sending = a.send_file(src, transit_helper=transit_helper, no_listen=True)
    offer = await asyncio.wait_for(b.receive_offer(no_listen=True), T)
    path = await asyncio.wait_for(offer.accept(inbox), T)
    await asyncio.wait_for(sending, T)
    assert Path(path).read_bytes() == data
    assert await close_both(a, b) == ["happy", "happy"]


# ---------------------------------------------------------------------------------------
# Blocking style (wormhole.transfer)


def test_blocking_file_and_directory(relay_url, tmp_path):
    src = tmp_path / "doc.bin"
    data = make_file(src, 2 * 1024 * 1024)
    tree = tmp_path / "tree"
    tree.mkdir()
    files = make_tree(tree)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    main = threading.current_thread()

    for what, check in ((src, None), (tree, files)):
        codes, errors, sent = [], [], []

        def sender():
            try:
                send_file(
                    what,
                    on_code=codes.append,
                    rendezvous=relay_url,
                    progress=lambda d, t: sent.append((threading.current_thread(), d, t)),
                    timeout=T,
                )
            except BaseException as e:
                errors.append(e)

        th = threading.Thread(target=sender)
        th.start()
        deadline = time.monotonic() + T
        while not codes and not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert codes, errors
        reports = []
        path = receive_file(
            codes[0],
            inbox,
            rendezvous=relay_url,
            progress=lambda d, t: reports.append((threading.current_thread(), d, t)),
            timeout=T,
        )
        th.join(T)
        assert not errors, errors
        assert path == str(inbox / what.name)
        if check is None:
            assert Path(path).read_bytes() == data
        else:
            assert read_tree(Path(path)) == check
        assert reports and all(r[0] is main for r in reports)
        assert reports[-1][1] == reports[-1][2]
        assert sent and all(r[0] is th for r in sent)
    assert leftovers(inbox) == []


def test_blocking_receiver_gets_a_text(relay_url):
    codes, out = [], {}

    async def send():
        w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
        w.allocate_code()
        codes.append(await w.get_code())
        await asyncio.wait_for(w.send_text("a text for a file receiver"), T)
        out["close"] = await asyncio.wait_for(w.close(), T)

    th = threading.Thread(target=lambda: asyncio.run(send()))
    th.start()
    deadline = time.monotonic() + T
    while not codes and time.monotonic() < deadline:
        time.sleep(0.01)
    r = Receiver(codes[0], rendezvous=relay_url, timeout=T)
    offer = r.get_offer()
    assert (offer.kind, offer.text) == ("text", "a text for a file receiver")
    assert r.close() == "happy"
    th.join(T)
    assert out == {"close": "happy"}


def test_blocking_receiver_inspects_and_refuses(relay_url, tmp_path):
    src = tmp_path / "x.bin"
    make_file(src, 100)
    s = Sender(src, rendezvous=relay_url, timeout=T)
    code = s.start()
    errors = []

    def finish():
        try:
            s.finish()
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=finish)
    th.start()
    seen = []

    def accept(offer):
        seen.append((offer.kind, offer.name, offer.size))
        return False

    with pytest.raises(TransferError):
        receive_file(code, tmp_path, accept=accept, rendezvous=relay_url, timeout=T)
    th.join(T)
    assert seen == [("file", "x.bin", 100)]
    assert len(errors) == 1 and isinstance(errors[0], TransferError), errors


def test_blocking_receiver_class_and_overwrite(relay_url, tmp_path):
    src = tmp_path / "src" / "f.txt"
    src.parent.mkdir()
    make_file(src, 1234)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "f.txt").write_bytes(b"old")
    s = Sender(src, rendezvous=relay_url, code="%d-blocking-class" % random.randint(100, 999), timeout=T)
    code = s.start()
    th = threading.Thread(target=s.finish)
    th.start()
    r = Receiver(code, rendezvous=relay_url, timeout=T)
    offer = r.get_offer()
    assert offer.kind == "file"
    assert offer.accept(inbox, overwrite=True) == str(inbox / "f.txt")
    assert r.close() == "happy"
    th.join(T)
    assert (inbox / "f.txt").read_bytes() == src.read_bytes()


BLOCKING_CHILD = r"""
import signal
# As at a terminal: a runner started in the background (SIGINT ignored) must not
# make Ctrl-C a no-op here.
signal.signal(signal.SIGINT, signal.default_int_handler)
import sys
from wormhole.transfer import receive_file
def progress(done, total):
    if done:
        print("PROGRESS", flush=True)
try:
    receive_file(sys.argv[1], sys.argv[2], rendezvous=sys.argv[3], progress=progress)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(3)
"""


def test_blocking_sender_cancel_from_another_thread(relay_url, tmp_path):
    src = big_file(tmp_path / "big.bin")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    started = threading.Event()
    s = Sender(src, rendezvous=relay_url, timeout=T, progress=lambda d, t: started.set())
    code = s.start()
    errors = []

    def receive():
        try:
            receive_file(code, inbox, rendezvous=relay_url, timeout=T)
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=receive)
    th.start()
    threading.Timer(0, lambda: started.wait(T) and s.cancel()).start()
    with pytest.raises(WormholeCancelled):
        s.finish()
    th.join(T)
    assert len(errors) == 1 and isinstance(errors[0], WormholeError), errors
    assert list(inbox.iterdir()) == []


def test_blocking_ctrl_c_cancels_and_cleans_up(relay_url, tmp_path):
    src = big_file(tmp_path / "big.bin")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    s = Sender(src, rendezvous=relay_url, timeout=T)
    code = s.start()
    errors = []

    def finish():
        try:
            s.finish()
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=finish)
    th.start()
    p = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_CHILD, code, str(inbox), relay_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(HERE),
    )
    try:
        line = p.stdout.readline()
        assert line == "PROGRESS\n", line + p.stderr.read()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=T)
        assert p.returncode == 3, out + err
        assert "INTERRUPTED" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    th.join(SENDER_NOTICES)
    if th.is_alive():
        import warnings

        warnings.warn("the sender did not notice the interrupted receiver; cancelling it")
        s.cancel()
        th.join(T)
    assert len(errors) == 1 and isinstance(errors[0], WormholeError), errors
    assert list(inbox.iterdir()) == []


# ---------------------------------------------------------------------------------------
# Interop with the reference CLI 0.24.0 (its own venv, a subprocess)


def ref_cli(ref_venv: Path, relay_url: str, *args: str, cwd=None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("WORMHOLE_RELAY_URL", None)
    return subprocess.Popen(
        [str(ref_venv / "bin" / "wormhole"), "--relay-url", relay_url, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


async def finish(p: subprocess.Popen):
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: p.communicate(timeout=T)
    )


def kill(p):
    if p.poll() is None:
        p.kill()
        p.wait()


@pytest.mark.asyncio
@pytest.mark.parametrize("what", ["file", "empty", "directory"])
async def test_receive_from_reference_sender(ref_venv, relay_url, tmp_path, what):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    if what == "directory":
        src = src_dir / "tree"
        src.mkdir()
        expected = make_tree(src)
    else:
        src = src_dir / "payload.bin"
        expected = make_file(src, 0 if what == "empty" else 1024 * 1024 + 3)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    code = "%d-purple-sausages" % random.randint(100, 999)
    p = ref_cli(ref_venv, relay_url, "send", "--hide-progress", "--no-qr", "--code", code, str(src))
    try:
        w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
        w.set_code(code)
        offer = await asyncio.wait_for(w.receive_offer(), T)
        assert offer.kind == ("directory" if what == "directory" else "file")
        assert offer.name == src.name
        path = Path(await asyncio.wait_for(offer.accept(inbox), T))
        assert await asyncio.wait_for(w.close(), T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, out + err
        if what == "directory":
            # the reference's zip omits empty directories
            assert read_tree(path) == expected
        else:
            assert path.read_bytes() == expected
    finally:
        kill(p)


@pytest.mark.asyncio
@pytest.mark.parametrize("what", ["file", "empty", "directory"])
async def test_send_to_reference_receiver(ref_venv, relay_url, tmp_path, what):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    if what == "directory":
        src = src_dir / "tree"
        src.mkdir()
        expected = make_tree(src)
    else:
        src = src_dir / "payload.bin"
        expected = make_file(src, 0 if what == "empty" else 1024 * 1024 + 3)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    w.allocate_code()
    code = await asyncio.wait_for(w.get_code(), T)
    reports = []
    sending = w.send_file(src, progress=lambda d, t: reports.append((d, t)))
    p = ref_cli(
        ref_venv, relay_url, "receive", "--hide-progress", "--accept-file", "-o", str(inbox / src.name), code
    )
    try:
        await asyncio.wait_for(sending, T)
        assert await asyncio.wait_for(w.close(), T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, out + err
        got = inbox / src.name
        if what == "directory":
            assert read_tree(got) == expected
        else:
            assert got.read_bytes() == expected
        assert reports and reports[-1][0] == reports[-1][1]
    finally:
        kill(p)


def test_blocking_send_to_reference_receiver(ref_venv, relay_url, tmp_path):
    src = tmp_path / "blocking.bin"
    data = make_file(src, 200_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    procs = []

    def start_receiver(code):
        procs.append(
            ref_cli(ref_venv, relay_url, "receive", "--hide-progress", "--accept-file", "-o", str(inbox / "blocking.bin"), code)
        )

    try:
        send_file(src, on_code=start_receiver, rendezvous=relay_url, timeout=T)
        out, err = procs[0].communicate(timeout=T)
        assert procs[0].returncode == 0, out + err
        assert (inbox / "blocking.bin").read_bytes() == data
    finally:
        for p in procs:
            kill(p)


def test_blocking_receive_from_reference_sender(ref_venv, relay_url, tmp_path):
    src = tmp_path / "from-ref.txt"
    data = make_file(src, 70_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    code = "%d-purple-sausages" % random.randint(100, 999)
    p = ref_cli(ref_venv, relay_url, "send", "--hide-progress", "--no-qr", "--code", code, str(src))
    try:
        path = receive_file(code, inbox, rendezvous=relay_url, timeout=T)
        out, err = p.communicate(timeout=T)
        assert p.returncode == 0, out + err
        assert hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(data).digest()
    finally:
        kill(p)


@pytest.mark.asyncio
async def test_reference_sender_through_transit_relay(ref_venv, relay_url, transit_helper, tmp_path):
    src = tmp_path / "via-relay.bin"
    data = make_file(src, 300_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    code = "%d-purple-sausages" % random.randint(100, 999)
    p = ref_cli(
        ref_venv, relay_url, "--transit-helper", transit_helper,
        "send", "--no-listen", "--hide-progress", "--no-qr", "--code", code, str(src),
    )
    try:
        w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
        w.set_code(code)
        offer = await asyncio.wait_for(w.receive_offer(no_listen=True), T)
        path = await asyncio.wait_for(offer.accept(inbox), T)
        assert await asyncio.wait_for(w.close(), T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, out + err
        assert "relay" in err, err  # the reference says how it connected
        assert Path(path).read_bytes() == data
    finally:
        kill(p)


@pytest.mark.asyncio
async def test_send_to_reference_receiver_through_transit_relay(ref_venv, relay_url, transit_helper, tmp_path):
    src = tmp_path / "via-relay.bin"
    data = make_file(src, 300_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    w.allocate_code()
    code = await asyncio.wait_for(w.get_code(), T)
    sending = w.send_file(src, transit_helper=transit_helper, no_listen=True)
    p = ref_cli(
        ref_venv, relay_url, "receive", "--no-listen", "--hide-progress", "--accept-file",
        "-o", str(inbox / src.name), code,
    )
    try:
        await asyncio.wait_for(sending, T)
        assert await asyncio.wait_for(w.close(), T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, out + err
        assert (inbox / src.name).read_bytes() == data
    finally:
        kill(p)
