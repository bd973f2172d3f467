//! The one place where C handles become Rust values and back (after rustls-ffi's
//! `Castable`). Each opaque C type names the Rust type behind it and whether a `Box` or
//! an `Arc` owns it; no other module casts handle pointers.
//!
//! Invariant: a non-NULL handle pointer given to us by C was produced by the matching
//! `*_into_raw` function here and not yet freed (freeing twice, or using a handle after
//! its `_free`, is documented as undefined behaviour).

use std::ffi::{CStr, c_char};
use std::sync::Arc;

use super::result::wh_result;

/// The handle is a `Box<RustType>`.
pub(crate) struct OwnedBox;
/// The handle is an `Arc<RustType>`.
pub(crate) struct OwnedArc;

/// Links an opaque C type to the Rust type behind its pointers.
pub(crate) trait Castable {
    /// `OwnedBox` or `OwnedArc`.
    type Ownership;
    /// What the pointer really points to.
    type RustType;
}

/// Hand a new `Box` to C.
pub(crate) fn box_into_raw<C: Castable<Ownership = OwnedBox>>(value: C::RustType) -> *mut C {
    Box::into_raw(Box::new(value)).cast::<C>()
}

/// Borrow the value behind a `Box` handle; `None` for NULL.
pub(crate) fn box_ref<'a, C: Castable<Ownership = OwnedBox>>(
    ptr: *const C,
) -> Option<&'a C::RustType> {
    // SAFETY: per the module invariant a non-NULL pointer came from `box_into_raw::<C>`
    // and is live; C may only read it while it owns it, and we hand out shared borrows.
    unsafe { ptr.cast::<C::RustType>().as_ref() }
}

/// Take back ownership of a `Box` handle (for `_free`); `None` for NULL.
pub(crate) fn box_from_raw<C: Castable<Ownership = OwnedBox>>(
    ptr: *mut C,
) -> Option<Box<C::RustType>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL, produced by `box_into_raw::<C>`, and C gives up the pointer by
    // calling `_free` exactly once (double free is documented UB).
    Some(unsafe { Box::from_raw(ptr.cast::<C::RustType>()) })
}

/// Hand a new `Arc` reference to C.
pub(crate) fn arc_into_raw<C: Castable<Ownership = OwnedArc>>(value: Arc<C::RustType>) -> *mut C {
    Arc::into_raw(value).cast_mut().cast::<C>()
}

/// A new strong reference to the value behind an `Arc` handle, without consuming C's
/// reference; `None` for NULL.
pub(crate) fn arc_clone<C: Castable<Ownership = OwnedArc>>(
    ptr: *const C,
) -> Option<Arc<C::RustType>> {
    if ptr.is_null() {
        return None;
    }
    let ptr = ptr.cast::<C::RustType>();
    // SAFETY: non-NULL and produced by `arc_into_raw::<C>`; C still holds its reference
    // (the handle is not freed), so the count is at least 1 while we add one.
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

/// Take back C's `Arc` reference (for `_free`); `None` for NULL.
pub(crate) fn arc_from_raw<C: Castable<Ownership = OwnedArc>>(
    ptr: *mut C,
) -> Option<Arc<C::RustType>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL, produced by `arc_into_raw::<C>`; C gives its reference up by
    // calling `_free` exactly once.
    Some(unsafe { Arc::from_raw(ptr.cast_const().cast::<C::RustType>()) })
}

/// Read a borrowed NUL-terminated UTF-8 argument: `NullArgument` for NULL,
/// `InvalidUtf8` for bad bytes. The result is copied, so C keeps its buffer.
pub(crate) fn str_arg(ptr: *const c_char) -> Result<String, wh_result> {
    if ptr.is_null() {
        return Err(wh_result::NullArgument);
    }
    // SAFETY: non-NULL; the C contract for every string argument is "NUL-terminated and
    // readable for the duration of the call".
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map(str::to_owned)
        .map_err(|_| wh_result::InvalidUtf8)
}

/// Read a borrowed `(pointer, length)` byte argument; NULL is allowed when `len` is 0.
pub(crate) fn bytes_arg<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], wh_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(wh_result::NullArgument);
    }
    // SAFETY: non-NULL and the C contract says `len` bytes are readable for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Write an out-param (only ever called on success, after every check passed).
pub(crate) fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: every caller checked `out` for NULL first; C promises it points to writable
    // storage for a `T`.
    unsafe { out.write(value) }
}

/// Copy a struct C lent us for the call; `None` for NULL.
pub(crate) fn read_copy<T: Copy>(ptr: *const T) -> Option<T> {
    // SAFETY: a non-NULL struct argument points to a readable, initialised `T` for the
    // duration of the call (C contract); we copy it out.
    unsafe { ptr.as_ref() }.copied()
}

/// Copy `bytes` into a caller buffer (only on success, after the checks).
pub(crate) fn write_bytes(out: *mut u8, bytes: &[u8]) {
    // SAFETY: every caller checked `out` for NULL and C promises `bytes.len()` writable
    // bytes; the source is a distinct Rust allocation.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) }
}

/// The number of entries before the NULL terminator of a library-made pointer array.
pub(crate) fn null_terminated_len<T>(array: *const *mut T) -> usize {
    let mut n = 0usize;
    // SAFETY: the array was made by the library with a NULL terminator, so every index up
    // to and including it is readable.
    while !unsafe { *array.add(n) }.is_null() {
        n += 1;
    }
    n
}
