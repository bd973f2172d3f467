//! Delegated mode for Kotlin and Swift: a foreign trait whose methods receive a wormhole's
//! events, the seed's `wormhole_got_*` / `wormhole_closed`.
//!
//! Methods are called in event order on one library-owned thread per wormhole (never on a
//! tokio worker, never concurrently), so a slow delegate cannot stall networking. A method
//! that throws is logged and the next events are still delivered. `on_closed` is always
//! the last call.

use super::error::{DelegateError, ErrorKind};

/// How a wormhole ended, for [`WormholeDelegate::on_closed`].
#[derive(Debug, Clone, PartialEq, Eq, ::uniffi::Record)]
pub struct Outcome {
    /// `true` for the reference's "happy" (a peer was verified and both sides closed).
    pub happy: bool,
    /// Why not, when not happy (`Lonely`, `WrongPassword`, `Cancelled`…).
    pub error_kind: Option<ErrorKind>,
    /// The explanation, when not happy.
    pub error_message: Option<String>,
}

impl From<wormhole_core::Result<()>> for Outcome {
    fn from(r: wormhole_core::Result<()>) -> Self {
        match r {
            Ok(()) => Outcome {
                happy: true,
                error_kind: None,
                error_message: None,
            },
            Err(e) => Outcome {
                happy: false,
                error_kind: Some(e.kind().into()),
                error_message: Some(e.to_string()),
            },
        }
    }
}

/// Receives the events of a wormhole created with `Wormhole.withDelegate`. Implement it in
/// Kotlin or Swift; every method is called on the wormhole's own event thread.
#[::uniffi::export(with_foreign)]
pub trait WormholeDelegate: Send + Sync {
    /// The server's welcome, as a JSON object (`motd`, `current_cli_version`…).
    fn on_welcome(&self, welcome_json: String) -> Result<(), DelegateError>;
    /// The code (allocated, set, or typed with the input helper).
    fn on_code(&self, code: String) -> Result<(), DelegateError>;
    /// The shared key, before any peer message confirmed it (32 bytes).
    fn on_unverified_key(&self, key: Vec<u8>) -> Result<(), DelegateError>;
    /// The verifier (32 bytes): compare it out of band to rule out an attacker.
    fn on_verifier(&self, verifier: Vec<u8>) -> Result<(), DelegateError>;
    /// The peer's `app_versions`, as JSON.
    fn on_versions(&self, versions_json: String) -> Result<(), DelegateError>;
    /// One application message from the peer, in order.
    fn on_message(&self, message: Vec<u8>) -> Result<(), DelegateError>;
    /// The end: always the last call.
    fn on_closed(&self, outcome: Outcome) -> Result<(), DelegateError>;
}
