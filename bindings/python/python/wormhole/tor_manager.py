"""Tor for ``wormhole.create(..., tor=...)``, as the reference's ``wormhole.tor_manager``.

``get_tor(reactor)`` finds a running tor the way the reference does (the control port
given, else ``unix:/var/run/tor/control``, ``tcp:127.0.0.1:9051``, ``tcp:127.0.0.1:9151``,
else SOCKS only on 9050 or 9150) or launches one, and returns an awaitable (a Deferred with
a Twisted reactor) of a :class:`TorManager`. Every connection of a wormhole created with
it, the mailbox and Transit, then goes through that tor's SOCKS port.
"""

from __future__ import annotations

import sys
from typing import IO, Any, List, Optional

from wormhole import _native
from wormhole._eventual import eventual_for

__all__ = ["TorManager", "get_tor"]

_SAID = {
    "default-control-port": " using Tor via default control port",
    "socks-only": " unable to find default Tor control port, using SOCKS",
}


class TorManager:
    """A tor to pass to ``wormhole.create(..., tor=)``; from :func:`get_tor`. A launched
    tor stops when this object and every wormhole using it are gone."""

    def __init__(self, native: "_native.Tor") -> None:
        self._native_tor = native

    @property
    def socks_address(self) -> str:
        """The SOCKS port every connection goes through, ``HOST:PORT``."""
        return self._native_tor.socks

    @property
    def found(self) -> str:
        """``launched``, ``control-port``, ``default-control-port`` or ``socks-only``."""
        return self._native_tor.found

    def stop(self) -> None:
        """Stop a tor that ``get_tor(launch_tor=True)`` started, now, and remove its data
        directory (wormholes still using it lose their connections). Nothing for a tor
        that was found. Without it, the tor stops when this object and every wormhole
        using it are gone, or when the process exits."""
        self._native_tor.stop()

    def __repr__(self) -> str:
        return "<TorManager %s via %s>" % (self.found, self.socks_address)


def get_tor(
    reactor: Any = None,
    launch_tor: bool = False,
    tor_control_port: Optional[str] = None,
    timing: Any = None,
    stderr: Optional[IO[str]] = None,
    *,
    password: Optional[str] = None,
    launch_config: Optional[List[str]] = None,
    launch_timeout: Optional[float] = None,
    onion: bool = False,
) -> Any:
    """Find (or, with ``launch_tor``, start) a tor; an awaitable of a :class:`TorManager`.

    ``tor_control_port`` is an endpoint such as ``"tcp:127.0.0.1:9051"`` or
    ``"unix:/run/tor/control"``; it cannot be combined with ``launch_tor``. ``password``
    answers a control port that wants one; ``launch_config`` adds torrc lines to a launched
    tor; ``onion`` publishes an onion service for each transfer (needs the control port) so
    that two Tor-mode peers connect without a relay. Fails with :class:`wormhole.errors.NoTorError` when no tor can be used. Like the
    reference it says on ``stderr`` how it found tor. ``timing`` is accepted and ignored.
    """
    if not isinstance(launch_tor, bool):
        raise TypeError("launch_tor= must be boolean")
    if not isinstance(tor_control_port, (str, type(None))):
        raise TypeError("tor_control_port= must be str or None")
    if tor_control_port == "":
        raise ValueError("tor_control_port= must not be empty")
    if launch_tor and tor_control_port is not None:
        raise ValueError("cannot combine --launch-tor and --tor-control-port=")
    out = stderr if stderr is not None else sys.stderr
    eventual = eventual_for(reactor)
    if launch_tor:
        print(" launching a new Tor process, this may take a while..", file=out)

    def find() -> TorManager:
        native = _native.find_tor(
            tor_control_port, launch_tor, password, launch_config, launch_timeout, onion
        )
        said = _SAID.get(native.found)
        if native.found == "control-port":
            said = " using Tor via control port at %s" % tor_control_port
        if said:
            print(said, file=out)
        return TorManager(native)

    return eventual.run_in_thread(find)
