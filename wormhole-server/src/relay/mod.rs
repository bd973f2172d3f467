//! The transit relay: PROTOCOL §7.7, with the behaviour of magic-wormhole-transit-relay
//! 0.5.0.
//!
//! A client connects (TCP, or WebSocket with binary frames) and sends one handshake line,
//! `please relay TOKEN for side SIDE\n` (or the legacy `please relay TOKEN\n`). Two
//! connections with the same token and different sides (or a missing side) are paired:
//! both get `ok\n`, other connections waiting with that token are closed as redundant, and
//! from then on bytes are copied both ways without being looked at. A TCP–TCP pair is
//! copied with `splice(2)` through a kernel pipe on Linux, so the data never enters user
//! space. When either end closes, the other is closed too (no half-close).
//!
//! Unlike the reference, every stage has a time limit: a handshake that does not complete,
//! a connection whose partner never arrives, and a pair with no traffic either way (for
//! example a lone half-open connection whose peer vanished) are closed and forgotten.
//!
//! Call order: [`RelayServer::bind`], [`RelayServer::spawn`] on a tokio runtime, then
//! [`RelayHandle::shutdown`] (or drop the handle to stop at once).

mod copy;
mod end;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use end::End;

/// The longest handshake line accepted, newline included (as the reference).
const MAX_HANDSHAKE: usize = 1024;

/// Relay configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Most simultaneous connections (TCP and WebSocket together). Connections over the
    /// limit are closed at once, before their handshake is read.
    pub max_connections: usize,
    /// A connection must complete its handshake line within this time, else it is
    /// closed (after `bad handshake\n` when it sent something).
    pub handshake_timeout: Duration,
    /// A connection whose partner has not arrived after this long is closed.
    pub pairing_timeout: Duration,
    /// A pair with no traffic in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Largest WebSocket message accepted from a WebSocket client.
    pub max_websocket_message: usize,
}

impl Default for RelayConfig {
    /// 10,000 connections, 30 s for the handshake, 30 min for the partner to arrive (a
    /// person may still be reading an offer), 30 min of silence, 1 MiB WebSocket messages.
    fn default() -> Self {
        RelayConfig {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(30),
            pairing_timeout: Duration::from_secs(30 * 60),
            idle_timeout: Duration::from_secs(30 * 60),
            max_websocket_message: 1 << 20,
        }
    }
}

/// A bound, not yet running relay.
pub struct RelayServer {
    tcp: TcpListener,
    ws: Option<TcpListener>,
    config: RelayConfig,
}

/// A running relay. Drop it to stop at once, or call [`RelayHandle::shutdown`].
pub struct RelayHandle {
    local_addr: SocketAddr,
    websocket_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    accept: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<Stats>,
}

/// Counters a running relay keeps (for operators and tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Connections waiting for their partner now.
    pub waiting: AtomicUsize,
    /// Pairs made since start.
    pub pairs: AtomicU64,
    /// Bytes copied since start (both directions, pairs that have ended or are running).
    pub bytes: AtomicU64,
}

impl RelayServer {
    /// Binds the TCP listener and, when `websocket_addr` is given, a second listener for
    /// WebSocket clients (any path; binary frames).
    pub async fn bind(
        addr: impl ToSocketAddrs,
        websocket_addr: Option<&str>,
        config: RelayConfig,
    ) -> std::io::Result<RelayServer> {
        let tcp = TcpListener::bind(addr).await?;
        let ws = match websocket_addr {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        Ok(RelayServer { tcp, ws, config })
    }

    /// The TCP address the relay listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Starts serving on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> RelayHandle {
        let local_addr = self
            .tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let websocket_addr = self.ws.as_ref().and_then(|l| l.local_addr().ok());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            config: self.config,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stats: stats.clone(),
        });
        let accept = tokio::spawn(accept_loop(self.tcp, self.ws, shared, shutdown_rx));
        tracing::info!("transit relay listening on tcp:{local_addr}");
        RelayHandle {
            local_addr,
            websocket_addr,
            shutdown: shutdown_tx,
            accept: Some(accept),
            stats,
        }
    }
}

impl RelayHandle {
    /// The TCP address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket listener's address, if there is one.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.websocket_addr
    }

    /// The hint a client is given, `tcp:HOST:PORT`.
    pub fn hint(&self) -> String {
        format!("tcp:{}:{}", self.local_addr.ip(), self.local_addr.port())
    }

    /// Live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stops accepting, closes every connection and returns when all are gone.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        tracing::info!("transit relay on {} stopped", self.local_addr);
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

/// A connection waiting for its partner.
struct Waiter {
    id: u64,
    side: Option<String>,
    /// Hands the partner (and its slot) to the waiting connection's task, which then runs
    /// the pair.
    partner: oneshot::Sender<(End, Open)>,
}

struct Shared {
    config: RelayConfig,
    waiting: Mutex<HashMap<String, Vec<Waiter>>>,
    next_id: AtomicU64,
    stats: Arc<Stats>,
}

impl Shared {
    /// Removes the waiter `id` under `token`, if it is still there.
    fn forget(&self, token: &str, id: u64) {
        if let Ok(mut w) = self.waiting.lock()
            && let Some(list) = w.get_mut(token)
        {
            let before = list.len();
            list.retain(|x| x.id != id);
            if list.len() != before {
                self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                w.remove(token);
            }
        }
    }
}

/// Decrements the open-connection counter when a connection's task ends.
struct Open(Arc<Stats>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    tcp: TcpListener,
    ws: Option<TcpListener>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = tcp.accept() => a.map(|(s, p)| (s, p, false)),
            a = async { ws.as_ref().expect("guarded").accept().await }, if ws.is_some() => {
                a.map(|(s, p)| (s, p, true))
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        match accepted {
            Ok((stream, peer, websocket)) => {
                let open = shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                let guard = Open(shared.stats.clone());
                if open >= shared.config.max_connections {
                    tracing::debug!("relay: full, refusing {peer}");
                    drop(stream);
                    drop(guard);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(serve(stream, websocket, guard, shared));
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!("relay: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(tcp);
    drop(ws);
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// What a handshake line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Handshake {
    token: String,
    side: Option<String>,
}

fn is_word(s: &str, len: usize) -> bool {
    // Python's `\w` on a byte string: ASCII letters, digits and underscore.
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses `please relay TOKEN` or `please relay TOKEN for side SIDE` (no newline).
pub(crate) fn parse_handshake(line: &[u8]) -> Option<Handshake> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("please relay ")?;
    let (token, side) = match rest.split_once(" for side ") {
        Some((t, s)) => (t, Some(s)),
        None => (rest, None),
    };
    if !is_word(token, 64) || !side.is_none_or(|s| is_word(s, 16)) {
        return None;
    }
    Some(Handshake {
        token: token.to_owned(),
        side: side.map(str::to_owned),
    })
}

/// Parse one handshake line (without its newline) as the relay does: the token and the
/// optional side of `please relay TOKEN [for side SIDE]`, or `None` if the relay would
/// answer `bad handshake`. Public for the fuzz targets and tests.
pub fn parse_handshake_line(line: &[u8]) -> Option<(String, Option<String>)> {
    parse_handshake(line).map(|h| (h.token, h.side))
}

/// The outcome of reading a handshake.
enum Read {
    Ok(Handshake, End),
    /// Bytes after the newline: the client did not wait for `ok`.
    Impatient(End),
    Bad(End),
    Gone,
}

async fn read_tcp_handshake(mut s: TcpStream) -> Read {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; MAX_HANDSHAKE];
    loop {
        match s.read(&mut chunk[..MAX_HANDSHAKE - buf.len()]).await {
            Ok(0) | Err(_) => return Read::Gone,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            return match parse_handshake(&buf[..nl]) {
                None => Read::Bad(End::Tcp(s)),
                Some(_) if nl + 1 < buf.len() => Read::Impatient(End::Tcp(s)),
                Some(h) => Read::Ok(h, End::Tcp(s)),
            };
        }
        if buf.len() >= MAX_HANDSHAKE {
            return Read::Bad(End::Tcp(s));
        }
    }
}

async fn read_ws_handshake(s: TcpStream, max_message: usize) -> Read {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(max_message);
    config.max_frame_size = Some(max_message);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(s, Some(config)).await else {
        return Read::Gone;
    };
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                let line = b.strip_suffix(b"\n").unwrap_or(&b);
                return match parse_handshake(line) {
                    Some(h) => Read::Ok(h, End::Ws(Box::new(ws))),
                    None => Read::Bad(End::Ws(Box::new(ws))),
                };
            }
            Some(Ok(Message::Text(_))) => return Read::Bad(End::Ws(Box::new(ws))),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Read::Gone,
            Some(Ok(_)) => continue,
        }
    }
}

/// Sends a last line and closes.
async fn refuse(mut end: End, line: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = end.send_line(line).await;
        match &mut end {
            End::Tcp(s) => {
                let _ = s.shutdown().await;
            }
            End::Ws(ws) => {
                let _ = ws.close(None).await;
            }
        }
    })
    .await;
}

async fn serve(stream: TcpStream, websocket: bool, open: Open, shared: Arc<Shared>) {
    let cfg = &shared.config;
    let read = async {
        if websocket {
            read_ws_handshake(stream, cfg.max_websocket_message).await
        } else {
            read_tcp_handshake(stream).await
        }
    };
    let (handshake, mut end) = match tokio::time::timeout(cfg.handshake_timeout, read).await {
        Err(_) | Ok(Read::Gone) => return,
        Ok(Read::Bad(end)) => return refuse(end, "bad handshake\n").await,
        Ok(Read::Impatient(end)) => return refuse(end, "impatient\n").await,
        Ok(Read::Ok(h, end)) => (h, end),
    };

    // Pair with a waiting connection, or wait.
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let mut mine = Some((end, open));
    let (partner_tx, mut partner_rx) = oneshot::channel();
    let mut redundant = Vec::new();
    {
        let Ok(mut waiting) = shared.waiting.lock() else {
            return;
        };
        let list = waiting.entry(handshake.token.clone()).or_default();
        while let Some(pos) = list
            .iter()
            .position(|w| w.side.is_none() || handshake.side.is_none() || w.side != handshake.side)
        {
            let w = list.remove(pos);
            shared.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            match w.partner.send(mine.take().expect("still ours")) {
                Ok(()) => {
                    // Paired: the waiter's task runs the pair. Whoever else waits with
                    // this token is redundant.
                    redundant.extend(list.drain(..).map(|w| w.partner));
                    shared
                        .stats
                        .waiting
                        .fetch_sub(redundant.len(), Ordering::Relaxed);
                    break;
                }
                // That waiter's task already ended: try the next one.
                Err(back) => mine = Some(back),
            }
        }
        if mine.is_some() {
            list.push(Waiter {
                id,
                side: handshake.side.clone(),
                partner: partner_tx,
            });
            shared.stats.waiting.fetch_add(1, Ordering::Relaxed);
        } else if list.is_empty() {
            waiting.remove(&handshake.token);
        }
    }
    // Dropping their senders closes the redundant connections (their tasks see it).
    drop(redundant);
    let Some((e, _open)) = mine else {
        return; // handed over
    };
    end = e;

    enum Woke {
        Partner((End, Open)),
        Dropped,
        Impatient,
        Closed,
        Timeout,
    }
    let woke = tokio::select! {
        p = &mut partner_rx => match p {
            Ok(p) => Woke::Partner(p),
            Err(_) => Woke::Dropped,
        },
        impatient = end.sent_something() => if impatient { Woke::Impatient } else { Woke::Closed },
        _ = tokio::time::sleep(cfg.pairing_timeout) => Woke::Timeout,
    };
    let (partner, _partner_open) = match woke {
        Woke::Partner(p) => p,
        other => {
            shared.forget(&handshake.token, id);
            // A partner may have been handed over just as we woke for another reason.
            if let Ok(p) = partner_rx.try_recv() {
                drop(p);
            }
            match other {
                Woke::Impatient => refuse(end, "impatient\n").await,
                Woke::Dropped => tracing::debug!("relay: redundant connection closed"),
                Woke::Timeout => tracing::debug!("relay: no partner arrived in time"),
                _ => {}
            }
            return;
        }
    };
    shared.stats.pairs.fetch_add(1, Ordering::Relaxed);
    let mut a = end;
    let mut b = partner;
    if a.send_line("ok\n").await.is_err() || b.send_line("ok\n").await.is_err() {
        return;
    }
    let copied = copy::run(a, b, cfg.idle_timeout).await;
    shared.stats.bytes.fetch_add(copied, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes() {
        let t = "a".repeat(64);
        let s = "0123456789abcdef";
        assert_eq!(
            parse_handshake(format!("please relay {t} for side {s}").as_bytes()),
            Some(Handshake {
                token: t.clone(),
                side: Some(s.to_owned())
            })
        );
        assert_eq!(
            parse_handshake(format!("please relay {t}").as_bytes()),
            Some(Handshake {
                token: t.clone(),
                side: None
            })
        );
        for bad in [
            format!("please relay {}", "a".repeat(63)),
            format!("please relay {}", "a".repeat(65)),
            format!("please relay {t} for side 0123"),
            format!("please relay {t} for side {s}0"),
            format!("please relay {t}-"),
            format!("please  relay {t}"),
            format!("please relay {t} for side {s} "),
            format!("please relay {}", "é".repeat(32)),
            "please relay".to_owned(),
            String::new(),
        ] {
            assert_eq!(parse_handshake(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_handshake(b"please relay \xff"), None);
    }
}
