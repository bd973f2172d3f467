"""examples/python: the send and receive programs, run against each other."""

import os
import re
import subprocess
import sys

from conftest import HERE

EXAMPLES = HERE.parent.parent.parent / "examples" / "python"


def start(name, *args, env=None):
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
    )


def read_code(p, pattern):
    line = p.stdout.readline()
    m = re.search(pattern, line)
    assert m, line + p.stderr.read()
    return m.group(1)


def run_pair(sender, receiver):
    try:
        out_r, err_r = receiver.communicate(timeout=60)
        out_s, err_s = sender.communicate(timeout=60)
    finally:
        for p in (sender, receiver):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert receiver.returncode == 0, err_r
    assert sender.returncode == 0, err_s
    return out_s, out_r


def test_asyncio_examples(relay_url):
    s = start("send_asyncio.py", relay_url, "text from the example")
    code = read_code(s, r"Wormhole code is: (\S+)")
    r = start("receive_asyncio.py", relay_url, code)
    out_s, out_r = run_pair(s, r)
    assert out_r == "text from the example\n"
    assert "text sent; closing: happy" in out_s


def test_blocking_examples(relay_url):
    s = start("send_blocking.py", relay_url, "blob one")
    code = read_code(s, r"Invitation Code: (\S+)")
    r = start("receive_blocking.py", code, relay_url, "blob two")
    out_s, out_r = run_pair(s, r)
    assert out_r == "Their blob: blob one\n"
    assert out_s.endswith("Their blob: blob two\n")


def test_asyncio_sender_to_reference_cli(relay_url, ref_venv):
    s = start("send_asyncio.py", relay_url, "to the reference")
    code = read_code(s, r"Wormhole code is: (\S+)")
    r = subprocess.Popen(
        [str(ref_venv / "bin" / "wormhole"), "--relay-url", relay_url, "receive", "--only-text", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, out_r = run_pair(s, r)
    assert out_r == "to the reference\n"
