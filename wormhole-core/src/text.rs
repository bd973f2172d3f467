//! The text part of the file-transfer protocol (PROTOCOL §8): what `wormhole send --text`
//! and `wormhole receive` exchange over a wormhole with app id
//! [`TRANSFER_APPID`](crate::TRANSFER_APPID).
//!
//! Sender → receiver: `{"offer": {"message": TEXT}}`; receiver → sender:
//! `{"answer": {"message_ack": "ok"}}`. Either side may instead send `{"error": TEXT}`.
//! The message types are pure data ([`TransferMessage`]); the exchange itself is the
//! transfer machine's ([`crate::transfer::machine`]); [`send_text`] and [`receive_text`]
//! await it on a [`Wormhole`].

use crate::api::Wormhole;
use crate::error::{Error, Result};
use crate::transfer::machine::{Kind, TransferEvent};
pub use crate::transfer::message::{Offer, TransferMessage};

/// Send `text` and wait for the receiver's acknowledgement (the sender half of
/// `wormhole send --text`), on a wormhole of either mode. The caller sets or allocates
/// the code and closes the wormhole. See [`Wormhole::start_send_text`].
pub async fn send_text(w: &Wormhole, text: &str) -> Result<()> {
    let id = w.start_transfer(Kind::SendText, Some(text.to_owned()), None, None)?;
    match w.transfer_news(id, false).await? {
        TransferEvent::TextSent(r) => r,
        other => Err(Error::Internal(format!("unexpected {other:?}"))),
    }
}

/// Wait for a text offer, acknowledge it and return the text (the receiver half of
/// `wormhole receive --only-text`). A file or directory offer is refused with the
/// reference's `unknown offer type` error and reported as [`Error::Transfer`]; use
/// [`crate::transfer::receive`] to accept files and directories too.
pub async fn receive_text(w: &Wormhole) -> Result<String> {
    let id = w.start_transfer(Kind::ReceiveText, None, None, None)?;
    match w.transfer_news(id, false).await? {
        TransferEvent::TextReceived(r) => r,
        other => Err(Error::Internal(format!("unexpected {other:?}"))),
    }
}
