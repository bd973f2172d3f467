"""File transfer on a wormhole (PROTOCOL §8 over Transit): the offer object and the
glue shared by the asynchronous methods and the blocking :mod:`wormhole.transfer`."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, Optional, Set, Union

from wormhole import _native
from wormhole._eventual import _Eventual

log = logging.getLogger("wormhole")

#: ``progress(done, total)``: bytes done so far and bytes in all.
Progress = Optional[Callable[[int, int], Any]]
PathArg = Union[str, "os.PathLike[str]"]


def _check_progress(progress: Progress) -> None:
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a callable progress(done, total)")


def _path(p: Any, what: str) -> str:
    try:
        s = os.fspath(p)
    except TypeError:
        raise TypeError("%s must be a str or an os.PathLike" % what) from None
    if not isinstance(s, str):
        s = os.fsdecode(s)
    return s


def new_async_transfer(
    eventual: _Eventual,
    progress: Progress,
    transit_helper: Optional[str] = None,
    no_listen: bool = False,
) -> _native.Transfer:
    """A native transfer whose progress reports run ``progress`` on the loop thread; an
    exception from ``progress`` is logged and cancels the transfer.

    The callback holds the transfer only through ``holder``, which :func:`start_async`
    empties when the operation ends: the native object's reference to the callback is
    invisible to the garbage collector, so a direct cycle would never be freed."""
    _check_progress(progress)
    holder: List[_native.Transfer] = []

    def on_loop(done: int, total: int) -> None:
        assert progress is not None
        try:
            progress(done, total)
        except Exception:
            log.exception("a transfer progress callback raised; cancelling the transfer")
            if holder:
                holder[0].cancel()

    def on_dispatch(done: int, total: int) -> None:
        eventual.call(on_loop, done, total)

    t = _native.Transfer(
        on_dispatch if progress is not None else None, transit_helper, no_listen, False
    )
    holder.append(t)
    _HOLDERS[id(t)] = holder
    return t


#: id(transfer) -> the holder its progress callback uses (see new_async_transfer).
_HOLDERS: Dict[int, List[_native.Transfer]] = {}


def start_async(
    eventual: _Eventual,
    active: Set[_native.Transfer],
    t: _native.Transfer,
    start: Callable[[Callable[[Optional[BaseException], Any], None]], None],
    convert: Any = None,
) -> Any:
    """Start a native operation with ``start(callback)``; an awaitable for its result.
    Cancelling the awaitable cancels the transfer; ``t`` is in ``active`` meanwhile."""
    aw, settle = eventual.new(convert, on_cancel=t.cancel)
    active.add(t)

    def release() -> None:
        active.discard(t)
        holder = _HOLDERS.pop(id(t), None)
        if holder is not None:
            # After the progress reports queued before the result (same queue).
            eventual.call(holder.clear)

    def done(err: Optional[BaseException], val: Any) -> None:
        release()
        settle(err, val)

    try:
        start(done)
    except BaseException:
        release()
        raise
    return aw


class Offer:
    """What the sender offers: a file, a directory, or a text.

    From :meth:`wormhole.DeferredWormhole.receive_offer` (asynchronous: :meth:`accept`
    returns an awaitable or Deferred) or :meth:`wormhole.transfer.Receiver.get_offer`
    (blocking: :meth:`accept` blocks). Accept it or reject it; an offer dropped undecided
    is rejected. A text offer is already acknowledged: read :attr:`text`.
    """

    #: ``"file"``, ``"directory"`` or ``"text"``.
    kind: str
    #: The offered base name (file or directory name; ``""`` for a text).
    name: str
    #: Bytes that travel: the file size, or the zip size of a directory.
    size: int
    #: The sum of the files' sizes (a file: its size).
    numbytes: int
    #: The number of files (a file: 1; a text: 0).
    numfiles: int
    #: The text of a text offer, else ``None``.
    text: Optional[str]

    def __init__(
        self,
        native: Any,
        eventual: Optional[_Eventual],
        active: Optional[Set[_native.Transfer]] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self._eventual = eventual
        self._active: Set[_native.Transfer] = active if active is not None else set()
        self._timeout = timeout
        self._transfer: Optional[_native.Transfer] = None
        if isinstance(native, str):
            self._native: Optional[_native.Offer] = None
            self.kind, self.name, self.text = "text", "", native
            self.size = self.numbytes = len(native.encode("utf-8"))
            self.numfiles = 0
        else:
            self._native = native
            self.kind, self.name, self.text = native.kind, native.name, None
            self.size, self.numbytes, self.numfiles = (
                native.size,
                native.numbytes,
                native.numfiles,
            )

    def __repr__(self) -> str:
        return "<wormhole Offer %s %r, %d bytes>" % (self.kind, self.name, self.size)

    def _file_offer(self) -> _native.Offer:
        if self._native is None:
            raise ValueError("a text offer has nothing to accept or reject")
        return self._native

    def destination(self, dest: PathArg = ".") -> str:
        """Where :meth:`accept` would write: inside ``dest`` if it is an existing
        directory (under the offered name), else ``dest`` itself."""
        return self._file_offer().destination(_path(dest, "dest"))

    def accept(
        self, dest: PathArg = ".", overwrite: bool = False, progress: Progress = None
    ) -> Any:
        """Receive into ``dest`` (see :meth:`destination`) and return the path written.

        An existing file is replaced by a received file only with ``overwrite``; an
        existing directory or symbolic link is never replaced. Otherwise the transfer is
        refused (``TransferError``, the sender is told ``transfer rejected``), as is an
        offer larger than the free space. Data goes to a hidden
        temporary name that is renamed into place only once complete; a failed or
        cancelled transfer leaves nothing behind. ``progress(done, total)`` reports bytes
        received, on the loop or reactor thread (blocking: on the calling thread).

        Asynchronous offers return an awaitable (Deferred) firing with the path;
        cancelling it, :meth:`cancel` or ``wormhole.cancel_transfer()`` cancel the
        transfer (``WormholeCancelled``). Blocking offers block, releasing the
        interpreter; Ctrl-C cancels."""
        native = self._file_offer()
        dest_s = _path(dest, "dest")
        overwrite = bool(overwrite)
        if self._eventual is None:
            _check_progress(progress)
            t = _native.Transfer(progress, None, False, True)
            self._transfer = t
            return native.wait_accept(dest_s, overwrite, t, self._timeout)
        t = new_async_transfer(self._eventual, progress)
        self._transfer = t
        return start_async(
            self._eventual,
            self._active,
            t,
            lambda cb: native.start_accept(dest_s, overwrite, t, cb),
        )

    def reject(self) -> None:
        """Refuse the offer: the sender fails with ``TransferError``."""
        self._file_offer().reject()

    def cancel(self) -> None:
        """Cancel a running :meth:`accept` (from any thread)."""
        if self._transfer is not None:
            self._transfer.cancel()
