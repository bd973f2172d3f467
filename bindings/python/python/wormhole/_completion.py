"""``input_with_completion``: read a code with readline Tab completion.

:class:`CodeCompleter` holds the completion logic on the whole line typed so far, so it
can be tested without a terminal; :func:`input_with_completion` attaches it to readline
and runs ``input()`` in a daemon thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any, List, Optional

from wormhole._eventual import eventual_for
from wormhole._wormhole import InputHelper
from wormhole.errors import AlreadyInputNameplateError, KeyFormatError

log = logging.getLogger("wormhole")


class CodeCompleter:
    """Completes a wormhole code being typed, driving an :class:`InputHelper`.

    Text without ``-`` completes nameplates (asking the server for a fresh list each
    time); the first text with ``-`` commits the nameplate and waits until the wordlist
    is available; later text naming another nameplate raises
    ``AlreadyInputNameplateError``.
    """

    def __init__(
        self,
        helper: InputHelper,
        nameplate_wait: float = 0.5,
        wordlist_timeout: Optional[float] = 30.0,
    ) -> None:
        self._helper = helper
        self._nameplate_wait = nameplate_wait
        self._wordlist_timeout = wordlist_timeout
        self._committed: Optional[str] = None
        self._matches: List[str] = []
        #: True once Tab completion produced a match.
        self.used_completion = False

    def completions(self, text: str) -> List[str]:
        """Sorted completions of ``text`` (the whole line typed so far)."""
        if "-" not in text:
            if self._committed is not None:
                raise AlreadyInputNameplateError(
                    "nameplate (%s-) already entered, cannot go back" % self._committed
                )
            self._helper.refresh_nameplates()
            # The server answers asynchronously; give it a moment to refresh the list.
            deadline = time.monotonic() + self._nameplate_wait
            matches = self._helper.get_nameplate_completions(text)
            while not matches and time.monotonic() < deadline:
                time.sleep(0.02)
                matches = self._helper.get_nameplate_completions(text)
            return sorted(matches)
        nameplate, words = text.split("-", 1)
        self._commit(nameplate)
        return sorted(
            nameplate + "-" + c for c in self._helper.get_word_completions(words)
        )

    def _commit(self, nameplate: str) -> None:
        if self._committed is None:
            self._helper.choose_nameplate(nameplate)
            self._committed = nameplate
            self._helper._wait_wordlist(self._wordlist_timeout)
        elif nameplate != self._committed:
            raise AlreadyInputNameplateError(
                "nameplate (%s-) already entered, cannot go back" % self._committed
            )

    def complete(self, text: str, state: int) -> Optional[str]:
        """The readline completer function: the ``state``-th completion of ``text``."""
        try:
            if state == 0:
                self._matches = self.completions(text)
                if self._matches:
                    self.used_completion = True
            if state < len(self._matches):
                return self._matches[state]
            return None
        except Exception:
            # readline swallows exceptions silently; keep a trace for debugging.
            log.debug("completion failed", exc_info=True)
            return None

    def finish(self, text: str) -> str:
        """The user pressed Enter on ``text``: commit the nameplate and the words.
        Returns the code. ``KeyFormatError`` when the code has no ``-``."""
        text = text.strip()
        if "-" not in text:
            raise KeyFormatError("incomplete wormhole code")
        nameplate, words = text.split("-", 1)
        self._commit(nameplate)
        self._helper.choose_words(words)
        return text


def _read_code(prompt: str, completer: CodeCompleter) -> bool:
    """Blocking: ``input()`` with readline completion, then commit the code."""
    try:
        import readline
    except ImportError:  # no readline (e.g. Windows): plain input
        readline = None  # type: ignore[assignment]
    if readline is not None:
        old_completer = readline.get_completer()
        old_delims = readline.get_completer_delims()
        readline.parse_and_bind("tab: complete")
        readline.set_completer(completer.complete)
        readline.set_completer_delims("")
    try:
        text = input(prompt)
    finally:
        if readline is not None:
            readline.set_completer(old_completer)
            readline.set_completer_delims(old_delims)
    completer.finish(text)
    return completer.used_completion


def input_with_completion(prompt: str, helper: InputHelper, reactor: Any = None) -> Any:
    """Read a wormhole code from the terminal with Tab completion of nameplates (from
    the server) and words, and feed it to ``helper`` (from ``w.input_code()``).

    ``input()`` runs in a daemon thread. Returns an awaitable (or Deferred, for a Twisted
    ``reactor``) that fires with whether completion was used; the code itself arrives
    through the wormhole's ``get_code()`` / ``wormhole_got_code``.
    """
    ev = eventual_for(reactor) if reactor is not None else helper._eventual
    completer = CodeCompleter(helper)
    return ev.run_in_thread(lambda: _read_code(prompt, completer))
