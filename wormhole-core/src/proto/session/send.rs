//! *Send*: numbers application messages in call order and encrypts them once the key is
//! verified.
//!
//! Dilation messages (`dilate-0`, `dilate-1`, …; PROTOCOL §9.3) have their own counter but
//! share the queue, so every message leaves in call order and none before verification.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::hex_serde::hex_pairs;

use crate::dilation::keys::phase_name as dilation_phase;
use crate::proto::key::{self as keys, Key};

/// States as in the reference's `_send.py`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0_no_key`: messages (application and Dilation) wait, already numbered.
    NoKey(#[serde(with = "hex_pairs")] VecDeque<(String, Vec<u8>)>),
    /// `S1_verified_key`: messages are encrypted at once.
    VerifiedKey(Key),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendMachine {
    state: State,
    next_phase: u64,
    /// The `N` of our next `dilate-N` phase. Absent from snapshots written before
    /// Dilation existed (nothing was sent then, so 0), and left out while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    next_dilation: u64,
}

impl SendMachine {
    pub(super) fn new() -> SendMachine {
        SendMachine {
            state: State::NoKey(VecDeque::new()),
            next_phase: 0,
            next_dilation: 0,
        }
    }

    /// Number `plaintext`; returns `(phase, body)` to post if the key is verified.
    pub(super) fn send(
        &mut self,
        plaintext: Vec<u8>,
        side: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Option<(String, Vec<u8>)> {
        let phase = self.next_phase.to_string();
        self.next_phase += 1;
        self.queue_or_seal(phase, plaintext, side, rng)
    }

    /// Number a Dilation message `dilate-N` (its own counter, from 0); returns
    /// `(phase, body)` to post if the key is verified, else queues it behind what waits.
    pub(super) fn send_dilation(
        &mut self,
        plaintext: Vec<u8>,
        side: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Option<(String, Vec<u8>)> {
        let phase = dilation_phase(self.next_dilation);
        self.next_dilation += 1;
        self.queue_or_seal(phase, plaintext, side, rng)
    }

    fn queue_or_seal(
        &mut self,
        phase: String,
        plaintext: Vec<u8>,
        side: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Option<(String, Vec<u8>)> {
        match &mut self.state {
            State::NoKey(queue) => {
                queue.push_back((phase, plaintext));
                None
            }
            State::VerifiedKey(key) => Some(seal(key, side, phase, &plaintext, rng)),
        }
    }

    /// The key is verified: returns every waiting message, encrypted, in order.
    pub(super) fn got_verified_key(
        &mut self,
        key: Key,
        side: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Vec<(String, Vec<u8>)> {
        let waiting = match &mut self.state {
            State::NoKey(queue) => std::mem::take(queue),
            State::VerifiedKey(_) => return Vec::new(),
        };
        let sealed = waiting
            .into_iter()
            .map(|(phase, pt)| seal(&key, side, phase, &pt, rng))
            .collect();
        self.state = State::VerifiedKey(key);
        sealed
    }
}

/// Encrypt one message from `side` under its phase key (PROTOCOL §4).
pub(super) fn seal(
    key: &Key,
    side: &str,
    phase: String,
    plaintext: &[u8],
    rng: &mut dyn CryptoRngCore,
) -> (String, Vec<u8>) {
    let pk = keys::derive_phase_key(&key.0, side, &phase);
    let body = keys::encrypt(&pk, plaintext, rng);
    (phase, body)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SendMachine {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::NoKey(_) => "S0_no_key",
            State::VerifiedKey(_) => "S1_verified_key",
        }
    }
}
