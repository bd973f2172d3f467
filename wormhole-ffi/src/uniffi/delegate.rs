//! Delegated mode for Kotlin and Swift: a foreign trait whose methods receive a wormhole's
//! events, the seed's `wormhole_got_*` / `wormhole_closed`.
//!
//! Methods are called in event order on one library-owned thread per wormhole (never on a
//! tokio worker, never concurrently), so a slow delegate cannot stall networking. A method
//! that throws is logged and the next events are still delivered. `on_closed` is always
//! the last call.

use wormhole_core::transfer::{OfferKind, TransferEvent};

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

/// A transfer event for [`TransferDelegate::on_transfer`] (delegated mode).
#[derive(Debug, Clone, PartialEq, Eq, ::uniffi::Enum)]
pub enum TransferUpdate {
    /// The sender offers a file or directory: answer with `acceptOffer` or `rejectOffer`.
    Offer {
        /// The offered base name.
        name: String,
        /// Bytes that will travel.
        size: u64,
        /// Whether it is a directory.
        is_directory: bool,
        /// For a directory: its number of files (a file: 1).
        file_count: u64,
    },
    /// `done` of `total` bytes moved (about ten a second, plus the last).
    Progress {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// `startSendText` ended.
    TextSent {
        /// Happy once the receiver acknowledged.
        outcome: Outcome,
    },
    /// `startReceiveText` (or `startReceiveFile` given text) ended.
    TextReceived {
        /// The text, when the outcome is happy.
        text: Option<String>,
        /// The outcome.
        outcome: Outcome,
    },
    /// `startSendFile` ended.
    FileSent {
        /// Happy once the receiver confirmed every byte.
        outcome: Outcome,
    },
    /// `startReceiveFile` ended.
    FileReceived {
        /// The path written, when the outcome is happy.
        path: Option<String>,
        /// The outcome.
        outcome: Outcome,
    },
}

impl TransferUpdate {
    /// Convert core's event; `None` for the ones not delivered here.
    pub(crate) fn from_core(ev: TransferEvent) -> Option<TransferUpdate> {
        fn split<T, U>(
            r: wormhole_core::Result<T>,
            f: impl FnOnce(T) -> U,
        ) -> (Option<U>, Outcome) {
            match r {
                Ok(v) => (Some(f(v)), Outcome::from(Ok(()))),
                Err(e) => (None, Outcome::from(Err(e))),
            }
        }
        Some(match ev {
            TransferEvent::Offer(o) => TransferUpdate::Offer {
                name: o.name,
                size: o.size,
                is_directory: !matches!(o.kind, OfferKind::File),
                file_count: match o.kind {
                    OfferKind::Directory { numfiles, .. } => numfiles,
                    _ => 1,
                },
            },
            TransferEvent::Progress { done, total } => TransferUpdate::Progress { done, total },
            TransferEvent::TextSent(r) => TransferUpdate::TextSent {
                outcome: Outcome::from(r),
            },
            TransferEvent::TextReceived(r) => {
                let (text, outcome) = split(r, |t| t);
                TransferUpdate::TextReceived { text, outcome }
            }
            TransferEvent::FileSent(r) => TransferUpdate::FileSent {
                outcome: Outcome::from(r),
            },
            TransferEvent::FileReceived(r) => {
                let (path, outcome) = split(r, |p| p.to_string_lossy().into_owned());
                TransferUpdate::FileReceived { path, outcome }
            }
            _ => return None,
        })
    }
}

/// Receives the transfer events of a wormhole created with `Wormhole.withDelegate(...,
/// transferDelegate)`, on the same event thread as its [`super::WormholeDelegate`], in
/// order with its events (each transfer ends before `onClosed`).
#[::uniffi::export(with_foreign)]
pub trait TransferDelegate: Send + Sync {
    /// One transfer event.
    fn on_transfer(&self, update: TransferUpdate) -> Result<(), DelegateError>;
}
