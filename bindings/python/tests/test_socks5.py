"""``create(..., socks5=...)``: every connection through a SOCKS5 proxy (Debian's
microsocks, which logs each destination), and clear errors for malformed proxies."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import wormhole
from wormhole.errors import ServerConnectionError

from conftest import _free_port, listening_process

T = 20


@pytest.fixture
def socks5():
    """``(address, log path)`` of a microsocks on 127.0.0.1, logging to a file."""
    exe = shutil.which("microsocks") or "/usr/bin/microsocks"
    if not os.path.exists(exe):
        pytest.fail("microsocks is not installed (scripts/setup-peers.sh installs it)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "socks.log"
        with open(log, "wb") as f, listening_process(
            [exe, "-i", "127.0.0.1", "-p", port], port, stderr=f
        ):
            yield "127.0.0.1:%d" % port, log


@pytest.mark.asyncio
async def test_messages_through_the_proxy(appid, relay_url, socks5):
    proxy, log = socks5
    a = wormhole.create(appid, relay_url, socks5=proxy)
    b = wormhole.create(appid, relay_url, socks5="socks5h://" + proxy)
    a.allocate_code()
    b.set_code(await asyncio.wait_for(a.get_code(), T))
    a.send_message(b"through the proxy")
    assert await asyncio.wait_for(b.get_message(), T) == b"through the proxy"
    await asyncio.wait_for(a.close(), T)
    await asyncio.wait_for(b.close(), T)
    port = relay_url.rsplit(":", 1)[1].split("/")[0]
    connects = [l for l in log.read_text().splitlines() if "connected to 127.0.0.1:%s" % port in l]
    assert len(connects) >= 2, log.read_text()


@pytest.mark.asyncio
async def test_a_proxy_that_is_not_there(appid, relay_url):
    w = wormhole.create(appid, relay_url, socks5="127.0.0.1:1", connect_timeout=5)
    with pytest.raises(ServerConnectionError) as e:
        await asyncio.wait_for(w.get_welcome(), T)
    assert "SOCKS5 proxy 127.0.0.1:1" in str(e.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["nohost", "http://127.0.0.1:1080", "127.0.0.1:0", "u@h:1"])
async def test_malformed_proxies(appid, relay_url, bad):
    with pytest.raises(ValueError, match="SOCKS5"):
        wormhole.create(appid, relay_url, socks5=bad)
