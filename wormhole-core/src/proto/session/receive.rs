//! *Receive*: decrypts the peer's messages, confirms the key with the first one, and
//! delivers numbered phases in order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::hex_serde::hex_map;

use crate::error::Error;
use crate::proto::key::{self as keys, Key};
use crate::proto::wire::{MailboxMessage, Mood};

/// States as in the reference's `_receive.py`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0_unknown_key`: nothing can be decrypted (the order machine holds messages).
    UnknownKey,
    /// `S1_unverified_key`: the key exists; the first good message verifies it.
    UnverifiedKey(Key),
    /// `S2_verified_key`: the peer proved it has the key.
    VerifiedKey(Key),
    /// `S3_scared`: a message failed to decrypt; nothing more is delivered.
    Scared,
}

/// What one peer message produced, in order.
#[derive(Debug, PartialEq)]
pub(super) enum Output {
    /// The first good message: the key is confirmed; `verifier` is derived from it.
    Verified { key: Key, verifier: [u8; 32] },
    /// The peer's `app_versions`.
    Versions(Value),
    /// An application message, in phase order.
    Message(Vec<u8>),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Receive {
    state: State,
    /// Numbered phases that came early, by number.
    #[serde(with = "hex_map")]
    reorder: BTreeMap<u64, Vec<u8>>,
    next_deliver: u64,
}

impl Receive {
    pub(super) fn new() -> Receive {
        Receive {
            state: State::UnknownKey,
            reorder: BTreeMap::new(),
            next_deliver: 0,
        }
    }

    pub(super) fn got_key(&mut self, key: Key) {
        if let State::UnknownKey = self.state {
            self.state = State::UnverifiedKey(key);
        }
    }

    /// The key, once it exists.
    pub(super) fn key(&self) -> Option<&Key> {
        match &self.state {
            State::UnverifiedKey(k) | State::VerifiedKey(k) => Some(k),
            State::UnknownKey | State::Scared => None,
        }
    }

    pub(super) fn is_verified(&self) -> bool {
        matches!(self.state, State::VerifiedKey(_))
    }

    /// One peer message (not `pake`). An error carries the mood to close with.
    pub(super) fn got_message(
        &mut self,
        m: &MailboxMessage,
        out: &mut Vec<Output>,
    ) -> Result<(), (Error, Mood)> {
        let key = match &self.state {
            State::UnverifiedKey(k) | State::VerifiedKey(k) => k.clone(),
            State::Scared => return Ok(()),
            State::UnknownKey => {
                return Err((
                    Error::Protocol("a peer message reached the receiver before the key".into()),
                    Mood::Errory,
                ));
            }
        };
        let pk = keys::derive_phase_key(&key.0, &m.side, &m.phase);
        let Some(plaintext) = keys::decrypt(&pk, &m.body.0) else {
            self.state = State::Scared;
            return Err((Error::WrongPassword, Mood::Scary));
        };
        if let State::UnverifiedKey(_) = self.state {
            out.push(Output::Verified {
                key: key.clone(),
                verifier: keys::derive_verifier(&key.0),
            });
            self.state = State::VerifiedKey(key);
        }
        if m.phase == "version" {
            let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&plaintext) else {
                return Err((
                    Error::Protocol("the peer's version message is not a JSON object".into()),
                    Mood::Errory,
                ));
            };
            let app = v
                .get("app_versions")
                .cloned()
                .unwrap_or(Value::Object(Map::new()));
            out.push(Output::Versions(app));
        } else if !m.phase.is_empty() && m.phase.bytes().all(|b| b.is_ascii_digit()) {
            // A phase number beyond u64 is one we will never reach: it is never delivered.
            if let Ok(n) = m.phase.parse::<u64>() {
                if n >= self.next_deliver {
                    self.reorder.insert(n, plaintext);
                }
                while let Some(pt) = self.reorder.remove(&self.next_deliver) {
                    self.next_deliver += 1;
                    out.push(Output::Message(pt));
                }
            }
        }
        // `dilate-N` and unknown phases: decrypted (a failure is scary), then ignored.
        Ok(())
    }
}

impl Receive {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::UnknownKey => "S0_unknown_key",
            State::UnverifiedKey(_) => "S1_unverified_key",
            State::VerifiedKey(_) => "S2_verified_key",
            State::Scared => "S3_scared",
        }
    }
}
