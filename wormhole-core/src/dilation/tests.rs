//! The layers together: two peers in memory, each with an L2 [`Connection`], L4 queues
//! and L5 subchannels, through a lost connection and a new generation. No sockets, no
//! clock: this is the wiring a driver will do.

use super::connection::{Connection, ConnectionEvent};
use super::keys::{DilationKey, Role};
use super::record::Record;
use super::reliable::{Inbound, Outbound};
use super::subchannel::{SubchannelEvent, Subchannels};

struct Peer {
    role: Role,
    out: Outbound,
    inb: Inbound,
    subs: Subchannels,
    conn: Option<Connection>,
    app: Vec<SubchannelEvent>,
}

impl Peer {
    fn new(role: Role) -> Peer {
        Peer {
            role,
            out: Outbound::new(),
            inb: Inbound::new(),
            subs: Subchannels::new(role),
            conn: None,
            app: Vec::new(),
        }
    }

    fn connect(&mut self, key: &DilationKey, eph: u8) {
        self.conn =
            Some(Connection::new(self.role, key, [eph; 32], None, Default::default()).unwrap());
    }

    fn lose_connection(&mut self) {
        self.conn = None;
        self.out.connection_lost();
    }

    fn send_now(&mut self, r: &Record) {
        if let Some(c) = self.conn.as_mut().filter(|c| c.is_selected()) {
            c.send_record(r).unwrap();
        }
    }

    /// Run every layer until nothing changes locally.
    fn pump(&mut self) {
        while let Some(p) = self.subs.poll_send() {
            if let Some(r) = self.out.send(p).unwrap() {
                self.send_now(&r);
            }
        }
        while let Some(ev) = self.conn.as_mut().and_then(Connection::poll_event) {
            match ev {
                ConnectionEvent::KeyConfirmed => {
                    self.conn.as_mut().unwrap().select().unwrap();
                    for r in self.out.connection_selected() {
                        self.send_now(&r);
                    }
                }
                ConnectionEvent::Record(Record::Ack { resp_seqnum }) => {
                    self.out.handle_ack(resp_seqnum);
                }
                ConnectionEvent::Record(Record::Ping(id)) => self.send_now(&Record::Pong(id)),
                ConnectionEvent::Record(r) => {
                    let v = self.inb.receive(r.seqnum().expect("OPEN/DATA/CLOSE"));
                    self.send_now(&Record::Ack { resp_seqnum: v.ack });
                    if v.deliver {
                        self.subs.handle_record(r).unwrap();
                    }
                }
            }
            while let Some(p) = self.subs.poll_send() {
                if let Some(r) = self.out.send(p).unwrap() {
                    self.send_now(&r);
                }
            }
        }
        self.app
            .extend(std::iter::from_fn(|| self.subs.poll_event()));
    }

    fn take_wire(&mut self) -> Vec<u8> {
        let c = self.conn.as_mut().unwrap();
        std::iter::from_fn(|| c.poll_transmit()).flatten().collect()
    }
}

/// Exchange bytes until both sides are quiet.
fn settle(a: &mut Peer, b: &mut Peer) {
    for _ in 0..20 {
        a.pump();
        b.pump();
        let (wa, wb) = (a.take_wire(), b.take_wire());
        if wa.is_empty() && wb.is_empty() {
            return;
        }
        b.conn.as_mut().unwrap().handle_input(&wa).unwrap();
        a.conn.as_mut().unwrap().handle_input(&wb).unwrap();
    }
    panic!("did not settle");
}

fn data(scid: u32, d: &[u8]) -> SubchannelEvent {
    SubchannelEvent::Data {
        scid,
        data: d.to_vec(),
    }
}

#[test]
fn two_peers_survive_a_reconnection() {
    let key = DilationKey::derive(&[7; 32]);
    let mut l = Peer::new(Role::Leader);
    let mut f = Peer::new(Role::Follower);

    // Generation 1. The Leader opens and writes before the Follower listens.
    l.connect(&key, 1);
    f.connect(&key, 2);
    settle(&mut l, &mut f);
    assert!(l.out.is_connected() && f.out.is_connected());
    let scid = l.subs.open("echo", false).unwrap();
    l.subs.write(scid, b"one".to_vec()).unwrap();
    settle(&mut l, &mut f);
    assert!(f.app.is_empty(), "held until the Follower listens");
    assert_eq!(
        l.out.unacked().count(),
        0,
        "held records are acked all the same"
    );
    f.subs.listen("echo", false).unwrap();
    f.subs.write(scid, b"hello".to_vec()).unwrap();
    settle(&mut l, &mut f);

    // The Leader writes "two"; the Follower gets it but its ACK is lost with the
    // connection. Then "three" is written and lost on the wire.
    l.subs.write(scid, b"two".to_vec()).unwrap();
    l.pump();
    let w = l.take_wire();
    f.conn.as_mut().unwrap().handle_input(&w).unwrap();
    f.pump();
    let _lost_ack = f.take_wire();
    l.subs.write(scid, b"three".to_vec()).unwrap();
    l.pump();
    let _lost = l.take_wire();
    l.lose_connection();
    f.lose_connection();
    // Written while no connection exists: queued.
    f.subs.write(scid, b"while-down".to_vec()).unwrap();
    f.pump();
    assert_eq!(l.out.unacked().count(), 2, "two and three");

    // Generation 2: new connections, new ephemerals; unacked records are re-sent.
    l.connect(&key, 3);
    f.connect(&key, 4);
    settle(&mut l, &mut f);
    l.subs.close(scid).unwrap();
    settle(&mut l, &mut f);

    assert_eq!(
        f.app,
        vec![
            SubchannelEvent::Accepted {
                scid,
                name: "echo".into()
            },
            data(scid, b"one"),
            data(scid, b"two"),
            data(scid, b"three"),
            SubchannelEvent::Closed { scid },
        ],
        "every record exactly once, in order (the re-sent \"two\" was dropped)"
    );
    assert_eq!(
        l.app,
        vec![
            data(scid, b"hello"),
            data(scid, b"while-down"),
            SubchannelEvent::Closed { scid }
        ]
    );
    assert_eq!(l.out.unacked().count(), 0);
    assert_eq!(f.out.unacked().count(), 0);
    assert_eq!(l.out.next_seqnum(), 5, "OPEN, one, two, three, CLOSE");
}
