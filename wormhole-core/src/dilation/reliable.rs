//! L4: reliable delivery across connections (PROTOCOL §9.8), as plain data structures.
//!
//! - [`Outbound`]: one sequence counter for the whole Dilation session (all subchannels,
//!   every generation), starting at 0. Each OPEN/DATA/CLOSE takes the next number and
//!   stays queued until an `ACK(n)` with `n ≥` its number arrives. Records leave when the
//!   connection can take them ([`Outbound::poll_unsent`]: the driver pulls as its socket
//!   drains, so no encrypted copy piles up behind a slow socket). When a new connection is
//!   selected, every queued record is sent again, in order, before anything new.
//! - [`Inbound`]: every OPEN/DATA/CLOSE is acknowledged at once, duplicates too; a record
//!   whose number is not above the highest one processed is a duplicate and dropped.
//!
//! KCM, PING, PONG and ACK never go through here: they are sent only while a connection
//! is selected and dropped otherwise.

use std::collections::VecDeque;

use super::record::Record;
use super::{DilationError, Result};

/// The application part of an OPEN, DATA or CLOSE, before L4 numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// OPEN `scid` for subprotocol `name`.
    Open {
        /// Subchannel id.
        scid: u32,
        /// Subprotocol name.
        name: String,
    },
    /// DATA on `scid`.
    Data {
        /// Subchannel id.
        scid: u32,
        /// The bytes of one application write.
        data: Vec<u8>,
    },
    /// CLOSE `scid`.
    Close {
        /// Subchannel id.
        scid: u32,
    },
}

impl Payload {
    /// The record with sequence number `seqnum`.
    pub fn into_record(self, seqnum: u32) -> Record {
        match self {
            Payload::Open { scid, name } => Record::Open { scid, seqnum, name },
            Payload::Data { scid, data } => Record::Data { scid, seqnum, data },
            Payload::Close { scid } => Record::Close { scid, seqnum },
        }
    }
}

/// The outbound queue of unacknowledged records.
#[derive(Debug, Default)]
pub struct Outbound {
    next_seqnum: u64,
    /// Unacknowledged records, in sequence-number order.
    queue: VecDeque<Record>,
    /// How many of `queue` (from its front) were sent on the selected connection.
    sent: usize,
    /// The DATA bytes in `queue` (what flow control bounds).
    unacked_bytes: usize,
    connected: bool,
}

impl Outbound {
    /// An empty queue, not connected, next sequence number 0.
    pub fn new() -> Outbound {
        Outbound::default()
    }

    /// Number `payload` and queue it (it leaves through [`Outbound::poll_unsent`]); returns
    /// its sequence number. Fails once 2^32 numbers were used.
    pub fn send(&mut self, payload: Payload) -> Result<u32> {
        let seqnum = u32::try_from(self.next_seqnum).map_err(|_| DilationError::Exhausted)?;
        self.next_seqnum += 1;
        let record = payload.into_record(seqnum);
        self.unacked_bytes += data_len(&record);
        self.queue.push_back(record);
        Ok(seqnum)
    }

    /// The next record to send on the selected connection (none while disconnected),
    /// oldest first; each is handed out once per connection.
    pub fn poll_unsent(&mut self) -> Option<&Record> {
        if !self.connected || self.sent >= self.queue.len() {
            return None;
        }
        self.sent += 1;
        self.queue.get(self.sent - 1)
    }

    /// Whether records wait for [`Outbound::poll_unsent`].
    pub fn has_unsent(&self) -> bool {
        self.connected && self.sent < self.queue.len()
    }

    /// `ACK(resp_seqnum)` arrived: drop every queued record numbered `≤ resp_seqnum`.
    /// Returns how many were retired.
    pub fn handle_ack(&mut self, resp_seqnum: u32) -> usize {
        let before = self.queue.len();
        while self
            .queue
            .front()
            .and_then(Record::seqnum)
            .is_some_and(|s| s <= resp_seqnum)
        {
            if let Some(r) = self.queue.pop_front() {
                self.unacked_bytes -= data_len(&r);
            }
        }
        let retired = before - self.queue.len();
        self.sent = self.sent.saturating_sub(retired);
        retired
    }

    /// The DATA bytes sent (or queued) and not acknowledged yet.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// A new connection was selected: every unacknowledged record is unsent on it, and
    /// goes first.
    pub fn connection_selected(&mut self) {
        self.connected = true;
        self.sent = 0;
    }

    /// The selected connection is gone: records are only queued until the next one.
    pub fn connection_lost(&mut self) {
        self.connected = false;
        self.sent = 0;
    }

    /// Whether a connection is selected (KCM/PING/PONG/ACK may be sent only then).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The unacknowledged records, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &Record> {
        self.queue.iter()
    }

    /// The number the next record will get.
    pub fn next_seqnum(&self) -> u64 {
        self.next_seqnum
    }
}

fn data_len(r: &Record) -> usize {
    match r {
        Record::Data { data, .. } => data.len(),
        _ => 0,
    }
}

/// What to do with an inbound OPEN/DATA/CLOSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Send `ACK(ack)` now (always, duplicates included).
    pub ack: u32,
    /// Dispatch the record (false: a duplicate, drop it).
    pub deliver: bool,
}

/// Inbound de-duplication.
#[derive(Debug, Default)]
pub struct Inbound {
    highest: Option<u32>,
}

impl Inbound {
    /// Nothing received yet.
    pub fn new() -> Inbound {
        Inbound::default()
    }

    /// An OPEN/DATA/CLOSE numbered `seqnum` arrived.
    pub fn receive(&mut self, seqnum: u32) -> Verdict {
        let deliver = self.highest.is_none_or(|h| seqnum > h);
        if deliver {
            self.highest = Some(seqnum);
        }
        Verdict {
            ack: seqnum,
            deliver,
        }
    }

    /// The highest sequence number processed so far.
    pub fn highest(&self) -> Option<u32> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(scid: u32, d: &[u8]) -> Payload {
        Payload::Data {
            scid,
            data: d.to_vec(),
        }
    }

    fn seqs<'a>(it: impl IntoIterator<Item = &'a Record>) -> Vec<u32> {
        it.into_iter().filter_map(Record::seqnum).collect()
    }

    /// Everything the connection may take now.
    fn unsent(o: &mut Outbound) -> Vec<Record> {
        let mut v = Vec::new();
        while let Some(r) = o.poll_unsent() {
            v.push(r.clone());
        }
        v
    }

    #[test]
    fn numbering_is_shared_by_all_subchannels() {
        let mut o = Outbound::new();
        assert_eq!(
            o.send(Payload::Open {
                scid: 1,
                name: "p".into()
            }),
            Ok(0)
        );
        assert!(
            unsent(&mut o).is_empty(),
            "nothing leaves while disconnected"
        );
        o.connection_selected();
        assert_eq!(o.send(data(1, b"a")), Ok(1));
        assert_eq!(o.send(Payload::Close { scid: 3 }), Ok(2));
        assert_eq!(
            unsent(&mut o),
            [
                Record::Open {
                    scid: 1,
                    seqnum: 0,
                    name: "p".into()
                },
                Record::Data {
                    scid: 1,
                    seqnum: 1,
                    data: b"a".to_vec()
                },
                Record::Close { scid: 3, seqnum: 2 }
            ]
        );
        assert!(!o.has_unsent());
        assert_eq!(seqs(o.unacked()), [0, 1, 2]);
    }

    #[test]
    fn acked_records_are_dropped() {
        let mut o = Outbound::new();
        o.connection_selected();
        for i in 0..5u8 {
            o.send(data(1, &[i])).unwrap();
        }
        assert_eq!(o.handle_ack(1), 2);
        assert_eq!(seqs(o.unacked()), [2, 3, 4]);
        // An old or repeated ack changes nothing.
        assert_eq!(o.handle_ack(0), 0);
        assert_eq!(o.handle_ack(1), 0);
        assert_eq!(o.handle_ack(3), 2);
        assert_eq!(seqs(o.unacked()), [4]);
        assert_eq!(o.handle_ack(100), 1);
        assert_eq!(o.unacked().count(), 0);
    }

    #[test]
    fn reconnect_resends_exactly_the_unacked_ones_in_order() {
        let mut o = Outbound::new();
        o.connection_selected();
        for i in 0..4u8 {
            o.send(data(1, &[i])).unwrap();
        }
        assert_eq!(seqs(&unsent(&mut o)), [0, 1, 2, 3]);
        o.handle_ack(0);
        assert_eq!(o.unacked_bytes(), 3);
        o.connection_lost();
        // While disconnected, records are only queued.
        assert_eq!(o.send(data(2, b"x")), Ok(4));
        assert!(!o.is_connected());
        assert!(unsent(&mut o).is_empty());
        o.handle_ack(1); // a late ack from the old connection
        o.connection_selected();
        let resend = unsent(&mut o);
        assert_eq!(seqs(&resend), [2, 3, 4]);
        assert_eq!(
            resend[2],
            Record::Data {
                scid: 2,
                seqnum: 4,
                data: b"x".to_vec()
            }
        );
        // New records follow the re-sent ones; an ACK while some are unsent keeps the
        // place.
        assert_eq!(o.send(data(1, b"y")), Ok(5));
        assert_eq!(o.send(data(1, b"z")), Ok(6));
        assert_eq!(o.poll_unsent().and_then(Record::seqnum), Some(5));
        o.handle_ack(3);
        assert_eq!(seqs(&unsent(&mut o)), [6]);
        assert_eq!(seqs(o.unacked()), [4, 5, 6]);
    }

    #[test]
    fn sequence_numbers_run_out_at_2_pow_32() {
        let mut o = Outbound::new();
        o.next_seqnum = u32::MAX as u64;
        assert_eq!(
            o.send(data(1, b"")).unwrap(),
            u32::MAX,
            "u32::MAX itself is usable"
        );
        assert_eq!(seqs(o.unacked()), [u32::MAX]);
        assert_eq!(o.send(data(1, b"")), Err(DilationError::Exhausted));
        assert_eq!(o.handle_ack(u32::MAX), 1);
    }

    #[test]
    fn duplicates_are_acked_but_not_delivered() {
        let mut i = Inbound::new();
        assert_eq!(i.highest(), None);
        assert_eq!(
            i.receive(0),
            Verdict {
                ack: 0,
                deliver: true
            }
        );
        assert_eq!(
            i.receive(1),
            Verdict {
                ack: 1,
                deliver: true
            }
        );
        // A reconnect re-sends 0 and 1 (the acks were lost): acked again, dropped.
        assert_eq!(
            i.receive(0),
            Verdict {
                ack: 0,
                deliver: false
            }
        );
        assert_eq!(
            i.receive(1),
            Verdict {
                ack: 1,
                deliver: false
            }
        );
        assert_eq!(
            i.receive(2),
            Verdict {
                ack: 2,
                deliver: true
            }
        );
        assert_eq!(i.highest(), Some(2));
    }

    /// Two ends over a lossy sequence of connections: everything arrives exactly once,
    /// in order.
    #[test]
    fn end_to_end_over_reconnections() {
        let mut o = Outbound::new();
        let mut i = Inbound::new();
        let mut delivered = Vec::new();
        o.connection_selected();
        let mut wire: Vec<Record> = Vec::new();
        for round in 0..3u8 {
            for k in 0..4u8 {
                o.send(data(1, &[round, k])).unwrap();
            }
            wire.extend(unsent(&mut o));
            // Only half the records (and none of the acks of the last one) survive.
            let mut last_ack = None;
            for r in wire.drain(..).take(2 + round as usize) {
                let v = i.receive(r.seqnum().unwrap());
                if v.deliver {
                    delivered.push(r);
                }
                last_ack = Some(v.ack);
            }
            if let Some(a) = last_ack.filter(|_| round != 1) {
                o.handle_ack(a);
            }
            o.connection_lost();
            o.connection_selected();
            wire = unsent(&mut o);
        }
        for r in wire.drain(..) {
            let v = i.receive(r.seqnum().unwrap());
            if v.deliver {
                delivered.push(r);
            }
            o.handle_ack(v.ack);
        }
        assert_eq!(seqs(&delivered), (0..12).collect::<Vec<_>>());
        assert_eq!(o.unacked().count(), 0);
    }
}
