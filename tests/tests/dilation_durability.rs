//! Dilation survives what the network does: connections reset mid-stream (a proxy on the
//! relay path, and `ss -K` on the direct path), the relay killed and restarted, the relay
//! stalled (SIGSTOP) for longer than the keepalive. Every stream arrives whole: its length
//! and SHA-256 are compared end to end. Between two of our peers every case completes;
//! with the reference 0.24, the resets (which it survives too).
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wormhole_core::dilation::handle::{Dilated, DilationOptions};
use wormhole_core::dilation::manager::Event as DEvent;
use wormhole_tests::dilation::{
    CutProxy, RefPeer, connected, ours_with, pair, read_stream, read_stream_at, side,
    write_stream_at,
};
use wormhole_tests::{OurServer, RefRelay, TIMEOUT, assert_loopback_only, test_appid, within};

/// Bytes per stream, and the pace of its writer (or, from the reference, its reader):
/// about 3 s, so every fault comes while the stream is under way (checked).
const STREAM: usize = 48 << 20;
const RATE: Option<f64> = Some(16e6);

/// Wait for the next `Connected` event; returns how long it took.
async fn reconnected(d: &Dilated, who: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    within(limit, &format!("{who} reconnected"), async {
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

/// Whether a stream is still under way (set by [`stream_through`]); a fault must come
/// while it is.
#[derive(Clone, Default)]
struct Running(Arc<AtomicBool>);

impl Running {
    #[track_caller]
    fn check(&self) {
        assert!(
            !self.0.load(Ordering::SeqCst),
            "the stream ended before the fault: make it longer"
        );
    }
}

/// A streams to B (`sink`) while `fault` runs; the stream must arrive whole.
async fn stream_through<F, Fut>(da: &Dilated, db: &Dilated, fault: F)
where
    F: FnOnce(Running) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut sinks = db.listen("sink").await.unwrap();
    let mut tx = da.connect("sink").await.unwrap();
    let writer = tokio::spawn(async move { write_stream_at(&mut tx, STREAM, RATE).await });
    let mut rx = within(TIMEOUT, "the sink subchannel", sinks.accept())
        .await
        .unwrap();
    let running = Running::default();
    let reader = tokio::spawn({
        let done = running.0.clone();
        async move {
            let r = read_stream(&mut rx).await;
            done.store(true, Ordering::SeqCst);
            r
        }
    });
    fault(running).await;
    let sent = within(TIMEOUT * 3, "the writer", writer).await.unwrap();
    let (n, got) = within(TIMEOUT * 3, "the reader", reader).await.unwrap();
    assert_eq!(n, STREAM, "bytes received");
    assert_eq!(got, sent, "the stream's SHA-256");
}

fn relay_only(relay: String) -> DilationOptions {
    DilationOptions {
        relay: Some(relay),
        no_listen: true,
        ..Default::default()
    }
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
    stream_through(&da, &db, {
        let (da, proxy) = (&da, &proxy);
        move |running: Running| async move {
            for i in 0..4 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                running.check();
                proxy.cut();
                let took = reconnected(da, "A", TIMEOUT).await;
                eprintln!("reset {i}: reconnected in {took:?}");
            }
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
    let mailbox_port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1")
        .to_owned();
    stream_through(&da, &db, {
        let (da, mailbox_port) = (&da, &mailbox_port);
        move |running: Running| async move {
            for i in 0..2 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                running.check();
                // Every established TCP connection but the mailbox's.
                let filter = format!("( sport != :{mailbox_port} and dport != :{mailbox_port} )");
                let out = tokio::process::Command::new("ss")
                    .args(["-K", "-t", "state", "established", &filter])
                    .output()
                    .await
                    .expect("ss");
                assert!(out.status.success(), "ss -K: {out:?}");
                let took = reconnected(da, "A", TIMEOUT).await;
                eprintln!("kill {i}: reconnected in {took:?}");
            }
        }
    })
    .await;
    let _ = tokio::join!(a.close(), b.close());
}

/// The relay (the reference's, a process of its own) is killed mid-stream and comes back
/// 3 s later on the same port: the generation that found it gone is given up after its
/// timeout and a new one reaches the restarted relay. (The reference hangs here for
/// good: DILATION.md.)
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
    stream_through(&da, &db, {
        let (da, relay) = (&da, &mut relay);
        move |running: Running| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            running.check();
            drop(relay.take()); // SIGKILL
            tokio::time::sleep(Duration::from_secs(3)).await;
            *relay = Some(RefRelay::start_on(Some(port)).await);
            let took = reconnected(da, "A", TIMEOUT).await;
            eprintln!("relay restarted: reconnected {took:?} after the restart");
        }
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
        stream_through(&da, &db, {
            let (da, relay) = (&da, &relay);
            move |running: Running| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                running.check();
                relay.signal("STOP").await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                relay.signal("CONT").await;
                let took = reconnected(da, "A", TIMEOUT).await;
                eprintln!("relay resumed (A leads: {we_lead}): reconnected {took:?} after");
            }
        })
        .await;
        let _ = tokio::join!(a.close(), b.close());
    }
}

/// With the reference 0.24 on the other side, relay only, through the cutting proxy:
/// our stream into its sink, and its stream into ours, each reset three times.
#[tokio::test]
async fn connections_reset_with_the_reference() {
    for (we_send, we_lead) in [(true, true), (false, false)] {
        assert_loopback_only();
        let server = OurServer::start().await;
        let proxy = CutProxy::start(server.relay_hint().trim_start_matches("tcp:")).await;
        let appid = test_appid("dil-ref-reset");
        let hint = proxy.hint();
        let n = STREAM.to_string();
        let mut args = vec!["--allocate", "--relay", &hint, "--no-listen"];
        if we_send {
            args.push("serve");
        } else {
            args.extend(["send", &n]);
        }
        let mut peer = RefPeer::spawn(&server.url(), &appid, &args);
        let code = peer.expect("code").await["code"]
            .as_str()
            .unwrap()
            .to_owned();
        let o = DilationOptions {
            side: side(we_lead),
            ..relay_only(hint.clone())
        };
        let (w, d) = ours_with(&server.url(), &appid, &code, o).await;
        assert!(connected(&d, "ours").await);
        let done = Running::default();
        let cuts = async {
            for i in 0..3 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                done.check();
                proxy.cut();
                let took = reconnected(&d, "ours", TIMEOUT).await;
                eprintln!("reset {i} (we send: {we_send}): reconnected in {took:?}");
            }
        };
        if we_send {
            peer.expect("dilated").await;
            let mut sink = d.connect("sink").await.unwrap();
            let write = async {
                let d = write_stream_at(&mut sink, STREAM, RATE).await;
                done.0.store(true, Ordering::SeqCst);
                d
            };
            let (digest, ()) = tokio::join!(write, cuts);
            let report = peer.expect("sink").await;
            assert_eq!(report["bytes"].as_u64(), Some(STREAM as u64));
            assert_eq!(report["sha256"].as_str(), Some(digest.as_str()));
        } else {
            let mut sinks = d.listen("sink").await.unwrap();
            let mut s = within(TIMEOUT, "the sink subchannel", sinks.accept())
                .await
                .unwrap();
            let read = async {
                let r = read_stream_at(&mut s, RATE).await;
                done.0.store(true, Ordering::SeqCst);
                r
            };
            let ((n, digest), ()) = tokio::join!(read, cuts);
            let report = peer.expect("sent").await;
            assert_eq!(n, STREAM);
            assert_eq!(report["sha256"].as_str(), Some(digest.as_str()));
        }
        peer.finish().await;
        let _ = w.close().await;
    }
}
