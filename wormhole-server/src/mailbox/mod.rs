//! The rendezvous (mailbox) server: a WebSocket server at path `/v1` speaking PROTOCOL §3
//! like magic-wormhole-mailbox-server 0.8.0.
//!
//! Layout:
//! - `config`: [`MailboxConfig`], [`Limits`], [`Database`] (plain data);
//! - this module: the listener, admission (connection limits, fitted to the
//!   file-descriptor limit), pruning and shutdown;
//! - `client`: client frames parsed into typed requests (and the reference's error texts
//!   for malformed ones);
//! - `conn`: one task per client connection (handshake, `welcome`, the frame loop, one
//!   handler per request);
//! - `request`: what connections and the store hand each other (requests, refusals, the
//!   broadcast queue);
//! - `store`: one thread owning the SQLite database, fed by a channel; it commits before
//!   any reply or broadcast leaves, so a crash never loses an acknowledged message;
//! - `pg`: the same for PostgreSQL, as a task, for several processes sharing the database
//!   (advisory locks per app id, LISTEN/NOTIFY for broadcasts between processes).
//!
//! Both stores sit behind one interface: the [`Request`]s of `request`, sent over a
//! channel, each answered after the commit. Connections do not know which one serves them.
//!
//! Call order: [`MailboxServer::bind`], then [`MailboxServer::spawn`] on a tokio runtime,
//! then [`MailboxHandle::shutdown`]. Dropping the handle instead stops everything at once
//! without closing the connections politely (committed state stays in the database).

mod client;
mod config;
mod conn;
mod pg;
mod request;
mod stall;
mod store;

pub use config::{Database, Limits, MailboxConfig};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use conn::Shared;
use request::Request;

/// A bound, not yet running mailbox server.
pub struct MailboxServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: MailboxConfig,
    db: Backend,
}

/// An open database.
enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(String, tokio_postgres::Client),
}

/// A running mailbox server. Drop it to stop abruptly, or call [`MailboxHandle::shutdown`].
pub struct MailboxHandle {
    local_addr: SocketAddr,
    limits: Limits,
    shutdown: watch::Sender<bool>,
    accept: Option<tokio::task::JoinHandle<()>>,
    store: mpsc::UnboundedSender<Request>,
    healthy: watch::Receiver<bool>,
}

impl MailboxServer {
    /// Opens (or creates) the database and binds the listener. Database errors come back
    /// as [`std::io::Error`]s of kind `Other`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: MailboxConfig,
    ) -> std::io::Result<MailboxServer> {
        let db = match config.database.clone() {
            Database::Postgres(url) => {
                let client = pg::open(&url).await.map_err(std::io::Error::other)?;
                Backend::Postgres(url, client)
            }
            database => {
                let path = match database {
                    Database::File(path) => Some(path),
                    _ => None,
                };
                let db = tokio::task::spawn_blocking(move || store::open(path.as_deref()))
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(std::io::Error::other)?;
                Backend::Sqlite(db)
            }
        };
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(MailboxServer {
            listener,
            local_addr,
            config,
            db,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts serving on the current tokio runtime (the database gets its own thread).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if the OS cannot start a thread.
    pub fn spawn(self) -> MailboxHandle {
        let MailboxServer {
            listener,
            local_addr,
            mut config,
            db,
        } = self;
        fit_descriptor_limit(&mut config.limits);
        let limits = store::StoreLimits {
            max_messages_per_mailbox: config.limits.max_messages_per_mailbox,
            max_mailboxes_per_app: config.limits.max_mailboxes_per_app,
            max_stored_bytes: config.limits.max_stored_bytes,
            max_stored_bytes_per_ip: config.limits.max_stored_bytes_per_ip,
            max_database_bytes: config.limits.max_database_bytes,
        };
        let (store_tx, store_rx) = mpsc::unbounded_channel();
        let (healthy_tx, healthy) = watch::channel(true);
        match db {
            Backend::Sqlite(db) => match store::Store::new(db, limits) {
                Ok(store) => {
                    std::thread::Builder::new()
                        .name("wormhole-mailbox-db".into())
                        .spawn(move || store.run(store_rx))
                        .expect("cannot start the mailbox database thread");
                }
                Err(e) => {
                    // The receiver is dropped: every connection that needs the database
                    // is closed, and the rest of the server keeps running.
                    tracing::error!("mailbox database unusable: {e}");
                }
            },
            Backend::Postgres(url, client) => {
                let store = pg::PgStore::new(url, client, limits, healthy_tx);
                tokio::spawn(store.run(store_rx));
            }
        }
        let mut ws_config = WebSocketConfig::default();
        ws_config.read_buffer_size = 2048;
        // Frames are queued and written together when the connection would wait (see
        // `conn`); only a frame this large is written at once.
        ws_config.write_buffer_size = 64 << 10;
        ws_config.max_write_buffer_size = config
            .limits
            .max_message_bytes
            .saturating_mul(4)
            .max(1 << 20);
        ws_config.max_message_size = Some(config.limits.max_message_bytes);
        ws_config.max_frame_size = Some(config.limits.max_message_bytes);

        let mut welcome_fields = String::new();
        for (key, value) in [
            ("motd", &config.motd),
            ("current_cli_version", &config.current_cli_version),
            ("error", &config.signal_error),
        ] {
            if let Some(v) = value {
                let v = serde_json::to_string(v).unwrap_or_else(|_| "\"\"".to_owned());
                welcome_fields.push_str(&format!("\"{key}\": {v}, "));
            }
        }
        let queue_budget = config
            .limits
            .max_message_bytes
            .saturating_mul(2)
            .max(64 << 10);
        let prune_interval = config.prune_interval.max(Duration::from_millis(10));
        let expiry = config.channel_expiry.as_secs_f64();
        let shared = Arc::new(Shared {
            config,
            ws_config,
            welcome_fields,
            store: store_tx.clone(),
            next_conn: AtomicU64::new(0),
            queue_budget,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);

        // Pruning.
        let mut prune_shutdown = shutdown_rx.clone();
        let prune_store = store_tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(prune_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = prune_shutdown.changed() => break,
                    _ = tick.tick() => {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs_f64())
                            .unwrap_or(0.0);
                        if prune_store.send(Request::Prune { now, expiry }).is_err() {
                            break;
                        }
                    }
                }
            }
        });

        let limits = shared.config.limits.clone();
        let accept = tokio::spawn(accept_loop(listener, shared, shutdown_rx));
        tracing::info!("mailbox server listening on ws://{local_addr}/v1");
        MailboxHandle {
            local_addr,
            limits,
            shutdown: shutdown_tx,
            accept: Some(accept),
            store: store_tx,
            healthy,
        }
    }
}

/// File descriptors kept for everything but admitted connections: the database and its
/// journal, the listeners, the runtime, the standard streams, and connections being
/// refused (at most [`MAX_REFUSING`]).
const FD_RESERVE: u64 = 64;

/// Most connections being refused at once: each holds a descriptor until it has had its
/// `error` frame (or its handshake timed out). Beyond that, a refused connection is closed
/// at once, without a reply.
const MAX_REFUSING: usize = 16;

/// Lowers the connection limits to fit the process's file-descriptor limit, and logs the
/// result.
fn fit_descriptor_limit(limits: &mut Limits) {
    let fd_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let (max, per_ip) = connection_limits(limits, fd_limit);
    let fd_limit = fd_limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    // Keeping back the reserve alone is normal (the default limits equal the usual hard
    // descriptor limit); only a lower descriptor limit deserves a warning.
    let cut = max.saturating_add(FD_RESERVE as usize) < limits.max_connections
        || per_ip < limits.max_connections_per_ip;
    if cut {
        tracing::warn!(
            "mailbox: at most {max} connections, {per_ip} per address (configured {}, {}): \
             the file-descriptor limit is {fd_limit}",
            limits.max_connections,
            limits.max_connections_per_ip
        );
    } else {
        tracing::info!(
            "mailbox: at most {max} connections, {per_ip} per address (file-descriptor \
             limit {fd_limit})"
        );
    }
    limits.max_connections = max;
    limits.max_connections_per_ip = per_ip;
}

/// The connection limits in force under the descriptor limit `fd_limit` (`None`:
/// unlimited): when `fd_limit` less [`FD_RESERVE`] is below `max_connections`, that many
/// connections, and at most half of them per address.
fn connection_limits(limits: &Limits, fd_limit: Option<u64>) -> (usize, usize) {
    let configured = limits.max_connections;
    let per_ip = limits.max_connections_per_ip;
    let Some(fd_limit) = fd_limit else {
        return (configured, per_ip);
    };
    let room = usize::try_from(fd_limit.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    if room >= configured {
        return (configured, per_ip);
    }
    (room, per_ip.min(room / 2).max(1))
}

/// Counts connections per address and in total.
struct Admission {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections being refused.
    refusing: usize,
}

/// Counts a connection being refused while it exists.
struct Refusing(Arc<Mutex<Admission>>);

impl Drop for Refusing {
    fn drop(&mut self) {
        if let Ok(mut a) = self.0.lock() {
            a.refusing = a.refusing.saturating_sub(1);
        }
    }
}

/// How long accepting pauses after it failed (typically EMFILE, out of descriptors): the
/// first pause, and the longest.
const ACCEPT_PAUSE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(500));

/// Releases an admitted connection's slot when dropped.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut a) = self.admission.lock() {
            a.total = a.total.saturating_sub(1);
            if let Some(n) = a.per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    a.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// How long a graceful shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let admission = Arc::new(Mutex::new(Admission {
        total: 0,
        per_ip: HashMap::new(),
        refusing: 0,
    }));
    let mut conns = JoinSet::new();
    // While descriptors are short: when to try again, the next pause, failures so far.
    let mut paused_until: Option<tokio::time::Instant> = None;
    let mut pause = ACCEPT_PAUSE.0;
    let mut failed_accepts: u64 = 0;
    let graceful = loop {
        let resume = async {
            match paused_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = shutdown.changed() => break changed.is_ok(),
            accepted = listener.accept(), if paused_until.is_none() => match accepted {
                Ok((stream, peer)) => {
                    if failed_accepts > 0 {
                        tracing::warn!(
                            "mailbox: accepting again after {failed_accepts} failed attempts"
                        );
                        failed_accepts = 0;
                        pause = ACCEPT_PAUSE.0;
                    }
                    admit(stream, peer, &shared, &admission, &shutdown, &mut conns);
                }
                Err(e) => {
                    // Pending connections wait in the backlog; retrying at once would only
                    // spin (and log) until a descriptor is free.
                    if failed_accepts == 0 {
                        let open = admission.lock().map(|a| a.total).unwrap_or(0);
                        tracing::warn!(
                            "mailbox: accept failed: {e} ({open} connections open); \
                             pausing accepts until it succeeds again"
                        );
                    }
                    failed_accepts += 1;
                    paused_until = Some(tokio::time::Instant::now() + pause);
                    pause = (pause * 2).min(ACCEPT_PAUSE.1);
                }
            },
            () = resume => paused_until = None,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    };
    drop(listener);
    if graceful {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Admits an accepted connection (or starts refusing it) and spawns its task.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    admission: &Arc<Mutex<Admission>>,
    shutdown: &watch::Receiver<bool>,
    conns: &mut JoinSet<()>,
) {
    let ip = peer.ip().to_canonical();
    let limits = &shared.config.limits;
    let Ok(mut a) = admission.lock() else {
        return;
    };
    let from_ip = a.per_ip.get(&ip).copied().unwrap_or(0);
    let refused = if a.total >= limits.max_connections {
        conn::SERVER_FULL
    } else if from_ip >= limits.max_connections_per_ip {
        conn::TOO_MANY_FROM_ADDRESS
    } else {
        a.total += 1;
        a.per_ip.insert(ip, from_ip + 1);
        drop(a);
        let slot = Slot {
            admission: admission.clone(),
            ip,
        };
        let (shared, rx) = (shared.clone(), shutdown.clone());
        conns.spawn(async move {
            let _slot = slot;
            conn::serve(stream, peer, shared, rx, None).await;
        });
        return;
    };
    if a.refusing >= MAX_REFUSING {
        tracing::debug!("mailbox: closing a connection from {peer} at once: {refused}");
        return;
    }
    a.refusing += 1;
    drop(a);
    let refusing = Refusing(admission.clone());
    let (shared, rx) = (shared.clone(), shutdown.clone());
    conns.spawn(async move {
        let _refusing = refusing;
        conn::serve(stream, peer, shared, rx, Some(refused)).await;
    });
}

impl MailboxHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The limits in force: the configured ones, with the connection limits lowered to
    /// fit the file-descriptor limit the process had when the server started.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the server can serve: its store is running and (PostgreSQL) the database
    /// answered its last check, made at least every second. What `/health` reports (see
    /// [`serve_health`]).
    pub fn healthy(&self) -> bool {
        !self.store.is_closed() && *self.healthy.borrow()
    }

    /// A receiver of [`MailboxHandle::healthy`]'s database part, for [`serve_health`].
    pub fn health(&self) -> Health {
        Health {
            store: self.store.clone(),
            healthy: self.healthy.clone(),
        }
    }

    /// The client URL, `ws://{addr}/v1`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.local_addr)
    }

    /// Stops accepting, closes every connection (WebSocket close 1001), commits and
    /// closes the database, and returns when all that is done.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self.store.send(Request::Shutdown { done: done_tx }).is_ok() {
            let _ = done_rx.await;
        }
        tracing::info!("mailbox server on {} stopped", self.local_addr);
    }
}

/// What a health check reads: see [`MailboxHandle::health`].
#[derive(Clone)]
pub struct Health {
    store: mpsc::UnboundedSender<Request>,
    healthy: watch::Receiver<bool>,
}

impl Health {
    /// Whether the server can serve (see [`MailboxHandle::healthy`]).
    pub fn ok(&self) -> bool {
        !self.store.is_closed() && *self.healthy.borrow()
    }
}

/// Answers HTTP health checks on `listener` until the task is dropped: `GET /health` is
/// `200 OK` while [`Health::ok`], `503 Service Unavailable` otherwise; other paths are
/// `404`. Meant for a load balancer (HAProxy's `option httpchk GET /health`), on a port of
/// its own so that it never competes with clients.
pub async fn serve_health(listener: TcpListener, health: Health) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 1024];
            let mut len = 0;
            // The request line is enough; give up on a client that sends nothing.
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                while len < buf.len() && !buf[..len].contains(&b'\n') {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&buf[..len]);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path != "/health" {
                ("404 Not Found", "not found\n")
            } else if health.ok() {
                ("200 OK", "ok\n")
            } else {
                ("503 Service Unavailable", "database unreachable\n")
            };
            let response = format!(
                "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

impl Drop for MailboxHandle {
    fn drop(&mut self) {
        // Without `shutdown()`: the tasks notice the dropped watch sender and stop at
        // once; the database thread ends when its last sender is gone.
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_fit_the_descriptor_limit() {
        let d = Limits::default();
        // Room enough, or no limit: as configured.
        assert_eq!(connection_limits(&d, None), (20_000, 5_000));
        assert_eq!(connection_limits(&d, Some(1 << 20)), (20_000, 5_000));
        assert_eq!(connection_limits(&d, Some(20_064)), (20_000, 5_000));
        // The usual soft limit: 960 connections, half of them per address.
        assert_eq!(connection_limits(&d, Some(1024)), (960, 480));
        // A per-address limit already below half stays.
        assert_eq!(connection_limits(&d, Some(16_064)), (16_000, 5_000));
        // Absurdly low: still one connection.
        assert_eq!(connection_limits(&d, Some(10)), (1, 1));
        // A per-address limit as high as the total is halved too.
        let wide = Limits {
            max_connections: 100_000,
            max_connections_per_ip: 100_000,
            ..d
        };
        assert_eq!(connection_limits(&wide, Some(1024)), (960, 480));
    }
}
