//! `wh_result`: the stable result codes of the C API, and the one mapping from
//! [`wormhole_core::ErrorKind`].
//!
//! Codes 1–18 are core's [`ErrorKind`] numbers, unchanged (core's later kinds InProgress
//! and InvalidState map to the older C codes 105 and 104); codes from 100 on belong to the
//! C boundary itself. Descriptions of core's kinds come from core. Never renumber a code or reuse one: a retired code stays as a comment.

use std::os::raw::c_char;

use wormhole_core::{Error, ErrorKind};

/// The result of a `wh_*` call, or the outcome carried by a completion event.
///
/// `WH_RESULT_OK` (0) is success. The numbers are stable: they are never changed or reused.
/// Functions that take a code back from C (`wh_result_str`) take a plain `uint32_t`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wh_result {
    /// Success (for the `closed` outcome: the wormhole closed happily).
    Ok = 0,
    /// The code is malformed (a space, or a non-numeric nameplate).
    InvalidCode = 1,
    /// A peer message failed to decrypt: a wrong code, or an attack.
    WrongPassword = 2,
    /// The wormhole closed before any peer message was verified.
    Lonely = 3,
    /// The server's welcome carried an error (the client is refused).
    Welcome = 4,
    /// The server sent an error frame.
    ServerError = 5,
    /// The mailbox server could not be reached.
    ServerConnection = 6,
    /// The server or the peer broke the protocol.
    Protocol = 7,
    /// A configured timeout expired.
    Timeout = 8,
    /// The operation was cancelled (`wh_cancel`, or `wh_free` while it was pending).
    Cancelled = 9,
    /// The wormhole is closed (it closed happily, or is closing); for `wh_next_event`:
    /// the `closed` event was already returned, no event will follow.
    Closed = 10,
    /// `wh_derive_key` before the key is known.
    NoKey = 11,
    /// A second `wh_allocate_code` / `wh_set_code` / `wh_input_code`.
    OnlyOneCode = 12,
    /// An input-helper call after `wh_input_choose_nameplate`.
    AlreadyChoseNameplate = 13,
    /// An input-helper call after `wh_input_choose_words`.
    AlreadyChoseWords = 14,
    /// Word completion or `wh_input_choose_words` before a nameplate was chosen.
    MustChooseNameplateFirst = 15,
    /// An argument is out of range or malformed (other than a code), e.g. a bad relay URL
    /// or app-versions JSON that is not an object.
    InvalidArgument = 16,
    /// The file-transfer peer reported an error or broke the text-transfer protocol.
    Transfer = 17,
    /// A bug in the library. Please report it.
    Internal = 18,
    /// A required pointer argument was NULL.
    NullArgument = 100,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 101,
    /// The library panicked inside this call (a bug); the call had no effect or an
    /// unknown partial effect on this handle. As a `closed` outcome: the library's event
    /// pump panicked, and no further event will come. Please report it.
    Panic = 102,
    /// `wh_next_event`: no event arrived within the timeout.
    NoEvent = 103,
    /// The call does not fit the handle's mode or state: a pull call on a handle with a
    /// delegate, or an input-helper call before `wh_input_code`.
    InvalidState = 104,
    /// A text or file transfer (`wh_send_text`, `wh_receive_text`, `wh_send_file`,
    /// `wh_receive_file`) is already in progress on this wormhole.
    InProgress = 105,
    /// The wormhole handle is not live: it was freed already, or did not come from
    /// `wh_create`.
    InvalidHandle = 106,
    /// A Dilation call cannot go on now (no data, no room in the write window, no
    /// subchannel waiting); nothing was done, and an event says when to call again.
    WouldBlock = 107,
}

impl wh_result {
    /// Convert a plain number from C; `None` when it is not a code.
    pub fn from_u32(code: u32) -> Option<wh_result> {
        use wh_result::*;
        Some(match code {
            0 => Ok,
            1 => InvalidCode,
            2 => WrongPassword,
            3 => Lonely,
            4 => Welcome,
            5 => ServerError,
            6 => ServerConnection,
            7 => Protocol,
            8 => Timeout,
            9 => Cancelled,
            10 => Closed,
            11 => NoKey,
            12 => OnlyOneCode,
            13 => AlreadyChoseNameplate,
            14 => AlreadyChoseWords,
            15 => MustChooseNameplateFirst,
            16 => InvalidArgument,
            17 => Transfer,
            18 => Internal,
            100 => NullArgument,
            101 => InvalidUtf8,
            102 => Panic,
            103 => NoEvent,
            104 => InvalidState,
            105 => InProgress,
            106 => InvalidHandle,
            107 => WouldBlock,
            _ => return None,
        })
    }

    /// The static, NUL-terminated description of this code: core's for the codes that
    /// stand for one of its kinds, our own for the boundary's.
    pub(crate) fn description(self) -> &'static std::ffi::CStr {
        use wh_result::*;
        if let Some(kind) = ErrorKind::ALL.iter().find(|k| wh_result::from(**k) == self) {
            return kind.description_c();
        }
        match self {
            Ok => c"ok",
            NullArgument => c"a required pointer argument was NULL",
            InvalidUtf8 => c"a string argument was not valid UTF-8",
            Panic => c"the library panicked (a bug)",
            NoEvent => c"no event within the timeout",
            InvalidState => c"the call does not fit the handle's mode or state",
            InvalidHandle => c"the wormhole handle was freed or is not a wormhole",
            WouldBlock => c"cannot go on now: an event says when to call again",
            _ => c"unknown result code",
        }
    }
}

/// The one mapping from core's stable kinds to C codes.
impl From<ErrorKind> for wh_result {
    fn from(kind: ErrorKind) -> wh_result {
        match kind {
            ErrorKind::InvalidCode => wh_result::InvalidCode,
            ErrorKind::WrongPassword => wh_result::WrongPassword,
            ErrorKind::Lonely => wh_result::Lonely,
            ErrorKind::Welcome => wh_result::Welcome,
            ErrorKind::ServerError => wh_result::ServerError,
            ErrorKind::ServerConnection => wh_result::ServerConnection,
            ErrorKind::Protocol => wh_result::Protocol,
            ErrorKind::Timeout => wh_result::Timeout,
            ErrorKind::Cancelled => wh_result::Cancelled,
            ErrorKind::Closed => wh_result::Closed,
            ErrorKind::NoKey => wh_result::NoKey,
            ErrorKind::OnlyOneCode => wh_result::OnlyOneCode,
            ErrorKind::AlreadyChoseNameplate => wh_result::AlreadyChoseNameplate,
            ErrorKind::AlreadyChoseWords => wh_result::AlreadyChoseWords,
            ErrorKind::MustChooseNameplateFirst => wh_result::MustChooseNameplateFirst,
            ErrorKind::InvalidArgument => wh_result::InvalidArgument,
            ErrorKind::Transfer => wh_result::Transfer,
            ErrorKind::Internal => wh_result::Internal,
            ErrorKind::InProgress => wh_result::InProgress,
            ErrorKind::InvalidState => wh_result::InvalidState,
            // `ErrorKind` is non-exhaustive: a kind added later is reported as internal
            // until it gets its own code here.
            _ => wh_result::Internal,
        }
    }
}

impl From<&Error> for wh_result {
    fn from(e: &Error) -> wh_result {
        e.kind().into()
    }
}

/// A static, NUL-terminated English description of a result code.
///
/// Takes any number (an unknown one gives "unknown result code"). The returned string is
/// owned by the library and valid for the life of the process: never free it.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_result_str(result: u32) -> *const c_char {
    ffi_boundary! {
        match wh_result::from_u32(result) {
            Some(r) => r.description().as_ptr(),
            None => c"unknown result code".as_ptr(),
        }
    }
}

/// The library version as a static NUL-terminated string, e.g. "0.1.0" (the same as the
/// `WH_VERSION` macro of the header it was built with). Never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_version() -> *const c_char {
    ffi_boundary! {
        static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
            concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
        ) {
            Ok(s) => s,
            Err(_) => c"unknown",
        };
        VERSION.as_ptr()
    }
}
