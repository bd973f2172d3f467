//! *Code*: where the code comes from (allocated, set, or typed with the input helper),
//! at most one source per session.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proto::code::{validate_code, validate_nameplate};

/// How the code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Source {
    Allocate,
    Set,
    Input,
}

/// States as in the reference's `_code.py`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0_idle`: no source chosen.
    Idle,
    /// `S1_inputting_nameplate`: the input helper is choosing the nameplate.
    InputtingNameplate,
    /// `S2_inputting_words`: the nameplate is chosen (and being claimed).
    InputtingWords { nameplate: String },
    /// `S3_allocating`: waiting for the server's nameplate.
    Allocating,
    /// `S4_known`.
    Known { code: String, source: Source },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Code {
    state: State,
}

/// Error for an input-helper call when the code does not come from the input helper.
fn not_inputting() -> Error {
    Error::InvalidArgument("input_code() was not called".into())
}

impl Code {
    pub(super) fn new() -> Code {
        Code { state: State::Idle }
    }

    fn take_source(&mut self, next: State) -> Result<()> {
        if self.state != State::Idle {
            return Err(Error::OnlyOneCode);
        }
        self.state = next;
        Ok(())
    }

    /// `allocate_code`: the allocator takes over.
    pub(super) fn allocate(&mut self) -> Result<()> {
        self.take_source(State::Allocating)
    }

    /// `set_code`: returns the code's nameplate, or why the code is invalid.
    pub(super) fn set(&mut self, code: &str) -> Result<String> {
        let nameplate = validate_code(code)?.to_owned();
        self.take_source(State::Known {
            code: code.to_owned(),
            source: Source::Set,
        })?;
        Ok(nameplate)
    }

    /// `input_code`: the input helper takes over.
    pub(super) fn start_input(&mut self) -> Result<()> {
        self.take_source(State::InputtingNameplate)
    }

    /// Whether the code comes from the input helper; an error for input-helper calls if not.
    pub(super) fn require_input(&self) -> Result<()> {
        match &self.state {
            State::InputtingNameplate | State::InputtingWords { .. } => Ok(()),
            State::Known {
                source: Source::Input,
                ..
            } => Ok(()),
            _ => Err(not_inputting()),
        }
    }

    /// Whether the nameplate may still be chosen (or the list refreshed).
    pub(super) fn can_choose_nameplate(&self) -> Result<()> {
        self.require_input()?;
        match self.state {
            State::InputtingNameplate => Ok(()),
            _ => Err(Error::AlreadyChoseNameplate),
        }
    }

    /// The input helper chose the nameplate.
    pub(super) fn choose_nameplate(&mut self, nameplate: &str) -> Result<()> {
        self.can_choose_nameplate()?;
        validate_nameplate(nameplate)?;
        self.state = State::InputtingWords {
            nameplate: nameplate.to_owned(),
        };
        Ok(())
    }

    /// The input helper chose the words: returns the code.
    pub(super) fn choose_words(&mut self, words: &str) -> Result<String> {
        self.require_input()?;
        let nameplate = match &self.state {
            State::InputtingNameplate => return Err(Error::MustChooseNameplateFirst),
            State::InputtingWords { nameplate } => nameplate,
            _ => return Err(Error::AlreadyChoseWords),
        };
        let code = format!("{nameplate}-{words}");
        if code.contains(' ') {
            return Err(Error::InvalidCode("the code contains a space"));
        }
        self.state = State::Known {
            code: code.clone(),
            source: Source::Input,
        };
        Ok(code)
    }

    /// The allocator made the code. False if no allocation was under way.
    pub(super) fn allocated(&mut self, code: &str) -> bool {
        if self.state != State::Allocating {
            return false;
        }
        self.state = State::Known {
            code: code.to_owned(),
            source: Source::Allocate,
        };
        true
    }

    /// Whether a source was chosen (allocate, set, or input).
    pub(super) fn chosen(&self) -> bool {
        self.state != State::Idle
    }

    /// The code, once known.
    pub(super) fn known(&self) -> Option<&str> {
        match &self.state {
            State::Known { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the code comes (or will come) from the input helper.
    pub(super) fn is_input(&self) -> bool {
        self.require_input().is_ok()
    }
}

impl Code {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "S0_idle",
            State::InputtingNameplate => "S1_inputting_nameplate",
            State::InputtingWords { .. } => "S2_inputting_words",
            State::Allocating => "S3_allocating",
            State::Known { .. } => "S4_known",
        }
    }
}
