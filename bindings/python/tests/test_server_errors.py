"""WelcomeError and ServerError from a real reference mailbox server."""

import asyncio

import pytest

import wormhole
from wormhole.errors import ServerError, WelcomeError, WormholeError

from conftest import twist_server

T = 20


@pytest.fixture(scope="module")
def refusing_relay_url(ref_venv):
    """A reference server started with --signal-error: its welcome refuses everyone."""
    with twist_server(
        ref_venv,
        "wormhole-mailbox",
        "--channel-db=:memory:",
        "--signal-error=server closed for maintenance",
    ) as port:
        yield "ws://127.0.0.1:%d/v1" % port


@pytest.mark.asyncio
async def test_welcome_error(appid, refusing_relay_url):
    w = wormhole.create(appid, refusing_relay_url)
    w.allocate_code()
    with pytest.raises(WelcomeError) as e:
        await asyncio.wait_for(w.get_code(), T)
    assert "server closed for maintenance" in str(e.value)
    assert isinstance(e.value, WormholeError)
    with pytest.raises(WelcomeError):
        await asyncio.wait_for(w.close(), T)


async def _three_claims(appid, relay_url, nameplate):
    ws = [wormhole.create(appid, relay_url) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*(w.get_welcome() for w in ws)), T)
    for w in ws:
        w.set_code("%d-crowded-nameplate" % nameplate)
    done, pending = await asyncio.wait(
        [asyncio.ensure_future(w.get_verifier()) for w in ws], timeout=5
    )
    for w in ws:
        w.cancel()
    for p in pending:
        p.cancel()
    return [d.exception() for d in done if d.exception() is not None]


@pytest.mark.asyncio
async def test_server_error_crowded(appid, relay_url):
    """Three sides claiming one nameplate at once: the server answers the third claim
    with the error "crowded", which closes that wormhole with ServerError. (Whether the
    third claim beats the release of the first two is a race, so try a few nameplates.)"""
    for nameplate in range(4321, 4331):
        errors = await _three_claims(appid, relay_url, nameplate)
        if errors:
            break
    assert len(errors) == 1 and isinstance(errors[0], ServerError), errors
    assert "crowded" in str(errors[0])
