//! One side of a dilated wormhole, sans-IO: the [`Manager`] plus every L2 [`Connection`],
//! the L4 queues and the L5 [`Subchannels`], wired together.
//!
//! The driver owns sockets, the listener and the clock; it feeds the endpoint what
//! happened ([`Endpoint::connection_made`], [`Endpoint::connection_input`], mailbox
//! messages, application calls) and performs what it asks, in order:
//! [`Endpoint::poll_io`] (listen, dial, write bytes, abort a socket),
//! [`Endpoint::poll_mailbox`] (a `dilate-N` body to send), [`Endpoint::poll_event`]
//! (status and subchannel events for the application), then sleeps until
//! [`Endpoint::poll_timeout`].
//!
//! Every record path lives here: the Leader's PING/PONG, ACK of every inbound
//! OPEN/DATA/CLOSE (duplicates too), de-duplication, re-sending the unacknowledged
//! records on each newly selected connection before anything new, and dispatch to the
//! subchannels. Control records (KCM, PING, PONG, ACK) leave at once; OPEN/DATA/CLOSE
//! leave when the driver says the socket can take them ([`Endpoint::fill`]). Flow
//! control is the driver's, from [`Endpoint::unacked_bytes`]: it stops taking writes
//! while too much is unacknowledged.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use rand_core::CryptoRngCore;

use super::connection::{Connection, ConnectionConfig, ConnectionEvent};
use super::keys::{DilationKey, Role};
use super::manager::{self, Action, ConnId, DilateOptions, Manager, Path};
use super::record::Record;
use super::reliable::{Inbound, Outbound};
use super::subchannel::{SubchannelEvent, Subchannels};
use super::{DilationError, Result};
use crate::transit::{DirectHint, Hints};

/// Socket work for the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Io {
    /// Listen on a new ephemeral port for `generation`; report it with
    /// [`Endpoint::listening`].
    Listen {
        /// The generation.
        generation: u32,
    },
    /// Dial a peer's direct hint; on connect call [`Endpoint::connection_made`] with a
    /// direct [`Path`].
    ConnectDirect {
        /// The generation.
        generation: u32,
        /// Where.
        hint: DirectHint,
    },
    /// Dial a relay (any of its alternatives); on connect call
    /// [`Endpoint::connection_made`] with a relay [`Path`].
    ConnectRelay {
        /// The generation.
        generation: u32,
        /// The relay's alternative addresses.
        hint: Vec<DirectHint>,
    },
    /// Cancel `generation`'s pending dials and close its listener.
    StopConnecting {
        /// The generation.
        generation: u32,
    },
    /// Write these bytes to connection `id`, after everything written before.
    Transmit {
        /// The connection.
        id: ConnId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Abort connection `id` (reset, not a graceful close). No
    /// [`Endpoint::connection_lost`] is needed for it.
    Drop {
        /// The connection.
        id: ConnId,
    },
}

/// What the application is told.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointEvent {
    /// A change of the connection's state (generation, connected, reconnecting,
    /// warnings, failure).
    Status(manager::Event),
    /// Our role is known (after both `please` messages): subchannels can be opened.
    Ready(Role),
    /// A subchannel event.
    Subchannel(SubchannelEvent),
}

/// One side of a dilated wormhole (see the module docs).
#[derive(Debug)]
pub struct Endpoint {
    manager: Manager,
    key: Option<DilationKey>,
    cfg: ConnectionConfig,
    conns: BTreeMap<ConnId, Connection>,
    next_conn: u64,
    outbound: Outbound,
    inbound: Inbound,
    subs: Option<Subchannels>,
    io: VecDeque<Io>,
    mailbox: VecDeque<Vec<u8>>,
    events: VecDeque<EndpointEvent>,
    /// [`Endpoint::hold_acks`]: inbound records are not acknowledged for now.
    holding_acks: bool,
    /// The acknowledgement held back meanwhile.
    held_ack: Option<u32>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new(ConnectionConfig::default())
    }
}

impl Endpoint {
    /// An endpoint before `dilate()`.
    pub fn new(cfg: ConnectionConfig) -> Endpoint {
        Endpoint {
            manager: Manager::new(),
            key: None,
            cfg,
            conns: BTreeMap::new(),
            next_conn: 0,
            outbound: Outbound::new(),
            inbound: Inbound::new(),
            subs: None,
            io: VecDeque::new(),
            mailbox: VecDeque::new(),
            events: VecDeque::new(),
            holding_acks: false,
            held_ack: None,
        }
    }

    /// Flow control towards the peer: while `hold` is true, inbound records are not
    /// acknowledged (a peer like ours stops writing once its window is unacknowledged),
    /// though connections keep being read, so keepalives, acknowledgements of our own
    /// records and new connections' handshakes go on. When `hold` turns false the held
    /// acknowledgement (cumulative) is sent on the selected connection.
    pub fn hold_acks(&mut self, hold: bool) {
        if hold == self.holding_acks {
            return;
        }
        self.holding_acks = hold;
        if !hold {
            if let (Some(resp_seqnum), Some(id)) = (self.held_ack.take(), self.manager.selected()) {
                self.send_on(id, &Record::Ack { resp_seqnum });
            }
        }
    }

    /// Our role, once both `please` messages are in.
    pub fn role(&self) -> Option<Role> {
        self.manager.role()
    }

    /// The manager's state.
    pub fn state(&self) -> manager::State {
        self.manager.state()
    }

    /// The DATA bytes written and not yet acknowledged by the peer.
    pub fn unacked_bytes(&self) -> usize {
        self.outbound.unacked_bytes()
    }

    /// The DATA bytes held for subchannels nobody listens to yet (see
    /// [`Subchannels::held_bytes`]).
    pub fn held_bytes(&self) -> usize {
        self.subs.as_ref().map_or(0, Subchannels::held_bytes)
    }

    /// The next socket action.
    pub fn poll_io(&mut self) -> Option<Io> {
        self.io.pop_front()
    }

    /// The next `dilate-N` body to send through the mailbox.
    pub fn poll_mailbox(&mut self) -> Option<Vec<u8>> {
        self.mailbox.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.manager.poll_timeout()
    }

    /// Our `dilate()` (once).
    pub fn dilate(
        &mut self,
        now: Instant,
        options: DilateOptions,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<()> {
        self.manager.dilate(now, options, rng)?;
        self.pump();
        Ok(())
    }

    /// The peer's `version` arrived with its `can-dilate` list; `master_key` is the
    /// wormhole's key (the Dilation key derives from it).
    pub fn peer_version(&mut self, now: Instant, can_dilate: &[String], master_key: &[u8]) {
        if self.key.is_none() {
            self.key = Some(DilationKey::derive(master_key));
        }
        self.manager.peer_version(now, can_dilate);
        self.pump();
    }

    /// One of the peer's `dilate-N` bodies, in order.
    pub fn peer_body(&mut self, now: Instant, body: &[u8]) {
        self.manager.peer_body(now, body);
        self.pump();
    }

    /// The listener asked for by [`Io::Listen`] is up with these direct hints.
    pub fn listening(&mut self, now: Instant, generation: u32, hints: Hints) {
        self.manager.listening(now, generation, hints);
        self.pump();
    }

    /// A TCP connection for `generation` is up (dialled or accepted); returns its id.
    /// `ephemeral` is the Noise ephemeral key: 32 fresh random bytes.
    pub fn connection_made(
        &mut self,
        now: Instant,
        generation: u32,
        path: Path,
        ephemeral: [u8; 32],
    ) -> Result<ConnId> {
        let (Some(key), Some(role)) = (self.key.as_ref(), self.manager.role()) else {
            return Err(DilationError::InvalidState(
                "a connection before the roles are known".into(),
            ));
        };
        let relay_side = if path.relay {
            self.manager.side().cloned()
        } else {
            None
        };
        let conn = Connection::new(role, key, ephemeral, relay_side.as_ref(), self.cfg)?;
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(id, conn);
        self.manager.connection_made(now, id, generation, path);
        self.flush(id);
        self.pump();
        Ok(id)
    }

    /// Give back the bytes of an [`Io::Transmit`] for connection `id` once written, so
    /// a later frame reuses the buffer. Optional.
    pub fn reuse(&mut self, id: ConnId, buf: Vec<u8>) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.reuse(buf);
        }
    }

    /// Bytes read from connection `id`.
    pub fn connection_input(&mut self, now: Instant, id: ConnId, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let result = conn.handle_input(data);
        let mut events = Vec::new();
        while let Some(ev) = conn.poll_event() {
            events.push(ev);
        }
        for ev in events {
            match ev {
                ConnectionEvent::KeyConfirmed => self.manager.connection_confirmed(now, id),
                ConnectionEvent::Record(r) => self.record(now, id, r),
            }
            // The manager may have dropped it (another one won).
            if !self.conns.contains_key(&id) {
                break;
            }
            self.pump();
        }
        if let Err(e) = result {
            tracing::debug!(?id, error = %e, "dilation connection failed");
            self.lose(now, id, true);
        }
        self.flush(id);
        self.pump();
    }

    /// Connection `id` closed or failed on its own.
    pub fn connection_lost(&mut self, now: Instant, id: ConnId) {
        self.lose(now, id, false);
        self.pump();
    }

    fn lose(&mut self, now: Instant, id: ConnId, abort: bool) {
        if self.conns.remove(&id).is_some() {
            if abort {
                self.io.push_back(Io::Drop { id });
            }
            self.manager.connection_lost(now, id);
        }
    }

    /// A timer is due.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn CryptoRngCore) {
        self.manager.handle_timeout(now, rng);
        self.pump();
    }

    /// The selected connection, if any.
    pub fn selected(&self) -> Option<ConnId> {
        self.manager.selected()
    }

    /// Whether OPEN/DATA/CLOSE records wait for [`Endpoint::fill`].
    pub fn has_unsent(&self) -> bool {
        self.outbound.has_unsent() && self.manager.selected().is_some()
    }

    /// The selected connection can take about `budget` more bytes: encrypt waiting
    /// OPEN/DATA/CLOSE records onto it (at least one when any waits) as
    /// [`Io::Transmit`]. Records leave only as the socket drains, so a slow socket holds
    /// back plaintext in L4, never a second, encrypted copy.
    pub fn fill(&mut self, budget: usize) {
        let Some(id) = self.manager.selected() else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut used = 0;
        while used < budget.max(1) {
            let Some(record) = self.outbound.poll_unsent() else {
                break;
            };
            used += record.encoded_len();
            if let Err(e) = conn.send_record(record) {
                tracing::debug!(?id, error = %e, "could not send a dilation record");
                break;
            }
        }
        self.flush(id);
    }

    /// Stop: every connection is aborted and nothing more is sent.
    pub fn stop(&mut self) {
        self.manager.stop();
        self.pump();
        for id in std::mem::take(&mut self.conns).into_keys() {
            self.io.push_back(Io::Drop { id });
        }
    }

    fn subs(&mut self) -> Result<&mut Subchannels> {
        self.subs.as_mut().ok_or_else(|| {
            DilationError::InvalidState("subchannels before the dilation roles are known".into())
        })
    }

    /// Accept the peer's subchannels for subprotocol `name` (held OPENs for it are
    /// accepted now).
    pub fn listen(&mut self, name: &str, half_close: bool) -> Result<()> {
        self.subs()?.listen(name, half_close)?;
        self.pump();
        Ok(())
    }

    /// Open a subchannel to the peer's subprotocol `name`; returns its id.
    pub fn open(&mut self, name: &str, half_close: bool) -> Result<u32> {
        let scid = self.subs()?.open(name, half_close)?;
        self.pump();
        Ok(scid)
    }

    /// Write one record (one peer `read`) on subchannel `scid`.
    pub fn write(&mut self, scid: u32, data: Vec<u8>) -> Result<()> {
        self.subs()?.write(scid, data)?;
        self.pump();
        Ok(())
    }

    /// Close subchannel `scid` (both directions; see [`Subchannels::close`]).
    pub fn close(&mut self, scid: u32) -> Result<()> {
        self.subs()?.close(scid)?;
        self.pump();
        Ok(())
    }

    /// Half-closeable subchannels: close our write side.
    pub fn close_write(&mut self, scid: u32) -> Result<()> {
        self.subs()?.close_write(scid)?;
        self.pump();
        Ok(())
    }

    /// An inbound record on connection `id` (already past the connection's own checks).
    fn record(&mut self, now: Instant, id: ConnId, record: Record) {
        match record {
            Record::Kcm => {}
            Record::Ping(p) => self.manager.ping_received(id, p),
            Record::Pong(p) => self.manager.pong_received(now, id, p),
            Record::Ack { resp_seqnum } => {
                self.outbound.handle_ack(resp_seqnum);
            }
            r @ (Record::Open { .. } | Record::Data { .. } | Record::Close { .. }) => {
                let Some(seqnum) = r.seqnum() else { return };
                let verdict = self.inbound.receive(seqnum);
                if self.holding_acks {
                    self.held_ack = Some(verdict.ack);
                } else {
                    self.send_on(
                        id,
                        &Record::Ack {
                            resp_seqnum: verdict.ack,
                        },
                    );
                }
                if !verdict.deliver {
                    return;
                }
                let Some(subs) = self.subs.as_mut() else {
                    return;
                };
                match subs.handle_record(r) {
                    Ok(super::subchannel::Handled::Ignored(why)) => {
                        tracing::debug!(why, "dilation record ignored");
                    }
                    Ok(_) => {}
                    Err(e) => self
                        .events
                        .push_back(EndpointEvent::Status(manager::Event::Warning(e))),
                }
            }
        }
    }

    /// Encrypt `record` on connection `id` and queue its bytes.
    fn send_on(&mut self, id: ConnId, record: &Record) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Err(e) = conn.send_record(record) {
            tracing::debug!(?id, error = %e, "could not send a dilation record");
        }
        self.flush(id);
    }

    fn flush(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            while let Some(bytes) = conn.poll_transmit() {
                self.io.push_back(Io::Transmit { id, bytes });
            }
        }
    }

    /// Perform the manager's actions and move subchannel output through L4, until
    /// nothing is left to do.
    fn pump(&mut self) {
        loop {
            let mut progress = false;
            while let Some(action) = self.manager.poll_action() {
                progress = true;
                self.action(action);
            }
            if self.subs.is_none() {
                if let Some(role) = self.manager.role() {
                    self.subs = Some(Subchannels::new(role));
                    self.events.push_back(EndpointEvent::Ready(role));
                }
            }
            if let Some(subs) = self.subs.as_mut() {
                let mut sends = Vec::new();
                while let Some(p) = subs.poll_send() {
                    sends.push(p);
                }
                while let Some(ev) = subs.poll_event() {
                    self.events.push_back(EndpointEvent::Subchannel(ev));
                }
                for payload in sends {
                    progress = true;
                    if let Err(e) = self.outbound.send(payload) {
                        self.events
                            .push_back(EndpointEvent::Status(manager::Event::Failed(e)));
                    }
                }
            }
            while let Some(ev) = self.manager.poll_event() {
                self.events.push_back(EndpointEvent::Status(ev));
            }
            if !progress {
                break;
            }
        }
    }

    fn action(&mut self, action: Action) {
        match action {
            Action::Send(msg) => self.mailbox.push_back(msg.to_bytes()),
            Action::Listen { generation } => self.io.push_back(Io::Listen { generation }),
            Action::ConnectDirect { generation, hint } => {
                self.io.push_back(Io::ConnectDirect { generation, hint })
            }
            Action::ConnectRelay { generation, hint } => {
                self.io.push_back(Io::ConnectRelay { generation, hint })
            }
            Action::StopConnecting { generation } => {
                self.io.push_back(Io::StopConnecting { generation })
            }
            Action::Select { id } => {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                if let Err(e) = conn.select() {
                    tracing::debug!(?id, error = %e, "could not select a dilation connection");
                }
                // The unacknowledged records go first, as the connection takes them.
                self.outbound.connection_selected();
                self.flush(id);
            }
            Action::Deselect { .. } => self.outbound.connection_lost(),
            Action::DropConnection { id } => {
                if self.conns.remove(&id).is_some() {
                    self.io.push_back(Io::Drop { id });
                }
            }
            Action::SendPing { id, ping } => self.send_on(id, &Record::Ping(ping)),
            Action::SendPong { id, ping } => self.send_on(id, &Record::Pong(ping)),
        }
    }
}

#[cfg(test)]
mod tests;
