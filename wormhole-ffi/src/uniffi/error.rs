//! Errors of the Kotlin/Swift API. Core's `ErrorKind` is mapped once, to [`ErrorKind`];
//! [`WormholeError`] (`WormholeException` in Kotlin) has one variant per kind, its message
//! being core's `Display` (which never contains a code, a key or plaintext).

/// What kind of failure, for code that branches on it (also in [`super::Outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ::uniffi::Enum)]
pub enum ErrorKind {
    /// The code is malformed (the reference's `KeyFormatError`).
    InvalidCode,
    /// The peer's message did not decrypt: a wrong code, or an attack.
    WrongPassword,
    /// Closed before any peer message was verified.
    Lonely,
    /// The server's welcome carried an error.
    Welcome,
    /// The server sent an error.
    Server,
    /// The mailbox server could not be reached.
    ServerConnection,
    /// The server or the peer broke the protocol.
    Protocol,
    /// A configured timeout expired.
    Timeout,
    /// Cancelled (`cancel()`, or the object was released).
    Cancelled,
    /// The wormhole closed before this could happen.
    Closed,
    /// `derive_key` before the key is known.
    NoKey,
    /// A second `allocate_code` / `set_code` / `input_code`.
    OnlyOneCode,
    /// Input helper used after `choose_nameplate`.
    AlreadyChoseNameplate,
    /// Input helper used after `choose_words`.
    AlreadyChoseWords,
    /// Input helper asked for words before a nameplate.
    MustChooseNameplateFirst,
    /// An argument was out of range or malformed.
    InvalidArgument,
    /// The file-transfer peer reported an error or broke the transfer protocol.
    Transfer,
    /// A bug in this library. Please report it.
    Internal,
    /// Another transfer is running on this wormhole (one at a time).
    InProgress,
    /// Not possible in the current state (e.g. `acceptOffer` with no offer waiting).
    InvalidState,
}

impl From<wormhole_core::ErrorKind> for ErrorKind {
    fn from(k: wormhole_core::ErrorKind) -> Self {
        use wormhole_core::ErrorKind as K;
        match k {
            K::InvalidCode => ErrorKind::InvalidCode,
            K::WrongPassword => ErrorKind::WrongPassword,
            K::Lonely => ErrorKind::Lonely,
            K::Welcome => ErrorKind::Welcome,
            K::ServerError => ErrorKind::Server,
            K::ServerConnection => ErrorKind::ServerConnection,
            K::Protocol => ErrorKind::Protocol,
            K::Timeout => ErrorKind::Timeout,
            K::Cancelled => ErrorKind::Cancelled,
            K::Closed => ErrorKind::Closed,
            K::NoKey => ErrorKind::NoKey,
            K::OnlyOneCode => ErrorKind::OnlyOneCode,
            K::AlreadyChoseNameplate => ErrorKind::AlreadyChoseNameplate,
            K::AlreadyChoseWords => ErrorKind::AlreadyChoseWords,
            K::MustChooseNameplateFirst => ErrorKind::MustChooseNameplateFirst,
            K::InvalidArgument => ErrorKind::InvalidArgument,
            K::Transfer => ErrorKind::Transfer,
            K::InProgress => ErrorKind::InProgress,
            K::InvalidState => ErrorKind::InvalidState,
            _ => ErrorKind::Internal,
        }
    }
}

/// Why an operation failed: one variant per [`ErrorKind`], carrying the message. In Kotlin
/// catch `WormholeException.WrongPassword` etc. (`e.message` is the explanation); in Swift
/// `WormholeError.WrongPassword(message:)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, ::uniffi::Error)]
#[uniffi(flat_error)]
pub enum WormholeError {
    /// The code is malformed (the reference's `KeyFormatError`).
    #[error("{0}")]
    InvalidCode(String),
    /// The peer's message did not decrypt: a wrong code, or an attack.
    #[error("{0}")]
    WrongPassword(String),
    /// Closed before any peer message was verified.
    #[error("{0}")]
    Lonely(String),
    /// The server's welcome carried an error.
    #[error("{0}")]
    Welcome(String),
    /// The server sent an error.
    #[error("{0}")]
    Server(String),
    /// The mailbox server could not be reached.
    #[error("{0}")]
    ServerConnection(String),
    /// The server or the peer broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// A configured timeout expired.
    #[error("{0}")]
    Timeout(String),
    /// Cancelled (`cancel()`, or the object was released).
    #[error("{0}")]
    Cancelled(String),
    /// The wormhole closed before this could happen.
    #[error("{0}")]
    Closed(String),
    /// `derive_key` before the key is known.
    #[error("{0}")]
    NoKey(String),
    /// A second `allocate_code` / `set_code` / `input_code`.
    #[error("{0}")]
    OnlyOneCode(String),
    /// Input helper used after `choose_nameplate`.
    #[error("{0}")]
    AlreadyChoseNameplate(String),
    /// Input helper used after `choose_words`.
    #[error("{0}")]
    AlreadyChoseWords(String),
    /// Input helper asked for words before a nameplate.
    #[error("{0}")]
    MustChooseNameplateFirst(String),
    /// An argument was out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The file-transfer peer reported an error or broke the transfer protocol.
    #[error("{0}")]
    Transfer(String),
    /// A bug in this library. Please report it.
    #[error("{0}")]
    Internal(String),
    /// Another transfer is running on this wormhole (one at a time).
    #[error("{0}")]
    InProgress(String),
    /// Not possible in the current state (e.g. `acceptOffer` with no offer waiting).
    #[error("{0}")]
    InvalidState(String),
}

impl WormholeError {
    /// The error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::InvalidCode => WormholeError::InvalidCode(message),
            ErrorKind::WrongPassword => WormholeError::WrongPassword(message),
            ErrorKind::Lonely => WormholeError::Lonely(message),
            ErrorKind::Welcome => WormholeError::Welcome(message),
            ErrorKind::Server => WormholeError::Server(message),
            ErrorKind::ServerConnection => WormholeError::ServerConnection(message),
            ErrorKind::Protocol => WormholeError::Protocol(message),
            ErrorKind::Timeout => WormholeError::Timeout(message),
            ErrorKind::Cancelled => WormholeError::Cancelled(message),
            ErrorKind::Closed => WormholeError::Closed(message),
            ErrorKind::NoKey => WormholeError::NoKey(message),
            ErrorKind::OnlyOneCode => WormholeError::OnlyOneCode(message),
            ErrorKind::AlreadyChoseNameplate => WormholeError::AlreadyChoseNameplate(message),
            ErrorKind::AlreadyChoseWords => WormholeError::AlreadyChoseWords(message),
            ErrorKind::MustChooseNameplateFirst => WormholeError::MustChooseNameplateFirst(message),
            ErrorKind::InvalidArgument => WormholeError::InvalidArgument(message),
            ErrorKind::Transfer => WormholeError::Transfer(message),
            ErrorKind::Internal => WormholeError::Internal(message),
            ErrorKind::InProgress => WormholeError::InProgress(message),
            ErrorKind::InvalidState => WormholeError::InvalidState(message),
        }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        WormholeError::InvalidArgument(message.into())
    }
}

impl From<wormhole_core::Error> for WormholeError {
    fn from(e: wormhole_core::Error) -> Self {
        WormholeError::new(e.kind().into(), e.to_string())
    }
}

/// What a delegate method may throw: any exception becomes `Failed`, is logged, and the
/// next events are still delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, ::uniffi::Error)]
pub enum DelegateError {
    /// The delegate failed.
    #[error("{reason}")]
    Failed {
        /// What it said.
        reason: String,
    },
}

impl From<::uniffi::UnexpectedUniFFICallbackError> for DelegateError {
    fn from(e: ::uniffi::UnexpectedUniFFICallbackError) -> Self {
        DelegateError::Failed { reason: e.reason }
    }
}
