//! The uniffi adapter: the same core API for Kotlin and Swift, exported from the same
//! `libwormhole` as the `wh_*` C ABI (feature `uniffi`, on by default).
//!
//! One file per core concept: [`wormhole`] (the wormhole object, deferred and delegated
//! modes), [`input`] (the input helper), [`delegate`] (the foreign trait for events),
//! [`dilation`] (Dilation: subchannels with suspend send/recv),
//! [`transfer`] (files and directories), [`error`] (the one error enum, mapped from
//! `ErrorKind` here and nowhere else).
//!
//! Async methods are plain `async fn`s awaiting core's executor-agnostic futures (they run
//! on core's process-wide `Engine`), so they become Kotlin `suspend` and Swift `async`
//! functions without `async_runtime = "tokio"`. uniffi does not forward foreign
//! cancellation: call [`wormhole::Wormhole::cancel`].

pub mod delegate;
pub mod dilation;
pub mod error;
pub mod input;
pub mod tor;
pub mod transfer;
pub mod wormhole;

pub use delegate::{Outcome, WormholeDelegate};
pub use dilation::{
    Dilated, DilationDelegate, DilationOptions, DilationStatus, Subchannel, SubchannelListener,
};
pub use error::{DelegateError, ErrorKind, WormholeError};
pub use input::InputHelper;
pub use tor::{Tor, TorSettings, find_tor};
pub use transfer::{Incoming, IncomingOffer, TransferProgress, TransferSettings};
pub use wormhole::{Wormhole, WormholeOptions};

/// Checks a code's format (`4-purple-sausages`) without any network: an error of kind
/// `InvalidCode` says what is wrong.
#[::uniffi::export]
pub fn validate_code(code: String) -> Result<(), WormholeError> {
    wormhole_core::validate_code(&code)
        .map(|_| ())
        .map_err(WormholeError::from)
}

/// The number of words in an allocated code unless asked otherwise (2).
#[::uniffi::export]
pub fn default_code_length() -> u32 {
    wormhole_core::DEFAULT_CODE_LENGTH as u32
}

/// The app id the reference `wormhole send` / `wormhole receive` CLI uses, for
/// [`wormhole::Wormhole::send_text`] and [`wormhole::Wormhole::receive_text`] interop.
#[::uniffi::export]
pub fn transfer_appid() -> String {
    wormhole_core::TRANSFER_APPID.to_owned()
}
