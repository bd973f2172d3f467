"""Status values of a dilated wormhole, under the reference 0.24 names
(``wormhole._status``): ``on_status_update`` of :meth:`DeferredWormhole.dilate` receives
a :class:`DilationStatus`. Programs test ``peer_connection`` with ``isinstance``.

Only the Dilation part is filled in: ``DilationStatus.mailbox`` is a default
:class:`WormholeStatus` (this library reports the mailbox through the wormhole's own
events instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import FrozenSet, Union


@dataclass(frozen=True)
class Disconnected:
    """Not connected to the mailbox server."""


@dataclass(frozen=True)
class Connecting:
    """Connecting to the mailbox server."""

    url: str
    last_attempt: int


@dataclass(frozen=True)
class Connected:
    """Connected to the mailbox server."""

    url: str


@dataclass(frozen=True)
class Failed:
    """The mailbox connection failed for good."""

    reason: str


@dataclass(frozen=True)
class Closed:
    """We closed the mailbox connection on purpose."""


@dataclass(frozen=True)
class NoPeer:
    """No connection to the peer yet."""


@dataclass(frozen=True)
class StoppedPeer:
    """Dilation stopped (it failed, or the wormhole closed)."""


@dataclass(frozen=True)
class ConnectingPeer:
    """Trying to reach the peer for the first time."""

    last_attempt: int


@dataclass(frozen=True)
class ReconnectingPeer:
    """The connection was lost; trying to reach the peer again (nothing written is lost)."""

    last_attempt: int


@dataclass(frozen=True)
class ConnectedPeer:
    """Connected to the peer. ``hint_description`` says how, like the reference:
    ``"->relay:tcp:HOST:PORT"`` through a relay, ``"->tcp:HOST:PORT"`` direct."""

    connected_at: int
    expires_at: int
    hint_description: str


@dataclass(frozen=True)
class NoKey:
    """No key agreed yet."""


@dataclass(frozen=True)
class AllegedSharedKey:
    """A key was computed; the peer has not proven it yet."""


@dataclass(frozen=True)
class ConfirmedKey:
    """The peer proved it holds the key."""


@dataclass(frozen=True)
class NoCode:
    """No code yet."""


@dataclass(frozen=True)
class AllocatedCode:
    """A code is known."""


@dataclass(frozen=True)
class ConsumedCode:
    """The peer used the code; the nameplate was released."""


ConnectionStatus = Union[Disconnected, Connecting, Connected, Failed, Closed]
PeerSharedKey = Union[NoKey, AllegedSharedKey, ConfirmedKey]
CodeStatus = Union[NoCode, AllocatedCode, ConsumedCode]
PeerConnection = Union[NoPeer, ConnectingPeer, ConnectedPeer, ReconnectingPeer, StoppedPeer]


@dataclass(frozen=True)
class WormholeStatus:
    """The mailbox side of a wormhole's status (see the module docs)."""

    mailbox_connection: ConnectionStatus = field(default_factory=Disconnected)
    peer_key: PeerSharedKey = field(default_factory=NoKey)
    code: CodeStatus = field(default_factory=NoCode)


@dataclass(frozen=True)
class DilationHint:
    """A way to reach the peer."""

    url: str
    is_direct: bool


@dataclass(frozen=True)
class DilationStatus:
    """The state of a dilated wormhole, given to ``on_status_update``.

    ``generation`` counts connection generations (1 for the first; the reference counts
    its ``dilate-N`` messages instead, which may run ahead)."""

    mailbox: WormholeStatus
    generation: int
    peer_connection: PeerConnection = field(default_factory=NoPeer)
    hints: FrozenSet[DilationHint] = frozenset()
