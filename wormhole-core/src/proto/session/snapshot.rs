//! A session's state as versioned JSON, and back: what [`Session::snapshot`] writes and
//! [`Session::restore`] reads (see those for when a session can be saved).
//!
//! The format mirrors the machines' states (each machine derives its serde from its
//! `State`), plus what the session itself holds. Byte strings (keys, message bodies) are
//! lowercase hex. **A snapshot holds secrets**: the session key once it exists, and before
//! that the seed of our SPAKE2 scalar and the code; whoever reads it can read and forge the
//! session's messages.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::allocator::Allocator;
use super::code::Code;
use super::key::KeyMachine;
use super::lister::Lister;
use super::mailbox::Mailbox;
use super::nameplate::Nameplate;
use super::order::Order;
use super::receive::Receive;
use super::send::SendMachine;

/// The format's version; a snapshot of another version is refused.
pub const SNAPSHOT_VERSION: u64 = 1;

/// What a snapshot is written from (borrowed from the session).
#[derive(Serialize)]
pub(super) struct SnapshotRef<'a> {
    pub(super) version: u64,
    pub(super) appid: &'a str,
    pub(super) app_versions: &'a Value,
    pub(super) client_version: &'a (String, String),
    pub(super) side: &'a str,
    pub(super) welcome_seen: bool,
    pub(super) code: &'a Code,
    pub(super) allocator: &'a Allocator,
    pub(super) lister: &'a Lister,
    pub(super) nameplate: &'a Nameplate,
    pub(super) mailbox: &'a Mailbox,
    pub(super) key: &'a KeyMachine,
    pub(super) order: &'a Order,
    pub(super) receive: &'a Receive,
    pub(super) send: &'a SendMachine,
}

/// What a snapshot is read into.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Snapshot {
    /// Checked before the rest is read.
    #[serde(rename = "version")]
    pub(super) _version: u64,
    pub(super) appid: String,
    pub(super) app_versions: Value,
    pub(super) client_version: (String, String),
    pub(super) side: String,
    pub(super) welcome_seen: bool,
    pub(super) code: Code,
    pub(super) allocator: Allocator,
    pub(super) lister: Lister,
    pub(super) nameplate: Nameplate,
    pub(super) mailbox: Mailbox,
    pub(super) key: KeyMachine,
    pub(super) order: Order,
    pub(super) receive: Receive,
    pub(super) send: SendMachine,
}

/// A serde error's text without the strings it quotes (which could be secrets from the
/// snapshot): `invalid type: string "…", expected …`.
pub fn redacted(e: &serde_json::Error) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in e.to_string().chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Serde for a byte string as lowercase hex.
pub(super) mod hex_bytes {
    use super::*;

    pub(in crate::proto::session) fn serialize<S: Serializer>(
        b: &[u8],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(in crate::proto::session) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
    }
}

/// Serde for a sequence of `(phase, bytes)` pairs, the bytes as hex.
pub(super) mod hex_pairs {
    use super::*;

    pub(in crate::proto::session) fn serialize<'a, S, I>(pairs: I, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        I: IntoIterator<Item = &'a (String, Vec<u8>)>,
    {
        s.collect_seq(
            pairs
                .into_iter()
                .map(|(phase, body)| (phase, hex::encode(body))),
        )
    }

    pub(in crate::proto::session) fn deserialize<'de, D, C>(d: D) -> Result<C, D::Error>
    where
        D: Deserializer<'de>,
        C: FromIterator<(String, Vec<u8>)>,
    {
        let pairs = Vec::<(String, String)>::deserialize(d)?;
        pairs
            .into_iter()
            .map(|(phase, body)| {
                hex::decode(body)
                    .map(|b| (phase, b))
                    .map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
            })
            .collect()
    }
}

/// Serde for a map from phase numbers to bytes, the bytes as hex.
pub(super) mod hex_map {
    use std::collections::BTreeMap;

    use super::*;

    pub(in crate::proto::session) fn serialize<S: Serializer>(
        map: &BTreeMap<u64, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(n, b)| (n, hex::encode(b))))
    }

    pub(in crate::proto::session) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u64, Vec<u8>>, D::Error> {
        Vec::<(u64, String)>::deserialize(d)?
            .into_iter()
            .map(|(n, b)| {
                hex::decode(b)
                    .map(|b| (n, b))
                    .map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
            })
            .collect()
    }
}
