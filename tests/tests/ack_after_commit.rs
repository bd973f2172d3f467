//! Our mailbox server never acknowledges an `add` before it is committed: `kill -9` the
//! moment the `ack` arrives, restart, and the message is still there.
//!
//! Found by the soak test's author: the server used to queue the `ack` before handing the
//! `add` to its store, and tungstenite writes its buffer out as soon as it passes 64 KiB.
//! So a `pong` that fills the buffer to just under that, followed by an `add` in the same
//! write while the store is busy (replaying a 120 MB mailbox to another client), got the
//! `ack` out before the commit, and a crash then lost an acknowledged message.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wormhole_tests::{OurServer, TempDir, assert_loopback_only, within};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
const APP: &str = "example.com/ack-after-commit";
const STEP: Duration = Duration::from_secs(60);

async fn connect(url: &str) -> Ws {
    within(STEP, "connect", tokio_tungstenite::connect_async(url))
        .await
        .expect("connect")
        .0
}

/// Send frames in one write.
async fn send(ws: &mut Ws, frames: &[Value]) {
    for f in frames {
        ws.feed(Message::text(f.to_string())).await.expect("feed");
    }
    ws.flush().await.expect("flush");
}

/// Frames until `want` matches one (returned).
async fn until(ws: &mut Ws, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    within(STEP, what, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    if want(&v) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended while waiting for {what}: {other:?}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_acknowledged_add_survives_kill_9_at_once() {
    assert_loopback_only();
    let dir = TempDir::new("ack-commit");
    let db = dir.path().join("mailbox.sqlite");
    let mut server =
        OurServer::start_with_db_and(&db, &["--max-stored-bytes-per-ip", "1073741824"]).await;
    let url = server.url();

    // P fills mailbox M2 with 120 messages of 1 MB: opening it keeps the store busy.
    let mut p = connect(&url).await;
    send(
        &mut p,
        &[
            json!({"type": "bind", "appid": APP, "side": "p0p0"}),
            json!({"type": "claim", "nameplate": "2"}),
        ],
    )
    .await;
    let m2 = until(&mut p, "claimed", |m| m["type"] == "claimed").await["mailbox"].clone();
    send(&mut p, &[json!({"type": "open", "mailbox": m2})]).await;
    let body = "ab".repeat(500_000);
    for i in 0..120 {
        send(
            &mut p,
            &[json!({"type": "add", "phase": format!("big{i}"), "body": body})],
        )
        .await;
        let m = until(&mut p, "the echo", |m| {
            m["type"] == "message" || m["type"] == "error"
        })
        .await;
        assert_eq!(m["type"], "message", "{m}");
    }
    drop(p);

    // C: its own mailbox M1 with one message.
    let mut c = connect(&url).await;
    send(
        &mut c,
        &[
            json!({"type": "bind", "appid": APP, "side": "c0c0"}),
            json!({"type": "claim", "nameplate": "1"}),
        ],
    )
    .await;
    let m1 = until(&mut c, "claimed", |m| m["type"] == "claimed").await["mailbox"].clone();
    send(
        &mut c,
        &[
            json!({"type": "open", "mailbox": m1}),
            json!({"type": "add", "phase": "warm", "body": "00", "id": "w"}),
        ],
    )
    .await;
    until(&mut c, "the warm echo", |m| m["type"] == "message").await;

    // Another connection opens M2: the store reads ~120 MB for its replay.
    let mut p2 = connect(&url).await;
    send(
        &mut p2,
        &[
            json!({"type": "bind", "appid": APP, "side": "p0p0"}),
            json!({"type": "open", "mailbox": m2}),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A ping whose pong fills the server's 64 KiB write buffer to just under the limit,
    // then the add, in one write (the sizes of the reply frames with an 18-character
    // server_tx).
    let ack_ping = 2 + r#"{"id": "P", "type": "ack", "server_tx": "#.len() + 18 + 1;
    let pong = 4 + r#"{"pong": "", "type": "pong", "server_tx": "#.len() + 18 + 1;
    let size = 65536 - 25 - ack_ping - pong;
    let started = Instant::now();
    send(
        &mut c,
        &[
            json!({"type": "ping", "ping": "p".repeat(size), "id": "P"}),
            json!({"type": "add", "phase": "acked", "body": "cd", "id": "X"}),
        ],
    )
    .await;
    until(&mut c, "the ack of the add", |m| {
        m["type"] == "ack" && m["id"] == "X"
    })
    .await;
    let after = started.elapsed();
    server.kill9().await;
    drop((c, p2));
    server.restart().await;

    let mut c2 = connect(&server.url()).await;
    send(
        &mut c2,
        &[
            json!({"type": "bind", "appid": APP, "side": "c0c0"}),
            json!({"type": "open", "mailbox": m1}),
        ],
    )
    .await;
    let acked = until(&mut c2, "the replayed add", |m| {
        m["type"] == "message" && m["phase"] == "acked"
    });
    let found = tokio::time::timeout(Duration::from_secs(10), acked)
        .await
        .is_ok();
    assert!(
        found,
        "the add acknowledged after {after:?} was lost by kill -9 right after its ack"
    );
}
