//! The manager on a virtual clock: transcripts of one manager, and two managers wired
//! together through an in-memory mailbox and simulated TCP links (no sockets, no sleeps).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

const PING: Duration = Duration::from_secs(30);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn ged() -> Vec<String> {
    vec!["ged".to_string()]
}

fn actions(m: &mut Manager) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn events(m: &mut Manager) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn please(side: &str) -> DilationMessage {
    DilationMessage::Please {
        side: side.into(),
        use_version: Some("ged".into()),
    }
}

fn hints(direct: &[(&str, u16)], relays: &[(&str, u16)]) -> Hints {
    Hints {
        direct: direct
            .iter()
            .map(|(h, p)| DirectHint::new(*h, *p))
            .collect(),
        relays: relays
            .iter()
            .map(|(h, p)| vec![DirectHint::new(*h, *p)])
            .collect(),
        ..Default::default()
    }
}

/// Smallest and largest possible sides: the peer's `please` makes us Leader or Follower.
const LOW: &str = "0000000000000000";
const HIGH: &str = "ffffffffffffffff";

/// One manager through start-up, in `role`, generation 1 running; its output drained.
fn started(role: Role, opts: DilateOptions, t0: Instant) -> (Manager, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut m = Manager::new();
    m.dilate(t0, opts, &mut rng).unwrap();
    m.peer_version(t0, &ged());
    let peer = if role == Role::Leader { LOW } else { HIGH };
    m.peer_message(t0, please(peer));
    assert_eq!(m.role(), Some(role));
    assert_eq!(m.state(), State::Connecting);
    actions(&mut m);
    events(&mut m);
    (m, rng)
}

fn path() -> Path {
    Path::default()
}

/// A Leader with connection 7 of generation 1 selected.
fn connected_leader(t0: Instant) -> (Manager, ChaCha8Rng) {
    let (mut m, rng) = started(Role::Leader, DilateOptions::default(), t0);
    m.connection_made(t0, ConnId(7), 1, path());
    m.connection_confirmed(t0, ConnId(7));
    assert_eq!(m.selected(), Some(ConnId(7)));
    actions(&mut m);
    events(&mut m);
    (m, rng)
}

// ---------------------------------------------------------------------------------------
// Start-up (§9.4)

#[test]
fn please_waits_for_dilate_and_peer_version() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut m = Manager::new();
    m.peer_version(t0, &["x".into(), "ged".into()]);
    assert_eq!(actions(&mut m), vec![], "no please before dilate()");
    m.dilate(t0, DilateOptions::default(), &mut rng).unwrap();
    let side = m.side().unwrap().as_str().to_owned();
    assert_eq!(
        actions(&mut m),
        vec![Action::Send(DilationMessage::Please {
            side,
            use_version: Some("ged".into())
        })]
    );
    assert_eq!(m.state(), State::Wanting);
    assert_eq!(
        m.dilate(t0, DilateOptions::default(), &mut rng),
        Err(DilationError::InvalidState("dilate() called twice".into()))
    );
}

/// The §9.4 hazard: the peer's please arrives before we could send ours. It is kept and
/// handled right after ours goes out.
#[test]
fn early_please_is_buffered() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut m = Manager::new();
    m.dilate(t0, DilateOptions::default(), &mut rng).unwrap();
    m.peer_message(t0, please(LOW));
    assert_eq!(actions(&mut m), vec![]);
    assert_eq!(m.state(), State::Waiting);
    assert_eq!(m.role(), None);
    m.peer_version(t0, &ged());
    let a = actions(&mut m);
    assert!(
        matches!(&a[0], Action::Send(DilationMessage::Please { .. })),
        "{a:?}"
    );
    assert_eq!(a[1..], [Action::Listen { generation: 1 }]);
    assert_eq!(m.role(), Some(Role::Leader));
    assert_eq!(
        events(&mut m),
        vec![Event::Generation {
            generation: 1,
            role: Role::Leader
        }]
    );
}

#[test]
fn no_common_version_is_an_error_and_sends_nothing() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for theirs in [vec![], vec!["ged2".to_string()]] {
        let mut m = Manager::new();
        m.dilate(t0, DilateOptions::default(), &mut rng).unwrap();
        m.peer_version(t0, &theirs);
        assert_eq!(actions(&mut m), vec![]);
        assert_eq!(
            events(&mut m),
            vec![Event::Failed(DilationError::NoCommonVersion)]
        );
        assert_eq!(m.state(), State::Failed);
        // Nothing the peer sends later revives it.
        m.peer_message(t0, please(LOW));
        assert_eq!(actions(&mut m), vec![]);
        assert_eq!(events(&mut m), vec![]);
    }
}

#[test]
fn reflection_is_an_error() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut m = Manager::new();
    m.dilate(t0, DilateOptions::default(), &mut rng).unwrap();
    m.peer_version(t0, &ged());
    actions(&mut m);
    let ours = m.side().unwrap().as_str().to_owned();
    m.peer_message(t0, please(&ours));
    assert_eq!(
        events(&mut m),
        vec![Event::Failed(DilationError::Reflection)]
    );
    assert_eq!(actions(&mut m), vec![], "no generation starts");
    assert_eq!(m.state(), State::Failed);
}

#[test]
fn hints_before_the_please_exchange_are_ignored() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut m = Manager::new();
    let h = DilationMessage::ConnectionHints {
        hints: hints(&[("192.0.2.1", 1)], &[("relay", 2)]),
    };
    m.peer_message(t0, h.clone()); // WAITING
    m.dilate(t0, DilateOptions::default(), &mut rng).unwrap();
    m.peer_version(t0, &ged());
    actions(&mut m);
    m.peer_message(t0, h.clone()); // WANTING
    assert_eq!(actions(&mut m), vec![]);
    m.peer_message(t0, please(LOW));
    assert_eq!(actions(&mut m), vec![Action::Listen { generation: 1 }]);
    m.peer_message(t0, h); // CONNECTING: now they count
    assert_eq!(
        actions(&mut m)[0],
        Action::ConnectDirect {
            generation: 1,
            hint: DirectHint::new("192.0.2.1", 1)
        }
    );
}

#[test]
fn malformed_and_misplaced_messages_are_warnings() {
    let t0 = Instant::now();
    let (mut m, _) = started(Role::Leader, DilateOptions::default(), t0);
    m.peer_body(t0, b"{\"type\": \"nope\"}");
    m.peer_message(t0, please(LOW));
    m.peer_message(t0, DilationMessage::Reconnect); // only a Leader sends it
    let ev = events(&mut m);
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(
        ev[0],
        Event::Warning(DilationError::UnknownMessageType("nope".into()))
    );
    assert!(
        ev[1..]
            .iter()
            .all(|e| matches!(e, Event::Warning(DilationError::UnexpectedMessage(_))))
    );
    assert_eq!(actions(&mut m), vec![]);
    assert_eq!(m.state(), State::Connecting);
}

// ---------------------------------------------------------------------------------------
// A generation (§9.5)

#[test]
fn own_relay_is_announced_and_dialled_at_once() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let relay = vec![DirectHint::new("relay.example", 4001)];
    let mut m = Manager::new();
    let opts = DilateOptions {
        relay: Some(relay.clone()),
        ..Default::default()
    };
    m.dilate(t0, opts, &mut rng).unwrap();
    m.peer_version(t0, &ged());
    m.peer_message(t0, please(HIGH));
    let a = actions(&mut m);
    assert_eq!(
        a[1..],
        [
            Action::Listen { generation: 1 },
            Action::Send(DilationMessage::ConnectionHints {
                hints: Hints {
                    relays: vec![relay.clone()],
                    ..Default::default()
                }
            }),
            Action::ConnectRelay {
                generation: 1,
                hint: relay
            },
        ]
    );
    // The listener's hints go out when the driver reports them.
    let ours = hints(&[("192.0.2.9", 5000)], &[]);
    m.listening(t0, 1, ours.clone());
    assert_eq!(
        actions(&mut m),
        vec![Action::Send(DilationMessage::ConnectionHints {
            hints: ours
        })]
    );
    // A listener of an old generation is not announced.
    m.listening(t0, 0, hints(&[("192.0.2.9", 1)], &[]));
    assert_eq!(actions(&mut m), vec![]);
}

/// §9.5: a peer's relay hint waits 2.0 s when the same message made us dial a direct
/// hint and we listen; otherwise it is dialled at once.
#[test]
fn relay_delay_two_seconds_vs_immediate() {
    let t0 = Instant::now();
    let relay = || vec![DirectHint::new("relay", 4001)];

    // Direct + relay in one message, listening: 2.0 s.
    let (mut m, mut rng) = started(Role::Follower, DilateOptions::default(), t0);
    m.peer_message(
        t0,
        DilationMessage::ConnectionHints {
            hints: hints(&[("192.0.2.1", 1)], &[("relay", 4001)]),
        },
    );
    assert_eq!(
        actions(&mut m),
        vec![Action::ConnectDirect {
            generation: 1,
            hint: DirectHint::new("192.0.2.1", 1)
        }]
    );
    assert_eq!(m.poll_timeout(), Some(t0 + secs(2.0)));
    m.handle_timeout(t0 + secs(1.999), &mut rng);
    assert_eq!(actions(&mut m), vec![]);
    m.handle_timeout(t0 + secs(2.0), &mut rng);
    assert_eq!(
        actions(&mut m),
        vec![Action::ConnectRelay {
            generation: 1,
            hint: relay()
        }]
    );
    assert_eq!(m.poll_timeout(), None, "a Follower has no other timer");

    // A relay hint in a message of its own (as 0.24 sends it): at once.
    let (mut m, _) = started(Role::Follower, DilateOptions::default(), t0);
    m.peer_message(
        t0,
        DilationMessage::ConnectionHints {
            hints: hints(&[], &[("relay", 4001)]),
        },
    );
    assert_eq!(
        actions(&mut m),
        vec![Action::ConnectRelay {
            generation: 1,
            hint: relay()
        }]
    );
    assert_eq!(m.poll_timeout(), None);

    // Not listening: at once, even next to a direct hint.
    let opts = DilateOptions {
        no_listen: true,
        ..Default::default()
    };
    let (mut m, _) = started(Role::Follower, opts, t0);
    m.peer_message(
        t0,
        DilationMessage::ConnectionHints {
            hints: hints(&[("192.0.2.1", 1)], &[("relay", 4001)]),
        },
    );
    assert_eq!(actions(&mut m).len(), 2);
    assert_eq!(m.poll_timeout(), None);

    // A selection before the 2.0 s cancels the delayed relay dial.
    let (mut m, mut rng) = started(Role::Follower, DilateOptions::default(), t0);
    m.peer_message(
        t0,
        DilationMessage::ConnectionHints {
            hints: hints(&[("192.0.2.1", 1)], &[("relay", 4001)]),
        },
    );
    m.connection_made(t0 + secs(0.5), ConnId(1), 1, path());
    m.connection_confirmed(t0 + secs(0.6), ConnId(1));
    actions(&mut m);
    assert_eq!(m.poll_timeout(), None);
    m.handle_timeout(t0 + secs(3.0), &mut rng);
    assert_eq!(actions(&mut m), vec![]);
}

#[test]
fn first_confirmed_connection_wins_and_the_rest_are_dropped() {
    let t0 = Instant::now();
    let (mut m, _) = started(Role::Leader, DilateOptions::default(), t0);
    let relayed = Path {
        relay: true,
        inbound: false,
        peer: Some("127.0.0.1:4001".into()),
    };
    m.connection_made(t0, ConnId(1), 1, path());
    m.connection_made(t0, ConnId(2), 1, relayed.clone());
    m.connection_made(t0, ConnId(3), 1, path());
    m.connection_confirmed(t0, ConnId(2));
    assert_eq!(
        actions(&mut m),
        vec![
            Action::StopConnecting { generation: 1 },
            Action::DropConnection { id: ConnId(1) },
            Action::DropConnection { id: ConnId(3) },
            Action::Select { id: ConnId(2) },
        ]
    );
    assert_eq!(
        events(&mut m),
        vec![Event::Connected {
            generation: 1,
            id: ConnId(2),
            path: relayed
        }]
    );
    // Late arrivals: a confirmation of a dropped one, a new connection of this
    // generation, one of an older generation.
    m.connection_confirmed(t0, ConnId(1));
    m.connection_made(t0, ConnId(4), 1, path());
    m.connection_made(t0, ConnId(5), 0, path());
    assert_eq!(
        actions(&mut m),
        vec![
            Action::DropConnection { id: ConnId(4) },
            Action::DropConnection { id: ConnId(5) },
        ]
    );
    // Losing a dropped one is no loss.
    m.connection_lost(t0, ConnId(1));
    assert_eq!(actions(&mut m), vec![]);
    assert_eq!(m.state(), State::Connected);
}

#[test]
fn losing_a_candidate_while_connecting_changes_nothing() {
    let t0 = Instant::now();
    let (mut m, _) = started(Role::Follower, DilateOptions::default(), t0);
    m.connection_made(t0, ConnId(1), 1, path());
    m.connection_made(t0, ConnId(2), 1, path());
    m.connection_lost(t0, ConnId(1));
    assert_eq!(actions(&mut m), vec![]);
    assert_eq!(events(&mut m), vec![]);
    m.connection_confirmed(t0, ConnId(2));
    assert_eq!(
        actions(&mut m),
        vec![
            Action::StopConnecting { generation: 1 },
            Action::Select { id: ConnId(2) }
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Keepalive (§9.10)

#[test]
fn leader_pings_every_interval_and_pong_keeps_it_alive() {
    let t0 = Instant::now();
    let (mut m, mut rng) = connected_leader(t0);
    assert_eq!(
        m.poll_timeout(),
        Some(t0 + PING),
        "first PING one interval later"
    );
    let mut now = t0;
    let mut ids = Vec::new();
    for _ in 0..3 {
        now += PING;
        m.handle_timeout(now - secs(0.001), &mut rng);
        assert_eq!(actions(&mut m), vec![]);
        m.handle_timeout(now, &mut rng);
        let a = actions(&mut m);
        let [Action::SendPing { id, ping }] = a[..] else {
            panic!("{a:?}");
        };
        assert_eq!(id, ConnId(7));
        ids.push(ping);
        m.pong_received(now, ConnId(7), [0xde, 0xad, 0xbe, 0xef]); // unknown: ignored
        m.pong_received(now, ConnId(8), ping); // another connection: ignored
        m.pong_received(now + secs(1.0), ConnId(7), ping);
        assert_eq!(m.poll_timeout(), Some(now + PING));
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "random ids: {ids:?}");
    assert_eq!(m.state(), State::Connected);
}

#[test]
fn both_roles_answer_pings_only_on_the_selected_connection() {
    let t0 = Instant::now();
    let (mut l, _) = connected_leader(t0);
    l.ping_received(ConnId(7), [1, 2, 3, 4]);
    l.ping_received(ConnId(9), [1, 2, 3, 4]);
    assert_eq!(
        actions(&mut l),
        vec![Action::SendPong {
            id: ConnId(7),
            ping: [1, 2, 3, 4]
        }]
    );
    let (mut f, _) = started(Role::Follower, DilateOptions::default(), t0);
    f.connection_made(t0, ConnId(3), 1, path());
    f.connection_confirmed(t0, ConnId(3));
    actions(&mut f);
    assert_eq!(f.poll_timeout(), None, "the Follower never pings");
    f.ping_received(ConnId(3), [9; 4]);
    assert_eq!(
        actions(&mut f),
        vec![Action::SendPong {
            id: ConnId(3),
            ping: [9; 4]
        }]
    );
}

/// No PONG for a whole interval: drop (abort) the connection and ask for reconnection.
/// The driver's later loss report for the dropped connection does not send a second
/// `reconnect`.
#[test]
fn keepalive_timeout_drops_and_sends_one_reconnect() {
    let t0 = Instant::now();
    let (mut m, mut rng) = connected_leader(t0);
    m.handle_timeout(t0 + PING, &mut rng);
    let a = actions(&mut m);
    let [Action::SendPing { ping, .. }] = a[..] else {
        panic!("{a:?}");
    };
    m.pong_received(
        t0 + PING,
        ConnId(7),
        [ping[0] ^ 1, ping[1], ping[2], ping[3]],
    );
    m.handle_timeout(t0 + PING * 2, &mut rng);
    assert_eq!(
        actions(&mut m),
        vec![
            Action::Deselect { id: ConnId(7) },
            Action::DropConnection { id: ConnId(7) },
            Action::Send(DilationMessage::Reconnect),
        ]
    );
    assert_eq!(events(&mut m), vec![Event::Reconnecting { generation: 1 }]);
    assert_eq!(m.state(), State::Flushing);
    assert_eq!(m.poll_timeout(), None, "FLUSHING waits for the Follower");
    m.connection_lost(t0 + PING * 2, ConnId(7));
    m.handle_timeout(t0 + PING * 10, &mut rng);
    assert_eq!(actions(&mut m), vec![]);
}

// ---------------------------------------------------------------------------------------
// Reconnection (§9.11)

/// Stale hints: the Leader in FLUSHING ignores the Follower's hints of the old generation
/// (and old-generation connections); the Follower in LONELY ignores hints too.
#[test]
fn stale_hints_are_ignored() {
    let t0 = Instant::now();
    let (mut l, _) = connected_leader(t0);
    l.connection_lost(t0, ConnId(7));
    assert_eq!(
        actions(&mut l),
        vec![
            Action::Deselect { id: ConnId(7) },
            Action::Send(DilationMessage::Reconnect)
        ]
    );
    let old = DilationMessage::ConnectionHints {
        hints: hints(&[("192.0.2.1", 1)], &[("relay", 1)]),
    };
    l.peer_message(t0, old.clone());
    l.connection_made(t0, ConnId(8), 1, path());
    assert_eq!(
        actions(&mut l),
        vec![Action::DropConnection { id: ConnId(8) }]
    );
    assert_eq!(l.poll_timeout(), None, "no delayed relay dial either");
    // Once reconnecting arrives, generation 2 starts and hints count again.
    l.peer_message(t0, DilationMessage::Reconnecting);
    assert_eq!(l.generation(), 2);
    assert_eq!(actions(&mut l), vec![Action::Listen { generation: 2 }]);
    l.peer_message(t0, old.clone());
    assert_eq!(
        actions(&mut l),
        vec![Action::ConnectDirect {
            generation: 2,
            hint: DirectHint::new("192.0.2.1", 1)
        }]
    );

    let (mut f, _) = started(Role::Follower, DilateOptions::default(), t0);
    f.connection_made(t0, ConnId(1), 1, path());
    f.connection_confirmed(t0, ConnId(1));
    actions(&mut f);
    events(&mut f);
    f.connection_lost(t0, ConnId(1));
    assert_eq!(actions(&mut f), vec![Action::Deselect { id: ConnId(1) }]);
    assert_eq!(events(&mut f), vec![Event::Reconnecting { generation: 1 }]);
    assert_eq!(f.state(), State::Lonely);
    f.peer_message(t0, old);
    assert_eq!(actions(&mut f), vec![]);
}

/// The Follower, told to reconnect while it is still connecting, abandons the attempts
/// and answers exactly once per `reconnect`.
#[test]
fn follower_abandons_connecting_on_reconnect() {
    let t0 = Instant::now();
    let (mut f, _) = started(Role::Follower, DilateOptions::default(), t0);
    f.peer_message(
        t0,
        DilationMessage::ConnectionHints {
            hints: hints(&[("192.0.2.1", 1)], &[("relay", 1)]),
        },
    );
    f.connection_made(t0, ConnId(1), 1, path());
    actions(&mut f);
    f.peer_message(t0 + secs(1.0), DilationMessage::Reconnect);
    assert_eq!(
        actions(&mut f),
        vec![
            Action::StopConnecting { generation: 1 },
            Action::DropConnection { id: ConnId(1) },
            Action::Send(DilationMessage::Reconnecting),
            Action::Listen { generation: 2 },
        ]
    );
    assert_eq!(
        events(&mut f),
        vec![
            Event::Reconnecting { generation: 1 },
            Event::Generation {
                generation: 2,
                role: Role::Follower
            }
        ]
    );
    assert_eq!(
        f.poll_timeout(),
        None,
        "the delayed relay dial of gen 1 is gone"
    );
    // A confirmation on the abandoned connection changes nothing.
    f.connection_confirmed(t0, ConnId(1));
    assert_eq!(actions(&mut f), vec![]);
    // Two reconnects in a row: two generations, two answers.
    f.peer_message(t0, DilationMessage::Reconnect);
    let a = actions(&mut f);
    assert_eq!(
        a,
        vec![
            Action::StopConnecting { generation: 2 },
            Action::Send(DilationMessage::Reconnecting),
            Action::Listen { generation: 3 },
        ]
    );
}

/// A `reconnecting` the Leader did not ask for (crossing its own `reconnect`, or a
/// duplicate) never starts an extra generation; a second loss report never sends a
/// second `reconnect`.
#[test]
fn crossing_reconnect_messages() {
    let t0 = Instant::now();
    let (mut l, _) = connected_leader(t0);
    // A peer that sends reconnecting on its own: ignored while connected.
    l.peer_message(t0, DilationMessage::Reconnecting);
    assert_eq!(actions(&mut l), vec![]);
    assert!(matches!(
        &events(&mut l)[..],
        [Event::Warning(DilationError::UnexpectedMessage(_))]
    ));
    // Our reconnect and the peer's answer.
    l.connection_lost(t0, ConnId(7));
    l.connection_lost(t0, ConnId(7));
    assert_eq!(
        actions(&mut l)
            .iter()
            .filter(|a| **a == Action::Send(DilationMessage::Reconnect))
            .count(),
        1
    );
    l.peer_message(t0, DilationMessage::Reconnecting);
    assert_eq!(l.generation(), 2);
    actions(&mut l);
    events(&mut l);
    // A duplicate answer (e.g. the unprompted one above crossed our reconnect) arrives
    // during generation 2: ignored.
    l.peer_message(t0, DilationMessage::Reconnecting);
    assert_eq!(actions(&mut l), vec![]);
    assert_eq!(l.generation(), 2);
    assert_eq!(l.state(), State::Connecting);
    // The Follower's reconnecting never reaches a Follower's generation logic either.
    let (mut f, _) = started(Role::Follower, DilateOptions::default(), t0);
    f.peer_message(t0, DilationMessage::Reconnecting);
    assert_eq!(actions(&mut f), vec![]);
    assert_eq!(f.generation(), 1);
}

/// Beyond the reference: a generation that selects nothing in time is retried (the
/// reference hangs for good when its relay restarts, DILATION.md).
#[test]
fn leader_retries_a_generation_that_never_connects() {
    let t0 = Instant::now();
    let (mut l, mut rng) = started(Role::Leader, DilateOptions::default(), t0);
    l.connection_made(t0, ConnId(1), 1, path());
    assert_eq!(l.poll_timeout(), Some(t0 + DEFAULT_GENERATION_TIMEOUT));
    l.handle_timeout(t0 + secs(29.9), &mut rng);
    assert_eq!(actions(&mut l), vec![]);
    l.handle_timeout(t0 + secs(30.0), &mut rng);
    assert_eq!(
        actions(&mut l),
        vec![
            Action::StopConnecting { generation: 1 },
            Action::DropConnection { id: ConnId(1) },
            Action::Send(DilationMessage::Reconnect),
        ]
    );
    assert_eq!(l.state(), State::Flushing);
    assert_eq!(l.poll_timeout(), None);
    l.peer_message(t0 + secs(31.0), DilationMessage::Reconnecting);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(61.0)), "a fresh deadline");
}

#[test]
fn stop_drops_everything_and_ignores_later_input() {
    let t0 = Instant::now();
    let (mut f, mut rng) = started(Role::Follower, DilateOptions::default(), t0);
    f.connection_made(t0, ConnId(1), 1, path());
    f.connection_made(t0, ConnId(2), 1, path());
    f.connection_confirmed(t0, ConnId(2));
    actions(&mut f);
    events(&mut f);
    f.stop();
    assert_eq!(
        actions(&mut f),
        vec![
            Action::Deselect { id: ConnId(2) },
            Action::DropConnection { id: ConnId(2) },
        ]
    );
    // A reconnect that arrives while closing (DILATION.md) is not answered.
    f.peer_message(t0, DilationMessage::Reconnect);
    f.peer_body(t0, b"garbage");
    f.connection_made(t0, ConnId(3), 1, path());
    f.handle_timeout(t0 + secs(100.0), &mut rng);
    assert_eq!(
        actions(&mut f),
        vec![Action::DropConnection { id: ConnId(3) }]
    );
    assert_eq!(events(&mut f), vec![]);
    assert_eq!(f.state(), State::Stopped);
}

// ---------------------------------------------------------------------------------------
// Two managers wired together

/// A simulated TCP link between the two peers: `ends[i]` is peer i's connection id.
struct Link {
    ends: [ConnId; 2],
    alive: bool,
}

struct Peer {
    m: Manager,
    name: &'static str,
    rng: ChaCha8Rng,
    listener: Option<u32>,
    /// Everything the manager asked for, in order.
    log: Vec<Action>,
    events: Vec<Event>,
    /// Messages to the other peer, not delivered yet.
    outbox: VecDeque<DilationMessage>,
}

struct Net {
    p: [Peer; 2],
    now: Instant,
    links: Vec<Link>,
    /// Links waiting for the Follower's KCM to reach the Leader.
    handshakes: Vec<usize>,
    next_id: u64,
    /// PINGs are lost on the wire.
    lose_pings: bool,
    /// Dials fail (the peer's listener is unreachable).
    refuse: bool,
}

impl Net {
    fn new(t0: Instant) -> Net {
        let peer = |name, seed| Peer {
            m: Manager::new(),
            name,
            rng: ChaCha8Rng::seed_from_u64(seed),
            listener: None,
            log: Vec::new(),
            events: Vec::new(),
            outbox: VecDeque::new(),
        };
        Net {
            p: [peer("peer-a", 11), peer("peer-b", 12)],
            now: t0,
            links: Vec::new(),
            handshakes: Vec::new(),
            next_id: 100,
            lose_pings: false,
            refuse: false,
        }
    }

    fn leader(&self) -> usize {
        if self.p[0].m.role() == Some(Role::Leader) {
            0
        } else {
            1
        }
    }

    fn id(&mut self) -> ConnId {
        self.next_id += 1;
        ConnId(self.next_id)
    }

    fn link_of(&self, who: usize, id: ConnId) -> Option<usize> {
        self.links.iter().position(|l| l.ends[who] == id)
    }

    fn perform(&mut self, who: usize, a: Action) {
        let now = self.now;
        let other = 1 - who;
        self.p[who].log.push(a.clone());
        match a {
            Action::Send(m) => self.p[who].outbox.push_back(m),
            Action::Listen { generation } => {
                self.p[who].listener = Some(generation);
                let h = hints(&[(self.p[who].name, generation as u16)], &[]);
                self.p[who].m.listening(now, generation, h);
            }
            Action::StopConnecting { generation } => {
                if self.p[who].listener == Some(generation) {
                    self.p[who].listener = None;
                }
            }
            Action::ConnectDirect { generation, hint } => {
                let theirs = self.p[other].listener;
                let reachable = !self.refuse
                    && hint.hostname == self.p[other].name
                    && theirs == Some(u32::from(hint.port));
                if let (true, Some(their_gen)) = (reachable, theirs) {
                    let (mine, their) = (self.id(), self.id());
                    let mut ends = [mine, mine];
                    ends[other] = their;
                    self.links.push(Link { ends, alive: true });
                    self.handshakes.push(self.links.len() - 1);
                    let out = Path {
                        peer: Some(format!("{}:{}", hint.hostname, hint.port)),
                        ..Path::default()
                    };
                    let inb = Path {
                        inbound: true,
                        ..Path::default()
                    };
                    self.p[who].m.connection_made(now, mine, generation, out);
                    self.p[other].m.connection_made(now, their, their_gen, inb);
                }
            }
            Action::ConnectRelay { .. } | Action::Deselect { .. } => {}
            Action::Select { id } => {
                // The Leader's KCM reaches the Follower.
                if who == self.leader() {
                    if let Some(l) = self.link_of(who, id).filter(|l| self.links[*l].alive) {
                        let their = self.links[l].ends[other];
                        self.p[other].m.connection_confirmed(now, their);
                    }
                }
            }
            Action::DropConnection { id } => {
                if let Some(l) = self.link_of(who, id).filter(|l| self.links[*l].alive) {
                    self.links[l].alive = false;
                    let their = self.links[l].ends[other];
                    self.p[other].m.connection_lost(now, their);
                }
            }
            Action::SendPing { id, ping } => {
                if let Some(l) = self.link_of(who, id).filter(|l| self.links[*l].alive) {
                    if !self.lose_pings {
                        let their = self.links[l].ends[other];
                        self.p[other].m.ping_received(their, ping);
                    }
                }
            }
            Action::SendPong { id, ping } => {
                if let Some(l) = self.link_of(who, id).filter(|l| self.links[*l].alive) {
                    let their = self.links[l].ends[other];
                    self.p[other].m.pong_received(now, their, ping);
                }
            }
        }
    }

    /// Run both peers until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for who in 0..2 {
                while let Some(a) = self.p[who].m.poll_action() {
                    moved = true;
                    self.perform(who, a);
                }
                let ev: Vec<Event> = events(&mut self.p[who].m);
                self.p[who].events.extend(ev);
            }
            for who in 0..2 {
                if let Some(msg) = self.p[who].outbox.pop_front() {
                    moved = true;
                    let now = self.now;
                    // Round-trip through the wire format, as the session will.
                    self.p[1 - who].m.peer_body(now, &msg.to_bytes());
                }
            }
            if let Some(l) = self.handshakes.pop() {
                moved = true;
                // The Follower's KCM reaches the Leader (if the link still stands).
                if self.links[l].alive {
                    let lead = self.leader();
                    let id = self.links[l].ends[lead];
                    self.p[lead].m.connection_confirmed(self.now, id);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    /// Advance the virtual clock to `until`, firing every timer on the way.
    fn advance_to(&mut self, until: Instant) {
        loop {
            let next = (0..2)
                .filter_map(|w| self.p[w].m.poll_timeout().map(|t| (t, w)))
                .min();
            match next {
                Some((t, w)) if t <= until => {
                    self.now = self.now.max(t);
                    let Peer { m, rng, .. } = &mut self.p[w];
                    m.handle_timeout(t, rng);
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn start(&mut self, opts: DilateOptions) {
        let now = self.now;
        for p in &mut self.p {
            p.m.dilate(now, opts.clone(), &mut p.rng).unwrap();
            p.m.peer_version(now, &ged());
        }
        self.settle();
    }

    fn connected(&self) -> Vec<(u32, ConnId)> {
        let mut v: Vec<(u32, ConnId)> = (0..2)
            .filter_map(|w| {
                self.p[w]
                    .m
                    .selected()
                    .map(|s| (self.p[w].m.generation(), s))
            })
            .collect();
        v.sort();
        v
    }

    /// Both peers have a selected connection, and it is the same link.
    fn assert_linked(&self) {
        let (a, b) = (self.p[0].m.selected(), self.p[1].m.selected());
        let l = self
            .links
            .iter()
            .find(|l| Some(l.ends[0]) == a && Some(l.ends[1]) == b)
            .unwrap_or_else(|| panic!("not the same link: {a:?} {b:?}"));
        assert!(l.alive);
        assert_eq!(self.p[0].m.state(), State::Connected);
        assert_eq!(self.p[1].m.state(), State::Connected);
    }
}

fn count(log: &[Action], f: impl Fn(&Action) -> bool) -> usize {
    log.iter().filter(|a| f(a)).count()
}

/// Two managers: please, roles, hints, two direct links (each dials the other), the
/// Leader selects the first confirmed one, the Follower follows; one generation.
#[test]
fn two_managers_start_up_and_select_one_link() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    net.start(DilateOptions::default());
    net.assert_linked();
    let (l, f) = (net.leader(), 1 - net.leader());
    assert_eq!(net.p[f].m.role(), Some(Role::Follower));
    assert!(
        net.p[l].m.side().unwrap().as_str() > net.p[f].m.side().unwrap().as_str(),
        "the larger side leads"
    );
    for p in &net.p {
        assert!(matches!(
            p.log[0],
            Action::Send(DilationMessage::Please { .. })
        ));
        assert_eq!(count(&p.log, |a| matches!(a, Action::Select { .. })), 1);
        assert_eq!(
            count(&p.log, |a| matches!(a, Action::StopConnecting { .. })),
            1
        );
        assert_eq!(
            p.events[0],
            Event::Generation {
                generation: 1,
                role: p.m.role().unwrap()
            }
        );
        assert!(matches!(
            p.events[1],
            Event::Connected { generation: 1, .. }
        ));
        assert_eq!(p.events.len(), 2);
    }
    assert_eq!(net.links.len(), 2, "each side dialled the other");
    assert_eq!(
        net.links.iter().filter(|l| l.alive).count(),
        1,
        "the losing link was dropped"
    );
    assert_eq!(net.p[f].m.poll_timeout(), None);

    // Keepalive runs for a while without trouble: one PING per interval.
    net.advance_to(t0 + PING * 5);
    net.assert_linked();
    assert_eq!(
        count(&net.p[l].log, |a| matches!(a, Action::SendPing { .. })),
        5
    );
    assert_eq!(
        count(&net.p[f].log, |a| matches!(a, Action::SendPong { .. })),
        5
    );
}

/// The keepalive times out (PINGs are lost), the Leader drops the link and sends
/// reconnect, the Follower answers, both start generation 2 and connect again.
#[test]
fn keepalive_timeout_leads_to_a_new_generation_on_both_sides() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    net.start(DilateOptions::default());
    net.assert_linked();
    let (l, f) = (net.leader(), 1 - net.leader());
    let first = net.connected();
    net.lose_pings = true;
    net.advance_to(t0 + PING * 2 - secs(0.001));
    net.assert_linked();
    net.lose_pings = false;
    net.advance_to(t0 + PING * 2);
    net.assert_linked();
    let second = net.connected();
    assert_ne!(first, second, "a new link");
    for p in &net.p {
        assert_eq!(p.m.generation(), 2);
        assert_eq!(
            count(&p.log, |a| matches!(a, Action::Deselect { .. })),
            1,
            "one Deselect for the one lost selection"
        );
        assert_eq!(count(&p.log, |a| matches!(a, Action::Select { .. })), 2);
    }
    assert_eq!(
        count(&net.p[l].log, |a| *a
            == Action::Send(DilationMessage::Reconnect)),
        1
    );
    assert_eq!(
        count(&net.p[f].log, |a| *a
            == Action::Send(DilationMessage::Reconnecting)),
        1
    );
    let reconnecting = |p: &Peer| {
        p.events
            .iter()
            .filter(|e| matches!(e, Event::Reconnecting { generation: 1 }))
            .count()
    };
    assert_eq!(reconnecting(&net.p[l]), 1);
    assert_eq!(reconnecting(&net.p[f]), 1);
    assert!(
        net.p[f]
            .events
            .iter()
            .any(|e| matches!(e, Event::Connected { generation: 2, .. }))
    );
    // And the new link is kept alive.
    net.advance_to(t0 + PING * 6);
    net.assert_linked();
    assert_eq!(net.p[l].m.generation(), 2);
}

/// Nothing connects in generation 1 (the listeners are unreachable, like a relay that
/// went away): the Leader gives the generation up after the timeout, both start
/// generation 2, which connects.
#[test]
fn unreachable_generation_is_retried_on_both_sides() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    net.refuse = true;
    net.start(DilateOptions::default());
    assert_eq!(net.connected(), vec![]);
    net.refuse = false;
    net.advance_to(t0 + DEFAULT_GENERATION_TIMEOUT);
    net.assert_linked();
    for p in &net.p {
        assert_eq!(p.m.generation(), 2);
    }
}
