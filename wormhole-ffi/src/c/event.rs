//! Events: `wh_event` (what the pull API hands out), the per-handle event queue both
//! delivery modes read, and the pollable file descriptor.
//!
//! Invariants of [`Queue`]:
//! - events are queued in the order core's event stream delivers them; `closed` is always
//!   the last one (anything pushed after it is dropped; core completes every transfer
//!   before it);
//! - in pull mode the pipe holds exactly one byte while the queue is non-empty and none
//!   while it is empty (both changed under the queue lock), so its read end is readable
//!   exactly while events wait: level-triggered for select/poll/libuv, and a fresh edge
//!   for each empty → non-empty change under epoll's EPOLLET.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wormhole_core::dilation::handle::{DilationEvent, Readiness};
use wormhole_core::dilation::keys::Role;
use wormhole_core::transfer::{OfferKind, TransferEvent};
use wormhole_core::{Error, Event};

use super::cast::{Castable, OwnedBox, box_from_raw, box_ref};
use super::result::wh_result;

/// The kind of a `wh_event`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wh_event_kind {
    /// Not an event (what `wh_event_get_kind(NULL)` returns).
    None = 0,
    /// The server's welcome message. Text: its JSON object.
    Welcome = 1,
    /// The code is known (allocated, set, or input). Text: the code.
    Code = 2,
    /// The SPAKE2 key, before the peer proved it has it. Data: 32 bytes.
    UnverifiedKey = 3,
    /// The verifier both sides can compare. Data: 32 bytes.
    Verifier = 4,
    /// The peer's app versions. Text: its JSON object.
    Versions = 5,
    /// An application message from the peer. Data: its bytes.
    Message = 6,
    /// The wormhole closed; always the last event. Result: `WH_RESULT_OK` when happy,
    /// otherwise why (`WH_RESULT_LONELY`, `WH_RESULT_WRONG_PASSWORD`, …). Text: a message
    /// ("happy" when OK).
    Closed = 7,
    /// `wh_send_text` completed. Result: OK once the receiver acknowledged; otherwise the
    /// error, and text is its message.
    TextSent = 8,
    /// `wh_receive_text` completed. Result OK: text (and data) is the received text;
    /// otherwise the error, and text is its message.
    TextReceived = 9,
    /// After `wh_input_choose_nameplate`: the nameplate is claimed and word completion
    /// works. Not delivered if the wormhole closes first.
    WordlistAvailable = 10,
    /// After `wh_receive_file`: the peer offers a file or a directory. Text: the offered
    /// name (a base name, already checked to be safe). `wh_event_offer_kind`: file or
    /// directory; `wh_event_bytes_total`: the bytes that will travel (the file size, or the
    /// size of the directory's zip). Answer with `wh_accept_offer` or `wh_reject_offer`.
    FileOffer = 11,
    /// A file transfer moved data: `wh_event_bytes_done` of `wh_event_bytes_total` bytes.
    /// Throttled (see `wh_transfer_options.progress_interval_ms`); the last one has
    /// done == total.
    TransferProgress = 12,
    /// `wh_send_file` completed. Result: OK once the receiver acknowledged every byte
    /// (with a matching SHA-256); otherwise the error (`WH_RESULT_CANCELLED`,
    /// `WH_RESULT_TRANSFER` for a rejection or a lost connection, …). Text: a message.
    FileSent = 13,
    /// `wh_receive_file` completed. Result OK: text is the path the file or directory was
    /// saved to; otherwise the error (`WH_RESULT_CANCELLED` after `wh_reject_offer` or
    /// `wh_cancel_transfer`, `WH_RESULT_TRANSFER`, …) and text is its message.
    FileReceived = 14,
    /// Dilation (`wh_dilate`): a generation of connection attempts started.
    /// `wh_event_generation`: its number (1 for the first); text: our role, "leader" or
    /// "follower". From here `wh_dilation_connect` returns without waiting.
    DilationGeneration = 15,
    /// Dilation: a connection was selected for `wh_event_generation` (the first one:
    /// "dilated"). Text: how it reaches the peer, "direct HOST:PORT" or "relay HOST:PORT".
    DilationConnected = 16,
    /// Dilation: the connection of `wh_event_generation` was lost; a new one is being
    /// made. Subchannels carry on: nothing written is lost.
    DilationReconnecting = 17,
    /// Dilation: a peer message was ignored (malformed or out of place). Text: why.
    DilationWarning = 18,
    /// Dilation failed for good (no common version, …). Result and text: why. Every
    /// subchannel call fails from now on.
    DilationFailed = 19,
    /// `wh_dilation_accept` for the subprotocol in the text has a subchannel waiting.
    SubchannelAcceptable = 20,
    /// `wh_subchannel_read` / `wh_subchannel_recv` on `wh_event_subchannel_id` can go on
    /// (data, the peer's close, or an error waits).
    SubchannelReadable = 21,
    /// `wh_subchannel_write` on `wh_event_subchannel_id` can go on.
    SubchannelWritable = 22,
}

/// What a `WH_EVENT_KIND_FILE_OFFER` offers.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wh_offer_kind {
    /// Not an offer (what `wh_event_offer_kind` returns for other events and NULL).
    None = 0,
    /// One file.
    File = 1,
    /// A directory (sent as a zip, unpacked on receipt).
    Directory = 2,
}

/// One event, owned by the library until handed to C.
#[derive(Debug)]
pub(crate) struct EventData {
    pub(crate) kind: wh_event_kind,
    pub(crate) result: wh_result,
    /// The payload followed by one NUL byte (so text can be read as a C string).
    payload: Vec<u8>,
    pub(crate) is_text: bool,
    /// Offers and progress: bytes so far and bytes in all.
    pub(crate) done: u64,
    pub(crate) total: u64,
    pub(crate) offer: wh_offer_kind,
    /// Dilation status events: the generation; subchannel events: the subchannel id.
    pub(crate) id: u32,
}

impl EventData {
    pub(crate) fn text(kind: wh_event_kind, result: wh_result, text: &str) -> EventData {
        let mut payload = Vec::with_capacity(text.len() + 1);
        payload.extend_from_slice(text.as_bytes());
        payload.push(0);
        EventData {
            kind,
            result,
            payload,
            is_text: true,
            done: 0,
            total: 0,
            offer: wh_offer_kind::None,
            id: 0,
        }
    }

    pub(crate) fn bytes(kind: wh_event_kind, bytes: &[u8]) -> EventData {
        let mut payload = Vec::with_capacity(bytes.len() + 1);
        payload.extend_from_slice(bytes);
        payload.push(0);
        EventData {
            kind,
            result: wh_result::Ok,
            payload,
            is_text: false,
            done: 0,
            total: 0,
            offer: wh_offer_kind::None,
            id: 0,
        }
    }

    pub(crate) fn empty(kind: wh_event_kind) -> EventData {
        EventData::bytes(kind, &[])
    }

    /// A progress event.
    pub(crate) fn progress(done: u64, total: u64) -> EventData {
        EventData {
            done,
            total,
            ..EventData::empty(wh_event_kind::TransferProgress)
        }
    }

    /// An offer event.
    pub(crate) fn offer(name: &str, offer: wh_offer_kind, total: u64) -> EventData {
        EventData {
            total,
            offer,
            ..EventData::text(wh_event_kind::FileOffer, wh_result::Ok, name)
        }
    }

    /// The payload without the trailing NUL.
    pub(crate) fn data(&self) -> &[u8] {
        &self.payload[..self.payload.len() - 1]
    }

    /// The payload as a NUL-terminated string, for text events.
    pub(crate) fn c_text(&self) -> *const c_char {
        if self.is_text {
            self.payload.as_ptr().cast()
        } else {
            std::ptr::null()
        }
    }

    /// Translate one core event; `None` for core events C has no kind for.
    pub(crate) fn from_core(ev: &Event) -> Option<EventData> {
        use wh_event_kind as K;
        /// A completion: OK with `text`, or the error and its message.
        fn done<T>(kind: K, r: &Result<T, Error>, text: impl FnOnce(&T) -> String) -> EventData {
            match r {
                Ok(v) => EventData::text(kind, wh_result::Ok, &text(v)),
                Err(e) => EventData::text(kind, e.into(), &e.to_string()),
            }
        }
        Some(match ev {
            Event::Welcome(w) => EventData::text(
                K::Welcome,
                wh_result::Ok,
                &serde_json::Value::Object(w.clone()).to_string(),
            ),
            Event::Code(c) => EventData::text(K::Code, wh_result::Ok, c),
            Event::UnverifiedKey(k) => EventData::bytes(K::UnverifiedKey, &k.0),
            Event::Verifier(v) => EventData::bytes(K::Verifier, v),
            Event::Versions(v) => EventData::text(K::Versions, wh_result::Ok, &v.to_string()),
            Event::Message(m) => EventData::bytes(K::Message, m),
            Event::WordlistAvailable => EventData::empty(K::WordlistAvailable),
            Event::Closed(r) => done(K::Closed, r, |()| "happy".into()),
            Event::Dilation(d) => return Some(dilation_status(d)),
            Event::DilationReady(r) => match r {
                Readiness::Acceptable { name } => {
                    EventData::text(K::SubchannelAcceptable, wh_result::Ok, name)
                }
                Readiness::Readable { id } => EventData {
                    id: *id,
                    ..EventData::empty(K::SubchannelReadable)
                },
                Readiness::Writable { id } => EventData {
                    id: *id,
                    ..EventData::empty(K::SubchannelWritable)
                },
                _ => return None,
            },
            Event::Transfer(t) => match t {
                TransferEvent::Offer(o) => {
                    let kind = match o.kind {
                        OfferKind::File => wh_offer_kind::File,
                        OfferKind::Directory { .. } => wh_offer_kind::Directory,
                    };
                    EventData::offer(&o.name, kind, o.size)
                }
                TransferEvent::Progress { done, total } => EventData::progress(*done, *total),
                TransferEvent::TextSent(r) => done(K::TextSent, r, |()| String::new()),
                TransferEvent::TextReceived(r) => done(K::TextReceived, r, String::clone),
                TransferEvent::FileSent(r) => done(K::FileSent, r, |()| String::new()),
                TransferEvent::FileReceived(r) => {
                    done(K::FileReceived, r, |p| p.display().to_string())
                }
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// A Dilation status event as a C event.
fn dilation_status(ev: &DilationEvent) -> EventData {
    use wh_event_kind as K;
    let with = |kind, generation: u32, text: &str| EventData {
        id: generation,
        ..EventData::text(kind, wh_result::Ok, text)
    };
    match ev {
        DilationEvent::Generation { generation, role } => with(
            K::DilationGeneration,
            *generation,
            match role {
                Role::Leader => "leader",
                Role::Follower => "follower",
            },
        ),
        DilationEvent::Connected {
            generation, path, ..
        } => with(
            K::DilationConnected,
            *generation,
            &format!(
                "{} {}",
                if path.relay { "relay" } else { "direct" },
                path.peer.as_deref().unwrap_or("?")
            ),
        ),
        DilationEvent::Reconnecting { generation } => {
            with(K::DilationReconnecting, *generation, "")
        }
        DilationEvent::Warning(e) => with(K::DilationWarning, 0, &e.to_string()),
        DilationEvent::Failed(e) => {
            EventData::text(K::DilationFailed, wh_result::Transfer, &e.to_string())
        }
    }
}

/// An event handed out by `wh_next_event`. Opaque: read it with the `wh_event_*`
/// accessors and release it with `wh_event_free`.
pub struct wh_event {
    _private: [u8; 0],
}

impl Castable for wh_event {
    type Ownership = OwnedBox;
    type RustType = EventData;
}

#[derive(Debug, Default)]
pub(crate) struct QueueState {
    pub(crate) events: VecDeque<EventData>,
    /// `closed` was queued: nothing more is.
    pub(crate) closed_queued: bool,
    /// Pull mode: `closed` was handed out.
    pub(crate) closed_taken: bool,
    /// `wh_free` started: the dispatcher stops.
    pub(crate) freed: bool,
    /// `wh_suspend` is stopping the wormhole: its stream ends without `closed`.
    pub(crate) suspending: bool,
}

/// A non-blocking pipe whose read end is the handle's event fd (pull mode, Unix).
#[cfg(unix)]
#[derive(Debug)]
struct Pipe {
    read: libc::c_int,
    write: libc::c_int,
}

#[cfg(unix)]
impl Pipe {
    fn new() -> Result<Pipe, wh_result> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(wh_result::Internal);
        }
        for fd in fds {
            // SAFETY: `fd` was just returned by pipe(2) and is owned by us.
            unsafe {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(Pipe {
            read: fds[0],
            write: fds[1],
        })
    }

    fn raise(&self) {
        let byte = 1u8;
        // SAFETY: writing one byte from a live local to our own open, non-blocking fd.
        // A full pipe cannot happen (it never holds more than one byte).
        unsafe { libc::write(self.write, (&raw const byte).cast(), 1) };
    }

    fn lower(&self) {
        let mut byte = 0u8;
        // SAFETY: reading one byte into a live local from our own open, non-blocking fd.
        unsafe { libc::read(self.read, (&raw mut byte).cast(), 1) };
    }

    fn fd(&self) -> Option<std::ffi::c_int> {
        Some(self.read)
    }
}

/// Without Unix pipes there is no event fd (`wh_event_fd` reports
/// `WH_RESULT_INVALID_STATE`); `wh_next_event` works the same.
#[cfg(not(unix))]
#[derive(Debug)]
struct Pipe;

#[cfg(not(unix))]
impl Pipe {
    fn new() -> Result<Pipe, wh_result> {
        Ok(Pipe)
    }

    fn raise(&self) {}

    fn lower(&self) {}

    fn fd(&self) -> Option<std::ffi::c_int> {
        None
    }
}

#[cfg(unix)]
impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both fds are ours and closed exactly once, here.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

/// The per-handle event queue: the forwarder of core's event stream pushes, the
/// dispatcher thread or `wh_next_event` pops.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
    pipe: Option<Pipe>,
}

impl Queue {
    pub(crate) fn new(pull: bool) -> Result<Queue, wh_result> {
        Ok(Queue {
            state: Mutex::new(QueueState::default()),
            changed: Condvar::new(),
            pipe: if pull { Some(Pipe::new()?) } else { None },
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Poisoning only means a panic elsewhere while locked; the state is plain data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue an event (dropped after `closed`), keep the fd invariant, wake waiters.
    pub(crate) fn push(&self, st: &mut QueueState, ev: EventData) {
        if st.closed_queued {
            return;
        }
        if ev.kind == wh_event_kind::Closed {
            st.closed_queued = true;
        }
        if st.events.is_empty() {
            if let Some(p) = &self.pipe {
                p.raise();
            }
        }
        st.events.push_back(ev);
        self.changed.notify_all();
    }

    /// Take the next event, keeping the fd invariant.
    pub(crate) fn pop(&self, st: &mut QueueState) -> Option<EventData> {
        let ev = st.events.pop_front()?;
        if st.events.is_empty() {
            if let Some(p) = &self.pipe {
                p.lower();
            }
        }
        Some(ev)
    }

    /// Wake the dispatcher (after `freed` was set).
    pub(crate) fn wake(&self) {
        self.changed.notify_all();
    }

    /// Wait for a change, up to `deadline` (forever for `None`).
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, QueueState>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, QueueState>, bool) {
        match deadline {
            None => (
                self.changed.wait(guard).unwrap_or_else(|p| p.into_inner()),
                false,
            ),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (guard, true);
                }
                let (g, _) = self
                    .changed
                    .wait_timeout(guard, d - now)
                    .unwrap_or_else(|p| p.into_inner());
                (g, Instant::now() >= d)
            }
        }
    }

    /// The read end of the pipe (pull mode).
    pub(crate) fn fd(&self) -> Option<std::ffi::c_int> {
        self.pipe.as_ref().and_then(Pipe::fd)
    }

    /// Pull mode: the next event within `timeout_ms` (< 0: forever).
    pub(crate) fn next(&self, timeout_ms: i32) -> Result<EventData, wh_result> {
        let deadline =
            (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        let mut st = self.lock();
        loop {
            if let Some(ev) = self.pop(&mut st) {
                if ev.kind == wh_event_kind::Closed {
                    st.closed_taken = true;
                }
                return Ok(ev);
            }
            if st.closed_taken {
                return Err(wh_result::Closed);
            }
            let (g, timed_out) = self.wait(st, deadline);
            st = g;
            if timed_out && st.events.is_empty() {
                return Err(if st.closed_taken {
                    wh_result::Closed
                } else {
                    wh_result::NoEvent
                });
            }
        }
    }
}

/// The kind of an event; `WH_EVENT_KIND_NONE` for NULL. Events are immutable: the
/// accessors are thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_get_kind(event: *const wh_event) -> wh_event_kind {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(wh_event_kind::None, |e| e.kind)
    }
}

/// The outcome an event carries: for `CLOSED`, `TEXT_SENT`, `TEXT_RECEIVED`, `FILE_SENT`
/// and `FILE_RECEIVED` the result of the operation; `WH_RESULT_OK` for the other kinds; `WH_RESULT_NULL_ARGUMENT`
/// for NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_result(event: *const wh_event) -> wh_result {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(wh_result::NullArgument, |e| e.result)
    }
}

/// The event's text as a NUL-terminated UTF-8 string, or NULL when the kind carries no
/// text (or `event` is NULL). Text kinds: `WELCOME` and `VERSIONS` (JSON), `CODE`,
/// `CLOSED` (message), `TEXT_SENT` (message), `TEXT_RECEIVED` (the text or a message),
/// `FILE_OFFER` (the offered name), `FILE_SENT` (message), `FILE_RECEIVED` (the saved path
/// or a message).
///
/// The string is owned by the event: valid until `wh_event_free(event)`; do not free it.
/// Text that itself contains NUL characters is cut short here; `wh_event_data` has all
/// of it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_text(event: *const wh_event) -> *const c_char {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(std::ptr::null(), |e| e.c_text())
    }
}

/// The event's payload bytes (for text kinds: the UTF-8 text without a terminator), or
/// NULL for a NULL event. Never NULL for a valid event, even when the length is 0; the
/// length is `wh_event_len(event)`. Owned by the event: valid until `wh_event_free`.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_data(event: *const wh_event) -> *const u8 {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(std::ptr::null(), |e| e.data().as_ptr())
    }
}

/// The length in bytes of `wh_event_data(event)`; 0 for NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_len(event: *const wh_event) -> usize {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(0, |e| e.data().len())
    }
}

/// `FILE_OFFER`: whether a file or a directory is offered; `WH_OFFER_KIND_NONE` for other
/// kinds and NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_offer_kind(event: *const wh_event) -> wh_offer_kind {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(wh_offer_kind::None, |e| e.offer)
    }
}

/// `TRANSFER_PROGRESS`: the bytes moved so far; 0 for other kinds and NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_bytes_done(event: *const wh_event) -> u64 {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(0, |e| e.done)
    }
}

/// `TRANSFER_PROGRESS` and `FILE_OFFER`: the bytes the transfer moves in all (the file
/// size, or the zip size of a directory); 0 for other kinds and NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_bytes_total(event: *const wh_event) -> u64 {
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(0, |e| e.total)
    }
}

/// Dilation status events (`DILATION_GENERATION`, `_CONNECTED`, `_RECONNECTING`): the
/// generation; 0 for other kinds and NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_generation(event: *const wh_event) -> u32 {
    use wh_event_kind as K;
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(0, |e| match e.kind {
            K::DilationGeneration | K::DilationConnected | K::DilationReconnecting => e.id,
            _ => 0,
        })
    }
}

/// `SUBCHANNEL_READABLE` and `SUBCHANNEL_WRITABLE`: the subchannel's id (as
/// `wh_subchannel_id` gives it); 0 for other kinds and NULL (ids start at 1).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_subchannel_id(event: *const wh_event) -> u32 {
    use wh_event_kind as K;
    ffi_boundary! {
        box_ref::<wh_event>(event).map_or(0, |e| match e.kind {
            K::SubchannelReadable | K::SubchannelWritable => e.id,
            _ => 0,
        })
    }
}

/// Free an event returned by `wh_next_event`, with everything it owns. NULL does
/// nothing; freeing twice is undefined. Any thread; events are independent of their
/// wormhole and may outlive it.
#[unsafe(no_mangle)]
pub extern "C" fn wh_event_free(event: *mut wh_event) {
    ffi_boundary! {
        drop(box_from_raw::<wh_event>(event));
    }
}
