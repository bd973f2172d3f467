//! *Key*: SPAKE2 from the code and the peer's `pake` message, whichever comes first.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::hex_serde::hex_bytes;

use crate::proto::key::{Key as SharedKey, Pake};

/// States as in the reference's `_key.py`, whose outer machine (`S00`, `S01`, `S10`, `S11`)
/// orders the code and the peer's message and whose inner one (`S0_know_nothing` …
/// `S3_scared`) runs SPAKE2.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S00`: neither the code nor the peer's `pake`.
    KnowNothing,
    /// `S01`: the peer's `pake` came before the code; it waits here.
    StashedPeerPake(#[serde(with = "hex_bytes")] Vec<u8>),
    /// `S10` / `S1_know_code`: our `pake` is posted; the peer's is awaited.
    KnowCode(Box<Pake>),
    /// `S11` / `S2_know_key`: the shared key exists (not yet confirmed by the peer).
    KnowKey,
    /// `S3_scared`: the peer's `pake` was unusable.
    Scared,
}

/// What an input produced.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Nothing yet.
    Waiting,
    /// SPAKE2 finished.
    Key(SharedKey),
    /// The peer's `pake` was unusable: a wrong code, or an attack.
    Scared,
    /// The input is not expected in this state.
    Unexpected,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct KeyMachine {
    state: State,
}

impl KeyMachine {
    pub(super) fn new() -> KeyMachine {
        KeyMachine {
            state: State::KnowNothing,
        }
    }

    /// The code is known: returns our `pake` body to post, and the outcome (the key, if
    /// the peer's message was already here).
    pub(super) fn got_code(
        &mut self,
        code: &str,
        appid: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Option<(Vec<u8>, Outcome)> {
        let stashed = match std::mem::replace(&mut self.state, State::KnowNothing) {
            State::KnowNothing => None,
            State::StashedPeerPake(body) => Some(body),
            other => {
                self.state = other;
                return None;
            }
        };
        let pake = Pake::start(code, appid, rng);
        let ours = pake.body();
        self.state = State::KnowCode(Box::new(pake));
        let outcome = match stashed {
            Some(body) => self.got_pake(body),
            None => Outcome::Waiting,
        };
        Some((ours, outcome))
    }

    /// The peer's `pake` message body.
    pub(super) fn got_pake(&mut self, body: Vec<u8>) -> Outcome {
        match std::mem::replace(&mut self.state, State::Scared) {
            State::KnowNothing => {
                self.state = State::StashedPeerPake(body);
                Outcome::Waiting
            }
            State::KnowCode(pake) => match pake.finish(&body) {
                Ok(k) => {
                    self.state = State::KnowKey;
                    Outcome::Key(k)
                }
                Err(_) => Outcome::Scared,
            },
            other => {
                self.state = other;
                Outcome::Unexpected
            }
        }
    }
}

impl KeyMachine {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::KnowNothing => "S00",
            State::StashedPeerPake(_) => "S01",
            State::KnowCode(_) => "S10",
            State::KnowKey => "S11",
            State::Scared => "S3_scared",
        }
    }
}
