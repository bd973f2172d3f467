//! Errors: one rich [`Error`] for Rust callers and a small, stable [`ErrorKind`] that every
//! language adapter maps exactly once (to `wh_result`, a uniffi enum, a Python exception).
//!
//! Invariant: no message built here contains a wormhole code, a key or plaintext. Server
//! and welcome texts are quoted because they come from the operator, not from the user.

use std::fmt;

/// The stable classification of an [`Error`]. Numbers are part of the C ABI: never renumber,
/// never reuse; add new kinds at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum ErrorKind {
    /// The code is malformed (space, or a non-numeric nameplate). Python: `KeyFormatError`.
    InvalidCode = 1,
    /// A peer message failed to decrypt, or the peer's PAKE was unusable: a wrong code or an
    /// attack. Python: `WrongPasswordError`.
    WrongPassword = 2,
    /// The wormhole was closed before any peer message was verified. Python: `LonelyError`.
    Lonely = 3,
    /// The server's welcome carried an `error`. Python: `WelcomeError`.
    Welcome = 4,
    /// The server sent an `error` frame. Python: `ServerError`.
    ServerError = 5,
    /// The mailbox server could not be reached (first connection). Python:
    /// `ServerConnectionError`.
    ServerConnection = 6,
    /// The server (or peer) broke the protocol: malformed frame, bad hex, wrong type.
    Protocol = 7,
    /// A configured timeout expired.
    Timeout = 8,
    /// The operation was cancelled (explicit cancel, or the last handle was dropped).
    Cancelled = 9,
    /// The wormhole closed without error before this event happened. Python:
    /// `WormholeClosed`.
    Closed = 10,
    /// `derive_key` before the key is known. Python: `NoKeyError`.
    NoKey = 11,
    /// A second `allocate_code` / `set_code` / `input_code`. Python: `OnlyOneCodeError`.
    OnlyOneCode = 12,
    /// Input helper used after `choose_nameplate`. Python: `AlreadyChoseNameplateError`.
    AlreadyChoseNameplate = 13,
    /// Input helper used after `choose_words`. Python: `AlreadyChoseWordsError`.
    AlreadyChoseWords = 14,
    /// Input helper asked for words before a nameplate. Python:
    /// `MustChooseNameplateFirstError`.
    MustChooseNameplateFirst = 15,
    /// An argument was out of range or malformed (other than a code).
    InvalidArgument = 16,
    /// The file-transfer peer reported an error or broke the transfer protocol. Python:
    /// `TransferError`.
    Transfer = 17,
    /// A bug in this library. Please report it.
    Internal = 18,
    /// Another transfer is running on this wormhole.
    InProgress = 19,
    /// The call is not possible in the current state (e.g. accepting when no offer waits).
    InvalidState = 20,
}

impl ErrorKind {
    /// Every kind, for adapters that build their tables from this one.
    pub const ALL: [ErrorKind; 20] = [
        ErrorKind::InvalidCode,
        ErrorKind::WrongPassword,
        ErrorKind::Lonely,
        ErrorKind::Welcome,
        ErrorKind::ServerError,
        ErrorKind::ServerConnection,
        ErrorKind::Protocol,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Closed,
        ErrorKind::NoKey,
        ErrorKind::OnlyOneCode,
        ErrorKind::AlreadyChoseNameplate,
        ErrorKind::AlreadyChoseWords,
        ErrorKind::MustChooseNameplateFirst,
        ErrorKind::InvalidArgument,
        ErrorKind::Transfer,
        ErrorKind::Internal,
        ErrorKind::InProgress,
        ErrorKind::InvalidState,
    ];

    /// A short, static description of the kind, NUL-terminated for C (the one table of
    /// descriptions every adapter uses).
    pub fn description_c(self) -> &'static std::ffi::CStr {
        match self {
            ErrorKind::InvalidCode => c"invalid wormhole code",
            ErrorKind::WrongPassword => c"key confirmation failed (wrong code or attack)",
            ErrorKind::Lonely => c"closed before the peer was verified",
            ErrorKind::Welcome => c"the server refused this client in its welcome",
            ErrorKind::ServerError => c"the server reported an error",
            ErrorKind::ServerConnection => c"could not connect to the mailbox server",
            ErrorKind::Protocol => c"protocol violation",
            ErrorKind::Timeout => c"timed out",
            ErrorKind::Cancelled => c"cancelled",
            ErrorKind::Closed => c"the wormhole is closed",
            ErrorKind::NoKey => c"the key is not known yet",
            ErrorKind::OnlyOneCode => c"a code was already set, allocated or being input",
            ErrorKind::AlreadyChoseNameplate => c"the nameplate was already chosen",
            ErrorKind::AlreadyChoseWords => c"the words were already chosen",
            ErrorKind::MustChooseNameplateFirst => c"a nameplate must be chosen first",
            ErrorKind::InvalidArgument => c"invalid argument",
            ErrorKind::Transfer => c"file-transfer error",
            ErrorKind::Internal => c"internal error",
            ErrorKind::InProgress => c"another transfer is in progress",
            ErrorKind::InvalidState => c"not possible in the current state",
        }
    }

    /// A short, static description of the kind.
    pub fn description(self) -> &'static str {
        self.description_c().to_str().unwrap_or("error")
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Every error this library reports. Cheap to clone, so one failure can complete many
/// pending calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorKind::InvalidCode`]. The reason never quotes the code.
    #[error("invalid wormhole code: {0}")]
    InvalidCode(&'static str),
    /// See [`ErrorKind::WrongPassword`].
    #[error(
        "key confirmation failed: either you or your correspondent typed the code wrong, or a would-be man-in-the-middle attacker guessed incorrectly"
    )]
    WrongPassword,
    /// See [`ErrorKind::Lonely`].
    #[error("the wormhole was closed before the other side was seen")]
    Lonely,
    /// See [`ErrorKind::Welcome`]; carries the server's text.
    #[error("the mailbox server refused us: {0}")]
    Welcome(String),
    /// See [`ErrorKind::ServerError`]; carries the server's error string (e.g. `crowded`).
    #[error("the mailbox server reported an error: {0}")]
    Server(String),
    /// See [`ErrorKind::ServerConnection`].
    #[error("could not connect to the mailbox server at {url}: {reason}")]
    ServerConnection {
        /// The mailbox URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// See [`ErrorKind::Protocol`].
    #[error("protocol error: {0}")]
    Protocol(String),
    /// See [`ErrorKind::Timeout`].
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// See [`ErrorKind::Cancelled`].
    #[error("cancelled")]
    Cancelled,
    /// See [`ErrorKind::Closed`]; the wormhole had closed happily (or was closing).
    #[error("the wormhole is closed")]
    Closed,
    /// See [`ErrorKind::NoKey`].
    #[error("the key is not known yet")]
    NoKey,
    /// See [`ErrorKind::OnlyOneCode`].
    #[error("only one of allocate_code, set_code and input_code may be called, once")]
    OnlyOneCode,
    /// See [`ErrorKind::AlreadyChoseNameplate`].
    #[error("the nameplate was already chosen")]
    AlreadyChoseNameplate,
    /// See [`ErrorKind::AlreadyChoseWords`].
    #[error("the words were already chosen")]
    AlreadyChoseWords,
    /// See [`ErrorKind::MustChooseNameplateFirst`].
    #[error("choose a nameplate first")]
    MustChooseNameplateFirst,
    /// See [`ErrorKind::InvalidArgument`].
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// See [`ErrorKind::Transfer`].
    #[error("transfer error: {0}")]
    Transfer(String),
    /// See [`ErrorKind::Internal`].
    #[error("internal error: {0}")]
    Internal(String),
    /// See [`ErrorKind::InProgress`].
    #[error("another transfer is in progress on this wormhole")]
    InProgress,
    /// See [`ErrorKind::InvalidState`].
    #[error("not possible now: {0}")]
    InvalidState(String),
}

impl Error {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidCode(_) => ErrorKind::InvalidCode,
            Error::WrongPassword => ErrorKind::WrongPassword,
            Error::Lonely => ErrorKind::Lonely,
            Error::Welcome(_) => ErrorKind::Welcome,
            Error::Server(_) => ErrorKind::ServerError,
            Error::ServerConnection { .. } => ErrorKind::ServerConnection,
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Closed => ErrorKind::Closed,
            Error::NoKey => ErrorKind::NoKey,
            Error::OnlyOneCode => ErrorKind::OnlyOneCode,
            Error::AlreadyChoseNameplate => ErrorKind::AlreadyChoseNameplate,
            Error::AlreadyChoseWords => ErrorKind::AlreadyChoseWords,
            Error::MustChooseNameplateFirst => ErrorKind::MustChooseNameplateFirst,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Transfer(_) => ErrorKind::Transfer,
            Error::Internal(_) => ErrorKind::Internal,
            Error::InProgress => ErrorKind::InProgress,
            Error::InvalidState(_) => ErrorKind::InvalidState,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn all_lists_each_kind_once_with_a_description() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as u32, i as u32 + 1);
            assert!(!k.description().is_empty());
        }
    }
}
