//! Subchannel bookkeeping: ids, holding, close rules.

use super::*;

fn sends(s: &mut Subchannels) -> Vec<Payload> {
    std::iter::from_fn(|| s.poll_send()).collect()
}

fn events(s: &mut Subchannels) -> Vec<SubchannelEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn open(scid: u32, name: &str) -> Record {
    Record::Open {
        scid,
        seqnum: 0,
        name: name.into(),
    }
}

fn data(scid: u32, d: &[u8]) -> Record {
    Record::Data {
        scid,
        seqnum: 0,
        data: d.to_vec(),
    }
}

fn close(scid: u32) -> Record {
    Record::Close { scid, seqnum: 0 }
}

#[test]
fn leader_allocates_odd_follower_even_ids() {
    let mut l = Subchannels::new(Role::Leader);
    let mut f = Subchannels::new(Role::Follower);
    let lids: Vec<u32> = (0..3).map(|_| l.open("p", false).unwrap()).collect();
    let fids: Vec<u32> = (0..3).map(|_| f.open("p", false).unwrap()).collect();
    assert_eq!(lids, [1, 3, 5]);
    assert_eq!(fids, [2, 4, 6]);
    assert_eq!(
        sends(&mut l)[0],
        Payload::Open {
            scid: 1,
            name: "p".into()
        }
    );
    // An id the peer already used (against the rules) is skipped, never shared.
    let mut l = Subchannels::new(Role::Leader);
    l.listen("x", false).unwrap();
    l.handle_record(open(1, "x")).unwrap();
    assert_eq!(l.open("p", false).unwrap(), 3);
}

#[test]
fn ids_run_out() {
    let mut l = Subchannels::new(Role::Leader);
    l.next_id = u32::MAX as u64;
    assert_eq!(l.open("p", false), Ok(u32::MAX));
    assert_eq!(l.open("p", false), Err(DilationError::Exhausted));
}

#[test]
fn open_then_write_without_waiting_for_an_answer() {
    let mut l = Subchannels::new(Role::Leader);
    let id = l.open("proto", false).unwrap();
    l.write(id, b"hi".to_vec()).unwrap();
    l.write(id, vec![]).unwrap();
    assert_eq!(
        sends(&mut l),
        vec![
            Payload::Open {
                scid: 1,
                name: "proto".into()
            },
            Payload::Data {
                scid: 1,
                data: b"hi".to_vec()
            },
            Payload::Data {
                scid: 1,
                data: vec![]
            },
        ]
    );
    assert!(l.write(7, vec![1]).is_err(), "unknown subchannel");
}

#[test]
fn open_before_listen_is_held_until_listen() {
    let mut f = Subchannels::new(Role::Follower);
    assert_eq!(f.handle_record(open(1, "svc")).unwrap(), Handled::Held);
    assert_eq!(f.handle_record(data(1, b"a")).unwrap(), Handled::Held);
    assert_eq!(f.handle_record(open(3, "other")).unwrap(), Handled::Held);
    assert_eq!(f.handle_record(open(5, "svc")).unwrap(), Handled::Held);
    assert_eq!(f.handle_record(data(1, b"b")).unwrap(), Handled::Held);
    assert_eq!(f.handle_record(close(1)).unwrap(), Handled::Held);
    assert!(events(&mut f).is_empty());
    assert_eq!(f.state(1), Some(SubchannelState::Held));
    assert!(
        f.write(1, vec![]).is_err(),
        "held subchannels cannot be written"
    );

    f.listen("svc", false).unwrap();
    assert_eq!(
        events(&mut f),
        vec![
            SubchannelEvent::Accepted {
                scid: 1,
                name: "svc".into()
            },
            SubchannelEvent::Data {
                scid: 1,
                data: b"a".to_vec()
            },
            SubchannelEvent::Data {
                scid: 1,
                data: b"b".to_vec()
            },
            SubchannelEvent::Closed { scid: 1 },
            SubchannelEvent::Accepted {
                scid: 5,
                name: "svc".into()
            },
        ]
    );
    // The held CLOSE was answered like any CLOSE on an open subchannel.
    assert_eq!(sends(&mut f), vec![Payload::Close { scid: 1 }]);
    assert_eq!(
        f.state(3),
        Some(SubchannelState::Held),
        "other names stay held"
    );
    assert!(f.listen("svc", false).is_err(), "one listener per name");

    // After listen, OPENs are accepted at once.
    assert_eq!(f.handle_record(open(7, "svc")).unwrap(), Handled::Delivered);
    assert_eq!(
        events(&mut f),
        vec![SubchannelEvent::Accepted {
            scid: 7,
            name: "svc".into()
        }]
    );
}

#[test]
fn duplicates_and_unknown_ids_are_ignored() {
    let mut f = Subchannels::new(Role::Follower);
    f.listen("svc", false).unwrap();
    f.handle_record(open(1, "svc")).unwrap();
    events(&mut f);
    assert_eq!(
        f.handle_record(open(1, "svc")).unwrap(),
        Handled::Ignored("duplicate OPEN")
    );
    assert!(matches!(
        f.handle_record(data(9, b"x")).unwrap(),
        Handled::Ignored(_)
    ));
    assert!(matches!(
        f.handle_record(close(9)).unwrap(),
        Handled::Ignored(_)
    ));
    assert!(matches!(
        f.handle_record(open(0, "svc")).unwrap(),
        Handled::Ignored(_)
    ));
    assert!(f.handle_record(Record::Kcm).is_err());
    assert!(events(&mut f).is_empty());
    assert!(sends(&mut f).is_empty());
}

/// Full-close, we close first: CLOSE, closing (data still delivered, writes refused),
/// the peer's CLOSE ends it.
#[test]
fn full_close_initiated_locally() {
    let mut l = Subchannels::new(Role::Leader);
    let id = l.open("p", false).unwrap();
    sends(&mut l);
    l.close(id).unwrap();
    assert_eq!(sends(&mut l), vec![Payload::Close { scid: id }]);
    assert_eq!(l.state(id), Some(SubchannelState::Closing));
    assert!(l.write(id, vec![1]).is_err());
    assert!(l.close(id).is_err());
    l.handle_record(data(id, b"late")).unwrap();
    l.handle_record(close(id)).unwrap();
    assert_eq!(
        events(&mut l),
        vec![
            SubchannelEvent::Data {
                scid: id,
                data: b"late".to_vec()
            },
            SubchannelEvent::Closed { scid: id }
        ]
    );
    assert!(
        sends(&mut l).is_empty(),
        "no reply to the peer's answering CLOSE"
    );
    assert_eq!(l.state(id), Some(SubchannelState::Closed));
    assert!(matches!(
        l.handle_record(data(id, b"x")).unwrap(),
        Handled::Ignored(_)
    ));
}

/// Full-close, the peer closes first: we answer with CLOSE and are done.
#[test]
fn full_close_initiated_by_the_peer() {
    let mut f = Subchannels::new(Role::Follower);
    f.listen("p", false).unwrap();
    f.handle_record(open(1, "p")).unwrap();
    f.handle_record(close(1)).unwrap();
    assert_eq!(sends(&mut f), vec![Payload::Close { scid: 1 }]);
    assert_eq!(events(&mut f)[1..], [SubchannelEvent::Closed { scid: 1 }]);
    assert!(f.write(1, vec![]).is_err());
    assert!(f.close(1).is_err());
    assert!(matches!(
        f.handle_record(close(1)).unwrap(),
        Handled::Ignored(_)
    ));
}

/// Half-close: each side closes its own direction; no automatic reply.
#[test]
fn half_close_both_orders() {
    // The peer closes first: we can still write, then close ours.
    let mut f = Subchannels::new(Role::Follower);
    f.listen("p", true).unwrap();
    f.handle_record(open(1, "p")).unwrap();
    f.handle_record(close(1)).unwrap();
    assert!(sends(&mut f).is_empty(), "no automatic CLOSE");
    assert_eq!(f.state(1), Some(SubchannelState::ReadClosed));
    f.write(1, b"still".to_vec()).unwrap();
    f.close_write(1).unwrap();
    assert_eq!(
        sends(&mut f),
        vec![
            Payload::Data {
                scid: 1,
                data: b"still".to_vec()
            },
            Payload::Close { scid: 1 }
        ]
    );
    assert_eq!(
        events(&mut f)[1..],
        [
            SubchannelEvent::ReadClosed { scid: 1 },
            SubchannelEvent::Closed { scid: 1 }
        ]
    );

    // We close first: the peer may still write until its CLOSE.
    let mut l = Subchannels::new(Role::Leader);
    let id = l.open("p", true).unwrap();
    l.close_write(id).unwrap();
    assert_eq!(l.state(id), Some(SubchannelState::WriteClosed));
    assert!(l.write(id, vec![]).is_err());
    l.handle_record(data(id, b"x")).unwrap();
    l.handle_record(close(id)).unwrap();
    assert_eq!(
        events(&mut l),
        vec![
            SubchannelEvent::Data {
                scid: id,
                data: b"x".to_vec()
            },
            SubchannelEvent::ReadClosed { scid: id },
            SubchannelEvent::Closed { scid: id }
        ]
    );

    // close() on a half-closeable protocol is a full close: closing, then finished.
    let id = l.open("h", true).unwrap();
    l.close(id).unwrap();
    assert_eq!(l.state(id), Some(SubchannelState::Closing));
    l.handle_record(close(id)).unwrap();
    assert_eq!(events(&mut l), vec![SubchannelEvent::Closed { scid: id }]);

    // close_write is only for half-closeable protocols.
    let id = l.open("q", false).unwrap();
    assert!(l.close_write(id).is_err());
}

#[test]
fn held_subchannels_and_bytes_are_bounded() {
    let mut f = Subchannels::new(Role::Follower);
    for i in 0..MAX_HELD_SUBCHANNELS as u32 {
        assert_eq!(
            f.handle_record(open(2 * i + 1, "svc")).unwrap(),
            Handled::Held
        );
    }
    let extra = 2 * MAX_HELD_SUBCHANNELS as u32 + 1;
    assert!(matches!(
        f.handle_record(open(extra, "svc")).unwrap(),
        Handled::Ignored(_)
    ));
    assert!(matches!(
        f.handle_record(data(extra, b"x")).unwrap(),
        Handled::Ignored(_)
    ));
    assert_eq!(f.handle_record(data(1, &[0; 100])).unwrap(), Handled::Held);
    assert_eq!(f.handle_record(data(3, &[0; 50])).unwrap(), Handled::Held);
    assert_eq!(f.held_bytes(), 150);
    f.listen("svc", false).unwrap();
    assert_eq!(f.held_bytes(), 0);
    assert_eq!(
        events(&mut f).len(),
        MAX_HELD_SUBCHANNELS + 2,
        "every held subchannel accepted, and the two records"
    );
}
