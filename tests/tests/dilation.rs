//! Dilation (PROTOCOL §9) between two of our wormholes through our server: direct, relay
//! only, records of every size whole and in order, many subchannels from both sides, an
//! OPEN held until the peer listens.
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wormhole_core::dilation::handle::{
    Dilated, DilationEvent, DilationOptions, Readiness, TryRecv,
};
use wormhole_core::{Options, Wormhole};
use wormhole_tests::dilation::{
    RefPeer, accept_sink, connected, opts, ours_with, pair, read_stream, side, write_stream,
};
use wormhole_tests::{OurServer, TIMEOUT, assert_loopback_only, test_appid, within};

/// Records of many sizes (empty, around the Noise message limit, 1 MiB) go both ways,
/// whole and in order.
async fn echo_sizes(da: &Dilated, db: &Dilated) {
    let mut listener = db.listen("echo").unwrap();
    let mut ours = da.connect("echo").await.unwrap();
    let mut theirs = within(TIMEOUT, "the accepted subchannel", listener.accept())
        .await
        .expect("a subchannel");
    assert_eq!(theirs.name(), "echo");
    assert_eq!(theirs.id(), ours.id());
    let sizes = [
        0usize,
        1,
        5,
        65_509,
        65_510,
        65_519,
        65_520,
        200_000,
        1 << 20,
        0,
    ];
    let echo = tokio::spawn(async move {
        while let Some(r) = theirs.recv().await.unwrap() {
            theirs.send(r).await.unwrap();
        }
        theirs
    });
    for (i, n) in sizes.iter().enumerate() {
        let m: Vec<u8> = (0..*n).map(|j| (i * 31 + j) as u8).collect();
        ours.send(m.clone()).await.unwrap();
        let back = within(TIMEOUT, "an echo", ours.recv()).await.unwrap();
        assert_eq!(back.as_deref(), Some(&m[..]), "record {i} of {n} bytes");
    }
    ours.close().unwrap();
    assert_eq!(
        within(TIMEOUT, "the peer's close", ours.recv())
            .await
            .unwrap(),
        None
    );
    within(TIMEOUT, "the echo task", echo).await.unwrap();
}

async fn close_both(a: Wormhole, b: Wormhole) {
    let (ra, rb) = tokio::join!(a.close(), b.close());
    assert_eq!(ra, Ok(()));
    assert_eq!(rb, Ok(()));
}

#[tokio::test]
async fn direct_between_our_peers() {
    let server = OurServer::start().await;
    let (a, b, da, db) = pair(
        &server,
        "dilation-direct",
        DilationOptions::default(),
        DilationOptions::default(),
    )
    .await;
    assert!(
        !connected(&da, "A").await,
        "a direct connection was expected"
    );
    assert!(!connected(&db, "B").await);
    echo_sizes(&da, &db).await;
    close_both(a, b).await;
}

#[tokio::test]
async fn relay_only_between_our_peers() {
    let server = OurServer::start().await;
    let relay = DilationOptions {
        relay: Some(server.relay_hint()),
        no_listen: true,
        ..Default::default()
    };
    let (a, b, da, db) = pair(&server, "dilation-relay", relay.clone(), relay).await;
    assert!(connected(&da, "A").await, "the relay was expected");
    assert!(connected(&db, "B").await);
    echo_sizes(&db, &da).await;
    close_both(a, b).await;
}

/// 64 subchannels opened from each side at once, each carrying its own stream; plus an
/// OPEN (with data) sent before the peer listens, delivered once it does.
#[tokio::test]
async fn many_subchannels_from_both_sides_and_an_early_open() {
    let server = OurServer::start().await;
    let (a, b, da, db) = pair(
        &server,
        "dilation-many",
        DilationOptions::default(),
        DilationOptions::default(),
    )
    .await;
    // Opened before anyone listens for "late".
    let mut early = da.connect("late").await.unwrap();
    early
        .send(b"sent before the listener".to_vec())
        .await
        .unwrap();
    connected(&da, "A").await;
    connected(&db, "B").await;

    let mut la = da.listen("many").unwrap();
    let mut lb = db.listen("many").unwrap();
    let mut tasks = Vec::new();
    for (from, to) in [(&da, "A"), (&db, "B")] {
        for i in 0..64u32 {
            let mut s = from.connect("many").await.unwrap();
            tasks.push(tokio::spawn(async move {
                // A stream of 64 KiB through AsyncWrite, then the close.
                let data: Vec<u8> = (0..65_536u32).map(|j| (j * 7 + i) as u8).collect();
                s.write_all(&data).await.unwrap();
                s.shutdown().await.unwrap();
                (to, i, data)
            }));
        }
    }
    let mut got = Vec::new();
    for l in [&mut la, &mut lb] {
        for _ in 0..64 {
            let mut s = within(TIMEOUT, "an accepted subchannel", l.accept())
                .await
                .unwrap();
            got.push(tokio::spawn(async move {
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.unwrap();
                buf
            }));
        }
    }
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for t in tasks {
        sent.push(within(TIMEOUT, "a writer", t).await.unwrap().2);
    }
    let mut received: Vec<Vec<u8>> = Vec::new();
    for t in got {
        received.push(within(TIMEOUT, "a reader", t).await.unwrap());
    }
    sent.sort();
    received.sort();
    assert_eq!(received.len(), 128);
    assert!(sent == received, "the 128 streams differ");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ll = db.listen("late").unwrap();
    let mut s = within(TIMEOUT, "the held subchannel", ll.accept())
        .await
        .unwrap();
    assert_eq!(
        within(TIMEOUT, "the held record", s.recv()).await.unwrap(),
        Some(b"sent before the listener".to_vec())
    );
    close_both(a, b).await;
}

#[tokio::test]
async fn dilate_needs_the_option_and_runs_once() {
    let server = OurServer::start().await;
    let w = Wormhole::create(
        &test_appid("dilation-once"),
        &server.url(),
        Options::default(),
    )
    .unwrap();
    assert!(w.dilate(DilationOptions::default()).is_err());
    let w2 = Wormhole::create(&test_appid("dilation-once"), &server.url(), opts()).unwrap();
    let bad = DilationOptions {
        relay: Some("nonsense".into()),
        ..Default::default()
    };
    assert!(w2.dilate(bad).is_err());
    let _d = w2.dilate(DilationOptions::default()).unwrap();
    assert!(w2.dilate(DilationOptions::default()).is_err());
}

// ---- against the reference 0.24 ---------------------------------------------------------

/// The reference serves echo and sink; we open: records of many sizes, 64 subchannels at
/// once, and a stream hashed on both sides.
async fn we_open_to_the_reference(leader: bool, relay_only: bool) {
    assert_loopback_only();
    let server = OurServer::start().await;
    let appid = test_appid("dilation-ref-serve");
    let mut ref_args = vec!["--allocate"];
    let relay = server.relay_hint();
    if relay_only {
        ref_args.extend(["--relay", &relay, "--no-listen"]);
    }
    ref_args.push("serve");
    let mut peer = RefPeer::spawn(&server.url(), &appid, &ref_args);
    let code = peer.code().await;
    let o = DilationOptions {
        side: side(leader),
        relay: relay_only.then(|| relay.clone()),
        no_listen: relay_only,
        ..Default::default()
    };
    let (w, d) = ours_with(&server.url(), &appid, &code, o).await;
    assert_eq!(connected(&d, "ours").await, relay_only, "the path");
    peer.expect("dilated").await;

    // Echo: sizes around every limit, whole and in order.
    let mut s = d.connect("echo").await.unwrap();
    assert_eq!(s.id() % 2, if leader { 1 } else { 0 }, "our subchannel ids");
    for (i, n) in [0usize, 1, 65_510, 65_519, 65_520, 1 << 20, 0]
        .iter()
        .enumerate()
    {
        let m: Vec<u8> = (0..*n).map(|j| (i + j * 3) as u8).collect();
        s.send(m.clone()).await.unwrap();
        let back = within(TIMEOUT, "an echo", s.recv()).await.unwrap();
        assert_eq!(back.as_deref(), Some(&m[..]), "record {i} ({n} bytes)");
    }
    s.close().unwrap();
    // 64 at once.
    let mut subs = Vec::new();
    for i in 0..64u32 {
        let mut s = d.connect("echo").await.unwrap();
        s.send(format!("subchannel {i}").into_bytes())
            .await
            .unwrap();
        subs.push((i, s));
    }
    for (i, s) in &mut subs {
        let back = within(TIMEOUT, "an echo", s.recv()).await.unwrap();
        assert_eq!(back, Some(format!("subchannel {i}").into_bytes()));
        s.close().unwrap();
    }
    // A stream into the reference's sink, hashed on both sides.
    let mut sink = d.connect("sink").await.unwrap();
    let digest = write_stream(&mut sink, STREAM_BYTES).await;
    peer.expect_sink(STREAM_BYTES, &digest).await;
    peer.finish().await;
    let _ = w.close().await;
}

/// Bytes streamed one way in the interop tests (1 GiB runs in the benchmark).
const STREAM_BYTES: usize = 64 << 20;

#[tokio::test]
async fn reference_serves_we_lead_direct() {
    we_open_to_the_reference(true, false).await;
}

#[tokio::test]
async fn reference_serves_we_follow_direct() {
    we_open_to_the_reference(false, false).await;
}

#[tokio::test]
async fn reference_serves_we_lead_relay_only() {
    we_open_to_the_reference(true, true).await;
}

#[tokio::test]
async fn reference_serves_we_follow_relay_only() {
    we_open_to_the_reference(false, true).await;
}

/// The reference opens: an early OPEN we listen to late, records of many sizes echoed
/// by us, 64 subchannels at once; then it streams into our sink, hashed on both sides.
async fn the_reference_opens_to_us(leader: bool, race: bool) {
    assert_loopback_only();
    let server = OurServer::start().await;
    let appid = test_appid("dilation-ref-client");
    let relay = server.relay_hint();
    let mut ref_args = vec!["--allocate"];
    if race {
        ref_args.extend(["--relay", &relay]);
    }
    ref_args.push("client");
    let mut peer = RefPeer::spawn(&server.url(), &appid, &ref_args);
    let code = peer.code().await;
    let o = DilationOptions {
        side: side(leader),
        relay: race.then(|| relay.clone()),
        ..Default::default()
    };
    let (w, d) = ours_with(&server.url(), &appid, &code, o).await;
    let mut echo = d.listen("echo").unwrap();
    let echoes = tokio::spawn(async move {
        let mut tasks = Vec::new();
        while let Some(mut s) = echo.accept().await {
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(r)) = s.recv().await {
                    if s.send(r).await.is_err() {
                        break;
                    }
                }
            }));
        }
    });
    connected(&d, "ours").await;
    peer.expect("ok").await;
    // The "late" OPEN came before anyone listened: it was held.
    let mut late = d.listen("late").unwrap();
    let mut s = within(TIMEOUT, "the held subchannel", late.accept())
        .await
        .unwrap();
    assert_eq!(s.id() % 2, if leader { 0 } else { 1 }, "the peer's ids");
    assert_eq!(
        within(TIMEOUT, "the held record", s.recv()).await.unwrap(),
        Some(b"sent before the listener".to_vec())
    );
    peer.finish().await;
    let _ = w.close().await;
    echoes.abort();
}

#[tokio::test]
async fn reference_opens_we_lead_direct() {
    the_reference_opens_to_us(true, false).await;
}

#[tokio::test]
async fn reference_opens_we_follow_racing_relay() {
    the_reference_opens_to_us(false, true).await;
}

/// The reference (`ref_dilate.py send`) streams `n` bytes into our sink, within `limit`:
/// the bytes and their SHA-256 arrive intact.
async fn the_reference_streams_to_us(server: &OurServer, name: &str, n: usize, limit: Duration) {
    assert_loopback_only();
    let appid = test_appid(name);
    let count = n.to_string();
    let mut peer = RefPeer::spawn(&server.url(), &appid, &["--allocate", "send", &count]);
    let code = peer.code().await;
    let (w, d) = ours_with(&server.url(), &appid, &code, DilationOptions::default()).await;
    let mut s = accept_sink(&d).await;
    let got = within(limit, "the reference's stream", read_stream(&mut s)).await;
    peer.expect_sent(got, n).await;
    peer.finish().await;
    let _ = w.close().await;
}

#[tokio::test]
async fn reference_streams_to_us() {
    let server = OurServer::start().await;
    the_reference_streams_to_us(&server, "dilation-ref-send", STREAM_BYTES, TIMEOUT).await;
}

/// Backpressure end to end: while B does not read, A's writes stop once the windows are
/// full (B stops acknowledging past its read window, though it reads on; A's unacknowledged bytes
/// reach the write window), so nothing grows without bound; once B reads, every record
/// arrives, in order; and the pause (six keepalive intervals) replaced no connection.
#[tokio::test]
async fn a_reader_that_does_not_read_stops_the_writer() {
    use wormhole_core::dilation::handle::{READ_WINDOW, WRITE_WINDOW};
    let server = OurServer::start().await;
    // A keepalive far shorter than the pause: a reader that pauses must not look dead.
    let quick = DilationOptions {
        ping_interval: Duration::from_millis(500),
        ..DilationOptions::default()
    };
    let (a, b, da, db) = pair(&server, "dilation-backpressure", quick.clone(), quick).await;
    let mut l = db.listen("slow").unwrap();
    let mut tx = da.connect("slow").await.unwrap();
    let record = 1usize << 20;
    let total = 64usize;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = tokio::spawn({
        let sent = sent.clone();
        async move {
            for i in 0..total {
                tx.send(vec![i as u8; record]).await.unwrap();
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            tx
        }
    });
    let mut rx = within(TIMEOUT, "the subchannel", l.accept()).await.unwrap();
    // Give the writer time to run into the windows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early = sent.load(std::sync::atomic::Ordering::SeqCst);
    // Both windows, plus what the sockets and channels hold (a few MiB on loopback).
    let limit = (READ_WINDOW + WRITE_WINDOW) / record + 16;
    assert!(limit < total);
    assert!(
        early <= limit,
        "{early} records of 1 MiB went out while nobody read (limit {limit})"
    );
    eprintln!("the writer stopped after {early} MiB");
    for i in 0..total {
        let r = within(TIMEOUT, "a record", rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.len(), record);
        assert!(r.iter().all(|&b| b == i as u8), "record {i} out of order");
    }
    let _tx = within(TIMEOUT, "the writer", writer).await.unwrap();
    assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), total);
    // The connection was never taken for dead: no reconnection on either side (the
    // connections are read while the reader pauses, so keepalives are answered).
    for (d, who) in [(&da, "A"), (&db, "B")] {
        while let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_millis(100), d.next_event()).await
        {
            assert!(
                !matches!(ev, DilationEvent::Reconnecting { .. }),
                "{who} reconnected while the reader paused: {ev:?}"
            );
        }
    }
    let _ = tokio::join!(a.close(), b.close());
}

/// One GiB each way between ours and the reference over one subchannel, SHA-256 checked.
#[tokio::test]
async fn a_gibibyte_each_way_with_the_reference() {
    const GIB: usize = 1 << 30;
    assert_loopback_only();
    let server = OurServer::start().await;
    // Ours into the reference's sink.
    let appid = test_appid("dilation-gib-to-ref");
    let mut peer = RefPeer::spawn(&server.url(), &appid, &["--allocate", "serve"]);
    let code = peer.code().await;
    let (w, d) = ours_with(&server.url(), &appid, &code, DilationOptions::default()).await;
    peer.expect("dilated").await;
    let mut sink = d.connect("sink").await.unwrap();
    let digest = within(
        TIMEOUT * 3,
        "1 GiB to the reference",
        write_stream(&mut sink, GIB),
    )
    .await;
    peer.expect_sink(GIB, &digest).await;
    peer.finish().await;
    let _ = w.close().await;
    // The reference into ours.
    the_reference_streams_to_us(&server, "dilation-gib-from-ref", GIB, TIMEOUT * 3).await;
}

/// A delegated-mode wormhole A (with its event stream) and a deferred one B joined by
/// one code, both dilated with the defaults.
async fn delegated_pair(
    server: &OurServer,
    name: &str,
) -> (Wormhole, wormhole_core::Events, Wormhole, Dilated, Dilated) {
    assert_loopback_only();
    let appid = test_appid(name);
    let (a, mut events) = Wormhole::create_delegated(&appid, &server.url(), opts()).unwrap();
    a.allocate_code(2).unwrap();
    let code = within(TIMEOUT, "the code", async {
        loop {
            if let Some(wormhole_core::Event::Code(c)) = events.recv().await {
                return c;
            }
        }
    })
    .await;
    let b = Wormhole::create(&appid, &server.url(), opts()).unwrap();
    b.set_code(&code).unwrap();
    let da = a.dilate(DilationOptions::default()).unwrap();
    let db = b.dilate(DilationOptions::default()).unwrap();
    (a, events, b, da, db)
}

/// A delegated-mode wormhole dilates like a deferred one.
#[tokio::test]
async fn a_delegated_wormhole_dilates() {
    let server = OurServer::start().await;
    let (a, mut events, b, da, db) = delegated_pair(&server, "dilation-delegated").await;
    let mut l = db.listen("x").unwrap();
    let mut s = da.connect("x").await.unwrap();
    s.send(b"from a delegated wormhole".to_vec()).await.unwrap();
    let mut t = within(TIMEOUT, "the subchannel", l.accept()).await.unwrap();
    assert_eq!(
        within(TIMEOUT, "the record", t.recv()).await.unwrap(),
        Some(b"from a delegated wormhole".to_vec())
    );
    // Dilation's status events come on the delegated stream, in order with the
    // wormhole's own, and not through `next_event`.
    let mut seen = Vec::new();
    within(TIMEOUT, "Dilation events on the delegated stream", async {
        loop {
            match events.recv().await {
                Some(wormhole_core::Event::Dilation(ev)) => {
                    let connected = matches!(ev, DilationEvent::Connected { .. });
                    seen.push(ev);
                    if connected {
                        return;
                    }
                }
                Some(_) => {}
                None => panic!("the stream ended; Dilation events seen: {seen:?}"),
            }
        }
    })
    .await;
    assert!(
        matches!(seen[0], DilationEvent::Generation { generation: 1, .. }),
        "{seen:?}"
    );
    assert_eq!(da.next_event().await, None);
    assert!(matches!(
        db.next_event().await,
        Some(DilationEvent::Generation { generation: 1, .. })
    ));
    let _ = tokio::join!(a.close(), b.close());
    within(TIMEOUT, "Closed, last", async {
        loop {
            match events.recv().await {
                Some(wormhole_core::Event::Closed(_)) => break,
                Some(_) => {}
                None => panic!("no Closed event"),
            }
        }
    })
    .await;
    assert_eq!(events.recv().await, None);
}

/// Wait on a delegated stream for a poll-mode wake-up `want`.
async fn wait_ready(events: &mut wormhole_core::Events, want: Readiness) {
    within(TIMEOUT, "a poll-mode wake-up", async {
        loop {
            match events.recv().await {
                Some(wormhole_core::Event::DilationReady(r)) if r == want => return,
                Some(_) => {}
                None => panic!("the stream ended before {want:?}"),
            }
        }
    })
    .await
}

/// Poll mode on a delegated wormhole (what the C, Kotlin and Python adapters build on):
/// `try_accept`, `try_recv` and `try_send` never wait, and each one that could not go on
/// is followed by its wake-up on the event stream.
#[tokio::test]
async fn poll_mode_wakes_up_on_the_delegated_stream() {
    let server = OurServer::start().await;
    let (a, mut events, b, da, db) = delegated_pair(&server, "dilation-poll-mode").await;
    let mut la = da.listen("poll").unwrap();
    assert!(da.listen("poll").is_err(), "a name is listened to once");
    assert!(la.try_accept().unwrap().is_none());
    let mut sb = db.connect("poll").await.unwrap();
    sb.send(b"one".to_vec()).await.unwrap();

    let acceptable = Readiness::Acceptable {
        name: "poll".into(),
    };
    let mut sa = loop {
        if let Some(s) = la.try_accept().unwrap() {
            break s;
        }
        wait_ready(&mut events, acceptable.clone()).await;
    };
    let id = sa.id();
    let first = loop {
        match sa.try_recv().unwrap() {
            TryRecv::Record(r) => break r,
            TryRecv::Empty => wait_ready(&mut events, Readiness::Readable { id }).await,
            TryRecv::Closed => panic!("closed before the record"),
        }
    };
    assert_eq!(first, b"one");
    assert_eq!(sa.try_recv().unwrap(), TryRecv::Empty);

    // Fill the write window while the peer does not read: try_send says no, sends
    // nothing, and the wake-up comes once the peer has read and acknowledged.
    let record = vec![0x5a; 1 << 20];
    let mut sent = 0usize;
    while sa.try_send(&record).unwrap() {
        sent += 1;
        assert!(sent <= 64, "the write window never filled");
    }
    assert!(sent >= 1);
    for _ in 0..sent {
        let r = within(TIMEOUT, "a record", sb.recv()).await.unwrap();
        assert_eq!(r.as_deref(), Some(&record[..]));
    }
    wait_ready(&mut events, Readiness::Writable { id }).await;
    assert!(sa.try_send(b"after the wake-up").unwrap());
    assert_eq!(
        within(TIMEOUT, "the last record", sb.recv()).await.unwrap(),
        Some(b"after the wake-up".to_vec())
    );

    // try_read: the records as a byte stream, in pieces of the caller's size.
    sb.send(b"ab".to_vec()).await.unwrap();
    sb.send(b"cd".to_vec()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 3];
    while got.len() < 4 {
        match sa.try_read(&mut buf).unwrap() {
            Some(0) => panic!("closed early"),
            Some(n) => got.extend_from_slice(&buf[..n]),
            None => wait_ready(&mut events, Readiness::Readable { id }).await,
        }
    }
    assert_eq!(got, b"abcd");

    // The peer's CLOSE wakes a reader too, and reads as Closed.
    sb.close().unwrap();
    loop {
        match sa.try_recv().unwrap() {
            TryRecv::Closed => break,
            TryRecv::Empty => wait_ready(&mut events, Readiness::Readable { id }).await,
            TryRecv::Record(r) => panic!("unexpected record of {} bytes", r.len()),
        }
    }
    // Closed both ways now (a close is answered): a write is refused, not dropped.
    assert!(sa.try_send(b"after the close").is_err());
    assert!(sa.sender().send(b"after the close".to_vec()).await.is_err());
    let _ = tokio::join!(a.close(), b.close());
}

/// `recv_batch` takes the records already delivered, in order and whole, up to its limit
/// (at least one record, whatever its size), then reports the peer's close after them.
#[tokio::test]
async fn records_are_taken_in_batches() {
    let server = OurServer::start().await;
    let (a, b, da, db) = pair(
        &server,
        "dilation-batches",
        DilationOptions::default(),
        DilationOptions::default(),
    )
    .await;
    let mut listener = db.listen("batch").unwrap();
    let mut ours = da.connect("batch").await.unwrap();
    let records: Vec<Vec<u8>> = (0..200usize)
        .map(|i| vec![i as u8; if i == 7 { 100_000 } else { i % 5 }])
        .collect();
    for r in &records {
        ours.send(r.clone()).await.unwrap();
    }
    ours.close().unwrap();
    // One connection carries every subchannel in order: once a record sent after them
    // on another subchannel arrived, all of them were delivered.
    let mut sync_listener = db.listen("sync").unwrap();
    let mut sync = da.connect("sync").await.unwrap();
    sync.send(b"after".to_vec()).await.unwrap();
    let mut theirs = within(TIMEOUT, "the subchannel", listener.accept())
        .await
        .unwrap();
    let mut sync_in = within(TIMEOUT, "the sync subchannel", sync_listener.accept())
        .await
        .unwrap();
    assert_eq!(
        within(TIMEOUT, "the sync record", sync_in.recv())
            .await
            .unwrap(),
        Some(b"after".to_vec())
    );
    let mut got = Vec::new();
    let mut batches = 0;
    loop {
        match within(TIMEOUT, "a batch", theirs.recv_batch(64))
            .await
            .unwrap()
        {
            None => break,
            Some(batch) => {
                assert!(!batch.is_empty());
                let size: usize = batch.iter().map(Vec::len).sum();
                let last = batch.last().map_or(0, Vec::len);
                assert!(
                    batch.len() == 1 || size - last < 64,
                    "a batch went on past its limit: {size} bytes in {} records",
                    batch.len()
                );
                batches += 1;
                got.extend(batch);
            }
        }
    }
    assert_eq!(got, records);
    // 64-byte batches of these records: the 100,000-byte one alone, the others in groups.
    assert!(
        batches < records.len() / 4,
        "{batches} batches for {} records",
        records.len()
    );
    // The end stays reported.
    assert_eq!(theirs.recv_batch(64).await.unwrap(), None);
    close_both(a, b).await;
}
