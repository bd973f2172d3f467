"""The type stub matches the native module (mypy stubtest) and the package type-checks
under ``mypy --strict``; every public name has a docstring."""

import inspect
import subprocess
import sys

import pytest

import wormhole
import wormhole.errors
import wormhole.tor_manager
import wormhole.transcribe
import wormhole.transfer

from conftest import HERE

SOURCE = HERE.parent / "python"


def _mypy(*args, cwd):
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=str(cwd), timeout=300
    )


def test_stubtest_native(tmp_path):
    r = _mypy("mypy.stubtest", "wormhole._native", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_package():
    r = _mypy("mypy", "--strict", "--no-incremental", "-p", "wormhole", cwd=SOURCE)
    assert r.returncode == 0, r.stdout + r.stderr


def _public(obj):
    for name in getattr(obj, "__all__", None) or dir(obj):
        if not name.startswith("_"):
            yield name, getattr(obj, name)


@pytest.mark.parametrize(
    "module",
    [wormhole, wormhole.errors, wormhole.tor_manager, wormhole.transcribe, wormhole.transfer],
)
def test_docstrings(module):
    assert module.__doc__
    missing = []
    for name, value in _public(module):
        if inspect.isclass(value) or inspect.isfunction(value):
            if not inspect.getdoc(value):
                missing.append(name)
            if inspect.isclass(value) and not issubclass(value, BaseException):
                for mname, m in vars(value).items():
                    if not mname.startswith("_") and callable(m) and not m.__doc__:
                        missing.append("%s.%s" % (name, mname))
    assert not missing, missing
