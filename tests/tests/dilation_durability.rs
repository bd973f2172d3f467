//! Dilation survives what the network does: connections reset mid-stream (a proxy on the
//! relay path, and `ss -K` on the direct path), the relay killed and restarted, the relay
//! stalled (SIGSTOP) for longer than the keepalive. Every stream arrives whole: its length
//! and SHA-256 are compared end to end. Streams are slowed down until the faults are over,
//! so every fault comes mid-stream however slow the machine; then they finish at full
//! speed. Between two of our peers every case completes; with the reference 0.24 every case
//! but the two where the reference hangs by itself (it leads and never retries a refused
//! relay; it leads, sends, and closes a dead connection gracefully: DILATION.md).
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::time::{Duration, Instant};

use wormhole_core::dilation::handle::{Dilated, DilationOptions};
use wormhole_core::dilation::manager::Event as DEvent;
use wormhole_tests::dilation::{
    CutProxy, Pace, RefPeer, accept_sink, connected, ours_with, pair, read_paced, side, write_paced,
};
use wormhole_tests::{OurServer, RefRelay, TIMEOUT, assert_loopback_only, test_appid, within};

/// The pace of a stream while faults come (bytes per second).
const RATE: f64 = 16e6;
/// What the reference sends when it is the sender (our reader sets the pace).
const REF_STREAM: usize = 256 << 20;

/// Wait for the next `Connected` event; returns how long it took.
async fn reconnected(d: &Dilated, who: &str) -> Duration {
    let t = Instant::now();
    within(TIMEOUT, &format!("{who} reconnected"), async {
        loop {
            match d.next_event().await {
                Some(DEvent::Connected { .. }) => return t.elapsed(),
                Some(DEvent::Failed(e)) => panic!("{who}: dilation failed: {e}"),
                Some(_) => {}
                None => panic!("{who}: dilation ended"),
            }
        }
    })
    .await
}

/// A streams to B (`sink`) while `fault` runs, slowed down until it returns; the stream
/// must arrive whole.
async fn stream_through<F, Fut>(da: &Dilated, db: &Dilated, fault: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut sinks = db.listen("sink").unwrap();
    let mut tx = da.connect("sink").await.unwrap();
    let pace = Pace::new(RATE);
    let writer = tokio::spawn({
        let pace = pace.clone();
        async move { write_paced(&mut tx, None, Some(&pace)).await }
    });
    let mut rx = within(TIMEOUT, "the sink subchannel", sinks.accept())
        .await
        .unwrap();
    let reader = tokio::spawn(async move { read_paced(&mut rx, None).await });
    fault().await;
    assert!(!reader.is_finished(), "the stream ended before the faults");
    pace.release();
    let sent = within(TIMEOUT * 3, "the writer", writer).await.unwrap();
    let got = within(TIMEOUT * 3, "the reader", reader).await.unwrap();
    assert_eq!(got, sent, "bytes and SHA-256 received");
}

fn relay_only(relay: String) -> DilationOptions {
    DilationOptions {
        relay: Some(relay),
        no_listen: true,
        ..Default::default()
    }
}

/// `ss -K` on every established TCP connection but the mailbox's.
async fn kill_direct_paths(server: &OurServer) {
    let url = server.url();
    let port = url
        .trim_end_matches("/v1")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let filter = format!("( sport != :{port} and dport != :{port} )");
    let out = tokio::process::Command::new("ss")
        .args(["-K", "-t", "state", "established", &filter])
        .output()
        .await
        .expect("ss");
    assert!(out.status.success(), "ss -K: {out:?}");
}

#[tokio::test]
async fn connections_reset_on_the_relay_path_between_our_peers() {
    let server = OurServer::start().await;
    let proxy = CutProxy::start(server.relay_hint().trim_start_matches("tcp:")).await;
    let (a, b, da, db) = pair(
        &server,
        "dil-reset",
        relay_only(proxy.hint()),
        relay_only(proxy.hint()),
    )
    .await;
    assert!(connected(&da, "A").await);
    connected(&db, "B").await;
    stream_through(&da, &db, || async {
        for i in 0..4 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.cut();
            let took = reconnected(&da, "A").await;
            eprintln!("reset {i}: reconnected in {took:?}");
        }
    })
    .await;
    assert!(proxy.carried() >= 5, "{} connections", proxy.carried());
    let _ = tokio::join!(a.close(), b.close());
}

#[tokio::test]
async fn the_direct_path_killed_between_our_peers() {
    let server = OurServer::start().await;
    let (a, b, da, db) = pair(
        &server,
        "dil-direct-kill",
        DilationOptions::default(),
        DilationOptions::default(),
    )
    .await;
    assert!(!connected(&da, "A").await);
    connected(&db, "B").await;
    stream_through(&da, &db, || async {
        for i in 0..2 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            kill_direct_paths(&server).await;
            let took = reconnected(&da, "A").await;
            eprintln!("kill {i}: reconnected in {took:?}");
        }
    })
    .await;
    let _ = tokio::join!(a.close(), b.close());
}

/// The relay (the reference's, a process of its own) is killed mid-stream and comes back
/// 3 s later on the same port: the generation that found it gone is given up after its
/// timeout and a new one reaches the restarted relay.
#[tokio::test]
async fn the_relay_killed_and_restarted_between_our_peers() {
    let server = OurServer::start().await;
    let relay = RefRelay::start_on(None).await;
    let port: u16 = relay.hint().rsplit(':').next().unwrap().parse().unwrap();
    let o = DilationOptions {
        generation_timeout: Duration::from_secs(5),
        ..relay_only(relay.hint())
    };
    let (a, b, da, db) = pair(&server, "dil-relay-restart", o.clone(), o).await;
    connected(&da, "A").await;
    connected(&db, "B").await;
    let mut relay = Some(relay);
    stream_through(&da, &db, || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(relay.take()); // SIGKILL
        tokio::time::sleep(Duration::from_secs(3)).await;
        relay = Some(RefRelay::start_on(Some(port)).await);
        let took = reconnected(&da, "A").await;
        eprintln!("relay restarted: reconnected {took:?} after the restart");
    })
    .await;
    let _ = tokio::join!(a.close(), b.close());
}

/// The relay is stopped (SIGSTOP) for longer than the keepalive: the Leader's PING goes
/// unanswered, the connection is aborted (not closed gracefully), and once the relay
/// runs again a new generation carries the rest.
#[tokio::test]
async fn the_relay_stalled_longer_than_the_keepalive_between_our_peers() {
    for we_lead in [true, false] {
        let server = OurServer::start().await;
        let relay = RefRelay::start_on(None).await;
        let o = |leader: bool| DilationOptions {
            generation_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(1),
            side: side(leader),
            ..relay_only(relay.hint())
        };
        let (a, b, da, db) = pair(&server, "dil-relay-stall", o(we_lead), o(!we_lead)).await;
        connected(&da, "A").await;
        connected(&db, "B").await;
        stream_through(&da, &db, || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            relay.signal("STOP").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            relay.signal("CONT").await;
            let took = reconnected(&da, "A").await;
            eprintln!("relay resumed (A leads: {we_lead}): reconnected {took:?} after");
        })
        .await;
        let _ = tokio::join!(a.close(), b.close());
    }
}

// ---- with the reference 0.24 --------------------------------------------------------------

/// One durability case with the reference.
struct RefCase {
    we_send: bool,
    we_lead: bool,
    /// Relay only (both sides), through this relay hint; else direct.
    relay: Option<String>,
    /// Our keepalive (when we lead).
    ping: Option<Duration>,
}

/// Our peer and the reference stream one way while `fault` runs (our writer, or our
/// reader when the reference sends, slowed down until it returns); the stream must arrive
/// whole.
async fn stream_with_reference<F, Fut>(server: &OurServer, case: RefCase, fault: F)
where
    F: FnOnce(Dilated) -> Fut,
    Fut: std::future::Future<Output = Dilated>,
{
    assert_loopback_only();
    let appid = test_appid("dil-ref-fault");
    let n = REF_STREAM.to_string();
    let mut args: Vec<&str> = vec!["--allocate"];
    if let Some(r) = &case.relay {
        args.extend(["--relay", r, "--no-listen"]);
    }
    if case.we_send {
        args.push("serve");
    } else {
        args.extend(["send", &n]);
    }
    let mut peer = RefPeer::spawn(&server.url(), &appid, &args);
    let code = peer.code().await;
    let mut o = match &case.relay {
        Some(r) => relay_only(r.clone()),
        None => DilationOptions::default(),
    };
    o.side = side(case.we_lead);
    o.generation_timeout = Duration::from_secs(5);
    if let Some(p) = case.ping {
        o.ping_interval = p;
    }
    let (w, d) = ours_with(&server.url(), &appid, &code, o).await;
    connected(&d, "ours").await;
    let pace = Pace::new(RATE);
    if case.we_send {
        peer.expect("dilated").await;
        let mut sink = d.connect("sink").await.unwrap();
        let writer = tokio::spawn({
            let pace = pace.clone();
            async move { write_paced(&mut sink, None, Some(&pace)).await }
        });
        let _d = fault(d).await;
        assert!(!writer.is_finished(), "the stream ended before the faults");
        pace.release();
        let (n, digest) = within(TIMEOUT * 3, "the writer", writer).await.unwrap();
        peer.expect_sink(n, &digest).await;
    } else {
        let mut s = accept_sink(&d).await;
        let reader = tokio::spawn({
            let pace = pace.clone();
            async move { read_paced(&mut s, Some(&pace)).await }
        });
        let _d = fault(d).await;
        assert!(!reader.is_finished(), "the stream ended before the faults");
        pace.release();
        let got = within(TIMEOUT * 3, "the reader", reader).await.unwrap();
        peer.expect_sent(got, REF_STREAM).await;
    }
    peer.finish().await;
    let _ = w.close().await;
}

/// Relay only, through the cutting proxy: our stream into the reference's sink, and its
/// stream into ours, each reset three times, while we lead. (When the reference leads,
/// a round in which its relay attempts fail is never retried and Dilation hangs for good:
/// seen about once in ten runs under load, as DILATION.md describes for a restarted
/// relay; so that case is not a test.)
#[tokio::test]
async fn connections_reset_with_the_reference() {
    for (we_send, we_lead) in [(true, true), (false, true)] {
        let server = OurServer::start().await;
        let proxy = CutProxy::start(server.relay_hint().trim_start_matches("tcp:")).await;
        let case = RefCase {
            we_send,
            we_lead,
            relay: Some(proxy.hint()),
            ping: None,
        };
        let proxy = &proxy;
        stream_with_reference(&server, case, |d| async move {
            for i in 0..3 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                proxy.cut();
                let took = reconnected(&d, "ours").await;
                eprintln!("reset {i} (we send: {we_send}): reconnected in {took:?}");
            }
            d
        })
        .await;
    }
}

/// The direct path killed (`ss -K`) twice, each way, either side leading.
#[tokio::test]
async fn the_direct_path_killed_with_the_reference() {
    for (we_send, we_lead) in [(true, false), (false, true)] {
        let server = OurServer::start().await;
        let case = RefCase {
            we_send,
            we_lead,
            relay: None,
            ping: None,
        };
        let srv = &server;
        stream_with_reference(&server, case, |d| async move {
            for i in 0..2 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                kill_direct_paths(srv).await;
                let took = reconnected(&d, "ours").await;
                eprintln!("kill {i} (we send: {we_send}): reconnected in {took:?}");
            }
            d
        })
        .await;
    }
}

/// The relay killed and restarted 3 s later (`stall` false), or stopped (SIGSTOP) for 5 s,
/// past our 1 s keepalive (`stall`), while we lead, each way. Both complete: our
/// generation timeout, or our keepalive's abort, starts the round the reference would never
/// start by itself (when it leads it hangs for good in both cases, DILATION.md).
async fn relay_fault_with_the_reference(stall: bool) {
    for we_send in [true, false] {
        let server = OurServer::start().await;
        let relay = RefRelay::start_on(None).await;
        let port: u16 = relay.hint().rsplit(':').next().unwrap().parse().unwrap();
        let case = RefCase {
            we_send,
            we_lead: true,
            relay: Some(relay.hint()),
            ping: stall.then_some(Duration::from_secs(1)),
        };
        let mut relay = Some(relay);
        let slot = &mut relay;
        stream_with_reference(&server, case, |d| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if stall {
                let r = slot.as_ref().expect("the relay");
                r.signal("STOP").await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                r.signal("CONT").await;
            } else {
                drop(slot.take()); // SIGKILL
                tokio::time::sleep(Duration::from_secs(3)).await;
                *slot = Some(RefRelay::start_on(Some(port)).await);
            }
            let took = reconnected(&d, "ours").await;
            eprintln!(
                "relay back (stalled: {stall}, we send: {we_send}): reconnected {took:?} after"
            );
            d
        })
        .await;
    }
}

#[tokio::test]
async fn the_relay_restarted_with_the_reference_when_we_lead() {
    relay_fault_with_the_reference(false).await;
}

#[tokio::test]
async fn the_relay_stalled_with_the_reference_when_we_lead() {
    relay_fault_with_the_reference(true).await;
}
