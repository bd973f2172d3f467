//! The Dilation manager (PROTOCOL §9.4, §9.5, §9.10, §9.11), sans-IO: start-up and
//! roles, generations of connection attempts, the selection of one connection per
//! generation, keepalive and reconnection.
//!
//! The manager owns every decision, state and timer; a driver owns the listener, the TCP
//! connections (each running an L2 [`Connection`](super::connection::Connection)), the
//! mailbox and the L4 queues. Time is a parameter of every input (a virtual clock in the
//! tests), and randomness (our dilation side, PING ids) comes from an RNG passed in.
//!
//! Usage: after every input call, drain [`Manager::poll_action`] (perform each
//! [`Action`], in order) and [`Manager::poll_event`] (tell the application); then sleep
//! until [`Manager::poll_timeout`] and call [`Manager::handle_timeout`].
//!
//! States, named after the reference's manager where one exists:
//!
//! ```text
//! WAITING ──dilate() + peer version──▶ WANTING (our please sent; a peer please that came
//!    │                                    │      earlier is buffered and replayed here)
//!    │ no common version: Failed          │ peer please (sides differ; equal: Failed)
//!                                         ▼
//!            ┌─────────────────────▶ CONNECTING (generation g: Listen, relay hint + dial,
//!            │                            │        dial the peer's hints as they come)
//!            │                            │ connection_confirmed: Select, drop the rest
//!            │                            ▼
//!            │                        CONNECTED ──Leader: PING/PONG every interval
//!            │                            │
//!            │         Leader: loss / keepalive timeout  Follower: loss
//!            │                 ▼                            ▼
//!            │  FLUSHING (sent reconnect, hints     LONELY (wait for reconnect)
//!            │  ignored until reconnecting)               │
//!            └─────── reconnecting ◀┘       reconnect (also from CONNECTING/CONNECTED):
//!                                           drop everything, send reconnecting, g+1
//! any state ──stop()──▶ STOPPED (no more messages; everything dropped)
//! ```
//!
//! # Beyond the reference (each choice is tested in `manager/tests.rs`)
//!
//! - A peer `please` that arrives before ours was sent is buffered (PROTOCOL §9.4 hazard).
//! - A generation that selects no connection within [`DilateOptions::generation_timeout`]
//!   is retried: the Leader sends `reconnect` and both sides start a new generation. The
//!   reference has no timeout and hangs for good when its relay restarts (DILATION.md).
//! - The Leader sends at most one `reconnect` per generation and then waits for
//!   `reconnecting`; a loss reported for a connection it already dropped is ignored, so a
//!   keepalive drop followed by the driver's loss report does not send two.
//! - A `reconnecting` the Leader did not ask for (a duplicate, or one crossing its own
//!   `reconnect` from a peer that sends it unprompted) is ignored with a warning: it never
//!   starts an extra generation. A `reconnect` received by the Leader, or `reconnecting`
//!   received by the Follower, is ignored with a warning.
//! - Connections the driver reports for an older generation, or after a connection was
//!   selected, are dropped at once; hints that arrive outside CONNECTING are ignored.
//! - [`Action::DropConnection`] means *abort* the socket, not a graceful close: the
//!   reference's graceful close under flow control never completes and hangs
//!   (DILATION.md, "relay stalled, Leader sending").
//! - After [`Manager::stop`], every input is ignored: no message is sent while closing,
//!   even if a `reconnect` arrives then (DILATION.md).
//! - With no common version we report [`DilationError::NoCommonVersion`] and send
//!   nothing (0.24 still sends a `please` without `use-version`, which only makes the
//!   peer wait for connections that never come).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use super::keys::{DILATION_VERSIONS, DilationSide, Role, choose_version};
use super::messages::DilationMessage;
use super::{DilationError, Result};
use crate::transit::{DirectHint, Hints};

/// The reference's default keepalive interval (PROTOCOL §9.1).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a peer's relay hints wait when the same message made us dial a direct hint
/// and we listen ourselves (PROTOCOL §9.5).
pub const RELAY_DELAY: Duration = Duration::from_secs(2);
/// Default for [`DilateOptions::generation_timeout`].
pub const DEFAULT_GENERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// An opaque connection id, chosen by the driver (unique for the manager's lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// The local settings of `dilate()` (PROTOCOL §9.1).
#[derive(Debug, Clone, PartialEq)]
pub struct DilateOptions {
    /// Our transit relay (one `relay-v1` hint: alternative ways to reach it), if any.
    pub relay: Option<Vec<DirectHint>>,
    /// Do not listen (no direct hints of our own); the peer's relay hints are then
    /// dialled at once.
    pub no_listen: bool,
    /// The Leader's keepalive interval (default 30 s).
    pub ping_interval: Duration,
    /// Leader only: a generation that selected no connection after this long is given up
    /// and a new one is started with `reconnect` (the reference never gives up).
    pub generation_timeout: Duration,
    /// Our dilation side (random when unset). The larger side leads, so a test can pick
    /// the role with it.
    pub side: Option<DilationSide>,
}

impl Default for DilateOptions {
    fn default() -> Self {
        DilateOptions {
            relay: None,
            no_listen: false,
            ping_interval: DEFAULT_PING_INTERVAL,
            generation_timeout: DEFAULT_GENERATION_TIMEOUT,
            side: None,
        }
    }
}

/// How a connection reached the peer, as the driver reports it (for status only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    /// Through a transit relay.
    pub relay: bool,
    /// Accepted on our listener (otherwise we dialled).
    pub inbound: bool,
    /// The remote address (`host:port`), if the driver knows it.
    pub peer: Option<String>,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message to the peer as the next `dilate-N` phase (N counts from 0 and
    /// is the session's business).
    Send(DilationMessage),
    /// Listen on a new ephemeral TCP port for `generation` and report its direct hints
    /// with [`Manager::listening`].
    Listen {
        /// The generation the listener belongs to.
        generation: u32,
    },
    /// Dial a direct hint; on TCP connect start an L2 connection without relay handshake
    /// and report it with [`Manager::connection_made`].
    ConnectDirect {
        /// The generation the attempt belongs to.
        generation: u32,
        /// Where to connect.
        hint: DirectHint,
    },
    /// Dial a relay (any one of the alternatives); on TCP connect start an L2 connection
    /// with our dilation side in the relay handshake and report it with
    /// [`Manager::connection_made`]. Emitted when due: the 2.0 s delay of §9.5 is a
    /// manager timer.
    ConnectRelay {
        /// The generation the attempt belongs to.
        generation: u32,
        /// The relay's alternative addresses.
        hint: Vec<DirectHint>,
    },
    /// This connection won: call `Connection::select()` on it, then
    /// `reliable::Outbound::connection_selected()` and send every record it returns, in
    /// order, before any new record. KCM/PING/PONG/ACK may be sent from now on.
    Select {
        /// The chosen connection.
        id: ConnId,
    },
    /// The selected connection is no longer selected (lost or about to be dropped): call
    /// `reliable::Outbound::connection_lost()`; new records are only queued until the
    /// next [`Action::Select`]. Emitted exactly once after each `Select`.
    Deselect {
        /// The connection that was selected.
        id: ConnId,
    },
    /// Abort this connection (reset, do not close gracefully: a graceful close can hang
    /// behind flow control). No [`Manager::connection_lost`] is needed for it.
    DropConnection {
        /// The connection to abort.
        id: ConnId,
    },
    /// Stop connecting for `generation`: cancel pending dials and close its listener.
    /// Established connections are dropped separately.
    StopConnecting {
        /// The generation whose attempts end.
        generation: u32,
    },
    /// Send `PING(ping)` on the selected connection.
    SendPing {
        /// The selected connection.
        id: ConnId,
        /// The ping id.
        ping: [u8; 4],
    },
    /// Send `PONG(ping)` on this connection (the answer to a PING).
    SendPong {
        /// The connection the PING came on.
        id: ConnId,
        /// The ping id to echo.
        ping: [u8; 4],
    },
}

/// What the application may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generation of connection attempts started (1 for the first).
    Generation {
        /// Its number (local; the wire carries none).
        generation: u32,
        /// Our role, fixed for the session.
        role: Role,
    },
    /// A connection was selected for `generation` (the first one: "dilated").
    Connected {
        /// The generation.
        generation: u32,
        /// The selected connection.
        id: ConnId,
        /// How it reaches the peer.
        path: Path,
    },
    /// The connection (or the attempts) of `generation` are gone; a new generation
    /// follows (Leader: once the Follower answers; Follower: once the Leader asks).
    Reconnecting {
        /// The generation that was lost.
        generation: u32,
    },
    /// A peer message was ignored (malformed or out of place); Dilation goes on.
    Warning(DilationError),
    /// Dilation failed for good (no common version, reflection).
    Failed(DilationError),
}

/// The manager's state (reference names in capitals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// WAITING: `dilate()` or the peer's version has not arrived yet.
    Waiting,
    /// WANTING: our `please` was sent; waiting for the peer's.
    Wanting,
    /// CONNECTING: a generation's attempts run.
    Connecting,
    /// CONNECTED: a connection is selected.
    Connected,
    /// FLUSHING (Leader): `reconnect` sent, waiting for `reconnecting`.
    Flushing,
    /// LONELY (Follower): the connection is gone, waiting for `reconnect`.
    Lonely,
    /// STOPPED: [`Manager::stop`] was called.
    Stopped,
    /// Dilation failed ([`Event::Failed`] was reported).
    Failed,
}

#[derive(Debug, Clone)]
struct Conn {
    generation: u32,
    path: Path,
}

#[derive(Debug, Clone, Copy)]
struct Keepalive {
    next: Instant,
    /// The PING sent at the last tick and not answered yet (None: alive).
    outstanding: Option<[u8; 4]>,
}

/// The Dilation manager of one wormhole (see the module docs for the call order).
#[derive(Debug)]
pub struct Manager {
    state: State,
    options: Option<DilateOptions>,
    side: Option<DilationSide>,
    peer_versions: Option<Vec<String>>,
    /// A peer `please` that came before ours was sent (its side).
    early_please: Option<String>,
    role: Option<Role>,
    generation: u32,
    /// Every connection the driver reported and we did not drop.
    conns: BTreeMap<ConnId, Conn>,
    selected: Option<ConnId>,
    /// Peer relay hints waiting for their 2.0 s (current generation only).
    relay_timers: Vec<(Instant, Vec<DirectHint>)>,
    /// Leader, CONNECTING: when to give the generation up.
    generation_deadline: Option<Instant>,
    keepalive: Option<Keepalive>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Default for Manager {
    fn default() -> Self {
        Manager::new()
    }
}

impl Manager {
    /// A manager in WAITING: nothing happens before [`Manager::dilate`] and
    /// [`Manager::peer_version`].
    pub fn new() -> Manager {
        Manager {
            state: State::Waiting,
            options: None,
            side: None,
            peer_versions: None,
            early_please: None,
            role: None,
            generation: 0,
            conns: BTreeMap::new(),
            selected: None,
            relay_timers: Vec::new(),
            generation_deadline: None,
            keepalive: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our role, once both `please` messages were exchanged.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// Our dilation side, once [`Manager::dilate`] was called.
    pub fn side(&self) -> Option<&DilationSide> {
        self.side.as_ref()
    }

    /// The current generation (0 before the first).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The selected connection, if any.
    pub fn selected(&self) -> Option<ConnId> {
        self.selected
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next status event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Manager::handle_timeout`] must be called next (`None`: no timer runs).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let relays = self.relay_timers.iter().map(|(t, _)| *t);
        relays
            .chain(self.generation_deadline)
            .chain(self.keepalive.map(|k| k.next))
            .min()
    }

    /// The application called `dilate()`: pick our dilation side. A second call is an
    /// error (the reference's `CanOnlyDilateOnceError`).
    pub fn dilate(
        &mut self,
        now: Instant,
        options: DilateOptions,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<()> {
        if self.options.is_some() {
            return Err(DilationError::InvalidState("dilate() called twice".into()));
        }
        self.side = Some(
            options
                .side
                .clone()
                .unwrap_or_else(|| DilationSide::random(rng)),
        );
        self.options = Some(options);
        self.maybe_send_please(now);
        Ok(())
    }

    /// The peer's `version` message arrived, with its `can-dilate` list (empty when it
    /// has none). Only the first call counts.
    pub fn peer_version(&mut self, now: Instant, can_dilate: &[String]) {
        if self.peer_versions.is_none() {
            self.peer_versions = Some(can_dilate.to_vec());
            self.maybe_send_please(now);
        }
    }

    /// Send `please` once both `dilate()` and the peer's version are in (§9.4 step 1).
    fn maybe_send_please(&mut self, now: Instant) {
        if self.state != State::Waiting {
            return;
        }
        let (Some(side), Some(theirs)) = (&self.side, &self.peer_versions) else {
            return;
        };
        let Some(version) = choose_version(DILATION_VERSIONS, theirs) else {
            self.fail(DilationError::NoCommonVersion);
            return;
        };
        self.actions
            .push_back(Action::Send(DilationMessage::Please {
                side: side.as_str().to_owned(),
                use_version: Some(version),
            }));
        self.state = State::Wanting;
        if let Some(theirs) = self.early_please.take() {
            self.handle_please(now, theirs);
        }
    }

    fn fail(&mut self, e: DilationError) {
        self.drop_everything();
        self.state = State::Failed;
        self.events.push_back(Event::Failed(e));
    }

    fn warn(&mut self, e: DilationError) {
        self.events.push_back(Event::Warning(e));
    }

    fn unexpected(&mut self, what: &str) {
        let msg = format!("{what} while {:?}", self.state);
        self.warn(DilationError::UnexpectedMessage(msg));
    }

    /// A decrypted `dilate-N` body from the peer, in N order. A malformed body is
    /// reported as a warning and ignored.
    pub fn peer_body(&mut self, now: Instant, body: &[u8]) {
        match DilationMessage::parse(body) {
            Ok(m) => self.peer_message(now, m),
            Err(e) if matches!(self.state, State::Stopped | State::Failed) => drop(e),
            Err(e) => self.warn(e),
        }
    }

    /// A parsed `dilate-N` message from the peer, in N order.
    pub fn peer_message(&mut self, now: Instant, msg: DilationMessage) {
        match (msg, self.state) {
            (_, State::Stopped | State::Failed) => {}
            (DilationMessage::Please { side, .. }, State::Waiting) => {
                // The §9.4 hazard: the peer's please came before ours was sent. Keep it
                // and handle it right after sending ours.
                if self.early_please.is_some() {
                    self.unexpected("a second please");
                } else {
                    self.early_please = Some(side);
                }
            }
            // The peer's use-version is not checked, as in the reference.
            (DilationMessage::Please { side, .. }, State::Wanting) => self.handle_please(now, side),
            (DilationMessage::Please { .. }, _) => self.unexpected("a second please"),
            (DilationMessage::ConnectionHints { hints }, State::Connecting) => {
                self.peer_hints(now, hints)
            }
            // Hints outside CONNECTING: before the please exchange (the reference ignores
            // them), after selection (late hints of this generation), or from an old
            // generation (the Leader in FLUSHING, the Follower in LONELY). Silently.
            (DilationMessage::ConnectionHints { .. }, _) => {}
            (DilationMessage::Reconnect, s) => {
                let follower_running = self.role == Some(Role::Follower)
                    && matches!(s, State::Connecting | State::Connected | State::Lonely);
                if follower_running {
                    self.follower_reconnect(now);
                } else {
                    self.unexpected("reconnect");
                }
            }
            (DilationMessage::Reconnecting, State::Flushing) => self.start_generation(now),
            // Never start a generation we did not ask for: a duplicate or crossing
            // reconnecting (or one sent to a Follower) is only reported.
            (DilationMessage::Reconnecting, _) => self.unexpected("reconnecting"),
        }
    }

    fn handle_please(&mut self, now: Instant, theirs: String) {
        let Some(ours) = &self.side else {
            return;
        };
        match Role::from_sides(ours, &theirs) {
            Ok(role) => {
                self.role = Some(role);
                self.start_generation(now);
            }
            Err(e) => self.fail(e),
        }
    }

    fn options(&self) -> DilateOptions {
        self.options.clone().unwrap_or_default()
    }

    /// Start generation `g+1` (§9.5): listen, announce and dial our relay.
    fn start_generation(&mut self, now: Instant) {
        let opts = self.options();
        let Some(role) = self.role else {
            return;
        };
        self.generation += 1;
        let generation = self.generation;
        self.state = State::Connecting;
        self.events
            .push_back(Event::Generation { generation, role });
        if !opts.no_listen {
            self.actions.push_back(Action::Listen { generation });
        }
        if let Some(relay) = opts.relay {
            self.actions
                .push_back(Action::Send(DilationMessage::ConnectionHints {
                    hints: Hints {
                        relays: vec![relay.clone()],
                        ..Default::default()
                    },
                }));
            self.actions.push_back(Action::ConnectRelay {
                generation,
                hint: relay,
            });
        }
        if role == Role::Leader {
            self.generation_deadline = Some(now + opts.generation_timeout);
        }
    }

    /// The driver's listener for `generation` is up: announce its direct hints. Ignored
    /// for an old generation or once the generation stopped connecting.
    pub fn listening(&mut self, _now: Instant, generation: u32, hints: Hints) {
        if self.state == State::Connecting && generation == self.generation {
            self.actions
                .push_back(Action::Send(DilationMessage::ConnectionHints { hints }));
        }
    }

    /// The peer's hints, while CONNECTING (§9.5): direct hints at once; relay hints after
    /// 2.0 s if this message made us dial a direct hint and we listen, else at once. Tor
    /// hints are not used.
    fn peer_hints(&mut self, now: Instant, hints: Hints) {
        let generation = self.generation;
        let direct = hints.direct.len();
        for hint in hints.direct {
            self.actions
                .push_back(Action::ConnectDirect { generation, hint });
        }
        let delay = direct > 0 && !self.options().no_listen;
        for hint in hints.relays {
            if delay {
                self.relay_timers.push((now + RELAY_DELAY, hint));
            } else {
                self.actions
                    .push_back(Action::ConnectRelay { generation, hint });
            }
        }
    }

    /// A TCP connection of `generation` exists (dialled and connected, or accepted) and
    /// runs L2. One that is stale (an older generation, or arriving after a selection or
    /// after stop) is dropped at once.
    pub fn connection_made(&mut self, _now: Instant, id: ConnId, generation: u32, path: Path) {
        if self.state == State::Connecting && generation == self.generation {
            self.conns.insert(id, Conn { generation, path });
        } else {
            self.actions.push_back(Action::DropConnection { id });
        }
    }

    /// The L2 connection `id` reported `KeyConfirmed` (Leader: the Follower's KCM, a
    /// candidate; Follower: the Leader's KCM, i.e. the Leader chose it). The first one of
    /// the generation is selected; later ones are dropped. Unknown ids are ignored.
    pub fn connection_confirmed(&mut self, now: Instant, id: ConnId) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if self.state != State::Connecting || conn.generation != self.generation {
            self.conns.remove(&id);
            self.actions.push_back(Action::DropConnection { id });
            return;
        }
        let path = conn.path.clone();
        let generation = self.generation;
        self.stop_connecting();
        let others: Vec<ConnId> = self.conns.keys().copied().filter(|c| *c != id).collect();
        for other in others {
            self.conns.remove(&other);
            self.actions.push_back(Action::DropConnection { id: other });
        }
        self.selected = Some(id);
        self.state = State::Connected;
        self.actions.push_back(Action::Select { id });
        if self.role == Some(Role::Leader) {
            // The reference's PING at selection is lost (§9.10): the first one goes out
            // one interval after selection.
            self.keepalive = Some(Keepalive {
                next: now + self.options().ping_interval,
                outstanding: None,
            });
        }
        self.events.push_back(Event::Connected {
            generation,
            id,
            path,
        });
    }

    /// End the current generation's attempts (timers, dials, listener).
    fn stop_connecting(&mut self) {
        self.relay_timers.clear();
        self.generation_deadline = None;
        if self.state == State::Connecting {
            self.actions.push_back(Action::StopConnecting {
                generation: self.generation,
            });
        }
    }

    /// Forget the selected connection (emitting `Deselect`, and `DropConnection` when we
    /// are the ones ending it).
    fn deselect(&mut self, drop: bool) {
        self.keepalive = None;
        if let Some(id) = self.selected.take() {
            self.conns.remove(&id);
            self.actions.push_back(Action::Deselect { id });
            if drop {
                self.actions.push_back(Action::DropConnection { id });
            }
        }
    }

    /// Stop connecting and drop every connection, selected or not.
    fn drop_everything(&mut self) {
        self.stop_connecting();
        self.deselect(true);
        for id in std::mem::take(&mut self.conns).into_keys() {
            self.actions.push_back(Action::DropConnection { id });
        }
    }

    /// The connection `id` closed or failed (not needed for ones we dropped). Losing the
    /// selected one starts reconnection (§9.11); losing a candidate changes nothing.
    /// Unknown ids (already dropped) are ignored.
    pub fn connection_lost(&mut self, now: Instant, id: ConnId) {
        if self.conns.remove(&id).is_none() {
            return;
        }
        if self.selected != Some(id) {
            return;
        }
        match self.role {
            Some(Role::Leader) => {
                self.deselect(false);
                self.leader_reconnect(now);
            }
            _ => {
                self.deselect(false);
                self.state = State::Lonely;
                self.events.push_back(Event::Reconnecting {
                    generation: self.generation,
                });
            }
        }
    }

    /// Leader: give the generation up, ask the Follower for a new one (§9.11).
    fn leader_reconnect(&mut self, _now: Instant) {
        self.drop_everything();
        self.state = State::Flushing;
        self.actions
            .push_back(Action::Send(DilationMessage::Reconnect));
        self.events.push_back(Event::Reconnecting {
            generation: self.generation,
        });
    }

    /// Follower: `reconnect` arrived: drop or abandon, answer, start a new generation.
    fn follower_reconnect(&mut self, now: Instant) {
        let was_lonely = self.state == State::Lonely;
        self.drop_everything();
        if !was_lonely {
            self.events.push_back(Event::Reconnecting {
                generation: self.generation,
            });
        }
        self.actions
            .push_back(Action::Send(DilationMessage::Reconnecting));
        self.start_generation(now);
    }

    /// A PING arrived on connection `id`: answer it (both roles, §9.10).
    pub fn ping_received(&mut self, id: ConnId, ping: [u8; 4]) {
        if self.selected == Some(id) {
            self.actions.push_back(Action::SendPong { id, ping });
        }
    }

    /// A PONG arrived on connection `id`: if it answers our outstanding PING, the link is
    /// alive. Others are ignored (the reference prints "Weird: pong").
    pub fn pong_received(&mut self, _now: Instant, id: ConnId, ping: [u8; 4]) {
        if self.selected != Some(id) {
            return;
        }
        if let Some(k) = &mut self.keepalive {
            if k.outstanding == Some(ping) {
                k.outstanding = None;
            }
        }
    }

    /// Run the timers due at `now`. The RNG supplies PING ids.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn CryptoRngCore) {
        if self.state == State::Connecting {
            let generation = self.generation;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.relay_timers)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            self.relay_timers = later;
            for (_, hint) in due {
                self.actions
                    .push_back(Action::ConnectRelay { generation, hint });
            }
            if self.generation_deadline.is_some_and(|d| d <= now) {
                // Nothing was selected in time (e.g. the relay restarted and the refused
                // connection was never retried): try a whole new generation.
                self.leader_reconnect(now);
            }
        }
        let Some(mut k) = self.keepalive else {
            return;
        };
        let Some(id) = self.selected else {
            return;
        };
        if k.next > now {
            return;
        }
        if k.outstanding.is_some() {
            // A whole interval without the PONG: the link is dead (§9.10).
            self.deselect(true);
            self.leader_reconnect(now);
            return;
        }
        let mut ping = [0u8; 4];
        rng.fill_bytes(&mut ping);
        k.outstanding = Some(ping);
        k.next = now + self.options().ping_interval;
        self.keepalive = Some(k);
        self.actions.push_back(Action::SendPing { id, ping });
    }

    /// The wormhole is closing: stop connecting and drop every connection, without any
    /// Dilation message (§9.11). Every later input is ignored.
    pub fn stop(&mut self) {
        if matches!(self.state, State::Stopped | State::Failed) {
            return;
        }
        self.drop_everything();
        self.early_please = None;
        self.state = State::Stopped;
    }
}

#[cfg(test)]
mod tests;
