//! File transfer on a `wh_wormhole`: `wh_send_file`, `wh_receive_file` with
//! `wh_accept_offer` / `wh_reject_offer`, and `wh_cancel_transfer`, over core's
//! `transfer` module (the protocol of `wormhole send FILE|DIR` / `wormhole receive`).
//!
//! A file operation is one core future spawned on the handle's engine. While it is
//! pending ([`QueueState::file_op`]) the peer's messages belong to it: the pump stops
//! reading them and core's transfer reads them itself. Its events (offer, progress,
//! completion) go through the handle's queue like every other event, so they reach both
//! the delegate and the pull API, and the completion always comes before `closed`.

use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wormhole_core::Error;
use wormhole_core::transfer::{self, OfferKind, Received, TransferOptions};
use wormhole_core::transit::DirectHint;

use super::cast::{read_copy, str_arg};
use super::event::{EventData, FileOp, FileStage, Queue, QueueState, wh_event_kind, wh_offer_kind};
use super::result::wh_result;
use super::wormhole::{Handle, closed_err, core_err, wh_wormhole, with_handle};

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

const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Core's options from C's, with progress reports throttled into the queue.
fn transfer_options(
    h: &Handle,
    options: *const wh_transfer_options,
) -> Result<TransferOptions, wh_result> {
    let mut opts = TransferOptions::default();
    let mut interval = DEFAULT_PROGRESS_INTERVAL;
    if let Some(o) = read_copy(options) {
        if o.no_listen {
            opts.transit.listen.clear();
        }
        if !o.transit_relay.is_null() {
            let relay = str_arg(o.transit_relay)?;
            opts.transit.relays = vec![DirectHint::parse_helper(&relay).map_err(core_err)?];
        }
        if o.progress_interval_ms > 0 {
            interval = Duration::from_millis(o.progress_interval_ms.into());
        }
    }
    // Weak: the options live in the queue's own state.
    let queue: Weak<Queue> = Arc::downgrade(&h.queue);
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    opts.progress = Some(Arc::new(move |done: u64, total: u64| {
        let Some(queue) = queue.upgrade() else {
            return;
        };
        let now = Instant::now();
        {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if done < total && last.is_some_and(|t| now.duration_since(t) < interval) {
                return;
            }
            *last = Some(now);
        }
        let mut st = queue.lock();
        if st.file_op.is_some() {
            queue.push(&mut st, EventData::progress(done, total));
        }
    }));
    Ok(opts)
}

/// The completion event of a file operation.
fn completion(kind: wh_event_kind, outcome: Result<String, Error>) -> EventData {
    match outcome {
        Ok(text) => EventData::text(kind, wh_result::Ok, &text),
        Err(e) => EventData::text(kind, (&e).into(), &e.to_string()),
    }
}

/// End the pending file operation with `outcome` (the queue is locked): its completion
/// event (`FILE_SENT` or `FILE_RECEIVED`).
pub(crate) fn complete_locked(queue: &Queue, st: &mut QueueState, outcome: Result<String, Error>) {
    let kind = match st.file_op.take() {
        Some(FileOp {
            stage: FileStage::Sending,
            ..
        }) => wh_event_kind::FileSent,
        _ => wh_event_kind::FileReceived,
    };
    queue.push(st, completion(kind, outcome));
}

/// A file task ended: queue its completion and let the pump read messages again.
fn finish(queue: &Queue, wake: &Notify, kind: wh_event_kind, outcome: Result<String, Error>) {
    {
        let mut st = queue.lock();
        st.file_op = None;
        queue.push(&mut st, completion(kind, outcome));
    }
    wake.notify_one();
}

/// Start a file operation: fail when the wormhole closed or another transfer is pending,
/// else record it, pause the pump's message reading and spawn `task` on the engine.
fn start<F>(
    h: &Handle,
    stage: FileStage,
    opts: TransferOptions,
    task: impl FnOnce(wormhole_core::Wormhole, Arc<Queue>, Arc<Notify>) -> F,
) -> Result<(), wh_result>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (w, rt) = h.core(|c| (c.wormhole.clone(), c.engine.handle()))?;
    {
        let mut st = h.queue.lock();
        if st.closed_queued || w.closed_result().is_some() {
            return Err(closed_err(&w));
        }
        if st.text_op.is_some() || st.file_op.is_some() {
            return Err(wh_result::InProgress);
        }
        st.file_op = Some(FileOp { stage, opts });
    }
    h.pump_wake.notify_one();
    rt.spawn(task(w, h.queue.clone(), h.pump_wake.clone()));
    Ok(())
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
            let opts = transfer_options(h, options)?;
            std::fs::metadata(&path).map_err(|_| wh_result::InvalidArgument)?;
            let topts = opts.clone();
            start(h, FileStage::Sending, opts, move |w, queue, wake| async move {
                let r = transfer::send_path(&w, &path, &topts).await;
                finish(&queue, &wake, wh_event_kind::FileSent, r.map(|()| String::new()));
            })
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
            let opts = transfer_options(h, options)?;
            let topts = opts.clone();
            start(h, FileStage::Waiting, opts, move |w, queue, wake| async move {
                match transfer::receive(&w, &topts).await {
                    Ok(Received::Text(text)) => {
                        {
                            let mut st = queue.lock();
                            st.file_op = None;
                            let ev = EventData::text(wh_event_kind::TextReceived, wh_result::Ok, &text);
                            queue.push(&mut st, ev);
                        }
                        wake.notify_one();
                    }
                    Ok(Received::Offer(offer)) => {
                        let mut st = queue.lock();
                        match &mut st.file_op {
                            Some(op @ FileOp { stage: FileStage::Waiting, .. }) => {
                                let kind = match offer.kind() {
                                    OfferKind::File => wh_offer_kind::File,
                                    _ => wh_offer_kind::Directory,
                                };
                                let ev = EventData::offer(offer.name(), kind, offer.transfer_size());
                                op.stage = FileStage::Offered(Box::new(offer));
                                queue.push(&mut st, ev);
                            }
                            // Ended meanwhile (the wormhole was freed): refuse.
                            _ => {
                                let _ = offer.reject();
                            }
                        }
                    }
                    Err(e) => finish(&queue, &wake, wh_event_kind::FileReceived, Err(e)),
                }
            })
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
            let (w, rt) = h.core(|c| (c.wormhole.clone(), c.engine.handle()))?;
            let (offer, opts) = {
                let mut st = h.queue.lock();
                if st.closed_queued {
                    return Err(closed_err(&w));
                }
                let Some(op) = st.file_op.as_mut() else {
                    return Err(wh_result::InvalidState);
                };
                if !matches!(op.stage, FileStage::Offered(_)) {
                    return Err(wh_result::InvalidState);
                }
                let FileStage::Offered(offer) = std::mem::replace(&mut op.stage, FileStage::Accepting)
                else {
                    return Err(wh_result::Internal);
                };
                (offer, op.opts.clone())
            };
            let (queue, wake) = (h.queue.clone(), h.pump_wake.clone());
            rt.spawn(async move {
                let dest = offer.destination(Path::new("."), Some(&destination));
                let r = offer.accept(&dest, overwrite, &opts).await;
                let r = r.map(|p| p.display().to_string());
                finish(&queue, &wake, wh_event_kind::FileReceived, r);
            });
            Ok(())
        })
    }
}

/// End a pending offer: refuse it (the sender gets "transfer rejected") and complete the
/// `file_received` event with `result` and `message`.
fn refuse(h: &Handle, result: wh_result, message: &str) -> Result<bool, wh_result> {
    let refused = {
        let mut st = h.queue.lock();
        let offered = matches!(
            st.file_op,
            Some(FileOp {
                stage: FileStage::Offered(_),
                ..
            })
        );
        if !offered {
            return Ok(false);
        }
        if let Some(FileOp {
            stage: FileStage::Offered(offer),
            ..
        }) = st.file_op.take()
        {
            let _ = offer.reject();
        }
        let ev = EventData::text(wh_event_kind::FileReceived, result, message);
        h.queue.push(&mut st, ev);
        true
    };
    h.pump_wake.notify_one();
    Ok(refused)
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
        with_handle(wormhole, |h| {
            if refuse(h, wh_result::Cancelled, "offer rejected")? {
                Ok(())
            } else {
                Err(wh_result::InvalidState)
            }
        })
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
            if refuse(h, wh_result::Cancelled, &Error::Cancelled.to_string())? {
                return Ok(());
            }
            let st = h.queue.lock();
            if let Some(op) = &st.file_op {
                op.opts.cancel.cancel();
            }
            Ok(())
        })
    }
}
