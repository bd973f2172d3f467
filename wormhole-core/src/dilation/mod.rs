//! Dilation (PROTOCOL §9): the sans-IO wire layer of a durable, multiplexed, encrypted
//! connection grown out of an established wormhole.
//!
//! Nothing here touches a socket, a clock or a global RNG; a later driver owns the TCP
//! connections and the mailbox and feeds bytes and messages in. The layers, bottom up:
//!
//! - [`keys`]: the Dilation key, sides, roles, the relay handshake and `dilate-N` phases
//!   (§9.2, §9.4).
//! - [`messages`] (L1): the JSON bodies of the `dilate-N` mailbox messages (§9.3).
//! - [`connection`] (L2): one TCP connection's relay handshake, prologue lines, Noise
//!   `NNpsk0` handshake, framing and key confirmation (§9.6).
//! - [`record`] (L3): the plaintext records inside each Noise frame (§9.7).
//! - [`reliable`] (L4): sequence numbers, acknowledgements, re-sending on a new
//!   connection, inbound de-duplication (§9.8).
//! - [`subchannel`] (L5): subchannel ids, OPEN/DATA/CLOSE state, listeners (§9.9).
//! - [`manager`]: start-up and roles, generations of connection attempts, selection,
//!   keepalive and reconnection (§9.4, §9.5, §9.10, §9.11), as a timer-driven machine.
//!
//! - [`endpoint`]: all of the above wired together for one side, sans-IO.
//! - `driver`: the tokio task that owns the sockets and performs the endpoint's work.
//! - [`handle`]: the application's [`Dilated`](handle::Dilated),
//!   [`Subchannel`](handle::Subchannel) and [`SubchannelListener`](handle::SubchannelListener).

pub mod connection;
pub(crate) mod driver;
pub mod endpoint;
pub mod handle;
pub mod keys;
pub mod manager;
pub mod messages;
pub mod record;
pub mod reliable;
pub mod subchannel;

/// Everything that can go wrong in the Dilation wire layer. Peer-caused errors (malformed
/// input) drop the connection or the message; none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DilationError {
    /// A `dilate-N` body was not valid JSON of a known shape.
    #[error("malformed dilation message: {0}")]
    BadMessage(String),
    /// A `dilate-N` body had a `type` we do not know.
    #[error("unknown dilation message type {0:?}")]
    UnknownMessageType(String),
    /// A phase name was not `dilate-N`.
    #[error("not a dilation phase: {0:?}")]
    BadPhase(String),
    /// A dilation side was not 16 lowercase hex digits.
    #[error("bad dilation side (want 16 lowercase hex digits)")]
    BadSide,
    /// The peer's `can-dilate` list has none of our Dilation versions (the reference's
    /// `OldPeerCannotDilateError`).
    #[error("the peer cannot dilate: no common dilation version")]
    NoCommonVersion,
    /// A Dilation message that is not allowed in the current state (ignored).
    #[error("unexpected dilation message: {0}")]
    UnexpectedMessage(String),
    /// Both sides chose the same dilation side: we are talking to ourselves.
    #[error("the peer's dilation side equals ours (reflection)")]
    Reflection,
    /// An L3 record was shorter than its type requires.
    #[error("truncated {0} record")]
    TruncatedRecord(&'static str),
    /// An L3 record had bytes after its last field.
    #[error("{0} record has trailing bytes")]
    TrailingBytes(&'static str),
    /// An L3 record (or frame) exceeded the configured limit.
    #[error("record or frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// The announced or actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An L3 record had an unknown type byte.
    #[error("unknown record type 0x{0:02x}")]
    UnknownRecordType(u8),
    /// An OPEN record's subprotocol name was not UTF-8.
    #[error("OPEN record's subprotocol name is not UTF-8")]
    BadUtf8,
    /// The relay answered something other than `ok\n`.
    #[error("the transit relay refused the connection")]
    RelayRefused,
    /// The peer's prologue line was not the expected role's.
    #[error("bad dilation handshake line from the peer")]
    BadPrologue,
    /// The Noise handshake or a transport message failed (wrong key, corruption).
    #[error("noise: {0}")]
    Noise(String),
    /// The peer sent a record that is not allowed in the connection's state.
    #[error("unexpected {0} record before the connection was selected")]
    UnexpectedRecord(&'static str),
    /// The connection already failed or was closed; nothing more can be done on it.
    #[error("the connection is closed")]
    ConnectionClosed,
    /// The call is not possible in the current state (a local mistake, not the peer's).
    #[error("not possible now: {0}")]
    InvalidState(String),
    /// The outbound sequence numbers (or subchannel ids) ran out (2^32).
    #[error("sequence numbers or subchannel ids exhausted")]
    Exhausted,
}

impl From<DilationError> for crate::Error {
    fn from(e: DilationError) -> crate::Error {
        match e {
            DilationError::InvalidState(s) => crate::Error::InvalidState(s),
            DilationError::BadSide => crate::Error::InvalidArgument(e.to_string()),
            other => crate::Error::Protocol(other.to_string()),
        }
    }
}

/// Results of this module.
pub type Result<T> = std::result::Result<T, DilationError>;
