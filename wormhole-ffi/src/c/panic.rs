//! The panic boundary (after rustls-ffi's `ffi_panic_boundary!`).
//!
//! Since Rust 1.81 a panic that unwinds out of an `extern "C"` function aborts the host
//! process. Every exported body therefore runs inside [`ffi_boundary!`], which catches
//! the panic and returns the [`PanicDefault`] of the function's return type:
//! `WH_RESULT_PANIC` for results, NULL for pointers, 0 or false for getters. User
//! callbacks are wrapped the same way (see `event.rs`), so a C++ exception-free panic in
//! our code never crosses into C, and no C callback unwinds into Rust.

use std::os::raw::{c_char, c_int};

use super::event::{wh_event_kind, wh_offer_kind};
use super::result::wh_result;

/// What an `extern "C"` function returns when its body panicked.
pub(crate) trait PanicDefault {
    /// The fallback value.
    fn panic_default() -> Self;
}

impl PanicDefault for wh_result {
    fn panic_default() -> Self {
        wh_result::Panic
    }
}

impl PanicDefault for wh_event_kind {
    fn panic_default() -> Self {
        wh_event_kind::None
    }
}

impl PanicDefault for wh_offer_kind {
    fn panic_default() -> Self {
        wh_offer_kind::None
    }
}

impl PanicDefault for u32 {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for u64 {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

impl PanicDefault for usize {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for c_int {
    fn panic_default() -> Self {
        -1
    }
}

impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

impl PanicDefault for *const c_char {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl PanicDefault for *const u8 {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

/// Run an `extern "C"` body, turning a panic into the return type's [`PanicDefault`].
/// `return` inside the body returns from the body (it is a closure).
macro_rules! ffi_boundary {
    ($($body:tt)*) => {{
        let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || { $($body)* }
        ));
        match result {
            Ok(value) => value,
            Err(_) => $crate::c::panic::PanicDefault::panic_default(),
        }
    }};
}
