//! The transit relay through its public API, on 127.0.0.1: pairing rules, the handshake
//! answers of PROTOCOL §7.7, every time limit, WebSocket clients, and byte-exact copying
//! of large transfers in both directions.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wormhole_server::{RelayConfig, RelayHandle, RelayServer};

const LIMIT: Duration = Duration::from_secs(20);

async fn start(config: RelayConfig) -> RelayHandle {
    RelayServer::bind("127.0.0.1:0", Some("127.0.0.1:0"), config)
        .await
        .expect("bind")
        .spawn()
}

fn token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn connect(relay: &RelayHandle) -> TcpStream {
    TcpStream::connect(relay.local_addr())
        .await
        .expect("connect")
}

/// Sends `line`, returns the stream.
async fn hello(relay: &RelayHandle, line: &str) -> TcpStream {
    let mut s = connect(relay).await;
    s.write_all(line.as_bytes()).await.expect("write");
    s
}

/// Reads until EOF (or LIMIT) and returns everything.
async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .expect("the relay should close the connection")
        .ok();
    out
}

async fn read_exact_line(s: &mut TcpStream, want: &str) {
    let mut buf = vec![0u8; want.len()];
    tokio::time::timeout(LIMIT, s.read_exact(&mut buf))
        .await
        .expect("timed out waiting for the relay")
        .expect("read");
    assert_eq!(String::from_utf8_lossy(&buf), want);
}

/// Asserts that nothing arrives for a short while (the connection is still waiting).
async fn assert_quiet(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await;
    assert!(r.is_err(), "expected silence, got {r:?}");
}

async fn pair(relay: &RelayHandle, t: &str) -> (TcpStream, TcpStream) {
    let mut a = hello(
        relay,
        &format!("please relay {t} for side aaaaaaaaaaaaaaaa\n"),
    )
    .await;
    // Make sure `a` waits before `b` arrives.
    assert_quiet(&mut a).await;
    let mut b = hello(
        relay,
        &format!("please relay {t} for side bbbbbbbbbbbbbbbb\n"),
    )
    .await;
    read_exact_line(&mut a, "ok\n").await;
    read_exact_line(&mut b, "ok\n").await;
    (a, b)
}

#[tokio::test]
async fn pairs_and_copies_both_ways() {
    let relay = start(RelayConfig::default()).await;
    let (mut a, mut b) = pair(&relay, &token(1)).await;
    a.write_all(b"hello from a").await.unwrap();
    let mut buf = [0u8; 12];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello from a");
    b.write_all(b"and from b").await.unwrap();
    let mut buf = [0u8; 10];
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"and from b");
    // No half-close: when one end closes, the other is closed too.
    drop(a);
    assert_eq!(read_to_end(&mut b).await, b"");
    assert_eq!(relay.stats().pairs.load(Ordering::Relaxed), 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn large_transfers_arrive_intact_in_both_directions_at_once() {
    let relay = start(RelayConfig::default()).await;
    let (a, b) = pair(&relay, &token(2)).await;
    const LEN: usize = 24 << 20;
    fn data(seed: u8) -> Vec<u8> {
        (0..LEN)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[i % 4] ^ seed)
            .collect()
    }
    async fn send_recv(mut s: TcpStream, seed_out: u8, seed_in: u8) {
        let out = data(seed_out);
        let (mut r, mut w) = s.split();
        let write = async {
            w.write_all(&out).await.unwrap();
        };
        let read = async {
            let mut got = vec![0u8; LEN];
            r.read_exact(&mut got).await.unwrap();
            got
        };
        let ((), got) = tokio::join!(write, read);
        assert_eq!(Sha256::digest(&got), Sha256::digest(data(seed_in)));
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(send_recv(a, 1, 2), send_recv(b, 2, 1))
    })
    .await
    .expect("transfer timed out");
    relay.shutdown().await;
}

#[tokio::test]
async fn legacy_handshakes_pair_with_anything() {
    let relay = start(RelayConfig::default()).await;
    let t = token(3);
    let mut a = hello(&relay, &format!("please relay {t}\n")).await;
    assert_quiet(&mut a).await;
    let mut b = hello(
        &relay,
        &format!("please relay {t} for side bbbbbbbbbbbbbbbb\n"),
    )
    .await;
    read_exact_line(&mut a, "ok\n").await;
    read_exact_line(&mut b, "ok\n").await;
    relay.shutdown().await;
}

#[tokio::test]
async fn same_side_does_not_pair_and_tokens_do_not_mix() {
    let relay = start(RelayConfig::default()).await;
    let t = token(4);
    let side = "for side aaaaaaaaaaaaaaaa\n";
    let mut a = hello(&relay, &format!("please relay {t} {side}")).await;
    let mut a2 = hello(&relay, &format!("please relay {t} {side}")).await;
    let mut other = hello(&relay, &format!("please relay {} {side}", token(5))).await;
    assert_quiet(&mut a).await;
    assert_quiet(&mut a2).await;
    assert_quiet(&mut other).await;
    assert_eq!(relay.stats().waiting.load(Ordering::Relaxed), 3);
    // A different side pairs with one of the two; the other is redundant and closed.
    let mut b = hello(
        &relay,
        &format!("please relay {t} for side bbbbbbbbbbbbbbbb\n"),
    )
    .await;
    read_exact_line(&mut b, "ok\n").await;
    let mut first = Vec::new();
    let mut second = Vec::new();
    let (ra, ra2) = tokio::join!(
        tokio::time::timeout(LIMIT, a.read_to_end(&mut first)),
        tokio::time::timeout(Duration::from_millis(500), a2.read_to_end(&mut second))
    );
    // Exactly one of a/a2 got "ok" and stays open; the other was closed with nothing.
    let outcomes = [(ra.is_err(), first), (ra2.is_err(), second)];
    let open: Vec<_> = outcomes.iter().filter(|(pending, _)| *pending).collect();
    let closed: Vec<_> = outcomes.iter().filter(|(pending, _)| !*pending).collect();
    assert_eq!(open.len(), 1, "one connection stays paired");
    assert_eq!(open[0].1, b"ok\n");
    assert_eq!(closed.len(), 1);
    assert_eq!(
        closed[0].1, b"",
        "the redundant connection is closed without a word"
    );
    assert_quiet(&mut other).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn bad_handshakes_are_refused() {
    let relay = start(RelayConfig::default()).await;
    for line in [
        "please relay tooshort\n".to_owned(),
        format!("please relay {} for side short\n", token(6)),
        format!("please relay {}x\n", token(6)),
        "GET / HTTP/1.1\r\n\r\n".to_owned(),
        "\n".to_owned(),
        format!("please relay {}\u{ff}\n", "é".repeat(31)),
    ] {
        let mut s = hello(&relay, &line).await;
        assert_eq!(read_to_end(&mut s).await, b"bad handshake\n", "{line:?}");
    }
    // 1024 bytes without a newline.
    let mut s = hello(&relay, &"x".repeat(2000)).await;
    assert_eq!(read_to_end(&mut s).await, b"bad handshake\n");
    // Binary garbage.
    let mut s = connect(&relay).await;
    s.write_all(&[0, 159, 255, 10]).await.unwrap();
    assert_eq!(read_to_end(&mut s).await, b"bad handshake\n");
    relay.shutdown().await;
}

#[tokio::test]
async fn data_before_ok_is_impatient() {
    let relay = start(RelayConfig::default()).await;
    let t = token(7);
    // Bytes after the handshake line in the same write.
    let mut s = hello(
        &relay,
        &format!("please relay {t} for side aaaaaaaaaaaaaaaa\nhurry"),
    )
    .await;
    assert_eq!(read_to_end(&mut s).await, b"impatient\n");
    // Bytes while waiting.
    let mut s = hello(
        &relay,
        &format!("please relay {t} for side aaaaaaaaaaaaaaaa\n"),
    )
    .await;
    assert_quiet(&mut s).await;
    s.write_all(b"hurry").await.unwrap();
    assert_eq!(read_to_end(&mut s).await, b"impatient\n");
    // It is forgotten: a newcomer waits rather than pairing with it.
    let mut b = hello(
        &relay,
        &format!("please relay {t} for side bbbbbbbbbbbbbbbb\n"),
    )
    .await;
    assert_quiet(&mut b).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn every_stage_times_out() {
    let relay = start(RelayConfig {
        handshake_timeout: Duration::from_millis(300),
        pairing_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    })
    .await;
    // Silent connection, and a partial handshake.
    let mut silent = connect(&relay).await;
    let mut partial = hello(&relay, "please relay ").await;
    assert_eq!(read_to_end(&mut silent).await, b"");
    assert_eq!(read_to_end(&mut partial).await, b"");
    // A partner that never comes.
    let mut lonely = hello(&relay, &format!("please relay {}\n", token(8))).await;
    assert_eq!(read_to_end(&mut lonely).await, b"");
    assert_eq!(relay.stats().waiting.load(Ordering::Relaxed), 0);
    // A pair that falls silent (e.g. one peer vanished without closing).
    let (mut a, mut b) = pair(&relay, &token(9)).await;
    assert_eq!(read_to_end(&mut a).await, b"");
    assert_eq!(read_to_end(&mut b).await, b"");
    // Everything has been cleaned up.
    tokio::time::timeout(LIMIT, async {
        while relay.stats().connections.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("connections left open");
    relay.shutdown().await;
}

#[tokio::test]
async fn a_closed_waiter_is_forgotten() {
    let relay = start(RelayConfig::default()).await;
    let t = token(10);
    let mut a = hello(
        &relay,
        &format!("please relay {t} for side aaaaaaaaaaaaaaaa\n"),
    )
    .await;
    assert_quiet(&mut a).await;
    drop(a);
    tokio::time::timeout(LIMIT, async {
        while relay.stats().waiting.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed waiter is still listed");
    let mut b = hello(
        &relay,
        &format!("please relay {t} for side bbbbbbbbbbbbbbbb\n"),
    )
    .await;
    assert_quiet(&mut b).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    let relay = start(RelayConfig {
        max_connections: 2,
        ..RelayConfig::default()
    })
    .await;
    let mut a = hello(&relay, &format!("please relay {}\n", token(11))).await;
    let mut b = hello(&relay, &format!("please relay {}\n", token(12))).await;
    assert_quiet(&mut a).await;
    assert_quiet(&mut b).await;
    let mut c = hello(&relay, &format!("please relay {}\n", token(13))).await;
    assert_eq!(read_to_end(&mut c).await, b"");
    relay.shutdown().await;
}

#[tokio::test]
async fn websocket_clients_pair_with_tcp_and_websocket() {
    let relay = start(RelayConfig::default()).await;
    let url = format!("ws://{}/", relay.websocket_addr().expect("ws listener"));
    let t = token(14);
    // WebSocket (handshake without newline) ↔ TCP.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("ws");
    ws.send(Message::binary(format!(
        "please relay {t} for side aaaaaaaaaaaaaaaa"
    )))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut tcp = hello(
        &relay,
        &format!("please relay {t} for side bbbbbbbbbbbbbbbb\n"),
    )
    .await;
    read_exact_line(&mut tcp, "ok\n").await;
    let next_binary = |m: Option<Result<Message, _>>| match m {
        Some(Ok(Message::Binary(b))) => b.to_vec(),
        other => panic!("expected a binary message, got {other:?}"),
    };
    assert_eq!(next_binary(ws.next().await), b"ok\n");
    ws.send(Message::binary(b"from ws".to_vec())).await.unwrap();
    let mut buf = [0u8; 7];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"from ws");
    tcp.write_all(b"from tcp").await.unwrap();
    assert_eq!(next_binary(ws.next().await), b"from tcp");
    drop(tcp);
    match tokio::time::timeout(LIMIT, ws.next())
        .await
        .expect("ws not closed")
    {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        Some(Ok(m)) => panic!("unexpected {m:?}"),
    }

    // WebSocket ↔ WebSocket, with a trailing newline; a text frame is a bad handshake.
    let (mut w1, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut w2, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut w3, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let t = token(15);
    w1.send(Message::binary(format!("please relay {t}\n")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    w2.send(Message::binary(format!("please relay {t}\n")))
        .await
        .unwrap();
    assert_eq!(next_binary(w1.next().await), b"ok\n");
    assert_eq!(next_binary(w2.next().await), b"ok\n");
    w1.send(Message::binary(vec![7u8; 100_000])).await.unwrap();
    assert_eq!(next_binary(w2.next().await), vec![7u8; 100_000]);
    w3.send(Message::text(format!("please relay {t}")))
        .await
        .unwrap();
    assert_eq!(next_binary(w3.next().await), b"bad handshake\n");
    relay.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_everything() {
    let relay = start(RelayConfig::default()).await;
    let (mut a, mut b) = pair(&relay, &token(16)).await;
    let mut waiting = hello(&relay, &format!("please relay {}\n", token(17))).await;
    assert_quiet(&mut waiting).await;
    let addr = relay.local_addr();
    tokio::time::timeout(LIMIT, relay.shutdown())
        .await
        .expect("shutdown hangs");
    assert_eq!(read_to_end(&mut a).await, b"");
    assert_eq!(read_to_end(&mut b).await, b"");
    assert_eq!(read_to_end(&mut waiting).await, b"");
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}
