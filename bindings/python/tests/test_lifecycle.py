"""Lifetime: a wormhole garbage-collected mid-exchange, or left open at interpreter
exit, neither crashes nor hangs (each case in a subprocess, several times)."""

import pytest

from conftest import run_python

GC_MID_EXCHANGE = r'''
import asyncio, gc, sys
import wormhole

async def main(url):
    a = wormhole.create("gc-test", url)
    b = wormhole.create("gc-test", url)
    a.allocate_code()
    b.set_code(await a.get_code())
    a.send_message(b"hello")
    assert await b.get_message() == b"hello"
    pending = a.get_message()        # outstanding when a is dropped
    del a
    gc.collect()
    # b still works and its close finishes (a's side went away or is still there).
    try:
        await asyncio.wait_for(b.close(), 20)
    except wormhole.errors.WormholeError:
        pass
    # Drop a pending future too, and a wormhole that never connected anywhere.
    del pending
    c = wormhole.create("gc-test", "ws://127.0.0.1:9/v1")
    del c
    gc.collect()
    await asyncio.sleep(0.2)
    print("done", flush=True)

asyncio.run(main(sys.argv[1]))
'''

GC_UNAWAITED = r'''
import asyncio, gc, sys
import wormhole

async def main(url):
    for _ in range(20):
        w = wormhole.create("gc-test", url)
        w.allocate_code()
        w.get_code()
        w.get_message()
        h = None
        del w
    gc.collect()
    x = wormhole.create("gc-test", url)
    h = x.input_code()
    del x
    h.refresh_nameplates()
    del h
    gc.collect()
    print("done", flush=True)

asyncio.run(main(sys.argv[1]))
'''

OPEN_AT_EXIT_ASYNCIO = r'''
import asyncio, sys
import wormhole

async def main(url):
    global w1, w2
    w1 = wormhole.create("exit-test", url)
    w1.allocate_code()
    await w1.get_code()
    w1.get_message()                # pending at exit
    w2 = wormhole.create("exit-test", url)
    w2.set_code("4-open-at-exit")
    print("done", flush=True)

asyncio.run(main(sys.argv[1]))
'''

OPEN_AT_EXIT_LOOP_RUNNING = r'''
import asyncio, os, sys
import wormhole

async def main(url):
    ws = []
    for i in range(5):
        w = wormhole.create("exit-test", url)
        w.allocate_code()
        ws.append(w)
    await asyncio.gather(*(w.get_code() for w in ws))
    for w in ws:
        w.get_message()
    print("done", flush=True)
    sys.exit(0)   # leave with everything open and events still arriving

asyncio.run(main(sys.argv[1]))
'''

OPEN_AT_EXIT_TWISTED_DELEGATED = r'''
import sys
from twisted.internet import task, defer
import wormhole

class D:
    def wormhole_got_code(self, code):
        pass

def main(reactor, url):
    global ws
    ws = [wormhole.create("exit-test", url, reactor, delegate=D()) for _ in range(5)]
    for w in ws:
        w.allocate_code()
    print("done", flush=True)
    return task.deferLater(reactor, 0.3, lambda: None)

task.react(main, [sys.argv[1]])
'''

BLOCKED_THREAD_AT_EXIT = r'''
import sys, threading, time
from wormhole.transcribe import Initiator

def block():
    i = Initiator("exit-test", b"x", rendezvous=sys.argv[1])
    i.start()
    i.finish()      # nobody joins: still blocked when the interpreter exits

threading.Thread(target=block, daemon=True).start()
time.sleep(1.0)
print("done", flush=True)
'''

TRANSFER_AT_EXIT = r'''
import asyncio, os, sys, tempfile, threading
import wormhole
from wormhole.transfer import Sender

tmp = tempfile.mkdtemp()
src = os.path.join(tmp, "big.bin")
with open(src, "wb") as f:
    f.truncate(1 << 30)

async def main(url):
    a = wormhole.create(wormhole.TRANSFER_APPID, url)
    b = wormhole.create(wormhole.TRANSFER_APPID, url)
    a.allocate_code()
    b.set_code(await a.get_code())
    started = asyncio.Event()
    a.send_file(src, progress=lambda d, t: started.set())
    offer = await b.receive_offer()
    offer.accept(os.path.join(tmp, "out.bin"), progress=lambda d, t: None)
    await asyncio.wait_for(started.wait(), 30)
    # Leave with both transfers (and their progress reports) running.

asyncio.run(main(sys.argv[1]))
# And a blocking transfer in a daemon thread, still blocked at exit.
s = Sender(src, rendezvous=sys.argv[1])
s.start()
threading.Thread(target=s.finish, daemon=True).start()
print("done", flush=True)
'''

OFFER_DROPPED = r'''
import asyncio, gc, os, sys, tempfile
import wormhole

async def main(url):
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "f.bin")
    with open(src, "wb") as f:
        f.write(b"x" * 1000)
    a = wormhole.create(wormhole.TRANSFER_APPID, url)
    b = wormhole.create(wormhole.TRANSFER_APPID, url)
    a.allocate_code()
    b.set_code(await a.get_code())
    sending = a.send_file(src)
    offer = await b.receive_offer()
    del offer          # undecided: refused when collected
    gc.collect()
    try:
        await asyncio.wait_for(sending, 20)
        raise AssertionError("the sender did not see the refusal")
    except wormhole.errors.TransferError:
        pass
    await a.close()
    await b.close()
    print("done", flush=True)

asyncio.run(main(sys.argv[1]))
'''

CASES = {
    "gc_mid_exchange": GC_MID_EXCHANGE,
    "gc_unawaited": GC_UNAWAITED,
    "open_at_exit_asyncio": OPEN_AT_EXIT_ASYNCIO,
    "open_at_exit_loop_running": OPEN_AT_EXIT_LOOP_RUNNING,
    "open_at_exit_twisted_delegated": OPEN_AT_EXIT_TWISTED_DELEGATED,
    "blocked_thread_at_exit": BLOCKED_THREAD_AT_EXIT,
    "transfer_at_exit": TRANSFER_AT_EXIT,
    "offer_dropped": OFFER_DROPPED,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_crash_no_hang(case, relay_url):
    if "twisted" in case:
        pytest.importorskip("twisted")
    for _ in range(3):
        r = run_python(CASES[case], relay_url, timeout=60)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert r.stdout.strip().endswith("done"), r.stdout
        assert "Fatal Python error" not in r.stderr, r.stderr
        assert "panicked" not in r.stderr, r.stderr
