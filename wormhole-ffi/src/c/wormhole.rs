//! `wh_wormhole`: one wormhole (the seed's `wormhole.create()` object) and every call on it.
//!
//! A handle owns its own [`Engine`] (one worker thread, STYLE §4), the core delegated-mode
//! [`Wormhole`], a forwarder task that converts each event of core's one event stream into
//! a C event on the handle's [`Queue`], and in delegate mode one dispatcher thread that
//! runs the C callbacks in order. Every event, state and timer is core's; this file only
//! converts types, errors and lifetimes.
//!
//! Teardown (`wh_free`): mark the queue freed (the dispatcher stops delivering), cancel the
//! wormhole, join the dispatcher (or, when called from a callback, let the dispatcher
//! finish the teardown after the callback returns), wait — bounded by the close timeout —
//! until every task on the handle's engine has ended, then drop the engine, which joins
//! its worker thread. So after `wh_free` returns no library thread of that handle is left
//! running, and valgrind sees every allocation released.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wormhole_core::{
    DEFAULT_CODE_LENGTH, Engine, Error, Events, InputHelper, OutboundHold, Taken, Wormhole,
};

use super::cast::{
    Castable, OwnedArc, arc_clone, arc_from_raw, arc_into_raw, borrow_as, box_into_raw, bytes_arg,
    read_copy, str_arg, write_bytes, write_out,
};
use super::event::{EventData, Queue, wh_event, wh_event_kind};
use super::result::wh_result;
use super::strings::string_array_into_raw;

/// A wormhole handle. Opaque: created by `wh_create`, released by `wh_free`.
pub struct wh_wormhole {
    _private: [u8; 0],
}

impl Castable for wh_wormhole {
    type Ownership = OwnedArc;
    type RustType = Handle;
}

/// Options for `wh_create`. A field left 0 (or NULL) takes its default; pass NULL for all
/// defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wh_options {
    /// Limit for the first connection to the mailbox server, in ms (default 30000).
    pub connect_timeout_ms: u32,
    /// How long closing waits for the server to acknowledge, in ms (default 30000).
    /// Also bounds how long `wh_free` can block.
    pub close_timeout_ms: u32,
    /// WebSocket ping interval in ms (default 30000).
    pub keepalive_interval_ms: u32,
    /// A SOCKS5 proxy for every connection, the mailbox and Transit:
    /// `[USER:PASSWORD@]HOST:PORT` (optionally after `socks5://` or `socks5h://`),
    /// NUL-terminated UTF-8, read during `wh_create` only. Names are resolved by the proxy,
    /// and Transit neither listens nor sends our addresses. NULL (default): no proxy. A
    /// malformed value makes `wh_create` fail with `WH_RESULT_INVALID_ARGUMENT`.
    pub socks5: *const c_char,
    /// Tor mode: every connection through this tor (from `wh_tor_find`), with the
    /// reference's Tor rules; it takes the place of `socks5`. Borrowed during `wh_create`
    /// (the wormhole keeps its own reference). NULL (default): no Tor. A freed handle
    /// makes `wh_create` fail with `WH_RESULT_INVALID_HANDLE`.
    pub tor: *const super::tor::wh_tor,
    /// Offer Dilation to the peer (the reference's `dilation=True`); needed for
    /// `wh_dilate`. Default false.
    pub dilation: bool,
}

impl Default for wh_options {
    fn default() -> Self {
        wh_options {
            connect_timeout_ms: 0,
            close_timeout_ms: 0,
            keepalive_interval_ms: 0,
            socks5: std::ptr::null(),
            tor: std::ptr::null(),
            dilation: false,
        }
    }
}

/// Called once with the delegate's `user_data` when the library no longer needs it.
pub type wh_user_data_free_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;
/// A callback with a NUL-terminated UTF-8 string, borrowed until the callback returns.
pub type wh_string_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, text: *const c_char)>;
/// A callback with bytes, borrowed until the callback returns (`data` is never NULL).
pub type wh_bytes_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize)>;
/// A completion: an outcome and a NUL-terminated message, borrowed until it returns.
pub type wh_result_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, result: wh_result, message: *const c_char)>;
/// A text completion: an outcome and the text (on success) or a message (on failure), as
/// NUL-terminated UTF-8 plus its length in bytes; borrowed until the callback returns.
pub type wh_text_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        result: wh_result,
        text: *const c_char,
        len: usize,
    ),
>;
/// A notification without data.
pub type wh_notify_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;
/// A file or directory offer: the offered name (NUL-terminated UTF-8, borrowed until the
/// callback returns), its kind, and the bytes that will travel.
pub type wh_offer_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        name: *const c_char,
        kind: super::event::wh_offer_kind,
        size: u64,
    ),
>;
/// An event, borrowed until the callback returns (read it with the `wh_event_*`
/// accessors; do not free it).
pub type wh_event_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const super::event::wh_event)>;
/// Transfer progress: `done` of `total` bytes.
pub type wh_progress_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, done: u64, total: u64)>;

/// Delegate mode (the seed's "delegated mode"): callbacks for `wh_create`.
///
/// The struct is copied by `wh_create`; any callback may be NULL (its events are then
/// dropped). All callbacks of one wormhole run on one library-owned dispatcher thread, in
/// event order, never concurrently and never inside a `wh_*` call. They may call any
/// `wh_*` function, including `wh_free` on their own wormhole (teardown then finishes on
/// the dispatcher thread after the callback returns). Pointers passed to a callback are
/// borrowed until it returns. A slow callback delays only later callbacks, never the
/// network.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wh_delegate {
    /// Passed as the first argument of every callback.
    pub user_data: *mut c_void,
    /// Called exactly once, after the last callback: on the dispatcher thread during or
    /// after `wh_free`, or inside `wh_create` when it fails. May be NULL.
    pub user_data_free: wh_user_data_free_cb,
    /// `wormhole_got_welcome`: the server's welcome, as a JSON object.
    pub got_welcome: wh_string_cb,
    /// `wormhole_got_code`: the code.
    pub got_code: wh_string_cb,
    /// `wormhole_got_unverified_key`: the 32-byte SPAKE2 key.
    pub got_unverified_key: wh_bytes_cb,
    /// `wormhole_got_verifier`: the 32-byte verifier.
    pub got_verifier: wh_bytes_cb,
    /// `wormhole_got_versions`: the peer's app versions, as a JSON object.
    pub got_versions: wh_string_cb,
    /// `wormhole_got_message`: one application message, in order.
    pub got_message: wh_bytes_cb,
    /// `wormhole_closed`: the outcome (`WH_RESULT_OK` when happy) and a message. Last.
    pub closed: wh_result_cb,
    /// `wh_send_text` completed.
    pub text_sent: wh_result_cb,
    /// `wh_receive_text` completed.
    pub text_received: wh_text_cb,
    /// The wordlist is available after `wh_input_choose_nameplate`.
    pub wordlist_available: wh_notify_cb,
    /// `wh_receive_file`: the peer offers a file or directory (the `FILE_OFFER` event);
    /// answer with `wh_accept_offer` / `wh_reject_offer` (also from inside the callback).
    pub file_offer: wh_offer_cb,
    /// A file transfer moved data (the `TRANSFER_PROGRESS` event).
    pub transfer_progress: wh_progress_cb,
    /// `wh_send_file` completed: the outcome and a message.
    pub file_sent: wh_result_cb,
    /// `wh_receive_file` completed: the outcome, and the saved path (OK) or a message.
    pub file_received: wh_result_cb,
    /// Dilation (`wh_dilate`): every `WH_EVENT_KIND_DILATION_*` and
    /// `WH_EVENT_KIND_SUBCHANNEL_*` event, in order with the others.
    pub dilation: wh_event_cb,
}

/// The C delegate, owned by the dispatcher thread. Its `Drop` calls `user_data_free`,
/// which makes "exactly once" structural.
struct Delegate(wh_delegate);

// SAFETY: the C contract (documented on `wh_delegate`) is that user_data and the
// callbacks may be used from the library's dispatcher thread; we only ever touch them on
// one thread at a time (the creating thread, then only the dispatcher).
unsafe impl Send for Delegate {}

impl Drop for Delegate {
    fn drop(&mut self) {
        if let Some(f) = self.0.user_data_free {
            let ud = self.0.user_data;
            // SAFETY: C gave us this function for this user_data; called once, here.
            let _ = std::panic::catch_unwind(|| unsafe { f(ud) });
        }
    }
}

impl Delegate {
    /// Run the callback for one event (inside a panic boundary).
    fn deliver(&self, ev: &EventData) {
        use wh_event_kind as K;
        let d = &self.0;
        let ud = d.user_data;
        let data = ev.data();
        let text = ev.c_text();
        let call = || {
            // SAFETY: the function pointers and user_data come from C's delegate; the
            // pointers we pass are valid until the callback returns (the event outlives
            // the call), text pointers are NUL-terminated and data has `len` bytes.
            unsafe {
                match ev.kind {
                    K::Welcome => d.got_welcome.map(|f| f(ud, text)),
                    K::Code => d.got_code.map(|f| f(ud, text)),
                    K::UnverifiedKey => d
                        .got_unverified_key
                        .map(|f| f(ud, data.as_ptr(), data.len())),
                    K::Verifier => d.got_verifier.map(|f| f(ud, data.as_ptr(), data.len())),
                    K::Versions => d.got_versions.map(|f| f(ud, text)),
                    K::Message => d.got_message.map(|f| f(ud, data.as_ptr(), data.len())),
                    K::Closed => d.closed.map(|f| f(ud, ev.result, text)),
                    K::TextSent => d.text_sent.map(|f| f(ud, ev.result, text)),
                    K::TextReceived => d.text_received.map(|f| f(ud, ev.result, text, data.len())),
                    K::WordlistAvailable => d.wordlist_available.map(|f| f(ud)),
                    K::FileOffer => d.file_offer.map(|f| f(ud, text, ev.offer, ev.total)),
                    K::TransferProgress => d.transfer_progress.map(|f| f(ud, ev.done, ev.total)),
                    K::FileSent => d.file_sent.map(|f| f(ud, ev.result, text)),
                    K::FileReceived => d.file_received.map(|f| f(ud, ev.result, text)),
                    K::DilationGeneration
                    | K::DilationConnected
                    | K::DilationReconnecting
                    | K::DilationWarning
                    | K::DilationFailed
                    | K::SubchannelAcceptable
                    | K::SubchannelReadable
                    | K::SubchannelWritable => d.dilation.map(|f| f(ud, borrow_as::<wh_event>(ev))),
                    K::None => None,
                }
            };
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    }
}

/// The core objects of a live handle; taken out at teardown.
pub(crate) struct Core {
    pub(crate) wormhole: Wormhole,
    input: Option<InputHelper>,
    pub(crate) engine: Engine,
    /// `wh_hold_outbound`s not yet released, innermost last.
    holds: Vec<OutboundHold>,
    /// After `wh_dilate`.
    pub(crate) dilation: Option<Dilation>,
}

/// What `wh_dilate` made (see `dilation.rs`): the dilated wormhole and its listeners, kept
/// with the handle's core objects and dropped at `wh_free`.
pub(crate) struct Dilation {
    pub(crate) dilated: Arc<wormhole_core::dilation::handle::Dilated>,
    pub(crate) listeners:
        std::collections::HashMap<String, wormhole_core::dilation::handle::SubchannelListener>,
}

/// What a `wh_wormhole *` points to.
pub struct Handle {
    core: Mutex<Option<Core>>,
    pub(crate) queue: Arc<Queue>,
    pull: bool,
    close_timeout: Duration,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// `wh_free` was called on the dispatcher thread: it finishes the teardown.
    self_teardown: AtomicBool,
    /// Counts the events the application got (pulled or called back), for `wh_serialize`.
    taken: Taken,
}

thread_local! {
    /// On a dispatcher thread: the handle it serves.
    static DISPATCHING: Cell<*const Handle> = const { Cell::new(std::ptr::null()) };
}

impl Handle {
    pub(crate) fn core<T>(&self, f: impl FnOnce(&mut Core) -> T) -> Result<T, wh_result> {
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        core.as_mut().map(f).ok_or(wh_result::Closed)
    }

    pub(crate) fn wormhole(&self) -> Result<Wormhole, wh_result> {
        self.core(|c| c.wormhole.clone())
    }

    /// Stop deliveries and cancel the wormhole (the first half of `wh_free`).
    fn begin_free(&self) {
        self.queue.lock().freed = true;
        self.queue.wake();
        if let Ok(w) = self.wormhole() {
            w.cancel_transfer();
            w.cancel();
        }
    }

    /// Drop the core objects and the engine once every engine task has ended.
    fn teardown(&self) {
        let core = self.core.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(Core {
            wormhole,
            input,
            engine,
            holds,
            dilation,
        }) = core
        else {
            return;
        };
        wormhole.cancel();
        drop(dilation);
        drop(holds);
        drop(input);
        drop(wormhole);
        // The driver task holds its own clone of the engine until it returns. Waiting for
        // every task to end makes ours the last clone, so dropping it below shuts the
        // runtime down here, joining its worker thread (deterministic, valgrind-clean).
        let metrics = engine.handle().metrics();
        let deadline = Instant::now() + self.close_timeout + Duration::from_secs(3);
        while metrics.num_alive_tasks() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(engine);
    }
}

/// The dispatcher thread of a delegate-mode handle.
fn dispatch_loop(handle: Arc<Handle>, delegate: Delegate) {
    DISPATCHING.with(|d| d.set(Arc::as_ptr(&handle)));
    loop {
        let ev = {
            let mut st = handle.queue.lock();
            loop {
                if st.freed {
                    break None;
                }
                if let Some(ev) = handle.queue.pop(&mut st) {
                    // The callback is the application's: the event is taken (a
                    // `wh_serialize` inside it saves what comes after).
                    handle.taken.one();
                    break Some(ev);
                }
                st = handle.queue.wait(st, None).0;
            }
        };
        match ev {
            Some(ev) => delegate.deliver(&ev),
            None => break,
        }
    }
    DISPATCHING.with(|d| d.set(std::ptr::null()));
    if handle.self_teardown.load(Ordering::Acquire) {
        handle.teardown();
    }
    // After the last callback: user_data_free, exactly once.
    drop(delegate);
}

/// The forwarder: each event of core's stream, converted, onto the queue. If the stream
/// ends without `closed` (after `wh_suspend`, or the driver stopped: a bug), `closed` is
/// still queued, so no caller waits forever.
async fn forward(mut events: Events, queue: Arc<Queue>, taken: Taken) {
    while let Some(ev) = events.recv().await {
        if let Some(data) = EventData::from_core(&ev) {
            let mut st = queue.lock();
            queue.push(&mut st, data);
        } else {
            // Never shown to the application: taken now.
            taken.one();
        }
    }
    let mut st = queue.lock();
    let ev = if st.suspending {
        EventData::text(
            wh_event_kind::Closed,
            wh_result::Closed,
            "suspended: continue it with wh_from_serialized",
        )
    } else {
        EventData::text(
            wh_event_kind::Closed,
            wh_result::Internal,
            "the driver stopped",
        )
    };
    queue.push(&mut st, ev);
}

fn ms(v: u32, default: Duration) -> Duration {
    if v == 0 {
        default
    } else {
        Duration::from_millis(v.into())
    }
}

/// Create a wormhole and start connecting to the mailbox server (the seed's
/// `wormhole.create(appid, relay_url, reactor, delegate=…, versions=…)`). Returns at once;
/// connection failures arrive as the `closed` event (`WH_RESULT_SERVER_CONNECTION`).
///
/// - `app_id`: the application id, e.g. "lothar.com/wormhole/text-or-file-xfer"; both
///   sides must use the same one. NUL-terminated UTF-8, borrowed for the call.
/// - `relay_url`: the mailbox server, "ws://host:port/v1" or "wss://…". Borrowed.
/// - `app_versions_json`: a JSON object sent to the peer (its `got_versions`), or NULL
///   for `{}`. Borrowed.
/// - `options`: timeouts, or NULL for the defaults. Borrowed (copied).
/// - `delegate`: callbacks (delegate mode), or NULL for pull mode (`wh_next_event`,
///   `wh_event_fd`). Copied; see `wh_delegate` for the threading contract.
/// - `wormhole_out`: receives the new handle on success; untouched on failure. The caller
///   owns the handle and must release it with `wh_free`.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT` (app_id, relay_url or wormhole_out NULL),
/// `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_ARGUMENT` (empty app id, bad URL, JSON
/// that is not an object). When `wh_create` fails and `delegate` was not NULL, its
/// `user_data_free` has been called before it returns.
///
/// Each handle owns a worker thread (and, in delegate mode, a dispatcher thread).
/// Thread-safe: call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn wh_create(
    app_id: *const c_char,
    relay_url: *const c_char,
    app_versions_json: *const c_char,
    options: *const wh_options,
    delegate: *const wh_delegate,
    wormhole_out: *mut *mut wh_wormhole,
) -> wh_result {
    ffi_boundary! {
        // From here the delegate's Drop calls user_data_free on every path.
        let delegate = read_copy(delegate).map(Delegate);
        if wormhole_out.is_null() {
            return wh_result::NullArgument;
        }
        match create(app_id, relay_url, app_versions_json, options, delegate) {
            Ok(handle) => {
                write_out(wormhole_out, arc_into_raw::<wh_wormhole>(handle));
                wh_result::Ok
            }
            Err(r) => r,
        }
    }
}

fn create(
    app_id: *const c_char,
    relay_url: *const c_char,
    app_versions_json: *const c_char,
    options: *const wh_options,
    delegate: Option<Delegate>,
) -> Result<Arc<Handle>, wh_result> {
    let app_id = str_arg(app_id)?;
    let relay_url = str_arg(relay_url)?;
    let app_versions = if app_versions_json.is_null() {
        Value::Object(Map::new())
    } else {
        wormhole_core::Options::parse_app_versions(&str_arg(app_versions_json)?)
            .map_err(core_err)?
    };
    let (opts, engine, close_timeout) = core_options(options, app_versions)?;
    let started = Wormhole::create_delegated(&app_id, &relay_url, opts);
    start(started, engine, close_timeout, delegate)
}

/// Core options from `wh_options` (NULL: defaults), with an engine of the handle's own.
fn core_options(
    options: *const wh_options,
    app_versions: Value,
) -> Result<(wormhole_core::Options, Engine, Duration), wh_result> {
    let o = read_copy(options).unwrap_or_default();
    let proxy = if o.socks5.is_null() {
        None
    } else {
        Some(wormhole_core::proxy::Socks5::parse(&str_arg(o.socks5)?).map_err(core_err)?)
    };
    let defaults = wormhole_core::Options::default();
    let engine = Engine::new(1).map_err(|e| wh_result::from(&e))?;
    let close_timeout = ms(o.close_timeout_ms, defaults.close_timeout);
    let opts = wormhole_core::Options {
        app_versions,
        connect_timeout: ms(o.connect_timeout_ms, defaults.connect_timeout),
        close_timeout,
        keepalive_interval: ms(o.keepalive_interval_ms, defaults.keepalive_interval),
        engine: Some(engine.clone()),
        proxy,
        tor: super::tor::tor_of(o.tor)?,
        dilation: o.dilation,
        ..defaults
    };
    Ok((opts, engine, close_timeout))
}

/// Wraps a started core wormhole (new or restored) in a handle: the forwarder, and in
/// delegate mode the dispatcher thread.
fn start(
    started: wormhole_core::Result<(Wormhole, Events)>,
    engine: Engine,
    close_timeout: Duration,
    delegate: Option<Delegate>,
) -> Result<Arc<Handle>, wh_result> {
    let queue = Arc::new(Queue::new(delegate.is_none())?);
    let (wormhole, mut events) = started.map_err(|e| wh_result::from(&e))?;
    let taken = events.deferred_taking();
    engine
        .handle()
        .spawn(forward(events, queue.clone(), taken.clone()));
    let handle = Arc::new(Handle {
        core: Mutex::new(Some(Core {
            wormhole,
            input: None,
            engine,
            holds: Vec::new(),
            dilation: None,
        })),
        queue,
        pull: delegate.is_none(),
        close_timeout,
        dispatcher: Mutex::new(None),
        self_teardown: AtomicBool::new(false),
        taken,
    });
    if let Some(delegate) = delegate {
        let h = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("wormhole-dispatch".into())
            .spawn(move || dispatch_loop(h, delegate));
        match spawned {
            Ok(j) => *handle.dispatcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(j),
            Err(_) => {
                // The closure (and so the delegate) was dropped: user_data_free ran.
                handle.begin_free();
                handle.teardown();
                return Err(wh_result::Internal);
            }
        }
    }
    Ok(handle)
}

/// The body of `wh_free` for one reference.
fn free_handle(handle: Arc<Handle>) {
    handle.begin_free();
    let on_own_dispatcher = DISPATCHING.with(|d| d.get() == Arc::as_ptr(&handle));
    if on_own_dispatcher {
        // Joining ourselves would deadlock: the dispatcher tears down after this callback.
        handle.self_teardown.store(true, Ordering::Release);
        return;
    }
    let dispatcher = handle
        .dispatcher
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(j) = dispatcher {
        let _ = j.join();
    }
    handle.teardown();
}

/// Release a wormhole: cancel it if still open (releasing the nameplate and closing the
/// mailbox), stop event delivery, and free everything it owns.
///
/// After `wh_free` returns no further callback runs for this wormhole except
/// `user_data_free` (called exactly once, after the last callback); queued events and
/// unfinished operations are dropped. Events already returned by `wh_next_event` stay
/// valid until `wh_event_free`.
///
/// Blocking: waits for a running callback to return, and for the wormhole's network task
/// to finish its cancel, bounded by the close timeout. Called from one of this wormhole's
/// own callbacks it does not block: the teardown finishes on the dispatcher thread once
/// the callback returns.
///
/// NULL does nothing, and so does freeing a handle twice. Every call on the handle after
/// `wh_free` (from any thread) returns `WH_RESULT_INVALID_HANDLE`; a call already running
/// on another thread when it is freed finishes safely (typically with
/// `WH_RESULT_CLOSED` or `WH_RESULT_CANCELLED`).
#[unsafe(no_mangle)]
pub extern "C" fn wh_free(wormhole: *mut wh_wormhole) {
    ffi_boundary! {
        if let Some(handle) = arc_from_raw::<wh_wormhole>(wormhole) {
            free_handle(handle);
        }
    }
}

/// Run `f` on a live handle; NULL is `WH_RESULT_NULL_ARGUMENT`, a freed or unknown
/// handle `WH_RESULT_INVALID_HANDLE`.
pub(crate) fn with_handle(
    wormhole: *const wh_wormhole,
    f: impl FnOnce(&Handle) -> Result<(), wh_result>,
) -> wh_result {
    match arc_clone::<wh_wormhole>(wormhole).and_then(|h| f(&h)) {
        Ok(()) => wh_result::Ok,
        Err(r) => r,
    }
}

pub(crate) fn core_err(e: Error) -> wh_result {
    (&e).into()
}

/// Allocate a nameplate on the server and generate a code of `length` random words (0
/// means the default, 2). The code arrives as the `code` event. Only one of
/// `wh_allocate_code`, `wh_set_code`, `wh_input_code` may be called, once
/// (`WH_RESULT_ONLY_ONE_CODE`).
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_ARGUMENT` (length > 32),
/// `WH_RESULT_ONLY_ONE_CODE`, or the close outcome if the wormhole already closed.
/// Non-blocking; thread-safe; may be called from callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn wh_allocate_code(wormhole: *const wh_wormhole, length: usize) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let n = if length == 0 { DEFAULT_CODE_LENGTH } else { length };
            h.wormhole()?.allocate_code(n).map_err(core_err)
        })
    }
}

/// Use a complete code such as "7-purple-sausages" (typed by the user or agreed
/// offline). The `code` event follows. `code` is borrowed for the call.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_CODE`
/// (nothing is sent), `WH_RESULT_ONLY_ONE_CODE`, or the close outcome if closed.
/// Non-blocking; thread-safe; may be called from callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn wh_set_code(wormhole: *const wh_wormhole, code: *const c_char) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let code = str_arg(code)?;
            h.wormhole()?.set_code(&code).map_err(core_err)
        })
    }
}

/// Start interactive code entry with completion (the seed's `input_code()` helper); then
/// use the `wh_input_*` functions. The helper lives as long as the wormhole.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_ONLY_ONE_CODE`, or the close outcome.
/// Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_input_code(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            h.core(|c| {
                c.input = Some(c.wormhole.input_code().map_err(core_err)?);
                Ok(())
            })?
        })
    }
}

fn input(h: &Handle) -> Result<InputHelper, wh_result> {
    h.core(|c| c.input.clone())?.ok_or(wh_result::InvalidState)
}

/// Ask the server for the current nameplates; later completions use the answer (it
/// arrives in the background).
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_STATE` (no `wh_input_code`
/// yet), `WH_RESULT_ALREADY_CHOSE_NAMEPLATE`. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_input_refresh_nameplates(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| input(h)?.refresh_nameplates().map_err(core_err))
    }
}

fn completions(
    wormhole: *const wh_wormhole,
    prefix: *const c_char,
    completions_out: *mut *mut *mut c_char,
    f: impl FnOnce(&InputHelper, &str) -> wormhole_core::Result<std::collections::BTreeSet<String>>,
) -> wh_result {
    with_handle(wormhole, |h| {
        let prefix = str_arg(prefix)?;
        if completions_out.is_null() {
            return Err(wh_result::NullArgument);
        }
        let set = f(&input(h)?, &prefix).map_err(core_err)?;
        write_out(completions_out, string_array_into_raw(set));
        Ok(())
    })
}

/// Completions for a nameplate prefix ("1" → "1-", "12-", …), sorted, each with the
/// trailing hyphen, from the last list the server sent (see
/// `wh_input_refresh_nameplates`). `prefix` is borrowed.
///
/// On success `*completions_out` receives a NULL-terminated array of NUL-terminated
/// strings (possibly empty), owned by the caller: free it with `wh_string_array_free`.
/// On error it is untouched. Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`,
/// `WH_RESULT_INVALID_STATE`, `WH_RESULT_ALREADY_CHOSE_NAMEPLATE`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_input_nameplate_completions(
    wormhole: *const wh_wormhole,
    prefix: *const c_char,
    completions_out: *mut *mut *mut c_char,
) -> wh_result {
    ffi_boundary! {
        completions(wormhole, prefix, completions_out, |i, p| i.get_nameplate_completions(p))
    }
}

/// Commit the nameplate (digits, e.g. "7") and claim it; the `wordlist_available` event
/// follows once word completion works. Only once. `nameplate` is borrowed.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_STATE`,
/// `WH_RESULT_INVALID_CODE` (not numeric), `WH_RESULT_ALREADY_CHOSE_NAMEPLATE`.
/// Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_input_choose_nameplate(
    wormhole: *const wh_wormhole,
    nameplate: *const c_char,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let nameplate = str_arg(nameplate)?;
            input(h)?.choose_nameplate(&nameplate).map_err(core_err)
        })
    }
}

/// Completions for the words typed so far, without the nameplate ("pr" →
/// "processor-", …; "opulent-pr" → "opulent-preclude", …), sorted. Empty until the
/// wordlist is available. Ownership and out-param rules as for
/// `wh_input_nameplate_completions`.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_STATE`,
/// `WH_RESULT_MUST_CHOOSE_NAMEPLATE_FIRST`, `WH_RESULT_ALREADY_CHOSE_WORDS`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_input_word_completions(
    wormhole: *const wh_wormhole,
    prefix: *const c_char,
    completions_out: *mut *mut *mut c_char,
) -> wh_result {
    ffi_boundary! {
        completions(wormhole, prefix, completions_out, |i, p| i.get_word_completions(p))
    }
}

/// Commit the words ("purple-sausages"): the code becomes "NAMEPLATE-WORDS" and the
/// `code` event follows. Only once. `words` is borrowed.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_STATE`,
/// `WH_RESULT_MUST_CHOOSE_NAMEPLATE_FIRST`, `WH_RESULT_ALREADY_CHOSE_WORDS`,
/// `WH_RESULT_INVALID_CODE` (contains a space). Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_input_choose_words(
    wormhole: *const wh_wormhole,
    words: *const c_char,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let words = str_arg(words)?;
            input(h)?.choose_words(&words).map_err(core_err)
        })
    }
}

/// Queue a message for the peer (the seed's `send_message`). Allowed before the key
/// exists: messages are encrypted and posted in order once it does. The bytes are copied;
/// `data` may be NULL when `len` is 0.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, or the close outcome once the wormhole has closed
/// (`WH_RESULT_CLOSED` after a happy close). Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_send(wormhole: *const wh_wormhole, data: *const u8, len: usize) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let data = bytes_arg(data, len)?.to_vec();
            h.wormhole()?.send_message(data).map_err(core_err)
        })
    }
}

/// Send a text message the way `wormhole send --text` does (app id
/// "lothar.com/wormhole/text-or-file-xfer"): post the offer, then wait for the
/// receiver's acknowledgement. Completes exactly once with the `text_sent` event: OK, a
/// `WH_RESULT_TRANSFER` error from the receiver, or the close outcome if the wormhole
/// closes first. While it is pending, incoming messages are consumed by it (not
/// delivered as `message` events). `text` is borrowed (copied).
///
/// Errors (no event follows): `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`,
/// `WH_RESULT_IN_PROGRESS` (a text or file transfer is pending), the close outcome if closed.
/// Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_send_text(wormhole: *const wh_wormhole, text: *const c_char) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let text = str_arg(text)?;
            h.wormhole()?.start_send_text(&text).map_err(core_err)
        })
    }
}

/// Receive a text message the way `wormhole receive` does: wait for the sender's offer,
/// acknowledge it, and complete exactly once with the `text_received` event (the text, or
/// the error: a file offer is refused with `WH_RESULT_TRANSFER`). Call it before the
/// peer can send (e.g. right after `wh_create`): messages that arrived earlier were
/// delivered as `message` events.
///
/// Errors (no event follows): `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_IN_PROGRESS`, the
/// close outcome if closed. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_receive_text(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| h.wormhole()?.start_receive_text().map_err(core_err))
    }
}

/// Derive an application key from the wormhole key: HKDF(key, `length`, `purpose`), as
/// the seed's `derive_key(purpose, length)`. Writes exactly `length` bytes to `key_out`
/// on success (nothing on error). `purpose` is borrowed.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT` (wormhole, purpose, or key_out with length > 0),
/// `WH_RESULT_INVALID_UTF8`, `WH_RESULT_NO_KEY` (before the `unverified_key` event),
/// `WH_RESULT_INVALID_ARGUMENT` (length 0 or too long). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_derive_key(
    wormhole: *const wh_wormhole,
    purpose: *const c_char,
    key_out: *mut u8,
    length: usize,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let purpose = str_arg(purpose)?;
            if key_out.is_null() && length > 0 {
                return Err(wh_result::NullArgument);
            }
            if length == 0 {
                return Err(wh_result::InvalidArgument);
            }
            let key = h.wormhole()?.derive_key(&purpose, length).map_err(core_err)?;
            if key.len() != length {
                return Err(wh_result::Internal);
            }
            write_bytes(key_out, &key);
            Ok(())
        })
    }
}

/// Close the wormhole: release the nameplate, close the mailbox, and report the outcome
/// as the `closed` event (`WH_RESULT_OK` when happy; `WH_RESULT_LONELY`,
/// `WH_RESULT_WRONG_PASSWORD`, … otherwise). Calling it again, or after the wormhole
/// closed, is harmless and returns OK. The handle stays valid until `wh_free`.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_close(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            // Already torn down counts as closed.
            if let Ok(w) = h.wormhole() {
                w.begin_close();
            }
            Ok(())
        })
    }
}

/// Cancel: like `wh_close` without a happy outcome — the `closed` event reports
/// `WH_RESULT_CANCELLED` unless the wormhole had already finished, and a pending text
/// transfer completes with it. Harmless when repeated.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_cancel(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            if let Ok(w) = h.wormhole() {
                w.cancel();
            }
            Ok(())
        })
    }
}

/// Pull mode: the file descriptor that is readable while events wait in this wormhole's
/// queue (level-triggered; with epoll's EPOLLET, each time the queue goes from empty to
/// non-empty). Add it to select/poll/epoll/libuv (`uv_poll_init`) and call
/// `wh_next_event(…, 0, …)` when it is readable, until it returns `WH_RESULT_NO_EVENT`.
/// Never read from or close the fd: it is owned by the wormhole and valid until `wh_free`.
///
/// On success `*fd_out` receives the fd; on error it is untouched. Errors:
/// `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_STATE` (the wormhole has a delegate, or
/// the platform is not Unix and has no event fd).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_fd(wormhole: *const wh_wormhole, fd_out: *mut c_int) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            if fd_out.is_null() {
                return Err(wh_result::NullArgument);
            }
            let fd = h.queue.fd().ok_or(wh_result::InvalidState)?;
            write_out(fd_out, fd);
            Ok(())
        })
    }
}

/// Pull mode (the seed's deferred/blocking flow): take the next event, waiting up to
/// `timeout_ms` milliseconds (0: do not wait; negative: wait forever).
///
/// On success `*event_out` receives an event owned by the caller: read it with
/// `wh_event_kind`, `wh_event_text`, `wh_event_data`… and release it with
/// `wh_event_free`. On error `*event_out` is untouched. Errors: `WH_RESULT_NULL_ARGUMENT`,
/// `WH_RESULT_INVALID_STATE` (the wormhole has a delegate), `WH_RESULT_NO_EVENT`
/// (timeout), `WH_RESULT_CLOSED` (the `closed` event was already returned: no event will
/// follow).
///
/// Thread-safe: several threads may wait; each event goes to exactly one of them. Blocks
/// only the calling thread, never the network.
#[unsafe(no_mangle)]
pub extern "C" fn wh_next_event(
    wormhole: *const wh_wormhole,
    timeout_ms: i32,
    event_out: *mut *mut wh_event,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            if event_out.is_null() {
                return Err(wh_result::NullArgument);
            }
            if !h.pull {
                return Err(wh_result::InvalidState);
            }
            let ev = h.queue.next(timeout_ms)?;
            h.taken.one();
            write_out(event_out, box_into_raw::<wh_event>(ev));
            Ok(())
        })
    }
}

/// Save this wormhole as a string, to continue it later with `wh_from_serialized` (in
/// this process or another). The seed's `w.serialize()`.
///
/// On success `*data_out` is a new NUL-terminated UTF-8 string (versioned JSON) that the
/// caller owns and releases with `wh_string_free`. It includes the events not yet handed
/// to the application (pulled with `wh_next_event` or called back): the restored wormhole
/// delivers them first. **It holds secrets** (the session key, or the code and the seed of
/// the SPAKE2 scalar): store it like a key, never log it.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_ARGUMENT` (a transfer runs, the
/// code is being typed, or the wormhole is closing), `WH_RESULT_CLOSED`.
/// Blocking (a round trip to the wormhole's network task, no network I/O); may be called
/// from a callback. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_serialize(
    wormhole: *const wh_wormhole,
    data_out: *mut *mut c_char,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| save(h, data_out, false))
    }
}

/// `wh_serialize`, then stop the wormhole without a word to the server, as if the process
/// had ended: the nameplate and mailbox stay claimed and the peer keeps waiting, until
/// `wh_from_serialized` continues it (the restored wormhole sends whatever this one had not
/// sent yet). Freeing a handle instead cancels the wormhole, and the peer learns it is gone.
///
/// `*data_out` as for `wh_serialize` (release it with `wh_string_free`; it holds secrets).
/// Afterwards the handle's calls fail with `WH_RESULT_CLOSED`, and its last event is
/// `closed` with `WH_RESULT_CLOSED` ("suspended"): it is not the wormhole's end, which the
/// restored handle reports. Release the handle with `wh_free` as usual.
///
/// Errors: as for `wh_serialize`; when it fails, the wormhole runs on. Blocking (a round
/// trip to the wormhole's network task); may be called from a callback. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_suspend(
    wormhole: *const wh_wormhole,
    data_out: *mut *mut c_char,
) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| save(h, data_out, true))
    }
}

/// `wh_serialize` (`suspend` false) and `wh_suspend`: the saved string into `*data_out`.
fn save(h: &Handle, data_out: *mut *mut c_char, suspend: bool) -> Result<(), wh_result> {
    if data_out.is_null() {
        return Err(wh_result::NullArgument);
    }
    let (w, engine) = h.core(|c| (c.wormhole.clone(), c.engine.clone()))?;
    if suspend {
        // The stream then ends without `closed`: the forwarder queues a "suspended" one.
        h.queue.lock().suspending = true;
    }
    let saved = if suspend {
        engine.block_on(w.suspend())
    } else {
        engine.block_on(w.serialize())
    };
    let data = match saved.map_err(core_err).and_then(|r| r.map_err(core_err)) {
        Ok(data) => data,
        Err(e) => {
            h.queue.lock().suspending = false;
            return Err(e);
        }
    };
    let data = CString::new(data).map_err(|_| wh_result::Internal)?;
    write_out(data_out, data.into_raw());
    Ok(())
}

/// Continue a wormhole saved with `wh_serialize` (the seed's `wormhole.from_serialized`):
/// it reconnects to the same mailbox server and carries on; the peer sees nothing unusual.
///
/// - `data`: the saved string, NUL-terminated, borrowed.
/// - `options`, `delegate`, `wormhole_out`: as for `wh_create` (the app id, `app_versions`
///   and the server come from `data`).
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_ARGUMENT`
/// (not a saved wormhole, of another version, or damaged). When it fails and `delegate` was
/// not NULL, its `user_data_free` has run.
/// Restoring one string twice gives two handles for one side: keep one.
#[unsafe(no_mangle)]
pub extern "C" fn wh_from_serialized(
    data: *const c_char,
    options: *const wh_options,
    delegate: *const wh_delegate,
    wormhole_out: *mut *mut wh_wormhole,
) -> wh_result {
    ffi_boundary! {
        let delegate = read_copy(delegate).map(Delegate);
        if wormhole_out.is_null() {
            return wh_result::NullArgument;
        }
        let restored = str_arg(data).and_then(|data| {
            let (opts, engine, close_timeout) = core_options(options, Value::Object(Map::new()))?;
            let started = Wormhole::from_serialized(&data, opts);
            start(started, engine, close_timeout, delegate)
        });
        match restored {
            Ok(handle) => {
                write_out(wormhole_out, arc_into_raw::<wh_wormhole>(handle));
                wh_result::Ok
            }
            Err(r) => r,
        }
    }
}

/// Journaled mode: hold every frame this wormhole would send to the server (its
/// messages, claims, releases, closes) until the matching `wh_release_outbound`. Holds
/// nest. Handle an event inside a hold, send, save your state with `wh_serialize`, then
/// release: the peer never sees what a crash made you forget.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_CLOSED`. Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_hold_outbound(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            h.core(|c| {
                c.holds.push(c.wormhole.hold_outbound());
            })
        })
    }
}

/// Journaled mode: end the most recent `wh_hold_outbound`; the held frames leave when no
/// hold is left. Without a hold: `WH_RESULT_INVALID_STATE`.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_STATE`, `WH_RESULT_CLOSED`.
/// Non-blocking; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_release_outbound(wormhole: *const wh_wormhole) -> wh_result {
    ffi_boundary! {
        with_handle(wormhole, |h| {
            let hold = h.core(|c| c.holds.pop())?;
            match hold {
                Some(hold) => {
                    hold.release();
                    Ok(())
                }
                None => Err(wh_result::InvalidState),
            }
        })
    }
}

/// Check a complete code ("7-purple-sausages") without a wormhole: `WH_RESULT_OK` when
/// `wh_set_code` would accept it, else `WH_RESULT_INVALID_CODE` (a space, or a nameplate
/// that is not 1-40 digits). `code` is borrowed.
///
/// Errors: `WH_RESULT_NULL_ARGUMENT`, `WH_RESULT_INVALID_UTF8`, `WH_RESULT_INVALID_CODE`.
/// Thread-safe; no out-params.
#[unsafe(no_mangle)]
pub extern "C" fn wh_validate_code(code: *const c_char) -> wh_result {
    ffi_boundary! {
        match str_arg(code) {
            Ok(code) => match wormhole_core::validate_code(&code) {
                Ok(_) => wh_result::Ok,
                Err(e) => (&e).into(),
            },
            Err(r) => r,
        }
    }
}
