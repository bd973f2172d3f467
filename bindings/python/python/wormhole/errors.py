"""Exceptions raised by :mod:`wormhole`, under the reference library's names.

Every class except :class:`WormholeClosed` derives from :class:`WormholeError`
(as in magic-wormhole 0.24). The classes are defined by the native module, which
maps each error of the Rust core to exactly one of them.
"""

from wormhole._native import (
    AlreadyChoseNameplateError,
    AlreadyChoseWordsError,
    AlreadyInputNameplateError,
    InternalError,
    InvalidStateError,
    KeyFormatError,
    LonelyError,
    MustChooseNameplateFirstError,
    NoKeyError,
    NoTorError,
    OnlyOneCodeError,
    ProtocolError,
    ReflectionAttack,
    ServerConnectionError,
    ServerError,
    Timeout,
    TransferError,
    TransferInProgressError,
    WelcomeError,
    WormholeCancelled,
    WormholeClosed,
    WormholeError,
    WrongPasswordError,
)


class CanOnlyDilateOnceError(WormholeError):
    """``dilate()`` was called a second time on one wormhole."""


class AlreadyClosedError(WormholeError):
    """A write on a Dilation subchannel that was already closed."""


class DilationFailed(WormholeError):
    """Dilation failed for good (no common version, or the wormhole closed first)."""


__all__ = [
    "AlreadyChoseNameplateError",
    "AlreadyChoseWordsError",
    "AlreadyClosedError",
    "AlreadyInputNameplateError",
    "CanOnlyDilateOnceError",
    "DilationFailed",
    "InternalError",
    "InvalidStateError",
    "KeyFormatError",
    "LonelyError",
    "MustChooseNameplateFirstError",
    "NoKeyError",
    "NoTorError",
    "OnlyOneCodeError",
    "ProtocolError",
    "ReflectionAttack",
    "ServerConnectionError",
    "ServerError",
    "Timeout",
    "TransferError",
    "TransferInProgressError",
    "WelcomeError",
    "WormholeCancelled",
    "WormholeClosed",
    "WormholeError",
    "WrongPasswordError",
]
