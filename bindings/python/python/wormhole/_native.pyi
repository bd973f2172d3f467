"""Type stub of the private native module ``wormhole._native`` (pyo3).

Use the public package instead: :func:`wormhole.create`, :mod:`wormhole.transcribe`,
:mod:`wormhole.errors`. Callbacks passed here run on the library's dispatcher thread.
"""

import os
from typing import Any, Callable, List, Optional, Union, final

__all__ = [
    "AlreadyChoseNameplateError",
    "AlreadyChoseWordsError",
    "AlreadyInputNameplateError",
    "CORE_VERSION",
    "Dilated",
    "InputHelper",
    "InternalError",
    "InvalidStateError",
    "KeyFormatError",
    "LonelyError",
    "MustChooseNameplateFirstError",
    "NoKeyError",
    "NoTorError",
    "Offer",
    "OnlyOneCodeError",
    "OutboundHold",
    "PUBLIC_RELAY_URL",
    "ProtocolError",
    "ReflectionAttack",
    "SUBCHANNEL_HIGH_WATER",
    "ServerConnectionError",
    "ServerError",
    "Subchannel",
    "SubchannelListener",
    "TRANSFER_APPID",
    "Timeout",
    "Tor",
    "Transfer",
    "TransferError",
    "TransferInProgressError",
    "WelcomeError",
    "Wormhole",
    "WormholeCancelled",
    "WormholeClosed",
    "WormholeError",
    "WrongPasswordError",
    "_shutdown",
    "create",
    "find_tor",
    "from_serialized",
    "start_receive",
    "start_receive_file",
    "start_send",
    "start_send_file",
    "wait_receive",
    "wait_send",
]

_Callback = Callable[[Optional[BaseException], Any], None]

CORE_VERSION: str
"""The version of the Rust core."""
PUBLIC_RELAY_URL: str
"""The public mailbox server of the reference CLI."""
TRANSFER_APPID: str
"""The app id of the reference ``wormhole send`` / ``receive`` tool."""

@final
class Wormhole:
    """One wormhole; lives while referenced or while an operation is pending."""

    def start(self, op: str, callback: _Callback, arg: Optional[str] = None) -> None:
        """Start ``op`` and call ``callback(error, value)`` on the dispatcher thread."""
    def wait(
        self, op: str, arg: Optional[str] = None, timeout: Optional[float] = None
    ) -> Any:
        """Run ``op`` to completion, blocking without holding the interpreter."""
    def allocate_code(self, length: int = 2) -> None:
        """Allocate a nameplate and generate a code of ``length`` words."""
    def set_code(self, code: str) -> None:
        """Use a complete code."""
    def input_code(self) -> InputHelper:
        """Start interactive code entry."""
    def send_message(self, msg: bytes) -> None:
        """Queue a message for the peer."""
    def derive_key(self, purpose: str, length: int) -> bytes:
        """Derive an application key from the session key."""
    def cancel(self) -> None:
        """Cancel without waiting."""
    def begin_close(self) -> None:
        """Start closing without waiting (delegated: the outcome is the ``closed`` event)."""
    def start_send_text(self, text: str) -> None:
        """Start sending a text; the outcome is the ``text_sent`` event."""
    def start_receive_text(self) -> None:
        """Start waiting for a text; the outcome is the ``text_received`` event."""
    def accept_offer(self, dest: _Path, overwrite: bool = False) -> None:
        """Accept the waiting offer; the outcome is the ``file_received`` event."""
    def reject_offer(self) -> None:
        """Reject the waiting offer."""
    def cancel_transfer(self) -> None:
        """Cancel the running transfer, if any."""
    def dilate(
        self,
        relay: Optional[str] = None,
        no_listen: bool = False,
        ping_interval: Optional[float] = None,
        side: Optional[str] = None,
    ) -> Dilated:
        """Dilate (needs ``create(..., dilation=True)``)."""
    def took_event(self) -> None:
        """Delegated mode: the next event was handed to the application."""
    def serialize(self) -> str:
        """Save the wormhole as JSON text (it holds secrets)."""
    def suspend(self) -> str:
        """Save the wormhole as JSON text, then stop it without a word to the server."""
    def hold_outbound(self) -> OutboundHold:
        """Hold every outbound frame until the hold is released (journaled mode)."""

@final
class Dilated:
    """A dilated wormhole (``Wormhole.dilate``)."""

    def listen(self, name: str) -> SubchannelListener:
        """Accept the peer's subchannels for ``name`` (once per name)."""
    def start_connect(self, name: str, callback: Callable[[Optional[BaseException], Any], None]) -> None:
        """Open a subchannel; ``callback(error, Subchannel)``."""
    def start_next_status(self, callback: Callable[[Optional[BaseException], Any], None]) -> None:
        """``callback(error, dict or None)`` with the next status event."""

@final
class SubchannelListener:
    """The peer's subchannels for one subprotocol."""

    def start_accept(self, callback: Callable[[Optional[BaseException], Any], None]) -> None:
        """``callback(error, Subchannel or None)`` with the next one."""

@final
class Subchannel:
    """One subchannel: records in order, both ways."""

    @property
    def id(self) -> int:
        """The subchannel id."""
    @property
    def name(self) -> str:
        """The subprotocol."""
    @property
    def closed(self) -> bool:
        """Whether ``close`` was called or a write failed."""
    def start_read(self, max_bytes: int, callback: Callable[[Optional[BaseException], Any], None]) -> None:
        """``callback(error, list of bytes or None)`` with the next records."""
    def write(self, data: bytes) -> bool:
        """Queue one record; ``True``: over the high-water mark, pause."""
    def set_on_writable(self, callback: Callable[[], None]) -> None:
        """``callback()`` when a paused writer may go on."""
    def queued(self) -> int:
        """Bytes queued here."""
    def close(self) -> None:
        """Close after the queued records."""

#: Queued bytes above which ``Subchannel.write`` asks the caller to pause.
SUBCHANNEL_HIGH_WATER: int

@final
class OutboundHold:
    """A hold on a wormhole's outbound frames."""

    def release(self) -> None:
        """Release the held frames (once)."""

@final
class InputHelper:
    """The code-entry helper of ``Wormhole.input_code()``."""

    def refresh_nameplates(self) -> None:
        """Ask the server for the current nameplates."""
    def get_nameplate_completions(self, prefix: str) -> List[str]:
        """Known nameplates starting with ``prefix``, each followed by ``-``."""
    def choose_nameplate(self, nameplate: str) -> None:
        """Commit and claim the nameplate."""
    def get_word_completions(self, prefix: str) -> List[str]:
        """Completions of the words typed so far."""
    def choose_words(self, words: str) -> None:
        """Commit the words."""
    def start_wordlist(self, callback: _Callback) -> None:
        """Call ``callback(error, None)`` once the wordlist is available."""
    def wait_wordlist(self, timeout: Optional[float] = None) -> None:
        """Block (detached, interruptible) until the wordlist is available."""

def create(
    appid: str,
    relay_url: str,
    versions_json: Optional[str] = None,
    on_event: Optional[Callable[[str, Any], None]] = None,
    connect_timeout: Optional[float] = None,
    close_timeout: Optional[float] = None,
    socks5: Optional[str] = None,
    tor: Optional[Tor] = None,
    dilation: bool = False,
) -> Wormhole:
    """Create a wormhole; with ``on_event`` it is delegated; ``socks5``: a proxy;
    ``dilation``: offer Dilation (needed by ``Wormhole.dilate``)."""

def from_serialized(
    data: str,
    on_event: Callable[[str, Any], None],
    connect_timeout: Optional[float] = None,
    close_timeout: Optional[float] = None,
    socks5: Optional[str] = None,
    tor: Optional[Tor] = None,
) -> Wormhole:
    """Continue a wormhole saved with ``Wormhole.serialize()`` (delegated)."""

@final
class Tor:
    """A tor found or launched by :func:`find_tor`."""

    @property
    def socks(self) -> str: ...
    @property
    def found(self) -> str: ...
    def stop(self) -> None:
        """Stop a launched tor now (nothing for a found one)."""

def find_tor(
    control: Optional[str] = None,
    launch: bool = False,
    password: Optional[str] = None,
    launch_config: Optional[List[str]] = None,
    launch_timeout: Optional[float] = None,
    onion: bool = False,
) -> Tor:
    """Find or launch a tor (blocking)."""

_Path = Union[str, os.PathLike[str]]

@final
class Transfer:
    """Options of one transfer operation: Transit settings, cancellation, progress."""

    def __new__(
        cls,
        progress: Optional[Callable[[int, int], Any]] = None,
        transit_helper: Optional[str] = None,
        no_listen: bool = False,
        blocking: bool = False,
    ) -> Transfer: ...
    def cancel(self) -> None:
        """Cancel the operation (``WormholeCancelled``)."""
    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""

@final
class Offer:
    """A file or directory offer received by ``start_receive``/``wait_receive``."""

    @property
    def name(self) -> str:
        """The offered base name."""
    @property
    def size(self) -> int:
        """Bytes that travel (file size, or zip size)."""
    @property
    def kind(self) -> str:
        """``"file"`` or ``"directory"``."""
    @property
    def numbytes(self) -> int:
        """Sum of the files' sizes."""
    @property
    def numfiles(self) -> int:
        """Number of files."""
    def destination(self, dest: _Path) -> str:
        """Where ``accept(dest)`` writes."""
    def reject(self) -> None:
        """Refuse the offer."""
    def start_accept(
        self, dest: _Path, overwrite: bool, transfer: Transfer, callback: _Callback
    ) -> None:
        """Accept into ``dest``; ``callback(error, path)`` on the dispatcher thread."""
    def wait_accept(
        self,
        dest: _Path,
        overwrite: bool,
        transfer: Transfer,
        timeout: Optional[float] = None,
    ) -> Any:
        """Accept into ``dest``, blocking without holding the interpreter."""

def start_send(w: Wormhole, path: _Path, transfer: Transfer, callback: _Callback) -> None:
    """Send a file or directory; ``callback(error, None)`` on the dispatcher thread."""

def wait_send(
    w: Wormhole, path: _Path, transfer: Transfer, timeout: Optional[float] = None
) -> None:
    """Send a file or directory, blocking without holding the interpreter."""

def start_send_file(w: Wormhole, path: _Path, transfer: Transfer) -> None:
    """Delegated mode: start sending; events follow on the wormhole's stream."""
def start_receive_file(w: Wormhole, transfer: Transfer) -> None:
    """Delegated mode: start receiving; the ``offer`` event follows."""
def start_receive(w: Wormhole, transfer: Transfer, callback: _Callback) -> None:
    """Wait for an offer; ``callback(error, Offer | str)`` on the dispatcher thread."""

def wait_receive(
    w: Wormhole, transfer: Transfer, timeout: Optional[float] = None
) -> Any:
    """Wait for an offer (an ``Offer``, or the text of a text offer), blocking."""

def _shutdown() -> None:
    """Stop calling into the interpreter (registered with ``atexit``)."""

class WormholeError(Exception):
    """Base class of every error this library raises."""

class WelcomeError(WormholeError):
    """The server's welcome message carried an error."""

class ServerError(WormholeError):
    """The mailbox server sent an error message."""

class ServerConnectionError(WormholeError):
    """The first connection to the mailbox server failed."""

class Timeout(WormholeError):
    """A configured timeout expired."""

class LonelyError(WormholeError):
    """close() was called before any message from the peer was verified."""

class WrongPasswordError(WormholeError):
    """A peer message failed to decrypt: a mistyped code, or an attacker's guess."""

class KeyFormatError(WormholeError):
    """The code is malformed."""

class ReflectionAttack(WormholeError):
    """Defined for compatibility; never raised."""

class InternalError(WormholeError):
    """A bug in this library."""

class TransferInProgressError(WormholeError):
    """Another transfer is running on this wormhole."""

class InvalidStateError(WormholeError):
    """Not possible in the current state (e.g. no offer is waiting)."""

class TransferError(WormholeError):
    """The file-transfer peer reported an error or broke the protocol."""

class NoTorError(WormholeError):
    """Tor was requested; not supported."""

class NoKeyError(WormholeError):
    """derive_key() before the key was known."""

class OnlyOneCodeError(WormholeError):
    """A second allocate_code(), set_code() or input_code()."""

class MustChooseNameplateFirstError(WormholeError):
    """Words were asked for before a nameplate was chosen."""

class AlreadyChoseNameplateError(WormholeError):
    """Nameplate helpers used after choose_nameplate()."""

class AlreadyChoseWordsError(WormholeError):
    """The helper was used after choose_words()."""

class AlreadyInputNameplateError(WormholeError):
    """The line names a different nameplate than the one already chosen."""

class ProtocolError(WormholeError):
    """The server or the peer broke the protocol."""

class WormholeCancelled(WormholeError):
    """The wormhole was cancelled before this operation finished."""

class WormholeClosed(Exception):
    """The wormhole closed without error before this event happened."""
