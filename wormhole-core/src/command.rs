//! What handles ask of a wormhole's driver: one [`Command`] per call, applied to the
//! session in call order.

use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::event::Event;
use crate::proto::session::Session;

/// Where the driver answers a `Serialize` or `Suspend`: the session's snapshot and the
/// events delivered but not yet taken.
pub(crate) type SnapshotReply = oneshot::Sender<Result<(Value, Vec<Event>)>>;

/// Commands from handles to the driver.
pub(crate) enum Command {
    Allocate(usize),
    SetCode(String),
    StartInput,
    RefreshNameplates,
    ChooseNameplate(String),
    ChooseWords(String),
    Send(Vec<u8>),
    /// One Dilation `dilate-N` body from the Dilation driver.
    SendDilation(Vec<u8>),
    Close,
    Cancel,
    /// Journaled mode: hold every frame for the server until the matching `Release`.
    Hold,
    /// Journaled mode: the end of a `Hold`.
    Release,
    /// The session's snapshot and the events delivered but not yet taken, at one instant
    /// (the driver answers it itself, see `driver::run`).
    Serialize(SnapshotReply),
    /// `Serialize`, then stop without a word to the server (see `Wormhole::suspend`).
    Suspend(SnapshotReply),
}

impl Command {
    /// The input's name in `--debug-state` traces.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Command::Allocate(_) => "allocate_code",
            Command::SetCode(_) => "set_code",
            Command::StartInput => "input_code",
            Command::RefreshNameplates => "refresh_nameplates",
            Command::ChooseNameplate(_) => "choose_nameplate",
            Command::ChooseWords(_) => "choose_words",
            Command::Send(_) => "send",
            Command::SendDilation(_) => "send_dilation",
            Command::Close => "close",
            Command::Cancel => "cancel",
            Command::Serialize(_) => "serialize",
            Command::Suspend(_) => "suspend",
            Command::Hold => "hold",
            Command::Release => "release",
        }
    }

    pub(crate) fn apply(self, s: &mut Session) {
        // Handles validate first, so these only fail if the session closed meanwhile.
        let _ = match self {
            Command::Allocate(n) => s.allocate_code(n),
            Command::SetCode(c) => s.set_code(&c),
            Command::StartInput => s.start_input(),
            Command::RefreshNameplates => s.refresh_nameplates(),
            Command::ChooseNameplate(n) => s.choose_nameplate(&n),
            Command::ChooseWords(w) => s.choose_words(&w),
            Command::Send(m) => s.send_message(m),
            Command::SendDilation(b) => s.send_dilation(b),
            Command::Close => {
                s.close();
                Ok(())
            }
            Command::Cancel => {
                s.cancel();
                Ok(())
            }
            // The driver keeps the count itself.
            Command::Hold | Command::Release => Ok(()),
            Command::Serialize(reply) | Command::Suspend(reply) => {
                // Without the driver's event journal: only reached if the driver did not
                // answer it (it always does).
                let _ = reply.send(s.snapshot().map(|v| (v, Vec::new())));
                Ok(())
            }
        };
    }
}
