use super::*;

fn now() -> Instant {
    Instant::now()
}

fn sent(out: &[Output]) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(b) => Some(serde_json::from_slice(b).unwrap()),
            _ => None,
        })
        .collect()
}

fn events(out: &[Output]) -> Vec<TransferEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Emit(_, e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn directives(out: &[Output]) -> Vec<Directive> {
    out.iter()
        .filter_map(|o| match o {
            Output::Io(_, d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn feed(m: &mut Machine, input: Input) -> Vec<Output> {
    m.handle(input, now()).unwrap().1
}

fn peer(m: &mut Machine, v: Value) -> Vec<Output> {
    feed(m, Input::PeerMessage(serde_json::to_vec(&v).unwrap()))
}

#[test]
fn text_send_and_ack() {
    let mut m = Machine::new();
    let out = feed(
        &mut m,
        Input::Start(Kind::SendText, Some("hi".into()), PROGRESS_INTERVAL),
    );
    assert_eq!(
        sent(&out),
        vec![serde_json::json!({"offer": {"message": "hi"}})]
    );
    assert!(m.wants_messages());
    // Unrelated messages are ignored while waiting.
    assert!(peer(&mut m, serde_json::json!({"unknown": 1})).is_empty());
    let out = peer(&mut m, serde_json::json!({"answer": {"message_ack": "ok"}}));
    assert_eq!(events(&out), vec![TransferEvent::TextSent(Ok(()))]);
    assert!(!m.wants_messages());
}

#[test]
fn text_send_remote_error_and_ambiguous_ack() {
    let mut m = Machine::new();
    feed(
        &mut m,
        Input::Start(Kind::SendText, Some("hi".into()), PROGRESS_INTERVAL),
    );
    let out = peer(&mut m, serde_json::json!({"error": "nope"}));
    let [TransferEvent::TextSent(Err(Error::Transfer(t)))] = &events(&out)[..] else {
        panic!("{out:?}")
    };
    assert!(t.contains("nope"));
    feed(
        &mut m,
        Input::Start(Kind::SendText, Some("hi".into()), PROGRESS_INTERVAL),
    );
    let out = peer(&mut m, serde_json::json!({"answer": {"file_ack": "ok"}}));
    assert!(matches!(
        &events(&out)[..],
        [TransferEvent::TextSent(Err(Error::Transfer(_)))]
    ));
}

#[test]
fn one_transfer_at_a_time_and_not_after_close() {
    let mut m = Machine::new();
    feed(
        &mut m,
        Input::Start(Kind::ReceiveText, None, PROGRESS_INTERVAL),
    );
    assert_eq!(
        m.handle(
            Input::Start(Kind::SendText, Some("x".into()), PROGRESS_INTERVAL),
            now()
        )
        .unwrap_err(),
        Error::InProgress
    );
    let out = feed(&mut m, Input::Closed(Err(Error::Lonely)));
    assert_eq!(
        events(&out),
        vec![TransferEvent::TextReceived(Err(Error::Lonely))]
    );
    assert_eq!(
        m.handle(
            Input::Start(Kind::ReceiveText, None, PROGRESS_INTERVAL),
            now()
        )
        .unwrap_err(),
        Error::Lonely
    );
}

#[test]
fn accept_and_reject_need_an_offer() {
    let mut m = Machine::new();
    assert!(matches!(
        m.handle(Input::Reject, now()).unwrap_err(),
        Error::InvalidState(_)
    ));
    feed(
        &mut m,
        Input::Start(Kind::ReceiveFile, None, PROGRESS_INTERVAL),
    );
    let accept = Input::Accept {
        dest: "x".into(),
        overwrite: false,
    };
    assert!(matches!(
        m.handle(accept, now()).unwrap_err(),
        Error::InvalidState(_)
    ));
}

#[test]
fn receive_text_refuses_files() {
    let mut m = Machine::new();
    feed(
        &mut m,
        Input::Start(Kind::ReceiveText, None, PROGRESS_INTERVAL),
    );
    let out = peer(
        &mut m,
        serde_json::json!({"offer": {"file": {"filename": "a", "filesize": 1}}}),
    );
    assert_eq!(
        sent(&out),
        vec![serde_json::json!({"error": "unknown offer type"})]
    );
    assert!(matches!(
        &events(&out)[..],
        [TransferEvent::TextReceived(Err(Error::Transfer(_)))]
    ));
}

#[test]
fn file_receive_full_flow() {
    let mut m = Machine::new();
    feed(
        &mut m,
        Input::Start(Kind::ReceiveFile, None, PROGRESS_INTERVAL),
    );
    let hints = serde_json::json!({"abilities-v1": [], "hints-v1": []});
    let out = peer(&mut m, serde_json::json!({ "transit": hints }));
    assert_eq!(
        directives(&out),
        vec![Directive::PrepareReceiver(hints.clone())]
    );
    let out = feed(
        &mut m,
        Input::Io(1, IoReport::ReceiverPrepared(b"{\"transit\":1}".to_vec())),
    );
    assert_eq!(sent(&out), vec![serde_json::json!({"transit": 1})]);
    let out = peer(
        &mut m,
        serde_json::json!({"offer": {"directory": {"mode": "zipfile/deflated", "dirname": "../d", "zipsize": 10, "numbytes": 7, "numfiles": 2}}}),
    );
    let offer = OfferInfo {
        name: "d".into(),
        size: 10,
        kind: OfferKind::Directory {
            numbytes: 7,
            numfiles: 2,
        },
    };
    assert_eq!(events(&out), vec![TransferEvent::Offer(offer.clone())]);
    assert_eq!(m.pending_offer(), Some((1, &offer)));
    let out = feed(
        &mut m,
        Input::Accept {
            dest: "/tmp/d".into(),
            overwrite: false,
        },
    );
    assert!(matches!(&directives(&out)[..], [Directive::Accept { .. }]));
    // The file_ack only once the destination is ready.
    assert!(sent(&out).is_empty());
    let out = feed(&mut m, Input::Io(1, IoReport::ReadyForData(None)));
    assert_eq!(
        sent(&out),
        vec![serde_json::json!({"answer": {"file_ack": "ok"}})]
    );
    assert_eq!(directives(&out), vec![Directive::Connect(None)]);
    // Progress is throttled; the last report always passes.
    let t0 = now();
    let p = |m: &mut Machine, d, t| {
        m.handle(Input::Io(1, IoReport::Progress(d, 10)), t)
            .unwrap()
            .1
    };
    assert_eq!(events(&p(&mut m, 1, t0)).len(), 1);
    assert!(events(&p(&mut m, 2, t0 + Duration::from_millis(50))).is_empty());
    assert_eq!(
        events(&p(&mut m, 3, t0 + Duration::from_millis(120))).len(),
        1
    );
    assert_eq!(
        events(&p(&mut m, 10, t0 + Duration::from_millis(121))),
        vec![TransferEvent::Progress {
            done: 10,
            total: 10
        }]
    );
    // A report of another (old) operation is ignored.
    assert!(feed(&mut m, Input::Io(7, IoReport::Finished(Ok(None)))).is_empty());
    let out = feed(
        &mut m,
        Input::Io(1, IoReport::Finished(Ok(Some("/tmp/d".into())))),
    );
    assert_eq!(
        events(&out),
        vec![TransferEvent::FileReceived(Ok("/tmp/d".into()))]
    );
}

#[test]
fn accepted_before_the_hints_waits_for_them() {
    let mut m = Machine::new();
    feed(
        &mut m,
        Input::Start(Kind::ReceiveFile, None, PROGRESS_INTERVAL),
    );
    peer(
        &mut m,
        serde_json::json!({"offer": {"file": {"filename": "f", "filesize": 1}}}),
    );
    feed(
        &mut m,
        Input::Accept {
            dest: "f".into(),
            overwrite: false,
        },
    );
    let out = feed(&mut m, Input::Io(1, IoReport::ReadyForData(None)));
    assert!(out.is_empty(), "{out:?}");
    let out = peer(&mut m, serde_json::json!({"transit": {"hints-v1": []}}));
    assert_eq!(
        sent(&out),
        vec![serde_json::json!({"answer": {"file_ack": "ok"}})]
    );
    assert_eq!(
        directives(&out),
        vec![
            Directive::PrepareReceiver(serde_json::json!({"hints-v1": []})),
            Directive::Connect(None)
        ]
    );
}

#[test]
fn bad_offers_are_refused_like_the_reference() {
    for (offer, reply) in [
        (
            serde_json::json!({"file": {"filename": "a"}}),
            "unknown offer type",
        ),
        (
            serde_json::json!({"directory": {"mode": "tar", "dirname": "d", "zipsize": 1}}),
            "unknown mode",
        ),
        (serde_json::json!({"something": {}}), "unknown offer type"),
        (
            serde_json::json!({"file": {"filename": "..", "filesize": 1}}),
            "transfer rejected",
        ),
    ] {
        let mut m = Machine::new();
        feed(
            &mut m,
            Input::Start(Kind::ReceiveFile, None, PROGRESS_INTERVAL),
        );
        let out = peer(&mut m, serde_json::json!({ "offer": offer }));
        assert_eq!(sent(&out), vec![serde_json::json!({ "error": reply })]);
        assert_eq!(directives(&out), vec![Directive::Stop]);
        // The final event waits for the I/O task to have stopped.
        assert!(events(&out).is_empty());
        let out = feed(&mut m, Input::Io(1, IoReport::Stopped));
        assert!(matches!(
            &events(&out)[..],
            [TransferEvent::FileReceived(Err(Error::Transfer(_)))]
        ));
        assert!(m.is_idle());
    }
}

#[test]
fn reject_and_cancel() {
    let start = |k| Input::Start(k, None, PROGRESS_INTERVAL);
    let mut m = Machine::new();
    feed(&mut m, start(Kind::ReceiveFile));
    peer(
        &mut m,
        serde_json::json!({"offer": {"file": {"filename": "f", "filesize": 1}}}),
    );
    let out = feed(&mut m, Input::Reject);
    assert_eq!(
        sent(&out),
        vec![serde_json::json!({"error": "transfer rejected"})]
    );
    assert_eq!(directives(&out), vec![Directive::Stop]);
    assert!(events(&out).is_empty());
    // While stopping: no second start, peer messages and other reports ignored.
    let text = Input::Start(Kind::SendText, Some("x".into()), PROGRESS_INTERVAL);
    assert_eq!(m.handle(text, now()).unwrap_err(), Error::InProgress);
    assert!(peer(&mut m, serde_json::json!({"offer": {"message": "late"}})).is_empty());
    assert!(feed(&mut m, Input::Io(1, IoReport::DataReceived)).is_empty());
    let out = feed(&mut m, Input::Io(1, IoReport::Stopped));
    assert_eq!(
        events(&out),
        vec![TransferEvent::FileReceived(Err(Error::Cancelled))]
    );
    // Cancel with nothing running: nothing happens.
    assert!(feed(&mut m, Input::Cancel).is_empty());
    feed(&mut m, start(Kind::SendFile));
    let out = feed(&mut m, Input::Cancel);
    assert_eq!(directives(&out), vec![Directive::Stop]);
    assert!(events(&out).is_empty());
    // The task may end on its own meanwhile: the stored outcome wins.
    let out = feed(&mut m, Input::Io(2, IoReport::Finished(Ok(None))));
    assert_eq!(
        events(&out),
        vec![TransferEvent::FileSent(Err(Error::Cancelled))]
    );
}

#[test]
fn file_send_flow() {
    let mut m = Machine::new();
    let out = feed(
        &mut m,
        Input::Start(Kind::SendFile, None, PROGRESS_INTERVAL),
    );
    assert!(out.is_empty(), "nothing before the key is verified");
    let out = feed(&mut m, Input::Verified);
    assert_eq!(directives(&out), vec![Directive::PrepareSender]);
    let out = feed(
        &mut m,
        Input::Io(
            1,
            IoReport::SenderPrepared {
                transit: b"{\"transit\":{}}".to_vec(),
                offer: b"{\"offer\":{}}".to_vec(),
            },
        ),
    );
    assert_eq!(
        sent(&out),
        vec![
            serde_json::json!({"transit": {}}),
            serde_json::json!({"offer": {}})
        ]
    );
    let out = peer(&mut m, serde_json::json!({"transit": {"hints-v1": [1]}}));
    assert_eq!(
        directives(&out),
        vec![Directive::AddHints(serde_json::json!({"hints-v1": [1]}))]
    );
    let out = peer(&mut m, serde_json::json!({"answer": {"file_ack": "ok"}}));
    assert_eq!(directives(&out), vec![Directive::Connect(None)]);
    let out = feed(&mut m, Input::Io(1, IoReport::DataSent));
    assert_eq!(events(&out), vec![TransferEvent::DataSent]);
    let out = feed(&mut m, Input::Io(1, IoReport::Finished(Ok(None))));
    assert_eq!(events(&out), vec![TransferEvent::FileSent(Ok(()))]);
    // Already verified: the next send prepares at once.
    let out = feed(
        &mut m,
        Input::Start(Kind::SendFile, None, PROGRESS_INTERVAL),
    );
    assert_eq!(directives(&out), vec![Directive::PrepareSender]);
}

#[test]
fn garbage_from_the_peer_ends_the_transfer() {
    let mut m = Machine::new();
    feed(
        &mut m,
        Input::Start(Kind::ReceiveFile, None, PROGRESS_INTERVAL),
    );
    let out = feed(&mut m, Input::PeerMessage(b"\xff not json".to_vec()));
    assert_eq!(directives(&out), vec![Directive::Stop]);
    let out = feed(&mut m, Input::Io(1, IoReport::Stopped));
    assert!(matches!(
        &events(&out)[..],
        [TransferEvent::FileReceived(Err(Error::Transfer(_)))]
    ));
}

/// A sender that got past `file_ack`: returns the machine.
fn sender_awaiting_file_ack() -> Machine {
    let mut m = Machine::new();
    feed(
        &mut m,
        Input::Start(Kind::SendFile, None, PROGRESS_INTERVAL),
    );
    feed(&mut m, Input::Verified);
    feed(
        &mut m,
        Input::Io(
            1,
            IoReport::SenderPrepared {
                transit: b"{\"transit\":{}}".to_vec(),
                offer: b"{\"offer\":{}}".to_vec(),
            },
        ),
    );
    m
}

#[test]
fn sender_connects_from_the_receivers_resume_point() {
    let mut m = sender_awaiting_file_ack();
    let sha = [7u8; 32];
    let out = peer(
        &mut m,
        serde_json::json!({"answer": {"file_ack": "ok",
            "resume": {"offset": 5, "sha256": hex::encode(sha)}}}),
    );
    assert_eq!(
        directives(&out),
        vec![Directive::Connect(Some(ResumePoint {
            offset: 5,
            sha256: sha
        }))]
    );
    let out = feed(&mut m, Input::Io(1, IoReport::Resumed(5)));
    assert_eq!(events(&out), vec![TransferEvent::Resumed { offset: 5 }]);
}

#[test]
fn a_malformed_resume_request_ends_the_send() {
    for resume in [
        serde_json::json!({"offset": -1, "sha256": hex::encode([0u8; 32])}),
        serde_json::json!({"offset": 1, "sha256": "00"}),
        serde_json::json!({"offset": 1, "sha256": "zz".repeat(32)}),
        serde_json::json!({"offset": 1}),
        serde_json::json!("5"),
    ] {
        let mut m = sender_awaiting_file_ack();
        let out = peer(
            &mut m,
            serde_json::json!({"answer": {"file_ack": "ok", "resume": resume}}),
        );
        assert_eq!(directives(&out), vec![Directive::Stop], "{resume}");
        let out = feed(&mut m, Input::Io(1, IoReport::Stopped));
        assert!(
            matches!(
                &events(&out)[..],
                [TransferEvent::FileSent(Err(Error::Transfer(_)))]
            ),
            "{resume}"
        );
    }
}

/// The receiver asks its I/O task to look for partial data only when the peer advertised
/// resume, and sends the point it reports with the `file_ack`.
#[test]
fn receiver_resumes_only_with_a_peer_that_can() {
    for peer_can in [false, true] {
        let mut m = Machine::new();
        let mut versions = serde_json::json!({"other": 1});
        if peer_can {
            advertise_resume(&mut versions);
        }
        feed(&mut m, Input::PeerVersions(versions));
        feed(
            &mut m,
            Input::Start(Kind::ReceiveFile, None, PROGRESS_INTERVAL),
        );
        peer(&mut m, serde_json::json!({"transit": {"hints-v1": []}}));
        peer(
            &mut m,
            serde_json::json!({"offer": {"file": {"filename": "f", "filesize": 9}}}),
        );
        let out = feed(
            &mut m,
            Input::Accept {
                dest: "f".into(),
                overwrite: false,
            },
        );
        assert!(
            matches!(&directives(&out)[..], [Directive::Accept { resume, .. }] if *resume == peer_can)
        );
        let point = ResumePoint {
            offset: 4,
            sha256: [1; 32],
        };
        let reply = peer_can.then(|| point.clone());
        let out = feed(&mut m, Input::Io(1, IoReport::ReadyForData(reply)));
        let ack = if peer_can {
            serde_json::json!({"answer": {"file_ack": "ok",
                "resume": {"offset": 4, "sha256": hex::encode([1u8; 32])}}})
        } else {
            serde_json::json!({"answer": {"file_ack": "ok"}})
        };
        assert_eq!(sent(&out), vec![ack]);
    }
}
