//! *Lister*: fetches the server's nameplate list for interactive code input.

use serde::{Deserialize, Serialize};

use super::rendezvous::Link;
use crate::proto::wire::ClientMessage;

/// States as in the reference's `_lister.py` (its `A`/`B` halves are [`Link`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0_idle`: no list wanted.
    Idle,
    /// `S1_wanting`: a list is wanted; `list` is re-sent on every connection until a
    /// `nameplates` reply arrives.
    Wanting,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Lister {
    state: State,
}

impl Lister {
    pub(super) fn new() -> Lister {
        Lister { state: State::Idle }
    }

    /// Ask for a (fresh) list; a refresh while one is outstanding asks again, as the
    /// reference does.
    pub(super) fn refresh(&mut self, link: &mut Link) {
        self.state = State::Wanting;
        link.send(ClientMessage::List);
    }

    pub(super) fn connected(&mut self, link: &mut Link) {
        if self.state == State::Wanting {
            link.send(ClientMessage::List);
        }
    }

    /// A `nameplates` reply. Accepted in every state, like the reference (an idle lister
    /// still passes a late reply to the input helper).
    pub(super) fn rx_nameplates(&mut self) {
        self.state = State::Idle;
    }

    /// The session is closing: stop asking.
    pub(super) fn close(&mut self) {
        self.state = State::Idle;
    }
}

impl Lister {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "S0_idle",
            State::Wanting => "S1_wanting",
        }
    }
}
