//! The mailbox server under a low file-descriptor limit. This file is its own test process
//! (with one test), because it lowers the process's `RLIMIT_NOFILE` and uses up its
//! descriptors on purpose.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wormhole_server::{MailboxConfig, MailboxServer};

const TIMEOUT: Duration = Duration::from_secs(10);
const FD_LIMIT: u64 = 256;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The log, as text.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn count(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned();
        text.lines().filter(|l| l.contains(needle)).count()
    }
}

/// Connects from the loopback address `from` and returns the socket and its first frame.
async fn connect(from: &str, server: SocketAddr) -> (Ws, Value) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    let stream = tokio::time::timeout(TIMEOUT, socket.connect(server))
        .await
        .expect("connect timeout")
        .expect("connect");
    let (mut ws, _) = tokio::time::timeout(
        TIMEOUT,
        tokio_tungstenite::client_async(format!("ws://{server}/v1"), MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("handshake timeout")
    .expect("handshake");
    let first = next(&mut ws).await.expect("a first frame");
    (ws, first)
}

/// The next text frame as JSON, or `None` once the connection is closed.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for a frame")
        {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(t))) => {
                return Some(serde_json::from_str(t.as_str()).expect("json"));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// With a 256-descriptor limit (like the usual 1024, only smaller), the server admits
/// fewer connections than configured so that it never runs out of descriptors, and at most
/// half of them from one address: one address cannot take them all, the extra
/// connections get an `error` frame, and another address is still served. When the
/// descriptors run out anyway (taken by someone else in the process), accepting pauses
/// with one warning, not a warning per attempt, and resumes once they are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_fit_the_descriptor_limit() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(FD_LIMIT),
            maximum: hard,
        },
    )
    .expect("lower RLIMIT_NOFILE");

    let server = MailboxServer::bind("127.0.0.1:0", MailboxConfig::default())
        .await
        .expect("bind")
        .spawn();
    let addr = server.local_addr();
    let limits = server.limits();
    assert!(
        (limits.max_connections as u64) < FD_LIMIT - 32,
        "{limits:?}"
    );
    assert!(
        limits.max_connections_per_ip <= limits.max_connections / 2,
        "{limits:?}"
    );

    // One address: its share, then refusals with an error frame (not a hang).
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..limits.max_connections_per_ip + 10 {
        let (mut ws, first) = connect("127.0.0.1", addr).await;
        if first["type"] == "welcome" {
            assert_eq!(refused, 0, "admitted after a refusal");
            held.push(ws);
        } else {
            assert_eq!(first["type"], "error", "{first}");
            assert_eq!(first["error"], "too many connections from your address");
            assert_eq!(next(&mut ws).await, None);
            refused += 1;
        }
    }
    assert_eq!(held.len(), limits.max_connections_per_ip);
    assert_eq!(refused, 10);

    // Another address is served.
    let (mut other, first) = connect("127.0.0.2", addr).await;
    assert_eq!(first["type"], "welcome", "{first}");
    other
        .send(Message::text(
            json!({"type": "ping", "ping": 5}).to_string(),
        ))
        .await
        .expect("send");
    assert_eq!(next(&mut other).await.expect("ack")["type"], "ack");
    assert_eq!(next(&mut other).await.expect("pong")["pong"], 5);

    // Use up every descriptor but one, which the next client takes: the server's accept
    // fails with EMFILE.
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    hog.pop();
    let late = tokio::spawn(connect("127.0.0.3", addr));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!late.is_finished(), "accepted without a descriptor?");
    assert_eq!(log.count("accept failed"), 1, "one warning per burst");
    drop(hog);
    let (_late, first) = tokio::time::timeout(TIMEOUT, late)
        .await
        .expect("never accepted after descriptors were freed")
        .expect("task");
    assert_eq!(first["type"], "welcome", "{first}");
    assert_eq!(log.count("accepting again"), 1);
    drop(held);
    server.shutdown().await;
}
