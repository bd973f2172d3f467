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


def _tree(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


def test_file_examples_asyncio_sender_blocking_receiver(relay_url, tmp_path):
    src = tmp_path / "report.bin"
    src.write_bytes(os.urandom(300_000))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    s = start("send_file_asyncio.py", src, relay_url)
    code = read_code(s, r"Wormhole code is: (\S+)")
    r = start("receive_file_blocking.py", code, inbox, relay_url)
    out_s, out_r = run_pair(s, r)
    assert (inbox / "report.bin").read_bytes() == src.read_bytes()
    assert "Receiving file 'report.bin' (300000 bytes)" in out_r
    assert "file sent; closing: happy" in out_s


def test_file_examples_blocking_sender_asyncio_receiver(relay_url, tmp_path):
    src = tmp_path / "folder"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b" * 1000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    s = start("send_file_blocking.py", src, relay_url)
    code = read_code(s, r"Wormhole code is: (\S+)")
    r = start("receive_file_asyncio.py", code, inbox, relay_url)
    out_s, out_r = run_pair(s, r)
    assert _tree(inbox / "folder") == _tree(src)
    assert "Received into %s" % (inbox / "folder") in out_r
    assert out_s.endswith("file sent\n")
    # A second run refuses to overwrite what arrived.
    s = start("send_file_blocking.py", src, relay_url)
    code = read_code(s, r"Wormhole code is: (\S+)")
    r = start("receive_file_asyncio.py", code, inbox, relay_url)
    try:
        out_r, _ = r.communicate(timeout=60)
        s.communicate(timeout=60)
    finally:
        for p in (s, r):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert r.returncode == 1 and "refusing to overwrite" in out_r
    assert s.returncode != 0


def test_file_example_to_reference_cli(relay_url, ref_venv, tmp_path):
    src = tmp_path / "for-ref.txt"
    src.write_text("to the reference CLI\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    s = start("send_file_asyncio.py", src, relay_url)
    code = read_code(s, r"Wormhole code is: (\S+)")
    r = subprocess.Popen(
        [
            str(ref_venv / "bin" / "wormhole"),
            "--relay-url",
            relay_url,
            "receive",
            "--hide-progress",
            "--accept-file",
            "-o",
            str(inbox / "for-ref.txt"),
            code,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_pair(s, r)
    assert (inbox / "for-ref.txt").read_text() == "to the reference CLI\n"
