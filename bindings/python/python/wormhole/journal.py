"""Journaled mode (the seed's ``journal.md``): outbound messages produced while the
application handles an event leave only after the application has saved its state.

::

    def save_checkpoint():
        store({"app": app_state, "wormhole": w.serialize()})  # atomically

    j = wormhole.journal.Journal(save_checkpoint)
    w = wormhole.create(appid, relay_url, reactor, delegate=d, journal=j)

Each delegate method then runs inside ``j.process()``: everything the wormhole would send
to the server meanwhile (``w.send_message()`` and the rest) is held; when the method
returns, ``save_checkpoint()`` runs, and only then is it released. Wrap the
application's own actions the same way (``with j.process(): w.send_message(...)``). If
the process dies before the save, nothing of that step reached the peer, and the restored
wormhole (:func:`wormhole.from_serialized`) delivers the event again; if it dies after,
the restored wormhole sends what the save holds. If the handler or the save raises, the
held frames stay held until a later ``process()`` saves successfully.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Callable, Iterator, List


class Journal:
    """A journal for one or more delegated wormholes (``create(..., journal=j)``).

    ``save_checkpoint()`` is called (on the event loop) at the end of every successful
    ``process()``; it should save the application's state and ``w.serialize()``
    together, atomically."""

    def __init__(self, save_checkpoint: Callable[[], Any]) -> None:
        if not callable(save_checkpoint):
            raise TypeError("save_checkpoint must be callable")
        self._save = save_checkpoint
        self._wormholes: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._depth = 0
        self._held: List[Any] = []

    def _attach(self, w: Any) -> None:
        self._wormholes.add(w)

    @contextlib.contextmanager
    def process(self) -> Iterator[None]:
        """Hold every attached wormhole's outbound frames for the block; then save the
        checkpoint and release them. Nested blocks are part of the outermost one."""
        if self._depth:
            yield
            return
        self._depth = 1
        self._held.extend(w._native.hold_outbound() for w in list(self._wormholes))
        try:
            yield
            self._save()
        finally:
            self._depth = 0
        held, self._held = self._held, []
        for h in held:
            h.release()


class ImmediateJournal:
    """No journal: ``process()`` holds nothing and saves nothing (the default)."""

    @contextlib.contextmanager
    def process(self) -> Iterator[None]:
        yield


__all__ = ["ImmediateJournal", "Journal"]
