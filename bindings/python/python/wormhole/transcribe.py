"""The blocking API of the older ``wormhole.transcribe`` module.

No event loop is needed: each call blocks the calling thread (without holding the
interpreter, so other Python threads keep running) until the exchange is done. Ctrl-C
interrupts a call with ``KeyboardInterrupt`` and abandons the wormhole.

The default rendezvous server is ``$WORMHOLE_RELAY_URL`` when set, else the public one.
"""

from __future__ import annotations

import os
from typing import Any, Optional, cast

from wormhole import _native

__all__ = ["Initiator", "Receiver", "default_rendezvous"]


def default_rendezvous() -> str:
    """``$WORMHOLE_RELAY_URL`` if set, else the public mailbox server of magic-wormhole."""
    return os.environ.get("WORMHOLE_RELAY_URL") or _native.PUBLIC_RELAY_URL


def _check_blob(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("the blob must be bytes")
    return bytes(data)


class _Common:
    def __init__(
        self,
        appid: str,
        data: bytes,
        rendezvous: Optional[str],
        timeout: Optional[float],
    ) -> None:
        if not isinstance(appid, str):
            appid = appid.decode("utf-8") if isinstance(appid, bytes) else str(appid)
        self._appid = appid
        self._data = _check_blob(data)
        self._url = rendezvous or default_rendezvous()
        self._timeout = timeout
        self._w: Any = None

    def _open(self) -> Any:
        if self._w is None:
            self._w = _native.create(self._appid, self._url)
        return self._w

    def _exchange(self) -> bytes:
        w = self._open()
        try:
            w.send_message(self._data)
            theirs = w.wait("message", None, self._timeout)
            w.wait("close", None, self._timeout)
        except BaseException:
            w.cancel()
            raise
        return cast(bytes, theirs)


class Initiator(_Common):
    """The side that allocates the code: ``code = i.start()``, show it to the user, then
    ``their_blob = i.finish()``."""

    def __init__(
        self,
        appid: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """``appid`` scopes codes to your application; ``data`` is the blob (bytes) the
        receiver gets; ``rendezvous`` is the mailbox server URL; ``timeout`` (seconds)
        bounds each blocking call (default: no limit)."""
        super().__init__(appid, data, rendezvous, timeout)

    def start(self) -> str:
        """Allocate a nameplate and return the invitation code (blocks until known)."""
        w = self._open()
        w.allocate_code(2)
        try:
            return cast(str, w.wait("code", None, self._timeout))
        except BaseException:
            w.cancel()
            raise

    def finish(self) -> bytes:
        """Send our blob, wait for the receiver's, close; returns the receiver's blob.
        Raises ``WrongPasswordError`` when the receiver typed another code."""
        if self._w is None:
            raise RuntimeError("call start() before finish()")
        return self._exchange()


class Receiver(_Common):
    """The side that types the code: ``their_blob = Receiver(appid, code, blob).finish()``."""

    def __init__(
        self,
        appid: str,
        code: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """``code`` is the initiator's invitation code; the other arguments are as for
        :class:`Initiator`."""
        super().__init__(appid, data, rendezvous, timeout)
        if isinstance(code, bytes):
            code = code.decode("utf-8")
        self._code = code

    def finish(self) -> bytes:
        """Join the initiator, exchange blobs, close; returns the initiator's blob.
        Raises ``KeyFormatError`` for a malformed code, ``WrongPasswordError`` for a
        wrong one."""
        w = self._open()
        try:
            w.set_code(self._code)
        except BaseException:
            w.cancel()
            raise
        return self._exchange()
