//! Two endpoints in memory: a mailbox that carries `dilate-N` bodies, listeners and dials
//! that pair connections, and a network that can reset them. No sockets, virtual time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::*;
use crate::dilation::subchannel::SubchannelEvent as Sub;

struct Net {
    now: Instant,
    rng: rand_chacha::ChaCha20Rng,
    eps: [Endpoint; 2],
    /// Connection (side, id) -> its other end.
    pairs: HashMap<(usize, ConnId), (usize, ConnId)>,
    /// Side -> generations it listens for.
    listening: Vec<Vec<u32>>,
    events: [Vec<EndpointEvent>; 2],
    /// Cut every connection before it delivers bytes (a dead network).
    dead: bool,
}

fn hint(side: usize, g: u32) -> DirectHint {
    DirectHint {
        hostname: format!("side{side}"),
        port: g as u16,
        priority: 0.0,
    }
}

impl Net {
    fn new() -> Net {
        let now = Instant::now();
        let mut net = Net {
            now,
            rng: rand_chacha::ChaCha20Rng::seed_from_u64(7),
            eps: [Endpoint::default(), Endpoint::default()],
            pairs: HashMap::new(),
            listening: vec![Vec::new(), Vec::new()],
            events: [Vec::new(), Vec::new()],
            dead: false,
        };
        let key = [9u8; 32];
        for s in 0..2 {
            let opts = DilateOptions::default();
            net.eps[s].dilate(now, opts, &mut net.rng).unwrap();
            net.eps[s].peer_version(now, &["ged".to_string()], &key);
        }
        net.run();
        net
    }

    fn ephemeral(&mut self) -> [u8; 32] {
        let mut e = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut self.rng, &mut e);
        e
    }

    /// Deliver everything until nothing moves.
    fn run(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for s in 0..2 {
                let o = 1 - s;
                if self.eps[s].has_unsent() {
                    moved = true;
                    self.eps[s].fill(usize::MAX);
                }
                while let Some(body) = self.eps[s].poll_mailbox() {
                    moved = true;
                    let now = self.now;
                    self.eps[o].peer_body(now, &body);
                }
                while let Some(ev) = self.eps[s].poll_event() {
                    self.events[s].push(ev);
                }
                if let Some(io) = self.eps[s].poll_io() {
                    moved = true;
                    self.io(s, io);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the endpoints never went quiet");
    }

    fn io(&mut self, s: usize, io: Io) {
        let now = self.now;
        let o = 1 - s;
        match io {
            Io::Listen { generation } => {
                self.listening[s].push(generation);
                self.eps[s].listening(
                    now,
                    generation,
                    Hints {
                        direct: vec![hint(s, generation)],
                        ..Hints::default()
                    },
                );
            }
            Io::ConnectDirect {
                generation,
                hint: h,
            } => {
                assert_eq!(h.hostname, format!("side{o}"));
                let g = u32::from(h.port);
                if self.dead || !self.listening[o].contains(&g) {
                    return;
                }
                let e1 = self.ephemeral();
                let e2 = self.ephemeral();
                let Ok(a) = self.eps[s].connection_made(now, generation, Path::default(), e1)
                else {
                    return;
                };
                let inbound = Path {
                    inbound: true,
                    ..Path::default()
                };
                let b = self.eps[o].connection_made(now, g, inbound, e2).unwrap();
                self.pairs.insert((s, a), (o, b));
                self.pairs.insert((o, b), (s, a));
            }
            Io::ConnectRelay { .. } => {}
            Io::StopConnecting { generation } => self.listening[s].retain(|g| *g != generation),
            Io::Transmit { id, bytes } => {
                if let Some(&(o, peer)) = self.pairs.get(&(s, id)) {
                    self.eps[o].connection_input(now, peer, &bytes);
                }
            }
            Io::Drop { id } => {
                if let Some((o, peer)) = self.pairs.remove(&(s, id)) {
                    self.pairs.remove(&(o, peer));
                    self.eps[o].connection_lost(now, peer);
                }
            }
        }
    }

    /// Reset every connection (both ends see it lost).
    fn reset_all(&mut self) {
        let now = self.now;
        let pairs: Vec<_> = self.pairs.drain().collect();
        for ((s, id), _) in pairs {
            self.eps[s].connection_lost(now, id);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for s in 0..2 {
            if self.eps[s].poll_timeout().is_some_and(|t| t <= now) {
                self.eps[s].handle_timeout(now, &mut self.rng);
            }
        }
        self.run();
    }

    fn data(&self, s: usize, scid: u32) -> Vec<Vec<u8>> {
        self.events[s]
            .iter()
            .filter_map(|e| match e {
                EndpointEvent::Subchannel(Sub::Data { scid: c, data }) if *c == scid => {
                    Some(data.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn connected(&self, s: usize) -> usize {
        self.events[s]
            .iter()
            .filter(|e| matches!(e, EndpointEvent::Status(manager::Event::Connected { .. })))
            .count()
    }
}

#[test]
fn two_endpoints_connect_and_carry_records_whole_and_in_order() {
    let mut net = Net::new();
    assert_eq!(net.connected(0), 1);
    assert_eq!(net.connected(1), 1);
    let roles: Vec<_> = net.eps.iter().map(|e| e.role().unwrap()).collect();
    assert_ne!(roles[0], roles[1]);
    net.eps[1].listen("echo", false).unwrap();
    let scid = net.eps[0].open("echo", false).unwrap();
    let msgs: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        Vec::new(),
        vec![7u8; 1 << 20],
        vec![1u8; 65_519],
        vec![2u8; 65_520],
    ];
    for m in &msgs {
        net.eps[0].write(scid, m.clone()).unwrap();
    }
    net.run();
    assert!(
        net.events[1].contains(&EndpointEvent::Subchannel(Sub::Accepted {
            scid,
            name: "echo".into()
        }))
    );
    assert_eq!(net.data(1, scid), msgs);
    // Everything was acknowledged.
    assert_eq!(net.eps[0].unacked_bytes(), 0);
    net.eps[0].close(scid).unwrap();
    net.run();
    assert!(net.events[0].contains(&EndpointEvent::Subchannel(Sub::Closed { scid })));
    assert!(net.events[1].contains(&EndpointEvent::Subchannel(Sub::Closed { scid })));
}

#[test]
fn an_open_before_the_peer_listens_is_held_until_it_does() {
    let mut net = Net::new();
    let scid = net.eps[0].open("late", false).unwrap();
    net.eps[0].write(scid, b"early".to_vec()).unwrap();
    net.run();
    assert!(net.data(1, scid).is_empty());
    net.eps[1].listen("late", false).unwrap();
    net.run();
    assert_eq!(net.data(1, scid), vec![b"early".to_vec()]);
}

#[test]
fn records_written_while_disconnected_arrive_once_after_reconnection() {
    let mut net = Net::new();
    net.eps[1].listen("s", false).unwrap();
    net.eps[0].listen("s", false).unwrap();
    let a = net.eps[0].open("s", false).unwrap();
    let b = net.eps[1].open("s", false).unwrap();
    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    for round in 0..5u8 {
        // Writes while connected, a reset, writes while the network is dead, then a new
        // generation.
        for i in 0..3u8 {
            let m = vec![round, i];
            net.eps[0].write(a, m.clone()).unwrap();
            sent_a.push(m);
            let m = vec![round, i, 1];
            net.eps[1].write(b, m.clone()).unwrap();
            sent_b.push(m);
        }
        // Deliver only part of it: the resets below cut records in flight.
        net.reset_all();
        net.dead = true;
        net.run();
        let m = vec![round, 9];
        net.eps[0].write(a, m.clone()).unwrap();
        sent_a.push(m);
        net.dead = false;
        // The Leader's new generation (reconnect/reconnecting) is immediate; a dead
        // generation is retried after its timeout.
        net.advance(Duration::from_secs(31));
        net.advance(Duration::from_secs(1));
    }
    net.run();
    assert_eq!(net.data(1, a), sent_a);
    assert_eq!(net.data(0, b), sent_b);
    assert!(net.connected(0) >= 2);
    assert_eq!(net.eps[0].unacked_bytes(), 0);
    assert_eq!(net.eps[1].unacked_bytes(), 0);
}

#[test]
fn subchannels_before_the_roles_are_known_are_refused() {
    let mut e = Endpoint::default();
    assert!(matches!(
        e.open("x", false),
        Err(DilationError::InvalidState(_))
    ));
    assert!(e.listen("x", false).is_err());
    assert!(e.write(1, vec![]).is_err());
}

#[test]
fn garbage_on_a_connection_drops_it_and_a_new_generation_follows() {
    let mut net = Net::new();
    let (&(s, id), _) = net.pairs.iter().next().unwrap();
    let now = net.now;
    net.eps[s].connection_input(now, id, &[0xff; 64]);
    net.run();
    net.advance(Duration::from_secs(1));
    assert_eq!(net.connected(0), 2, "{:?}", net.events[0]);
    assert_eq!(net.connected(1), 2);
}

#[test]
fn held_acknowledgements_stop_nothing_but_the_peers_window() {
    let mut net = Net::new();
    net.eps[1].listen("x", false).unwrap();
    let scid = net.eps[0].open("x", false).unwrap();
    net.run();
    let before = net.connected(0);
    net.eps[1].hold_acks(true);
    for i in 0..4u8 {
        net.eps[0].write(scid, vec![i; 1000]).unwrap();
    }
    net.run();
    // Delivered, but not acknowledged: the writer still holds them.
    assert_eq!(net.data(1, scid).len(), 4);
    assert_eq!(net.eps[0].unacked_bytes(), 4000);
    // Keepalives still cross while acknowledgements are held: time passes over several
    // ping intervals and the connection stays.
    for _ in 0..4 {
        net.advance(manager::DEFAULT_PING_INTERVAL);
    }
    assert_eq!(net.connected(0), before, "the connection was replaced");
    assert_eq!(net.eps[0].unacked_bytes(), 4000);
    // Released: one cumulative acknowledgement retires them all.
    net.eps[1].hold_acks(false);
    net.run();
    assert_eq!(net.eps[0].unacked_bytes(), 0);
    // Holding twice or releasing twice changes nothing.
    net.eps[1].hold_acks(false);
    net.run();
    assert_eq!(net.data(1, scid).len(), 4);
}
