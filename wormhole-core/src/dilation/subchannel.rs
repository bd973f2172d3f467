//! L5: subchannel bookkeeping (PROTOCOL §9.9), sans-IO.
//!
//! - **Ids**: the Leader allocates 1, 3, 5, …; the Follower 2, 4, 6, …; 0 is reserved
//!   (there is no control channel). Ids are never reused.
//! - **Open**: [`Subchannels::open`] allocates an id and emits OPEN; DATA may follow at
//!   once (nobody answers an OPEN). The driver calls it only once the first connection
//!   was selected, as the reference does.
//! - **Accept**: an inbound OPEN for a subprotocol somebody [`Subchannels::listen`]s to is
//!   accepted at once; otherwise the subchannel, and any DATA/CLOSE for it, is held
//!   (forever, like the reference) until a listener for that name registers. A duplicate
//!   OPEN is ignored; DATA/CLOSE for an unknown id are ignored (L4 still acks them).
//! - **Close**, full-close protocols: [`Subchannels::close`] emits CLOSE and enters
//!   *closing* (inbound DATA still delivered, writes refused); a peer's CLOSE while open
//!   is answered with our CLOSE and ends the subchannel; while closing it ends it.
//!   Half-closeable protocols: [`Subchannels::close_write`] emits CLOSE; a peer's CLOSE
//!   only ends the read side ([`SubchannelEvent::ReadClosed`], no automatic reply); the
//!   subchannel ends when both sides sent CLOSE.
//!
//! Outputs: [`Subchannels::poll_send`] yields [`Payload`]s for L4 to number and send;
//! [`Subchannels::poll_event`] yields what the application must be told. Drain both after
//! every call.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::keys::Role;
use super::record::Record;
use super::reliable::Payload;
use super::{DilationError, Result};

/// What the application must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubchannelEvent {
    /// The peer opened `scid` for subprotocol `name` and a listener for it exists.
    Accepted {
        /// Subchannel id.
        scid: u32,
        /// Subprotocol name.
        name: String,
    },
    /// One DATA record (one peer write) on `scid`.
    Data {
        /// Subchannel id.
        scid: u32,
        /// The bytes, exactly as written by the peer.
        data: Vec<u8>,
    },
    /// Half-closeable protocols: the peer will write no more on `scid`.
    ReadClosed {
        /// Subchannel id.
        scid: u32,
    },
    /// `scid` is finished in both directions (the reference's `connectionLost`).
    Closed {
        /// Subchannel id.
        scid: u32,
    },
}

/// How an inbound OPEN/DATA/CLOSE was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Events were produced.
    Delivered,
    /// Held until a listener for the subprotocol registers.
    Held,
    /// Dropped, with the reason (for a log line).
    Ignored(&'static str),
}

/// A subchannel's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubchannelState {
    /// Inbound, waiting for a listener.
    Held,
    /// Both directions open.
    Open,
    /// Full-close: we sent CLOSE and wait for the peer's.
    Closing,
    /// Half-close: we sent CLOSE; the peer may still write.
    WriteClosed,
    /// Half-close: the peer sent CLOSE; we may still write.
    ReadClosed,
    /// Finished.
    Closed,
}

#[derive(Debug)]
struct Sub {
    name: String,
    state: SubchannelState,
    half_close: bool,
    /// DATA/CLOSE that arrived while held, in order.
    held: Vec<Record>,
}

/// The subchannels of one Dilation session.
#[derive(Debug)]
pub struct Subchannels {
    next_id: u64,
    subs: BTreeMap<u32, Sub>,
    /// Registered listeners: name → half-closeable.
    listeners: HashMap<String, bool>,
    /// Held inbound subchannels, in arrival order.
    held_order: Vec<u32>,
    /// The DATA bytes held for them.
    held_bytes: usize,
    sends: VecDeque<Payload>,
    events: VecDeque<SubchannelEvent>,
}

/// Inbound subchannels held for a listener, at most; further OPENs are ignored (the
/// reference holds them without a bound).
pub const MAX_HELD_SUBCHANNELS: usize = 1024;

fn invalid(what: String) -> DilationError {
    DilationError::InvalidState(what)
}

impl Subchannels {
    /// No subchannels yet; ids allocated per `role`.
    pub fn new(role: Role) -> Subchannels {
        Subchannels {
            next_id: match role {
                Role::Leader => 1,
                Role::Follower => 2,
            },
            subs: BTreeMap::new(),
            listeners: HashMap::new(),
            held_order: Vec::new(),
            held_bytes: 0,
            sends: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The DATA bytes held for subchannels nobody listens to yet. The driver stops reading
    /// the connection while they are too many (like unread data), so a peer cannot make
    /// us hold without bound.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The next OPEN/DATA/CLOSE for L4.
    pub fn poll_send(&mut self) -> Option<Payload> {
        self.sends.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<SubchannelEvent> {
        self.events.pop_front()
    }

    /// The state of `scid` (`None`: unknown).
    pub fn state(&self, scid: u32) -> Option<SubchannelState> {
        self.subs.get(&scid).map(|s| s.state)
    }

    /// The subprotocol of `scid`.
    pub fn name(&self, scid: u32) -> Option<&str> {
        self.subs.get(&scid).map(|s| s.name.as_str())
    }

    /// Open a subchannel to the peer's `name` service; `half_close`: our protocol is
    /// half-closeable. Returns the new id.
    pub fn open(&mut self, name: &str, half_close: bool) -> Result<u32> {
        let scid = loop {
            let id = u32::try_from(self.next_id).map_err(|_| DilationError::Exhausted)?;
            self.next_id += 2;
            // Skip an id the peer (wrongly) used already: ids are never shared.
            if !self.subs.contains_key(&id) {
                break id;
            }
        };
        self.subs.insert(
            scid,
            Sub {
                name: name.to_owned(),
                state: SubchannelState::Open,
                half_close,
                held: Vec::new(),
            },
        );
        self.sends.push_back(Payload::Open {
            scid,
            name: name.to_owned(),
        });
        Ok(scid)
    }

    /// Accept the peer's subchannels for `name` from now on (and release the held ones, in
    /// arrival order). Registering a name twice is an error.
    pub fn listen(&mut self, name: &str, half_close: bool) -> Result<()> {
        if self.listeners.contains_key(name) {
            return Err(invalid(format!("already listening for {name:?}")));
        }
        self.listeners.insert(name.to_owned(), half_close);
        let (now, later): (Vec<u32>, Vec<u32>) = self
            .held_order
            .iter()
            .partition(|id| self.subs.get(id).is_some_and(|s| s.name == name));
        self.held_order = later;
        for scid in now {
            let Some(sub) = self.subs.get_mut(&scid) else {
                continue;
            };
            sub.state = SubchannelState::Open;
            sub.half_close = half_close;
            let held = std::mem::take(&mut sub.held);
            for r in &held {
                if let Record::Data { data, .. } = r {
                    self.held_bytes -= data.len();
                }
            }
            self.events.push_back(SubchannelEvent::Accepted {
                scid,
                name: name.to_owned(),
            });
            for r in held {
                self.handle_record(r)?;
            }
        }
        Ok(())
    }

    /// Write one message on `scid` (one DATA record, delivered whole).
    pub fn write(&mut self, scid: u32, data: Vec<u8>) -> Result<()> {
        match self.subs.get(&scid).map(|s| s.state) {
            Some(SubchannelState::Open | SubchannelState::ReadClosed) => {
                self.sends.push_back(Payload::Data { scid, data });
                Ok(())
            }
            Some(s) => Err(invalid(format!("write on subchannel {scid} while {s:?}"))),
            None => Err(invalid(format!("write on unknown subchannel {scid}"))),
        }
    }

    /// Close `scid` (the reference's `loseConnection`): emits CLOSE; the subchannel is
    /// *closing* until the peer's CLOSE (for any protocol). If the peer already closed
    /// its side (half-close), the subchannel is finished at once.
    pub fn close(&mut self, scid: u32) -> Result<()> {
        self.close_ours(scid, "close", false)
    }

    /// Half-closeable protocols: close our write side (`loseWriteConnection`), emitting
    /// CLOSE; reading goes on until the peer's CLOSE.
    pub fn close_write(&mut self, scid: u32) -> Result<()> {
        match self.subs.get(&scid) {
            Some(s) if !s.half_close => Err(invalid(format!(
                "close_write on subchannel {scid}, whose protocol is not half-closeable"
            ))),
            _ => self.close_ours(scid, "close_write", true),
        }
    }

    fn close_ours(&mut self, scid: u32, what: &str, half: bool) -> Result<()> {
        let sub = self
            .subs
            .get_mut(&scid)
            .ok_or_else(|| invalid(format!("{what} on unknown subchannel {scid}")))?;
        let next = match sub.state {
            SubchannelState::Open if half => SubchannelState::WriteClosed,
            SubchannelState::Open => SubchannelState::Closing,
            SubchannelState::ReadClosed => SubchannelState::Closed,
            s => return Err(invalid(format!("{what} on subchannel {scid} while {s:?}"))),
        };
        sub.state = next;
        self.sends.push_back(Payload::Close { scid });
        if next == SubchannelState::Closed {
            self.events.push_back(SubchannelEvent::Closed { scid });
        }
        Ok(())
    }

    /// An inbound OPEN, DATA or CLOSE that L4 decided to deliver (not a duplicate).
    pub fn handle_record(&mut self, record: Record) -> Result<Handled> {
        match record {
            Record::Open { scid, name, .. } => Ok(self.inbound_open(scid, name)),
            Record::Data { scid, data, .. } => {
                let Some(sub) = self.subs.get_mut(&scid) else {
                    return Ok(Handled::Ignored("DATA for an unknown subchannel"));
                };
                match sub.state {
                    SubchannelState::Held => {
                        self.held_bytes += data.len();
                        sub.held.push(Record::Data {
                            scid,
                            seqnum: 0,
                            data,
                        });
                        Ok(Handled::Held)
                    }
                    SubchannelState::Open
                    | SubchannelState::Closing
                    | SubchannelState::WriteClosed => {
                        self.events.push_back(SubchannelEvent::Data { scid, data });
                        Ok(Handled::Delivered)
                    }
                    SubchannelState::ReadClosed | SubchannelState::Closed => {
                        Ok(Handled::Ignored("DATA after the peer's CLOSE"))
                    }
                }
            }
            Record::Close { scid, .. } => {
                let Some(sub) = self.subs.get_mut(&scid) else {
                    return Ok(Handled::Ignored("CLOSE for an unknown subchannel"));
                };
                use SubchannelEvent::{Closed, ReadClosed};
                let (next, events) = match sub.state {
                    SubchannelState::Held => {
                        sub.held.push(Record::Close { scid, seqnum: 0 });
                        return Ok(Handled::Held);
                    }
                    SubchannelState::Open if sub.half_close => {
                        (SubchannelState::ReadClosed, vec![ReadClosed { scid }])
                    }
                    SubchannelState::Open => {
                        // Full-close: answer with our CLOSE, and we are done.
                        self.sends.push_back(Payload::Close { scid });
                        (SubchannelState::Closed, vec![Closed { scid }])
                    }
                    SubchannelState::Closing => (SubchannelState::Closed, vec![Closed { scid }]),
                    SubchannelState::WriteClosed => (
                        SubchannelState::Closed,
                        vec![ReadClosed { scid }, Closed { scid }],
                    ),
                    SubchannelState::ReadClosed | SubchannelState::Closed => {
                        return Ok(Handled::Ignored("a second CLOSE"));
                    }
                };
                sub.state = next;
                self.events.extend(events);
                Ok(Handled::Delivered)
            }
            other => Err(invalid(format!(
                "{} record handed to the subchannel layer",
                other.kind()
            ))),
        }
    }

    fn inbound_open(&mut self, scid: u32, name: String) -> Handled {
        if scid == 0 {
            return Handled::Ignored("OPEN for the reserved subchannel 0");
        }
        if self.subs.contains_key(&scid) {
            return Handled::Ignored("duplicate OPEN");
        }
        match self.listeners.get(&name) {
            Some(&half_close) => {
                self.events.push_back(SubchannelEvent::Accepted {
                    scid,
                    name: name.clone(),
                });
                self.subs.insert(
                    scid,
                    Sub {
                        name,
                        state: SubchannelState::Open,
                        half_close,
                        held: Vec::new(),
                    },
                );
                Handled::Delivered
            }
            None if self.held_order.len() >= MAX_HELD_SUBCHANNELS => {
                Handled::Ignored("too many subchannels wait for a listener")
            }
            None => {
                self.subs.insert(
                    scid,
                    Sub {
                        name,
                        state: SubchannelState::Held,
                        half_close: false,
                        held: Vec::new(),
                    },
                );
                self.held_order.push(scid);
                Handled::Held
            }
        }
    }
}

#[cfg(test)]
mod tests;
