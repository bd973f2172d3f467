//! The events of a delegated-mode wormhole (its [`crate::Events`] stream).

use serde_json::{Map, Value};

use crate::error::Result;
use crate::proto::key::Key;
use crate::transfer::machine::TransferEvent;

/// An event of a delegated-mode wormhole, in the order they happen.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `wormhole_got_welcome`.
    Welcome(Map<String, Value>),
    /// `wormhole_got_code`.
    Code(String),
    /// `wormhole_got_unverified_key`.
    UnverifiedKey(Key),
    /// `wormhole_got_verifier`.
    Verifier([u8; 32]),
    /// `wormhole_got_versions`.
    Versions(Value),
    /// `wormhole_got_message`: a message while no transfer runs (a running transfer
    /// consumes the peer's messages itself).
    Message(Vec<u8>),
    /// Input helper: the chosen nameplate is claimed and word completion works.
    WordlistAvailable,
    /// A text or file transfer event (see [`crate::Wormhole::start_send_text`] and friends).
    Transfer(TransferEvent),
    /// A Dilation status event ([`crate::Wormhole::dilate`]): on a delegated wormhole
    /// they arrive here, in order with the others, instead of through
    /// [`crate::dilation::handle::Dilated::next_event`].
    Dilation(crate::dilation::handle::DilationEvent),
    /// A Dilation subchannel or listener in poll mode can go on
    /// ([`crate::dilation::handle::Subchannel::try_recv`] and friends).
    DilationReady(crate::dilation::handle::Readiness),
    /// `wormhole_closed`: `Ok` when happy. Always last.
    Closed(Result<()>),
}
