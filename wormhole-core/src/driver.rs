//! The tokio driver: one task per wormhole owns the WebSocket, the [`Session`] and the
//! [`Connector`], and loops on a `select!` over commands, the connection attempt, frames
//! and the one timer the connector asks for. Every decision (what to send, when to
//! reconnect, ping, give up a link or stop waiting for a close) is the sans-IO machines';
//! the driver only performs their actions and feeds them what happened, with the time.
//! Handles talk to it through the command channel; it reports to an [`EventSink`].
//!
//! The loop never awaits a socket write: outgoing frames go to a writer task through a
//! queue ([`Link`]). A server that stops reading therefore stalls only the writer, and
//! commands, the keepalive and the close deadline still run; dropping the link aborts the
//! writer and closes the socket.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::command::Command;
use crate::error::Error;
use crate::proto::connector::{Action, Connector, ConnectorConfig};
use crate::proto::session::{self, Session};
use crate::proto::wire::{MAX_FRAME_BYTES, ServerMessage};
use crate::trace::Tracer;

/// Where the driver reports (the wormhole's shared state).
pub(crate) trait EventSink: Send + Sync {
    /// One session event.
    fn dispatch(&self, ev: session::Event);
    /// The driver has ended: with the session done, or `suspended` (stopped with the
    /// session left as it was on the server, to be continued from a snapshot).
    fn finished(&self, suspended: bool);
    /// The events dispatched that the application has not taken yet (delegated mode).
    fn pending_events(&self) -> Vec<crate::event::Event>;
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Timing knobs for one driver.
#[derive(Debug, Clone)]
pub(crate) struct DriverConfig {
    pub url: String,
    pub connect_timeout: Duration,
    pub close_timeout: Duration,
    pub keepalive: Duration,
    pub trace: Option<crate::trace::StateTrace>,
    pub proxy: Option<crate::proxy::Socks5>,
}

async fn connect(
    url: String,
    timeout: Duration,
    proxy: Option<crate::proxy::Socks5>,
) -> Result<Ws, String> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_FRAME_BYTES);
    config.max_frame_size = Some(MAX_FRAME_BYTES);
    let fut = async {
        let Some(proxy) = proxy else {
            return tokio_tungstenite::connect_async_with_config(url, Some(config), true)
                .await
                .map(|(ws, _)| ws)
                .map_err(|e| e.to_string());
        };
        // Through the proxy: the TCP connection, then TLS (for wss) and the upgrade on it.
        let uri: tokio_tungstenite::tungstenite::http::Uri =
            url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let host = uri.host().ok_or("the URL has no host")?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("wss") {
                443
            } else {
                80
            });
        let tcp = proxy.connect(host, port).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        #[cfg(feature = "tls")]
        let r = tokio_tungstenite::client_async_tls_with_config(url, tcp, Some(config), None).await;
        #[cfg(not(feature = "tls"))]
        let r = {
            if uri.scheme_str() == Some("wss") {
                return Err("wss:// URLs need the `tls` feature".into());
            }
            let plain = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
            tokio_tungstenite::client_async_with_config(url, plain, Some(config)).await
        };
        r.map(|(ws, _)| ws).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

/// One live WebSocket connection: the read half, owned by the driver loop, and a writer
/// task that owns the write half and sends whatever is queued, in order. Dropping the
/// link aborts the writer, which closes the socket.
struct Link {
    frames: SplitStream<Ws>,
    out: mpsc::UnboundedSender<Message>,
    writer: tokio::task::JoinHandle<()>,
}

impl Link {
    fn new(ws: Ws) -> Link {
        let (sink, frames) = ws.split();
        let (out, queue) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_all(sink, queue));
        Link {
            frames,
            out,
            writer,
        }
    }

    /// Queue one frame; never waits. A dead writer shows up in the loop's `select!`.
    fn send(&self, msg: Message) {
        let _ = self.out.send(msg);
    }

    /// The next frame from the server, or `None` once the connection is unusable (closed,
    /// failed, or the writer could not send).
    async fn next(&mut self) -> Option<Result<Message, WsError>> {
        tokio::select! {
            frame = self.frames.next() => frame,
            _ = &mut self.writer => None,
        }
    }

    /// Send a Close frame and give the writer at most `grace` to flush what is queued.
    async fn close(mut self, grace: Duration) {
        self.send(Message::Close(None));
        let _ = tokio::time::timeout(grace, &mut self.writer).await;
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// The writer task: send queued frames until the queue closes or the socket fails.
/// Frames queued together leave in one flush.
async fn write_all(mut sink: SplitSink<Ws, Message>, mut queue: mpsc::UnboundedReceiver<Message>) {
    while let Some(first) = queue.recv().await {
        let mut closing = false;
        let mut next = Some(first);
        while let Some(msg) = next {
            closing |= matches!(msg, Message::Close(_));
            if sink.feed(msg).await.is_err() {
                return;
            }
            next = queue.try_recv().ok();
        }
        if sink.flush().await.is_err() || closing {
            return;
        }
    }
}

type Connecting = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ws, String>> + Send>>;

/// The connector's clock reading.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Retry jitter in `[0, 1)`.
fn jitter() -> f64 {
    rand::random()
}

/// A connector input the driver made in a state it should not have (a bug): fail the
/// session loudly rather than carry on.
fn check(session: &mut Session, r: crate::error::Result<()>) {
    if let Err(e) = r {
        session.fail_local(e);
    }
}

/// Run one wormhole until its session is done.
pub(crate) async fn run(
    cfg: DriverConfig,
    mut session: Session,
    sink: std::sync::Arc<dyn EventSink>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut connector = Connector::new(ConnectorConfig {
        keepalive: cfg.keepalive,
        close_timeout: cfg.close_timeout,
    });
    let mut ws: Option<Link> = None;
    let mut connecting: Option<Connecting> = None;
    let mut commands_open = true;
    // Journaled mode: while above 0, frames stay in the session until released.
    let mut held: u32 = 0;
    let mut tracer = cfg.trace.clone().map(|t| Tracer::new(t, &session));
    // The input the session last took, for the trace.
    let mut input: std::borrow::Cow<'static, str> = "".into();
    let mut suspended = false;

    loop {
        if suspended {
            // Nothing more goes out: what the session still holds is in the snapshot,
            // and the restored copy sends it.
            connector.stop();
            if let Some(link) = ws.take() {
                link.close(Duration::from_secs(2)).await;
            }
            break;
        }
        // Perform what the connector asks.
        while let Some(action) = connector.poll_action() {
            match action {
                Action::Connect => {
                    connecting = Some(Box::pin(connect(
                        cfg.url.clone(),
                        cfg.connect_timeout,
                        cfg.proxy.clone(),
                    )));
                }
                Action::Ping => {
                    if let Some(link) = ws.as_ref() {
                        link.send(Message::Ping(Vec::new().into()));
                    }
                }
                Action::DropLink => {
                    tracing::debug!(url = %cfg.url, "the mailbox link went silent; will reconnect");
                    ws = None;
                    session.disconnected();
                    if let Some(t) = &tracer {
                        t.link("lost");
                    }
                    input = "lost".into();
                }
                Action::AbandonClose => {
                    session.abandon_close();
                    input = "close_timeout".into();
                }
            }
        }
        if let Some(t) = &mut tracer {
            t.after(&session, &input);
        }
        // Drain the session: frames out (unless held), events to the application.
        while let Some(link) = ws.as_ref().filter(|_| held == 0) {
            let Some(msg) = session.poll_transmit() else {
                break;
            };
            let id = session.frame_id();
            let text = msg.to_frame_text(&id);
            if let Some(t) = &tracer {
                t.tx(&text);
            }
            link.send(Message::text(text));
        }
        while let Some(ev) = session.poll_event() {
            sink.dispatch(ev);
        }
        if session.is_done() {
            connector.stop();
            if let Some(link) = ws.take() {
                link.close(Duration::from_secs(2)).await;
            }
            break;
        }
        if session.is_closing() {
            connector.closing(now());
        }
        let timer = connector.poll_timeout().map(Instant::from_std);

        tokio::select! {
            cmd = commands.recv(), if commands_open => match cmd {
                Some(Command::Hold) => held += 1,
                Some(Command::Release) => held = held.saturating_sub(1),
                Some(Command::Serialize(reply)) => {
                    // Every event of the session so far is dispatched (drained above), so
                    // the snapshot and the pending events describe the same instant.
                    let r = session.snapshot().map(|v| (v, sink.pending_events()));
                    let _ = reply.send(r);
                }
                Some(Command::Suspend(reply)) => {
                    let r = session.snapshot().map(|v| (v, sink.pending_events()));
                    // Only stop once the snapshot exists and its events can be saved (see
                    // `SavedEvent`): a suspend that fails leaves it running.
                    suspended = r.as_ref().is_ok_and(|(_, events)| {
                        !events.iter().any(|e| {
                            matches!(e, crate::event::Event::Transfer(_) | crate::event::Event::Closed(_))
                        })
                    });
                    input = "suspend".into();
                    let _ = reply.send(r);
                }
                Some(cmd) => {
                    input = cmd.label().into();
                    cmd.apply(&mut session);
                }
                None => {
                    // Every handle is gone: release and close like a cancel.
                    commands_open = false;
                    session.cancel();
                    input = "cancel".into();
                }
            },
            res = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match res {
                    Ok(sock) => {
                        tracing::debug!(url = %cfg.url, "connected to the mailbox server");
                        ws = Some(Link::new(sock));
                        let r = connector.connection_made(now());
                        check(&mut session, r);
                        if let Some(t) = &tracer {
                            t.link("connected");
                        }
                        session.connected();
                        input = "connected".into();
                    }
                    Err(reason) => {
                        input = "connection_failed".into();
                        match connector.connection_failed(now(), jitter()) {
                            Ok(true) => session.fail_local(Error::ServerConnection { url: cfg.url.clone(), reason }),
                            Ok(false) => tracing::debug!(url = %cfg.url, %reason, "reconnection failed"),
                            Err(e) => session.fail_local(e),
                        }
                    }
                }
            },
            frame = async { ws.as_mut().expect("guarded").next().await }, if ws.is_some() => {
                match frame {
                    Some(Ok(msg)) if !matches!(msg, Message::Close(_)) => {
                        let r = connector.frame_received(now());
                        check(&mut session, r);
                        match msg {
                            Message::Text(text) => {
                                if let Some(t) = &tracer {
                                    t.rx(text.as_str(), session.side());
                                }
                                input = "rx".into();
                                match ServerMessage::parse(text.as_str()) {
                                    Ok(msg) => {
                                        if tracer.is_some() {
                                            input = format!("rx({})", msg.kind()).into();
                                        }
                                        session.handle_server(msg)
                                    }
                                    Err(e) => session.protocol_error(e),
                                }
                            }
                            Message::Binary(_) => session
                                .protocol_error(Error::Protocol("server sent a binary frame".into())),
                            _ => {} // ping, pong
                        }
                    }
                    _ => {
                        tracing::debug!(url = %cfg.url, "lost the mailbox connection; will reconnect");
                        ws = None;
                        let r = connector.connection_lost(now(), jitter());
                        check(&mut session, r);
                        session.disconnected();
                        if let Some(t) = &tracer {
                            t.link("lost");
                        }
                        input = "lost".into();
                    }
                }
            },
            _ = async { sleep_until(timer.expect("guarded")).await }, if timer.is_some() => {
                connector.handle_timeout(now(), jitter());
            },
        }
    }
    sink.finished(suspended);
}
