//! # wormhole-core
//!
//! A Magic Wormhole client: two programs that share a short code (`7-purple-sausages`)
//! meet through a mailbox server, agree a key with SPAKE2 and exchange encrypted,
//! authenticated, ordered messages. Wire-compatible with the reference magic-wormhole
//! 0.24 client and mailbox server 0.8.
//!
//! Layers, bottom up:
//! - [`proto`]: the sans-IO protocol (wire types, key schedule, codes, [`proto::session::Session`]).
//! - [`driver`] (private): one tokio task per wormhole that owns the WebSocket and the session.
//! - [`Engine`]: the tokio runtime the drivers run on.
//! - The public API: [`Wormhole`], created with [`Wormhole::create`], in "deferred" mode
//!   (awaitable getters) or "delegated" mode ([`Wormhole::create_delegated`], an event stream).
//! - [`text`]: the text part of the file-transfer protocol (`wormhole send --text`).
//! - [`transit`]: Transit v1, the encrypted bulk pipe (usable on its own).
//! - [`transfer`]: files and directories over Transit (`wormhole send FILE|DIR`).
//! - [`dilation`]: the sans-IO wire layer of Dilation (keys, mailbox messages, the
//!   per-connection handshake, records, reliable delivery, subchannels).
//! - [`ssh`]: the public-key check of `wormhole ssh invite` / `ssh accept`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod api;
mod command;
mod consts;
pub mod dilation;
mod driver;
mod engine;
mod error;
mod event;
pub mod proto;
pub mod proxy;
pub mod ssh;
pub mod text;
pub mod tor;
pub mod trace;
pub mod transfer;
pub mod transit;

pub use api::{Events, InputHelper, Options, OutboundHold, Taken, WelcomeHandler, Wormhole};
pub use consts::{PUBLIC_RELAY_URL, TRANSFER_APPID, VERSION};
pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
pub use event::Event;
pub use proto::code::{DEFAULT_CODE_LENGTH, validate_code};
pub use proto::key::Key;
pub use proto::wire::Mood;

/// The README's Rust examples, compiled as doctests so they cannot drift from the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
