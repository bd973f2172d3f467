"""The abi3 wheel on the oldest supported CPython (3.9): a smoke test in .venv-py39,
which scripts/suites/python.sh prepares when a CPython 3.9 is available."""

import subprocess

import pytest

from conftest import HERE

VENV_MIN = HERE.parent.parent.parent / ".venv-py39"

SMOKE = r'''
import asyncio, sys, threading
assert sys.version_info[:2] == (3, 9), sys.version
import wormhole
from wormhole.transcribe import Initiator, Receiver

url = sys.argv[1]

async def main():
    a = wormhole.create("py39", url)
    b = wormhole.create("py39", url)
    a.allocate_code()
    b.set_code(await a.get_code())
    a.send_message(b"hi")
    assert await b.get_message() == b"hi"
    assert await a.get_verifier() == await b.get_verifier()
    assert await a.close() == "happy"
    assert await b.close() == "happy"

asyncio.run(main())
i = Initiator("py39", b"one", rendezvous=url)
code = i.start()
out = {}
t = threading.Thread(target=lambda: out.update(r=Receiver("py39", code, b"two", rendezvous=url).finish()))
t.start()
assert i.finish() == b"two"
t.join()
assert out["r"] == b"one"
import os, tempfile
from wormhole.transfer import receive_file
tmp = tempfile.mkdtemp()
src = os.path.join(tmp, "f.bin")
with open(src, "wb") as f:
    f.write(os.urandom(100000))
inbox = os.path.join(tmp, "inbox")
os.mkdir(inbox)
async def send_file(codes):
    w = wormhole.create(wormhole.TRANSFER_APPID, url)
    w.allocate_code()
    codes.append(await w.get_code())
    await w.send_file(src)
    assert await w.close() == "happy"
codes = []
t = threading.Thread(target=lambda: asyncio.run(send_file(codes)))
t.start()
while not codes:
    threading.Event().wait(0.01)
path = receive_file(codes[0], inbox, rendezvous=url, timeout=60)
t.join()
assert open(path, "rb").read() == open(src, "rb").read()
print("py39 OK")
'''


def test_abi3_wheel_on_python39(relay_url):
    py = VENV_MIN / "bin" / "python"
    if not py.exists():
        pytest.skip("no .venv-py39 (no CPython 3.9 when the suite was prepared)")
    r = subprocess.run(
        [str(py), "-c", SMOKE, relay_url], capture_output=True, text=True, timeout=120, cwd=str(HERE)
    )
    assert r.returncode == 0 and "py39 OK" in r.stdout, r.stdout + r.stderr
