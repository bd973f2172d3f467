"""Dilation in Python: :meth:`DeferredWormhole.dilate` and what it returns.

Three forms on one implementation (the native subchannels of ``wormhole._native``):

- the reference 0.24 API: ``dw = w.dilate(...)``, ``dw.when_dilated()``,
  ``dw.listener_for(name).listen(factory)``, ``dw.connector_for(name).connect(factory)``
  with Twisted protocols (or asyncio protocols on an asyncio wormhole);
- the seed document's endpoints: ``control, client, server = yield w.dilate()``;
- asyncio streams: ``reader, writer = await dw.connect(name)``,
  ``reader, writer = await dw.listen(name).accept()``.

Every record written is one ``dataReceived`` / ``data_received`` on the other side.
A subchannel is read in batches (one crossing from the native side per batch), and only
while its protocol is not paused, so a slow reader holds the peer back through core's
flow control instead of growing a queue here. Writes never block: past a high-water
mark the transport pauses a registered producer (Twisted) or the protocol's writing
(asyncio), and resumes it once the queue drained.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable, Deque, List, Optional, Tuple

from wormhole import _native
from wormhole._eventual import AsyncioEventual, _Eventual
from wormhole._status import (
    ConnectedPeer,
    ConnectingPeer,
    DilationStatus,
    NoPeer,
    ReconnectingPeer,
    StoppedPeer,
    WormholeStatus,
)
from wormhole.errors import AlreadyClosedError, CanOnlyDilateOnceError, DilationFailed

log = logging.getLogger("wormhole")

#: Records fetched from the native side at once, at most (bytes; one record may exceed it).
READ_BATCH = 1 << 20
#: The subprotocol the seed's client and server endpoints use.
SEED_SUBPROTOCOL = "subchannel"
#: The subprotocol behind the seed's control endpoint (opened by the Leader).
CONTROL_SUBPROTOCOL = "control"


class SubchannelAddress:
    """The peer end of a subchannel (``transport.getPeer()``): its subprotocol."""

    def __init__(self, subprotocol: str) -> None:
        self.subprotocol = subprotocol

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubchannelAddress) and other.subprotocol == self.subprotocol

    def __hash__(self) -> int:
        return hash(("SubchannelAddress", self.subprotocol))

    def __repr__(self) -> str:
        return "SubchannelAddress(subprotocol=%r)" % (self.subprotocol,)


class WormholeAddress:
    """Our end of every subchannel (``transport.getHost()``): the wormhole itself."""

    def __repr__(self) -> str:
        return "WormholeAddress()"


_HOST = WormholeAddress()


def _implements(*names: str) -> Callable[[Any], Any]:
    """Declare Twisted interfaces (by name) when Twisted is installed."""

    def deco(cls: Any) -> Any:
        try:
            from twisted.internet import interfaces
            from zope.interface import classImplements  # type: ignore[import-untyped]
        except ImportError:
            return cls
        classImplements(cls, *[getattr(interfaces, n) for n in names])
        return cls

    return deco


class _Channel:
    """What both transport flavours share: reading in batches while not paused, writing
    with a high-water mark, and one end (close, the peer's close or a failure)."""

    def __init__(self, native: Any, eventual: _Eventual) -> None:
        self._native = native
        self._eventual = eventual
        self._pending: Deque[bytes] = collections.deque()
        self._reading = False
        self._read_paused = False
        self._delivering = False
        # None while open; then ("done", None) or ("lost", exception) once reading ended.
        self._end: Optional[Tuple[str, Optional[BaseException]]] = None
        self._lost = False
        self._closing = False
        self._write_paused = False
        native.set_on_writable(lambda: eventual.call(self._writable))

    # -- reading -------------------------------------------------------------------------

    def _start(self) -> None:
        self._pump()

    def _pump(self) -> None:
        if self._lost or self._delivering:
            return
        self._delivering = True
        try:
            while self._pending and not self._read_paused and not self._lost:
                self._data(self._pending.popleft())
        except Exception:
            log.exception("a subchannel protocol raised; closing the subchannel")
            self._delivering = False
            self._close()
            return
        self._delivering = False
        if self._lost or self._read_paused or self._pending:
            return
        if self._end is not None:
            self._lose()
        elif not self._reading:
            self._reading = True
            self._native.start_read(
                READ_BATCH, lambda err, val: self._eventual.call(self._got, err, val)
            )

    def _got(self, err: Optional[BaseException], records: Optional[List[bytes]]) -> None:
        self._reading = False
        if err is not None:
            self._end = ("lost", err)
        elif records is None:
            self._end = ("done", None)
        else:
            self._pending.extend(records)
        self._pump()

    def _pause_reading(self) -> None:
        self._read_paused = True

    def _resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self._pump()

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._native.close()
        assert self._end is not None
        try:
            self._ended(self._end[1])
        except Exception:
            log.exception("a subchannel protocol raised in its connection-lost handler")

    # -- writing -------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("subchannel data must be bytes, not %s" % type(data).__name__)
        if self._closing or self._lost:
            raise AlreadyClosedError("the subchannel is closed")
        if self._native.write(bytes(data)) and not self._write_paused:
            self._write_paused = True
            self._pause_writer()

    def _writable(self) -> None:
        if self._write_paused:
            self._write_paused = False
            self._resume_writer()

    def _close(self) -> None:
        """Close after what was written; reading goes on until the peer's answer."""
        if not self._closing:
            self._closing = True
            self._native.close()

    # -- per flavour -----------------------------------------------------------------------

    def _data(self, data: bytes) -> None:
        raise NotImplementedError

    def _ended(self, error: Optional[BaseException]) -> None:
        raise NotImplementedError

    def _pause_writer(self) -> None:
        raise NotImplementedError

    def _resume_writer(self) -> None:
        raise NotImplementedError


@_implements("ITransport", "IPushProducer", "IConsumer")
class TwistedSubchannel(_Channel):
    """A subchannel as a Twisted transport (``ITransport``), producer of what the peer
    sends (``pauseProducing`` / ``resumeProducing``) and consumer of what we send
    (``registerProducer``, streaming or not)."""

    def __init__(self, native: Any, eventual: _Eventual, protocol: Any) -> None:
        super().__init__(native, eventual)
        self._protocol = protocol
        self._producer: Any = None
        self._streaming = False
        self._pull_scheduled = False
        self._peer = SubchannelAddress(native.name)

    @property
    def _scid(self) -> int:
        # The reference's private attribute; some programs print it.
        return int(self._native.id)

    @property
    def subchannel_id(self) -> int:
        """The subchannel id (odd: opened by the Leader, even: by the Follower)."""
        return int(self._native.id)

    # ITransport
    def write(self, data: bytes) -> None:
        """Send ``data`` as one record (the peer's ``dataReceived`` gets it whole)."""
        self._write(data)
        if self._producer is not None and not self._streaming:
            self._schedule_pull()

    def writeSequence(self, seq: Any) -> None:
        """Send the concatenation as one record."""
        self.write(b"".join(seq))

    def loseConnection(self) -> None:
        """Close after what was written; ``connectionLost`` follows the peer's answer."""
        self._close()

    def abortConnection(self) -> None:
        """The same as :meth:`loseConnection` (records already written still go)."""
        self._close()

    def getHost(self) -> WormholeAddress:
        return _HOST

    def getPeer(self) -> SubchannelAddress:
        return self._peer

    # IPushProducer: what the peer sends, up to our protocol
    def pauseProducing(self) -> None:
        """Stop delivering ``dataReceived`` (and stop reading: the peer is held back)."""
        self._pause_reading()

    def resumeProducing(self) -> None:
        self._resume_reading()

    def stopProducing(self) -> None:
        self._close()

    # IConsumer: what our producer writes
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError("a producer is already registered")
        self._producer, self._streaming = producer, bool(streaming)
        if self._streaming:
            if self._write_paused:
                producer.pauseProducing()
        else:
            self._schedule_pull()

    def unregisterProducer(self) -> None:
        self._producer = None

    def _schedule_pull(self) -> None:
        if not self._pull_scheduled and not self._write_paused:
            self._pull_scheduled = True
            self._eventual.call(self._pull)

    def _pull(self) -> None:
        self._pull_scheduled = False
        p = self._producer
        if p is not None and not self._streaming and not self._write_paused and not self._lost:
            p.resumeProducing()

    def _pause_writer(self) -> None:
        if self._producer is not None and self._streaming:
            self._producer.pauseProducing()

    def _resume_writer(self) -> None:
        p = self._producer
        if p is None:
            return
        if self._streaming:
            p.resumeProducing()
        else:
            self._schedule_pull()

    def _data(self, data: bytes) -> None:
        self._protocol.dataReceived(data)

    def _ended(self, error: Optional[BaseException]) -> None:
        from twisted.internet.error import ConnectionDone, ConnectionLost
        from twisted.python.failure import Failure

        failure: Any = Failure

        p, self._producer = self._producer, None
        if p is not None:
            try:
                p.stopProducing()
            except Exception:
                log.exception("a producer raised in stopProducing")
        reason = ConnectionDone() if error is None else ConnectionLost(str(error))
        self._protocol.connectionLost(failure(reason))


class AsyncioSubchannel(_Channel, asyncio.Transport):
    """A subchannel as an asyncio transport: ``data_received`` per record,
    ``pause_reading`` / ``resume_reading``, and ``pause_writing`` / ``resume_writing``
    calls on the protocol (so ``StreamWriter.drain()`` waits while the queue is full).
    There is no half-close: ``write_eof`` is not supported."""

    def __init__(self, native: Any, eventual: _Eventual, protocol: Any) -> None:
        _Channel.__init__(self, native, eventual)
        asyncio.Transport.__init__(self, {"subprotocol": native.name})
        self._protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``subprotocol``, ``subchannel_id`` and ``peername``
        (``("wormhole-subchannel", subprotocol)``)."""
        if name == "subprotocol":
            return self._native.name
        if name == "subchannel_id":
            return int(self._native.id)
        if name == "peername":
            return ("wormhole-subchannel", self._native.name)
        return default

    def write(self, data: Any) -> None:
        """Send ``data`` as one record. Raises :class:`AlreadyClosedError` once closed."""
        self._write(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self._write(b"".join(bytes(d) for d in list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("subchannels have no half-close: use close()")

    def close(self) -> None:
        """Close after what was written; ``connection_lost`` follows the peer's answer."""
        self._close()

    def abort(self) -> None:
        self._close()

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def pause_reading(self) -> None:
        self._pause_reading()

    def resume_reading(self) -> None:
        self._resume_reading()

    def is_reading(self) -> bool:
        return not self._read_paused and not self._lost

    def get_write_buffer_size(self) -> int:
        return int(self._native.queued())

    def get_write_buffer_limits(self) -> Tuple[int, int]:
        return (0, int(_native.SUBCHANNEL_HIGH_WATER))

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Accepted for compatibility; the limits are the native side's."""

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def _data(self, data: bytes) -> None:
        self._protocol.data_received(data)

    def _ended(self, error: Optional[BaseException]) -> None:
        if error is None:
            try:
                self._protocol.eof_received()
            except Exception:
                log.exception("eof_received raised")
            self._protocol.connection_lost(None)
        else:
            exc = ConnectionResetError(str(error))
            exc.__cause__ = error
            self._protocol.connection_lost(exc)

    def _pause_writer(self) -> None:
        self._protocol.pause_writing()

    def _resume_writer(self) -> None:
        self._protocol.resume_writing()


def _attach(native: Any, eventual: _Eventual, factory: Any, *, twisted: bool) -> Any:
    """Connect a new protocol from ``factory`` to the native subchannel; returns it (or
    None when the factory refused, which closes the subchannel)."""
    if twisted:
        protocol = factory.buildProtocol(SubchannelAddress(native.name))
        if protocol is None:
            native.close()
            return None
        t: _Channel = TwistedSubchannel(native, eventual, protocol)
        protocol.makeConnection(t)
    else:
        protocol = factory()
        t = AsyncioSubchannel(native, eventual, protocol)
        protocol.connection_made(t)
    t._start()
    return protocol


def _is_twisted_factory(factory: Any) -> bool:
    return hasattr(factory, "buildProtocol")


def _streams(eventual: _Eventual, native: Any) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A native subchannel as an asyncio ``(StreamReader, StreamWriter)`` pair."""
    assert isinstance(eventual, AsyncioEventual)
    loop = eventual.loop
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = AsyncioSubchannel(native, eventual, protocol)
    protocol.connection_made(transport)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    transport._start()
    return reader, writer


class _ListeningPort:
    """What ``listener_for(name).listen(factory)`` fires with (``IListeningPort``)."""

    def __init__(self, listener: "_Accepting") -> None:
        self._listener = listener

    def stopListening(self) -> Any:
        """Stop accepting: later subchannels for this name are held, unanswered."""
        self._listener.stopped = True
        return None

    def getHost(self) -> WormholeAddress:
        return _HOST


class _Accepting:
    """Accepts the peer's subchannels of one name and hands each to a handler;
    ``on_end(error)`` (if given) once Dilation ended."""

    def __init__(
        self,
        native_listener: Any,
        eventual: _Eventual,
        handle: Callable[[Any], None],
        on_end: Optional[Callable[[Optional[BaseException]], None]] = None,
    ) -> None:
        self.native = native_listener
        self.eventual = eventual
        self.handle = handle
        self.on_end = on_end
        self.stopped = False
        self._next()

    def _next(self) -> None:
        self.native.start_accept(lambda err, val: self.eventual.call(self._got, err, val))

    def _got(self, err: Optional[BaseException], sub: Any) -> None:
        if err is not None or sub is None:
            if self.on_end is not None:
                self.on_end(err)
            return
        if self.stopped:
            sub.close()
            return
        try:
            self.handle(sub)
        except Exception:
            log.exception("a subchannel listener raised; closing that subchannel")
            sub.close()
        self._next()


class SubchannelListenerEndpoint:
    """``listener_for(name)``: ``listen(factory)`` serves the peer's subchannels of that
    name (an ``IStreamServerEndpoint``)."""

    def __init__(self, dilated: "DilatedWormhole", name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("subprotocol must be a non-empty str")
        self._dilated = dilated
        self.subprotocol_name = name

    def listen(self, factory: Any) -> Any:
        """Build a protocol from ``factory`` (a Twisted factory; on an asyncio wormhole
        also a plain protocol factory) for each subchannel the peer opens with this
        name, held ones first. Fires with a listening port once dilated. A name can be
        listened to once (``ValueError``)."""
        d = self._dilated
        twisted = _is_twisted_factory(factory)
        try:
            native_listener = d._native.listen(self.subprotocol_name)
        except _native.InvalidStateError as e:
            return d._eventual.failed(ValueError(str(e)))
        accepting = _Accepting(
            native_listener,
            d._eventual,
            lambda sub: _attach(sub, d._eventual, factory, twisted=twisted),
        )
        return d._after_dilated(lambda: _ListeningPort(accepting))


class SubchannelConnectorEndpoint:
    """``connector_for(name)``: ``connect(factory)`` opens a subchannel to the peer's
    listener of that name (an ``IStreamClientEndpoint``)."""

    def __init__(self, dilated: "DilatedWormhole", name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("subprotocol must be a non-empty str")
        self._dilated = dilated
        self.subprotocol_name = name

    def connect(self, factory: Any) -> Any:
        """Open a subchannel and fire with the protocol built from ``factory`` (already
        connected). The peer never answers an OPEN: writes may start at once and are
        delivered once it listens."""
        aw, settle = self._dilated._eventual.new()
        _open(self._dilated, self.subprotocol_name, factory, settle)
        return aw


def _open(
    d: "DilatedWormhole",
    name: str,
    factory: Any,
    settle: Callable[[Optional[BaseException], Any], None],
) -> None:
    """Open a subchannel to the peer's ``name``; ``settle`` it with the protocol built
    from ``factory`` and connected to it."""
    twisted = _is_twisted_factory(factory)

    def got(err: Optional[BaseException], sub: Any) -> None:
        if err is not None:
            settle(err, None)
            return
        try:
            protocol = _attach(sub, d._eventual, factory, twisted=twisted)
        except BaseException as e:
            sub.close()
            settle(e, None)
            return
        settle(None, protocol)

    d._native.start_connect(name, lambda e, v: d._eventual.call(got, e, v))


class _ControlEndpoint:
    """The seed's control channel endpoint: both sides ``connect()`` once and get the two
    ends of one subchannel (the Leader opens :data:`CONTROL_SUBPROTOCOL`, the Follower
    accepts it). This library's convention: the reference 0.24 has no control channel."""

    def __init__(self, dilated: "DilatedWormhole") -> None:
        self._dilated = dilated
        self._used = False

    def connect(self, factory: Any) -> Any:
        d = self._dilated
        if self._used:
            return d._eventual.failed(ValueError("the control endpoint is single-use"))
        self._used = True
        aw, settle = d._eventual.new()
        twisted = _is_twisted_factory(factory)

        def with_role(leader: bool) -> None:
            if leader:
                _open(d, CONTROL_SUBPROTOCOL, factory, settle)
                return
            accepting: List[_Accepting] = []

            def handle(sub: Any) -> None:
                accepting[0].stopped = True
                settle(None, _attach(sub, d._eventual, factory, twisted=twisted))

            try:
                native_listener = d._native.listen(CONTROL_SUBPROTOCOL)
            except _native.InvalidStateError as e:
                settle(ValueError(str(e)), None)
                return
            accepting.append(_Accepting(native_listener, d._eventual, handle))

        d._when_role(with_role, settle)
        return aw


class _SeedServerEndpoint:
    """The seed's subchannel server endpoint: ``listen(factory)`` once."""

    def __init__(self, dilated: "DilatedWormhole") -> None:
        self._inner = SubchannelListenerEndpoint(dilated, SEED_SUBPROTOCOL)
        self._used = False

    def listen(self, factory: Any) -> Any:
        if self._used:
            return self._inner._dilated._eventual.failed(
                ValueError("the subchannel server endpoint is single-use")
            )
        self._used = True
        return self._inner.listen(factory)


class StreamListener:
    """The asyncio form of listening (``dw.listen(name)``): ``await accept()`` gives the
    next ``(reader, writer)`` pair; ``async for reader, writer in listener`` loops."""

    def __init__(self, dilated: "DilatedWormhole", name: str) -> None:
        self._dilated = dilated
        self._queue: Deque[Any] = collections.deque()
        self._waiters: Deque[Any] = collections.deque()
        self._ended: Optional[BaseException] = None
        _Accepting(dilated._native.listen(name), dilated._eventual, self._accepted, self._end)

    def _end(self, err: Optional[BaseException]) -> None:
        self._ended = err or DilationFailed("dilation has ended")
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_exception(self._ended)

    def _accepted(self, sub: Any) -> None:
        pair = _streams(self._dilated._eventual, sub)
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(pair)
                break
        else:
            self._queue.append(pair)

    async def accept(self) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The next subchannel the peer opens for this name, as streams."""
        if self._queue:
            return self._queue.popleft()  # type: ignore[no-any-return]
        if self._ended is not None:
            raise self._ended
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut  # type: ignore[no-any-return]

    def __aiter__(self) -> "StreamListener":
        return self

    async def __anext__(self) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await self.accept()
        except DilationFailed:
            raise StopAsyncIteration from None


class DilatedWormhole:
    """A dilated wormhole, from :meth:`DeferredWormhole.dilate` (see the module docs).

    It is also the seed's ``dilate()`` result: it unpacks (``control, client, server =
    dw``), ``yield`` / ``await`` give the same triple once dilated, and on Twisted it has
    ``addCallback``."""

    def __init__(
        self,
        native: Any,
        eventual: _Eventual,
        on_status_update: Optional[Callable[[DilationStatus], Any]],
        ping_interval: float,
    ) -> None:
        self._native = native
        self._eventual = eventual
        self._on_status = on_status_update
        self._ping_interval = ping_interval
        self._dilated = False
        self._failed: Optional[BaseException] = None
        self._leader: Optional[bool] = None
        self._waiters: List[Callable[[Optional[BaseException]], None]] = []
        self._role_waiters: List[Callable[[Optional[BaseException]], None]] = []
        self._generation = 0
        self._endpoints = (
            _ControlEndpoint(self),
            SubchannelConnectorEndpoint(self, SEED_SUBPROTOCOL),
            _SeedServerEndpoint(self),
        )
        self._next_status()

    # -- status ----------------------------------------------------------------------------

    def _next_status(self) -> None:
        self._native.start_next_status(lambda err, val: self._eventual.call(self._status, err, val))

    def _status(self, err: Optional[BaseException], ev: Any) -> None:
        if err is not None or ev is None:
            self._fail(err or DilationFailed("dilation has ended"))
            self._report(StoppedPeer())
            return
        kind = ev["kind"]
        now = int(time.time())
        if kind == "generation":
            self._generation = ev["generation"]
            self._leader = bool(ev["leader"])
            waiters, self._role_waiters = self._role_waiters, []
            for w in waiters:
                w(None)
            self._report(ConnectingPeer(now) if self._generation == 1 else ReconnectingPeer(now))
        elif kind == "connected":
            self._generation = ev["generation"]
            peer = ev.get("peer") or "?"
            how = ("->relay:tcp:%s" if ev.get("relay") else "->tcp:%s") % peer
            self._report(ConnectedPeer(now, now + int(self._ping_interval), how))
            if not self._dilated:
                self._dilated = True
                waiters, self._waiters = self._waiters, []
                for w in waiters:
                    w(None)
        elif kind == "reconnecting":
            self._report(ReconnectingPeer(now))
        elif kind == "warning":
            log.warning("dilation: %s", ev.get("message"))
        elif kind == "failed":
            self._fail(DilationFailed(ev.get("message") or "dilation failed"))
            self._report(StoppedPeer())
            return
        self._next_status()

    def _report(self, peer: Any) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(DilationStatus(WormholeStatus(), self._generation, peer))
        except Exception:
            log.exception("on_status_update raised")

    def _fail(self, error: BaseException) -> None:
        if self._failed is None:
            self._failed = error
        for ws in (self._waiters, self._role_waiters):
            for w in ws:
                w(error)
            ws.clear()

    def _after_dilated(self, value: Callable[[], Any]) -> Any:
        """An awaitable / Deferred firing with ``value()`` once dilated."""
        aw, settle = self._eventual.new()

        def fire(err: Optional[BaseException]) -> None:
            if err is not None:
                settle(err, None)
            else:
                settle(None, value())

        if self._dilated:
            fire(None)
        elif self._failed is not None:
            fire(self._failed)
        else:
            self._waiters.append(fire)
        return aw

    def _when_role(self, fn: Callable[[bool], None], settle: Callable[[Optional[BaseException], Any], None]) -> None:
        def fire(err: Optional[BaseException]) -> None:
            if err is not None:
                settle(err, None)
            else:
                assert self._leader is not None
                fn(self._leader)

        if self._leader is not None:
            fire(None)
        elif self._failed is not None:
            fire(self._failed)
        else:
            self._role_waiters.append(fire)

    # -- the reference 0.24 API --------------------------------------------------------------

    def when_dilated(self) -> Any:
        """Fires with ``None`` once the first connection to the peer is up."""
        return self._after_dilated(lambda: None)

    def listener_for(self, subprotocol_name: str) -> SubchannelListenerEndpoint:
        """An endpoint whose ``listen(factory)`` serves the peer's subchannels named
        ``subprotocol_name``."""
        return SubchannelListenerEndpoint(self, subprotocol_name)

    def connector_for(self, subprotocol_name: str) -> SubchannelConnectorEndpoint:
        """An endpoint whose ``connect(factory)`` opens a subchannel to the peer's
        ``subprotocol_name``."""
        return SubchannelConnectorEndpoint(self, subprotocol_name)

    # -- asyncio streams ----------------------------------------------------------------------

    async def connect(self, subprotocol_name: str) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a subchannel to the peer's ``subprotocol_name`` as ``(reader, writer)``
        (asyncio wormholes). ``writer.write`` sends one record; ``await writer.drain()``
        waits while the queue is over its high-water mark; ``writer.close()`` closes the
        subchannel (both ways: there is no half-close); ``reader`` sees EOF once the
        peer closed."""
        if not isinstance(self._eventual, AsyncioEventual):
            raise TypeError("connect() gives asyncio streams: use connector_for() with Twisted")
        if not isinstance(subprotocol_name, str) or not subprotocol_name:
            raise ValueError("subprotocol must be a non-empty str")
        aw, settle = self._eventual.new()
        self._native.start_connect(subprotocol_name, settle)
        sub = await aw
        return _streams(self._eventual, sub)

    def listen(self, subprotocol_name: str) -> StreamListener:
        """Serve the peer's subchannels named ``subprotocol_name`` as asyncio streams
        (see :class:`StreamListener`). Once per name (``ValueError``)."""
        if not isinstance(self._eventual, AsyncioEventual):
            raise TypeError("listen() gives asyncio streams: use listener_for() with Twisted")
        if not isinstance(subprotocol_name, str) or not subprotocol_name:
            raise ValueError("subprotocol must be a non-empty str")
        try:
            return StreamListener(self, subprotocol_name)
        except _native.InvalidStateError as e:
            raise ValueError(str(e)) from None

    # -- the seed's form ------------------------------------------------------------------------

    def endpoints(self) -> Tuple[Any, Any, Any]:
        """The seed's ``(control_channel_ep, subchannel_client_ep,
        subchannel_server_ep)``: the client and server endpoints use the subprotocol
        :data:`SEED_SUBPROTOCOL`; the control endpoint is this library's (see
        :class:`_ControlEndpoint`)."""
        return self._endpoints

    def __iter__(self) -> Any:
        return iter(self._endpoints)

    def __await__(self) -> Any:
        return self._after_dilated(self.endpoints).__await__()

    def addCallback(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Twisted: the seed's ``w.dilate().addCallback(_dilated)``; ``_dilated`` gets
        the endpoint triple once dilated. Returns the Deferred."""
        return self._after_dilated(self.endpoints).addCallback(fn, *args, **kw)

    def addCallbacks(self, *args: Any, **kw: Any) -> Any:
        """Twisted: ``Deferred.addCallbacks`` on the endpoint triple (see addCallback)."""
        return self._after_dilated(self.endpoints).addCallbacks(*args, **kw)

    def addErrback(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Twisted: ``Deferred.addErrback`` on the endpoint triple (see addCallback)."""
        return self._after_dilated(self.endpoints).addErrback(fn, *args, **kw)

    def addBoth(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Twisted: ``Deferred.addBoth`` on the endpoint triple (see addCallback)."""
        return self._after_dilated(self.endpoints).addBoth(fn, *args, **kw)
