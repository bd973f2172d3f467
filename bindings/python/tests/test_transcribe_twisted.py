"""The seed's Twisted-friendly transcribe flow: against itself, against the blocking form
(both directions) and against the reference library (magic-wormhole 0.24.0)."""

import subprocess
import sys

import pytest

from conftest import HERE, run_python

pytest.importorskip("twisted")

SCRIPT = HERE / "transcribe_twisted.py"
APPID = "example.com/wormhole-python-tests/transcribe"

# The reference library's side of a transcribe exchange: the wormhole-sync protocol is one
# message each way on the same app id.
REFERENCE = r'''
import sys
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import react
import wormhole

@inlineCallbacks
def main(reactor, appid, url, code):
    w = wormhole.create(appid, url, reactor)
    if code == "allocate":
        w.allocate_code(2)
        print("CODE", (yield w.get_code()), flush=True)
    else:
        w.set_code(code)
    w.send_message(b"from the reference")
    theirs = yield w.get_message()
    print("REFERENCE GOT", theirs.decode(), flush=True)
    yield w.close()

react(main, sys.argv[1:])
'''


@pytest.mark.parametrize(
    "scenario",
    [
        "both_twisted",
        "twisted_initiator_blocking_receiver",
        "blocking_initiator_twisted_receiver",
        "wrong_code",
        "malformed_code",
    ],
)
def test_twisted_transcribe(scenario, relay_url):
    r = run_python(SCRIPT, scenario, relay_url)
    assert r.returncode == 0 and "%s OK" % scenario in r.stdout, r.stdout + r.stderr


def _popen(argv):
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(HERE)
    )


def _code_from(p) -> str:
    line = p.stdout.readline()
    assert line.startswith("CODE "), line + p.stderr.read()
    return line.split()[1]


def _finish(p, what):
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    assert p.returncode == 0, "%s: %s %s" % (what, out, err)
    return out


def test_twisted_initiator_with_reference_receiver(ref_venv, relay_url):
    ours = _popen([sys.executable, str(SCRIPT), "initiator_for_reference", relay_url])
    try:
        code = _code_from(ours)
        ref = _popen([str(ref_venv / "bin" / "python"), "-c", REFERENCE, APPID, relay_url, code])
        assert "REFERENCE GOT from our twisted initiator" in _finish(ref, "reference")
        assert "initiator_for_reference OK" in _finish(ours, "ours")
    finally:
        ours.kill()


def test_twisted_receiver_with_reference_initiator(ref_venv, relay_url):
    ref = _popen([str(ref_venv / "bin" / "python"), "-c", REFERENCE, APPID, relay_url, "allocate"])
    try:
        code = _code_from(ref)
        ours = _popen([sys.executable, str(SCRIPT), "receiver_for_reference", relay_url, code])
        assert "receiver_for_reference OK" in _finish(ours, "ours")
        assert "REFERENCE GOT from our twisted receiver" in _finish(ref, "reference")
    finally:
        ref.kill()
