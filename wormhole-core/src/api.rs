//! The public async API every adapter wraps (the seed's `wormhole.create()` object).
//!
//! A [`Wormhole`] is a cheap, `Send + Sync` handle to one driver task. Methods that the
//! seed makes synchronous (`allocate_code`, `set_code`, `send_message`, `derive_key`, the
//! input helper's completions) answer at once; the getters are `async` and can be awaited
//! from any executor. Two delivery styles share one core:
//! - **deferred** ([`Wormhole::create`]): `get_code().await`, `get_message().await`, …;
//! - **delegated** ([`Wormhole::create_delegated`]): every event arrives, in order, on an
//!   [`Events`] stream.
//!
//! Dropping the last handle (including [`InputHelper`]s) cancels the wormhole: the
//! nameplate is released and the mailbox closed in the background.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

use crate::command::Command;
use crate::driver::{self, DriverConfig, EventSink};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::proto::code::{self, nameplate_completions, validate_nameplate, word_completions};
use crate::proto::key::{self, Key};
use crate::proto::session::{self, Session, SessionConfig};
use crate::transfer::io::{self, Order, Source};
use crate::transfer::machine::{self, Directive, Input, Kind, OfferInfo, Output, TransferEvent};
use crate::transfer::options::{EventFn, ProgressFn, TransferOptions};
use crate::transit::TRANSIT_PURPOSE;

/// Called with the server's welcome (without `error`), on an engine thread. Keep it short.
pub type WelcomeHandler = Arc<dyn Fn(&Map<String, Value>) + Send + Sync>;

/// Options for [`Wormhole::create`].
pub struct Options {
    /// `app_versions` sent to the peer (a JSON object; default `{}`).
    pub app_versions: Value,
    /// Called with the welcome message.
    pub welcome_handler: Option<WelcomeHandler>,
    /// Limit for the first connection to the mailbox server (default 30 s). Later
    /// disconnections are retried forever with the reference backoff.
    pub connect_timeout: Duration,
    /// How long `close()` waits for the server to acknowledge release/close (default 30 s).
    pub close_timeout: Duration,
    /// WebSocket ping interval; a link silent for two intervals is reconnected (default 30 s).
    pub keepalive_interval: Duration,
    /// The engine to run on (default: the process-wide [`Engine::global`]).
    pub engine: Option<Engine>,
    /// Randomness for the side, nonces, SPAKE2 and words (default: the OS RNG). For tests.
    pub rng: Option<Box<dyn CryptoRngCore + Send>>,
    /// `client_version` sent in `bind` (default `["rust", <this version>]`).
    pub client_version: (String, String),
    /// Trace the session's state-machine transitions (`--debug-state`; default none).
    pub state_trace: Option<crate::trace::StateTrace>,
    /// Make every connection through this SOCKS5 proxy (names resolved by the proxy): the
    /// mailbox, and Transit for every transfer started on this wormhole whose
    /// [`TransitConfig::proxy`](crate::transit::TransitConfig::proxy) is unset. Transit then
    /// neither listens nor sends our addresses.
    pub proxy: Option<crate::proxy::Socks5>,
    /// Tor mode ([`crate::tor`]): every connection through this tor's SOCKS port, with the
    /// reference's Tor rules for Transit hints and the mailbox URL. Takes the place of
    /// `proxy`. A launched tor lives as long as a handle to it.
    pub tor: Option<Arc<crate::tor::Tor>>,
    /// Offer Dilation to the peer (PROTOCOL §9.1; default `false`): our `version` message
    /// carries `can-dilate` and `dilation-abilities`, and [`Wormhole::dilate`] is allowed
    /// (the reference's `dilation=True`). For a restored wormhole the saved setting holds
    /// and this one is ignored.
    pub dilation: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            app_versions: Value::Object(Map::new()),
            welcome_handler: None,
            connect_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(30),
            engine: None,
            rng: None,
            client_version: ("rust".into(), crate::VERSION.into()),
            state_trace: None,
            proxy: None,
            tor: None,
            dilation: false,
        }
    }
}

impl Options {
    /// `app_versions` from JSON text, as adapters receive it: a JSON object, else
    /// [`Error::InvalidArgument`].
    pub fn parse_app_versions(json: &str) -> Result<Value> {
        match serde_json::from_str::<Value>(json) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(Error::InvalidArgument(
                "app_versions must be a JSON object".into(),
            )),
            Err(e) => Err(Error::InvalidArgument(format!(
                "app_versions is not JSON: {e}"
            ))),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("app_versions", &self.app_versions)
            .field("connect_timeout", &self.connect_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("dilation", &self.dilation)
            .finish_non_exhaustive()
    }
}

/// The event stream of a delegated-mode wormhole. Ends after [`Event::Closed`].
///
/// An event counts as taken once one of these methods returned it: a
/// [`Wormhole::serialize`] saves the events not taken yet, and the restored wormhole
/// delivers them first.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
    taken: Arc<AtomicU64>,
    /// False once an adapter counts takes itself ([`Events::deferred_taking`]).
    count_here: bool,
}

/// For an adapter that queues events between this stream and the application: it calls
/// [`Taken::one`] each time it hands one event (in stream order) to the application.
#[derive(Debug, Clone)]
pub struct Taken(Arc<AtomicU64>);

impl Taken {
    /// The application now has the next event.
    pub fn one(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Events {
    /// For adapters (C, Python, Kotlin) that take events from this stream into a queue of
    /// their own: from now on an event counts as taken (for [`Wormhole::serialize`]) not
    /// when it leaves this stream but when the adapter says so with the returned
    /// [`Taken`], once the application has it.
    pub fn deferred_taking(&mut self) -> Taken {
        self.count_here = false;
        Taken(self.taken.clone())
    }

    fn took(&self, ev: Option<Event>) -> Option<Event> {
        if ev.is_some() && self.count_here {
            self.taken.fetch_add(1, Ordering::SeqCst);
        }
        ev
    }

    /// The next event, or `None` after `Closed`.
    pub async fn recv(&mut self) -> Option<Event> {
        let ev = self.rx.recv().await;
        self.took(ev)
    }

    /// The next event, blocking the thread. Must not be called inside an async runtime.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        let ev = self.rx.blocking_recv();
        self.took(ev)
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        let ev = self.rx.try_recv().ok();
        self.took(ev)
    }
}

/// The delegated-mode events delivered and not yet taken from [`Events`], numbered from 1
/// in delivery order (the stream hands them out in that order, so the first `taken` are
/// the ones taken).
#[derive(Default)]
struct Journal {
    delivered: u64,
    entries: VecDeque<(u64, Event)>,
}

/// What [`Wormhole::serialize`] writes: the session's snapshot and the events not taken.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Serialized {
    /// Always [`SERIALIZED_FORMAT`].
    format: String,
    /// [`session::SNAPSHOT_VERSION`] when written.
    version: u64,
    relay_url: String,
    session: Value,
    events: Vec<SavedEvent>,
}

/// The `format` of a serialized wormhole.
const SERIALIZED_FORMAT: &str = "magic-wormhole serialized wormhole";

/// An [`Event`] saved with a serialized wormhole (bytes as hex).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
enum SavedEvent {
    Welcome { welcome: Map<String, Value> },
    Code { code: String },
    UnverifiedKey { key: Key },
    Verifier { verifier: String },
    Versions { versions: Value },
    Message { message: String },
    WordlistAvailable,
}

impl SavedEvent {
    fn save(ev: &Event) -> Result<SavedEvent> {
        Ok(match ev {
            Event::Welcome(w) => SavedEvent::Welcome { welcome: w.clone() },
            Event::Code(c) => SavedEvent::Code { code: c.clone() },
            Event::UnverifiedKey(k) => SavedEvent::UnverifiedKey { key: k.clone() },
            Event::Verifier(v) => SavedEvent::Verifier {
                verifier: hex::encode(v),
            },
            Event::Versions(v) => SavedEvent::Versions {
                versions: v.clone(),
            },
            Event::Message(m) => SavedEvent::Message {
                message: hex::encode(m),
            },
            Event::WordlistAvailable => SavedEvent::WordlistAvailable,
            Event::Transfer(_)
            | Event::Dilation(_)
            | Event::DilationReady(_)
            | Event::Closed(_) => {
                return Err(Error::InvalidArgument(
                    "a wormhole cannot be serialized while a transfer, Dilation or closing \
                     event waits to be taken"
                        .into(),
                ));
            }
        })
    }

    fn restore(self) -> Result<Event> {
        let damaged =
            || Error::InvalidArgument("the serialized wormhole is damaged: an event".into());
        Ok(match self {
            SavedEvent::Welcome { welcome } => Event::Welcome(welcome),
            SavedEvent::Code { code } => Event::Code(code),
            SavedEvent::UnverifiedKey { key } => Event::UnverifiedKey(key),
            SavedEvent::Verifier { verifier } => Event::Verifier(
                hex::decode(verifier)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(damaged)?,
            ),
            SavedEvent::Versions { versions } => Event::Versions(versions),
            SavedEvent::Message { message } => {
                Event::Message(hex::decode(message).map_err(|_| damaged())?)
            }
            SavedEvent::WordlistAvailable => Event::WordlistAvailable,
        })
    }
}

#[derive(Default)]
struct InputState {
    nameplate: Option<String>,
    words_chosen: bool,
    claimed: bool,
    nameplates: Vec<String>,
}

#[derive(Default)]
struct State {
    welcome: Option<Map<String, Value>>,
    code: Option<String>,
    key: Option<Key>,
    verifier: Option<[u8; 32]>,
    versions: Option<Value>,
    messages: VecDeque<Vec<u8>>,
    closed: Option<Result<()>>,
    driver_finished: bool,
    code_chosen: bool,
    input: Option<InputState>,
    transfers: machine::Machine,
    /// The running file transfer's I/O task.
    io: Option<(u64, tokio::sync::mpsc::UnboundedSender<Order>)>,
    /// The running transfer's callbacks (from its [`TransferOptions`]).
    callbacks: (Option<ProgressFn>, Option<EventFn>),
    /// Recent offers and final transfer events, for the awaitable transfer functions.
    transfer_news: VecDeque<(u64, TransferEvent)>,
    /// How many were ever added to `transfer_news` (tells whether waiters need waking).
    news_count: u64,
    /// The session's outcome, held until a stopping file transfer has ended.
    pending_closed: Option<Result<()>>,
    /// `get_message` turns: the next to hand out, the one being served, and those whose
    /// futures were dropped unserved.
    next_ticket: u64,
    serving: u64,
    abandoned: BTreeSet<u64>,
    dilation: DilationLink,
}

/// Where the peer's Dilation messages go.
enum DilationLink {
    /// `dilate()` was not called yet: the peer's `can-dilate` and its first `dilate-N`
    /// bodies wait here (at most [`MAX_EARLY_DILATION`]).
    Early {
        can_dilate: Option<Vec<String>>,
        bodies: Vec<Vec<u8>>,
    },
    /// The Dilation driver runs.
    Running(mpsc::UnboundedSender<crate::dilation::handle::Control>),
}

/// How many of the peer's `dilate-N` bodies are kept before our `dilate()`; a peer only
/// sends a few (`please`, hints) until we answer.
const MAX_EARLY_DILATION: usize = 256;

impl Default for DilationLink {
    fn default() -> Self {
        DilationLink::Early {
            can_dilate: None,
            bodies: Vec::new(),
        }
    }
}

impl State {
    /// The wormhole's key, for Dilation (empty before it exists; the peer's version, which
    /// starts Dilation, comes only after it).
    fn key_bytes(&self) -> Vec<u8> {
        self.key.as_ref().map(|k| k.0.to_vec()).unwrap_or_default()
    }

    fn skip_abandoned_turns(&mut self) {
        while self.abandoned.remove(&self.serving) {
            self.serving += 1;
        }
    }
}

/// A `get_message` call's place in line; gives it up when dropped unserved.
struct Turn {
    w: Wormhole,
    ticket: u64,
    done: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.done {
            {
                let mut st = self.w.lock();
                if st.serving <= self.ticket {
                    st.abandoned.insert(self.ticket);
                    st.skip_abandoned_turns();
                }
            }
            self.w.h.shared.changed.notify_waiters();
        }
    }
}

/// How many offers and final events [`State::transfer_news`] keeps.
const NEWS_KEPT: usize = 16;

impl State {
    /// What a pending getter gets once the wormhole has closed without its value.
    fn closed_error(&self) -> Option<Error> {
        match &self.closed {
            Some(Ok(())) => Some(Error::Closed),
            Some(Err(e)) => Some(e.clone()),
            None => None,
        }
    }
}

/// State shared between the handles and the driver.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Notify,
    /// The delegated-mode stream; dropped after `Closed` so the stream ends.
    delegate: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    delegated: bool,
    /// Delegated mode: the events delivered and not taken yet (for `serialize`).
    journal: Mutex<Journal>,
    /// Delegated mode: how many events the application took from its [`Events`].
    taken: Arc<AtomicU64>,
    welcome_handler: Option<WelcomeHandler>,
    /// Messages the transfer machine posts go to the driver like the application's.
    commands: mpsc::WeakUnboundedSender<Command>,
    /// Where transfer I/O tasks run.
    runtime: tokio::runtime::Handle,
    /// [`Options::proxy`], also for transfers.
    proxy: Option<crate::proxy::Socks5>,
    /// [`Options::tor`], kept alive with the wormhole; its transfers run in Tor mode.
    tor: Option<Arc<crate::tor::Tor>>,
    /// [`Options::dilation`] (or the restored session's setting).
    dilation: bool,
}

/// A user callback to run once the state lock is released.
enum Callback {
    Progress(ProgressFn, u64, u64),
    Event(EventFn, TransferEvent),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the state
        // itself is plain data and still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record an event from the session and wake waiters.
    fn dispatch_event(&self, ev: session::Event) {
        let mut callbacks = Vec::new();
        let welcome = {
            let mut st = self.lock();
            let mut welcome = None;
            let public = match ev {
                session::Event::Welcome(w) => {
                    st.welcome = Some(w.clone());
                    welcome = Some(w.clone());
                    Some(Event::Welcome(w))
                }
                session::Event::Code(c) => {
                    st.code = Some(c.clone());
                    Some(Event::Code(c))
                }
                session::Event::Nameplates(list) => {
                    if let Some(i) = &mut st.input {
                        i.nameplates = list;
                    }
                    None
                }
                session::Event::NameplateClaimed => match &mut st.input {
                    Some(i) if !i.claimed => {
                        i.claimed = true;
                        Some(Event::WordlistAvailable)
                    }
                    _ => None,
                },
                session::Event::UnverifiedKey(k) => {
                    st.key = Some(k.clone());
                    Some(Event::UnverifiedKey(k))
                }
                session::Event::Verifier(v) => {
                    st.verifier = Some(v);
                    self.deliver(&mut st, Event::Verifier(v));
                    self.transfer_locked(&mut st, Input::Verified, &mut callbacks)
                        .ok();
                    None
                }
                session::Event::Versions(v) => {
                    st.versions = Some(v.clone());
                    self.transfer_locked(&mut st, Input::PeerVersions(v.clone()), &mut callbacks)
                        .ok();
                    Some(Event::Versions(v))
                }
                session::Event::Message(m) => {
                    if st.transfers.wants_messages() {
                        self.transfer_locked(&mut st, Input::PeerMessage(m), &mut callbacks)
                            .ok();
                        None
                    } else if self.delegated {
                        Some(Event::Message(m))
                    } else {
                        st.messages.push_back(m);
                        None
                    }
                }
                session::Event::PeerCanDilate(list) => {
                    let key = st.key_bytes();
                    match &mut st.dilation {
                        DilationLink::Running(tx) => {
                            let _ = tx.send(crate::dilation::handle::Control::PeerVersion {
                                can_dilate: list,
                                key,
                            });
                        }
                        DilationLink::Early { can_dilate, .. } => *can_dilate = Some(list),
                    }
                    None
                }
                session::Event::DilationMessage(body) => {
                    match &mut st.dilation {
                        DilationLink::Running(tx) => {
                            let _ = tx.send(crate::dilation::handle::Control::PeerBody(body));
                        }
                        DilationLink::Early { bodies, .. } if bodies.len() < MAX_EARLY_DILATION => {
                            bodies.push(body)
                        }
                        DilationLink::Early { .. } => {
                            tracing::warn!(
                                "the peer sent too many dilation messages before dilate(): dropped one"
                            );
                        }
                    }
                    None
                }
                session::Event::Closed(r) => {
                    if let DilationLink::Running(tx) = &st.dilation {
                        let _ = tx.send(crate::dilation::handle::Control::Stop);
                    }
                    // A running transfer ends first: `Closed` is always the last event,
                    // held back while a file transfer's I/O task is still stopping.
                    st.pending_closed = Some(r.clone());
                    self.transfer_locked(&mut st, Input::Closed(r), &mut callbacks)
                        .ok();
                    None
                }
            };
            if let Some(ev) = public {
                self.deliver(&mut st, ev);
            }
            welcome
        };
        if let (Some(w), Some(h)) = (&welcome, &self.welcome_handler) {
            h(w);
        }
        run_callbacks(callbacks);
        self.changed.notify_waiters();
    }

    /// Put a Dilation event on the delegated stream.
    fn deliver_dilation(&self, ev: Event) {
        let mut st = self.lock();
        self.deliver(&mut st, ev);
    }

    /// Put an event on the delegated stream (the state is locked, so events keep their
    /// order whichever thread reports them).
    fn deliver(&self, _st: &mut State, ev: Event) {
        let mut delegate = self.delegate.lock().unwrap_or_else(|p| p.into_inner());
        let last = matches!(ev, Event::Closed(_));
        if let Some(tx) = delegate.as_ref() {
            let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            let taken = self.taken.load(Ordering::SeqCst);
            while journal.entries.front().is_some_and(|(n, _)| *n <= taken) {
                journal.entries.pop_front();
            }
            journal.delivered += 1;
            let n = journal.delivered;
            journal.entries.push_back((n, ev.clone()));
            let _ = tx.send(ev);
        }
        if last {
            *delegate = None;
        }
    }

    /// Feed the transfer machine and wake waiters; user callbacks run after the lock is
    /// released.
    pub(crate) fn transfer_input(&self, input: Input) -> Result<u64> {
        let mut callbacks = Vec::new();
        let (r, news) = {
            let mut st = self.lock();
            let before = (st.news_count, st.closed.is_some());
            let r = self.transfer_locked(&mut st, input, &mut callbacks);
            (r, before != (st.news_count, st.closed.is_some()))
        };
        run_callbacks(callbacks);
        // Waiters only care about offers, final events and the close: a throttled
        // progress report (one per record) wakes nobody.
        if news {
            self.changed.notify_waiters();
        }
        r
    }

    /// Feed the transfer machine (the state is locked) and perform what it asks.
    fn transfer_locked(
        &self,
        st: &mut State,
        input: Input,
        callbacks: &mut Vec<Callback>,
    ) -> Result<u64> {
        let outputs = match st.transfers.handle(input, Instant::now()) {
            Ok((_, outputs)) => outputs,
            Err(e) => {
                self.deliver_pending_close(st);
                return Err(e);
            }
        };
        for out in outputs {
            self.perform(st, out, callbacks);
        }
        self.deliver_pending_close(st);
        Ok(st.transfers.current().unwrap_or(0))
    }

    /// Deliver `Closed` once no transfer is left ending.
    fn deliver_pending_close(&self, st: &mut State) {
        if st.transfers.is_idle() {
            if let Some(r) = st.pending_closed.take() {
                st.closed = Some(r.clone());
                self.deliver(st, Event::Closed(r));
            }
        }
    }

    fn perform(&self, st: &mut State, out: Output, callbacks: &mut Vec<Callback>) {
        match out {
            Output::Send(m) => {
                if let Some(tx) = self.commands.upgrade() {
                    let _ = tx.send(Command::Send(m));
                }
            }
            Output::Io(id, d) => {
                let key = match d {
                    Directive::PrepareSender | Directive::PrepareReceiver(_) => {
                        st.key.as_ref().and_then(|k| {
                            key::derive_key(&k.0, &key::to_bytes(TRANSIT_PURPOSE), 32).ok()
                        })
                    }
                    _ => None,
                };
                let stop = d == Directive::Stop;
                if let Some((io_id, tx)) = &st.io {
                    if *io_id == id {
                        let _ = tx.send((d, key));
                    }
                }
                if stop && st.io.as_ref().is_some_and(|(i, _)| *i == id) {
                    st.io = None;
                }
            }
            Output::Emit(id, ev) => {
                let (progress, events) = st.callbacks.clone();
                match (&ev, progress, events) {
                    (TransferEvent::Progress { done, total }, Some(f), _) => {
                        callbacks.push(Callback::Progress(f, *done, *total))
                    }
                    (TransferEvent::Progress { .. }, None, _) => {}
                    (_, _, Some(f)) => callbacks.push(Callback::Event(f, ev.clone())),
                    _ => {}
                }
                if ev.is_final() || matches!(ev, TransferEvent::Offer(_)) {
                    if st.transfer_news.len() == NEWS_KEPT {
                        st.transfer_news.pop_front();
                    }
                    st.transfer_news.push_back((id, ev.clone()));
                    st.news_count += 1;
                }
                if ev.is_final() {
                    st.callbacks = (None, None);
                }
                if self.delegated {
                    self.deliver(st, Event::Transfer(ev));
                }
            }
        }
    }

    fn driver_finished(&self, suspended: bool) {
        {
            let mut st = self.lock();
            st.driver_finished = true;
            if suspended && st.closed.is_none() {
                st.closed = Some(Err(Error::Closed));
            }
            // A transfer still stopping delivers `Closed` (and ends the stream) itself.
            if st.pending_closed.is_none() {
                *self.delegate.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if st.closed.is_none() {
                    st.closed = Some(Err(Error::Internal("the driver stopped".into())));
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Wait until `f` yields a value.
    async fn wait<T>(&self, mut f: impl FnMut(&mut State) -> Option<Result<T>>) -> Result<T> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = f(&mut self.lock()) {
                return r;
            }
            notified.await;
        }
    }
}

impl EventSink for Shared {
    fn dispatch(&self, ev: session::Event) {
        self.dispatch_event(ev);
    }

    fn finished(&self, suspended: bool) {
        self.driver_finished(suspended);
    }

    fn pending_events(&self) -> Vec<Event> {
        let taken = self.taken.load(Ordering::SeqCst);
        let journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        journal
            .entries
            .iter()
            .filter(|(n, _)| *n > taken)
            .map(|(_, ev)| ev.clone())
            .collect()
    }
}

fn run_callbacks(callbacks: Vec<Callback>) {
    for c in callbacks {
        match c {
            Callback::Progress(f, done, total) => f(done, total),
            Callback::Event(f, ev) => f(&ev),
        }
    }
}

struct Handle {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    delegated: bool,
    /// The mailbox server's URL (saved by `serialize`).
    relay_url: String,
}

/// A wormhole: one side of a secure, ordered record pipe to the peer holding the same code.
///
/// Cloning gives another handle to the same wormhole; it is cancelled when the last handle
/// (including input helpers) is dropped.
#[derive(Clone)]
pub struct Wormhole {
    h: Arc<Handle>,
}

impl std::fmt::Debug for Wormhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wormhole(..)")
    }
}

fn validate_relay_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| {
            Error::InvalidArgument("the relay URL must start with ws:// or wss://".into())
        })?;
    #[cfg(not(feature = "tls"))]
    if url.starts_with("wss://") {
        return Err(Error::InvalidArgument(
            "wss:// needs wormhole-core's \"tls\" feature".into(),
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::InvalidArgument("the relay URL has no host".into()));
    }
    url.parse::<tokio_tungstenite::tungstenite::http::Uri>()
        .map_err(|e| Error::InvalidArgument(format!("invalid relay URL: {e}")))?;
    Ok(())
}

impl Wormhole {
    /// Create a deferred-mode wormhole and start connecting to `relay_url` (`ws://…/v1`
    /// or `wss://…/v1`). Returns at once; connection failures surface through the getters
    /// and `close()` as [`Error::ServerConnection`].
    pub fn create(appid: &str, relay_url: &str, options: Options) -> Result<Wormhole> {
        Self::start(appid, relay_url, options, None)
    }

    /// Create a delegated-mode wormhole: every event arrives on the returned stream, and
    /// the `get_*` methods are unavailable.
    pub fn create_delegated(
        appid: &str,
        relay_url: &str,
        options: Options,
    ) -> Result<(Wormhole, Events)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let taken = Arc::new(AtomicU64::new(0));
        let w = Self::start(appid, relay_url, options, Some((tx, taken.clone())))?;
        Ok((
            w,
            Events {
                rx,
                taken,
                count_here: true,
            },
        ))
    }

    /// Continue a wormhole saved by [`Wormhole::serialize`] (in this process or another):
    /// a delegated-mode wormhole that connects to the same mailbox server, binds with the
    /// same side and carries on. The events that were not taken when it was saved come
    /// first on the new stream; the peer sees nothing unusual.
    ///
    /// `options` gives everything but what the wormhole was made with (`app_versions`,
    /// `client_version` come from `data`). A `data` that is not a serialized wormhole, of
    /// another version, or damaged is refused with [`Error::InvalidArgument`] saying why
    /// (never quoting it: it holds secrets).
    ///
    /// Restoring the same data twice gives two wormholes with one side: the server and the
    /// peer see one client that reconnected, and each message of ours reaches the peer
    /// once, but the two copies share the peer's messages. Keep one.
    pub fn from_serialized(data: &str, options: Options) -> Result<(Wormhole, Events)> {
        let value: Value = serde_json::from_str(data).map_err(|_| {
            Error::InvalidArgument("this is not a serialized wormhole (not JSON)".into())
        })?;
        if value.get("format").and_then(Value::as_str) != Some(SERIALIZED_FORMAT) {
            return Err(Error::InvalidArgument(
                "this is not a serialized wormhole".into(),
            ));
        }
        let version = value.get("version").and_then(Value::as_u64);
        if version != Some(session::SNAPSHOT_VERSION) {
            return Err(Error::InvalidArgument(format!(
                "the serialized wormhole is of version {}; this library reads version {}",
                version.map_or_else(|| "(none)".to_owned(), |v| v.to_string()),
                session::SNAPSHOT_VERSION
            )));
        }
        let saved: Serialized = serde_json::from_value(value).map_err(|e| {
            Error::InvalidArgument(format!(
                "the serialized wormhole is damaged: {}",
                session::redacted(&e)
            ))
        })?;
        validate_relay_url(&saved.relay_url)?;
        let pending = saved
            .events
            .into_iter()
            .map(SavedEvent::restore)
            .collect::<Result<Vec<_>>>()?;
        let mut options = options;
        let rng = options
            .rng
            .take()
            .unwrap_or_else(|| Box::new(rand::rngs::OsRng));
        let session = Session::restore(saved.session, rng)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let taken = Arc::new(AtomicU64::new(0));
        let w = Self::launch(
            session,
            &saved.relay_url,
            options,
            Some((tx, taken.clone())),
            pending,
        )?;
        Ok((
            w,
            Events {
                rx,
                taken,
                count_here: true,
            },
        ))
    }

    /// Journaled mode: hold every frame this wormhole would send to the server (our
    /// messages, but also claims, releases, closes) until the returned guard is dropped
    /// (or [`OutboundHold::release`]d). Holds nest.
    ///
    /// The seed's journal semantics: handle an event inside a hold, call
    /// [`Wormhole::send_message`] as needed, save the application's state together with
    /// [`Wormhole::serialize`], and only then release. If the process dies before the save,
    /// nothing of the handling reached the peer (the event is delivered again after a
    /// restore from the previous save); if it dies after, the restored wormhole sends what
    /// the save holds. Either way the peer never sees something the application forgot.
    pub fn hold_outbound(&self) -> OutboundHold {
        self.send(Command::Hold);
        OutboundHold {
            w: Some(self.clone()),
        }
    }

    /// Save this wormhole (delegated mode, no transfer running, not closing) as a string:
    /// [`Wormhole::from_serialized`] continues it, in this process or another, after any
    /// time. The string is versioned JSON.
    ///
    /// It holds the session's state as it is now, with the events delivered but not yet
    /// taken from the [`Events`] stream, which the restored wormhole delivers again. Call
    /// it when the application has handled the events it took (and save its own state
    /// with it); events taken after the call may come again after a restore.
    ///
    /// **The string holds secrets**: the session key (or, before it, the code and the seed
    /// of our SPAKE2 scalar). Anyone who reads it can read and forge this wormhole's
    /// messages. Store it like a key, and never log it.
    pub async fn serialize(&self) -> Result<String> {
        self.save(Command::Serialize).await
    }

    /// [`Wormhole::serialize`], then stop this wormhole without a word to the server, as
    /// if the process had ended: the nameplate and mailbox stay claimed, and the peer
    /// keeps waiting. Continue it with [`Wormhole::from_serialized`] (here or in another
    /// process); nothing this wormhole would still have sent is lost, the restored one
    /// sends it. Afterwards its calls fail with [`Error::Closed`], and its [`Events`]
    /// stream ends without [`Event::Closed`] (the restored wormhole delivers that).
    ///
    /// For an application the system suspends without ending it, and for one that keeps
    /// several saved wormholes without a connection each. (Dropping a wormhole instead
    /// cancels it: the peer learns it is gone.) If it fails, the wormhole runs on.
    pub async fn suspend(&self) -> Result<String> {
        let saved = self.save(Command::Suspend).await?;
        // Return once it has stopped, so that no later call of ours can still act.
        self.h
            .shared
            .wait(|st| st.driver_finished.then_some(Ok(())))
            .await?;
        Ok(saved)
    }

    async fn save(&self, command: fn(crate::command::SnapshotReply) -> Command) -> Result<String> {
        if !self.h.delegated {
            return Err(Error::InvalidArgument(
                "only a delegated-mode wormhole can be serialized".into(),
            ));
        }
        {
            let st = self.lock();
            if let Some(e) = st.closed_error() {
                return Err(e);
            }
            if !st.transfers.is_idle() || st.io.is_some() {
                return Err(Error::InvalidArgument(
                    "a wormhole cannot be serialized while a transfer runs".into(),
                ));
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(command(tx));
        let (session, pending) = rx.await.map_err(|_| Error::Closed)??;
        let events = pending
            .iter()
            .map(SavedEvent::save)
            .collect::<Result<Vec<_>>>()?;
        let relay_url = self.h.relay_url.clone();
        serde_json::to_string(&Serialized {
            format: SERIALIZED_FORMAT.to_owned(),
            version: session::SNAPSHOT_VERSION,
            relay_url,
            session,
            events,
        })
        .map_err(|e| Error::Internal(format!("cannot write the serialized wormhole: {e}")))
    }

    fn start(
        appid: &str,
        relay_url: &str,
        options: Options,
        delegate: Option<(mpsc::UnboundedSender<Event>, Arc<AtomicU64>)>,
    ) -> Result<Wormhole> {
        if appid.is_empty() {
            return Err(Error::InvalidArgument(
                "the app id must not be empty".into(),
            ));
        }
        if !options.app_versions.is_object() {
            return Err(Error::InvalidArgument(
                "app_versions must be a JSON object".into(),
            ));
        }
        let mut options = options;
        let rng = options
            .rng
            .take()
            .unwrap_or_else(|| Box::new(rand::rngs::OsRng));
        let session = Session::new(
            SessionConfig {
                appid: appid.to_owned(),
                app_versions: std::mem::take(&mut options.app_versions),
                client_version: options.client_version.clone(),
                dilation: options.dilation,
            },
            rng,
        );
        Self::launch(session, relay_url, options, delegate, Vec::new())
    }

    /// Starts the driver of `session` (new or restored); `pending` events are delivered
    /// first.
    fn launch(
        session: Session,
        relay_url: &str,
        options: Options,
        delegate: Option<(mpsc::UnboundedSender<Event>, Arc<AtomicU64>)>,
        pending: Vec<Event>,
    ) -> Result<Wormhole> {
        validate_relay_url(relay_url)?;
        let mut options = options;
        if let Some(tor) = &options.tor {
            tor.check_mailbox_url(relay_url)?;
            options.proxy = Some(tor.socks().clone());
        }
        let engine = match options.engine {
            Some(e) => e,
            None => Engine::global()?,
        };
        let delegated = delegate.is_some();
        let (delegate, taken) = match delegate {
            Some((tx, taken)) => (Some(tx), taken),
            None => (None, Arc::new(AtomicU64::new(0))),
        };
        // What a restored session already knows (for the code rule, `derive_key` and
        // transfers).
        let mut state = State {
            code_chosen: session.code_chosen(),
            code: session.code().map(str::to_owned),
            key: session.key().cloned(),
            ..State::default()
        };
        if session.is_verified() {
            state.verifier = session.key().map(|k| key::derive_verifier(&k.0));
        }
        let verified = state.verifier.is_some();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Notify::new(),
            delegate: Mutex::new(delegate),
            delegated,
            journal: Mutex::new(Journal::default()),
            taken,
            welcome_handler: options.welcome_handler,
            commands: tx.downgrade(),
            runtime: engine.handle(),
            proxy: options.proxy.clone(),
            tor: options.tor.clone(),
            dilation: session.dilation(),
        });
        let cfg = DriverConfig {
            url: relay_url.to_owned(),
            connect_timeout: options.connect_timeout,
            close_timeout: options.close_timeout,
            keepalive: options.keepalive_interval.max(Duration::from_millis(100)),
            trace: options.state_trace,
            proxy: options.proxy,
        };
        if verified {
            let _ = shared.transfer_input(Input::Verified);
        }
        {
            let mut st = shared.lock();
            for ev in pending {
                shared.deliver(&mut st, ev);
            }
        }
        // The engine stays alive while the driver runs: the task holds a clone.
        let engine2 = engine.clone();
        engine.handle().spawn({
            let shared = shared.clone();
            async move {
                driver::run(cfg, session, shared, rx).await;
                drop(engine2);
            }
        });
        Ok(Wormhole {
            h: Arc::new(Handle {
                shared,
                commands: tx,
                delegated,
                relay_url: relay_url.to_owned(),
            }),
        })
    }

    fn send(&self, cmd: Command) {
        // If the driver has finished, the command is moot; state already says closed.
        let _ = self.h.commands.send(cmd);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.h.shared.lock()
    }

    fn take_code_source(&self, st: &mut State) -> Result<()> {
        if let Some(e) = st.closed_error() {
            return Err(e);
        }
        if st.code_chosen {
            return Err(Error::OnlyOneCode);
        }
        st.code_chosen = true;
        Ok(())
    }

    /// Allocate a nameplate on the server and generate a code of `length` random words
    /// (default 2). The code arrives via [`Wormhole::get_code`] / [`Event::Code`].
    pub fn allocate_code(&self, length: usize) -> Result<()> {
        if length > code::MAX_CODE_LENGTH {
            return Err(Error::InvalidArgument(format!(
                "code length must be at most {}",
                code::MAX_CODE_LENGTH
            )));
        }
        self.take_code_source(&mut self.lock())?;
        self.send(Command::Allocate(length));
        Ok(())
    }

    /// Use a complete code (typed by the user, or agreed offline). An invalid code is
    /// [`Error::InvalidCode`] and nothing is sent.
    pub fn set_code(&self, code: &str) -> Result<()> {
        code::validate_code(code)?;
        self.take_code_source(&mut self.lock())?;
        self.send(Command::SetCode(code.to_owned()));
        Ok(())
    }

    /// Start interactive code entry; see [`InputHelper`].
    pub fn input_code(&self) -> Result<InputHelper> {
        {
            let mut st = self.lock();
            self.take_code_source(&mut st)?;
            st.input = Some(InputState::default());
        }
        self.send(Command::StartInput);
        Ok(InputHelper { w: self.clone() })
    }

    async fn wait_for<T>(&self, mut f: impl FnMut(&mut State) -> Option<T>) -> Result<T> {
        if self.h.delegated {
            return Err(Error::InvalidArgument(
                "this wormhole is in delegated mode: read its event stream".into(),
            ));
        }
        self.h
            .shared
            .wait(|st| match f(st) {
                Some(v) => Some(Ok(v)),
                None => st.closed_error().map(Err),
            })
            .await
    }

    /// The server's welcome message (its `motd` etc.).
    pub async fn get_welcome(&self) -> Result<Map<String, Value>> {
        self.wait_for(|st| st.welcome.clone()).await
    }

    /// The code, once allocated, set or input.
    pub async fn get_code(&self) -> Result<String> {
        self.wait_for(|st| st.code.clone()).await
    }

    /// The SPAKE2 key, before the peer has proved it has it.
    pub async fn get_unverified_key(&self) -> Result<Key> {
        self.wait_for(|st| st.key.clone()).await
    }

    /// The verifier (a hash of the key both sides can compare), once the peer's first
    /// message decrypted.
    pub async fn get_verifier(&self) -> Result<[u8; 32]> {
        self.wait_for(|st| st.verifier).await
    }

    /// The peer's `app_versions`.
    pub async fn get_versions(&self) -> Result<Value> {
        self.wait_for(|st| st.versions.clone()).await
    }

    /// The next application message from the peer. Each message is returned exactly once,
    /// in order, and concurrent calls are served in the order they were made (the turn is
    /// taken when this is called, not when the future is first polled; a future dropped
    /// unserved gives its turn up). After the wormhole closed, pending and later calls fail
    /// once the queued messages are taken.
    pub fn get_message(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<u8>>> + Send + 'static {
        let ticket = {
            let mut st = self.lock();
            st.next_ticket += 1;
            st.next_ticket - 1
        };
        let turn = Turn {
            w: self.clone(),
            ticket,
            done: false,
        };
        async move {
            let mut turn = turn;
            let r = turn
                .w
                .clone()
                .wait_for(|st| {
                    st.skip_abandoned_turns();
                    if st.serving != ticket {
                        return None;
                    }
                    let m = st.messages.pop_front()?;
                    st.serving += 1;
                    Some(m)
                })
                .await;
            turn.done = r.is_ok();
            // The next turn may already have its message queued: let it look again.
            turn.w.h.shared.changed.notify_waiters();
            r
        }
    }

    /// Queue a message for the peer. Allowed before the key exists; messages are
    /// encrypted and posted, in order, once the peer is verified.
    pub fn send_message(&self, msg: impl Into<Vec<u8>>) -> Result<()> {
        let st = self.lock();
        if let Some(e) = st.closed_error() {
            return Err(e);
        }
        drop(st);
        self.send(Command::Send(msg.into()));
        Ok(())
    }

    /// Dilate the wormhole (PROTOCOL §9; the reference's `w.dilate()`): grow a durable,
    /// encrypted connection to the peer, direct or through a transit relay, that carries
    /// any number of [`Subchannel`](crate::dilation::handle::Subchannel)s and survives
    /// lost connections without losing a byte. Returns at once; the connection is made
    /// once the peer dilates too (the peer must have offered Dilation: a wormhole created
    /// with [`Options::dilation`], or the reference's `dilation=True`).
    ///
    /// Errors: [`Error::InvalidState`] when the wormhole was created without
    /// [`Options::dilation`], when called a second time, or once the wormhole closed;
    /// [`Error::InvalidArgument`] for a bad relay.
    pub fn dilate(
        &self,
        options: crate::dilation::handle::DilationOptions,
    ) -> Result<crate::dilation::handle::Dilated> {
        use crate::dilation::handle::{Dilated, Link};
        let shared = &self.h.shared;
        if !shared.dilation {
            return Err(Error::InvalidState(
                "dilate() needs a wormhole created with Options::dilation".into(),
            ));
        }
        let relay = options
            .relay
            .as_deref()
            .map(crate::transit::DirectHint::parse_helper)
            .transpose()?;
        let side = options
            .side
            .as_deref()
            .map(crate::dilation::keys::DilationSide::parse)
            .transpose()?;
        let mut st = self.lock();
        if let Some(e) = st.closed_error() {
            return Err(e);
        }
        if matches!(st.dilation, DilationLink::Running(_)) {
            return Err(Error::InvalidState("dilate() can be called once".into()));
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let (writes, writes_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            control: control.clone(),
            writes,
            window: Arc::new(tokio::sync::Semaphore::new(
                crate::dilation::handle::WRITE_WINDOW,
            )),
            unread: Arc::default(),
            listening: Default::default(),
            // A delegated wormhole has one event stream: poll mode's wake-ups go there.
            ready: if self.h.delegated {
                let shared = shared.clone();
                Arc::new(move |r| shared.deliver_dilation(Event::DilationReady(r)))
            } else {
                Arc::new(|_| {})
            },
        });
        let early = std::mem::replace(&mut st.dilation, DilationLink::Running(control.clone()));
        if let DilationLink::Early { can_dilate, bodies } = early {
            use crate::dilation::handle::Control;
            if let Some(list) = can_dilate {
                let _ = control.send(Control::PeerVersion {
                    can_dilate: list,
                    key: st.key_bytes(),
                });
            }
            for b in bodies {
                let _ = control.send(Control::PeerBody(b));
            }
        }
        drop(st);
        let parts = crate::dilation::driver::DriverParts {
            options: crate::dilation::manager::DilateOptions {
                relay: relay.map(|r| vec![r]),
                no_listen: options.no_listen || shared.proxy.is_some(),
                ping_interval: options.ping_interval,
                generation_timeout: options.generation_timeout,
                side,
            },
            commands: shared.commands.clone(),
            proxy: shared.proxy.clone(),
            link: link.clone(),
            control: control_rx,
            writes: writes_rx,
            // A delegated wormhole has one event stream: status events go there.
            events: if self.h.delegated {
                let shared = shared.clone();
                Box::new(move |ev| shared.deliver_dilation(Event::Dilation(ev)))
            } else {
                Box::new(move |ev| {
                    let _ = events.send(ev);
                })
            },
        };
        shared.runtime.spawn(crate::dilation::driver::run(parts));
        Ok(Dilated {
            link,
            events: tokio::sync::Mutex::new(events_rx),
            _wormhole: Box::new(self.clone()),
        })
    }

    /// Derive an application key: `HKDF(key, length, purpose)`. [`Error::NoKey`] before the
    /// key exists.
    pub fn derive_key(&self, purpose: &str, length: usize) -> Result<Vec<u8>> {
        let key = self.lock().key.clone().ok_or(Error::NoKey)?;
        key::derive_key(&key.0, &key::to_bytes(purpose), length)
    }

    /// Close: release the nameplate, close the mailbox, and report the outcome: `Ok` when
    /// happy, otherwise [`Error::Lonely`], [`Error::WrongPassword`], [`Error::Welcome`],
    /// [`Error::Server`], … Calling it again returns the same outcome.
    pub async fn close(&self) -> Result<()> {
        self.send(Command::Close);
        self.h.shared.wait(|st| st.closed.clone()).await
    }

    /// Start closing without waiting: like [`Wormhole::close`], whose outcome arrives as
    /// [`Event::Closed`] (delegated mode) or from `close()` / [`Wormhole::closed_result`].
    pub fn begin_close(&self) {
        self.send(Command::Close);
    }

    /// Cancel: like `close()` without waiting, and the outcome is [`Error::Cancelled`]
    /// unless the wormhole had already finished.
    pub fn cancel(&self) {
        self.send(Command::Cancel);
    }

    /// The outcome if the wormhole has closed, without waiting.
    pub fn closed_result(&self) -> Option<Result<()>> {
        self.lock().closed.clone()
    }

    // ----- transfers (PROTOCOL §8): one at a time, on either delivery mode -----

    /// Start a transfer; `source` and `opts` only for file transfers.
    pub(crate) fn start_transfer(
        &self,
        kind: Kind,
        text: Option<String>,
        source: Option<Source>,
        opts: Option<TransferOptions>,
    ) -> Result<u64> {
        let shared = &self.h.shared;
        let mut callbacks = Vec::new();
        let r = {
            let mut st = shared.lock();
            let every = opts
                .as_ref()
                .map_or(machine::PROGRESS_INTERVAL, |o| o.progress_interval);
            let start = Input::Start(kind, text, every);
            let (id, outputs) = st.transfers.handle(start, Instant::now())?;
            if let Some(mut opts) = opts {
                if opts.transit.proxy.is_none() {
                    opts.transit.proxy = shared.proxy.clone();
                }
                if shared.tor.is_some() {
                    opts.transit.tor = true;
                    if opts.transit.onion.is_none() {
                        opts.transit.onion = shared.tor.clone();
                    }
                }
                st.callbacks = (opts.progress.clone(), opts.events.clone());
                let weak: Weak<Shared> = Arc::downgrade(shared);
                let report = Arc::new(move |r| {
                    if let Some(s) = weak.upgrade() {
                        let _ = s.transfer_input(Input::Io(id, r));
                    }
                });
                st.io = Some((id, io::spawn(&shared.runtime, source, opts, report)));
            } else {
                st.callbacks = (None, None);
            }
            for out in outputs {
                shared.perform(&mut st, out, &mut callbacks);
            }
            // Deferred mode: messages that arrived before the transfer started and were
            // not taken by `get_message` belong to it (the peer may have sent its offer
            // before we asked). Delegated mode delivered them as `Message` events already.
            while st.transfers.wants_messages() {
                let Some(m) = st.messages.pop_front() else {
                    break;
                };
                let _ = shared.transfer_locked(&mut st, Input::PeerMessage(m), &mut callbacks);
            }
            Ok(id)
        };
        run_callbacks(callbacks);
        shared.changed.notify_waiters();
        r
    }

    /// Send `text` the way `wormhole send --text` does. Returns at once; the outcome is
    /// [`TransferEvent::TextSent`] (on the event stream in delegated mode; awaitable with
    /// [`crate::text::send_text`]). Errors: [`Error::InProgress`] while another transfer
    /// runs, the close outcome once closed.
    pub fn start_send_text(&self, text: &str) -> Result<()> {
        self.start_transfer(Kind::SendText, Some(text.to_owned()), None, None)
            .map(drop)
    }

    /// Wait for a text the way `wormhole receive --only-text` does; the outcome is
    /// [`TransferEvent::TextReceived`]. A file or directory offer is refused with the
    /// reference's `unknown offer type`. While it runs, the peer's messages belong to it.
    pub fn start_receive_text(&self) -> Result<()> {
        self.start_transfer(Kind::ReceiveText, None, None, None)
            .map(drop)
    }

    /// Send the file or directory at `path` the way `wormhole send PATH` does: once the
    /// key is verified, offer it, connect Transit and stream it (a directory is zipped
    /// while it streams). Events: [`TransferEvent::Connected`], `Progress`, `DataSent`,
    /// then [`TransferEvent::FileSent`]. [`Error::InvalidArgument`] at once when `path`
    /// does not exist.
    pub fn start_send_file(&self, path: &Path, opts: TransferOptions) -> Result<()> {
        std::fs::metadata(path)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        let source = Source::Path(path.to_owned());
        self.start_transfer(Kind::SendFile, None, Some(source), Some(opts))
            .map(drop)
    }

    /// Receive whatever the sender offers, the way `wormhole receive` does: text is
    /// acknowledged and reported as [`TransferEvent::TextReceived`]; a file or directory
    /// is reported as [`TransferEvent::Offer`], then [`Wormhole::accept_offer`] or
    /// [`Wormhole::reject_offer`]; the end is [`TransferEvent::FileReceived`].
    pub fn start_receive_file(&self, opts: TransferOptions) -> Result<()> {
        self.start_transfer(Kind::ReceiveFile, None, None, Some(opts))
            .map(drop)
    }

    /// The offer waiting for [`Wormhole::accept_offer`] or [`Wormhole::reject_offer`].
    pub fn pending_offer(&self) -> Option<OfferInfo> {
        self.lock()
            .transfers
            .pending_offer()
            .map(|(_, o)| o.clone())
    }

    /// Replace the progress callback of transfer `id` (when `progress` is set).
    pub(crate) fn set_progress(&self, id: u64, progress: Option<ProgressFn>) {
        let mut st = self.lock();
        if progress.is_some() && st.transfers.current() == Some(id) {
            st.callbacks.0 = progress;
        }
    }

    pub(crate) fn current_transfer(&self) -> Option<u64> {
        self.lock().transfers.current()
    }

    pub(crate) fn pending_offer_id(&self) -> Option<u64> {
        self.lock().transfers.pending_offer().map(|(id, _)| id)
    }

    /// Accept the pending offer into exactly `dest` (see [`OfferInfo::destination`]):
    /// nothing existing is replaced unless `overwrite` (and never a directory, or by a
    /// directory); free space is checked first; data goes to a hidden temporary name
    /// renamed into place once complete. A destination that fails the checks ends the
    /// transfer with [`Error::Transfer`] and the sender is told `transfer rejected`.
    /// [`Error::InvalidState`] when no offer waits.
    pub fn accept_offer(&self, dest: &Path, overwrite: bool) -> Result<()> {
        self.h
            .shared
            .transfer_input(Input::Accept {
                dest: dest.to_owned(),
                overwrite,
            })
            .map(drop)
    }

    /// Reject the pending offer: the sender is told `transfer rejected`, and the transfer
    /// ends with [`Error::Cancelled`]. [`Error::InvalidState`] when no offer waits.
    pub fn reject_offer(&self) -> Result<()> {
        self.h.shared.transfer_input(Input::Reject).map(drop)
    }

    /// Cancel the running transfer at any stage: Transit is closed (the peer sees it
    /// drop), a partial download removed, a waiting offer rejected; it ends with
    /// [`Error::Cancelled`]. The wormhole stays open. Harmless when nothing runs.
    pub fn cancel_transfer(&self) {
        let _ = self.h.shared.transfer_input(Input::Cancel);
    }

    /// Wait for news of transfer `id`: its offer or its final event (any mode).
    pub(crate) async fn transfer_news(&self, id: u64, offer_too: bool) -> Result<TransferEvent> {
        self.h
            .shared
            .wait(|st| {
                let i = st.transfer_news.iter().position(|(i, ev)| {
                    *i == id
                        && (ev.is_final() || offer_too && matches!(ev, TransferEvent::Offer(_)))
                });
                match i {
                    Some(i) => st.transfer_news.remove(i).map(|(_, ev)| Ok(ev)),
                    // The final event comes before `closed`: none will come now.
                    None => st.closed_error().map(Err),
                }
            })
            .await
    }
}

/// A hold on a wormhole's outbound frames (see [`Wormhole::hold_outbound`]); dropping it
/// releases them.
#[must_use = "the frames are released when the hold is dropped"]
pub struct OutboundHold {
    w: Option<Wormhole>,
}

impl OutboundHold {
    /// Release the held frames now (the same as dropping the hold).
    pub fn release(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if let Some(w) = self.w.take() {
            w.send(Command::Release);
        }
    }
}

impl Drop for OutboundHold {
    fn drop(&mut self) {
        self.end();
    }
}

impl std::fmt::Debug for OutboundHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundHold(..)")
    }
}

/// Interactive code entry with completion (the seed's input helper), from
/// [`Wormhole::input_code`].
#[derive(Clone, Debug)]
pub struct InputHelper {
    w: Wormhole,
}

impl InputHelper {
    fn with_input<T>(&self, f: impl FnOnce(&mut InputState) -> Result<T>) -> Result<T> {
        let mut st = self.w.lock();
        let input = st
            .input
            .as_mut()
            .ok_or_else(|| Error::Internal("input state missing".into()))?;
        f(input)
    }

    /// Ask the server for the current nameplates. [`Error::AlreadyChoseNameplate`] after
    /// [`InputHelper::choose_nameplate`].
    pub fn refresh_nameplates(&self) -> Result<()> {
        self.with_input(|i| match i.nameplate {
            Some(_) => Err(Error::AlreadyChoseNameplate),
            None => Ok(()),
        })?;
        self.w.send(Command::RefreshNameplates);
        Ok(())
    }

    /// Completions for a nameplate prefix, each with the trailing `-`, from the last list
    /// received.
    pub fn get_nameplate_completions(&self, prefix: &str) -> Result<BTreeSet<String>> {
        self.with_input(|i| match i.nameplate {
            Some(_) => Err(Error::AlreadyChoseNameplate),
            None => Ok(nameplate_completions(&i.nameplates, prefix)),
        })
    }

    /// Commit the nameplate and claim it. Only once; [`Error::InvalidCode`] if not numeric.
    pub fn choose_nameplate(&self, nameplate: &str) -> Result<()> {
        self.with_input(|i| {
            if i.nameplate.is_some() {
                return Err(Error::AlreadyChoseNameplate);
            }
            validate_nameplate(nameplate)?;
            i.nameplate = Some(nameplate.to_owned());
            Ok(())
        })?;
        self.w.send(Command::ChooseNameplate(nameplate.to_owned()));
        Ok(())
    }

    /// Resolves once the chosen nameplate is claimed and word completion works.
    pub async fn when_wordlist_is_available(&self) -> Result<()> {
        self.w
            .h
            .shared
            .wait(|st| {
                if st.input.as_ref().is_some_and(|i| i.claimed) {
                    Some(Ok(()))
                } else {
                    st.closed_error().map(Err)
                }
            })
            .await
    }

    /// Completions for the words typed so far (`"opulent-pr"`). Empty until the wordlist
    /// is available.
    pub fn get_word_completions(&self, prefix: &str) -> Result<BTreeSet<String>> {
        self.with_input(|i| {
            if i.nameplate.is_none() {
                return Err(Error::MustChooseNameplateFirst);
            }
            if i.words_chosen {
                return Err(Error::AlreadyChoseWords);
            }
            if !i.claimed {
                return Ok(BTreeSet::new());
            }
            Ok(word_completions(prefix, code::DEFAULT_CODE_LENGTH))
        })
    }

    /// Commit the words (`"purple-sausages"`): the code becomes `nameplate-words`.
    pub fn choose_words(&self, words: &str) -> Result<()> {
        self.with_input(|i| {
            if i.nameplate.is_none() {
                return Err(Error::MustChooseNameplateFirst);
            }
            if i.words_chosen {
                return Err(Error::AlreadyChoseWords);
            }
            if words.contains(' ') {
                return Err(Error::InvalidCode("the code contains a space"));
            }
            i.words_chosen = true;
            Ok(())
        })?;
        self.w.send(Command::ChooseWords(words.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Wormhole>();
        check::<InputHelper>();
        check::<Events>();
        check::<Engine>();
    }

    /// Dilation is offered only when asked for: by default the `version` message stays
    /// `{"app_versions": …}` (see the session's tests).
    #[test]
    fn dilation_is_off_by_default() {
        assert!(!Options::default().dilation);
    }
}
