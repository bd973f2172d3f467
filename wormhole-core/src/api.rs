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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_core::CryptoRngCore;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

use crate::driver::{self, DriverConfig};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::proto::code::{self, nameplate_completions, validate_nameplate, word_completions};
use crate::proto::key::{self, Key};
use crate::proto::session::{self, Session, SessionConfig};

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
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("app_versions", &self.app_versions)
            .field("connect_timeout", &self.connect_timeout)
            .field("close_timeout", &self.close_timeout)
            .finish_non_exhaustive()
    }
}

/// An event of a delegated-mode wormhole, in the order they happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `wormhole_got_welcome`.
    Welcome(Map<String, Value>),
    /// `wormhole_got_code`.
    Code(String),
    /// `wormhole_got_unverified_key`.
    UnverifiedKey(Key),
    /// `wormhole_got_verifier`.
    Verifier([u8; 32]),
    /// `wormhole_got_versions`.
    Versions(Value),
    /// `wormhole_got_message`.
    Message(Vec<u8>),
    /// `wormhole_closed`: `Ok` when happy. Always last.
    Closed(Result<()>),
}

/// The event stream of a delegated-mode wormhole. Ends after [`Event::Closed`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event, or `None` after `Closed`.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread. Must not be called inside an async runtime.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// Commands from handles to the driver.
pub(crate) enum Command {
    Allocate(usize),
    SetCode(String),
    StartInput,
    RefreshNameplates,
    ChooseNameplate(String),
    ChooseWords(String),
    Send(Vec<u8>),
    Close,
    Cancel,
}

impl Command {
    pub(crate) fn apply(self, s: &mut Session) {
        // Handles validate first, so these only fail if the session closed meanwhile.
        let _ = match self {
            Command::Allocate(n) => s.allocate_code(n),
            Command::SetCode(c) => s.set_code(&c),
            Command::StartInput => s.start_input(),
            Command::RefreshNameplates => s.refresh_nameplates(),
            Command::ChooseNameplate(n) => s.choose_nameplate(&n),
            Command::ChooseWords(w) => s.choose_words(&w),
            Command::Send(m) => s.send_message(m),
            Command::Close => {
                s.close();
                Ok(())
            }
            Command::Cancel => {
                s.cancel();
                Ok(())
            }
        };
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
}

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
    welcome_handler: Option<WelcomeHandler>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the state
        // itself is plain data and still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record an event from the session and wake waiters.
    pub(crate) fn dispatch(&self, ev: session::Event) {
        let public = {
            let mut st = self.lock();
            match ev {
                session::Event::Welcome(w) => {
                    st.welcome = Some(w.clone());
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
                session::Event::NameplateClaimed => {
                    if let Some(i) = &mut st.input {
                        i.claimed = true;
                    }
                    None
                }
                session::Event::UnverifiedKey(k) => {
                    st.key = Some(k.clone());
                    Some(Event::UnverifiedKey(k))
                }
                session::Event::Verifier(v) => {
                    st.verifier = Some(v);
                    Some(Event::Verifier(v))
                }
                session::Event::Versions(v) => {
                    st.versions = Some(v.clone());
                    Some(Event::Versions(v))
                }
                session::Event::Message(m) => {
                    if self.delegated {
                        Some(Event::Message(m))
                    } else {
                        st.messages.push_back(m);
                        None
                    }
                }
                session::Event::Closed(r) => {
                    st.closed = Some(r.clone());
                    Some(Event::Closed(r))
                }
            }
        };
        if let (Some(Event::Welcome(w)), Some(h)) = (&public, &self.welcome_handler) {
            h(w);
        }
        if let Some(ev) = public {
            let mut delegate = self.delegate.lock().unwrap_or_else(|p| p.into_inner());
            let last = matches!(ev, Event::Closed(_));
            if let Some(tx) = delegate.as_ref() {
                let _ = tx.send(ev);
            }
            if last {
                *delegate = None;
            }
        }
        self.changed.notify_waiters();
    }

    pub(crate) fn driver_finished(&self) {
        *self.delegate.lock().unwrap_or_else(|p| p.into_inner()) = None;
        {
            let mut st = self.lock();
            st.driver_finished = true;
            if st.closed.is_none() {
                st.closed = Some(Err(Error::Internal("the driver stopped".into())));
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

struct Handle {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    delegated: bool,
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
        let w = Self::start(appid, relay_url, options, Some(tx))?;
        Ok((w, Events { rx }))
    }

    fn start(
        appid: &str,
        relay_url: &str,
        options: Options,
        delegate: Option<mpsc::UnboundedSender<Event>>,
    ) -> Result<Wormhole> {
        if appid.is_empty() {
            return Err(Error::InvalidArgument(
                "the app id must not be empty".into(),
            ));
        }
        validate_relay_url(relay_url)?;
        if !options.app_versions.is_object() {
            return Err(Error::InvalidArgument(
                "app_versions must be a JSON object".into(),
            ));
        }
        let engine = match options.engine {
            Some(e) => e,
            None => Engine::global()?,
        };
        let rng = options.rng.unwrap_or_else(|| Box::new(rand::rngs::OsRng));
        let session = Session::new(
            SessionConfig {
                appid: appid.to_owned(),
                app_versions: options.app_versions,
                client_version: options.client_version,
            },
            rng,
        );
        let delegated = delegate.is_some();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            delegate: Mutex::new(delegate),
            delegated,
            welcome_handler: options.welcome_handler,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = DriverConfig {
            url: relay_url.to_owned(),
            connect_timeout: options.connect_timeout,
            close_timeout: options.close_timeout,
            keepalive: options.keepalive_interval.max(Duration::from_millis(100)),
        };
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
    /// in order. After the wormhole closed, pending and later calls fail.
    pub async fn get_message(&self) -> Result<Vec<u8>> {
        self.wait_for(|st| st.messages.pop_front()).await
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

    /// Cancel: like `close()` without waiting, and the outcome is [`Error::Cancelled`]
    /// unless the wormhole had already finished.
    pub fn cancel(&self) {
        self.send(Command::Cancel);
    }

    /// The outcome if the wormhole has closed, without waiting.
    pub fn closed_result(&self) -> Option<Result<()>> {
        self.lock().closed.clone()
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
}
