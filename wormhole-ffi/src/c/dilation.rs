//! Dilation in C: `wh_dilate`, listening and connecting, and the `wh_subchannel` handle.
//!
//! Everything here is core's poll mode ([`Subchannel::try_send`], `try_read`, `try_recv`,
//! [`SubchannelListener::try_accept`]): a call that cannot go on returns
//! `WH_RESULT_WOULD_BLOCK` at once, and core's wake-up arrives as an event
//! (`WH_EVENT_KIND_SUBCHANNEL_READABLE` / `_WRITABLE` / `_ACCEPTABLE`) through the
//! callbacks or the pull API, like every other event. This file converts types, errors
//! and lifetimes only.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wormhole_core::dilation::handle::{DilationOptions, Subchannel, TryRecv};

use super::cast::{
    Castable, OwnedBox, box_from_raw, box_into_raw, box_ref, buffer_arg, bytes_arg, bytes_from_raw,
    bytes_into_raw, read_copy, str_arg, write_out,
};
use super::result::wh_result;
use super::wormhole::{Dilation, core_err, wh_wormhole, with_handle};

/// Options for `wh_dilate`. A field left 0 (or NULL) takes its default; pass NULL for all
/// defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wh_dilation_options {
    /// A transit relay, "tcp:HOST:PORT" (NUL-terminated, read during the call). NULL
    /// (default): none, direct connections only.
    pub relay: *const c_char,
    /// Do not listen for direct connections and send no direct hints (the relay is still
    /// used). Default false.
    pub no_listen: bool,
    /// The Leader's keepalive interval in ms (default 30000): a connection that does
    /// not answer by the next one is dropped and a new one made.
    pub ping_interval_ms: u32,
}

impl Default for wh_dilation_options {
    fn default() -> Self {
        wh_dilation_options {
            relay: std::ptr::null(),
            no_listen: false,
            ping_interval_ms: 0,
        }
    }
}

/// One subchannel: an ordered, reliable stream of records to and from the peer.
/// Opaque: from `wh_dilation_accept` or `wh_dilation_connect`, released by
/// `wh_subchannel_free`.
pub struct wh_subchannel {
    _private: [u8; 0],
}

/// What a `wh_subchannel *` points to.
pub struct SubchannelHandle {
    id: u32,
    sub: Mutex<Subchannel>,
}

impl Castable for wh_subchannel {
    type Ownership = OwnedBox;
    type RustType = SubchannelHandle;
}

fn hand_out(sub: Subchannel, out: *mut *mut wh_subchannel) {
    let h = SubchannelHandle {
        id: sub.id(),
        sub: Mutex::new(sub),
    };
    write_out(out, box_into_raw::<wh_subchannel>(h));
}

fn with_sub(
    sub: *const wh_subchannel,
    f: impl FnOnce(&mut Subchannel) -> Result<(), wh_result>,
) -> wh_result {
    let Some(h) = box_ref::<wh_subchannel>(sub) else {
        return wh_result::NullArgument;
    };
    let mut s = h.sub.lock().unwrap_or_else(|p| p.into_inner());
    match f(&mut s) {
        Ok(()) => wh_result::Ok,
        Err(r) => r,
    }
}

/// Dilate the wormhole (the seed's `w.dilate()`): make a durable, encrypted connection to
/// the peer, direct or through `options.relay`, that carries any number of subchannels.
/// The wormhole must have been created with `wh_options.dilation`, and the peer must
/// dilate too. Returns at once; progress comes as `WH_EVENT_KIND_DILATION_*` events
/// (`DILATION_CONNECTED` once the connection is up). Subchannels may be listened for and
/// opened right away.
///
/// Errors: `WH_RESULT_INVALID_STATE` (no `wh_options.dilation`, or called twice),
/// `WH_RESULT_INVALID_ARGUMENT` (a malformed relay), `WH_RESULT_INVALID_UTF8`, or the
/// close outcome if the wormhole closed. Non-blocking; thread-safe; may be called from
/// callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn wh_dilate(
    wormhole: *const wh_wormhole,
    options: *const wh_dilation_options,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let o = read_copy(options).unwrap_or_default();
            let mut opts = DilationOptions::default();
            if !o.relay.is_null() {
                opts.relay = Some(str_arg(o.relay)?);
            }
            opts.no_listen = o.no_listen;
            if o.ping_interval_ms > 0 {
                opts.ping_interval = Duration::from_millis(o.ping_interval_ms.into());
            }
            h.core(|c| {
                if c.dilation.is_some() {
                    return Err(wh_result::InvalidState);
                }
                let dilated = c.wormhole.dilate(opts).map_err(core_err)?;
                c.dilation = Some(Dilation {
                    dilated: Arc::new(dilated),
                    listeners: HashMap::new(),
                });
                Ok(())
            })?
        })
    }
}

/// Accept the peer's subchannels for subprotocol `name` (NUL-terminated UTF-8, copied);
/// take them with `wh_dilation_accept`. Subchannels the peer opened before were held and
/// are waiting now. A name can be listened for once.
///
/// Errors: `WH_RESULT_INVALID_STATE` (before `wh_dilate`, or `name` already listened
/// for), `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_dilation_listen(
    wormhole: *const wh_wormhole,
    name: *const c_char,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let name = str_arg(name)?;
            h.core(|c| {
                let d = c.dilation.as_mut().ok_or(wh_result::InvalidState)?;
                let l = d.dilated.listen(&name).map_err(core_err)?;
                d.listeners.insert(name, l);
                Ok(())
            })?
        })
    }
}

/// Take the next subchannel the peer opened for `name` (listened for with
/// `wh_dilation_listen`) into `*subchannel_out` (owned by the caller: release it with
/// `wh_subchannel_free`).
///
/// `WH_RESULT_WOULD_BLOCK`: none is waiting; a `WH_EVENT_KIND_SUBCHANNEL_ACCEPTABLE`
/// event with `name` as its text follows when one arrives. Other errors:
/// `WH_RESULT_INVALID_STATE` (not listening for `name`, or Dilation ended),
/// `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_dilation_accept(
    wormhole: *const wh_wormhole,
    name: *const c_char,
    subchannel_out: *mut *mut wh_subchannel,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let name = str_arg(name)?;
            if subchannel_out.is_null() {
                return Err(wh_result::NullArgument);
            }
            let sub = h.core(|c| {
                let d = c.dilation.as_mut().ok_or(wh_result::InvalidState)?;
                let l = d.listeners.get_mut(&name).ok_or(wh_result::InvalidState)?;
                l.try_accept().map_err(core_err)
            })??;
            match sub {
                Some(s) => {
                    hand_out(s, subchannel_out);
                    Ok(())
                }
                None => Err(wh_result::WouldBlock),
            }
        })
    }
}

/// Open a subchannel to the peer's subprotocol `name` (NUL-terminated UTF-8, copied) into
/// `*subchannel_out` (owned by the caller: release it with `wh_subchannel_free`). The
/// peer never answers an open, so writing may start at once; what is written is delivered
/// once the peer listens for `name`.
///
/// Blocking until the roles are known (both sides dilated: the
/// `WH_EVENT_KIND_DILATION_GENERATION` event); from then on it returns at once.
/// Errors: `WH_RESULT_INVALID_STATE` (before `wh_dilate`, or Dilation ended),
/// `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`. Thread-safe; may be called from
/// callbacks (after `DILATION_GENERATION`, so it does not wait).
#[unsafe(no_mangle)]
pub extern "C" fn wh_dilation_connect(
    wormhole: *const wh_wormhole,
    name: *const c_char,
    subchannel_out: *mut *mut wh_subchannel,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let name = str_arg(name)?;
            if subchannel_out.is_null() {
                return Err(wh_result::NullArgument);
            }
            let (dilated, engine) = h.core(|c| {
                let d = c.dilation.as_ref().ok_or(wh_result::InvalidState)?;
                Ok::<_, wh_result>((d.dilated.clone(), c.engine.clone()))
            })??;
            let sub = engine
                .block_on(async move { dilated.connect(&name).await })
                .map_err(core_err)?
                .map_err(core_err)?;
            hand_out(sub, subchannel_out);
            Ok(())
        })
    }
}

/// The subchannel's id (odd: opened by the Leader, even: by the Follower), as
/// `wh_event_subchannel_id` reports it; 0 for NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_subchannel_id(subchannel: *const wh_subchannel) -> u32 {
    ffi_boundary! {
        box_ref::<wh_subchannel>(subchannel).map_or(0, |h| h.id)
    }
}

/// Write `len` bytes as one record (delivered whole, in order, exactly once: one write is
/// one `wh_subchannel_recv` on the other side; `len` 0 sends an empty record). `data` is
/// copied.
///
/// `WH_RESULT_WOULD_BLOCK`: the write window (16 MiB unacknowledged by the peer, all
/// subchannels together) has no room; nothing was written, and a
/// `WH_EVENT_KIND_SUBCHANNEL_WRITABLE` event for this subchannel follows when it has.
/// Other errors: `WH_RESULT_INVALID_STATE` (closed by `wh_subchannel_close` or by the
/// peer, or Dilation ended), `WH_RESULT_NULL_ARGUMENT`. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_subchannel_write(
    subchannel: *const wh_subchannel,
    data: *const u8,
    len: usize,
) -> wh_result {
    ffi_boundary! {
        with_sub(subchannel, |s| {
            let data = bytes_arg(data, len)?;
            match s.try_send(data).map_err(core_err)? {
                true => Ok(()),
                false => Err(wh_result::WouldBlock),
            }
        })
    }
}

/// Read what has arrived, as a byte stream (record boundaries are not kept), into `buf`
/// (`cap` bytes); `*len_out` gets the count. `*len_out` 0 with `WH_RESULT_OK`: the peer
/// closed the subchannel, nothing more will come.
///
/// `WH_RESULT_WOULD_BLOCK`: nothing yet; a `WH_EVENT_KIND_SUBCHANNEL_READABLE` event for
/// this subchannel follows when something arrives. Other errors:
/// `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_ARGUMENT` (`cap` 0),
/// `WH_RESULT_TRANSFER` or `WH_RESULT_INVALID_STATE` (Dilation failed or the wormhole
/// closed). Non-blocking; thread-safe. Do not mix with `wh_subchannel_recv` mid-record.
#[unsafe(no_mangle)]
pub extern "C" fn wh_subchannel_read(
    subchannel: *const wh_subchannel,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> wh_result {
    ffi_boundary! {
        with_sub(subchannel, |s| {
            if buf.is_null() || len_out.is_null() {
                return Err(wh_result::NullArgument);
            }
            if cap == 0 {
                return Err(wh_result::InvalidArgument);
            }
            let out = buffer_arg(buf, cap);
            match s.try_read(out).map_err(core_err)? {
                Some(n) => {
                    write_out(len_out, n);
                    Ok(())
                }
                None => Err(wh_result::WouldBlock),
            }
        })
    }
}

/// Take the next record whole: `*data_out` gets a library-allocated buffer of `*len_out`
/// bytes (release it with `wh_bytes_free(data, len)`; an empty record is a non-NULL
/// buffer of length 0). `*data_out` NULL with `WH_RESULT_OK`: the peer closed the
/// subchannel, nothing more will come.
///
/// `WH_RESULT_WOULD_BLOCK` and the other errors: as for `wh_subchannel_read`.
/// Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_subchannel_recv(
    subchannel: *const wh_subchannel,
    data_out: *mut *mut u8,
    len_out: *mut usize,
) -> wh_result {
    ffi_boundary! {
        with_sub(subchannel, |s| {
            if data_out.is_null() || len_out.is_null() {
                return Err(wh_result::NullArgument);
            }
            match s.try_recv().map_err(core_err)? {
                TryRecv::Record(r) => {
                    let len = r.len();
                    write_out(data_out, bytes_into_raw(r));
                    write_out(len_out, len);
                    Ok(())
                }
                TryRecv::Closed => {
                    write_out(data_out, std::ptr::null_mut());
                    write_out(len_out, 0);
                    Ok(())
                }
                TryRecv::Empty => Err(wh_result::WouldBlock),
            }
        })
    }
}

/// Release a record from `wh_subchannel_recv` (`len` as it was returned). NULL does
/// nothing; freeing twice is undefined. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn wh_bytes_free(data: *mut u8, len: usize) {
    ffi_boundary! {
        drop(bytes_from_raw(data, len));
    }
}

/// Close the subchannel (the peer reads the end; it answers with its own close, so this
/// ends both directions: no half-close, like the reference). What was written is still
/// delivered; what the peer sent before it saw the close can be read until its close.
/// Closing twice does nothing.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_STATE` (Dilation ended).
/// Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_subchannel_close(subchannel: *const wh_subchannel) -> wh_result {
    ffi_boundary! {
        with_sub(subchannel, |s| s.close().map_err(core_err))
    }
}

/// Release a subchannel handle (closing it first if it is open). NULL does nothing;
/// freeing twice, or using it afterwards, is undefined. Any thread; a subchannel may
/// outlive its wormhole (its calls then fail).
#[unsafe(no_mangle)]
pub extern "C" fn wh_subchannel_free(subchannel: *mut wh_subchannel) {
    ffi_boundary! {
        drop(box_from_raw::<wh_subchannel>(subchannel));
    }
}
