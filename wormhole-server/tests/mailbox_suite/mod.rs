//! Integration tests of the mailbox server, driven by raw WebSocket clients speaking JSON
//! (PROTOCOL §3), plus two `wormhole_core` clients exchanging messages through it.
//!
//! Run on each backend: `tests/mailbox.rs` (SQLite) and `tests/mailbox_postgres.rs`
//! (PostgreSQL), which provide `super::backend`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wormhole_server::{Database, Limits, MailboxConfig, MailboxHandle, MailboxServer};

const TIMEOUT: Duration = Duration::from_secs(10);
const APP: &str = "example.com/mailbox-test";

use super::backend;

/// Starts a server with `config`; a `Database::Memory` there means a fresh database of the
/// backend under test.
pub(crate) async fn start(mut config: MailboxConfig) -> MailboxHandle {
    if config.database == Database::Memory {
        config.database = backend::fresh();
    }
    MailboxServer::bind("127.0.0.1:0", config)
        .await
        .expect("bind")
        .spawn()
}

async fn start_default() -> MailboxHandle {
    start(MailboxConfig::default()).await
}

pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects and returns the client and its welcome frame.
    pub(crate) async fn connect(url: &str) -> (Client, Value) {
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timeout")
            .expect("connect");
        let mut c = Client { ws };
        let welcome = c.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (c, welcome)
    }

    /// Connects through `socket` (bound or tuned by the caller) to the server at `addr`.
    pub(crate) async fn connect_with(
        socket: TcpSocket,
        addr: std::net::SocketAddr,
    ) -> (Client, Value) {
        let url = format!("ws://{addr}/v1");
        let (ws, _) = tokio::time::timeout(TIMEOUT, async {
            let stream = socket.connect(addr).await.expect("tcp connect");
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await
        })
        .await
        .expect("connect timeout")
        .expect("connect");
        let mut c = Client { ws };
        let welcome = c.next().await;
        (c, welcome)
    }

    /// Connects from the loopback address `from` (any of 127.0.0.0/8) and binds `side`.
    pub(crate) async fn bound_from(from: &str, addr: std::net::SocketAddr, side: &str) -> Client {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("address"))
            .expect("bind the client socket");
        let (mut c, welcome) = Client::connect_with(socket, addr).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["welcome"]["your-address"]["ipv4"], from);
        c.send(json!({"type": "bind", "appid": APP, "side": side}))
            .await;
        c.expect_ack().await;
        c
    }

    /// Adds messages with phases `0`, `1`, … until the server refuses one, reading each
    /// echo; returns how many were stored and the `error` frame.
    pub(crate) async fn add_until_refused(&mut self, body: &str) -> (usize, Value) {
        for i in 0..1000 {
            let add = json!({"type": "add", "phase": i.to_string(), "body": body});
            self.send(add.clone()).await;
            self.expect_ack().await;
            let v = self.next().await;
            if v["type"] == "error" {
                assert_eq!(v["orig"], add, "{v}");
                return (i, v);
            }
            assert_eq!(v["type"], "message", "{v}");
            assert_eq!(v["phase"], i.to_string(), "{v}");
        }
        panic!("never refused");
    }

    pub(crate) async fn bound(url: &str, side: &str) -> Client {
        let (mut c, _) = Client::connect(url).await;
        c.send(json!({"type": "bind", "appid": APP, "side": side}))
            .await;
        c.expect_ack().await;
        c
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.raw(Message::text(v.to_string())).await;
    }

    pub(crate) async fn raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next JSON frame (panics on close or timeout).
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection closed")
                .expect("websocket error");
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    assert!(v["server_tx"].is_f64(), "server_tx in {v}");
                    return v;
                }
                Message::Binary(_) => panic!("server sent a binary frame"),
                Message::Close(_) => panic!("connection closed"),
                _ => {}
            }
        }
    }

    pub(crate) async fn expect_ack(&mut self) -> Value {
        let v = self.next().await;
        assert_eq!(v["type"], "ack", "{v}");
        v
    }

    /// Sends a frame and returns the first non-ack frame after its ack.
    pub(crate) async fn request(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.expect_ack().await;
        self.next().await
    }

    /// Sends a frame and expects its ack and then exactly `error`.
    pub(crate) async fn expect_error(&mut self, v: Value, error: &str, acked: bool) {
        self.send(v.clone()).await;
        if acked {
            self.expect_ack().await;
        }
        let e = self.next().await;
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["error"], error, "{e}");
        assert_eq!(e["orig"], v, "{e}");
    }

    /// Waits for the server to end the connection (close frame, EOF or reset), skipping
    /// any frames before.
    pub(crate) async fn expect_closed(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for the close")
            {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return frames,
                Some(Ok(Message::Text(t))) => {
                    frames.push(serde_json::from_str(t.as_str()).unwrap_or(Value::Null))
                }
                Some(Ok(_)) => {}
            }
        }
    }

    pub(crate) async fn allocate(&mut self) -> String {
        let v = self.request(json!({"type": "allocate"})).await;
        assert_eq!(v["type"], "allocated", "{v}");
        v["nameplate"].as_str().expect("nameplate").to_owned()
    }

    pub(crate) async fn claim(&mut self, nameplate: &str) -> Value {
        self.request(json!({"type": "claim", "nameplate": nameplate}))
            .await
    }

    pub(crate) async fn claim_ok(&mut self, nameplate: &str) -> String {
        let v = self.claim(nameplate).await;
        assert_eq!(v["type"], "claimed", "{v}");
        v["mailbox"].as_str().expect("mailbox").to_owned()
    }

    pub(crate) async fn list(&mut self) -> Vec<String> {
        let v = self.request(json!({"type": "list"})).await;
        assert_eq!(v["type"], "nameplates", "{v}");
        v["nameplates"]
            .as_array()
            .expect("array")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect()
    }

    pub(crate) async fn open(&mut self, mailbox: &str) {
        self.send(json!({"type": "open", "mailbox": mailbox})).await;
        self.expect_ack().await;
    }

    pub(crate) async fn add(&mut self, phase: &str, body: &str, id: &str) {
        self.send(json!({"type": "add", "phase": phase, "body": body, "id": id}))
            .await;
        self.expect_ack().await;
    }

    pub(crate) async fn expect_message(&mut self) -> Value {
        let v = self.next().await;
        assert_eq!(v["type"], "message", "{v}");
        v
    }

    pub(crate) async fn release(&mut self, nameplate: &str) {
        let v = self
            .request(json!({"type": "release", "nameplate": nameplate}))
            .await;
        assert_eq!(v["type"], "released", "{v}");
    }

    pub(crate) async fn close(&mut self, mailbox: &str, mood: &str) {
        let v = self
            .request(json!({"type": "close", "mailbox": mailbox, "mood": mood}))
            .await;
        assert_eq!(v["type"], "closed", "{v}");
    }
}

#[tokio::test]
async fn welcome_carries_configured_fields_and_address() {
    let server = start(MailboxConfig {
        motd: Some("hello from test".into()),
        signal_error: Some("go away".into()),
        current_cli_version: Some("0.24.0".into()),
        ..MailboxConfig::default()
    })
    .await;
    assert_eq!(server.url(), format!("ws://{}/v1", server.local_addr()));
    let (_c, welcome) = Client::connect(&server.url()).await;
    let w = &welcome["welcome"];
    assert_eq!(w["motd"], "hello from test");
    assert_eq!(w["error"], "go away");
    assert_eq!(w["current_cli_version"], "0.24.0");
    assert_eq!(w["your-address"]["ipv4"], "127.0.0.1");
    assert!(w["your-address"]["port"].as_u64().is_some_and(|p| p > 0));

    let plain = start_default().await;
    let (_c, welcome) = Client::connect(&plain.url()).await;
    let w = welcome["welcome"].as_object().expect("object");
    assert_eq!(w.keys().collect::<Vec<_>>(), vec!["your-address"]);
    server.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn other_paths_are_rejected() {
    let server = start_default().await;
    let url = format!("ws://{}/v2", server.local_addr());
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn ack_comes_before_the_reply_and_copies_the_id() {
    let server = start_default().await;
    let (mut c, _) = Client::connect(&server.url()).await;
    // ping is allowed before bind
    c.send(json!({"type": "ping", "ping": 7, "id": "ab12"}))
        .await;
    let ack = c.next().await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["id"], "ab12");
    let pong = c.next().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["pong"], 7);
    assert!(pong.get("id").is_none());
    // no id: ack with null
    c.send(json!({"type": "bind", "appid": APP, "side": "s1"}))
        .await;
    let ack = c.next().await;
    assert_eq!(ack["type"], "ack");
    assert!(ack["id"].is_null());
    server.shutdown().await;
}

/// The connection's state is checked before a frame's fields, as the reference does: a
/// frame that is both out of turn and malformed gets the out-of-turn error, and a field
/// of the wrong type drops the connection only once the request gets that far.
#[tokio::test]
async fn state_errors_come_before_field_errors() {
    let server = start_default().await;
    let url = server.url();

    let (mut c, _) = Client::connect(&url).await;
    for frame in [
        json!({"type": "claim"}),
        json!({"type": "open", "mailbox": 5}),
        json!({"type": "add"}),
        json!({"type": "frobnicate"}),
        json!({"type": 17}),
    ] {
        c.expect_error(frame, "must bind first", true).await;
    }
    c.send(json!({"type": "bind", "appid": APP, "side": "s"}))
        .await;
    c.expect_ack().await;
    for frame in [
        json!({"type": "bind"}),
        json!({"type": "bind", "appid": 5, "side": 5}),
    ] {
        c.expect_error(frame, "already bound", true).await;
    }
    c.expect_error(
        json!({"type": "add"}),
        "must open mailbox before adding",
        true,
    )
    .await;
    // A release naming no string nameplate before any claim releases nothing.
    let v = c.request(json!({"type": "release", "nameplate": 3})).await;
    assert_eq!(v["type"], "released", "{v}");
    c.expect_error(
        json!({"type": "release"}),
        "only one release per connection",
        true,
    )
    .await;

    let mut a = Client::bound(&url, "a").await;
    let nameplate = a.allocate().await;
    let mailbox = a.claim_ok(&nameplate).await;
    // The field's presence is checked before the one-claim rule, its type after.
    a.expect_error(json!({"type": "claim"}), "claim requires 'nameplate'", true)
        .await;
    a.expect_error(
        json!({"type": "claim", "nameplate": 12}),
        "only one claim per connection",
        true,
    )
    .await;
    a.expect_error(
        json!({"type": "release", "nameplate": 12}),
        "release and claim must use same nameplate",
        true,
    )
    .await;
    a.open(&mailbox).await;
    for frame in [
        json!({"type": "open"}),
        json!({"type": "open", "mailbox": 7}),
    ] {
        a.expect_error(frame, "only one open per connection", true)
            .await;
    }
    a.expect_error(
        json!({"type": "close", "mailbox": 7}),
        "open and close must use same mailbox",
        true,
    )
    .await;
    a.close(&mailbox, "happy").await;
    a.expect_error(
        json!({"type": "close", "mailbox": 7}),
        "only one close per connection",
        true,
    )
    .await;

    // Past the state checks, a field of the wrong type drops the connection (after the ack).
    for frame in [
        json!({"type": "open", "mailbox": 7}),
        json!({"type": "close", "mailbox": 7}),
    ] {
        let mut d = Client::bound(&url, "d").await;
        d.send(frame).await;
        d.expect_ack().await;
        d.expect_closed().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_error_string() {
    let server = start_default().await;
    let url = server.url();
    let (mut c, _) = Client::connect(&url).await;
    c.expect_error(json!({"id": "0001"}), "missing 'type'", false)
        .await;
    c.expect_error(json!({"type": "list"}), "must bind first", true)
        .await;
    c.expect_error(json!({"type": "ping"}), "ping requires 'ping'", true)
        .await;
    c.expect_error(
        json!({"type": "bind", "side": "s"}),
        "bind requires 'appid'",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "bind", "appid": APP}),
        "bind requires 'side'",
        true,
    )
    .await;
    c.send(json!({"type": "bind", "appid": APP, "side": "s1"}))
        .await;
    c.expect_ack().await;
    c.expect_error(
        json!({"type": "bind", "appid": APP, "side": "s1"}),
        "already bound",
        true,
    )
    .await;
    c.expect_error(json!({"type": "frobnicate"}), "unknown type", true)
        .await;
    c.expect_error(
        json!({"type": "release"}),
        "release without nameplate must follow claim",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "close"}),
        "close without mailbox must follow open",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "add", "phase": "pake", "body": "00"}),
        "must open mailbox before adding",
        true,
    )
    .await;
    let nameplate = c.allocate().await;
    c.expect_error(
        json!({"type": "allocate"}),
        "you already allocated one, don't be greedy",
        true,
    )
    .await;
    c.expect_error(json!({"type": "claim"}), "claim requires 'nameplate'", true)
        .await;
    let mailbox = c.claim_ok(&nameplate).await;
    c.expect_error(
        json!({"type": "claim", "nameplate": nameplate}),
        "only one claim per connection",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "release", "nameplate": "999"}),
        "release and claim must use same nameplate",
        true,
    )
    .await;
    c.release(&nameplate).await;
    c.expect_error(
        json!({"type": "release", "nameplate": nameplate}),
        "only one release per connection",
        true,
    )
    .await;
    c.expect_error(json!({"type": "open"}), "open requires 'mailbox'", true)
        .await;
    c.open(&mailbox).await;
    c.expect_error(
        json!({"type": "open", "mailbox": mailbox}),
        "only one open per connection",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "add", "body": "00"}),
        "missing 'phase'",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "add", "phase": "pake"}),
        "missing 'body'",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "close", "mailbox": "someothermbox"}),
        "open and close must use same mailbox",
        true,
    )
    .await;
    c.close(&mailbox, "happy").await;
    c.expect_error(
        json!({"type": "close", "mailbox": mailbox}),
        "only one close per connection",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "add", "phase": "pake", "body": "00"}),
        "must open mailbox before adding",
        true,
    )
    .await;

    // crowded and reclaimed
    let mut a = Client::bound(&url, "a").await;
    let mut b = Client::bound(&url, "b").await;
    let mut x = Client::bound(&url, "x").await;
    let nameplate = a.allocate().await;
    a.claim_ok(&nameplate).await;
    b.claim_ok(&nameplate).await;
    x.expect_error(
        json!({"type": "claim", "nameplate": nameplate}),
        "crowded",
        true,
    )
    .await;
    a.release(&nameplate).await;
    let mut a2 = Client::bound(&url, "a").await;
    a2.expect_error(
        json!({"type": "claim", "nameplate": nameplate}),
        "reclaimed",
        true,
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn allocate_picks_the_smallest_free_nameplate_per_app() {
    let server = start_default().await;
    let url = server.url();
    let mut clients = Vec::new();
    for (i, want) in ["1", "2", "3"].iter().enumerate() {
        let mut c = Client::bound(&url, &format!("side{i}")).await;
        assert_eq!(c.allocate().await, *want);
        clients.push(c);
    }
    // free "2": the next allocation takes it
    clients[1].release("2").await;
    let mut d = Client::bound(&url, "side3").await;
    assert_eq!(d.allocate().await, "2");
    let mut e = Client::bound(&url, "side4").await;
    assert_eq!(e.allocate().await, "4");
    // a claimed (not allocated) nameplate also counts as used
    let mut f = Client::bound(&url, "side5").await;
    f.claim_ok("5").await;
    let mut g = Client::bound(&url, "side6").await;
    assert_eq!(g.allocate().await, "6");
    // another app id has its own namespace
    let (mut other, _) = Client::connect(&url).await;
    other
        .send(json!({"type": "bind", "appid": "other/app", "side": "o"}))
        .await;
    other.expect_ack().await;
    assert_eq!(other.allocate().await, "1");
    assert_eq!(clients[0].list().await, vec!["1", "2", "3", "4", "5", "6"]);
    server.shutdown().await;
}

#[tokio::test]
async fn claim_is_idempotent_and_shares_one_mailbox() {
    let server = start_default().await;
    let url = server.url();
    let mut a = Client::bound(&url, "a").await;
    let nameplate = a.allocate().await;
    let m1 = a.claim_ok(&nameplate).await;
    assert_eq!(m1.len(), 13);
    assert!(
        m1.chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
    );
    let mut b = Client::bound(&url, "b").await;
    assert_eq!(b.claim_ok(&nameplate).await, m1);
    // same side on a new connection: idempotent
    let mut a2 = Client::bound(&url, "a").await;
    assert_eq!(a2.claim_ok(&nameplate).await, m1);
    server.shutdown().await;
}

#[tokio::test]
async fn open_replays_and_add_echoes_to_everyone() {
    let server = start_default().await;
    let url = server.url();
    let mut a = Client::bound(&url, "a").await;
    let nameplate = a.allocate().await;
    let mailbox = a.claim_ok(&nameplate).await;
    a.open(&mailbox).await;
    a.add("pake", "aa01", "1111").await;
    let echo = a.expect_message().await;
    assert_eq!(echo["side"], "a");
    assert_eq!(echo["phase"], "pake");
    assert_eq!(echo["body"], "aa01");
    assert_eq!(echo["id"], "1111");
    assert!(echo["server_rx"].is_f64());
    a.add("version", "aa02", "2222").await;
    a.expect_message().await;

    let mut b = Client::bound(&url, "b").await;
    assert_eq!(b.claim_ok(&nameplate).await, mailbox);
    b.open(&mailbox).await;
    let r1 = b.expect_message().await;
    let r2 = b.expect_message().await;
    assert_eq!(
        (r1["phase"].clone(), r2["phase"].clone()),
        ("pake".into(), "version".into())
    );
    assert_eq!(r1["server_rx"], echo["server_rx"]);
    b.add("pake", "bb01", "3333").await;
    let to_b = b.expect_message().await;
    let to_a = a.expect_message().await;
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().map(|o| o.remove("server_tx"));
        v
    };
    assert_eq!(strip(&to_a), strip(&to_b));
    for m in [&to_a, &to_b] {
        assert_eq!(m["side"], "b");
        assert_eq!(m["body"], "bb01");
        assert_eq!(m["id"], "3333");
    }
    // a message without id carries a null id
    b.send(json!({"type": "add", "phase": "0", "body": "cc"}))
        .await;
    b.expect_ack().await;
    assert!(b.expect_message().await["id"].is_null());
    assert!(a.expect_message().await["id"].is_null());

    // a third side cannot open
    let mut x = Client::bound(&url, "x").await;
    x.expect_error(json!({"type": "open", "mailbox": mailbox}), "crowded", true)
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn release_and_close_lifetimes() {
    let server = start_default().await;
    let url = server.url();
    let mut a = Client::bound(&url, "a").await;
    let mut b = Client::bound(&url, "b").await;
    let nameplate = a.allocate().await;
    let mailbox = a.claim_ok(&nameplate).await;
    b.claim_ok(&nameplate).await;
    a.open(&mailbox).await;
    b.open(&mailbox).await;
    a.add("pake", "01", "0001").await;
    a.expect_message().await;
    b.expect_message().await;
    // one release: the nameplate lives on
    a.release(&nameplate).await;
    assert_eq!(b.list().await, vec![nameplate.clone()]);
    // both released: gone, but the mailbox (and its messages) stays
    b.release(&nameplate).await;
    let mut lister = Client::bound(&url, "l").await;
    assert!(lister.list().await.is_empty());
    // the released side may claim the (now new) nameplate again: a fresh mailbox
    let mut a2 = Client::bound(&url, "a").await;
    let fresh = a2.claim_ok(&nameplate).await;
    assert_ne!(fresh, mailbox);
    let mut a3 = Client::bound(&url, "a").await;
    a3.release(&nameplate).await;

    // one close: the mailbox keeps its messages
    a.close(&mailbox, "happy").await;
    let mut a4 = Client::bound(&url, "a").await;
    a4.open(&mailbox).await;
    assert_eq!(a4.expect_message().await["body"], "01");
    // both closed: the mailbox and its messages are deleted
    b.close(&mailbox, "happy").await;
    let mut c = Client::bound(&url, "c").await;
    c.open(&mailbox).await;
    c.send(json!({"type": "ping", "ping": 1})).await;
    c.expect_ack().await;
    let v = c.next().await;
    assert_eq!(v["type"], "pong", "no replay expected, got {v}");

    // close deletes a nameplate that is still claimed
    let mut p = Client::bound(&url, "p").await;
    let np = p.allocate().await;
    let mb = p.claim_ok(&np).await;
    p.open(&mb).await;
    p.close(&mb, "lonely").await;
    assert!(!lister.list().await.contains(&np));
    server.shutdown().await;
}

#[tokio::test]
async fn stale_mailboxes_are_pruned() {
    let server = start(MailboxConfig {
        prune_interval: Duration::from_millis(50),
        channel_expiry: Duration::from_millis(300),
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    // a subscribed connection keeps its mailbox alive
    let mut kept = Client::bound(&url, "k").await;
    let kept_np = kept.allocate().await;
    let kept_mb = kept.claim_ok(&kept_np).await;
    kept.open(&kept_mb).await;
    // an abandoned one is pruned
    let mut gone = Client::bound(&url, "g").await;
    let gone_np = gone.allocate().await;
    gone.claim_ok(&gone_np).await;
    drop(gone);
    let mut lister = Client::bound(&url, "l").await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let names = lister.list().await;
        if !names.contains(&gone_np) {
            assert!(names.contains(&kept_np), "{names:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // still there after several more expiry periods
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(lister.list().await.contains(&kept_np));
    server.shutdown().await;
}

#[tokio::test]
async fn message_too_large_is_refused() {
    let server = start(MailboxConfig {
        limits: Limits {
            max_message_bytes: 1000,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    let mut c = Client::bound(&url, "a").await;
    c.send(json!({"type": "ping", "ping": 1, "pad": "x".repeat(2000)}))
        .await;
    let frames = c.expect_closed().await;
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "error" && f["error"] == "message too large"),
        "{frames:?}"
    );
    // the server still serves others
    let mut d = Client::bound(&url, "d").await;
    assert!(d.list().await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn too_many_messages_and_mailboxes() {
    let server = start(MailboxConfig {
        limits: Limits {
            max_messages_per_mailbox: 3,
            max_mailboxes_per_app: 2,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    let mut a = Client::bound(&url, "a").await;
    let np = a.allocate().await;
    let mb = a.claim_ok(&np).await;
    a.open(&mb).await;
    for i in 0..3 {
        a.add(&format!("{i}"), "00", "0000").await;
        a.expect_message().await;
    }
    a.send(json!({"type": "add", "phase": "3", "body": "00"}))
        .await;
    a.expect_ack().await;
    let frames = a.expect_closed().await;
    assert!(
        frames
            .iter()
            .any(|f| f["error"] == "too many messages in this mailbox"),
        "{frames:?}"
    );

    let mut b = Client::bound(&url, "b").await;
    b.allocate().await;
    let mut c = Client::bound(&url, "c").await;
    c.expect_error(
        json!({"type": "allocate"}),
        "too many mailboxes for this app id",
        true,
    )
    .await;
    c.expect_error(
        json!({"type": "open", "mailbox": "aaaaaaaaaaaaa"}),
        "too many mailboxes for this app id",
        true,
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limits() {
    let server = start(MailboxConfig {
        limits: Limits {
            max_connections: 2,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    let (c1, _) = Client::connect(&url).await;
    let (_c2, _) = Client::connect(&url).await;
    let (ws, _) = tokio_tungstenite::connect_async(&url).await.expect("ws");
    let mut c3 = Client { ws };
    let frames = c3.expect_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["error"], "server is full");
    // a slot frees up when a client leaves
    drop(c1);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.expect("ws");
        let mut c = Client { ws };
        let first = c.next().await;
        if first["type"] == "welcome" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;

    let server = start(MailboxConfig {
        limits: Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let (_c1, _) = Client::connect(&server.url()).await;
    let (ws, _) = tokio_tungstenite::connect_async(server.url())
        .await
        .expect("ws");
    let frames = Client { ws }.expect_closed().await;
    assert_eq!(frames[0]["error"], "too many connections from your address");
    server.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server = start(MailboxConfig {
        limits: Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert!(c.expect_closed().await.is_empty());
    server.shutdown().await;
}

/// A client that sends pings with large payloads and never reads the pongs: once the
/// server's write has made no progress for `write_timeout`, the connection is closed (it
/// used to wait in that write for ever, holding the connection past every timer).
#[tokio::test]
async fn a_client_that_reads_nothing_is_closed_after_the_write_timeout() {
    let server = start(MailboxConfig {
        limits: Limits {
            write_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let (mut c, _) = Client::connect(&server.url()).await;
    let ping = json!({"type": "ping", "ping": "p".repeat(256 * 1024)}).to_string();
    // Send until our own writes stall too (the server stopped reading when its writes did)
    // or fail (the server closed the connection already).
    let mut sent = 0;
    loop {
        let send = c.ws.send(Message::text(ping.clone()));
        match tokio::time::timeout(Duration::from_secs(1), send).await {
            Ok(Ok(())) if sent < 400 => sent += 1,
            Ok(Ok(())) => panic!("400 pings of 256 KiB and the writes never stalled"),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // Well past the write timeout, reading drains what was buffered and then ends: the
    // server gave up. (Were it still waiting, reading would let it write on, and the
    // connection would stay open until the 30-minute idle timeout.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames = c.expect_closed().await;
    assert!(
        frames.len() < sent + 1,
        "{} pongs for {sent} pings",
        frames.len()
    );
    // Others are served.
    let mut d = Client::bound(&server.url(), "d").await;
    assert!(d.list().await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_never_crash_the_server() {
    let server = start(MailboxConfig {
        limits: Limits {
            max_message_bytes: 64 * 1024,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    let dropping: Vec<Message> = vec![
        Message::text("this is not json"),
        Message::text("[1, 2, 3]"),
        Message::text("\"a string\""),
        Message::text("{\"type\": \"add\""),
        Message::binary(vec![0xff, 0xfe, 0x00, 0x80]),
        Message::text("x".repeat(200 * 1024)),
        Message::text(json!({"type": "bind", "appid": APP, "side": 5}).to_string()),
    ];
    for m in dropping {
        let (mut c, _) = Client::connect(&url).await;
        c.raw(m).await;
        c.expect_closed().await;
    }
    // an invalid nameplate in claim: ack, then dropped (like the reference)
    for bad in [json!("abc"), json!(""), json!(12), json!("1".repeat(41))] {
        let mut c = Client::bound(&url, "a").await;
        c.send(json!({"type": "claim", "nameplate": bad})).await;
        c.expect_ack().await;
        c.expect_closed().await;
    }
    // binary JSON is accepted; odd but typed frames get errors, not drops
    let (mut c, _) = Client::connect(&url).await;
    c.raw(Message::binary(
        json!({"type": "ping", "ping": 3}).to_string().into_bytes(),
    ))
    .await;
    c.expect_ack().await;
    assert_eq!(c.next().await["pong"], 3);
    c.send(json!({"type": "bind", "appid": APP, "side": "s"}))
        .await;
    c.expect_ack().await;
    c.expect_error(json!({"type": 17}), "unknown type", true)
        .await;
    c.expect_error(json!({"type": null, "id": [1, 2]}), "unknown type", true)
        .await;
    // the server keeps serving
    let mut d = Client::bound(&url, "d").await;
    assert_eq!(d.allocate().await, "1");
    server.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "wormhole-mailbox-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let database = backend::persistent(&dir.join("mailbox.sqlite"));
    let config = || MailboxConfig {
        database: database.clone(),
        ..MailboxConfig::default()
    };

    // First server in its own runtime, torn down without a graceful shutdown.
    let (url1, nameplate, mailbox) = {
        let db_config = config();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let out = rt.block_on(async {
                let server = start(db_config).await;
                let url = server.url();
                let mut a = Client::bound(&url, "a").await;
                let np = a.allocate().await;
                let mb = a.claim_ok(&np).await;
                a.open(&mb).await;
                a.add("pake", "a1", "0001").await;
                a.expect_message().await;
                std::mem::forget(server); // no shutdown, no drop: like a crash
                (url, np, mb)
            });
            rt.shutdown_background();
            out
        })
        .join()
        .expect("first server")
    };
    assert!(url1.starts_with("ws://127.0.0.1:"));

    let server = start(config()).await;
    let url = server.url();
    // A reconnects: re-bind, re-open (no claim), sees its message replayed
    let mut a = Client::bound(&url, "a").await;
    a.open(&mailbox).await;
    assert_eq!(a.expect_message().await["body"], "a1");
    // B arrives, claims the same nameplate, gets the same mailbox, and both finish
    let mut b = Client::bound(&url, "b").await;
    assert_eq!(b.claim_ok(&nameplate).await, mailbox);
    // re-claim by A on a new connection is idempotent
    let mut a2 = Client::bound(&url, "a").await;
    assert_eq!(a2.claim_ok(&nameplate).await, mailbox);
    b.open(&mailbox).await;
    assert_eq!(b.expect_message().await["body"], "a1");
    b.add("pake", "b1", "0002").await;
    assert_eq!(b.expect_message().await["body"], "b1");
    assert_eq!(a.expect_message().await["body"], "b1");
    a.release(&nameplate).await;
    b.release(&nameplate).await;
    a.close(&mailbox, "happy").await;
    b.close(&mailbox, "happy").await;
    server.shutdown().await;

    // after a graceful shutdown, the (now empty) state is still readable
    let server = start(config()).await;
    let mut l = Client::bound(&server.url(), "l").await;
    assert!(l.list().await.is_empty());
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn two_core_clients_exchange_messages() {
    use wormhole_core::{Options, Wormhole};
    let server = start_default().await;
    let url = server.url();
    let a = Wormhole::create(APP, &url, Options::default()).expect("create a");
    a.allocate_code(2).expect("allocate");
    let code = tokio::time::timeout(TIMEOUT, a.get_code())
        .await
        .expect("code timeout")
        .expect("code");
    assert!(code.starts_with("1-"), "{code}");
    let b = Wormhole::create(APP, &url, Options::default()).expect("create b");
    b.set_code(&code).expect("set_code");
    a.send_message(b"hello from a".to_vec()).expect("send a");
    b.send_message(b"hello from b".to_vec()).expect("send b");
    let (ra, rb) = tokio::time::timeout(TIMEOUT, async {
        tokio::join!(a.get_message(), b.get_message())
    })
    .await
    .expect("exchange timeout");
    assert_eq!(rb.expect("b got"), b"hello from a");
    assert_eq!(ra.expect("a got"), b"hello from b");
    let (ca, cb) = tokio::time::timeout(TIMEOUT, async { tokio::join!(a.close(), b.close()) })
        .await
        .expect("close timeout");
    ca.expect("a happy");
    cb.expect("b happy");
    // both closed: nothing left on the server
    let mut l = Client::bound(&url, "l").await;
    assert!(l.list().await.is_empty());
    server.shutdown().await;
}

/// A subscriber that stops reading while its mailbox keeps growing (with
/// `max_messages_per_mailbox` above the 4096 broadcasts a connection used to queue) is
/// disconnected, never skipped: it gets an unbroken run of the messages and then the end
/// of its connection, and on reconnecting `open` replays every message.
#[tokio::test]
async fn a_subscriber_that_cannot_keep_up_is_disconnected_not_skipped() {
    const MESSAGES: usize = 12_000;
    const PIPELINE: usize = 100;
    let server = start(MailboxConfig {
        limits: Limits {
            max_messages_per_mailbox: 100_000,
            max_message_bytes: 4096,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    let mut fast = Client::bound(&url, "f").await;
    let nameplate = fast.allocate().await;
    let mailbox = fast.claim_ok(&nameplate).await;
    fast.open(&mailbox).await;
    // A small receive buffer, so that the server's writes to it stall soon.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let (mut slow, _) = Client::connect_with(socket, server.local_addr()).await;
    slow.send(json!({"type": "bind", "appid": APP, "side": "s"}))
        .await;
    slow.expect_ack().await;
    slow.open(&mailbox).await;

    // The slow side reads nothing while the fast side adds (and reads its echoes).
    let body = "ab".repeat(500);
    for start in (0..=MESSAGES).step_by(PIPELINE) {
        let end = (start + PIPELINE).min(MESSAGES + 1);
        for i in start..end {
            fast.send(json!({"type": "add", "phase": i.to_string(), "body": body}))
                .await;
        }
        for _ in start..end {
            for _ in 0..2 {
                let v = fast.next().await;
                assert!(v["type"] == "ack" || v["type"] == "message", "{v}");
            }
        }
    }

    // Then it reads: an unbroken run from the first message, then the connection ends.
    let mut next = 0;
    loop {
        match tokio::time::timeout(TIMEOUT, slow.ws.next())
            .await
            .expect("the slow subscriber was neither closed nor fed")
        {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                assert_eq!(v["type"], "message", "{v}");
                assert_eq!(v["phase"], next.to_string(), "a gap in the broadcasts");
                next += 1;
            }
            Some(Ok(_)) => {}
        }
    }
    assert!(
        next < MESSAGES,
        "the slow subscriber got all {next} messages"
    );

    // Reconnecting replays everything.
    let mut again = Client::bound(&url, "s").await;
    again.open(&mailbox).await;
    for i in 0..=MESSAGES {
        assert_eq!(again.expect_message().await["phase"], i.to_string());
    }
    server.shutdown().await;
}

/// Stored messages are limited in bytes per client address and in total: the `add` over a
/// limit gets an `error` (and is not stored), the connection stays usable, and closing the
/// mailbox gives the room back.
#[tokio::test]
async fn stored_bytes_are_limited_per_address_and_in_total() {
    let server = start(MailboxConfig {
        limits: Limits {
            max_stored_bytes_per_ip: 20_000,
            max_stored_bytes: 30_000,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let addr = server.local_addr();
    // Each message is accounted about 4,150 bytes: 4 fit in 20,000.
    let body = "ab".repeat(2000);
    let mut a = Client::bound_from("127.0.0.1", addr, "a").await;
    let nameplate = a.allocate().await;
    let mailbox = a.claim_ok(&nameplate).await;
    a.open(&mailbox).await;
    let (added, error) = a.add_until_refused(&body).await;
    assert_eq!(added, 4);
    assert_eq!(error["error"], "too much data stored from your address");
    a.send(json!({"type": "ping", "ping": 1})).await;
    a.expect_ack().await;
    assert_eq!(a.next().await["type"], "pong");

    // Another address has its own share, until the total is reached.
    let mut c = Client::bound_from("127.0.0.2", addr, "c").await;
    assert_eq!(c.claim_ok(&nameplate).await, mailbox);
    c.open(&mailbox).await;
    for _ in 0..4 {
        c.expect_message().await;
    }
    let (added, error) = c.add_until_refused(&body).await;
    assert_eq!(added, 3);
    assert_eq!(error["error"], "server storage is full");
    for _ in 0..3 {
        a.expect_message().await;
    }

    // Closed by both sides: the mailbox and its messages are gone, and so is their weight.
    a.close(&mailbox, "happy").await;
    c.close(&mailbox, "happy").await;
    let mut a2 = Client::bound_from("127.0.0.1", addr, "a2").await;
    let nameplate = a2.allocate().await;
    let mailbox = a2.claim_ok(&nameplate).await;
    a2.open(&mailbox).await;
    assert_eq!(a2.add_until_refused(&body).await.0, 4);
    server.shutdown().await;
}

/// When the database cannot grow (here `max_database_bytes`; a full disk fails the same
/// way with SQLITE_FULL), the request is answered with an `error` instead of hanging or
/// dropping anyone, other clients are still served, and once mailboxes are deleted the
/// room is used again.
#[tokio::test]
async fn a_full_database_is_an_error_and_the_server_recovers() {
    if backend::POSTGRES {
        eprintln!("max_database_bytes is SQLite's: skipped on PostgreSQL");
        return;
    }
    let server = start(MailboxConfig {
        limits: Limits {
            max_database_bytes: Some(256 << 10),
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    let mut bystander = Client::bound(&url, "b").await;
    let mut a = Client::bound(&url, "a").await;
    let nameplate = a.allocate().await;
    let mailbox = a.claim_ok(&nameplate).await;
    a.open(&mailbox).await;
    let body = "cd".repeat(4000);
    let (added, error) = a.add_until_refused(&body).await;
    assert!(added > 0, "{error}");
    assert_eq!(error["error"], "server storage is full");
    // The refused message was not stored, nobody hangs, and both connections still work.
    a.send(json!({"type": "ping", "ping": 2})).await;
    a.expect_ack().await;
    assert_eq!(a.next().await["type"], "pong");
    assert_eq!(bystander.list().await, vec![nameplate.clone()]);
    let mut reader = Client::bound(&url, "a").await;
    reader.open(&mailbox).await;
    for i in 0..added {
        assert_eq!(reader.expect_message().await["phase"], i.to_string());
    }
    reader.send(json!({"type": "ping", "ping": 3})).await;
    reader.expect_ack().await;
    assert_eq!(
        reader.next().await["type"],
        "pong",
        "the refused message was stored"
    );

    // Deleting the mailbox frees its pages: the server stores messages again.
    a.send(json!({"type": "close", "mailbox": mailbox})).await;
    a.expect_ack().await;
    assert_eq!(a.next().await["type"], "closed");
    let mut c = Client::bound(&url, "c").await;
    let nameplate = c.allocate().await;
    let mailbox = c.claim_ok(&nameplate).await;
    c.open(&mailbox).await;
    let (again, _) = c.add_until_refused(&body).await;
    assert!(again >= added, "{again} < {added}");
    server.shutdown().await;
}

/// The binary raises its soft file-descriptor limit to the hard one before it starts, so
/// the default connection limits are not cut down to what 256 descriptors allow.
#[test]
fn the_binary_raises_its_descriptor_limit() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    if hard.is_some_and(|h| h <= 1024) {
        eprintln!("skipped: the hard limit is only {hard:?}");
        return;
    }
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -Sn 256 && exec \"$0\" mailbox --listen 127.0.0.1:0 --db :memory:",
            env!("CARGO_BIN_EXE_wormhole-server"),
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(TIMEOUT) {
        let ready = line.contains("mailbox ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(log.contains("mailbox ready"), "{log}");
    assert!(
        log.contains("file-descriptor limit raised from 256 to "),
        "{log}"
    );
    let limits = lines
        .iter()
        .find(|l| l.contains("connections,") && l.contains("per address"))
        .unwrap_or_else(|| panic!("no connection limits logged: {log}"));
    let most: usize = limits
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{limits}"));
    assert!(most > 256, "{limits}");
}

/// Connections over a limit hold a descriptor until they have had their `error` frame, so
/// only a few are answered at once: while 16 of them stall in their handshake, the next one
/// is closed without a reply, and once they are gone refusals are answered again.
#[tokio::test]
async fn few_refused_connections_are_answered_at_once() {
    let server = start(MailboxConfig {
        limits: Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        },
        ..MailboxConfig::default()
    })
    .await;
    let url = server.url();
    let (_admitted, _) = Client::connect(&url).await;
    // Refused, and never finishing the WebSocket handshake.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        stalled.push(TcpStream::connect(server.local_addr()).await.expect("tcp"));
    }
    let shut = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(&url))
        .await
        .expect("neither answered nor closed");
    assert!(shut.is_err(), "a seventeenth refusal was answered");
    drop(stalled);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
            let frames = Client { ws }.expect_closed().await;
            assert_eq!(frames[0]["error"], "too many connections from your address");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refusals never answered again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}
