"""Blocking file transfer (``wormhole send FILE|DIR`` / ``wormhole receive``).

No event loop is needed: each call blocks the calling thread without holding the
interpreter (other Python threads keep running) until it is done. Ctrl-C interrupts a
call with ``KeyboardInterrupt``, cancels the transfer and removes a partially received
file. ``progress(done, total)`` callbacks run on the calling thread, between waits; an
exception raised by one cancels the transfer and propagates.

The peer can be the reference CLI (the default app id is its ``TRANSFER_APPID``), our
asynchronous API, or this module::

    from wormhole.transfer import send_file, receive_file
    send_file("report.pdf", on_code=print)            # one side
    receive_file("7-purple-sausages", dest="inbox/")  # the other

The default rendezvous server is ``$WORMHOLE_RELAY_URL`` when set, else the public one.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, cast

from wormhole import _native
from wormhole._transfer import Offer, PathArg, Progress, _check_progress, _path
from wormhole.errors import TransferError, WormholeError
from wormhole.transcribe import default_rendezvous

__all__ = ["Offer", "Receiver", "Sender", "receive_file", "send_file"]


class _Side:
    def __init__(
        self,
        rendezvous: Optional[str],
        appid: str,
        transit_helper: Optional[str],
        no_listen: bool,
        timeout: Optional[float],
    ) -> None:
        if not isinstance(appid, str):
            raise TypeError("appid must be a str")
        self._w = _native.create(appid, rendezvous or default_rendezvous())
        self._transit_helper = transit_helper
        self._no_listen = bool(no_listen)
        self._timeout = timeout
        self._transfer: Optional[_native.Transfer] = None

    def _new_transfer(self, progress: Progress) -> _native.Transfer:
        _check_progress(progress)
        t = _native.Transfer(progress, self._transit_helper, self._no_listen, True)
        self._transfer = t
        return t

    def cancel(self) -> None:
        """Cancel the running transfer (from another thread) and abandon the wormhole."""
        if self._transfer is not None:
            self._transfer.cancel()
        self._w.cancel()

    def close(self) -> str:
        """Close the wormhole (blocks): ``"happy"``, or raises ``LonelyError``, …"""
        return cast(str, self._w.wait("close", None, self._timeout))


class Sender(_Side):
    """Sends one file or directory: ``code = s.start()``, give the code to the receiver,
    then ``s.finish()``."""

    def __init__(
        self,
        path: PathArg,
        rendezvous: Optional[str] = None,
        appid: str = _native.TRANSFER_APPID,
        code: Optional[str] = None,
        progress: Progress = None,
        transit_helper: Optional[str] = None,
        no_listen: bool = False,
        timeout: Optional[float] = None,
    ) -> None:
        """``path`` is the file or directory to send; ``rendezvous`` the mailbox server
        URL; ``code`` a fixed code (default: allocate one); ``progress(done, total)``
        reports bytes sent; ``transit_helper`` a relay (``"tcp:HOST:PORT"``);
        ``no_listen`` opens no listening socket; ``timeout`` (seconds) bounds each
        blocking call (default: no limit)."""
        self._path = _path(path, "path")
        _check_progress(progress)
        super().__init__(rendezvous, appid, transit_helper, no_listen, timeout)
        self._code = code
        self._progress = progress
        self._started = False

    def start(self) -> str:
        """Set or allocate the code and return it (blocks until it is known)."""
        try:
            if self._code is not None:
                self._w.set_code(self._code)
            else:
                self._w.allocate_code(2)
            code = cast(str, self._w.wait("code", None, self._timeout))
        except BaseException:
            self._w.cancel()
            raise
        self._started = True
        return code

    def finish(self) -> None:
        """Offer the file, send it and wait for the receiver's acknowledgement (with the
        SHA-256 check), then close. Raises ``TransferError`` when the receiver refused,
        ``WrongPasswordError`` when it typed another code, ``WormholeCancelled`` after
        :meth:`cancel`."""
        if not self._started:
            raise RuntimeError("call start() before finish()")
        t = self._new_transfer(self._progress)
        try:
            _native.wait_send(self._w, self._path, t, self._timeout)
        except BaseException:
            self._w.cancel()
            raise
        self.close()


class Receiver(_Side):
    """Receives with a code: ``offer = r.get_offer()``, then ``offer.accept(dest)`` (or
    ``offer.reject()``), then ``r.close()``."""

    def __init__(
        self,
        code: str,
        rendezvous: Optional[str] = None,
        appid: str = _native.TRANSFER_APPID,
        transit_helper: Optional[str] = None,
        no_listen: bool = False,
        timeout: Optional[float] = None,
    ) -> None:
        """``code`` is the sender's code; the other arguments are as for
        :class:`Sender`."""
        if not isinstance(code, str):
            raise TypeError("the code must be a str")
        super().__init__(rendezvous, appid, transit_helper, no_listen, timeout)
        try:
            self._w.set_code(code)
        except BaseException:
            self._w.cancel()
            raise

    def get_offer(self) -> Offer:
        """Wait for the sender's offer. Its :meth:`~wormhole.Offer.accept` blocks too."""
        t = self._new_transfer(None)
        try:
            v = _native.wait_receive(self._w, t, self._timeout)
        except BaseException:
            self._w.cancel()
            raise
        return Offer(v, None, timeout=self._timeout)


def send_file(
    path: PathArg,
    code: Optional[str] = None,
    *,
    on_code: Optional[Callable[[str], Any]] = None,
    rendezvous: Optional[str] = None,
    appid: str = _native.TRANSFER_APPID,
    progress: Progress = None,
    transit_helper: Optional[str] = None,
    no_listen: bool = False,
    timeout: Optional[float] = None,
) -> str:
    """Send the file or directory at ``path`` and return the code once the receiver has
    it all. ``on_code(code)`` is called as soon as the code is known (to show it); the
    other arguments are those of :class:`Sender`."""
    s = Sender(path, rendezvous, appid, code, progress, transit_helper, no_listen, timeout)
    c = s.start()
    if on_code is not None:
        try:
            on_code(c)
        except BaseException:
            s.cancel()
            raise
    s.finish()
    return c


def receive_file(
    code: str,
    dest: PathArg = ".",
    *,
    overwrite: bool = False,
    accept: Optional[Callable[[Offer], bool]] = None,
    rendezvous: Optional[str] = None,
    appid: str = _native.TRANSFER_APPID,
    progress: Progress = None,
    transit_helper: Optional[str] = None,
    no_listen: bool = False,
    timeout: Optional[float] = None,
) -> str:
    """Receive a file or directory with ``code`` into ``dest`` (inside it when it is a
    directory) and return the path written. ``accept(offer)`` may inspect the
    :class:`~wormhole.Offer` first and return false to refuse it (``TransferError``).
    An existing file is replaced only with ``overwrite`` (a directory never). A text offer raises
    ``TransferError`` (use :class:`Receiver` to get it)."""
    r = Receiver(code, rendezvous, appid, transit_helper, no_listen, timeout)
    offer = r.get_offer()
    try:
        if offer.kind == "text":
            raise TransferError("the sender offered a text, not a file")
        if accept is not None and not accept(offer):
            offer.reject()
            raise TransferError("the offer was refused")
        path = cast(str, offer.accept(dest, overwrite, progress))
    except WormholeError:
        # Let the refusal reach the sender before leaving.
        try:
            r.close()
        except WormholeError:
            pass
        raise
    except BaseException:
        r.cancel()
        raise
    r.close()
    return path
