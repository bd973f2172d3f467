//! Strings and string arrays handed to C (a serialized wormhole, input-helper
//! completions) and their free functions.
//!
//! An array is a `char **` with the strings followed by one NULL entry. We allocate it as
//! a boxed slice of `CString::into_raw` pointers; [`wh_string_array_free`] walks to the
//! NULL to recover the length, then releases every string and the slice.

use std::ffi::{CString, c_char};

use super::cast::null_terminated_len;

/// Build a NULL-terminated array for C. Strings with interior NULs are skipped (they
/// cannot occur in completions, which are digits, words and hyphens).
pub(crate) fn string_array_into_raw<I: IntoIterator<Item = String>>(items: I) -> *mut *mut c_char {
    let mut v: Vec<*mut c_char> = items
        .into_iter()
        .filter_map(|s| CString::new(s).ok())
        .map(CString::into_raw)
        .collect();
    v.push(std::ptr::null_mut());
    Box::into_raw(v.into_boxed_slice()).cast::<*mut c_char>()
}

/// Free a string array returned by the library (`wh_input_nameplate_completions`,
/// `wh_input_word_completions`): every string in it and the array itself. NULL does
/// nothing; freeing twice, or freeing an array not made by the library, is undefined.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn wh_string_array_free(array: *mut *mut c_char) {
    ffi_boundary! {
        if array.is_null() {
            return;
        }
        let n = null_terminated_len(array);
        // SAFETY: the slice of `n + 1` pointers was allocated as a boxed slice of exactly
        // that length by `string_array_into_raw`, and C gives it back once.
        let slice = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(array, n + 1)) };
        for &s in slice.iter().take(n) {
            // SAFETY: each non-NULL entry came from `CString::into_raw` and is freed once.
            drop(unsafe { CString::from_raw(s) });
        }
    }
}

/// Free a string returned by the library (`wh_serialize`). NULL does nothing; freeing
/// twice, or a string not made by the library, is undefined. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn wh_string_free(string: *mut c_char) {
    ffi_boundary! {
        free_string(string);
    }
}

/// Frees a string of `CString::into_raw`; NULL does nothing.
fn free_string(string: *mut c_char) {
    if !string.is_null() {
        // SAFETY: the string came from `CString::into_raw` and C gives it back once.
        drop(unsafe { CString::from_raw(string) });
    }
}

/// The number of strings in a library string array (not counting the NULL terminator);
/// 0 for NULL. Read-only; thread-safe while nobody frees the array.
#[unsafe(no_mangle)]
pub extern "C" fn wh_string_array_len(array: *const *mut c_char) -> usize {
    ffi_boundary! {
        if array.is_null() {
            return 0;
        }
        null_terminated_len(array)
    }
}
