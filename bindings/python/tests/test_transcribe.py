"""The blocking ``wormhole.transcribe`` API: no event loop, GIL released, Ctrl-C."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from wormhole.errors import KeyFormatError, WrongPasswordError
from wormhole.transcribe import Initiator, Receiver, default_rendezvous

from conftest import HERE


def test_exchange_in_threads(appid, relay_url):
    i = Initiator(appid, b"from initiator", rendezvous=relay_url, timeout=30)
    code = i.start()
    assert code.split("-")[0].isdigit()
    out = {}

    def recv():
        out["r"] = Receiver(appid, code, b"from receiver", rendezvous=relay_url).finish()

    t = threading.Thread(target=recv)
    t.start()
    assert i.finish() == b"from receiver"
    t.join(30)
    assert out["r"] == b"from initiator"


def test_gil_released_while_waiting(appid, relay_url):
    """While start()/finish() block, other Python threads keep running."""
    i = Initiator(appid, b"a", rendezvous=relay_url, timeout=30)
    code = i.start()
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    def late_receiver():
        time.sleep(0.5)  # the initiator is blocked in finish() meanwhile
        Receiver(appid, code, b"b", rendezvous=relay_url).finish()

    t1 = threading.Thread(target=ticker)
    t2 = threading.Thread(target=late_receiver)
    t1.start()
    t2.start()
    try:
        assert i.finish() == b"b"
    finally:
        stop.set()
        t1.join()
        t2.join(30)
    assert len(ticks) > 20, len(ticks)


def test_wrong_code(appid, relay_url):
    i = Initiator(appid, b"a", rendezvous=relay_url, timeout=30)
    code = i.start()
    err = {}

    def recv():
        try:
            Receiver(appid, code.split("-")[0] + "-wrong-code", b"b", rendezvous=relay_url, timeout=30).finish()
        except Exception as e:
            err["r"] = e

    t = threading.Thread(target=recv)
    t.start()
    with pytest.raises(WrongPasswordError):
        i.finish()
    t.join(30)
    assert isinstance(err.get("r"), WrongPasswordError)


def test_key_format_error(appid, relay_url):
    with pytest.raises(KeyFormatError):
        Receiver(appid, "purple-sausages", b"x", rendezvous=relay_url).finish()


def test_timeout(appid, relay_url):
    from wormhole.errors import Timeout

    i = Initiator(appid, b"a", rendezvous=relay_url, timeout=0.5)
    i.start()
    t0 = time.monotonic()
    with pytest.raises(Timeout):
        i.finish()
    assert time.monotonic() - t0 < 10


def test_finish_before_start(appid, relay_url):
    with pytest.raises(RuntimeError):
        Initiator(appid, b"a", rendezvous=relay_url).finish()
    with pytest.raises(TypeError):
        Initiator(appid, "not bytes", rendezvous=relay_url)


def test_default_rendezvous_from_environment(monkeypatch):
    monkeypatch.setenv("WORMHOLE_RELAY_URL", "ws://127.0.0.1:9/v1")
    assert default_rendezvous() == "ws://127.0.0.1:9/v1"
    monkeypatch.delenv("WORMHOLE_RELAY_URL")
    assert default_rendezvous().startswith("ws://relay.magic-wormhole.io")


CTRL_C = r'''
import signal
# As at a terminal: a runner started in the background (SIGINT ignored) must not
# make Ctrl-C a no-op here.
signal.signal(signal.SIGINT, signal.default_int_handler)
import sys, time
from wormhole.transcribe import Initiator
i = Initiator("appid-ctrl-c", b"x", rendezvous=sys.argv[1])
print("code", i.start(), flush=True)
t0 = time.monotonic()
try:
    i.finish()   # nobody joins: blocks until interrupted
except KeyboardInterrupt:
    print("interrupted after %.1f s" % (time.monotonic() - t0), flush=True)
    sys.exit(7)
'''


def test_ctrl_c_interrupts(relay_url):
    p = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, relay_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(HERE),
    )
    try:
        line = p.stdout.readline()
        assert line.startswith("code "), line + p.stderr.read()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 7, (out, err)
    assert "interrupted after" in out
