"""``wormhole.tor_manager.get_tor()`` and ``create(..., tor=)`` against a real ``tor``
(Debian's) with its network disabled: the control port with cookie authentication, the
mailbox connection going to tor's SOCKS port, and the reference's refusals."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import wormhole
from wormhole.errors import NoTorError, ServerConnectionError
from wormhole.tor_manager import TorManager, get_tor

from conftest import _free_port, listening_process

T = 20


@pytest.fixture
def offline_tor():
    """``(control endpoint, socks port)`` of a tor with ``DisableNetwork 1``."""
    exe = shutil.which("tor") or "/usr/sbin/tor"
    if not os.path.exists(exe):
        pytest.fail("tor is not installed (scripts/setup-peers.sh installs it)")
    socks, control = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as d:
        rc = Path(d) / "torrc"
        rc.write_text(
            "DataDirectory %s/data\nDisableNetwork 1\nSocksPort 127.0.0.1:%d\n"
            "ControlPort 127.0.0.1:%d\nCookieAuthentication 1\n" % (d, socks, control)
        )
        with listening_process([exe, "-f", rc], control):
            yield "tcp:127.0.0.1:%d" % control, socks


@pytest.mark.asyncio
async def test_get_tor_and_create(appid, offline_tor):
    control, socks = offline_tor
    said = io.StringIO()
    tor = await asyncio.wait_for(get_tor(None, tor_control_port=control, stderr=said), T)
    assert isinstance(tor, TorManager)
    assert tor.socks_address == "127.0.0.1:%d" % socks
    assert tor.found == "control-port"
    assert said.getvalue() == " using Tor via control port at %s\n" % control
    # The mailbox connection goes to tor (whose network is off): the error names its port.
    w = wormhole.create(appid, "ws://mailbox.example.org:4000/v1", tor=tor, connect_timeout=10)
    with pytest.raises(ServerConnectionError) as e:
        await asyncio.wait_for(w.get_welcome(), T)
    assert "SOCKS5 proxy 127.0.0.1:%d" % socks in str(e.value)
    # A numeric mailbox host is refused at once, like the reference.
    with pytest.raises(ValueError, match="isn't going to work over Tor"):
        wormhole.create(appid, "ws://127.0.0.1:4000/v1", tor=tor)
    # stop() leaves a tor it did not launch alone.
    tor.stop()
    again = await asyncio.wait_for(get_tor(None, tor_control_port=control, stderr=said), T)
    assert again.socks_address == tor.socks_address


@pytest.mark.asyncio
async def test_launch_that_cannot_bootstrap():
    with pytest.raises(NoTorError, match="bootstrap"):
        await asyncio.wait_for(
            get_tor(None, launch_tor=True, launch_config=["DisableNetwork 1"], launch_timeout=3),
            T,
        )


@pytest.mark.asyncio
async def test_refusals(appid, relay_url):
    with pytest.raises(ValueError, match="cannot combine"):
        get_tor(None, launch_tor=True, tor_control_port="tcp:127.0.0.1:9051")
    with pytest.raises(TypeError):
        get_tor(None, launch_tor="yes")
    with pytest.raises(NoTorError):
        wormhole.create(appid, relay_url, tor=object())
    port = _free_port()
    with pytest.raises(NoTorError, match="Tor control port"):
        await asyncio.wait_for(get_tor(None, tor_control_port="tcp:127.0.0.1:%d" % port), T)
