//! File transfer on a `wh_wormhole`: `wh_send_file`, `wh_receive_file` with
//! `wh_accept_offer` / `wh_reject_offer`, and `wh_cancel_transfer`, over core's
//! `transfer` module (the protocol of `wormhole send FILE|DIR` / `wormhole receive`).
//!
//! Core's transfer machine runs the protocol and reports on the wormhole's one event
//! stream (offer, progress, completion), which reaches both the delegate and the pull API
//! like every other event; core completes a transfer before `closed`. These functions only
//! convert arguments and results.

use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wormhole_core::transfer::TransferOptions;
use wormhole_core::transit::TransitConfig;

use super::cast::{read_copy, str_arg};
use super::result::wh_result;
use super::wormhole::{core_err, wh_wormhole, with_handle};

/// Options for `wh_send_file` and `wh_receive_file`. Zero every field first (`{0}`): 0 and
/// NULL mean the default. Pass NULL for all defaults. Copied by the call; `transit_relay`
/// is borrowed for the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wh_transfer_options {
    /// A transit relay of ours, "tcp:HOST:PORT" (the CLI's `--transit-helper`), or NULL:
    /// only direct connections and the relays the peer names.
    pub transit_relay: *const c_char,
    /// Do not listen for direct connections (the CLI's `--no-listen`): connect out, or
    /// through a relay.
    pub no_listen: bool,
    /// At most one `TRANSFER_PROGRESS` event per this many milliseconds, plus the final
    /// one (0: 100 ms).
    pub progress_interval_ms: u32,
}

/// Core's options from C's.
fn transfer_options(options: *const wh_transfer_options) -> Result<TransferOptions, wh_result> {
    let mut opts = TransferOptions::default();
    if let Some(o) = read_copy(options) {
        let relay = if o.transit_relay.is_null() {
            None
        } else {
            Some(str_arg(o.transit_relay)?)
        };
        opts.transit =
            TransitConfig::with_relay(relay.as_deref(), !o.no_listen).map_err(core_err)?;
        if o.progress_interval_ms > 0 {
            opts.progress_interval = Duration::from_millis(o.progress_interval_ms.into());
        }
    }
    Ok(opts)
}

/// Send the file or directory at `path` the way `wormhole send PATH` does (use the app id
/// `WH_TRANSFER_APPID` to talk to the `wormhole` CLI): wait for the peer, offer it, connect
/// Transit (direct or through a relay) and stream it; a directory is zipped while it
/// streams. Completes exactly once with the `file_sent` event: OK once the receiver
/// acknowledged every byte with a matching SHA-256; otherwise the error
/// (`WH_RESULT_TRANSFER` when the receiver rejects the offer or the connection is lost,
/// `WH_RESULT_CANCELLED` after `wh_cancel_transfer`, or the close outcome). Progress
/// arrives as `transfer_progress` events. While it is pending the peer's messages are
/// consumed by it. Set the code as usual; close the wormhole after the completion.
///
/// `path` (NUL-terminated UTF-8) and `options` (NULL for defaults) are borrowed for the
/// call (copied). The file is read from a library thread while the transfer runs.
///
/// Errors (no event follows): `WH_RESULT_NULL_ARGUMENT` (wormhole or path),
/// `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_ARGUMENT` (the path does not exist, or a
/// bad `transit_relay`), `WH_RESULT_IN_PROGRESS` (a text or file transfer is pending), the
/// close outcome if closed. Non-blocking; thread-safe; may be called from callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn wh_send_file(
    wormhole: *const wh_wormhole,
    path: *const c_char,
    options: *const wh_transfer_options,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let path = PathBuf::from(str_arg(path)?);
            let opts = transfer_options(options)?;
            h.wormhole()?.start_send_file(&path, opts).map_err(core_err)
        })
    }
}

/// Receive a file or directory the way `wormhole receive` does: wait for the sender's
/// offer (answering its Transit hints with ours) and report it as the `file_offer` event
/// (name, kind, size); then call `wh_accept_offer` or `wh_reject_offer`. The operation
/// completes exactly once with the `file_received` event (the saved path, or the error),
/// except when the sender sends text: it is acknowledged and arrives as the
/// `text_received` event, which ends the operation. Call it before the peer can send
/// (e.g. right after `wh_create`): messages that arrived earlier were delivered as
/// `message` events. `options` (NULL for defaults) is borrowed (copied); it also applies to
/// the accepted transfer.
///
/// Errors (no event follows): `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8` /
/// `WH_RESULT_INVALID_ARGUMENT` (a bad `transit_relay`), `WH_RESULT_IN_PROGRESS`, the close
/// outcome if closed. Non-blocking; thread-safe; may be called from callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn wh_receive_file(
    wormhole: *const wh_wormhole,
    options: *const wh_transfer_options,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let opts = transfer_options(options)?;
            h.wormhole()?.start_receive_file(opts).map_err(core_err)
        })
    }
}

/// Accept the pending offer (after the `file_offer` event) into `destination`: an existing
/// directory means "inside it, under the offered name"; any other path is the exact path
/// to create. Nothing existing is replaced unless `overwrite` is true (and a file never
/// replaces a directory or vice versa); free space is checked first. Data goes to a
/// hidden temporary name that is renamed into place only once complete, so no partial
/// file ever looks complete. Completes with the `file_received` event: OK with the saved
/// path as text, or the error (a destination that fails those checks is
/// `WH_RESULT_TRANSFER`, and the sender is told the transfer was rejected).
///
/// `destination` is borrowed (copied). Errors (no event follows):
/// `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_STATE` (no
/// offer is waiting), the close outcome if closed. Non-blocking; thread-safe; may be
/// called from callbacks (e.g. from `file_offer`).
#[unsafe(no_mangle)]
pub extern "C" fn wh_accept_offer(
    wormhole: *const wh_wormhole,
    destination: *const c_char,
    overwrite: bool,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let destination = PathBuf::from(str_arg(destination)?);
            let w = h.wormhole()?;
            let offer = w.pending_offer().ok_or(wh_result::InvalidState)?;
            let dest = offer.destination(Path::new("."), Some(&destination));
            w.accept_offer(&dest, overwrite).map_err(core_err)
        })
    }
}

/// Reject the pending offer (after the `file_offer` event): the sender is told "transfer
/// rejected", nothing is written, and the operation completes with the `file_received`
/// event carrying `WH_RESULT_CANCELLED`.
///
/// Errors (no event follows): `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_STATE` (no
/// offer is waiting). Non-blocking; thread-safe; may be called from callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn wh_reject_offer(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| h.wormhole()?.reject_offer().map_err(core_err))
    }
}

/// Cancel the pending file operation (`wh_send_file` or `wh_receive_file`, at any stage):
/// its Transit connection is closed (the peer sees it drop), a partial download is
/// removed, a waiting offer is rejected, and the operation completes with
/// `WH_RESULT_CANCELLED` in its `file_sent` / `file_received` event. The wormhole stays
/// open. Harmless when nothing is pending or when repeated.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`. Non-blocking; thread-safe; may be called from
/// callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn wh_cancel_transfer(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            h.wormhole()?.cancel_transfer();
            Ok(())
        })
    }
}
