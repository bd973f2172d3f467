"""Shared fixtures: a reference mailbox server on loopback, and helpers to run
subprocesses (Twisted scenarios, the reference CLI, interpreter-exit checks)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import wormhole

HERE = Path(__file__).resolve().parent
APPID = "example.com/wormhole-python-tests"

# The module under test must be the installed wheel, never the reference package.
assert "magic_wormhole" not in str(Path(wormhole.__file__)), wormhole.__file__
assert hasattr(wormhole, "_native"), "this is not our wormhole module"


def _ref_venv() -> Path:
    v = os.environ.get("WORMHOLE_REF_VENV")
    if not v:
        pytest.fail("WORMHOLE_REF_VENV is not set (run through scripts/suites/python.sh)")
    return Path(v)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start listening")


@contextlib.contextmanager
def listening_process(argv, port: int, stderr=subprocess.DEVNULL) -> Iterator[None]:
    """Run ``argv`` until it accepts connections on 127.0.0.1:``port``, then yield; stop
    it after (SIGTERM, then SIGKILL after 10 s)."""
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_listening(port, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def twist_server(ref_venv: Path, plugin: str, *args: str) -> Iterator[int]:
    """Run ``twist PLUGIN --port=tcp:PORT:interface=127.0.0.1 ARGS…`` from the reference
    venv on a free port; yields the port once it accepts connections, stops it after."""
    port = _free_port()
    argv = [ref_venv / "bin" / "twist", plugin, "--port=tcp:%d:interface=127.0.0.1" % port, *args]
    with listening_process(argv, port):
        yield port


@pytest.fixture(scope="session")
def ref_venv() -> Path:
    """The reference peers' venv (magic-wormhole 0.24.0 CLI and the mailbox server)."""
    return _ref_venv()


@pytest.fixture(scope="session")
def relay_url(ref_venv: Path):
    """``ws://127.0.0.1:PORT/v1`` of a reference mailbox server (in-memory database)."""
    with twist_server(ref_venv, "wormhole-mailbox", "--channel-db=:memory:") as port:
        yield "ws://127.0.0.1:%d/v1" % port


@pytest.fixture
def appid() -> str:
    return APPID


def run_python(code_or_path, *args, env=None, timeout=60.0, input=None):
    """Run our venv's Python on a script file or a ``-c`` string; returns CompletedProcess."""
    cmd = [sys.executable]
    if isinstance(code_or_path, Path):
        cmd.append(str(code_or_path))
    else:
        cmd += ["-c", code_or_path]
    cmd += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input,
        cwd=str(HERE),
    )
