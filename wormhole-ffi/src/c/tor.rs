//! Tor for C: `wh_tor_find` finds (or launches) a tor and gives a `wh_tor` handle;
//! `wh_options.tor` puts a wormhole in Tor mode (every connection through that tor, with
//! the reference's Tor rules; see `wormhole_core::tor`).

use std::ffi::{CString, c_char, c_int};
use std::sync::Arc;

use wormhole_core::tor::{Tor, TorOptions};

use super::cast::{
    Castable, OwnedArc, arc_clone, arc_from_raw, arc_into_raw, read_copy, str_arg, write_out,
};
use super::result::wh_result;

/// A tor found or launched by `wh_tor_find`. Opaque; release it with `wh_tor_free`. A
/// launched tor stops once this handle and every wormhole created with it are gone.
pub struct wh_tor {
    _private: [u8; 0],
}

/// What a `wh_tor` handle holds.
pub(crate) struct TorHandle {
    pub(crate) tor: Arc<Tor>,
    socks: CString,
}

impl Castable for wh_tor {
    type Ownership = OwnedArc;
    type RustType = TorHandle;
}

/// Options for `wh_tor_find`. Zero it first (or use designated initializers): a NULL or 0
/// field takes its default.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wh_tor_options {
    /// The control port, "tcp:HOST:PORT" or "unix:PATH", NUL-terminated UTF-8, read during
    /// the call. NULL: the usual places ("unix:/var/run/tor/control", 127.0.0.1:9051,
    /// 9151), else SOCKS only on 127.0.0.1:9050 or 9150.
    pub control_port: *const c_char,
    /// Nonzero: launch a private tor instead (it cannot be combined with `control_port`).
    pub launch: c_int,
    /// The control port's password, if it wants one; NULL for none.
    pub password: *const c_char,
    /// Nonzero: publish an onion service for each transfer (needs a control port), so
    /// that two Tor-mode peers connect without a relay.
    pub onion: c_int,
}

impl Default for wh_tor_options {
    fn default() -> Self {
        wh_tor_options {
            control_port: std::ptr::null(),
            launch: 0,
            password: std::ptr::null(),
            onion: 0,
        }
    }
}

fn opt_str(p: *const c_char) -> Result<Option<String>, wh_result> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p).map(Some)
    }
}

/// Find (or launch) a tor. Blocking: it talks to the control port, and a launch waits for
/// tor to bootstrap (up to 120 s); call it from a thread that may block.
///
/// - `options`: NULL for the defaults. Borrowed (copied).
/// - `tor_out`: receives the handle on success; the caller releases it with `wh_tor_free`.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT` (`tor_out` NULL), `WH_RESULT_INVALID_UTF8`,
/// `WH_RESULT_INVALID_ARGUMENT` (no usable tor: nothing listening, authentication refused,
/// a malformed control port, `launch` with `control_port`, a launch that failed).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_tor_find(
    options: *const wh_tor_options,
    tor_out: *mut *mut wh_tor,
) -> wh_result {
    ffi_boundary! {
        if tor_out.is_null() {
            return wh_result::NullArgument;
        }
        match find(options) {
            Ok(handle) => {
                write_out(tor_out, arc_into_raw::<wh_tor>(Arc::new(handle)));
                wh_result::Ok
            }
            Err(r) => r,
        }
    }
}

fn find(options: *const wh_tor_options) -> Result<TorHandle, wh_result> {
    let o = read_copy(options).unwrap_or_default();
    let opts = TorOptions {
        control: opt_str(o.control_port)?,
        password: opt_str(o.password)?,
        launch: o.launch != 0,
        onion: o.onion != 0,
        ..TorOptions::default()
    };
    if opts.launch && opts.control.is_some() {
        return Err(wh_result::InvalidArgument);
    }
    let tor = Tor::connect(&opts).map_err(|e| wh_result::from(&e))?;
    let socks = CString::new(tor.socks().server.clone()).map_err(|_| wh_result::InvalidArgument)?;
    Ok(TorHandle {
        tor: Arc::new(tor),
        socks,
    })
}

/// The tor's SOCKS address, "HOST:PORT", owned by the handle (valid until `wh_tor_free`);
/// NULL for a NULL or freed handle. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_tor_socks_address(tor: *const wh_tor) -> *const c_char {
    ffi_boundary! {
        match arc_clone::<wh_tor>(tor) {
            // The registry keeps its own reference until wh_tor_free, so the string
            // outlives this clone.
            Ok(h) => h.socks.as_ptr(),
            Err(_) => std::ptr::null(),
        }
    }
}

/// Release a `wh_tor` handle. Wormholes created with it keep using the tor. NULL does
/// nothing, and so does freeing twice.
#[unsafe(no_mangle)]
pub extern "C" fn wh_tor_free(tor: *mut wh_tor) {
    ffi_boundary! {
        drop(arc_from_raw::<wh_tor>(tor));
    }
}

/// The core's tor of a `wh_options.tor` handle (NULL: none).
pub(crate) fn tor_of(p: *const wh_tor) -> Result<Option<Arc<Tor>>, wh_result> {
    if p.is_null() {
        return Ok(None);
    }
    arc_clone::<wh_tor>(p).map(|h| Some(h.tor.clone()))
}
