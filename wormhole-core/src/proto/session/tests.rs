//! Transcript tests (exact frames out for given frames in) and a two-peer simulation
//! through an in-memory mailbox that follows the reference server's semantics.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::*;
use crate::ErrorKind;
use crate::proto::wire::{HexBytes, NameplateEntry};

const APPID: &str = "example.com/test";

fn session(seed: u64) -> Session {
    Session::new(
        SessionConfig {
            appid: APPID.into(),
            app_versions: json!({}),
            client_version: ("rust".into(), "test".into()),
            dilation: false,
        },
        Box::new(StdRng::seed_from_u64(seed)),
    )
}

fn drain(s: &mut Session) -> (Vec<ClientMessage>, Vec<Event>) {
    let mut out = Vec::new();
    while let Some(m) = s.poll_transmit() {
        out.push(m);
    }
    let mut evs = Vec::new();
    while let Some(e) = s.poll_event() {
        evs.push(e);
    }
    (out, evs)
}

fn types(msgs: &[ClientMessage]) -> Vec<&'static str> {
    msgs.iter()
        .map(|m| match m {
            ClientMessage::Bind { .. } => "bind",
            ClientMessage::List => "list",
            ClientMessage::Allocate => "allocate",
            ClientMessage::Claim { .. } => "claim",
            ClientMessage::Release { .. } => "release",
            ClientMessage::Open { .. } => "open",
            ClientMessage::Add { .. } => "add",
            ClientMessage::Close { .. } => "close",
            ClientMessage::Ping { .. } => "ping",
        })
        .collect()
}

/// An in-memory mailbox server with the reference semantics that matter to clients:
/// claims map nameplates to mailboxes, `add` is broadcast to every subscriber (including
/// the sender), `open` replays stored messages, and `close` by every side deletes it.
#[derive(Default)]
struct Mailbox {
    nameplates: HashMap<String, String>,
    messages: HashMap<String, Vec<MailboxMessage>>,
    next_nameplate: u32,
    /// Per client: (side, open mailbox).
    clients: Vec<(String, Option<String>)>,
    closes: Vec<(String, Mood)>,
    released: Vec<String>,
}

struct Net {
    server: Mailbox,
    peers: Vec<Session>,
    events: Vec<Vec<Event>>,
    connected: Vec<bool>,
}

impl Net {
    fn new(peers: Vec<Session>) -> Net {
        let n = peers.len();
        let mut net = Net {
            server: Mailbox::default(),
            peers,
            events: vec![Vec::new(); n],
            connected: vec![false; n],
        };
        net.server.next_nameplate = 1;
        net.server.clients = vec![(String::new(), None); n];
        net
    }

    fn connect(&mut self, i: usize) {
        self.connected[i] = true;
        self.server.clients[i] = (String::new(), None);
        self.peers[i].connected();
        self.peers[i].handle_server(ServerMessage::Welcome {
            welcome: Map::new(),
        });
    }

    fn disconnect(&mut self, i: usize) {
        self.connected[i] = false;
        self.server.clients[i].1 = None;
        self.peers[i].disconnected();
    }

    /// Deliver frames until quiet.
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut progress = false;
            for i in 0..self.peers.len() {
                while let Some(e) = self.peers[i].poll_event() {
                    self.events[i].push(e);
                    progress = true;
                }
                if !self.connected[i] {
                    continue;
                }
                while let Some(m) = self.peers[i].poll_transmit() {
                    progress = true;
                    self.handle(i, m);
                }
            }
            if !progress {
                return;
            }
        }
        panic!("simulation did not settle");
    }

    fn handle(&mut self, i: usize, m: ClientMessage) {
        let mut replies = Vec::new();
        let mut broadcast = None;
        match m {
            ClientMessage::Bind { side, .. } => self.server.clients[i].0 = side,
            ClientMessage::List => replies.push(ServerMessage::Nameplates {
                nameplates: self
                    .server
                    .nameplates
                    .keys()
                    .map(|k| NameplateEntry { id: k.clone() })
                    .collect(),
            }),
            ClientMessage::Allocate => {
                let n = self.server.next_nameplate.to_string();
                self.server.next_nameplate += 1;
                self.server.nameplates.insert(n.clone(), format!("mb{n}"));
                replies.push(ServerMessage::Allocated { nameplate: n });
            }
            ClientMessage::Claim { nameplate } => {
                let mb = self
                    .server
                    .nameplates
                    .entry(nameplate.clone())
                    .or_insert_with(|| format!("mb{nameplate}"))
                    .clone();
                replies.push(ServerMessage::Claimed { mailbox: mb });
            }
            ClientMessage::Release { nameplate } => {
                self.server.released.push(nameplate.unwrap_or_default());
                replies.push(ServerMessage::Released);
            }
            ClientMessage::Open { mailbox } => {
                for m in self
                    .server
                    .messages
                    .get(&mailbox)
                    .cloned()
                    .unwrap_or_default()
                {
                    replies.push(ServerMessage::Message(m));
                }
                self.server.clients[i].1 = Some(mailbox);
            }
            ClientMessage::Add { phase, body } => {
                let mb = self.server.clients[i].1.clone().expect("add before open");
                let msg = MailboxMessage {
                    side: self.server.clients[i].0.clone(),
                    phase,
                    body,
                    server_rx: None,
                    id: None,
                };
                self.server
                    .messages
                    .entry(mb.clone())
                    .or_default()
                    .push(msg.clone());
                broadcast = Some((mb, msg));
            }
            ClientMessage::Close { mood, .. } => {
                self.server.clients[i].1 = None;
                self.server.closes.push((
                    self.server.clients[i].0.clone(),
                    mood.unwrap_or(Mood::Happy),
                ));
                replies.push(ServerMessage::Closed);
            }
            ClientMessage::Ping { ping } => replies.push(ServerMessage::Pong { pong: ping }),
        }
        for r in replies {
            self.peers[i].handle_server(r);
        }
        if let Some((mb, msg)) = broadcast {
            for j in 0..self.peers.len() {
                if self.connected[j] && self.server.clients[j].1.as_deref() == Some(mb.as_str()) {
                    self.peers[j].handle_server(ServerMessage::Message(msg.clone()));
                }
            }
        }
    }

    fn take_events(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.events[i])
    }
}

fn messages(evs: &[Event]) -> Vec<Vec<u8>> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn verifier(evs: &[Event]) -> Option<[u8; 32]> {
    evs.iter().find_map(|e| match e {
        Event::Verifier(v) => Some(*v),
        _ => None,
    })
}

fn closed(evs: &[Event]) -> Option<Result<()>> {
    evs.iter().find_map(|e| match e {
        Event::Closed(r) => Some(r.clone()),
        _ => None,
    })
}

#[test]
fn set_code_transcript_matches_reference_order() {
    let mut s = session(1);
    s.set_code("7-guitarist-revenge").unwrap();
    // Not connected: nothing goes out, but the code is known at once.
    let (out, evs) = drain(&mut s);
    assert!(out.is_empty());
    assert_eq!(evs, vec![Event::Code("7-guitarist-revenge".into())]);

    s.connected();
    let (out, _) = drain(&mut s);
    assert_eq!(types(&out), ["bind", "claim"]);
    match &out[0] {
        ClientMessage::Bind {
            appid,
            side,
            client_version,
        } => {
            assert_eq!(appid, APPID);
            assert_eq!(side.len(), 10);
            assert!(side.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(client_version.as_ref().unwrap().0, "rust");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out[1],
        ClientMessage::Claim {
            nameplate: "7".into()
        }
    );

    s.handle_server(ServerMessage::Claimed {
        mailbox: "2lbdfy7pfg32a".into(),
    });
    let (out, _) = drain(&mut s);
    assert_eq!(types(&out), ["open", "add"]);
    match &out[1] {
        ClientMessage::Add { phase, body } => {
            assert_eq!(phase, "pake");
            let v: Value = serde_json::from_slice(&body.0).unwrap();
            let hex_msg = v["pake_v1"].as_str().unwrap();
            assert_eq!(hex_msg.len(), 66);
            assert!(hex_msg.starts_with("53"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_peers_exchange_in_order_and_close_happy() {
    let mut net = Net::new(vec![session(1), session(2)]);
    net.peers[0].allocate_code(2).unwrap();
    // A queues messages before any peer exists.
    net.peers[0].send_message(b"early-0".to_vec()).unwrap();
    net.peers[0].send_message(b"early-1".to_vec()).unwrap();
    net.connect(0);
    net.run();
    let code = net
        .take_events(0)
        .iter()
        .find_map(|e| match e {
            Event::Code(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert!(code.starts_with("1-"));
    assert_eq!(code.split('-').count(), 3);

    net.peers[1].set_code(&code).unwrap();
    net.connect(1);
    net.run();
    net.peers[1].send_message(b"reply".to_vec()).unwrap();
    net.run();

    let a = net.take_events(0);
    let b = net.take_events(1);
    assert_eq!(messages(&b), vec![b"early-0".to_vec(), b"early-1".to_vec()]);
    assert_eq!(messages(&a), vec![b"reply".to_vec()]);
    assert!(verifier(&a).is_some());
    assert_eq!(verifier(&a), verifier(&b));
    assert!(b.iter().any(|e| *e == Event::Versions(json!({}))));
    // The nameplate is released once the peer is seen.
    assert!(net.server.released.contains(&"1".to_string()));

    net.peers[0].close();
    net.peers[1].close();
    net.run();
    assert_eq!(closed(&net.take_events(0)), Some(Ok(())));
    assert_eq!(closed(&net.take_events(1)), Some(Ok(())));
    assert!(net.peers[0].is_done() && net.peers[1].is_done());
    assert!(net.server.closes.iter().all(|(_, m)| *m == Mood::Happy));
    assert_eq!(net.server.closes.len(), 2);
}

#[test]
fn wrong_code_is_scary_on_both_sides() {
    let mut net = Net::new(vec![session(1), session(2)]);
    net.peers[0].set_code("4-purple-sausages").unwrap();
    net.peers[1].set_code("4-purple-sausagez").unwrap();
    net.peers[0].send_message(b"secret".to_vec()).unwrap();
    net.connect(0);
    net.connect(1);
    net.run();
    for i in 0..2 {
        let evs = net.take_events(i);
        assert!(messages(&evs).is_empty());
        assert!(verifier(&evs).is_none());
        assert_eq!(closed(&evs), Some(Err(Error::WrongPassword)));
    }
    assert_eq!(net.server.closes.len(), 2);
    assert!(net.server.closes.iter().all(|(_, m)| *m == Mood::Scary));
    // The plaintext was never posted: only pake and version reached the mailbox.
    let phases: Vec<_> = net.server.messages["mb4"]
        .iter()
        .map(|m| m.phase.as_str())
        .collect();
    assert!(
        phases.iter().all(|p| *p == "pake" || *p == "version"),
        "{phases:?}"
    );
}

#[test]
fn reconnect_resends_outstanding_state_and_ignores_duplicates() {
    let mut net = Net::new(vec![session(1), session(2)]);
    net.peers[0].set_code("9-a-b").unwrap();
    net.peers[0].send_message(b"m0".to_vec()).unwrap();
    net.connect(0);
    net.run();
    net.disconnect(0);
    net.run();

    // On reconnect: bind, then open (already claimed) and the unechoed... pake was echoed,
    // so only `open` follows; no second claim.
    net.connected[0] = true;
    net.peers[0].connected();
    let out: Vec<_> = std::iter::from_fn(|| net.peers[0].poll_transmit()).collect();
    assert_eq!(types(&out), ["bind", "open"]);
    for m in out {
        net.handle(0, m);
    }
    net.run();

    net.peers[1].set_code("9-a-b").unwrap();
    net.connect(1);
    net.run();
    // Replay everything again (a second open on a new connection duplicates all).
    net.disconnect(1);
    net.connect(1);
    net.run();
    let b = net.take_events(1);
    assert_eq!(messages(&b), vec![b"m0".to_vec()]);
    assert_eq!(
        b.iter().filter(|e| matches!(e, Event::Verifier(_))).count(),
        1
    );
}

#[test]
fn unechoed_messages_are_resent_after_reconnect() {
    let mut s = session(3);
    s.set_code("3-x-y").unwrap();
    s.connected();
    drain(&mut s);
    s.handle_server(ServerMessage::Claimed {
        mailbox: "mb".into(),
    });
    let (out, _) = drain(&mut s);
    assert_eq!(types(&out), ["open", "add"]);
    // The pake was never echoed; the connection drops.
    s.disconnected();
    s.connected();
    let (out, _) = drain(&mut s);
    assert_eq!(types(&out), ["bind", "open", "add"]);
}

#[test]
fn numbered_phases_are_delivered_in_order_without_gaps() {
    let mut net = Net::new(vec![session(1), session(2)]);
    net.peers[0].set_code("5-a-b").unwrap();
    net.peers[1].set_code("5-a-b").unwrap();
    net.connect(0);
    net.connect(1);
    net.run();
    assert!(net.peers[0].is_verified() && net.peers[1].is_verified());
    net.take_events(0);
    // A goes offline; B's messages are stored on the server only.
    net.disconnect(0);
    for m in ["zero", "one", "two"] {
        net.peers[1].send_message(m.as_bytes().to_vec()).unwrap();
    }
    net.run();
    let bside = net.peers[1].side().to_owned();
    let stored: HashMap<String, MailboxMessage> = net.server.messages["mb5"]
        .iter()
        .filter(|m| m.side == bside)
        .map(|m| (m.phase.clone(), m.clone()))
        .collect();
    let a = &mut net.peers[0];
    let mut feed = |phase: &str| {
        a.handle_server(ServerMessage::Message(stored[phase].clone()));
        messages(&drain(a).1)
    };
    assert!(feed("2").is_empty());
    assert!(feed("1").is_empty());
    assert_eq!(
        feed("0"),
        vec![b"zero".to_vec(), b"one".to_vec(), b"two".to_vec()]
    );
    // Duplicates (a replay after reconnect) are ignored.
    assert!(feed("1").is_empty());
    assert!(feed("version").is_empty());
}

#[test]
fn tampered_body_after_verification_is_scary() {
    let mut net = Net::new(vec![session(1), session(2)]);
    net.peers[0].set_code("5-a-b").unwrap();
    net.peers[1].set_code("5-a-b").unwrap();
    net.connect(0);
    net.connect(1);
    net.run();
    let bside = net.peers[1].side().to_owned();
    let a = &mut net.peers[0];
    a.handle_server(ServerMessage::Message(MailboxMessage {
        side: bside,
        phase: "0".into(),
        body: HexBytes(vec![0u8; 60]),
        server_rx: None,
        id: None,
    }));
    let (out, evs) = drain(a);
    assert!(messages(&evs).is_empty());
    assert!(out.iter().any(|m| matches!(
        m,
        ClientMessage::Close {
            mood: Some(Mood::Scary),
            ..
        }
    )));
}

#[test]
fn welcome_error_fails_unwelcome() {
    let mut s = session(1);
    s.connected();
    let mut w = Map::new();
    w.insert("error".into(), json!("go away"));
    s.handle_server(ServerMessage::Welcome { welcome: w });
    let (_, evs) = drain(&mut s);
    assert_eq!(closed(&evs), Some(Err(Error::Welcome("go away".into()))));
    assert!(s.is_done());
}

#[test]
fn welcome_is_reported_once() {
    let mut s = session(1);
    let mut w = Map::new();
    w.insert("motd".into(), json!("hi"));
    s.connected();
    s.handle_server(ServerMessage::Welcome { welcome: w.clone() });
    s.disconnected();
    s.connected();
    s.handle_server(ServerMessage::Welcome { welcome: w.clone() });
    let (_, evs) = drain(&mut s);
    assert_eq!(evs, vec![Event::Welcome(w)]);
}

#[test]
fn server_error_fails_errory_with_release_and_close() {
    let mut s = session(1);
    s.set_code("6-a-b").unwrap();
    s.connected();
    s.handle_server(ServerMessage::Claimed {
        mailbox: "mb6".into(),
    });
    drain(&mut s);
    s.handle_server(ServerMessage::Error {
        error: "crowded".into(),
        orig: None,
    });
    let (out, evs) = drain(&mut s);
    assert_eq!(
        out,
        vec![
            ClientMessage::Release {
                nameplate: Some("6".into())
            },
            ClientMessage::Close {
                mailbox: Some("mb6".into()),
                mood: Some(Mood::Errory)
            }
        ]
    );
    assert!(evs.is_empty(), "not closed until acknowledged: {evs:?}");
    s.handle_server(ServerMessage::Released);
    s.handle_server(ServerMessage::Closed);
    let (_, evs) = drain(&mut s);
    assert_eq!(closed(&evs), Some(Err(Error::Server("crowded".into()))));
}

#[test]
fn close_before_code_is_lonely_and_immediate() {
    let mut s = session(1);
    s.connected();
    drain(&mut s);
    s.close();
    let (out, evs) = drain(&mut s);
    assert!(out.is_empty());
    assert_eq!(closed(&evs), Some(Err(Error::Lonely)));
    assert_eq!(closed(&evs).unwrap().unwrap_err().kind(), ErrorKind::Lonely);
}

#[test]
fn close_while_disconnected_waits_for_reconnect() {
    let mut s = session(1);
    s.set_code("8-a-b").unwrap();
    s.connected();
    s.handle_server(ServerMessage::Claimed {
        mailbox: "mb8".into(),
    });
    drain(&mut s);
    s.disconnected();
    s.close();
    let (out, evs) = drain(&mut s);
    assert!(out.is_empty() && evs.is_empty());
    s.connected();
    let (out, _) = drain(&mut s);
    assert_eq!(types(&out), ["bind", "release", "close"]);
    s.handle_server(ServerMessage::Released);
    s.handle_server(ServerMessage::Closed);
    assert!(s.is_done());
    // abandon_close on a finished session changes nothing.
    s.abandon_close();
    let (_, evs) = drain(&mut s);
    assert_eq!(closed(&evs), Some(Err(Error::Lonely)));
}

#[test]
fn code_source_and_input_rules() {
    let mut s = session(1);
    s.allocate_code(2).unwrap();
    assert_eq!(s.set_code("1-a").unwrap_err(), Error::OnlyOneCode);
    assert_eq!(s.start_input().unwrap_err(), Error::OnlyOneCode);
    assert_eq!(s.allocate_code(2).unwrap_err(), Error::OnlyOneCode);

    let mut s = session(1);
    assert_eq!(
        s.set_code("x-a").unwrap_err().kind(),
        ErrorKind::InvalidCode
    );
    // An invalid code does not use up the one code source.
    s.set_code("1-a").unwrap();

    let mut s = session(1);
    s.start_input().unwrap();
    s.connected();
    let (out, _) = drain(&mut s);
    assert_eq!(types(&out), ["bind", "list"]);
    assert_eq!(
        s.choose_words("a-b").unwrap_err(),
        Error::MustChooseNameplateFirst
    );
    s.handle_server(ServerMessage::Nameplates {
        nameplates: vec![NameplateEntry { id: "12".into() }],
    });
    let (_, evs) = drain(&mut s);
    assert_eq!(evs, vec![Event::Nameplates(vec!["12".into()])]);
    s.refresh_nameplates().unwrap();
    assert_eq!(types(&drain(&mut s).0), ["list"]);
    assert_eq!(
        s.choose_nameplate("x").unwrap_err().kind(),
        ErrorKind::InvalidCode
    );
    s.choose_nameplate("12").unwrap();
    assert_eq!(
        s.choose_nameplate("12").unwrap_err(),
        Error::AlreadyChoseNameplate
    );
    assert_eq!(
        s.refresh_nameplates().unwrap_err(),
        Error::AlreadyChoseNameplate
    );
    assert_eq!(types(&drain(&mut s).0), ["claim"]);
    s.handle_server(ServerMessage::Claimed {
        mailbox: "mb12".into(),
    });
    let (out, evs) = drain(&mut s);
    assert_eq!(types(&out), ["open"]);
    assert_eq!(evs, vec![Event::NameplateClaimed]);
    s.choose_words("purple-sausages").unwrap();
    assert_eq!(
        s.choose_words("purple-sausages").unwrap_err(),
        Error::AlreadyChoseWords
    );
    let (out, evs) = drain(&mut s);
    assert_eq!(types(&out), ["add"]);
    assert_eq!(evs, vec![Event::Code("12-purple-sausages".into())]);
}

#[test]
fn peer_pake_before_words_is_stashed() {
    let mut a = session(1);
    a.set_code("12-purple-sausages").unwrap();
    a.connected();
    a.handle_server(ServerMessage::Claimed {
        mailbox: "mb".into(),
    });
    let apake = drain(&mut a)
        .0
        .into_iter()
        .find_map(|m| match m {
            ClientMessage::Add { body, .. } => Some(body),
            _ => None,
        })
        .unwrap();
    let mut b = session(2);
    b.start_input().unwrap();
    b.connected();
    b.choose_nameplate("12").unwrap();
    b.handle_server(ServerMessage::Claimed {
        mailbox: "mb".into(),
    });
    b.handle_server(ServerMessage::Message(MailboxMessage {
        side: a.side().into(),
        phase: "pake".into(),
        body: apake,
        server_rx: None,
        id: None,
    }));
    let (_, evs) = drain(&mut b);
    assert!(!evs.iter().any(|e| matches!(e, Event::UnverifiedKey(_))));
    b.choose_words("purple-sausages").unwrap();
    let (out, evs) = drain(&mut b);
    assert!(evs.iter().any(|e| matches!(e, Event::UnverifiedKey(_))));
    let phases: Vec<_> = out
        .iter()
        .filter_map(|m| match m {
            ClientMessage::Add { phase, .. } => Some(phase.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(phases, ["pake", "version"]);
}

#[test]
fn bad_peer_pake_is_scary() {
    for body in [&b"{}"[..], b"garbage", br#"{"pake_v1": "zz"}"#] {
        let mut s = session(1);
        s.set_code("2-a-b").unwrap();
        s.connected();
        s.handle_server(ServerMessage::Claimed {
            mailbox: "mb".into(),
        });
        drain(&mut s);
        s.handle_server(ServerMessage::Message(MailboxMessage {
            side: "peer".into(),
            phase: "pake".into(),
            body: HexBytes(body.to_vec()),
            server_rx: None,
            id: None,
        }));
        let (out, _) = drain(&mut s);
        assert!(out.iter().any(|m| matches!(
            m,
            ClientMessage::Close {
                mood: Some(Mood::Scary),
                ..
            }
        )));
    }
}

#[test]
fn send_after_close_is_an_error() {
    let mut s = session(1);
    s.close();
    assert_eq!(s.send_message(b"x".to_vec()).unwrap_err(), Error::Closed);
    assert_eq!(s.set_code("1-a").unwrap_err(), Error::Closed);
}

#[test]
fn cancel_reports_cancelled_and_closes_lonely() {
    let mut s = session(1);
    s.set_code("8-a-b").unwrap();
    s.connected();
    s.handle_server(ServerMessage::Claimed {
        mailbox: "mb8".into(),
    });
    drain(&mut s);
    s.cancel();
    let (out, _) = drain(&mut s);
    assert_eq!(
        out[1],
        ClientMessage::Close {
            mailbox: Some("mb8".into()),
            mood: Some(Mood::Lonely)
        }
    );
    s.handle_server(ServerMessage::Released);
    s.handle_server(ServerMessage::Closed);
    assert_eq!(closed(&drain(&mut s).1), Some(Err(Error::Cancelled)));
}

#[test]
fn fixed_rng_gives_identical_transcripts() {
    let run = || {
        let mut net = Net::new(vec![session(7), session(8)]);
        net.peers[0].set_code("3-a-b").unwrap();
        net.peers[1].set_code("3-a-b").unwrap();
        net.peers[0].send_message(b"hi".to_vec()).unwrap();
        net.connect(0);
        net.connect(1);
        net.run();
        net.server.messages["mb3"].clone()
    };
    assert_eq!(run(), run());
}

#[test]
fn close_before_any_connection_finishes_at_once() {
    let mut s = session(1);
    s.set_code("8-a-b").unwrap();
    s.close();
    let (out, evs) = drain(&mut s);
    assert!(out.is_empty());
    assert_eq!(closed(&evs), Some(Err(Error::Lonely)));
}

/// A squatter (or a hostile server) filling the mailbox before the key exists: the
/// messages a session holds are bounded in count and bytes, and crossing the bound fails
/// the session with a protocol error instead of growing without limit. An honest peer's
/// few early messages are still held and delivered.
#[test]
fn messages_held_before_the_key_are_bounded() {
    let squat = |s: &mut Session, phase: String, len: usize| {
        s.handle_server(ServerMessage::Message(MailboxMessage {
            side: "5qua77e4aa".into(),
            phase,
            body: HexBytes(vec![7u8; len]),
            server_rx: None,
            id: None,
        }));
    };
    let claimed = |seed| {
        let mut s = session(seed);
        s.set_code("6-a-b").unwrap();
        s.connected();
        s.handle_server(ServerMessage::Claimed {
            mailbox: "mb6".into(),
        });
        drain(&mut s);
        s
    };
    let errory = |out: &[ClientMessage]| {
        out.iter().any(|m| {
            matches!(
                m,
                ClientMessage::Close {
                    mood: Some(Mood::Errory),
                    ..
                }
            )
        })
    };

    // By bytes: 1 MiB bodies, one past the byte cap.
    let mut s = claimed(1);
    let per = (1 << 20) - 64; // phase names count too
    for i in 0..MAX_QUEUED_PEER_BYTES / per {
        squat(&mut s, i.to_string(), per);
        assert!(!errory(&drain(&mut s).0), "failed early, at message {i}");
    }
    squat(&mut s, "last".into(), per);
    assert!(errory(&drain(&mut s).0), "not failed past the byte cap");
    assert_eq!(s.order.held(), (0, 0), "the held messages were freed");
    s.handle_server(ServerMessage::Released);
    s.handle_server(ServerMessage::Closed);
    let (_, evs) = drain(&mut s);
    assert_eq!(
        closed(&evs).map(|r| r.map_err(|e| e.kind())),
        Some(Err(ErrorKind::Protocol))
    );

    // By count: tiny bodies.
    let mut s = claimed(2);
    for i in 0..MAX_QUEUED_PEER_MESSAGES {
        squat(&mut s, format!("p{i}"), 1);
    }
    assert!(!errory(&drain(&mut s).0));
    squat(&mut s, "one-more".into(), 1);
    assert!(errory(&drain(&mut s).0), "not failed past the count cap");
}

/// A server message that no machine expects in the current state is a protocol error:
/// the session closes `errory` (releasing and closing what it holds) and reports
/// `ErrorKind::Protocol`, instead of dropping the message.
#[test]
fn unexpected_server_messages_are_protocol_errors_in_every_state() {
    let peer_msg = |phase: &str| {
        ServerMessage::Message(MailboxMessage {
            side: "0ther51de0".into(),
            phase: phase.into(),
            body: HexBytes(vec![1u8; 40]),
            server_rx: None,
            id: None,
        })
    };
    let claimed = || ServerMessage::Claimed {
        mailbox: "mb6".into(),
    };
    let allocated = || ServerMessage::Allocated {
        nameplate: "6".into(),
    };
    // Each state: how to reach it, and the frames a failure there must send (besides
    // nothing else).
    type Setup = fn(&mut Session);
    let states: Vec<(&str, Setup, Vec<&str>)> = vec![
        ("connected, no code", |s| s.connected(), vec![]),
        (
            "allocating",
            |s| {
                s.connected();
                s.allocate_code(2).unwrap();
            },
            vec![],
        ),
        (
            "claiming",
            |s| {
                s.set_code("6-a-b").unwrap();
                s.connected();
            },
            vec!["release"],
        ),
        (
            "claimed, mailbox open",
            |s| {
                s.set_code("6-a-b").unwrap();
                s.connected();
                s.handle_server(ServerMessage::Claimed {
                    mailbox: "mb6".into(),
                });
            },
            vec!["release", "close"],
        ),
    ];
    type Input = fn() -> ServerMessage;
    let inputs: Vec<(&str, Input)> = vec![
        ("claimed", claimed),
        ("released", || ServerMessage::Released),
        ("closed", || ServerMessage::Closed),
        ("allocated", allocated),
    ];
    let mut checked = 0;
    for (state, setup, frames) in &states {
        let mut cases: Vec<(&str, ServerMessage)> = inputs.iter().map(|(n, m)| (*n, m())).collect();
        cases.push(("message", peer_msg("0")));
        for (name, input) in cases {
            let expected = match (*state, name) {
                // The one reply each state is waiting for.
                ("allocating", "allocated") | ("claiming", "claimed") => false,
                // A mailbox message is expected once the mailbox is open.
                ("claimed, mailbox open", "message") => false,
                _ => true,
            };
            let mut s = session(7);
            setup(&mut s);
            drain(&mut s);
            s.handle_server(input);
            let (out, evs) = drain(&mut s);
            if !expected {
                assert!(
                    closed(&evs).is_none() && !s.is_closing(),
                    "{state}: `{name}` is expected, but the session closed"
                );
                continue;
            }
            checked += 1;
            assert!(s.is_closing(), "{state}: `{name}` was silently dropped");
            assert_eq!(
                types(&out[..out.len().min(frames.len())]),
                *frames,
                "{state}: `{name}`"
            );
            for m in &out {
                if let ClientMessage::Close { mood, .. } = m {
                    assert_eq!(mood, &Some(Mood::Errory), "{state}: `{name}`");
                }
            }
            // Acknowledge what was sent; then the result is the protocol error.
            if !s.is_done() {
                if frames.contains(&"release") {
                    s.handle_server(ServerMessage::Released);
                }
                if frames.contains(&"close") {
                    s.handle_server(ServerMessage::Closed);
                }
            }
            let evs: Vec<_> = evs.into_iter().chain(drain(&mut s).1).collect();
            match closed(&evs) {
                Some(Err(Error::Protocol(why))) => {
                    assert!(why.contains(name), "{state}: `{name}`: {why}")
                }
                other => panic!("{state}: `{name}`: closed with {other:?}"),
            }
        }
    }
    assert_eq!(checked, 17);
}

/// While closing, replies to requests sent before closing began are expected (and
/// dropped); an acknowledgement nobody asked for ends the wait at once, with the result
/// decided when closing began.
#[test]
fn while_closing_late_replies_are_dropped_and_stray_acks_end_the_wait() {
    // Closed while allocating: the late `allocated` is dropped, nothing is claimed.
    let mut s = session(8);
    s.connected();
    s.allocate_code(2).unwrap();
    drain(&mut s);
    s.close();
    let (out, evs) = drain(&mut s);
    assert!(out.is_empty());
    assert_eq!(closed(&evs), Some(Err(Error::Lonely)));

    // Closed while claiming: the late `claimed` is dropped (no `open`), then `released`.
    let mut s = session(8);
    s.set_code("6-a-b").unwrap();
    s.connected();
    drain(&mut s);
    s.close();
    assert_eq!(types(&drain(&mut s).0), ["release"]);
    s.handle_server(ServerMessage::Claimed {
        mailbox: "mb6".into(),
    });
    let (out, evs) = drain(&mut s);
    assert!(out.is_empty() && evs.is_empty(), "{out:?} {evs:?}");
    s.handle_server(ServerMessage::Released);
    assert_eq!(closed(&drain(&mut s).1), Some(Err(Error::Lonely)));

    // Closing with both outstanding: a second `released` (none outstanding) ends the wait
    // for `closed`, with the decided result.
    let mut s = session(8);
    s.set_code("6-a-b").unwrap();
    s.connected();
    s.handle_server(ServerMessage::Claimed {
        mailbox: "mb6".into(),
    });
    drain(&mut s);
    s.close();
    assert_eq!(types(&drain(&mut s).0), ["release", "close"]);
    s.handle_server(ServerMessage::Released);
    assert!(!s.is_done());
    s.handle_server(ServerMessage::Released);
    assert!(s.is_done(), "a stray `released` did not end the wait");
    assert_eq!(closed(&drain(&mut s).1), Some(Err(Error::Lonely)));
}

/// Once the peer is seen the nameplate is released; a `released` then is expected, and a
/// second one is not.
#[test]
fn released_is_expected_once_after_the_peer_is_seen() {
    let mut net = Net::new(vec![session(1), session(2)]);
    net.peers[0].set_code("4-a-b").unwrap();
    net.peers[1].set_code("4-a-b").unwrap();
    net.connect(0);
    net.connect(1);
    net.run();
    assert_eq!(
        net.server.released.len(),
        2,
        "both released after seeing each other"
    );
    assert!(!net.peers[0].is_closing());
    net.peers[0].handle_server(ServerMessage::Released);
    assert!(net.peers[0].is_closing(), "a second `released` was dropped");
    net.run();
    match closed(&net.take_events(0)) {
        Some(Err(Error::Protocol(why))) => assert!(why.contains("released"), "{why}"),
        other => panic!("closed with {other:?}"),
    }
}

/// Replaces peer `i` by a session restored from its snapshot (through JSON text, as an
/// application would store it), as if its process had died and a new one started.
fn reborn(net: &mut Net, i: usize, seed: u64) {
    if net.connected[i] {
        net.disconnect(i);
    }
    let text = serde_json::to_string(&net.peers[i].snapshot().unwrap()).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    net.peers[i] = Session::restore(value, Box::new(StdRng::seed_from_u64(seed))).unwrap();
}

fn code_of(evs: &[Event]) -> Option<String> {
    evs.iter().find_map(|e| match e {
        Event::Code(c) => Some(c.clone()),
        _ => None,
    })
}

/// A side saved and restored before its code (allocation outstanding), after its code
/// (our `pake` posted), after the key, and in the middle of the exchange (a message of
/// ours not yet echoed, one of the peer's sent while we were gone): each time the restored
/// session carries on, and both sides get every message once, in order, and close happy.
#[test]
fn a_restored_session_continues_at_every_point() {
    let mut net = Net::new(vec![session(1), session(2)]);
    // Before the code: allocation asked for while disconnected.
    net.peers[0].allocate_code(2).unwrap();
    net.peers[0].send_message(b"a0".to_vec()).unwrap();
    reborn(&mut net, 0, 11);
    net.connect(0);
    net.run();
    let code = code_of(&net.take_events(0)).expect("A's code");

    // After the code: A's pake is in the mailbox, B is not there yet.
    reborn(&mut net, 0, 12);
    net.connect(0);
    net.run();
    assert!(
        code_of(&net.take_events(0)).is_none(),
        "the code is not reported again"
    );

    net.peers[1].set_code(&code).unwrap();
    net.connect(1);
    net.run();
    let b = net.take_events(1);
    assert_eq!(messages(&b), vec![b"a0".to_vec()]);
    let verified = verifier(&b).expect("B verified");

    // After the key (both verified).
    reborn(&mut net, 0, 13);
    net.connect(0);
    net.run();
    let a = net.take_events(0);
    assert_eq!(verifier(&a), Some(verified));

    // Mid-exchange: A posts while disconnected, B posts while A is away.
    net.disconnect(0);
    net.peers[0].send_message(b"a1".to_vec()).unwrap();
    net.peers[1].send_message(b"b0".to_vec()).unwrap();
    net.run();
    reborn(&mut net, 0, 14);
    net.connect(0);
    net.run();
    net.peers[1].send_message(b"b1".to_vec()).unwrap();
    net.peers[0].send_message(b"a2".to_vec()).unwrap();
    net.run();
    assert_eq!(
        messages(&net.take_events(0)),
        vec![b"b0".to_vec(), b"b1".to_vec()]
    );
    assert_eq!(
        messages(&net.take_events(1)),
        vec![b"a1".to_vec(), b"a2".to_vec()]
    );

    net.peers[0].close();
    net.peers[1].close();
    net.run();
    assert_eq!(closed(&net.take_events(0)), Some(Ok(())));
    assert_eq!(closed(&net.take_events(1)), Some(Ok(())));
    assert!(net.server.closes.iter().all(|(_, m)| *m == Mood::Happy));
}

/// A peer whose `pake` arrives after we were restored (our SPAKE2 state made again from
/// its seed) gets the same key as before: the saved seed gives the same scalar.
#[test]
fn a_restored_spake2_state_finishes_with_the_peer() {
    let mut net = Net::new(vec![session(5), session(6)]);
    net.peers[0].set_code("4-purple-sausages").unwrap();
    net.connect(0);
    net.run();
    reborn(&mut net, 0, 7);
    reborn(&mut net, 0, 8); // twice: still the same state
    net.peers[1].set_code("4-purple-sausages").unwrap();
    net.connect(1);
    net.connect(0);
    net.run();
    let (a, b) = (net.take_events(0), net.take_events(1));
    assert!(verifier(&a).is_some());
    assert_eq!(verifier(&a), verifier(&b));
}

#[test]
fn damaged_foreign_and_closing_snapshots_are_refused() {
    let mut s = session(1);
    s.set_code("7-guitarist-revenge").unwrap();
    let good = s.snapshot().unwrap();
    let restore = |v: Value| Session::restore(v, Box::new(StdRng::seed_from_u64(1)));
    assert!(restore(good.clone()).is_ok());
    let mut cases: Vec<(Value, &str)> =
        vec![(json!("text"), "no version"), (json!({}), "no version")];
    let mut v2 = good.clone();
    v2["version"] = json!(2);
    cases.push((v2, "version 2"));
    let mut no_side = good.clone();
    no_side.as_object_mut().unwrap().remove("side");
    cases.push((no_side, "damaged"));
    let mut bad_side = good.clone();
    bad_side["side"] = json!("side!");
    cases.push((bad_side, "damaged"));
    let mut bad_seed = good.clone();
    bad_seed["key"]["know_code"]["seed"] = json!("zz");
    cases.push((bad_seed, "damaged"));
    let mut extra = good.clone();
    extra["mailbox"]["surprise"] = json!(1);
    cases.push((extra, "damaged"));
    for (v, why) in cases {
        match restore(v.clone()) {
            Err(Error::InvalidArgument(text)) => assert!(text.contains(why), "{text} ({v})"),
            other => panic!("{v}: {other:?}"),
        }
    }
    // Nothing secret in the error texts.
    for (field, value) in [
        ("seed", json!("secret-seed-text")),
        ("code", json!(12345678)),
        ("appid", json!(["secret-in-an-array"])),
    ] {
        let mut leaky = good.clone();
        leaky["key"]["know_code"][field] = value.clone();
        let Err(e) = restore(leaky) else {
            panic!("accepted {field}")
        };
        let text = e.to_string();
        assert!(text.contains("damaged"), "{text}");
        assert!(
            !text.contains("secret-seed-text") && !text.contains("secret-in-an-array"),
            "{text}"
        );
    }
    let mut typed = good.clone();
    typed["side"] = json!(["secret-side"]);
    let text = restore(typed).unwrap_err().to_string();
    assert!(!text.contains("secret-side"), "{text}");

    s.close();
    assert!(matches!(s.snapshot(), Err(Error::InvalidArgument(_))));
}

// ----- Dilation L1 (PROTOCOL §4.6, §9.3) -----

fn dilating(seed: u64) -> Session {
    let mut s = session(seed);
    s.cfg.dilation = true;
    s
}

fn dilation_messages(evs: &[Event]) -> Vec<Vec<u8>> {
    evs.iter()
        .filter_map(|e| match e {
            Event::DilationMessage(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Peer `i`'s phases as stored by the server, in posting order.
fn posted_phases(net: &Net, i: usize, mailbox: &str) -> Vec<String> {
    let side = net.peers[i].side();
    net.server.messages[mailbox]
        .iter()
        .filter(|m| m.side == side)
        .map(|m| m.phase.clone())
        .collect()
}

/// The plaintext of peer `i`'s stored `phase`, decrypted under its phase key.
fn posted_plaintext(net: &Net, i: usize, mailbox: &str, phase: &str) -> Vec<u8> {
    let side = net.peers[i].side();
    let m = net.server.messages[mailbox]
        .iter()
        .find(|m| m.side == side && m.phase == phase)
        .expect("posted");
    let key = net.peers[i].key().expect("key");
    let pk = keys::derive_phase_key(&key.0, side, phase);
    keys::decrypt(&pk, &m.body.0).expect("decrypts under its phase key")
}

fn connected_pair(a: Session, b: Session) -> Net {
    let mut net = Net::new(vec![a, b]);
    net.peers[0].set_code("5-a-b").unwrap();
    net.peers[1].set_code("5-a-b").unwrap();
    net.connect(0);
    net.connect(1);
    net.run();
    net
}

#[test]
fn version_message_without_dilation_is_unchanged() {
    let mut a = session(1);
    a.cfg.app_versions = json!({"k": "v", "n": [1, 2]});
    let net = connected_pair(a, session(2));
    assert_eq!(
        posted_plaintext(&net, 0, "mb5", "version"),
        br#"{"app_versions":{"k":"v","n":[1,2]}}"#
    );
    assert_eq!(
        posted_plaintext(&net, 1, "mb5", "version"),
        br#"{"app_versions":{}}"#
    );
    // Nothing about Dilation is reported either.
    for i in 0..2 {
        assert!(
            !net.events[i]
                .iter()
                .any(|e| matches!(e, Event::PeerCanDilate(_) | Event::DilationMessage(_)))
        );
    }
}

#[test]
fn version_message_with_dilation_offers_ged_and_abilities() {
    let mut a = dilating(1);
    a.cfg.app_versions = json!({"k": "v"});
    let net = connected_pair(a, session(2));
    let pt = posted_plaintext(&net, 0, "mb5", "version");
    assert_eq!(
        pt,
        br#"{"can-dilate":["ged"],"dilation-abilities":[{"type":"direct-tcp-v1"},{"type":"relay-v1"}],"app_versions":{"k":"v"}}"#,
        "PROTOCOL §4.6, keys in the reference's order"
    );
    // The peer without Dilation still sees only its app_versions.
    assert!(net.events[1].contains(&Event::Versions(json!({"k": "v"}))));
}

#[test]
fn peer_can_dilate_follows_the_versions() {
    let net = connected_pair(dilating(1), dilating(2));
    for i in 0..2 {
        let evs = &net.events[i];
        let v = evs
            .iter()
            .position(|e| matches!(e, Event::Versions(_)))
            .unwrap();
        assert_eq!(evs[v + 1], Event::PeerCanDilate(vec!["ged".into()]), "{i}");
        let count = evs
            .iter()
            .filter(|e| matches!(e, Event::PeerCanDilate(_)))
            .count();
        assert_eq!(count, 1);
    }
    // A peer that cannot dilate: an empty list, not an error.
    let net = connected_pair(dilating(1), session(2));
    let evs = &net.events[0];
    let v = evs
        .iter()
        .position(|e| matches!(e, Event::Versions(_)))
        .unwrap();
    assert_eq!(evs[v + 1], Event::PeerCanDilate(vec![]));
    assert!(closed(evs).is_none());
    assert!(
        !net.events[1]
            .iter()
            .any(|e| matches!(e, Event::PeerCanDilate(_)))
    );
}

/// `dilate-N` phases have their own counter, wait with application messages for the
/// verified key, leave in call order, and are encrypted under their own phase key.
#[test]
fn send_dilation_numbers_queues_until_verified_and_keeps_call_order() {
    let mut net = Net::new(vec![dilating(1), dilating(2)]);
    let a = &mut net.peers[0];
    a.set_code("5-a-b").unwrap();
    a.send_message(b"m0".to_vec()).unwrap();
    a.send_dilation(b"d0".to_vec()).unwrap();
    a.send_dilation(b"d1".to_vec()).unwrap();
    a.send_message(b"m1".to_vec()).unwrap();
    net.connect(0);
    net.run();
    // No peer yet: only our pake is posted.
    assert_eq!(posted_phases(&net, 0, "mb5"), ["pake"]);

    net.peers[1].set_code("5-a-b").unwrap();
    net.connect(1);
    net.run();
    assert_eq!(
        posted_phases(&net, 0, "mb5"),
        ["pake", "version", "0", "dilate-0", "dilate-1", "1"]
    );
    assert_eq!(posted_plaintext(&net, 0, "mb5", "dilate-0"), b"d0");
    assert_eq!(posted_plaintext(&net, 0, "mb5", "dilate-1"), b"d1");

    // After verification, at once.
    net.peers[0].send_dilation(b"d2".to_vec()).unwrap();
    net.run();
    assert_eq!(posted_phases(&net, 0, "mb5").last().unwrap(), "dilate-2");

    let b = net.take_events(1);
    assert_eq!(messages(&b), [b"m0".to_vec(), b"m1".to_vec()]);
    assert_eq!(
        dilation_messages(&b),
        [b"d0".to_vec(), b"d1".to_vec(), b"d2".to_vec()]
    );
    // Reported after the versions (so a driver knows the peer's list first).
    let v = b.iter().position(|e| matches!(e, Event::Versions(_)));
    let d = b
        .iter()
        .position(|e| matches!(e, Event::DilationMessage(_)));
    assert!(v < d);
}

#[test]
fn send_dilation_needs_dilation_on_and_an_open_session() {
    let mut s = session(1);
    assert!(matches!(
        s.send_dilation(b"x".to_vec()),
        Err(Error::InvalidState(_))
    ));
    let mut s = dilating(1);
    s.set_code("5-a-b").unwrap();
    s.send_dilation(b"x".to_vec()).unwrap();
    s.close();
    assert!(matches!(s.send_dilation(b"y".to_vec()), Err(Error::Closed)));
}

/// Without Dilation, a peer's `dilate-N` messages are decrypted and ignored, as before.
#[test]
fn dilate_phases_from_the_peer_are_ignored_without_dilation() {
    let mut net = connected_pair(session(1), dilating(2));
    net.take_events(0);
    net.peers[1].send_dilation(b"d0".to_vec()).unwrap();
    net.peers[1].send_message(b"m0".to_vec()).unwrap();
    net.run();
    assert_eq!(net.take_events(0), [Event::Message(b"m0".to_vec())]);
}

/// The peer's `dilate-N` messages reach us in `N` order whatever order the server gives
/// them in; replays are ignored.
#[test]
fn dilate_phases_are_delivered_in_order_without_gaps() {
    let mut net = connected_pair(dilating(1), dilating(2));
    net.take_events(0);
    net.disconnect(0);
    for m in ["zero", "one", "two"] {
        net.peers[1].send_dilation(m.as_bytes().to_vec()).unwrap();
    }
    net.run();
    let bside = net.peers[1].side().to_owned();
    let stored: HashMap<String, MailboxMessage> = net.server.messages["mb5"]
        .iter()
        .filter(|m| m.side == bside)
        .map(|m| (m.phase.clone(), m.clone()))
        .collect();
    let a = &mut net.peers[0];
    let mut feed = |phase: &str| {
        a.handle_server(ServerMessage::Message(stored[phase].clone()));
        dilation_messages(&drain(a).1)
    };
    assert!(feed("dilate-2").is_empty());
    assert!(feed("dilate-1").is_empty());
    assert_eq!(
        feed("dilate-0"),
        [b"zero".to_vec(), b"one".to_vec(), b"two".to_vec()]
    );
    assert!(feed("dilate-1").is_empty());
    assert!(!net.peers[0].is_closing());
}

/// A gap the peer never fills fails the session `errory` once the bound is crossed.
#[test]
fn dilate_gaps_are_bounded() {
    let mut net = connected_pair(dilating(1), dilating(2));
    let bside = net.peers[1].side().to_owned();
    let key = net.peers[0].key().unwrap().clone();
    let a = &mut net.peers[0];
    drain(a);
    let mut rng = StdRng::seed_from_u64(3);
    let mut out = Vec::new();
    for n in 1..=MAX_QUEUED_PEER_MESSAGES + 1 {
        let phase = format!("dilate-{n}");
        let pk = keys::derive_phase_key(&key.0, &bside, &phase);
        a.handle_server(ServerMessage::Message(MailboxMessage {
            side: bside.clone(),
            phase,
            body: HexBytes(keys::encrypt(&pk, b"{}", &mut rng)),
            server_rx: None,
            id: None,
        }));
        out = drain(a).0;
        if n <= MAX_QUEUED_PEER_MESSAGES {
            assert!(!a.is_closing(), "failed early, at {n}");
        }
    }
    assert!(out.iter().any(|m| matches!(
        m,
        ClientMessage::Close {
            mood: Some(Mood::Errory),
            ..
        }
    )));
}

/// [`a_restored_session_continues_at_every_point`] with Dilation: a `dilate-N` of ours
/// queued before the code, one posted while disconnected, and one of the peer's held for a
/// gap all survive a restore; our counter continues where it was.
#[test]
fn a_restored_dilating_session_continues_at_every_point() {
    let mut net = Net::new(vec![dilating(1), dilating(2)]);
    // Before the code: a dilation message waits for the key.
    net.peers[0].allocate_code(2).unwrap();
    net.peers[0].send_dilation(b"a-d0".to_vec()).unwrap();
    reborn(&mut net, 0, 11);
    assert!(net.peers[0].cfg.dilation, "the setting is restored");
    net.connect(0);
    net.run();
    let code = code_of(&net.take_events(0)).expect("A's code");
    // After the code, still waiting.
    reborn(&mut net, 0, 12);
    net.connect(0);
    net.run();

    net.peers[1].set_code(&code).unwrap();
    net.connect(1);
    net.run();
    assert_eq!(dilation_messages(&net.take_events(1)), [b"a-d0".to_vec()]);

    // Mid-exchange: A posts while disconnected; B posts three while A is away, and A sees
    // only the last before it is saved (held for the gap).
    net.disconnect(0);
    net.peers[0].send_dilation(b"a-d1".to_vec()).unwrap();
    for m in ["b-d0", "b-d1", "b-d2"] {
        net.peers[1].send_dilation(m.as_bytes().to_vec()).unwrap();
    }
    net.run();
    let bside = net.peers[1].side().to_owned();
    let last = net.server.messages[code_mailbox(&code).as_str()]
        .iter()
        .find(|m| m.side == bside && m.phase == "dilate-2")
        .unwrap()
        .clone();
    net.peers[0].handle_server(ServerMessage::Message(last));
    assert!(dilation_messages(&drain(&mut net.peers[0]).1).is_empty());
    assert_eq!(net.peers[0].receive.dilation_held(), 1);
    reborn(&mut net, 0, 14);
    net.take_events(0);
    net.connect(0);
    net.run();
    net.peers[0].send_dilation(b"a-d2".to_vec()).unwrap();
    net.run();
    assert_eq!(
        dilation_messages(&net.take_events(0)),
        [b"b-d0".to_vec(), b"b-d1".to_vec(), b"b-d2".to_vec()]
    );
    assert_eq!(
        dilation_messages(&net.take_events(1)),
        [b"a-d1".to_vec(), b"a-d2".to_vec()]
    );
    let a_phases: Vec<String> = posted_phases(&net, 0, &code_mailbox(&code))
        .into_iter()
        .filter(|p| p.starts_with("dilate-"))
        .collect();
    assert_eq!(a_phases, ["dilate-0", "dilate-1", "dilate-2"]);
}

/// The test server's mailbox name for a code (`mb<nameplate>`).
fn code_mailbox(code: &str) -> String {
    format!("mb{}", code.split('-').next().unwrap())
}

/// A snapshot written before Dilation existed (without its fields) still restores, with
/// Dilation off, and carries on. Without Dilation, a snapshot has none of those fields (an
/// older library can read it); with it, they are there.
#[test]
fn a_snapshot_from_before_dilation_restores() {
    let dilation_fields = |v: &Value| {
        [
            v.get("dilation"),
            v["send"].get("next_dilation"),
            v["receive"].get("dilation_reorder"),
            v["receive"].get("dilation_next"),
        ]
        .iter()
        .filter(|f| f.is_some())
        .count()
    };
    let mut net = connected_pair(dilating(1), dilating(2));
    net.peers[0].send_dilation(b"d0".to_vec()).unwrap();
    net.disconnect(0);
    net.peers[1].send_dilation(b"d0".to_vec()).unwrap();
    net.peers[1].send_dilation(b"d1".to_vec()).unwrap();
    net.run();
    let bside = net.peers[1].side().to_owned();
    let d1 = net.server.messages["mb5"]
        .iter()
        .find(|m| m.side == bside && m.phase == "dilate-1")
        .unwrap()
        .clone();
    net.peers[0].handle_server(ServerMessage::Message(d1));
    // `dilate-1` held, none delivered yet: `dilation_next` is still 0.
    assert_eq!(dilation_fields(&net.peers[0].snapshot().unwrap()), 3);
    net.connect(0);
    net.run();
    assert_eq!(dilation_fields(&net.peers[0].snapshot().unwrap()), 3);

    let mut net = connected_pair(session(1), session(2));
    net.peers[1].send_message(b"m0".to_vec()).unwrap();
    net.run();
    let old = net.peers[0].snapshot().unwrap();
    assert_eq!(dilation_fields(&old), 0, "{old}");
    net.disconnect(0);
    let mut a = Session::restore(old, Box::new(StdRng::seed_from_u64(9))).unwrap();
    assert!(!a.cfg.dilation);
    assert!(matches!(
        a.send_dilation(b"x".to_vec()),
        Err(Error::InvalidState(_))
    ));
    net.peers[0] = a;
    net.take_events(0);
    net.connect(0);
    net.peers[1].send_message(b"m1".to_vec()).unwrap();
    net.peers[0].send_message(b"a0".to_vec()).unwrap();
    net.run();
    assert_eq!(messages(&net.take_events(0)), [b"m1".to_vec()]);
    assert_eq!(messages(&net.take_events(1)), [b"a0".to_vec()]);
}
