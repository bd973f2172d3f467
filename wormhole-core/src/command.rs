//! What handles ask of a wormhole's driver: one [`Command`] per call, applied to the
//! session in call order.

use crate::proto::session::Session;

/// Commands from handles to the driver.
pub(crate) enum Command {
    Allocate(usize),
    SetCode(String),
    StartInput,
    RefreshNameplates,
    ChooseNameplate(String),
    ChooseWords(String),
    Send(Vec<u8>),
    Close,
    Cancel,
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
            Command::Close => "close",
            Command::Cancel => "cancel",
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
            Command::Close => {
                s.close();
                Ok(())
            }
            Command::Cancel => {
                s.cancel();
                Ok(())
            }
        };
    }
}
