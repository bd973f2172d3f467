//! *Terminator*: once closing starts, waits until the nameplate is released and the
//! mailbox closed, then stops the session with the result decided when closing began.

use crate::error::Result;

/// States after the reference's `_terminator.py`. Its closing states name what is still
/// outstanding (`Snm`, `Sn`, `Sm`); here that is asked of the nameplate and mailbox
/// machines, so one `Closing` state stands for them.
#[derive(Debug, Clone)]
enum State {
    /// `Snmo`: open; nothing decided.
    Open,
    /// `Snm` / `Sn` / `Sm`: closing; the result is decided, acknowledgements are awaited.
    Closing { result: Result<()> },
    /// `S_stopped`: `Closed` was emitted.
    Stopped,
}

#[derive(Debug)]
pub(super) struct Terminator {
    state: State,
}

impl Terminator {
    pub(super) fn new() -> Terminator {
        Terminator { state: State::Open }
    }

    /// Start closing with `result` (the mood goes to the mailbox machine). False if closing
    /// had already started: the first decision stands.
    pub(super) fn close(&mut self, result: Result<()>) -> bool {
        if let State::Open = self.state {
            self.state = State::Closing { result };
            true
        } else {
            false
        }
    }

    /// Stop: returns the result to report, or `None` if already stopped. Stopping while
    /// still open (a local failure) uses `fallback`.
    pub(super) fn stop(&mut self, fallback: Result<()>) -> Option<Result<()>> {
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Open => Some(fallback),
            State::Closing { result, .. } => Some(result),
            State::Stopped => None,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    pub(super) fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }
}

impl Terminator {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::Open => "Snmo",
            State::Closing { .. } => "Sclosing",
            State::Stopped => "S_stopped",
        }
    }
}
