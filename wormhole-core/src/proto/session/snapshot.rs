//! A session's state as versioned JSON, and back: what [`Session::snapshot`] writes and
//! [`Session::restore`] reads (see those for when a session can be saved).
//!
//! The format mirrors the machines' states (each machine derives its serde from its
//! `State`), plus what the session itself holds. Byte strings (keys, message bodies) are
//! lowercase hex. **A snapshot holds secrets**: the session key once it exists, and before
//! that the seed of our SPAKE2 scalar and the code; whoever reads it can read and forge the
//! session's messages.

use serde::{Deserialize, Serialize};
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
    /// Left out when off, so that a session without Dilation writes what it wrote before
    /// Dilation existed (and an older library can still read it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) dilation: bool,
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
    /// [`SessionConfig::dilation`](super::SessionConfig::dilation); absent (off) in
    /// snapshots written before Dilation existed.
    #[serde(default)]
    pub(super) dilation: bool,
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
