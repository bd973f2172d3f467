"""Interop with the reference CLI (magic-wormhole 0.24.0), run from its own venv as a
subprocess: PROTOCOL §8 text offer/answer in both directions."""

import asyncio
import os
import random
import subprocess
from pathlib import Path

import pytest

import wormhole

T = 60


def ref_cli(ref_venv: Path, relay_url: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("WORMHOLE_RELAY_URL", None)
    return subprocess.Popen(
        [str(ref_venv / "bin" / "wormhole"), "--relay-url", relay_url, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def finish(p: subprocess.Popen):
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: p.communicate(timeout=T)
    )


@pytest.mark.asyncio
async def test_receive_text_from_reference_sender(ref_venv, relay_url):
    text = "hello from the reference, ünïcode ✓"
    p = ref_cli(ref_venv, relay_url, "send", "--text", text, "--code", "7-purple-sausages")
    try:
        w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
        w.set_code("7-purple-sausages")
        got = await asyncio.wait_for(w.receive_text(), T)
        assert got == text
        assert await asyncio.wait_for(w.close(), T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, err
        assert "text message sent" in (out + err)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.asyncio
async def test_send_text_to_reference_receiver(ref_venv, relay_url):
    text = "hello from Python on Rust"
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    w.allocate_code()
    code = await asyncio.wait_for(w.get_code(), T)
    sent = w.send_text(text)
    p = ref_cli(ref_venv, relay_url, "receive", "--only-text", code)
    try:
        assert await asyncio.wait_for(sent, T) is None  # the receiver acknowledged
        assert await asyncio.wait_for(w.close(), T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, err
        assert out == text + "\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.asyncio
async def test_text_offer_by_hand_over_messages(ref_venv, relay_url):
    """The same exchange written in Python over send_message/get_message."""
    import json

    code = "%d-purple-sausages" % random.randint(100, 999)
    p = ref_cli(ref_venv, relay_url, "receive", "--only-text", code)
    try:
        w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
        w.set_code(code)
        w.send_message(json.dumps({"offer": {"message": "by hand"}}).encode())
        answer = json.loads(await asyncio.wait_for(w.get_message(), T))
        assert answer == {"answer": {"message_ack": "ok"}}
        assert await asyncio.wait_for(w.close(), T) == "happy"
        out, err = await finish(p)
        assert p.returncode == 0, err
        assert out == "by hand\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_blocking_receiver_against_reference_sender(ref_venv, relay_url):
    """transcribe's Receiver is a plain message exchange; the reference CLI is not a
    transcribe peer, so this only checks the reference rejects nothing we send: our
    Receiver gets the CLI's first message (its text offer) as its blob."""
    import json

    code = "%d-purple-sausages" % random.randint(100, 999)
    p = ref_cli(ref_venv, relay_url, "send", "--text", "blob?", "--code", code)
    try:
        from wormhole.transcribe import Receiver

        r = Receiver(
            wormhole.TRANSFER_APPID,
            code,
            json.dumps({"answer": {"message_ack": "ok"}}).encode(),
            rendezvous=relay_url,
            timeout=T,
        )
        blob = r.finish()
        assert json.loads(blob) == {"offer": {"message": "blob?"}}
        out, err = p.communicate(timeout=T)
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
