//! The exception classes of `wormhole.errors` and the one place where a core
//! [`ErrorKind`] becomes a Python exception.
//!
//! The classes live in this native module (their `__module__` is `wormhole.errors`) and
//! `wormhole/errors.py` re-exports them under the reference library's names.

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use wormhole_core::{Error, ErrorKind};

pyo3::create_exception!(
    wormhole.errors,
    WormholeError,
    PyException,
    "Base class of every error this library raises."
);
pyo3::create_exception!(
    wormhole.errors,
    TransferInProgressError,
    WormholeError,
    "Another transfer is running on this wormhole (one at a time)."
);
pyo3::create_exception!(
    wormhole.errors,
    InvalidStateError,
    WormholeError,
    "Not possible in the current state, e.g. accepting when no offer is waiting."
);
pyo3::create_exception!(
    wormhole.errors,
    WelcomeError,
    WormholeError,
    "The server's welcome message carried an error: it will not serve this client."
);
pyo3::create_exception!(
    wormhole.errors,
    ServerError,
    WormholeError,
    "The mailbox server sent an error message; the wormhole closed."
);
pyo3::create_exception!(
    wormhole.errors,
    ServerConnectionError,
    WormholeError,
    "The first connection to the mailbox server failed."
);
pyo3::create_exception!(
    wormhole.errors,
    Timeout,
    WormholeError,
    "A configured timeout expired."
);
pyo3::create_exception!(
    wormhole.errors,
    LonelyError,
    WormholeError,
    "close() was called before any message from the peer was verified."
);
pyo3::create_exception!(
    wormhole.errors,
    WrongPasswordError,
    WormholeError,
    "A peer message failed to decrypt: a mistyped code, or a failed guess by an attacker."
);
pyo3::create_exception!(
    wormhole.errors,
    KeyFormatError,
    WormholeError,
    "The code is malformed: it contains a space, or its nameplate is not a number."
);
pyo3::create_exception!(
    wormhole.errors,
    ReflectionAttack,
    WormholeError,
    "Defined for compatibility with the reference library; never raised."
);
pyo3::create_exception!(
    wormhole.errors,
    InternalError,
    WormholeError,
    "A bug in this library."
);
pyo3::create_exception!(
    wormhole.errors,
    TransferError,
    WormholeError,
    "The file-transfer peer reported an error or broke the transfer protocol."
);
pyo3::create_exception!(
    wormhole.errors,
    NoTorError,
    WormholeError,
    "Tor was requested but no usable tor was found (or launched)."
);
pyo3::create_exception!(
    wormhole.errors,
    NoKeyError,
    WormholeError,
    "derive_key() was called before the key was known."
);
pyo3::create_exception!(
    wormhole.errors,
    OnlyOneCodeError,
    WormholeError,
    "A second call to allocate_code(), set_code() or input_code()."
);
pyo3::create_exception!(
    wormhole.errors,
    MustChooseNameplateFirstError,
    WormholeError,
    "The input helper was asked for words before a nameplate was chosen."
);
pyo3::create_exception!(
    wormhole.errors,
    AlreadyChoseNameplateError,
    WormholeError,
    "The input helper was used for nameplates after choose_nameplate()."
);
pyo3::create_exception!(
    wormhole.errors,
    AlreadyChoseWordsError,
    WormholeError,
    "The input helper was used after choose_words()."
);
pyo3::create_exception!(
    wormhole.errors,
    AlreadyInputNameplateError,
    WormholeError,
    "The line being completed names a different nameplate than the one already chosen."
);
pyo3::create_exception!(
    wormhole.errors,
    ProtocolError,
    WormholeError,
    "The server or the peer broke the protocol (malformed or unexpected message)."
);
pyo3::create_exception!(
    wormhole.errors,
    WormholeCancelled,
    WormholeError,
    "The wormhole was cancelled (for example garbage-collected, or interrupted) before this operation finished."
);
pyo3::create_exception!(
    wormhole.errors,
    WormholeClosed,
    PyException,
    "The wormhole closed without error before this event happened. Not a WormholeError, as in the reference library."
);

/// Map a core error to its Python exception. This is the only place `ErrorKind` is mapped.
pub(crate) fn to_pyerr(e: Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::InvalidCode => KeyFormatError::new_err(msg),
        ErrorKind::WrongPassword => WrongPasswordError::new_err(msg),
        ErrorKind::Lonely => LonelyError::new_err(msg),
        ErrorKind::Welcome => match e {
            Error::Welcome(text) => WelcomeError::new_err(text),
            _ => WelcomeError::new_err(msg),
        },
        ErrorKind::ServerError => match e {
            Error::Server(text) => ServerError::new_err(text),
            _ => ServerError::new_err(msg),
        },
        ErrorKind::ServerConnection => match e {
            Error::ServerConnection { url, reason } => {
                ServerConnectionError::new_err((url, reason))
            }
            _ => ServerConnectionError::new_err(msg),
        },
        ErrorKind::Protocol => ProtocolError::new_err(msg),
        ErrorKind::Timeout => Timeout::new_err(msg),
        ErrorKind::Cancelled => WormholeCancelled::new_err(msg),
        ErrorKind::Closed => WormholeClosed::new_err(msg),
        ErrorKind::NoKey => NoKeyError::new_err(msg),
        ErrorKind::OnlyOneCode => OnlyOneCodeError::new_err(msg),
        ErrorKind::AlreadyChoseNameplate => AlreadyChoseNameplateError::new_err(msg),
        ErrorKind::AlreadyChoseWords => AlreadyChoseWordsError::new_err(msg),
        ErrorKind::MustChooseNameplateFirst => MustChooseNameplateFirstError::new_err(msg),
        ErrorKind::InvalidArgument => PyValueError::new_err(msg),
        ErrorKind::Transfer => TransferError::new_err(msg),
        ErrorKind::Internal => InternalError::new_err(msg),
        ErrorKind::InProgress => TransferInProgressError::new_err(msg),
        ErrorKind::InvalidState => InvalidStateError::new_err(msg),
        _ => WormholeError::new_err(msg),
    }
}

/// Register every class on the native module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    macro_rules! add {
        ($($t:ident),* $(,)?) => { $( m.add(stringify!($t), py.get_type::<$t>())?; )* };
    }
    add!(
        WormholeError,
        WelcomeError,
        ServerError,
        ServerConnectionError,
        Timeout,
        LonelyError,
        WrongPasswordError,
        KeyFormatError,
        ReflectionAttack,
        InternalError,
        TransferError,
        NoTorError,
        NoKeyError,
        OnlyOneCodeError,
        MustChooseNameplateFirstError,
        AlreadyChoseNameplateError,
        AlreadyChoseWordsError,
        AlreadyInputNameplateError,
        ProtocolError,
        WormholeCancelled,
        WormholeClosed,
        TransferInProgressError,
        InvalidStateError,
    );
    Ok(())
}
