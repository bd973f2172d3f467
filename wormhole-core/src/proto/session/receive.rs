//! *Receive*: decrypts the peer's messages, confirms the key with the first one, and
//! delivers numbered phases in order.
//!
//! With Dilation on, it also reads the peer's `can-dilate` list from its `version`, and
//! delivers `dilate-N` phases strictly in `N` order from 0 (PROTOCOL §9.3).
//!
//! Numbered phases and `dilate-N` phases that come early are held up to
//! [`MAX_QUEUED_PEER_MESSAGES`] messages and [`MAX_QUEUED_PEER_BYTES`] bytes each: a peer
//! that leaves a gap wider than that fails the session (`errory`) rather than making us
//! hold unbounded data. An honest peer never leaves a gap (the server delivers in order),
//! so the bound only matters against a hostile one. The first copy of a phase wins
//! (`1` and `01` name the same one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::hex_serde::hex_map;
use super::order::{MAX_QUEUED_PEER_BYTES, MAX_QUEUED_PEER_MESSAGES};

use crate::dilation::keys::parse_phase as parse_dilation_phase;
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
    /// The peer's `can-dilate` list, right after `Versions` (Dilation on only).
    CanDilate(Vec<String>),
    /// A `dilate-N` body, in `N` order (Dilation on only).
    Dilation(Vec<u8>),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Receive {
    state: State,
    /// Numbered phases that came early, by number.
    #[serde(with = "hex_map")]
    reorder: BTreeMap<u64, Vec<u8>>,
    next_deliver: u64,
    /// `dilate-N` phases that came early, by `N` (bounded, see the module docs). Absent
    /// from snapshots written before Dilation existed; left out while empty.
    #[serde(default, with = "hex_map", skip_serializing_if = "BTreeMap::is_empty")]
    dilation_reorder: BTreeMap<u64, Vec<u8>>,
    /// The `N` of the next `dilate-N` phase to deliver; left out while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    dilation_next: u64,
}

impl Receive {
    pub(super) fn new() -> Receive {
        Receive {
            state: State::UnknownKey,
            reorder: BTreeMap::new(),
            next_deliver: 0,
            dilation_reorder: BTreeMap::new(),
            dilation_next: 0,
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
    /// `dilation`: whether the session offers Dilation (else `dilate-N` phases are
    /// decrypted and ignored, and `can-dilate` is not read).
    pub(super) fn got_message(
        &mut self,
        m: &MailboxMessage,
        dilation: bool,
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
            if dilation {
                out.push(Output::CanDilate(can_dilate(&v)));
            }
        } else if !m.phase.is_empty() && m.phase.bytes().all(|b| b.is_ascii_digit()) {
            // A phase number beyond u64 is one we will never reach: it is never delivered.
            if let Ok(n) = m.phase.parse::<u64>() {
                let held = hold_in_order(&mut self.reorder, &mut self.next_deliver, n, plaintext);
                out.extend(held.delivered.into_iter().map(Output::Message));
                if held.overflow {
                    return Err(gap_error("messages"));
                }
            }
        } else if dilation {
            // A non-numeric or overflowing `N` is an unknown phase: ignored below.
            if let Ok(n) = parse_dilation_phase(&m.phase) {
                return self.got_dilation(n, plaintext, out);
            }
        }
        // Unknown phases (and `dilate-N` without Dilation): decrypted (a failure is
        // scary), then ignored.
        Ok(())
    }

    /// The `n` of a decrypted `dilate-N`: deliver it and what it unblocks, or hold it.
    fn got_dilation(
        &mut self,
        n: u64,
        plaintext: Vec<u8>,
        out: &mut Vec<Output>,
    ) -> Result<(), (Error, Mood)> {
        let held = hold_in_order(
            &mut self.dilation_reorder,
            &mut self.dilation_next,
            n,
            plaintext,
        );
        out.extend(held.delivered.into_iter().map(Output::Dilation));
        if held.overflow {
            return Err(gap_error("dilation messages"));
        }
        Ok(())
    }

    /// How many `dilate-N` messages are held for a gap (for tests of the bound).
    #[cfg(test)]
    pub(super) fn dilation_held(&self) -> usize {
        self.dilation_reorder.len()
    }
}

/// What [`hold_in_order`] did with one message.
struct Held {
    /// The messages now deliverable, in order.
    delivered: Vec<Vec<u8>>,
    /// More than the bound is held: the held messages were dropped.
    overflow: bool,
}

/// Message `n` of a numbered sequence whose next expected number is `*next`: deliver it and
/// what it unblocks, or hold it in `held` (the first copy of a number wins; numbers already
/// delivered are ignored). Past [`MAX_QUEUED_PEER_MESSAGES`] or [`MAX_QUEUED_PEER_BYTES`]
/// held, everything held is dropped and `overflow` is set.
fn hold_in_order(
    held: &mut BTreeMap<u64, Vec<u8>>,
    next: &mut u64,
    n: u64,
    plaintext: Vec<u8>,
) -> Held {
    let mut delivered = Vec::new();
    if n >= *next {
        held.entry(n).or_insert(plaintext);
    }
    while let Some(pt) = held.remove(next) {
        *next += 1;
        delivered.push(pt);
    }
    let bytes: usize = held.values().map(Vec::len).sum();
    let overflow = held.len() > MAX_QUEUED_PEER_MESSAGES || bytes > MAX_QUEUED_PEER_BYTES;
    if overflow {
        held.clear();
    }
    Held {
        delivered,
        overflow,
    }
}

/// The error of a peer that left a gap with too much behind it.
fn gap_error(what: &str) -> (Error, Mood) {
    (
        Error::Protocol(format!(
            "the peer left a gap in its {what} with more than {MAX_QUEUED_PEER_MESSAGES} \
             messages or {} MiB behind it",
            MAX_QUEUED_PEER_BYTES >> 20
        )),
        Mood::Errory,
    )
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The `can-dilate` list of a peer's versions dict: its string entries; empty when the
/// key is absent or not an array.
fn can_dilate(versions: &Map<String, Value>) -> Vec<String> {
    versions
        .get("can-dilate")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    use super::*;
    use crate::proto::wire::HexBytes;

    const PEER: &str = "0123456789";

    fn verified() -> Receive {
        let mut r = Receive::new();
        r.got_key(Key([9u8; 32]));
        let mut out = Vec::new();
        let v = sealed("version", br#"{"app_versions": {}}"#);
        r.got_message(&v, true, &mut out).unwrap();
        r
    }

    fn sealed(phase: &str, plaintext: &[u8]) -> MailboxMessage {
        let pk = keys::derive_phase_key(&[9u8; 32], PEER, phase);
        let mut rng = StdRng::seed_from_u64(phase.len() as u64);
        MailboxMessage {
            side: PEER.into(),
            phase: phase.into(),
            body: HexBytes(keys::encrypt(&pk, plaintext, &mut rng)),
            server_rx: None,
            id: None,
        }
    }

    fn feed(r: &mut Receive, phase: &str, pt: &[u8], dilation: bool) -> Vec<Output> {
        let mut out = Vec::new();
        r.got_message(&sealed(phase, pt), dilation, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn can_dilate_is_read_leniently_and_only_with_dilation() {
        let cases = [
            (
                json!({"can-dilate": ["ged"], "app_versions": {}}),
                vec!["ged"],
            ),
            (
                json!({"can-dilate": ["x", 5, null, "ged"]}),
                vec!["x", "ged"],
            ),
            (json!({"can-dilate": "ged"}), vec![]),
            (json!({"can-dilate": {"ged": true}}), vec![]),
            (json!({"app_versions": {"a": 1}}), vec![]),
        ];
        for (versions, want) in cases {
            let mut r = Receive::new();
            r.got_key(Key([9u8; 32]));
            let body = versions.to_string();
            let out = feed(&mut r, "version", body.as_bytes(), true);
            let want: Vec<String> = want.into_iter().map(String::from).collect();
            let app = versions.get("app_versions").cloned().unwrap_or(json!({}));
            assert_eq!(out[1..], [Output::Versions(app), Output::CanDilate(want)]);
            // Without Dilation, the list is not reported.
            let mut r = Receive::new();
            r.got_key(Key([9u8; 32]));
            let out = feed(&mut r, "version", body.as_bytes(), false);
            assert!(!out.iter().any(|o| matches!(o, Output::CanDilate(_))));
        }
    }

    #[test]
    fn dilate_phases_in_n_order_with_gaps_duplicates_and_junk() {
        let mut r = verified();
        let d = |pt: &[u8]| Output::Dilation(pt.to_vec());
        assert_eq!(feed(&mut r, "dilate-2", b"two", true), []);
        assert_eq!(feed(&mut r, "dilate-1", b"one", true), []);
        // A second spelling of a held N does not replace the first.
        assert_eq!(feed(&mut r, "dilate-01", b"impostor", true), []);
        assert_eq!(r.dilation_held(), 2);
        assert_eq!(
            feed(&mut r, "dilate-0", b"zero", true),
            [d(b"zero"), d(b"one"), d(b"two")]
        );
        assert_eq!(r.dilation_held(), 0);
        // Already delivered: ignored.
        assert_eq!(feed(&mut r, "dilate-00", b"again", true), []);
        // Not `dilate-N`, or an N beyond u64: ignored like any unknown phase.
        for junk in [
            "dilate-",
            "dilate-x",
            "dilate--1",
            "dilate-+3",
            "Dilate-3",
            "dilate-18446744073709551616",
        ] {
            assert_eq!(feed(&mut r, junk, b"junk", true), [], "{junk}");
        }
        assert_eq!(r.dilation_held(), 0);
        assert_eq!(feed(&mut r, "dilate-3", b"three", true), [d(b"three")]);
        // Application phases keep their own order.
        assert_eq!(
            feed(&mut r, "0", b"app", true),
            [Output::Message(b"app".to_vec())]
        );
    }

    #[test]
    fn dilate_phases_are_ignored_without_dilation_but_still_decrypted() {
        let mut r = verified();
        assert_eq!(feed(&mut r, "dilate-0", b"zero", false), []);
        assert_eq!(feed(&mut r, "dilate-1", b"one", false), []);
        assert_eq!(r.dilation_held(), 0);
        let mut bad = sealed("dilate-2", b"x");
        bad.body.0[30] ^= 1;
        let mut out = Vec::new();
        assert_eq!(
            r.got_message(&bad, false, &mut out),
            Err((Error::WrongPassword, Mood::Scary))
        );
    }

    /// A peer that leaves `dilate-0` out cannot make us hold more than the bound: past it,
    /// the held messages are dropped and the session fails `errory`.
    #[test]
    fn numbered_gaps_are_bounded_and_the_first_copy_wins() {
        let mut r = verified();
        let run = |r: &mut Receive, phase: &str, pt: &[u8]| {
            let mut out = Vec::new();
            let res = r.got_message(&sealed(phase, pt), false, &mut out);
            (res, out)
        };
        // The first copy of a number wins, and a late `0` releases the held ones in order.
        assert_eq!(run(&mut r, "1", b"first").1, []);
        assert_eq!(run(&mut r, "01", b"second copy").1, []);
        let (res, out) = run(&mut r, "0", b"zero");
        assert!(res.is_ok());
        assert_eq!(
            out,
            [
                Output::Message(b"zero".to_vec()),
                Output::Message(b"first".to_vec())
            ]
        );
        // Delivered numbers are ignored.
        assert_eq!(run(&mut r, "1", b"again").1, []);
        // A gap with more than the bound behind it fails the session.
        for n in 3..3 + MAX_QUEUED_PEER_MESSAGES as u64 {
            let (res, out) = run(&mut r, &n.to_string(), b"h");
            assert!(res.is_ok() && out.is_empty(), "early at {n}");
        }
        match run(&mut r, "999999", b"h").0 {
            Err((Error::Protocol(msg), Mood::Errory)) => assert!(msg.contains("gap"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert!(r.reorder.is_empty(), "the held messages were freed");
    }

    #[test]
    fn dilate_gaps_are_bounded_in_count_and_bytes() {
        let errory = |r: &mut Receive, phase: &str, pt: &[u8]| {
            let mut out = Vec::new();
            match r.got_message(&sealed(phase, pt), true, &mut out) {
                Err((Error::Protocol(_), Mood::Errory)) => true,
                Ok(()) => false,
                Err(other) => panic!("{other:?}"),
            }
        };
        // By count.
        let mut r = verified();
        for n in 1..=MAX_QUEUED_PEER_MESSAGES {
            assert!(
                !errory(&mut r, &format!("dilate-{n}"), b"h"),
                "early at {n}"
            );
        }
        assert_eq!(r.dilation_held(), MAX_QUEUED_PEER_MESSAGES);
        assert!(errory(&mut r, "dilate-999999", b"h"), "past the count cap");
        assert_eq!(r.dilation_held(), 0, "the held messages were freed");

        // By bytes.
        let mut r = verified();
        let per = 1 << 20;
        let body = vec![b'x'; per];
        for n in 1..=MAX_QUEUED_PEER_BYTES / per {
            assert!(
                !errory(&mut r, &format!("dilate-{n}"), &body),
                "early at {n}"
            );
        }
        assert!(
            errory(&mut r, "dilate-1000", b"one byte more"),
            "past the byte cap"
        );
        assert_eq!(r.dilation_held(), 0);

        // Held messages that a late `dilate-0` releases no longer count.
        let mut r = verified();
        for n in 1..=MAX_QUEUED_PEER_MESSAGES {
            assert!(!errory(&mut r, &format!("dilate-{n}"), b"h"));
        }
        assert!(!errory(&mut r, "dilate-0", b"h"));
        assert_eq!(r.dilation_held(), 0);
        assert!(!errory(&mut r, "dilate-2000", b"h"));
    }
}
