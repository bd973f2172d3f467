//! The one place where C handles become Rust values and back (after rustls-ffi's
//! `Castable`). Each opaque C type names the Rust type behind it and whether a `Box` or
//! an `Arc` owns it; no other module casts handle pointers.
//!
//! `Arc` handles (wormholes) are tokens in a registry, checked on every call: a freed or
//! unknown one is refused with `WH_RESULT_INVALID_HANDLE`. For `Box` handles (events),
//! the invariant is that a non-NULL pointer given to us by C was produced by
//! [`box_into_raw`] and not yet freed (freeing twice, or using an event after
//! `wh_event_free`, is documented as undefined behaviour).

use std::any::Any;
use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::sync::{Arc, LazyLock, Mutex};

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

/// Lend a value to C as a `Box` handle's pointer for the duration of a call (a callback's
/// argument): C reads it with the same accessors and must not free it.
pub(crate) fn borrow_as<C: Castable<Ownership = OwnedBox>>(value: &C::RustType) -> *const C {
    (value as *const C::RustType).cast::<C>()
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

/// The live `Arc` handles, by token. C never gets a pointer to an `Arc` handle's value,
/// only a token: a number that is never reused and never dereferenced. A handle that was
/// freed (or never made here) is therefore refused with `WH_RESULT_INVALID_HANDLE`
/// instead of being undefined behaviour, freeing twice does nothing, and a call running
/// on another thread while the handle is freed keeps its own reference to the value.
struct Registry {
    next: usize,
    live: HashMap<usize, Arc<dyn Any + Send + Sync>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        // Non-NULL, aligned, and far from small integers a caller might pass by mistake.
        next: 0x5748_0000,
        live: HashMap::new(),
    })
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock cannot leave the map half-updated.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hand a new `Arc` handle to C, as a fresh token.
pub(crate) fn arc_into_raw<C>(value: Arc<C::RustType>) -> *mut C
where
    C: Castable<Ownership = OwnedArc>,
    C::RustType: Send + Sync + 'static,
{
    let mut r = registry();
    let token = r.next;
    r.next += 16;
    r.live.insert(token, value);
    std::ptr::without_provenance_mut(token)
}

/// A new strong reference to the value behind a live `Arc` handle, without consuming C's
/// reference: `NullArgument` for NULL, `InvalidHandle` for a freed or unknown handle.
pub(crate) fn arc_clone<C>(ptr: *const C) -> Result<Arc<C::RustType>, wh_result>
where
    C: Castable<Ownership = OwnedArc>,
    C::RustType: Send + Sync + 'static,
{
    if ptr.is_null() {
        return Err(wh_result::NullArgument);
    }
    let any = registry()
        .live
        .get(&ptr.addr())
        .cloned()
        .ok_or(wh_result::InvalidHandle)?;
    any.downcast::<C::RustType>()
        .map_err(|_| wh_result::InvalidHandle)
}

/// Take back C's `Arc` handle (for `_free`); `None` for NULL, or for a handle that is
/// not live (freed already, or never made here).
pub(crate) fn arc_from_raw<C>(ptr: *mut C) -> Option<Arc<C::RustType>>
where
    C: Castable<Ownership = OwnedArc>,
    C::RustType: Send + Sync + 'static,
{
    if ptr.is_null() {
        return None;
    }
    let mut r = registry();
    let any = r.live.remove(&ptr.addr())?;
    match any.downcast::<C::RustType>() {
        Ok(v) => Some(v),
        Err(other) => {
            // A handle of another type: not ours to free.
            r.live.insert(ptr.addr(), other);
            None
        }
    }
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

/// Borrow a caller buffer of `len` writable bytes for the call (`ptr` checked non-NULL
/// and `len` non-zero by the caller).
pub(crate) fn buffer_arg<'a>(ptr: *mut u8, len: usize) -> &'a mut [u8] {
    // SAFETY: non-NULL (checked by every caller), and the C contract says `len` bytes are
    // writable for the duration of the call and not read by C meanwhile.
    unsafe { std::slice::from_raw_parts_mut(ptr, len) }
}

/// Hand a byte buffer to C (released by [`bytes_from_raw`] with the same length). Never
/// NULL, even for zero bytes.
pub(crate) fn bytes_into_raw(bytes: Vec<u8>) -> *mut u8 {
    Box::into_raw(bytes.into_boxed_slice()).cast::<u8>()
}

/// Take back a buffer from [`bytes_into_raw`]; `None` for NULL.
pub(crate) fn bytes_from_raw(ptr: *mut u8, len: usize) -> Option<Box<[u8]>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` and `len` came from `bytes_into_raw` (C contract: as returned), and C
    // hands the buffer back once (freeing twice is documented UB).
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) })
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
