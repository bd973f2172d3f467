//! One client connection: WebSocket handshake, `welcome`, then the frame loop of
//! PROTOCOL §3.2–3.6.
//!
//! Every typed frame is acked once it is processed (an `add` once committed), the ack still
//! ahead of the frame's replies on the wire; requests that touch channel state go
//! to the store thread and the connection waits for the answer (so each connection has at
//! most one request in flight). `message` broadcasts arrive on a per-connection queue that
//! exists only once the connection has opened a mailbox; before each reply the connection
//! first forwards any broadcast already queued, so the client sees frames in the order the
//! store handled them. When that queue overflows (the client stopped reading) the
//! connection is closed at once, whatever it was waiting for: a client never sees a gap in
//! the broadcasts, it reconnects and `open` replays the mailbox.
//!
//! A frame is served in the reference server's order, which decides the error a client
//! sees: its `type` (`client::Kind::of`), then whether the request is in turn
//! (`Conn::in_turn`), then its fields (`client::Request::parse`), then the request's own
//! handler, which makes the remaining checks and asks the store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HttpRequest, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::client::{Kind, Malformed, Name, Request, frame_id};
use super::config::MailboxConfig;
use super::request::{
    Frame, Outlet, Queue, Refusal, Request as StoreRequest, client_key, py_float,
};
use super::stall::StallLimit;

/// State shared by the listener and every connection (made by `MailboxServer::spawn`).
pub(crate) struct Shared {
    pub(super) config: MailboxConfig,
    pub(super) ws_config: WebSocketConfig,
    /// The `welcome` object's fields other than `your-address`, each followed by `", "`.
    pub(super) welcome_fields: String,
    pub(super) store: mpsc::UnboundedSender<StoreRequest>,
    pub(super) next_conn: AtomicU64,
    /// Most bytes of broadcasts that may wait for one connection (see `request::Queue`).
    pub(super) queue_budget: usize,
}

type Ws = WebSocketStream<StallLimit<TcpStream>>;

/// The longest a client may take to complete the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most frames handled back to back before replies are written.
const MAX_BURST: usize = 32;

/// Error strings for limits (our own; the reference has no such limits).
pub(crate) const MESSAGE_TOO_LARGE: &str = "message too large";
pub(crate) const TOO_MANY_MESSAGES: &str = "too many messages in this mailbox";
pub(crate) const TOO_MANY_MAILBOXES: &str = "too many mailboxes for this app id";
pub(crate) const SERVER_FULL: &str = "server is full";
pub(crate) const TOO_MANY_FROM_ADDRESS: &str = "too many connections from your address";
pub(crate) const NO_FREE_NAMEPLATE: &str = "unable to find a free nameplate-id";
pub(crate) const TOO_MUCH_FROM_ADDRESS: &str = "too much data stored from your address";
pub(crate) const STORAGE_FULL: &str = "server storage is full";
pub(crate) const DATABASE_ERROR: &str = "server database error";

/// Seconds since the epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Completes a frame prefix (an object missing its `server_tx` and closing brace).
fn finish(prefix: &str) -> Message {
    let tx = py_float(now());
    let mut s = String::with_capacity(prefix.len() + 40);
    s.push_str(prefix);
    s.push_str(", \"server_tx\": ");
    s.push_str(&tx);
    s.push('}');
    Message::text(s)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// How the frame loop goes on after a frame.
enum Stop {
    /// Drop the connection (the reference drops it on an unhandled exception).
    Drop,
    /// Close after sending an error.
    Close(CloseCode),
}

/// What a handler reports besides success.
enum Fail {
    /// Send `error` with this string and the frame as `orig`; keep the connection.
    Error(&'static str),
    /// As `Error`, then close the connection.
    ErrorThenClose(&'static str, CloseCode),
    /// Drop the connection without a reply.
    Drop,
}

impl From<Malformed> for Fail {
    fn from(m: Malformed) -> Fail {
        match m {
            Malformed::Error(e) => Fail::Error(e),
            Malformed::Drop => Fail::Drop,
        }
    }
}

impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Fail {
        match r {
            Refusal::Crowded => Fail::Error("crowded"),
            Refusal::Reclaimed => Fail::Error("reclaimed"),
            Refusal::TooManyMailboxes => Fail::Error(TOO_MANY_MAILBOXES),
            Refusal::TooManyMessages => Fail::Error(TOO_MANY_MESSAGES),
            Refusal::NoFreeNameplate => Fail::Error(NO_FREE_NAMEPLATE),
            Refusal::AddressStorageFull => Fail::Error(TOO_MUCH_FROM_ADDRESS),
            Refusal::StorageFull => Fail::Error(STORAGE_FULL),
            Refusal::DatabaseError => Fail::Error(DATABASE_ERROR),
        }
    }
}

/// Per-connection protocol state (the reference's `WebSocketServerProtocol` fields).
struct Conn {
    id: u64,
    shared: Arc<Shared>,
    /// The client's address as its stored bytes are accounted (`request::client_key`).
    client: IpAddr,
    app: Option<Arc<str>>,
    side: Option<Arc<str>>,
    did_allocate: bool,
    did_claim: bool,
    did_release: bool,
    did_close: bool,
    nameplate: Option<String>,
    mailbox_id: Option<String>,
    /// `open` succeeded and no `close` since (the reference's `self._mailbox`).
    mailbox_open: bool,
    /// The mailbox this connection is subscribed to.
    listening: Option<String>,
    /// The store's end of the broadcast queue (made on the first `open`).
    outlet: Option<Outlet>,
    /// The connection's end of the broadcast queue.
    sub_rx: Option<mpsc::UnboundedReceiver<Frame>>,
    /// The broadcast queue's accounting and overflow signal.
    queue: Arc<Queue>,
}

/// Serves one accepted TCP connection until it ends. `refused` carries the reason when
/// the connection is over a limit: it then only gets that `error` and a close.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    refused: Option<&'static str>,
) {
    let _ = stream.set_nodelay(true);
    // A client that stops reading cannot hold its connection for ever by making a write wait.
    let stream = StallLimit::new(stream, shared.config.limits.write_timeout);
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(shared.ws_config));
    let handshake_timeout = HANDSHAKE_TIMEOUT.min(shared.config.limits.idle_timeout);
    let mut ws = match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!("mailbox: handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("mailbox: handshake with {peer} timed out");
            return;
        }
    };
    if let Some(reason) = refused {
        tracing::info!("mailbox: refusing a connection from {peer}: {reason}");
        let prefix = format!(
            "{{\"error\": {}, \"orig\": null, \"type\": \"error\"",
            json_str(reason)
        );
        let _ = ws.feed(finish(&prefix)).await;
        close(&mut ws, CloseCode::Again, reason).await;
        return;
    }

    let id = shared
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let queue = Arc::new(Queue::new(shared.queue_budget));
    let mut conn = Conn {
        id,
        shared,
        client: client_key(peer.ip()),
        app: None,
        side: None,
        did_allocate: false,
        did_claim: false,
        did_release: false,
        did_close: false,
        nameplate: None,
        mailbox_id: None,
        mailbox_open: false,
        listening: None,
        outlet: None,
        sub_rx: None,
        queue: queue.clone(),
    };
    if ws.send(finish(&conn.welcome(peer))).await.is_err() {
        return;
    }
    tokio::select! {
        () = conn.run(&mut ws, &mut shutdown) => {}
        () = queue.overflowed() => {
            // Writes to this client stall (or it cannot keep up): drop the connection,
            // abandoning whatever it was doing, rather than let it miss a broadcast.
            tracing::info!("mailbox: connection {id} is too slow for its broadcasts, closing it");
        }
    }
    conn.leave();
}

/// Sends a close frame (best effort, bounded in time).
async fn close(ws: &mut Ws, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = ws.close(Some(frame)).await;
    })
    .await;
}

/// The handshake callback: only `/v1` is a WebSocket resource.
#[allow(clippy::result_large_err)] // the signature is tungstenite's `Callback`
fn check_path(req: &HttpRequest, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == "/v1" {
        Ok(resp)
    } else {
        let mut err = ErrorResponse::new(Some("not found; the WebSocket is at /v1\n".into()));
        *err.status_mut() = StatusCode::NOT_FOUND;
        Err(err)
    }
}

/// The next broadcast frame, or never when the connection has no mailbox channel.
async fn recv_sub(rx: &mut Option<mpsc::UnboundedReceiver<Frame>>) -> Option<Frame> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Conn {
    /// The frame loop, until the connection ends.
    async fn run(&mut self, ws: &mut Ws, shutdown: &mut watch::Receiver<bool>) {
        let id = self.id;
        let idle_timeout = self.shared.config.limits.idle_timeout;
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        // Replies are queued in tungstenite's write buffer and written when the connection
        // would otherwise wait: frames a client sent together (`bind` + `allocate`, `open` +
        // `add`) are answered with one write.
        let mut unflushed = false;
        // Frames handled since the connection last waited: a client that never pauses still
        // gets its replies, and shutdown and broadcasts their turn.
        let mut burst = 0;
        loop {
            let ready = if unflushed && burst < MAX_BURST {
                ws.next().now_or_never()
            } else {
                None
            };
            burst = if ready.is_some() { burst + 1 } else { 0 };
            let stop = match ready {
                Some(incoming) => {
                    self.incoming(ws, incoming, idle.as_mut(), idle_timeout)
                        .await
                }
                None => {
                    if unflushed {
                        let mut res = self.forward_queued(ws).await;
                        if res.is_ok() {
                            res = ws.flush().await;
                        }
                        if res.is_err() {
                            break;
                        }
                    }
                    tokio::select! {
                        changed = shutdown.changed() => {
                            match changed {
                                // Graceful shutdown: tell the client.
                                Ok(()) => Some(Stop::Close(CloseCode::Away)),
                                // The server handle was dropped: vanish.
                                Err(_) => Some(Stop::Drop),
                            }
                        }
                        incoming = ws.next() => {
                            self.incoming(ws, incoming, idle.as_mut(), idle_timeout).await
                        }
                        Some(frame) = recv_sub(&mut self.sub_rx) => {
                            self.queue.taken(&frame);
                            match ws.feed(finish(&frame)).await {
                                Ok(()) => None,
                                Err(_) => Some(Stop::Drop),
                            }
                        }
                        () = &mut idle => {
                            tracing::debug!("mailbox: connection {id} idle, closing");
                            Some(Stop::Close(CloseCode::Away))
                        }
                    }
                }
            };
            match stop {
                None => unflushed = true,
                Some(Stop::Drop) => break,
                Some(Stop::Close(code)) => {
                    close(ws, code, "").await;
                    break;
                }
            }
        }
    }

    /// The `welcome` frame prefix.
    fn welcome(&self, peer: SocketAddr) -> String {
        let ip = peer.ip().to_canonical();
        let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        let mut w = String::from("{\"welcome\": {");
        w.push_str(&self.shared.welcome_fields);
        w.push_str(&format!(
            "\"your-address\": {{\"port\": {}, \"{family}\": \"{ip}\"}}}}, \"type\": \"welcome\"",
            peer.port()
        ));
        w
    }

    /// Unsubscribes on the way out.
    fn leave(&mut self) {
        if let (Some(app), Some(mailbox)) = (self.app.clone(), self.listening.take()) {
            let _ = self.shared.store.send(StoreRequest::Unsubscribe {
                app,
                mailbox,
                conn: self.id,
            });
        }
    }

    /// Sends every broadcast already queued for this connection.
    async fn forward_queued(&mut self, ws: &mut Ws) -> Result<(), WsError> {
        if let Some(rx) = &mut self.sub_rx {
            while let Ok(frame) = rx.try_recv() {
                self.queue.taken(&frame);
                ws.feed(finish(&frame)).await?;
            }
        }
        Ok(())
    }

    /// Handles what the WebSocket yielded (queueing, not flushing, any reply). `None`
    /// keeps the connection.
    async fn incoming(
        &mut self,
        ws: &mut Ws,
        incoming: Option<Result<Message, WsError>>,
        idle: std::pin::Pin<&mut tokio::time::Sleep>,
        idle_timeout: Duration,
    ) -> Option<Stop> {
        match incoming {
            None => Some(Stop::Drop),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                let prefix = format!(
                    "{{\"error\": {}, \"orig\": null, \"type\": \"error\"",
                    json_str(MESSAGE_TOO_LARGE)
                );
                let _ = ws.feed(finish(&prefix)).await;
                Some(Stop::Close(CloseCode::Size))
            }
            Some(Err(e)) => {
                tracing::debug!("mailbox: connection {}: {e}", self.id);
                Some(Stop::Drop)
            }
            Some(Ok(msg)) => {
                idle.reset(Instant::now() + idle_timeout);
                match msg {
                    Message::Text(t) => self.frame(ws, t.as_str()).await,
                    Message::Binary(b) => match std::str::from_utf8(&b) {
                        Ok(t) => self.frame(ws, t).await,
                        Err(_) => Some(Stop::Close(CloseCode::Error)),
                    },
                    Message::Close(_) => Some(Stop::Drop),
                    // tungstenite queued the pong; the next flush sends it.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
                }
            }
        }
    }

    /// Handles one text frame, queueing the replies. `None` keeps the connection.
    async fn frame(&mut self, ws: &mut Ws, text: &str) -> Option<Stop> {
        let msg = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            // Not a JSON object: the reference's handler raises and drops the connection.
            _ => return Some(Stop::Close(CloseCode::Error)),
        };
        let mut out: Vec<String> = Vec::new();
        let result = match Kind::of(&msg) {
            // Not acked: the reference raises before it acks.
            Err(e) => Err(e.into()),
            Ok(kind) => {
                // The ack is queued only once the request is done (an `add` committed):
                // tungstenite writes its buffer out whenever it fills, so an ack queued
                // earlier could reach the client before the commit, and a crash then would
                // lose an acknowledged message. On the wire it still comes first.
                let result = self.dispatch(kind, &msg, &mut out).await;
                let id = frame_id(&msg);
                if ws
                    .feed(finish(&format!("{{\"id\": {id}, \"type\": \"ack\"")))
                    .await
                    .is_err()
                {
                    return Some(Stop::Drop);
                }
                result
            }
        };
        // Broadcasts the store delivered before answering go out first.
        if self.forward_queued(ws).await.is_err() {
            return Some(Stop::Drop);
        }
        for prefix in &out {
            if ws.feed(finish(prefix)).await.is_err() {
                return Some(Stop::Drop);
            }
        }
        match result {
            Ok(()) => None,
            Err(Fail::Drop) => Some(Stop::Close(CloseCode::Error)),
            Err(Fail::Error(e)) => {
                let prefix = format!(
                    "{{\"error\": {}, \"orig\": {text}, \"type\": \"error\"",
                    json_str(e)
                );
                if ws.feed(finish(&prefix)).await.is_err() {
                    return Some(Stop::Drop);
                }
                None
            }
            Err(Fail::ErrorThenClose(e, code)) => {
                let prefix = format!(
                    "{{\"error\": {}, \"orig\": {text}, \"type\": \"error\"",
                    json_str(e)
                );
                let _ = ws.feed(finish(&prefix)).await;
                Some(Stop::Close(code))
            }
        }
    }

    /// Serves one typed frame in the reference's order: the connection's state, then the
    /// frame's fields, then the request (whose handler makes the remaining checks).
    /// Replies other than the ack go to `out`.
    async fn dispatch(
        &mut self,
        kind: Kind,
        msg: &Map<String, Value>,
        out: &mut Vec<String>,
    ) -> Result<(), Fail> {
        self.in_turn(kind)?;
        match Request::parse(kind, msg)? {
            Request::Ping { ping } => {
                Self::ping(&ping, out);
                Ok(())
            }
            Request::Bind { appid, side } => {
                self.bind(appid, side);
                Ok(())
            }
            Request::List => self.list(out).await,
            Request::Allocate => self.allocate(out).await,
            Request::Claim { nameplate } => self.claim(nameplate, out).await,
            Request::Release { nameplate } => self.release(nameplate, out).await,
            Request::Open { mailbox } => self.open(mailbox, out).await,
            Request::Add { phase, body, id } => self.add(phase, body, id).await,
            Request::Close { mailbox, mood } => self.close(mailbox, mood, out).await,
        }
    }

    /// The checks the reference makes before it reads a frame's fields.
    fn in_turn(&self, kind: Kind) -> Result<(), Fail> {
        match kind {
            Kind::Ping => Ok(()),
            Kind::Bind if self.app.is_some() || self.side.is_some() => {
                Err(Fail::Error("already bound"))
            }
            Kind::Bind => Ok(()),
            _ => {
                self.bound()?;
                match kind {
                    Kind::Open if self.mailbox_open => {
                        Err(Fail::Error("only one open per connection"))
                    }
                    Kind::Add if !self.mailbox_open => {
                        Err(Fail::Error("must open mailbox before adding"))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Sends a request to the store and waits for its answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> StoreRequest,
    ) -> Result<T, Fail> {
        let (tx, rx) = oneshot::channel();
        self.shared.store.send(make(tx)).map_err(|_| Fail::Drop)?;
        rx.await.map_err(|_| Fail::Drop)
    }

    /// The bound app id and side (`must bind first` otherwise).
    fn bound(&self) -> Result<(Arc<str>, Arc<str>), Fail> {
        match (&self.app, &self.side) {
            (Some(a), Some(s)) => Ok((a.clone(), s.clone())),
            _ => Err(Fail::Error("must bind first")),
        }
    }

    /// `ping`: answered `pong` with the same value, bound or not.
    fn ping(ping: &str, out: &mut Vec<String>) {
        out.push(format!("{{\"pong\": {ping}, \"type\": \"pong\""));
    }

    /// `bind`: sets the connection's app id and side, once.
    fn bind(&mut self, appid: String, side: String) {
        self.app = Some(appid.into());
        self.side = Some(side.into());
    }

    /// `list`: the app's nameplates (an empty list when listing is off).
    async fn list(&self, out: &mut Vec<String>) -> Result<(), Fail> {
        let (app, _) = self.bound()?;
        let names = if self.shared.config.allow_list {
            self.ask(|reply| StoreRequest::List { app, reply })
                .await??
        } else {
            Vec::new()
        };
        let list: Vec<String> = names
            .iter()
            .map(|n| format!("{{\"id\": {}}}", json_str(n)))
            .collect();
        out.push(format!(
            "{{\"nameplates\": [{}], \"type\": \"nameplates\"",
            list.join(", ")
        ));
        Ok(())
    }

    /// `allocate`: one fresh nameplate per connection, claimed for this side.
    async fn allocate(&mut self, out: &mut Vec<String>) -> Result<(), Fail> {
        let (app, side) = self.bound()?;
        if self.did_allocate {
            return Err(Fail::Error("you already allocated one, don't be greedy"));
        }
        let now = now();
        let nameplate = self
            .ask(|reply| StoreRequest::Allocate {
                app,
                side,
                now,
                reply,
            })
            .await??;
        self.did_allocate = true;
        out.push(format!(
            "{{\"nameplate\": {}, \"type\": \"allocated\"",
            json_str(&nameplate)
        ));
        Ok(())
    }

    /// `claim`: one per connection; the reply is the nameplate's mailbox.
    async fn claim(
        &mut self,
        nameplate: Result<String, Malformed>,
        out: &mut Vec<String>,
    ) -> Result<(), Fail> {
        let (app, side) = self.bound()?;
        if self.did_claim {
            return Err(Fail::Error("only one claim per connection"));
        }
        self.did_claim = true;
        let nameplate = nameplate?;
        self.nameplate = Some(nameplate.clone());
        let now = now();
        let mailbox = self
            .ask(|reply| StoreRequest::Claim {
                app,
                side,
                nameplate,
                now,
                reply,
            })
            .await??;
        out.push(format!(
            "{{\"mailbox\": {}, \"type\": \"claimed\"",
            json_str(&mailbox)
        ));
        Ok(())
    }

    /// `release`: one per connection, of the nameplate claimed (a nameplate that is not a
    /// string releases nothing).
    async fn release(&mut self, named: Option<Name>, out: &mut Vec<String>) -> Result<(), Fail> {
        let (app, side) = self.bound()?;
        if self.did_release {
            return Err(Fail::Error("only one release per connection"));
        }
        let nameplate = match named {
            Some(n) => {
                if self
                    .nameplate
                    .as_deref()
                    .is_some_and(|mine| n.as_str() != Some(mine))
                {
                    return Err(Fail::Error("release and claim must use same nameplate"));
                }
                // A non-string nameplate names nothing.
                n.as_str().map(str::to_owned)
            }
            None => Some(
                self.nameplate
                    .clone()
                    .ok_or(Fail::Error("release without nameplate must follow claim"))?,
            ),
        };
        self.did_release = true;
        if let Some(nameplate) = nameplate {
            self.ask(|reply| StoreRequest::Release {
                app,
                side,
                nameplate,
                reply,
            })
            .await??;
        }
        out.push("{\"type\": \"released\"".to_owned());
        Ok(())
    }

    /// `open`: subscribes to the mailbox; the replies are its stored messages.
    async fn open(&mut self, mailbox: String, out: &mut Vec<String>) -> Result<(), Fail> {
        let (app, side) = self.bound()?;
        self.mailbox_id = Some(mailbox.clone());
        let outlet = match &self.outlet {
            Some(outlet) => outlet.clone(),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let outlet = Outlet {
                    tx,
                    queue: self.queue.clone(),
                };
                self.sub_rx = Some(rx);
                self.outlet = Some(outlet.clone());
                outlet
            }
        };
        let conn = self.id;
        let now = now();
        let replay = self
            .ask(|reply| StoreRequest::Open {
                app,
                side,
                mailbox: mailbox.clone(),
                conn,
                outlet,
                now,
                reply,
            })
            .await??;
        self.mailbox_open = true;
        self.listening = Some(mailbox);
        out.extend(replay.iter().map(|f| f.to_string()));
        Ok(())
    }

    /// `add`: stores a message; its echo comes back as a broadcast, like everyone else's.
    async fn add(&mut self, phase: String, body: String, id: String) -> Result<(), Fail> {
        let (app, side) = self.bound()?;
        let mailbox = self.mailbox_id.clone().ok_or(Fail::Drop)?;
        let client = self.client;
        let now = now();
        match self
            .ask(|reply| StoreRequest::Add {
                app,
                side,
                client,
                mailbox,
                phase,
                body,
                id,
                now,
                reply,
            })
            .await?
        {
            Ok(()) => Ok(()),
            Err(Refusal::TooManyMessages) => {
                Err(Fail::ErrorThenClose(TOO_MANY_MESSAGES, CloseCode::Policy))
            }
            Err(r) => Err(r.into()),
        }
    }

    /// `close`: one per connection, of the mailbox opened; unsubscribes.
    async fn close(
        &mut self,
        named: Option<Name>,
        mood: Option<String>,
        out: &mut Vec<String>,
    ) -> Result<(), Fail> {
        let (app, side) = self.bound()?;
        if self.did_close {
            return Err(Fail::Error("only one close per connection"));
        }
        let mailbox = match named {
            Some(m) => {
                if self
                    .mailbox_id
                    .as_deref()
                    .is_some_and(|mine| m.as_str() != Some(mine))
                {
                    return Err(Fail::Error("open and close must use same mailbox"));
                }
                m.as_str().ok_or(Fail::Drop)?.to_owned()
            }
            None => self
                .mailbox_id
                .clone()
                .ok_or(Fail::Error("close without mailbox must follow open"))?,
        };
        let conn = self.id;
        let listening = self.listening.take();
        let now = now();
        let result = self
            .ask(|reply| StoreRequest::Close {
                app: app.clone(),
                side,
                mailbox,
                mood,
                conn,
                now,
                reply,
            })
            .await?;
        if let Err(r) = result {
            // Still subscribed (nothing changed in the store).
            self.listening = listening;
            return Err(r.into());
        }
        if let Some(other) = listening {
            // Subscribed to a different mailbox than the one closed (only
            // possible without a `mailbox` match check): drop that too.
            if Some(&other) != self.mailbox_id.as_ref() {
                let _ = self.shared.store.send(StoreRequest::Unsubscribe {
                    app,
                    mailbox: other,
                    conn,
                });
            }
        }
        self.did_close = true;
        self.mailbox_open = false;
        out.push("{\"type\": \"closed\"".to_owned());
        Ok(())
    }
}
