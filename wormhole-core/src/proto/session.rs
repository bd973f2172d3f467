//! The client protocol as one deterministic state machine, with no I/O, clock or global RNG.
//!
//! [`Session`] combines the reference client's sub-machines (names from
//! `docs/state-machines/*.dot`): *Code* and *Allocator* (where the code comes from),
//! *Lister* (nameplate lists), *Nameplate* (claim/release), *Mailbox* (open, add, echoes,
//! re-sends), *Key* (SPAKE2 and the `version` message), *Order* (queue peer messages until
//! the key exists), *Receive* (decrypt, verify), *Send* (queue application messages until
//! verified) and *Terminator* (release + close, then stop).
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

use std::collections::{BTreeMap, HashSet, VecDeque};

use rand_core::CryptoRngCore;
use serde_json::{Map, Value};

use super::code::{generate_words, validate_code, validate_nameplate};
use super::key::{self, Key, Pake, PakeError};
use super::wire::{ClientMessage, HexBytes, MailboxMessage, Mood, ServerMessage};
use crate::error::{Error, Result};

/// At most this many peer messages are held while the key does not exist yet. An honest
/// peer sends a handful (version, then its first phases) before it sees our key; a hostile
/// server or a nameplate squatter could otherwise grow the queue without limit.
pub const MAX_QUEUED_PEER_MESSAGES: usize = 1024;
/// At most this many bytes of peer message bodies are held while the key does not exist.
pub const MAX_QUEUED_PEER_BYTES: usize = 32 * 1024 * 1024;

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
    /// The session is finished: `Ok` if it closed happily. Always the last event.
    Closed(Result<()>),
}

/// Where the code comes from; at most one per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeSource {
    Allocate,
    Set,
    Input,
}

/// Nameplate sub-machine state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Nameplate {
    /// No nameplate yet (S0A).
    None,
    /// `claim` sent, `claimed` not yet received (S1A).
    Claiming(String),
    /// Claimed (S2A).
    Claimed(String),
    /// `release` sent, `released` not yet received (S3A).
    Releasing(String),
    /// Released (S4A), or never claimed and now closing.
    Released,
}

/// Terminator state: what is still outstanding before the session is done.
#[derive(Debug, Clone)]
struct Closing {
    mood: Mood,
    result: Result<()>,
    need_release: Option<String>,
    need_close: Option<String>,
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
}

/// The client protocol state machine. See the module docs for the calling contract.
pub struct Session {
    cfg: SessionConfig,
    side: String,
    rng: Box<dyn CryptoRngCore + Send>,

    connected: bool,
    /// Whether any connection was ever made: if not, the server knows nothing of us.
    ever_connected: bool,
    outbox: VecDeque<ClientMessage>,
    events: VecDeque<Event>,
    welcome_seen: bool,

    code_source: Option<CodeSource>,
    allocate_pending: Option<usize>,
    list_pending: bool,
    input_nameplate: Option<String>,
    code: Option<String>,

    nameplate: Nameplate,
    mailbox: Option<String>,
    mailbox_open: bool,
    /// Posted messages whose echo has not been seen, in posting order.
    unechoed: Vec<(String, Vec<u8>)>,
    processed_phases: HashSet<String>,
    peer_seen: bool,

    pake: Option<Pake>,
    stashed_peer_pake: Option<(String, Vec<u8>)>,
    key: Option<Key>,
    queued_peer: Vec<MailboxMessage>,
    /// Body bytes held in `queued_peer`.
    queued_peer_bytes: usize,
    verified: bool,
    send_queue: VecDeque<(String, Vec<u8>)>,
    next_send_phase: u64,
    reorder: BTreeMap<u64, Vec<u8>>,
    next_deliver: u64,

    closing: Option<Closing>,
    done: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("side", &self.side)
            .field("connected", &self.connected)
            .field("nameplate", &self.nameplate.clone())
            .field("verified", &self.verified)
            .field("done", &self.done)
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
            connected: false,
            ever_connected: false,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            welcome_seen: false,
            code_source: None,
            allocate_pending: None,
            list_pending: false,
            input_nameplate: None,
            code: None,
            nameplate: Nameplate::None,
            mailbox: None,
            mailbox_open: false,
            unechoed: Vec::new(),
            processed_phases: HashSet::new(),
            peer_seen: false,
            pake: None,
            stashed_peer_pake: None,
            key: None,
            queued_peer: Vec::new(),
            queued_peer_bytes: 0,
            verified: false,
            send_queue: VecDeque::new(),
            next_send_phase: 0,
            reorder: BTreeMap::new(),
            next_deliver: 0,
            closing: None,
            done: false,
        }
    }

    /// Our side id.
    pub fn side(&self) -> &str {
        &self.side
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<ClientMessage> {
        self.outbox.pop_front()
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once the session has finished (the `Closed` event was emitted): the driver
    /// closes the connection and stops reconnecting.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// True once closing has started (by the application or by a failure).
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Whether the session has emitted `Verifier` (the peer proved it has the key).
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// A random diagnostic frame id (4 hex chars).
    pub fn frame_id(&mut self) -> String {
        random_hex(2, &mut *self.rng)
    }

    // ----- connection -----

    /// The driver opened a WebSocket: send `bind` and re-send all outstanding state.
    pub fn connected(&mut self) {
        if self.done {
            return;
        }
        self.connected = true;
        self.ever_connected = true;
        self.outbox.clear();
        self.outbox.push_back(ClientMessage::Bind {
            appid: self.cfg.appid.clone(),
            side: self.side.clone(),
            client_version: Some(self.cfg.client_version.clone()),
        });
        if let Some(closing) = &self.closing {
            if let Some(n) = &closing.need_release {
                self.outbox.push_back(ClientMessage::Release {
                    nameplate: Some(n.clone()),
                });
            }
            if let Some(m) = &closing.need_close {
                self.outbox.push_back(ClientMessage::Close {
                    mailbox: Some(m.clone()),
                    mood: Some(closing.mood.clone()),
                });
            }
            return;
        }
        if self.allocate_pending.is_some() {
            self.outbox.push_back(ClientMessage::Allocate);
        }
        if self.list_pending {
            self.outbox.push_back(ClientMessage::List);
        }
        match &self.nameplate {
            Nameplate::Claiming(n) => self.outbox.push_back(ClientMessage::Claim {
                nameplate: n.clone(),
            }),
            Nameplate::Releasing(n) => self.outbox.push_back(ClientMessage::Release {
                nameplate: Some(n.clone()),
            }),
            _ => {}
        }
        if self.mailbox.is_some() {
            self.open_mailbox();
        }
    }

    /// The connection was lost. Nothing is forgotten; [`Session::connected`] re-sends.
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.mailbox_open = false;
        self.outbox.clear();
    }

    fn open_mailbox(&mut self) {
        let Some(mailbox) = self.mailbox.clone() else {
            return;
        };
        if !self.connected || self.mailbox_open {
            return;
        }
        self.mailbox_open = true;
        self.outbox.push_back(ClientMessage::Open { mailbox });
        for (phase, body) in &self.unechoed {
            self.outbox.push_back(ClientMessage::Add {
                phase: phase.clone(),
                body: HexBytes(body.clone()),
            });
        }
    }

    fn post(&mut self, phase: String, body: Vec<u8>) {
        if self.connected && self.mailbox_open {
            self.outbox.push_back(ClientMessage::Add {
                phase: phase.clone(),
                body: HexBytes(body.clone()),
            });
        }
        self.unechoed.push((phase, body));
    }

    // ----- code commands -----

    fn take_code_source(&mut self, source: CodeSource) -> Result<()> {
        if self.closing.is_some() {
            return Err(Error::Closed);
        }
        if self.code_source.is_some() {
            return Err(Error::OnlyOneCode);
        }
        self.code_source = Some(source);
        Ok(())
    }

    /// Ask the server for a nameplate and generate `length` words (PROTOCOL §5.3).
    pub fn allocate_code(&mut self, length: usize) -> Result<()> {
        if length > super::code::MAX_CODE_LENGTH {
            return Err(Error::InvalidArgument(format!(
                "code length must be at most {}",
                super::code::MAX_CODE_LENGTH
            )));
        }
        self.take_code_source(CodeSource::Allocate)?;
        self.allocate_pending = Some(length);
        if self.connected {
            self.outbox.push_back(ClientMessage::Allocate);
        }
        Ok(())
    }

    /// Use a complete code. An invalid code is rejected before anything is sent.
    pub fn set_code(&mut self, code: &str) -> Result<()> {
        let nameplate = validate_code(code)?.to_owned();
        self.take_code_source(CodeSource::Set)?;
        self.claim(nameplate);
        self.code_known(code.to_owned());
        Ok(())
    }

    /// Start interactive input: fetch the nameplate list.
    pub fn start_input(&mut self) -> Result<()> {
        self.take_code_source(CodeSource::Input)?;
        self.request_list();
        Ok(())
    }

    fn request_list(&mut self) {
        self.list_pending = true;
        if self.connected {
            self.outbox.push_back(ClientMessage::List);
        }
    }

    /// Input helper: ask for a fresh nameplate list.
    pub fn refresh_nameplates(&mut self) -> Result<()> {
        self.input_guard()?;
        if self.input_nameplate.is_some() {
            return Err(Error::AlreadyChoseNameplate);
        }
        self.request_list();
        Ok(())
    }

    fn input_guard(&self) -> Result<()> {
        if self.code_source != Some(CodeSource::Input) {
            return Err(Error::InvalidArgument("input_code() was not called".into()));
        }
        if self.closing.is_some() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Input helper: commit the nameplate and claim it.
    pub fn choose_nameplate(&mut self, nameplate: &str) -> Result<()> {
        self.input_guard()?;
        if self.input_nameplate.is_some() {
            return Err(Error::AlreadyChoseNameplate);
        }
        validate_nameplate(nameplate)?;
        self.input_nameplate = Some(nameplate.to_owned());
        self.claim(nameplate.to_owned());
        Ok(())
    }

    /// Input helper: commit the words; the code is `nameplate-words`.
    pub fn choose_words(&mut self, words: &str) -> Result<()> {
        self.input_guard()?;
        let Some(nameplate) = self.input_nameplate.clone() else {
            return Err(Error::MustChooseNameplateFirst);
        };
        if self.code.is_some() {
            return Err(Error::AlreadyChoseWords);
        }
        let code = format!("{nameplate}-{words}");
        if code.contains(' ') {
            return Err(Error::InvalidCode("the code contains a space"));
        }
        self.code_known(code);
        Ok(())
    }

    fn claim(&mut self, nameplate: String) {
        if self.connected {
            self.outbox.push_back(ClientMessage::Claim {
                nameplate: nameplate.clone(),
            });
        }
        self.nameplate = Nameplate::Claiming(nameplate);
    }

    fn code_known(&mut self, code: String) {
        let pake = Pake::start(&code, &self.cfg.appid, &mut *self.rng);
        let body = pake.body();
        self.pake = Some(pake);
        self.events.push_back(Event::Code(code.clone()));
        self.code = Some(code);
        self.post("pake".into(), body);
        if let Some((side, body)) = self.stashed_peer_pake.take() {
            self.got_peer_pake(&side, &body);
        }
    }

    // ----- application commands -----

    /// Queue an application message. Allowed before the key exists; it is encrypted and
    /// posted once the peer is verified. Phases are assigned now, in call order.
    pub fn send_message(&mut self, plaintext: Vec<u8>) -> Result<()> {
        if self.closing.is_some() {
            return Err(Error::Closed);
        }
        let phase = self.next_send_phase.to_string();
        self.next_send_phase += 1;
        if self.verified {
            self.encrypt_and_post(phase, &plaintext);
        } else {
            self.send_queue.push_back((phase, plaintext));
        }
        Ok(())
    }

    fn encrypt_and_post(&mut self, phase: String, plaintext: &[u8]) {
        let Some(k) = &self.key else { return };
        let pk = key::derive_phase_key(&k.0, &self.side, &phase);
        let body = key::encrypt(&pk, plaintext, &mut *self.rng);
        self.post(phase, body);
    }

    /// The application asks to close: happy if the peer was verified, lonely otherwise.
    pub fn close(&mut self) {
        if self.verified {
            self.start_closing(Mood::Happy, Ok(()));
        } else {
            self.start_closing(Mood::Lonely, Err(Error::Lonely));
        }
    }

    /// Cancel: release and close like [`Session::close`], but the result is
    /// [`Error::Cancelled`] (unless the session already had a result).
    pub fn cancel(&mut self) {
        let mood = if self.verified {
            Mood::Happy
        } else {
            Mood::Lonely
        };
        self.start_closing(mood, Err(Error::Cancelled));
    }

    /// Fail the session (e.g. first connection failed): closed at once, nothing sent.
    pub fn fail_local(&mut self, err: Error) {
        if self.done {
            return;
        }
        self.closing.get_or_insert(Closing {
            mood: Mood::Errory,
            result: Err(err),
            need_release: None,
            need_close: None,
        });
        self.finish();
    }

    /// Give up on outstanding release/close acknowledgements (e.g. a close timeout) and
    /// finish with the result already decided.
    pub fn abandon_close(&mut self) {
        if self.closing.is_some() {
            self.finish();
        }
    }

    fn start_closing(&mut self, mood: Mood, result: Result<()>) {
        if self.closing.is_some() || self.done {
            return;
        }
        // A `release` already sent on this connection is not sent again (the server allows
        // one per connection); a reconnection re-sends it.
        let release_in_flight = matches!(self.nameplate, Nameplate::Releasing(_));
        let need_release = match std::mem::replace(&mut self.nameplate, Nameplate::Released) {
            Nameplate::Claiming(n) | Nameplate::Claimed(n) | Nameplate::Releasing(n)
                if self.ever_connected =>
            {
                Some(n)
            }
            _ => None,
        };
        let need_close = self.mailbox.clone();
        if self.connected {
            if let (Some(n), false) = (&need_release, release_in_flight) {
                self.outbox.push_back(ClientMessage::Release {
                    nameplate: Some(n.clone()),
                });
            }
            if let Some(m) = &need_close {
                self.outbox.push_back(ClientMessage::Close {
                    mailbox: Some(m.clone()),
                    mood: Some(mood.clone()),
                });
            }
        }
        self.allocate_pending = None;
        self.list_pending = false;
        self.closing = Some(Closing {
            mood,
            result,
            need_release,
            need_close,
        });
        self.check_closed();
    }

    fn fail(&mut self, err: Error, mood: Mood) {
        self.start_closing(mood, Err(err));
    }

    fn check_closed(&mut self) {
        if let Some(c) = &self.closing {
            if c.need_release.is_none() && c.need_close.is_none() {
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.outbox.clear();
        let result = self
            .closing
            .as_ref()
            .map(|c| c.result.clone())
            .unwrap_or(Ok(()));
        self.events.push_back(Event::Closed(result));
    }

    // ----- server input -----

    /// Feed one parsed server message.
    pub fn handle_server(&mut self, msg: ServerMessage) {
        if self.done {
            return;
        }
        match msg {
            ServerMessage::Welcome { welcome } => self.got_welcome(welcome),
            ServerMessage::Ack { .. } | ServerMessage::Pong { .. } | ServerMessage::Unknown => {}
            ServerMessage::Nameplates { nameplates } => {
                self.list_pending = false;
                if self.closing.is_none() {
                    self.events.push_back(Event::Nameplates(
                        nameplates.into_iter().map(|n| n.id).collect(),
                    ));
                }
            }
            ServerMessage::Allocated { nameplate } => self.got_allocated(nameplate),
            ServerMessage::Claimed { mailbox } => self.got_claimed(mailbox),
            ServerMessage::Released => {
                if let Some(c) = &mut self.closing {
                    c.need_release = None;
                    self.check_closed();
                } else if matches!(self.nameplate, Nameplate::Releasing(_)) {
                    self.nameplate = Nameplate::Released;
                }
            }
            ServerMessage::Closed => {
                if let Some(c) = &mut self.closing {
                    c.need_close = None;
                    self.check_closed();
                }
            }
            ServerMessage::Message(m) => self.got_message(m),
            ServerMessage::Error { error, .. } => {
                if self.closing.is_some() {
                    // The server will not answer what we are waiting for; stop now.
                    self.finish();
                } else {
                    self.fail(Error::Server(error), Mood::Errory);
                }
            }
        }
    }

    /// The connection delivered something unusable (bad JSON, bad hex, binary frame).
    pub fn protocol_error(&mut self, err: Error) {
        if self.closing.is_some() {
            self.finish();
        } else {
            self.fail(err, Mood::Errory);
        }
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
        if !self.welcome_seen {
            self.welcome_seen = true;
            self.events.push_back(Event::Welcome(welcome));
        }
    }

    fn got_allocated(&mut self, nameplate: String) {
        let Some(length) = self.allocate_pending.take() else {
            return;
        };
        if validate_nameplate(&nameplate).is_err() {
            self.fail(
                Error::Protocol("server allocated a non-numeric nameplate".into()),
                Mood::Errory,
            );
            return;
        }
        let words = generate_words(length, &mut *self.rng);
        let code = format!("{nameplate}-{words}");
        self.claim(nameplate);
        self.code_known(code);
    }

    fn got_claimed(&mut self, mailbox: String) {
        let Nameplate::Claiming(n) = &self.nameplate else {
            return;
        };
        self.nameplate = Nameplate::Claimed(n.clone());
        if self.mailbox.is_none() {
            self.mailbox = Some(mailbox);
        }
        if self.code_source == Some(CodeSource::Input) && self.closing.is_none() {
            self.events.push_back(Event::NameplateClaimed);
        }
        self.open_mailbox();
    }

    fn got_message(&mut self, m: MailboxMessage) {
        if m.side == self.side {
            if let Some(i) = self.unechoed.iter().position(|(p, _)| *p == m.phase) {
                self.unechoed.remove(i);
            }
            return;
        }
        if self.closing.is_some() || !self.processed_phases.insert(m.phase.clone()) {
            return;
        }
        if !self.peer_seen {
            self.peer_seen = true;
            if let Nameplate::Claimed(n) = &self.nameplate {
                let n = n.clone();
                if self.connected {
                    self.outbox.push_back(ClientMessage::Release {
                        nameplate: Some(n.clone()),
                    });
                }
                self.nameplate = Nameplate::Releasing(n);
            }
        }
        if m.phase == "pake" {
            if self.pake.is_none() && self.key.is_none() {
                self.stashed_peer_pake = Some((m.side, m.body.0));
            } else {
                self.got_peer_pake(&m.side, &m.body.0);
            }
        } else if self.key.is_none() {
            self.queued_peer_bytes += m.body.0.len() + m.phase.len();
            self.queued_peer.push(m);
            if self.queued_peer.len() > MAX_QUEUED_PEER_MESSAGES
                || self.queued_peer_bytes > MAX_QUEUED_PEER_BYTES
            {
                self.queued_peer = Vec::new();
                self.fail(
                    Error::Protocol(format!(
                        "the mailbox holds more than {MAX_QUEUED_PEER_MESSAGES} messages or \
                         {} MiB for us before the key exists: a hostile server or a third \
                         party in the mailbox",
                        MAX_QUEUED_PEER_BYTES >> 20
                    )),
                    Mood::Errory,
                );
            }
        } else {
            self.got_encrypted(m);
        }
    }

    fn got_peer_pake(&mut self, _side: &str, body: &[u8]) {
        let Some(pake) = self.pake.take() else { return };
        match pake.finish(body) {
            Ok(k) => {
                self.events.push_back(Event::UnverifiedKey(k.clone()));
                let versions = serde_json::json!({ "app_versions": self.cfg.app_versions });
                let plaintext = serde_json::to_vec(&versions).unwrap_or_default();
                let pk = key::derive_phase_key(&k.0, &self.side, "version");
                let vbody = key::encrypt(&pk, &plaintext, &mut *self.rng);
                self.key = Some(k);
                self.post("version".into(), vbody);
                self.queued_peer_bytes = 0;
                for m in std::mem::take(&mut self.queued_peer) {
                    if self.closing.is_some() {
                        break;
                    }
                    self.got_encrypted(m);
                }
            }
            Err(PakeError::NoPakeV1 | PakeError::Malformed | PakeError::Reflection) => {
                self.fail(Error::WrongPassword, Mood::Scary)
            }
        }
    }

    fn got_encrypted(&mut self, m: MailboxMessage) {
        let Some(k) = &self.key else { return };
        let pk = key::derive_phase_key(&k.0, &m.side, &m.phase);
        let Some(plaintext) = key::decrypt(&pk, &m.body.0) else {
            self.fail(Error::WrongPassword, Mood::Scary);
            return;
        };
        if !self.verified {
            self.verified = true;
            self.events
                .push_back(Event::Verifier(key::derive_verifier(&k.0)));
            for (phase, pt) in std::mem::take(&mut self.send_queue) {
                self.encrypt_and_post(phase, &pt);
            }
        }
        if m.phase == "version" {
            match serde_json::from_slice::<Value>(&plaintext) {
                Ok(Value::Object(v)) => {
                    let app = v
                        .get("app_versions")
                        .cloned()
                        .unwrap_or(Value::Object(Map::new()));
                    self.events.push_back(Event::Versions(app));
                }
                _ => self.fail(
                    Error::Protocol("the peer's version message is not a JSON object".into()),
                    Mood::Errory,
                ),
            }
        } else if !m.phase.is_empty() && m.phase.bytes().all(|b| b.is_ascii_digit()) {
            let Ok(n) = m.phase.parse::<u64>() else {
                return; // absurdly large phase number: not one we will ever reach
            };
            if n >= self.next_deliver {
                self.reorder.insert(n, plaintext);
            }
            while let Some(pt) = self.reorder.remove(&self.next_deliver) {
                self.next_deliver += 1;
                self.events.push_back(Event::Message(pt));
            }
        }
        // dilate-N and unknown phases: decrypted (a failure is scary), then ignored.
    }
}

#[cfg(test)]
mod tests;
