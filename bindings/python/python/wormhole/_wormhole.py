"""``wormhole.create()`` and the wormhole objects it returns (deferred and delegated mode)."""

from __future__ import annotations

import json
import logging
import weakref
from typing import Any, Callable, Dict, Optional, Set

from wormhole import _native
from wormhole._dilation import DilatedWormhole
from wormhole._eventual import _Eventual, eventual_for
from wormhole._transfer import (
    Offer,
    PathArg,
    Progress,
    _path,
    new_async_transfer,
    start_async,
)
from wormhole.errors import CanOnlyDilateOnceError, NoTorError

log = logging.getLogger("wormhole")

_EVENT_METHODS = {
    "welcome": "wormhole_got_welcome",
    "code": "wormhole_got_code",
    "unverified_key": "wormhole_got_unverified_key",
    "verifier": "wormhole_got_verifier",
    "versions": "wormhole_got_versions",
    "message": "wormhole_got_message",
    "closed": "wormhole_closed",
    "wordlist_available": "wormhole_wordlist_available",
    "offer": "wormhole_got_offer",
    "transfer_progress": "wormhole_transfer_progress",
    "text_sent": "wormhole_text_sent",
    "text_received": "wormhole_text_received",
    "file_sent": "wormhole_file_sent",
    "file_received": "wormhole_file_received",
}


class OfferInfo:
    """What the sender offers, for ``delegate.wormhole_got_offer(offer)``: answer with
    :meth:`DelegatedWormhole.accept_offer` or :meth:`DelegatedWormhole.reject_offer`."""

    #: ``"file"`` or ``"directory"``.
    kind: str
    #: The offered base name (already reduced to a safe base name).
    name: str
    #: Bytes that travel: the file size, or the zip size of a directory.
    size: int
    #: The sum of the files' sizes (a file: its size).
    numbytes: int
    #: The number of files (a file: 1).
    numfiles: int

    def __init__(self, d: Dict[str, Any]) -> None:
        self.kind, self.name, self.size = d["kind"], d["name"], d["size"]
        self.numbytes, self.numfiles = d["numbytes"], d["numfiles"]

    def __repr__(self) -> str:
        return "<wormhole OfferInfo %s %r, %d bytes>" % (self.kind, self.name, self.size)


def _ignore(err: Optional[BaseException], val: Any) -> None:
    """A completion nobody waits for."""


class InputHelper:
    """Interactive code entry with completion, from :meth:`Wormhole.input_code`.

    Call :meth:`choose_nameplate` then :meth:`choose_words`; the completion methods help
    a front end such as :func:`wormhole.input_with_completion` in between.
    """

    def __init__(self, native: _native.InputHelper, eventual: _Eventual) -> None:
        self._native = native
        self._eventual = eventual

    def refresh_nameplates(self) -> None:
        """Ask the server for the nameplates in use; later completions use the answer.

        Raises ``AlreadyChoseNameplateError`` after :meth:`choose_nameplate`."""
        self._native.refresh_nameplates()

    def get_nameplate_completions(self, prefix: str) -> Set[str]:
        """The known nameplates starting with ``prefix``, each followed by ``-``.

        Raises ``AlreadyChoseNameplateError`` after :meth:`choose_nameplate`."""
        return set(self._native.get_nameplate_completions(prefix))

    def choose_nameplate(self, nameplate: str) -> None:
        """Commit the nameplate (digits only, else ``KeyFormatError``) and claim it.

        Only once: ``AlreadyChoseNameplateError`` afterwards."""
        self._native.choose_nameplate(nameplate)

    def when_wordlist_is_available(self) -> Any:
        """An awaitable (or Deferred) that fires with ``None`` once the chosen nameplate is
        claimed and :meth:`get_word_completions` can answer."""
        aw, settle = self._eventual.new()
        self._native.start_wordlist(settle)
        return aw

    def get_word_completions(self, prefix: str) -> Set[str]:
        """Completions of the words typed so far (``"opulent-pr"``), with a trailing ``-``
        when more words are expected; empty until the wordlist is available.

        Raises ``MustChooseNameplateFirstError`` before :meth:`choose_nameplate` and
        ``AlreadyChoseWordsError`` after :meth:`choose_words`."""
        return set(self._native.get_word_completions(prefix))

    def choose_words(self, words: str) -> None:
        """Finish: the code becomes ``nameplate-words`` and the connection proceeds.

        Raises ``MustChooseNameplateFirstError`` or ``AlreadyChoseWordsError``."""
        self._native.choose_words(words)

    def _wait_wordlist(self, timeout: Optional[float] = None) -> None:
        """Block the calling (non-loop) thread until the wordlist is available."""
        self._native.wait_wordlist(timeout)


class Wormhole:
    """What both modes share: choosing the code, sending, deriving keys.

    Use :func:`wormhole.create` to make one. It stays alive while you hold it, while any
    of its operations is pending, or while its input helper is held; after that it is
    cancelled (the nameplate and mailbox are released in the background)."""

    def __init__(self, native: _native.Wormhole, eventual: _Eventual) -> None:
        self._native = native
        self._eventual = eventual

    def allocate_code(self, length: int = 2) -> None:
        """Allocate a nameplate on the server and pick ``length`` random words; the code
        is delivered like any other (``get_code()`` / ``wormhole_got_code``)."""
        if not isinstance(length, int) or length < 1:
            raise ValueError("length must be a positive integer")
        self._native.allocate_code(length)

    def set_code(self, code: str) -> None:
        """Use a complete code such as ``"4-purple-sausages"``.

        Raises ``KeyFormatError`` for a space or a non-numeric nameplate, and
        ``OnlyOneCodeError`` if a code was already set, allocated or being input."""
        if not isinstance(code, str):
            raise TypeError("the code must be a str")
        self._native.set_code(code)

    def input_code(self) -> InputHelper:
        """Start interactive code entry: returns the helper (see :class:`InputHelper`)."""
        return InputHelper(self._native.input_code(), self._eventual)

    def send_message(self, msg: bytes) -> None:
        """Queue ``msg`` (bytes) for the peer. Messages arrive in order, exactly once."""
        if not isinstance(msg, (bytes, bytearray, memoryview)):
            raise TypeError("messages must be bytes")
        self._native.send_message(bytes(msg))

    def derive_key(self, purpose: str, length: int) -> bytes:
        """Derive ``length`` bytes for ``purpose`` from the session key.

        Raises ``NoKeyError`` before the key is known."""
        if not isinstance(purpose, str):
            raise TypeError("purpose must be a str")
        if not isinstance(length, int) or length < 0:
            raise ValueError("length must be a non-negative integer")
        return self._native.derive_key(purpose, length)

    def cancel(self) -> None:
        """Abandon the wormhole without waiting (an extension of this library)."""
        self._native.cancel()


class DeferredWormhole(Wormhole):
    """Deferred mode: the ``get_*`` methods return awaitables (asyncio) or Deferreds
    (Twisted) that fire when the event happens."""

    def __init__(
        self,
        native: _native.Wormhole,
        eventual: _Eventual,
        welcome_handler: Any = None,
        dilation: bool = False,
    ) -> None:
        super().__init__(native, eventual)
        self._transfers: Set[_native.Transfer] = set()
        self._dilation = dilation
        self._dilated: Any = None
        # Tests pick the Dilation role with this (16 hex digits; the larger side leads).
        self._dilation_side: Optional[str] = None
        if welcome_handler is not None:

            def on_loop(err: Optional[BaseException], val: Any) -> None:
                if err is None:
                    try:
                        welcome_handler(json.loads(val))
                    except Exception:
                        log.exception("the welcome handler raised")

            self._native.start(
                "welcome", lambda err, val: eventual.call(on_loop, err, val), None
            )

    def _op(self, op: str, convert: Any = None, arg: Optional[str] = None) -> Any:
        aw, settle = self._eventual.new(convert)
        self._native.start(op, settle, arg)
        return aw

    def get_welcome(self) -> Any:
        """Fires with the server's welcome message (a dict, e.g. with ``motd``)."""
        return self._op("welcome", json.loads)

    def get_code(self) -> Any:
        """Fires with the code once it is allocated, set or input."""
        return self._op("code")

    def get_unverified_key(self) -> Any:
        """Fires with the SPAKE2 key (bytes) before the peer has proven it holds it."""
        return self._op("unverified_key")

    def get_verifier(self) -> Any:
        """Fires with the verifier (32 bytes) once the peer's first message decrypted;
        both sides can compare it (as hex) to rule out a man in the middle."""
        return self._op("verifier")

    def get_versions(self) -> Any:
        """Fires with the peer's ``versions`` dict."""
        return self._op("versions", json.loads)

    def get_message(self) -> Any:
        """Fires with the next message from the peer (bytes); each message exactly once,
        in order, even with several calls outstanding. Cancelling the returned awaitable
        does not cancel the request: the message it would have received is dropped."""
        return self._op("message")

    def close(self) -> Any:
        """Release the nameplate and mailbox; fires with ``"happy"``, or fails with
        ``LonelyError``, ``WrongPasswordError``, ``WelcomeError``, ``ServerError``, …"""
        return self._op("close")

    def send_text(self, text: str) -> Any:
        """PROTOCOL §8 text offer (``wormhole send --text``): sends the offer and fires
        with ``None`` once the receiver acknowledged it. Use the app id
        ``wormhole.TRANSFER_APPID`` to talk to the reference CLI."""
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        return self._op("send_text", None, text)

    def receive_text(self) -> Any:
        """PROTOCOL §8 text answer (``wormhole receive``): waits for a text offer,
        acknowledges it and fires with the text. A file offer is refused
        (``TransferError``)."""
        return self._op("receive_text")

    def send_file(
        self,
        path: PathArg,
        progress: Progress = None,
        transit_helper: Optional[str] = None,
        no_listen: bool = False,
    ) -> Any:
        """PROTOCOL §8 file transfer (``wormhole send FILE|DIR``): offers the file or
        directory at ``path`` (a directory is zipped while streaming), sends it over
        Transit and fires with ``None`` once the receiver acknowledged every byte with the
        matching SHA-256. Set the code first; close the wormhole afterwards. Use the app id
        ``wormhole.TRANSFER_APPID`` to talk to the reference CLI.

        ``progress(done, total)`` reports bytes sent, on the loop or reactor thread;
        ``transit_helper`` is a relay (``"tcp:HOST:PORT"``); ``no_listen`` opens no
        listening socket (the peer must connect to us, or both use the relay).
        A rejected offer fails with ``TransferError``. Cancelling the awaitable (or
        :meth:`cancel_transfer`) cancels the transfer: ``WormholeCancelled``."""
        path_s = _path(path, "path")
        t = new_async_transfer(self._eventual, progress, transit_helper, bool(no_listen))
        return start_async(
            self._eventual,
            self._transfers,
            t,
            lambda cb: _native.start_send(self._native, path_s, t, cb),
        )

    def receive_offer(
        self, transit_helper: Optional[str] = None, no_listen: bool = False
    ) -> Any:
        """PROTOCOL §8 receiving side (``wormhole receive``): waits for the sender's offer
        and fires with an :class:`~wormhole.Offer` to ``accept(dest)`` or ``reject()``.
        A text offer is acknowledged at once (its ``kind`` is ``"text"``, its ``text`` the
        message). ``transit_helper`` and ``no_listen`` are as for :meth:`send_file`."""
        t = new_async_transfer(self._eventual, None, transit_helper, bool(no_listen))
        eventual, active = self._eventual, self._transfers
        return start_async(
            eventual,
            active,
            t,
            lambda cb: _native.start_receive(self._native, t, cb),
            lambda v: Offer(v, eventual, active),
        )

    def dilate(
        self,
        transit_relay_location: Optional[str] = None,
        no_listen: bool = False,
        on_status_update: Optional[Callable[[Any], Any]] = None,
        ping_interval: Optional[float] = None,
        expected_subprotocols: Any = None,
    ) -> Any:
        """Dilate the wormhole (the reference 0.24's ``w.dilate()``): a durable,
        encrypted connection to the peer, direct or through the transit relay
        ``transit_relay_location`` (``"tcp:HOST:PORT"``), carrying any number of
        subchannels. Returns a :class:`wormhole._dilation.DilatedWormhole` at once
        (``when_dilated()``, ``listener_for(name)``, ``connector_for(name)``; on asyncio
        also ``connect(name)`` and ``listen(name)`` for streams; it also unpacks into the
        seed's three endpoints). ``no_listen``: no listening socket and no direct hints.
        ``on_status_update(DilationStatus)`` is called on the loop or reactor thread at
        each change. ``ping_interval``: the keepalive interval (seconds, default 30).
        ``expected_subprotocols`` is accepted and ignored, like the reference.

        Needs ``create(..., dilation=True)`` (``NotImplementedError`` otherwise); once
        per wormhole (``CanOnlyDilateOnceError``)."""
        if not self._dilation:
            raise NotImplementedError("dilate() needs wormhole.create(..., dilation=True)")
        if self._dilated is not None:
            raise CanOnlyDilateOnceError("dilate() can be called once")
        if transit_relay_location is not None and not isinstance(transit_relay_location, str):
            raise TypeError("transit_relay_location must be a str like 'tcp:HOST:PORT'")
        if ping_interval is not None and (
            not isinstance(ping_interval, (int, float)) or not ping_interval > 0
        ):
            raise ValueError("ping_interval must be a positive number of seconds")
        native = self._native.dilate(
            transit_relay_location,
            bool(no_listen),
            None if ping_interval is None else float(ping_interval),
            self._dilation_side,
        )
        self._dilated = DilatedWormhole(
            native,
            self._eventual,
            on_status_update,
            30.0 if ping_interval is None else float(ping_interval),
        )
        return self._dilated

    def cancel_transfer(self) -> None:
        """Cancel every running :meth:`send_file`, :meth:`receive_offer` and
        ``Offer.accept()`` of this wormhole: each fails with ``WormholeCancelled``, its
        Transit connection is closed and a partially received file is removed. The
        wormhole itself stays open."""
        for t in list(self._transfers):
            t.cancel()


class DelegatedWormhole(Wormhole):
    """Delegated mode: events call ``wormhole_got_*`` / ``wormhole_closed`` methods of the
    delegate, on the event loop or reactor thread, in order."""

    def close(self) -> None:
        """Start closing; the outcome goes to ``delegate.wormhole_closed(result)``
        (``"happy"`` or an exception instance)."""
        self._native.begin_close()

    def serialize(self) -> Dict[str, Any]:
        """The wormhole's state as a JSON-encodable dict (the seed's ``w.serialize()``):
        :func:`from_serialized` continues it, in this process or another, after any time.

        It includes the events not yet delivered to the delegate (delivered first after a
        restore): call it once the delegate has handled what it got, and save it with the
        application's own state (or let a :class:`wormhole.journal.Journal` do both). Not
        while a transfer runs, the code is being typed, or the wormhole is closing.

        **The dict holds secrets** (the session key, or the code and the seed of the
        SPAKE2 scalar): store it like a key, never log it."""
        result: Dict[str, Any] = json.loads(self._native.serialize())
        return result

    def suspend(self) -> Dict[str, Any]:
        """:meth:`serialize`, then stop this wormhole without a word to the server, as if
        the process had ended: the nameplate and mailbox stay claimed and the peer keeps
        waiting until :func:`from_serialized` continues it (the restored wormhole sends
        whatever this one had not sent yet). Afterwards its calls raise
        ``WormholeClosed`` and the delegate gets no ``wormhole_closed``: the restored
        wormhole delivers that. (Dropping a wormhole instead cancels it: the peer learns
        it is gone.) If it raises, the wormhole runs on. The dict holds secrets."""
        result: Dict[str, Any] = json.loads(self._native.suspend())
        return result

    # Transfers (PROTOCOL §8): they return at once; their events go to the delegate, in
    # order with the others, each transfer ending before ``wormhole_closed``. One runs at
    # a time (``TransferInProgressError`` otherwise); while it runs, the peer's messages
    # belong to it (not ``wormhole_got_message``).

    def send_text(self, text: str) -> None:
        """Send ``text`` like ``wormhole send --text``; the outcome goes to
        ``delegate.wormhole_text_sent(result)`` (``None`` or an exception)."""
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        self._native.start_send_text(text)

    def receive_text(self) -> None:
        """Wait for a text like ``wormhole receive --only-text``; it goes to
        ``delegate.wormhole_text_received(text)`` (or an exception)."""
        self._native.start_receive_text()

    def send_file(
        self, path: PathArg, transit_helper: Optional[str] = None, no_listen: bool = False
    ) -> None:
        """Send the file or directory at ``path`` like ``wormhole send PATH``. Events:
        ``wormhole_transfer_progress(done, total)``, then ``wormhole_file_sent(result)``."""
        t = _native.Transfer(None, transit_helper, bool(no_listen), False)
        _native.start_send_file(self._native, _path(path, "path"), t)

    def receive_file(self, transit_helper: Optional[str] = None, no_listen: bool = False) -> None:
        """Receive what the sender offers like ``wormhole receive``: a file or directory
        comes as ``wormhole_got_offer(offer)`` (an :class:`OfferInfo`; answer with
        :meth:`accept_offer` or :meth:`reject_offer`), then progress and
        ``wormhole_file_received(path)`` (or an exception); a text comes as
        ``wormhole_text_received(text)``. Call it before setting the code."""
        t = _native.Transfer(None, transit_helper, bool(no_listen), False)
        _native.start_receive_file(self._native, t)

    def accept_offer(self, dest: PathArg = ".", overwrite: bool = False) -> None:
        """Accept the waiting offer into ``dest`` (an existing directory: inside it,
        under the offered name), with the checks of ``Offer.accept``."""
        self._native.accept_offer(_path(dest, "dest"), bool(overwrite))

    def reject_offer(self) -> None:
        """Reject the waiting offer: the sender is told ``transfer rejected``; the
        outcome is ``wormhole_file_received(WormholeCancelled)``."""
        self._native.reject_offer()

    def cancel_transfer(self) -> None:
        """Cancel the running transfer (the wormhole stays open)."""
        self._native.cancel_transfer()


def _make_event_handler(
    eventual: _Eventual,
    delegate: Any,
    welcome_handler: Any,
    owner: Callable[[], Any],
    journal: Any = None,
) -> Any:
    """The ``on_event(name, value)`` the native side calls on its dispatcher thread.

    Holds the wormhole only weakly, so an abandoned delegated wormhole can still be
    garbage-collected (and so cancelled). Each event counts as taken (for
    ``serialize()``) just before its delegate method runs; with a journal, it runs inside
    ``journal.process()``."""

    def deliver(name: str, value: Any) -> None:
        w = owner()
        if w is not None:
            w._native.took_event()
        if journal is not None:
            with journal.process():
                call(name, value)
        else:
            call(name, value)

    def call(name: str, value: Any) -> None:
        if name in ("welcome", "versions"):
            value = json.loads(value)
        elif name == "offer":
            value = OfferInfo(value)
        try:
            if name == "welcome" and welcome_handler is not None:
                welcome_handler(value)
            method = getattr(delegate, _EVENT_METHODS[name], None)
            if method is None:
                pass
            elif name == "wordlist_available":
                method()
            elif name == "transfer_progress":
                method(*value)
            else:
                method(value)
        except Exception:
            log.exception("a wormhole delegate method raised; cancelling the wormhole")
            w = owner()
            if w is not None:
                w.cancel()

    def on_event(name: str, value: Any) -> None:
        eventual.call(deliver, name, value)

    return on_event


def create(
    appid: str,
    relay_url: str,
    reactor: Any = None,
    delegate: Any = None,
    versions: Optional[Dict[str, Any]] = None,
    *,
    welcome_handler: Any = None,
    journal: Any = None,
    tor: Any = None,
    timing: Any = None,
    stderr: Any = None,
    dilation: bool = False,
    connect_timeout: Optional[float] = None,
    close_timeout: Optional[float] = None,
    socks5: Optional[str] = None,
) -> Any:
    """Create a wormhole and start connecting to the mailbox server at ``relay_url``.

    ``reactor`` picks how events are delivered: ``None`` for the running asyncio loop
    (awaitables), an asyncio loop, or a Twisted reactor (Deferreds fired in the reactor
    thread). With a ``delegate``, its ``wormhole_got_*`` and ``wormhole_closed`` methods
    are called on that loop instead, and a :class:`DelegatedWormhole` is returned;
    otherwise a :class:`DeferredWormhole`. ``versions`` (a JSON-able dict) reaches the
    peer's ``get_versions()``. ``connect_timeout`` bounds the first connection and
    ``close_timeout`` the wait for the server on close (seconds). ``socks5``
    (``"[USER:PASSWORD@]HOST:PORT"``) sends every connection, the mailbox and Transit,
    through that SOCKS5 proxy, which resolves the names; Transit then neither listens nor
    sends our addresses. ``tor`` (from :func:`wormhole.tor_manager.get_tor`) does the same
    through Tor, with the reference's Tor rules (see the README).
    ``journal`` (a :class:`wormhole.journal.Journal`, delegated mode only): journaled
    mode, each event handled inside ``journal.process()``. ``dilation=True`` offers
    Dilation to the peer and enables :meth:`DeferredWormhole.dilate` (deferred mode
    only, like the reference). ``timing`` and ``stderr`` are accepted and ignored.
    """
    native_tor = None
    if tor is not None:
        native_tor = getattr(tor, "_native_tor", None)
        if native_tor is None:
            raise NoTorError("tor= must come from wormhole.tor_manager.get_tor()")
    if journal is not None and delegate is None:
        raise ValueError("journaled mode needs delegated mode (a delegate)")
    if not isinstance(appid, str) or not isinstance(relay_url, str):
        raise TypeError("appid and relay_url must be str")
    eventual = eventual_for(reactor)
    versions_json = json.dumps(versions if versions is not None else {})
    if delegate is None:
        native = _native.create(
            appid, relay_url, versions_json, None, connect_timeout, close_timeout, socks5,
            native_tor, bool(dilation),
        )
        return DeferredWormhole(native, eventual, welcome_handler, bool(dilation))
    holder: Dict[str, Any] = {}
    handler = _make_event_handler(
        eventual,
        delegate,
        welcome_handler,
        lambda: holder.get("w") and holder["w"](),
        journal,
    )
    native = _native.create(
        appid, relay_url, versions_json, handler, connect_timeout, close_timeout, socks5,
        native_tor, bool(dilation),
    )
    w = DelegatedWormhole(native, eventual)
    holder["w"] = weakref.ref(w)
    if journal is not None:
        journal._attach(w)
    return w


def from_serialized(
    data: Any,
    reactor: Any = None,
    delegate: Any = None,
    *,
    welcome_handler: Any = None,
    journal: Any = None,
    tor: Any = None,
    connect_timeout: Optional[float] = None,
    close_timeout: Optional[float] = None,
    socks5: Optional[str] = None,
) -> DelegatedWormhole:
    """Continue a wormhole saved with :meth:`DelegatedWormhole.serialize` (the seed's
    ``wormhole.from_serialized(data, reactor, delegate)``): it reconnects to the same
    mailbox server and carries on, and the peer notices nothing. ``data`` is the dict (or
    its JSON text). The events that were not delivered when it was saved come first.
    Restoring the same data twice gives two copies of one side: keep one.

    Raises :class:`ValueError` for data that is not a saved wormhole, of another
    version, or damaged (the message never quotes it), and without a delegate."""
    if delegate is None:
        raise ValueError("from_serialized needs a delegate (serialization is delegated mode)")
    native_tor = None
    if tor is not None:
        native_tor = getattr(tor, "_native_tor", None)
        if native_tor is None:
            raise NoTorError("tor= must come from wormhole.tor_manager.get_tor()")
    text = data if isinstance(data, str) else json.dumps(data)
    eventual = eventual_for(reactor)
    holder: Dict[str, Any] = {}
    handler = _make_event_handler(
        eventual,
        delegate,
        welcome_handler,
        lambda: holder.get("w") and holder["w"](),
        journal,
    )
    native = _native.from_serialized(
        text, handler, connect_timeout, close_timeout, socks5, native_tor
    )
    w = DelegatedWormhole(native, eventual)
    holder["w"] = weakref.ref(w)
    if journal is not None:
        journal._attach(w)
    return w
