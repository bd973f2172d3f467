//! The L2 machine against PROTOCOL §10.5 (fixed ephemeral keys) and against itself.

use sha2::{Digest, Sha256};

use super::*;

fn key() -> DilationKey {
    DilationKey::derive(&(0u8..32).collect::<Vec<_>>())
}

fn leader() -> Connection {
    Connection::new(Role::Leader, &key(), [0x33; 32], None, Default::default()).unwrap()
}

fn follower() -> Connection {
    Connection::new(Role::Follower, &key(), [0x44; 32], None, Default::default()).unwrap()
}

fn drain(c: &mut Connection) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn events(c: &mut Connection) -> Vec<ConnectionEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// PROTOCOL §10.5, byte for byte, fed one byte at a time to the receivers.
#[test]
fn exchange_matches_the_vector() {
    let mut l = leader();
    let mut f = follower();
    assert_eq!(drain(&mut l), vec![PROLOGUE_LEADER.to_vec()]);
    assert_eq!(drain(&mut f), vec![PROLOGUE_FOLLOWER.to_vec()]);
    assert_eq!(PROLOGUE_LEADER.len(), 45);
    assert_eq!(PROLOGUE_FOLLOWER.len(), 47);

    // The Leader sends message 1 only once the Follower's line is complete.
    l.handle_input(&PROLOGUE_FOLLOWER[..46]).unwrap();
    assert!(drain(&mut l).is_empty());
    l.handle_input(&PROLOGUE_FOLLOWER[46..]).unwrap();
    let l1 = drain(&mut l);
    assert_eq!(
        l1,
        vec![h(
            "00000030 7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14 47b25fe27e49a6ae7dc8b8887f8434a7"
        )]
    );
    assert_eq!(l.state(), ConnectionState::Handshake);

    // The Follower, byte by byte: prologue + message 1 → message 2 + KCM.
    for b in PROLOGUE_LEADER.iter().chain(l1[0].iter()) {
        f.handle_input(std::slice::from_ref(b)).unwrap();
    }
    assert_eq!(f.state(), ConnectionState::Transport);
    let f1 = drain(&mut f);
    assert_eq!(
        f1,
        vec![
            h(
                "00000030 ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6b c0ecf1967e014cee6fcdc0710b064e99"
            ),
            h("00000011 528801a227924a551d6e5dc0b8da49f205"),
        ]
    );
    assert!(events(&mut f).is_empty());

    // The Leader reads both in one chunk and sees the Follower's KCM.
    l.handle_input(&f1.concat()).unwrap();
    assert_eq!(events(&mut l), vec![ConnectionEvent::KeyConfirmed]);
    assert!(drain(&mut l).is_empty(), "nothing before selection");
    l.select().unwrap();
    let kcm = drain(&mut l);
    assert_eq!(kcm, vec![h("00000011 5910407ba1426c21f64290d65bd059385a")]);

    let open = Record::Open {
        scid: 1,
        seqnum: 0,
        name: "proto".into(),
    };
    let data = Record::Data {
        scid: 1,
        seqnum: 1,
        data: b"hi".to_vec(),
    };
    let big = Record::Data {
        scid: 1,
        seqnum: 2,
        data: vec![0; 70000],
    };
    l.send_record(&open).unwrap();
    l.send_record(&data).unwrap();
    l.send_record(&big).unwrap();
    let sent = drain(&mut l);
    assert_eq!(
        sent[0],
        h("0000001e 46a2a6e97a5638239f39f342d65e1e4811e6669a39bfe28de2b5051719fb")
    );
    assert_eq!(
        sent[1],
        h("0000001b 0f54a51497e562a8d0f1d8def8387b6f23ff2f2c97daae8a8fbb6f")
    );
    assert_eq!(sent[2].len(), 70045, "the whole frame, prefix included");
    assert_eq!(sent[2][..4], h("00011199")[..]);
    assert_eq!(
        hex::encode(Sha256::digest(&sent[2])),
        "31f6a0b12c07334ed84dec117b3b27dbb45aca147474de57ee6459cda8858227"
    );

    // The Follower reads the Leader's KCM and the three records in one go.
    f.handle_input(&[kcm.concat(), sent.concat()].concat())
        .unwrap();
    assert_eq!(
        events(&mut f),
        vec![
            ConnectionEvent::KeyConfirmed,
            ConnectionEvent::Record(open),
            ConnectionEvent::Record(data),
            ConnectionEvent::Record(big),
        ]
    );
    f.select().unwrap();
    assert!(
        drain(&mut f).is_empty(),
        "the Follower's KCM went out already"
    );
    f.send_record(&Record::Ack { resp_seqnum: 0 }).unwrap();
    assert_eq!(
        drain(&mut f),
        vec![h("00000015 971b48048ffd74f1b19601e145870be73011138581")]
    );
}

/// Run the handshake between two fresh machines, optionally through a relay.
fn pair(relay: bool) -> (Connection, Connection) {
    let side_l = DilationSide::parse("b4c6208a656c1399").unwrap();
    let side_f = DilationSide::parse("57ac9e7efe0ab261").unwrap();
    let (rl, rf) = if relay {
        (Some(&side_l), Some(&side_f))
    } else {
        (None, None)
    };
    let mut l = Connection::new(Role::Leader, &key(), [1; 32], rl, Default::default()).unwrap();
    let mut f = Connection::new(Role::Follower, &key(), [2; 32], rf, Default::default()).unwrap();
    if relay {
        let hl = drain(&mut l);
        assert_eq!(hl, vec![key().relay_handshake(&side_l)]);
        let hf = drain(&mut f);
        assert_eq!(hf, vec![key().relay_handshake(&side_f)]);
        assert_eq!(l.state(), ConnectionState::RelayOk);
        l.handle_input(b"ok\n").unwrap();
        f.handle_input(b"o").unwrap();
        assert!(drain(&mut f).is_empty(), "no prologue before the whole ok");
        f.handle_input(b"k\n").unwrap();
    }
    for _ in 0..4 {
        let a = drain(&mut l).concat();
        f.handle_input(&a).unwrap();
        let b = drain(&mut f).concat();
        l.handle_input(&b).unwrap();
    }
    (l, f)
}

#[test]
fn relay_then_handshake_then_records_both_ways() {
    let (mut l, mut f) = pair(true);
    assert_eq!(events(&mut l), vec![ConnectionEvent::KeyConfirmed]);
    l.select().unwrap();
    l.send_record(&Record::Ping([9, 9, 9, 9])).unwrap();
    f.handle_input(&drain(&mut l).concat()).unwrap();
    assert_eq!(
        events(&mut f),
        vec![
            ConnectionEvent::KeyConfirmed,
            ConnectionEvent::Record(Record::Ping([9, 9, 9, 9]))
        ]
    );
    f.select().unwrap();
    f.send_record(&Record::Pong([9, 9, 9, 9])).unwrap();
    // Exactly 65519 and 65520 bytes of record: one piece, then two.
    let mut sent = Vec::new();
    for (i, n) in [MAX_PLAINTEXT - 9, MAX_PLAINTEXT - 8, 3 * MAX_PLAINTEXT]
        .into_iter()
        .enumerate()
    {
        let r = Record::Data {
            scid: 2,
            seqnum: i as u32,
            data: (0..n).map(|j| (j * 7 + i) as u8).collect(),
        };
        f.send_record(&r).unwrap();
        sent.push(ConnectionEvent::Record(r));
    }
    let out = drain(&mut f);
    assert_eq!(out[1].len(), 4 + 65535);
    assert_eq!(out[2].len(), 4 + 65520 + 32);
    assert_eq!(out[3].len(), 4 + 3 * 65535 + 9 + 16);
    l.handle_input(&out.concat()).unwrap();
    let ev = events(&mut l);
    assert_eq!(ev[0], ConnectionEvent::Record(Record::Pong([9, 9, 9, 9])));
    assert_eq!(ev[1..], sent[..]);
    // A second KCM is ignored, and records still flow after it.
    f.encrypt_record(&Record::Kcm).unwrap();
    f.send_record(&Record::Ack { resp_seqnum: 5 }).unwrap();
    l.handle_input(&drain(&mut f).concat()).unwrap();
    assert_eq!(
        events(&mut l),
        vec![ConnectionEvent::Record(Record::Ack { resp_seqnum: 5 })]
    );
    assert_eq!(l.state(), ConnectionState::Transport);
}

#[test]
fn relay_refusal_and_bad_prologue_fail() {
    let side = DilationSide::parse("0123456789abcdef").unwrap();
    let mut c = Connection::new(
        Role::Leader,
        &key(),
        [1; 32],
        Some(&side),
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        c.handle_input(b"impatient\n"),
        Err(DilationError::RelayRefused)
    );
    assert_eq!(c.state(), ConnectionState::Failed);
    assert_eq!(
        c.handle_input(b"ok\n"),
        Err(DilationError::ConnectionClosed)
    );

    // A Leader expecting the Follower's line gets the Leader's line (a reflection).
    let mut c = leader();
    assert_eq!(
        c.handle_input(PROLOGUE_LEADER),
        Err(DilationError::BadPrologue)
    );
}

#[test]
fn wrong_key_fails_the_handshake() {
    let mut l = leader();
    let other = DilationKey([9; 32]);
    let mut f =
        Connection::new(Role::Follower, &other, [0x44; 32], None, Default::default()).unwrap();
    drain(&mut f);
    drain(&mut l);
    l.handle_input(PROLOGUE_FOLLOWER).unwrap();
    let m1 = drain(&mut l).concat();
    let r = f.handle_input(&[PROLOGUE_LEADER, &m1[..]].concat());
    assert!(matches!(r, Err(DilationError::Noise(_))), "{r:?}");
    assert_eq!(f.state(), ConnectionState::Failed);
}

#[test]
fn corrupted_or_oversized_frames_fail() {
    let (mut l, mut f) = pair(false);
    events(&mut l);
    l.select().unwrap();
    let mut kcm = drain(&mut l).concat();
    let last = kcm.len() - 1;
    kcm[last] ^= 1;
    assert!(matches!(f.handle_input(&kcm), Err(DilationError::Noise(_))));

    let (_, mut f) = pair(false);
    assert_eq!(
        f.handle_input(&[0x01, 0x00, 0x00, 0x01]),
        Err(DilationError::Oversized {
            len: 0x0100_0001,
            max: DEFAULT_MAX_FRAME
        })
    );
}

#[test]
fn records_before_selection_are_refused() {
    let (mut l, mut f) = pair(false);
    // Neither side may send a record before selection, and the Follower cannot be
    // selected before the Leader's KCM arrived.
    assert!(f.send_record(&Record::Ack { resp_seqnum: 0 }).is_err());
    assert!(f.select().is_err(), "no KCM from the Leader yet");
    assert_eq!(events(&mut l), vec![ConnectionEvent::KeyConfirmed]);
    assert!(l.send_record(&Record::Kcm).is_err());
    assert!(l.send_record(&Record::Ack { resp_seqnum: 0 }).is_err());
    l.select().unwrap();
    l.select().unwrap();
    assert_eq!(
        drain(&mut l).len(),
        1,
        "one KCM, however often select() is called"
    );
}

#[test]
fn leader_refuses_records_before_it_selected() {
    // A Follower that skips the rules: after its KCM it sends a record at once.
    let mut l = leader();
    let mut f = follower();
    drain(&mut f);
    drain(&mut l);
    l.handle_input(PROLOGUE_FOLLOWER).unwrap();
    let m1 = drain(&mut l).concat();
    f.handle_input(&[PROLOGUE_LEADER, &m1[..]].concat())
        .unwrap();
    let hs = drain(&mut f).concat();
    // Bypass the Follower's own check and encrypt a DATA right after its KCM.
    f.encrypt_record(&Record::Data {
        scid: 2,
        seqnum: 0,
        data: vec![],
    })
    .unwrap();
    let data = drain(&mut f).concat();
    assert_eq!(
        l.handle_input(&[hs, data].concat()),
        Err(DilationError::UnexpectedRecord("DATA"))
    );
    assert_eq!(events(&mut l), vec![ConnectionEvent::KeyConfirmed]);
}

#[test]
fn reused_buffers_carry_later_frames() {
    let (mut l, mut f) = pair(false);
    events(&mut l);
    l.select().unwrap();
    f.handle_input(&drain(&mut l).concat()).unwrap();
    events(&mut f);
    for i in 0..4u32 {
        let r = Record::Data {
            scid: 1,
            seqnum: i,
            data: vec![i as u8; 70_000 + i as usize],
        };
        l.send_record(&r).unwrap();
        let frames = drain(&mut l);
        f.handle_input(&frames.concat()).unwrap();
        assert_eq!(events(&mut f), vec![ConnectionEvent::Record(r)]);
        // Hand back the written frame dirty: the next frame must not depend on its bytes.
        for mut b in frames {
            b.iter_mut().for_each(|x| *x = 0xff);
            l.reuse(b);
        }
    }
}
