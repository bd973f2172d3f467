"""input_with_completion on a real terminal (a pty): Tab completes through readline."""

import asyncio
import os
import pty
import select
import subprocess
import sys
import time

import pytest

import wormhole

from conftest import HERE

T = 20

CHILD = r'''
import asyncio, sys
import wormhole

async def main(url):
    w = wormhole.create("pty-test", url)
    used = await wormhole.input_with_completion("code> ", w.input_code())
    code = await w.get_code()
    print("\nRESULT used=%s code=%s" % (used, code), flush=True)
    w.send_message(b"from the terminal")
    await w.get_verifier()
    print("CLOSED", await w.close(), flush=True)

asyncio.run(main(sys.argv[1]))
'''


def _read_until(fd, needle, timeout=T):
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for %r; got %r" % (needle, buf))
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


@pytest.mark.asyncio
async def test_tab_completion_on_a_pty(relay_url):
    pytest.importorskip("readline")
    a = wormhole.create("pty-test", relay_url)
    a.allocate_code()
    code = await asyncio.wait_for(a.get_code(), T)
    nameplate, w1, w2 = code.split("-")

    master, slave = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, relay_url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=str(HERE),
        env=dict(os.environ, TERM="dumb"),
        close_fds=True,
    )
    os.close(slave)
    loop = asyncio.get_running_loop()

    def interact():
        _read_until(master, b"code> ")
        # The nameplate and the first word in full, then Tab: the only completion adds
        # the "-" that separates the words.
        os.write(master, ("%s-%s\t" % (nameplate, w1)).encode())
        _read_until(master, ("%s-%s-" % (nameplate, w1)).encode())
        os.write(master, (w2 + "\r").encode())
        return _read_until(master, b"CLOSED")

    try:
        out = await loop.run_in_executor(None, interact)
        assert ("RESULT used=True code=%s" % code).encode() in out, out
        assert await asyncio.wait_for(a.get_message(), T) == b"from the terminal"
        assert await asyncio.wait_for(a.close(), T) == "happy"
        assert await loop.run_in_executor(None, p.wait, T) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
