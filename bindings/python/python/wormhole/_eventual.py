"""Handing results from the native dispatcher thread to the user's event loop.

The native module calls ``callback(error, value)`` on its own dispatcher thread. An
*eventual* turns that into an asyncio future or a Twisted Deferred, settled on the loop
or reactor thread, so user code never runs on a library thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional, Tuple

log = logging.getLogger("wormhole")

Convert = Optional[Callable[[Any], Any]]
Settle = Callable[[Optional[BaseException], Any], None]


class _Eventual:
    """Runs functions on one event loop's thread and creates awaitables there."""

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop thread; safe from any thread."""
        raise NotImplementedError

    def new(
        self, convert: Convert = None, on_cancel: Optional[Callable[[], None]] = None
    ) -> Tuple[Any, Settle]:
        """A new awaitable and the thread-safe ``settle(error, value)`` that completes it.

        ``on_cancel()`` runs (on the loop thread) if the awaitable is cancelled before it
        settles (``Future.cancel()``, ``Deferred.cancel()``)."""
        raise NotImplementedError

    def failed(self, error: BaseException) -> Any:
        """An awaitable that has already failed with ``error``."""
        aw, settle = self.new()
        settle(error, None)
        return aw

    def run_in_thread(self, fn: Callable[[], Any]) -> Any:
        """Run blocking ``fn()`` in a daemon thread; an awaitable for its result."""
        import threading

        aw, settle = self.new()

        def run() -> None:
            try:
                value = fn()
            except BaseException as e:  # delivered to the awaitable
                settle(e, None)
            else:
                settle(None, value)

        threading.Thread(target=run, name="wormhole-input", daemon=True).start()
        return aw


class AsyncioEventual(_Eventual):
    """Results become ``asyncio.Future`` objects of ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # The loop is closed: nobody can observe the result any more.
            pass

    def new(
        self, convert: Convert = None, on_cancel: Optional[Callable[[], None]] = None
    ) -> Tuple[Any, Settle]:
        fut = self.loop.create_future()
        if on_cancel is not None:

            def done(f: "asyncio.Future[Any]") -> None:
                if f.cancelled():
                    on_cancel()

            fut.add_done_callback(done)

        def settle_here(err: Optional[BaseException], val: Any) -> None:
            if fut.done():
                return
            if err is not None:
                fut.set_exception(err)
                return
            try:
                result = convert(val) if convert is not None else val
            except BaseException as e:
                fut.set_exception(e)
            else:
                fut.set_result(result)

        def settle(err: Optional[BaseException], val: Any) -> None:
            self.call(settle_here, err, val)

        return fut, settle


class TwistedEventual(_Eventual):
    """Results become Twisted ``Deferred`` objects fired in the reactor thread."""

    def __init__(self, reactor: Any) -> None:
        from twisted.internet.defer import Deferred  # the optional "twisted" extra
        from twisted.python.failure import Failure

        self.reactor = reactor
        self._Deferred: Any = Deferred
        self._Failure: Any = Failure

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        self.reactor.callFromThread(fn, *args)

    def new(
        self, convert: Convert = None, on_cancel: Optional[Callable[[], None]] = None
    ) -> Tuple[Any, Settle]:
        canceller = None
        if on_cancel is not None:

            def canceller(_d: Any) -> None:
                on_cancel()

        d = self._Deferred(canceller)
        Failure = self._Failure

        def settle_here(err: Optional[BaseException], val: Any) -> None:
            if d.called:
                return
            if err is not None:
                d.errback(Failure(err))
                return
            try:
                result = convert(val) if convert is not None else val
            except BaseException as e:
                d.errback(Failure(e))
            else:
                d.callback(result)

        def settle(err: Optional[BaseException], val: Any) -> None:
            self.call(settle_here, err, val)

        return d, settle


def eventual_for(reactor: Any) -> _Eventual:
    """Pick the delivery style for ``reactor``: ``None`` (the running asyncio loop), an
    asyncio event loop, or a Twisted reactor."""
    if reactor is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "wormhole.create(reactor=None) needs a running asyncio event loop; "
                "pass a Twisted reactor, or use wormhole.transcribe for blocking code"
            ) from None
        return AsyncioEventual(loop)
    if isinstance(reactor, asyncio.AbstractEventLoop):
        return AsyncioEventual(reactor)
    if hasattr(reactor, "callFromThread"):
        try:
            return TwistedEventual(reactor)
        except ImportError as e:
            raise ImportError(
                "a Twisted reactor was given but Twisted is not installed "
                "(install the 'twisted' extra)"
            ) from e
    raise TypeError(
        "reactor must be None, an asyncio event loop or a Twisted reactor, not %r"
        % (reactor,)
    )
