"""The seed documents' own code examples, run against the local server.

The Twisted examples of the magic-wormhole API run through seed_examples.py; the
blocking transcribe examples run here as standalone scripts, with the rendezvous server
given through $WORMHOLE_RELAY_URL (the snippets name none)."""

import re
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import HERE, run_python

SCRIPT = HERE / "seed_examples.py"


@pytest.mark.parametrize("name", ["quick", "delegated", "deferred"])
def test_api_example(name, relay_url):
    pytest.importorskip("twisted")
    r = run_python(SCRIPT, name, relay_url)
    assert r.returncode == 0 and "%s OK" % name in r.stdout, r.stdout + r.stderr


def test_api_input_with_completion_example(relay_url):
    pytest.importorskip("twisted")
    r = run_python(SCRIPT, "input", relay_url, input="8-purple-sausages\n")
    assert r.returncode == 0 and "input OK" in r.stdout, r.stdout + r.stderr


def test_api_welcome_example(relay_url):
    pytest.importorskip("twisted")
    r = run_python(SCRIPT, "welcome", relay_url, input="9-purple-sausages\n")
    assert r.returncode == 0 and "welcome OK" in r.stdout, r.stdout + r.stderr


# From wormhole-sync-transcribe-api.txt; only the Initiator's print got its missing ")".
INITIATOR = '''
from wormhole.transcribe import Initiator
blob = b"initiator's blob"
i = Initiator("appid", blob)
print("Invitation Code: %s" % i.start())
theirblob = i.finish()
print("Their blob: %s" % theirblob.decode("ascii"))
'''

RECEIVER = '''
import sys
from wormhole.transcribe import Receiver
blob = b"receiver's blob"
code = sys.argv[1]
r = Receiver("appid", code, blob)
theirblob = r.finish()
print("Their blob: %s" % theirblob.decode("ascii"))
'''


def test_transcribe_examples(relay_url, tmp_path):
    init = tmp_path / "initiator.py"
    init.write_text(textwrap.dedent(INITIATOR))
    recv = tmp_path / "receiver.py"
    recv.write_text(textwrap.dedent(RECEIVER))
    env = {"WORMHOLE_RELAY_URL": relay_url, "PYTHONUNBUFFERED": "1"}
    import os

    full_env = dict(os.environ, **env)
    p = subprocess.Popen(
        [sys.executable, str(init)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    try:
        line = p.stdout.readline()
        m = re.match(r"Invitation Code: (\d+-\S+)$", line.strip())
        assert m, line + p.stderr.read()
        r = run_python(recv, m.group(1), env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "Their blob: initiator's blob\n"
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert out == "Their blob: receiver's blob\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
