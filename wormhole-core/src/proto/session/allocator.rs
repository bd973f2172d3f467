//! *Allocator*: asks the server for a free nameplate and makes the code from it.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::rendezvous::Link;
use crate::proto::code::{generate_words, validate_nameplate};
use crate::proto::wire::ClientMessage;

/// States as in the reference's `_allocator.py` (its `A`/`B` halves are [`Link`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0_idle`: nothing asked.
    Idle,
    /// `S1_allocating`: `allocate` sent on this connection, or to be sent on the next.
    Allocating { length: usize },
    /// `S2_done`: allocated, or closed before anything was asked.
    Done,
    /// Closed while `allocate` was outstanding: its reply, if it comes, is dropped.
    Abandoned,
}

/// What an `allocated` reply means here.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Allocated {
    /// The code: the nameplate and `length` fresh words.
    Code { nameplate: String, code: String },
    /// No `allocate` is outstanding.
    Unexpected(&'static str),
    /// The reply to an `allocate` sent before the session closed: nothing to do.
    Late,
    /// The server's nameplate is not a decimal number.
    Invalid,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Allocator {
    state: State,
}

impl Allocator {
    pub(super) fn new() -> Allocator {
        Allocator { state: State::Idle }
    }

    /// Start allocating (the code machine allows this once).
    pub(super) fn allocate(&mut self, link: &mut Link, length: usize) {
        self.state = State::Allocating { length };
        link.send(ClientMessage::Allocate);
    }

    pub(super) fn connected(&mut self, link: &mut Link) {
        if let State::Allocating { .. } = self.state {
            link.send(ClientMessage::Allocate);
        }
    }

    pub(super) fn rx_allocated(
        &mut self,
        nameplate: String,
        rng: &mut dyn CryptoRngCore,
    ) -> Allocated {
        let length = match self.state {
            State::Allocating { length } => length,
            State::Idle => return Allocated::Unexpected("no nameplate was asked for"),
            State::Done => return Allocated::Unexpected("the nameplate was already allocated"),
            State::Abandoned => {
                self.state = State::Done;
                return Allocated::Late;
            }
        };
        self.state = State::Done;
        if validate_nameplate(&nameplate).is_err() {
            return Allocated::Invalid;
        }
        let code = format!("{nameplate}-{}", generate_words(length, rng));
        Allocated::Code { nameplate, code }
    }

    /// The session is closing: stop asking; an outstanding `allocate` may still be answered.
    pub(super) fn close(&mut self) {
        self.state = match self.state {
            State::Allocating { .. } => State::Abandoned,
            _ => State::Done,
        };
    }
}

impl Allocator {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "S0_idle",
            State::Allocating { .. } => "S1_allocating",
            State::Done => "S2_done",
            State::Abandoned => "S2_abandoned",
        }
    }
}
