"""The older ``wormhole.transcribe`` module (the ``wormhole-sync`` seed), in its two flows.

Blocking: no event loop is needed; each call blocks the calling thread (without holding
the interpreter, so other Python threads keep running) until the exchange is done. Ctrl-C
interrupts a call with ``KeyboardInterrupt`` and abandons the wormhole.

Twisted-friendly: with ``reactor=`` given, or when the Twisted reactor is imported and
this is its thread (it runs here, or it has not started and this is the main thread),
``start()`` and ``finish()`` return Deferreds instead of blocking, which would hang the
reactor: ``Initiator(appid, blob).start()`` fires with the code,
``finish()`` with the peer's blob, and ``Receiver(appid, code, blob).finish()`` likewise.

The default rendezvous server is ``$WORMHOLE_RELAY_URL`` when set, else the public one.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, cast

from wormhole import _native
from wormhole._wormhole import create

__all__ = ["Initiator", "Receiver", "default_rendezvous"]


def default_rendezvous() -> str:
    """``$WORMHOLE_RELAY_URL`` if set, else the public mailbox server of magic-wormhole."""
    return os.environ.get("WORMHOLE_RELAY_URL") or _native.PUBLIC_RELAY_URL


def _check_blob(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("the blob must be bytes")
    return bytes(data)


def _running_reactor() -> Any:
    """The Twisted reactor if this thread is (or will be) its thread, else ``None``: the
    reactor is installed and either runs in this thread, or does not run yet and this is
    the main thread (code before ``reactor.run()``, or the ``main`` of ``task.react``,
    which runs before the reactor starts). Never imports Twisted: a program that has not
    imported the reactor has none."""
    if "twisted.internet.reactor" not in sys.modules:
        return None
    import threading

    from twisted.internet import reactor
    from twisted.python import threadable

    if getattr(reactor, "running", False):
        in_io_thread: bool = threadable.isInIOThread()  # type: ignore[no-untyped-call]
        return reactor if in_io_thread else None
    return reactor if threading.current_thread() is threading.main_thread() else None


class _Common:
    def __init__(
        self,
        appid: str,
        data: bytes,
        rendezvous: Optional[str],
        timeout: Optional[float],
        reactor: Any,
    ) -> None:
        if not isinstance(appid, str):
            appid = appid.decode("utf-8") if isinstance(appid, bytes) else str(appid)
        self._appid = appid
        self._data = _check_blob(data)
        self._url = rendezvous or default_rendezvous()
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._timeout = timeout
        self._reactor = reactor
        self._w: Any = None
        self._dw: Any = None  # the Twisted flow's DeferredWormhole

    def _twisted(self) -> Any:
        """The reactor of the Twisted flow, or ``None`` for the blocking flow. The first
        call decides, and the object keeps that flow."""
        if self._dw is not None:
            return self._reactor
        if self._w is not None:
            return None
        if self._reactor is None:
            self._reactor = _running_reactor()
        return self._reactor

    def _open(self) -> Any:
        if self._w is None:
            self._w = _native.create(self._appid, self._url)
        return self._w

    def _open_deferred(self, reactor: Any) -> Any:
        if self._dw is None:
            self._dw = create(self._appid, self._url, reactor)
        return self._dw

    def _bounded(self, d: Any, reactor: Any) -> Any:
        if self._timeout is not None:
            d.addTimeout(self._timeout, reactor)
        return d

    def _exchange_deferred(self, reactor: Any) -> Any:
        """Send our blob; a Deferred of the peer's, fired once the wormhole has closed.
        On failure the wormhole is closed and the first error is the one reported."""
        from twisted.internet import defer

        dw = self._dw
        dw.send_message(self._data)

        @defer.inlineCallbacks
        def run() -> Any:
            try:
                theirs = yield self._bounded(dw.get_message(), reactor)
            except BaseException:
                dw.cancel()
                raise
            yield self._bounded(dw.close(), reactor)
            return theirs

        return run()

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
    ``their_blob = i.finish()``. In a Twisted reactor both return Deferreds."""

    def __init__(
        self,
        appid: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        timeout: Optional[float] = None,
        reactor: Any = None,
    ) -> None:
        """``appid`` scopes codes to your application; ``data`` is the blob (bytes) the
        receiver gets; ``rendezvous`` is the mailbox server URL; ``timeout`` (seconds)
        bounds each call (default: no limit). ``reactor`` (a Twisted reactor) selects the
        Twisted flow; without it, the flow is Twisted when ``start()`` is called in the
        reactor's thread (see the module's documentation), else blocking."""
        super().__init__(appid, data, rendezvous, timeout, reactor)

    def start(self) -> Any:
        """Allocate a nameplate and return the invitation code: blocks until it is known,
        or returns a Deferred that fires with it (Twisted flow)."""
        reactor = self._twisted()
        if reactor is not None:
            dw = self._open_deferred(reactor)
            dw.allocate_code(2)
            return self._bounded(dw.get_code(), reactor)
        w = self._open()
        w.allocate_code(2)
        try:
            return cast(str, w.wait("code", None, self._timeout))
        except BaseException:
            w.cancel()
            raise

    def finish(self) -> Any:
        """Send our blob, wait for the receiver's, close; returns the receiver's blob (or a
        Deferred of it). Fails with ``WrongPasswordError`` when the receiver typed
        another code."""
        if self._dw is not None:
            return self._exchange_deferred(self._reactor)
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
        reactor: Any = None,
    ) -> None:
        """``code`` is the initiator's invitation code; the other arguments are as for
        :class:`Initiator`."""
        super().__init__(appid, data, rendezvous, timeout, reactor)
        if isinstance(code, bytes):
            code = code.decode("utf-8")
        if not isinstance(code, str):
            raise TypeError("the code must be str")
        self._code = code

    def finish(self) -> Any:
        """Join the initiator, exchange blobs, close; returns the initiator's blob, or a
        Deferred of it in the Twisted flow. Fails with ``KeyFormatError`` for a malformed
        code, ``WrongPasswordError`` for a wrong one."""
        reactor = self._twisted()
        if reactor is not None:
            from twisted.internet import defer

            dw = self._open_deferred(reactor)
            try:
                dw.set_code(self._code)
            except Exception as e:
                dw.cancel()
                return defer.fail(e)
            return self._exchange_deferred(reactor)
        w = self._open()
        try:
            w.set_code(self._code)
        except BaseException:
            w.cancel()
            raise
        return self._exchange()
