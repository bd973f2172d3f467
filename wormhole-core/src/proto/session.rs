//! The client protocol as deterministic state machines, with no I/O, clock or global RNG.
//!
//! [`Session`] is the reference's *Boss*: it owns the reference client's small machines
//! (names and states from its `docs/state-machines/*.dot`), one file each, and routes
//! inputs and outputs between them:
//! - [`code`] and [`allocator`]: where the code comes from; [`lister`]: nameplate lists;
//! - [`nameplate`]: claim and release; [`mailbox`]: open, post, echoes, re-sends, close;
//! - [`key`]: SPAKE2; [`order`]: peer messages held until the key exists;
//! - [`receive`]: decrypt, verify, deliver in order (application and `dilate-N` phases);
//!   [`send`]: number and encrypt ours;
//! - [`terminator`]: release + close, then stop; [`rendezvous`]: the connection as the
//!   machines see it (its timers are [`crate::proto::connector`]).
//!
//! A server message that no machine expects in its current state (a `claimed` with no
//! claim outstanding, a `released` or `closed` nobody asked for, a `message` before the
//! mailbox is open, an `allocated` twice) is a protocol error that closes the session
//! (`errory`); while closing, it ends the wait for acknowledgements. Replies to requests
//! sent before closing began are expected and dropped.
//!
//! # Driving it
//! Inputs are [`Session::connected`], [`Session::disconnected`],
//! [`Session::handle_server`] and the user commands (`allocate_code`, `set_code`,
//! `send_message`, `close`, …). **After every input, drain [`Session::poll_transmit`] and
//! [`Session::poll_event`] until they return `None`**, then check [`Session::is_done`]: when
//! it is true the connection should be shut and no reconnection attempted.
//!
//! Outbound frames are only produced while connected; on every (re)connection the machine
//! regenerates `bind` plus everything still outstanding (PROTOCOL §3.8), so nothing is lost
//! across a server restart.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;
use serde_json::{Map, Value};

use super::code::validate_code;
use super::key::{self as keys, Key};
use super::wire::{ClientMessage, MailboxMessage, Mood, ServerMessage};
use crate::dilation::keys::DILATION_VERSIONS;
use crate::error::{Error, Result};

mod allocator;
mod code;
mod hex_serde;
mod key;
mod lister;
mod mailbox;
mod nameplate;
mod order;
mod receive;
mod rendezvous;
mod send;
mod snapshot;
mod terminator;

use allocator::{Allocated, Allocator};
use code::Code;
use key::{KeyMachine, Outcome};
use lister::Lister;
use mailbox::{Mailbox, Received};
use nameplate::{Claimed, Nameplate};
use order::Order;
pub use order::{MAX_QUEUED_PEER_BYTES, MAX_QUEUED_PEER_MESSAGES};
use receive::{Output, Receive};
use rendezvous::Link;
use send::SendMachine;
use terminator::Terminator;

pub use snapshot::{SNAPSHOT_VERSION, redacted};

/// Something the application should learn about. Emitted at most once each, except
/// `Nameplates` and `Message`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server's first welcome (without `error`).
    Welcome(Map<String, Value>),
    /// The code is known (allocated, set, or fully input).
    Code(String),
    /// A `nameplates` reply, for the input helper.
    Nameplates(Vec<String>),
    /// The chosen nameplate has been claimed: word completion is now available.
    NameplateClaimed,
    /// SPAKE2 finished; the key is not yet confirmed by the peer.
    UnverifiedKey(Key),
    /// The first peer message decrypted: the peer has the same key.
    Verifier([u8; 32]),
    /// The peer's `app_versions`.
    Versions(Value),
    /// One application message, in order.
    Message(Vec<u8>),
    /// The peer's `can-dilate` list (its Dilation versions, e.g. `["ged"]`), emitted once,
    /// right after [`Event::Versions`], and only when [`SessionConfig::dilation`] is on.
    /// Empty when the peer's `version` message has no such list or it is not a JSON
    /// array; entries that are not strings are skipped. Never an error: a peer that cannot
    /// dilate is still a good peer.
    PeerCanDilate(Vec<String>),
    /// The decrypted body of one of the peer's `dilate-N` messages (PROTOCOL §9.3), for
    /// the Dilation manager. Delivered strictly in `N` order from `dilate-0`, each once,
    /// and only when [`SessionConfig::dilation`] is on.
    DilationMessage(Vec<u8>),
    /// The session is finished: `Ok` if it closed happily. Always the last event.
    Closed(Result<()>),
}

/// Static configuration of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Application id (scopes nameplates; SPAKE2 identity).
    pub appid: String,
    /// `app_versions` sent to the peer in the `version` message (a JSON object).
    pub app_versions: Value,
    /// `client_version` sent in `bind`.
    pub client_version: (String, String),
    /// Offer Dilation (PROTOCOL §9.1): our `version` message then carries `can-dilate` and
    /// `dilation-abilities` (§4.6), the session reports [`Event::PeerCanDilate`] and
    /// [`Event::DilationMessage`], and [`Session::send_dilation`] is allowed. When off (the
    /// default of the public API), the peer's `dilate-N` messages are decrypted and
    /// ignored, and nothing about Dilation is sent or reported.
    pub dilation: bool,
}

/// The `dilation-abilities` of our `version` message, in the reference's order: the
/// connection types our Dilation offers (PROTOCOL §4.6).
pub const DILATION_ABILITIES: &[&str] = &["direct-tcp-v1", "relay-v1"];

/// The client protocol state machine. See the module docs for the calling contract.
pub struct Session {
    cfg: SessionConfig,
    side: String,
    rng: Box<dyn CryptoRngCore + Send>,
    events: VecDeque<Event>,
    welcome_seen: bool,

    link: Link,
    code: Code,
    allocator: Allocator,
    lister: Lister,
    nameplate: Nameplate,
    mailbox: Mailbox,
    key: KeyMachine,
    order: Order,
    receive: Receive,
    send: SendMachine,
    terminator: Terminator,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("side", &self.side)
            .field("link", &self.link)
            .field("code", &self.code)
            .field("nameplate", &self.nameplate)
            .field("mailbox", &self.mailbox.describe())
            .field("receive", &self.receive)
            .field("terminator", &self.terminator)
            .finish_non_exhaustive()
    }
}

/// Generate a random hex string of `n` random bytes.
pub fn random_hex(n: usize, rng: &mut dyn CryptoRngCore) -> String {
    let mut b = vec![0u8; n];
    rng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Session {
    /// Create a session. The side (5 random bytes, hex) and all nonces and SPAKE2 scalars
    /// come from `rng`.
    pub fn new(cfg: SessionConfig, mut rng: Box<dyn CryptoRngCore + Send>) -> Session {
        let side = random_hex(5, &mut *rng);
        Session {
            cfg,
            side,
            rng,
            events: VecDeque::new(),
            welcome_seen: false,
            link: Link::new(),
            code: Code::new(),
            allocator: Allocator::new(),
            lister: Lister::new(),
            nameplate: Nameplate::new(),
            mailbox: Mailbox::new(),
            key: KeyMachine::new(),
            order: Order::new(),
            receive: Receive::new(),
            send: SendMachine::new(),
            terminator: Terminator::new(),
        }
    }

    /// Whether the session offers Dilation ([`SessionConfig::dilation`]).
    pub fn dilation(&self) -> bool {
        self.cfg.dilation
    }

    /// Our side id.
    pub fn side(&self) -> &str {
        &self.side
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<ClientMessage> {
        self.link.poll()
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once the session has finished (the `Closed` event was emitted): the driver
    /// closes the connection and stops reconnecting.
    pub fn is_done(&self) -> bool {
        self.terminator.is_stopped()
    }

    /// True once closing has started (by the application or by a failure).
    pub fn is_closing(&self) -> bool {
        !self.terminator.is_open()
    }

    /// Whether the session has emitted `Verifier` (the peer proved it has the key).
    pub fn is_verified(&self) -> bool {
        self.receive.is_verified()
    }

    /// Whether the code's source was chosen (`allocate_code`, `set_code`, `input_code`).
    pub fn code_chosen(&self) -> bool {
        self.code.chosen()
    }

    /// The code, once known.
    pub fn code(&self) -> Option<&str> {
        self.code.known()
    }

    /// The shared key, once SPAKE2 has finished.
    pub fn key(&self) -> Option<&Key> {
        self.receive.key()
    }

    /// Each machine's letter (the reference's `--debug-state` names, see
    /// [`crate::trace`]) and the name of its current state.
    pub fn machine_states(&self) -> Vec<(&'static str, &'static str)> {
        let boss = if self.is_done() {
            "S4_closed"
        } else if self.is_closing() {
            "S3_closing"
        } else if self.is_verified() {
            "S2_happy"
        } else if self.code.state_name() == "S4_known" {
            "S1_lonely"
        } else {
            "S0_empty"
        };
        vec![
            ("B", boss),
            ("N", self.nameplate.state_name()),
            ("M", self.mailbox.state_name()),
            ("S", self.send.state_name()),
            ("O", self.order.state_name()),
            ("K", self.key.state_name()),
            ("R", self.receive.state_name()),
            ("RC", self.link.state_name()),
            ("L", self.lister.state_name()),
            ("C", self.code.state_name()),
            ("A", self.allocator.state_name()),
            ("T", self.terminator.state_name()),
        ]
    }

    /// The session's state as versioned JSON, from which [`Session::restore`] continues it
    /// (in this process or another). Call it between inputs, once the events are drained.
    ///
    /// Refused (with [`Error::InvalidArgument`]) once closing has started, and while the
    /// code is being typed with the input helper. **The snapshot holds secrets** (the key, or
    /// the code and the seed of our SPAKE2 scalar): store it as such, and never log it.
    pub fn snapshot(&self) -> Result<Value> {
        if self.is_closing() {
            return Err(Error::InvalidArgument(
                "a closing wormhole cannot be serialized".into(),
            ));
        }
        if self.code.is_input() && self.code.state_name() != "S4_known" {
            return Err(Error::InvalidArgument(
                "a wormhole cannot be serialized while its code is being typed".into(),
            ));
        }
        let snapshot = snapshot::SnapshotRef {
            version: SNAPSHOT_VERSION,
            appid: &self.cfg.appid,
            app_versions: &self.cfg.app_versions,
            client_version: &self.cfg.client_version,
            dilation: self.cfg.dilation,
            side: &self.side,
            welcome_seen: self.welcome_seen,
            code: &self.code,
            allocator: &self.allocator,
            lister: &self.lister,
            nameplate: &self.nameplate,
            mailbox: &self.mailbox,
            key: &self.key,
            order: &self.order,
            receive: &self.receive,
            send: &self.send,
        };
        serde_json::to_value(snapshot)
            .map_err(|e| Error::InvalidArgument(format!("cannot serialize the wormhole: {e}")))
    }

    /// A session continued from a [`Session::snapshot`], disconnected: on
    /// [`Session::connected`] it binds with the same side and re-sends what it still owes
    /// (claim, open, our unacknowledged messages), and the server's replay brings what the
    /// peer sent meanwhile. New nonces come from `rng`.
    ///
    /// A snapshot of another version, or one that is not a snapshot (corrupt, altered) is
    /// refused with [`Error::InvalidArgument`] saying why; nothing of it is logged.
    pub fn restore(snapshot: Value, rng: Box<dyn CryptoRngCore + Send>) -> Result<Session> {
        let version = snapshot.get("version").and_then(Value::as_u64);
        if version != Some(SNAPSHOT_VERSION) {
            return Err(Error::InvalidArgument(match version {
                Some(v) => format!(
                    "the serialized wormhole is of version {v}; this library reads version \
                     {SNAPSHOT_VERSION}"
                ),
                None => "this is not a serialized wormhole (no version)".into(),
            }));
        }
        let s: snapshot::Snapshot = serde_json::from_value(snapshot).map_err(|e| {
            Error::InvalidArgument(format!(
                "the serialized wormhole is damaged: {}",
                snapshot::redacted(&e)
            ))
        })?;
        let valid_side = s.side.len() == 10 && s.side.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_side || s.appid.is_empty() || !s.app_versions.is_object() {
            return Err(Error::InvalidArgument(
                "the serialized wormhole is damaged: bad side, app id or app_versions".into(),
            ));
        }
        Ok(Session {
            cfg: SessionConfig {
                appid: s.appid,
                app_versions: s.app_versions,
                client_version: s.client_version,
                dilation: s.dilation,
            },
            side: s.side,
            rng,
            events: VecDeque::new(),
            welcome_seen: s.welcome_seen,
            link: Link::new(),
            code: s.code,
            allocator: s.allocator,
            lister: s.lister,
            nameplate: s.nameplate,
            mailbox: s.mailbox,
            key: s.key,
            order: s.order,
            receive: s.receive,
            send: s.send,
            terminator: Terminator::new(),
        })
    }

    /// A random diagnostic frame id (4 hex chars).
    pub fn frame_id(&mut self) -> String {
        random_hex(2, &mut *self.rng)
    }

    // ----- connection -----

    /// The driver opened a WebSocket: send `bind`, then every machine re-sends what its
    /// state still owes, in the reference's order.
    pub fn connected(&mut self) {
        if self.is_done() {
            return;
        }
        self.link.connected(ClientMessage::Bind {
            appid: self.cfg.appid.clone(),
            side: self.side.clone(),
            client_version: Some(self.cfg.client_version.clone()),
        });
        self.allocator.connected(&mut self.link);
        self.lister.connected(&mut self.link);
        self.nameplate.connected(&mut self.link);
        self.mailbox.connected(&mut self.link);
    }

    /// The connection was lost. Nothing is forgotten; [`Session::connected`] re-sends.
    pub fn disconnected(&mut self) {
        self.link.lost();
    }

    // ----- code commands -----

    fn check_open(&self) -> Result<()> {
        if self.is_closing() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Ask the server for a nameplate and generate `length` words (PROTOCOL §5.3).
    pub fn allocate_code(&mut self, length: usize) -> Result<()> {
        if length > super::code::MAX_CODE_LENGTH {
            return Err(Error::InvalidArgument(format!(
                "code length must be at most {}",
                super::code::MAX_CODE_LENGTH
            )));
        }
        self.check_open()?;
        self.code.allocate()?;
        self.allocator.allocate(&mut self.link, length);
        Ok(())
    }

    /// Use a complete code. An invalid code is rejected before anything is sent.
    pub fn set_code(&mut self, code: &str) -> Result<()> {
        validate_code(code)?;
        self.check_open()?;
        let nameplate = self.code.set(code)?;
        self.nameplate.set(&mut self.link, nameplate);
        self.code_known(code);
        Ok(())
    }

    /// Start interactive input: fetch the nameplate list.
    pub fn start_input(&mut self) -> Result<()> {
        self.check_open()?;
        self.code.start_input()?;
        self.lister.refresh(&mut self.link);
        Ok(())
    }

    /// Input helper: ask for a fresh nameplate list.
    pub fn refresh_nameplates(&mut self) -> Result<()> {
        self.code.require_input()?;
        self.check_open()?;
        self.code.can_choose_nameplate()?;
        self.lister.refresh(&mut self.link);
        Ok(())
    }

    /// Input helper: commit the nameplate and claim it.
    pub fn choose_nameplate(&mut self, nameplate: &str) -> Result<()> {
        self.code.require_input()?;
        self.check_open()?;
        self.code.choose_nameplate(nameplate)?;
        self.nameplate.set(&mut self.link, nameplate.to_owned());
        Ok(())
    }

    /// Input helper: commit the words; the code is `nameplate-words`.
    pub fn choose_words(&mut self, words: &str) -> Result<()> {
        self.code.require_input()?;
        self.check_open()?;
        let code = self.code.choose_words(words)?;
        self.code_known(&code);
        Ok(())
    }

    /// The code is known: emit it, start SPAKE2 and post our `pake`.
    fn code_known(&mut self, code: &str) {
        let Some((body, outcome)) = self.key.got_code(code, &self.cfg.appid, &mut *self.rng) else {
            return;
        };
        self.events.push_back(Event::Code(code.to_owned()));
        self.mailbox.add(&mut self.link, "pake".into(), body);
        self.key_outcome(outcome);
    }

    // ----- application commands -----

    /// Queue an application message. Allowed before the key exists; it is encrypted and
    /// posted once the peer is verified. Phases are assigned now, in call order.
    pub fn send_message(&mut self, plaintext: Vec<u8>) -> Result<()> {
        self.check_open()?;
        if let Some((phase, body)) = self.send.send(plaintext, &self.side, &mut *self.rng) {
            self.mailbox.add(&mut self.link, phase, body);
        }
        Ok(())
    }

    /// Queue a Dilation message (the JSON body of a `dilate-N` phase, PROTOCOL §9.3), as
    /// the Dilation manager asks. Phases `dilate-0`, `dilate-1`, … are assigned now, with
    /// their own counter; the message waits in the same queue as
    /// [`Session::send_message`]'s, so nothing leaves before the peer is verified and
    /// messages leave in call order. [`Error::InvalidState`] if the session was created
    /// without [`SessionConfig::dilation`], [`Error::Closed`] once closing.
    pub fn send_dilation(&mut self, body: Vec<u8>) -> Result<()> {
        if !self.cfg.dilation {
            return Err(Error::InvalidState(
                "dilation messages need a wormhole created with dilation on".into(),
            ));
        }
        self.check_open()?;
        if let Some((phase, body)) = self.send.send_dilation(body, &self.side, &mut *self.rng) {
            self.mailbox.add(&mut self.link, phase, body);
        }
        Ok(())
    }

    /// The application asks to close: happy if the peer was verified, lonely otherwise.
    pub fn close(&mut self) {
        if self.is_verified() {
            self.start_closing(Mood::Happy, Ok(()));
        } else {
            self.start_closing(Mood::Lonely, Err(Error::Lonely));
        }
    }

    /// Cancel: release and close like [`Session::close`], but the result is
    /// [`Error::Cancelled`] (unless the session already had a result).
    pub fn cancel(&mut self) {
        let mood = if self.is_verified() {
            Mood::Happy
        } else {
            Mood::Lonely
        };
        self.start_closing(mood, Err(Error::Cancelled));
    }

    /// Fail the session (e.g. first connection failed): closed at once, nothing sent.
    pub fn fail_local(&mut self, err: Error) {
        self.finish(Err(err));
    }

    /// Give up on outstanding release/close acknowledgements (e.g. a close timeout) and
    /// finish with the result already decided.
    pub fn abandon_close(&mut self) {
        if self.is_closing() {
            self.finish(Ok(()));
        }
    }

    fn start_closing(&mut self, mood: Mood, result: Result<()>) {
        if !self.terminator.close(result) {
            return;
        }
        self.allocator.close();
        self.lister.close();
        self.nameplate.close(&mut self.link);
        self.mailbox.close(&mut self.link, &mood);
        self.check_closed();
    }

    fn fail(&mut self, err: Error, mood: Mood) {
        self.start_closing(mood, Err(err));
    }

    /// The terminator's check: stop once nothing more is owed to the server.
    fn check_closed(&mut self) {
        if self.is_closing() && self.nameplate.is_done() && self.mailbox.is_done() {
            self.finish(Ok(()));
        }
    }

    /// Stop now; `fallback` is the result if closing had not started.
    fn finish(&mut self, fallback: Result<()>) {
        if let Some(result) = self.terminator.stop(fallback) {
            self.link.clear();
            self.events.push_back(Event::Closed(result));
        }
    }

    // ----- server input -----

    /// Feed one parsed server message.
    pub fn handle_server(&mut self, msg: ServerMessage) {
        if self.is_done() {
            return;
        }
        match msg {
            ServerMessage::Welcome { welcome } => self.got_welcome(welcome),
            ServerMessage::Ack { .. } | ServerMessage::Pong { .. } | ServerMessage::Unknown => {}
            ServerMessage::Nameplates { nameplates } => {
                self.lister.rx_nameplates();
                if !self.is_closing() {
                    self.events.push_back(Event::Nameplates(
                        nameplates.into_iter().map(|n| n.id).collect(),
                    ));
                }
            }
            ServerMessage::Allocated { nameplate } => {
                match self.allocator.rx_allocated(nameplate, &mut *self.rng) {
                    Allocated::Code { nameplate, code } => {
                        if self.code.allocated(&code) {
                            self.nameplate.set(&mut self.link, nameplate);
                            self.code_known(&code);
                        }
                    }
                    Allocated::Late => {}
                    Allocated::Invalid => self.protocol_error(Error::Protocol(
                        "server allocated a non-numeric nameplate".into(),
                    )),
                    Allocated::Unexpected(why) => self.unexpected("allocated", why),
                }
            }
            ServerMessage::Claimed { mailbox } => match self.nameplate.rx_claimed() {
                Claimed::Mailbox => {
                    self.mailbox.got_mailbox(&mut self.link, mailbox);
                    if self.code.is_input() && !self.is_closing() {
                        self.events.push_back(Event::NameplateClaimed);
                    }
                }
                Claimed::Late => {}
                Claimed::Unexpected => self.unexpected("claimed", self.nameplate.describe()),
            },
            ServerMessage::Released => {
                if self.nameplate.rx_released() {
                    self.check_closed();
                } else {
                    self.unexpected("released", self.nameplate.describe());
                }
            }
            ServerMessage::Closed => {
                if self.mailbox.rx_closed() {
                    self.check_closed();
                } else {
                    self.unexpected("closed", self.mailbox.describe());
                }
            }
            ServerMessage::Message(m) => match self.mailbox.rx_message(m, &self.side) {
                Received::Theirs(m) => self.got_theirs(m),
                Received::Nothing => {}
                Received::Unexpected => self.unexpected("message", self.mailbox.describe()),
            },
            ServerMessage::Error { error, .. } => {
                if self.is_closing() {
                    // The server will not answer what we are waiting for; stop now.
                    self.finish(Ok(()));
                } else {
                    self.fail(Error::Server(error), Mood::Errory);
                }
            }
        }
    }

    /// The connection delivered something unusable (bad JSON, bad hex, binary frame), or a
    /// machine got an input its state does not expect.
    pub fn protocol_error(&mut self, err: Error) {
        if self.is_closing() {
            tracing::warn!("while closing: {err}; not waiting for the server any longer");
            self.finish(Ok(()));
        } else {
            self.fail(err, Mood::Errory);
        }
    }

    fn unexpected(&mut self, what: &str, state: &str) {
        self.protocol_error(Error::Protocol(format!(
            "the server sent `{what}`, which is not expected while {state}"
        )));
    }

    fn got_welcome(&mut self, welcome: Map<String, Value>) {
        if let Some(err) = welcome.get("error") {
            let text = match err {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            self.fail(Error::Welcome(text), Mood::Unwelcome);
            return;
        }
        // The server welcomes each connection; the application hears of the first.
        if !self.welcome_seen {
            self.welcome_seen = true;
            self.events.push_back(Event::Welcome(welcome));
        }
    }

    /// A peer message seen for the first time.
    fn got_theirs(&mut self, m: MailboxMessage) {
        if self.is_closing() {
            return;
        }
        // The peer is here: the nameplate can go (repeated calls change nothing).
        self.nameplate.release(&mut self.link);
        if m.phase == "pake" {
            let outcome = self.key.got_pake(m.body.0);
            self.key_outcome(outcome);
            return;
        }
        match self.order.got_non_pake(m) {
            Ok(Some(m)) => self.receive_one(&m),
            Ok(None) => {}
            Err(e) => self.fail(e, Mood::Errory),
        }
    }

    fn key_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Waiting => {}
            Outcome::Key(k) => self.got_key(k),
            Outcome::Scared => self.fail(Error::WrongPassword, Mood::Scary),
            Outcome::Unexpected => self.protocol_error(Error::Protocol(
                "the peer sent a second `pake` message".into(),
            )),
        }
    }

    /// SPAKE2 finished: post our `version`, then decrypt what the order machine held.
    fn got_key(&mut self, k: Key) {
        self.events.push_back(Event::UnverifiedKey(k.clone()));
        let plaintext = self.versions_body();
        let pk = keys::derive_phase_key(&k.0, &self.side, "version");
        let body = keys::encrypt(&pk, &plaintext, &mut *self.rng);
        self.mailbox.add(&mut self.link, "version".into(), body);
        self.receive.got_key(k);
        for m in self.order.got_key() {
            if self.is_closing() {
                break;
            }
            self.receive_one(&m);
        }
    }

    /// The plaintext of our `version` message (PROTOCOL §4.6). Without Dilation it is
    /// `{"app_versions":…}`, exactly as before Dilation existed; with it, the keys come in
    /// the reference's order.
    fn versions_body(&self) -> Vec<u8> {
        // Serialising a JSON value (string keys) cannot fail.
        if !self.cfg.dilation {
            let versions = serde_json::json!({ "app_versions": self.cfg.app_versions });
            return serde_json::to_vec(&versions).unwrap_or_default();
        }
        #[derive(serde::Serialize)]
        struct Ability {
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(serde::Serialize)]
        struct Versions<'a> {
            #[serde(rename = "can-dilate")]
            can_dilate: &'static [&'static str],
            #[serde(rename = "dilation-abilities")]
            dilation_abilities: Vec<Ability>,
            app_versions: &'a Value,
        }
        let versions = Versions {
            can_dilate: DILATION_VERSIONS,
            dilation_abilities: DILATION_ABILITIES
                .iter()
                .map(|&kind| Ability { kind })
                .collect(),
            app_versions: &self.cfg.app_versions,
        };
        serde_json::to_vec(&versions).unwrap_or_default()
    }

    fn receive_one(&mut self, m: &MailboxMessage) {
        let mut out = Vec::new();
        let result = self.receive.got_message(m, self.cfg.dilation, &mut out);
        for o in out {
            match o {
                Output::Verified { key, verifier } => {
                    self.events.push_back(Event::Verifier(verifier));
                    for (phase, body) in self.send.got_verified_key(key, &self.side, &mut *self.rng)
                    {
                        self.mailbox.add(&mut self.link, phase, body);
                    }
                }
                Output::Versions(v) => self.events.push_back(Event::Versions(v)),
                Output::Message(pt) => self.events.push_back(Event::Message(pt)),
                Output::CanDilate(list) => self.events.push_back(Event::PeerCanDilate(list)),
                Output::Dilation(pt) => self.events.push_back(Event::DilationMessage(pt)),
            }
        }
        if let Err((err, mood)) = result {
            self.fail(err, mood);
        }
    }
}

#[cfg(test)]
mod tests;
