//! The tokio driver: one task per wormhole owns the WebSocket and the [`Session`] and loops
//! on a `select!` over commands, frames, the reconnect timer, keepalive and the close
//! deadline. Handles talk to it only through the command channel and the shared state.
//!
//! The loop never awaits a socket write: outgoing frames go to a writer task through a
//! queue ([`Link`]). A server that stops reading therefore stalls only the writer, and
//! commands, the keepalive and the close deadline still run; dropping the link aborts the
//! writer and closes the socket.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::api::{Command, Shared};
use crate::error::Error;
use crate::proto::session::Session;
use crate::proto::wire::{MAX_FRAME_BYTES, ServerMessage};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Timing knobs for one driver.
#[derive(Debug, Clone)]
pub(crate) struct DriverConfig {
    pub url: String,
    pub connect_timeout: Duration,
    pub close_timeout: Duration,
    pub keepalive: Duration,
}

/// The reference client's reconnect delay for the `n`-th consecutive retry (n ≥ 1):
/// `min(1.5^n, 60) + U[0,1)` seconds (PROTOCOL §3.8). `jitter` is in `[0, 1)`.
pub(crate) fn reconnect_delay(n: u32, jitter: f64) -> Duration {
    let base = 1.5f64.powi(n.min(20) as i32).min(60.0);
    Duration::from_secs_f64(base + jitter.clamp(0.0, 0.999))
}

/// Count one more consecutive retry and say when to make it.
fn next_retry(retries: &mut u32) -> Option<Instant> {
    *retries += 1;
    Some(Instant::now() + reconnect_delay(*retries, rand::thread_rng().r#gen()))
}

async fn connect(url: String, timeout: Duration) -> Result<Ws, String> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_FRAME_BYTES);
    config.max_frame_size = Some(MAX_FRAME_BYTES);
    let fut = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
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

/// Run one wormhole until its session is done.
pub(crate) async fn run(
    cfg: DriverConfig,
    mut session: Session,
    shared: std::sync::Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut ws: Option<Link> = None;
    let mut connecting: Option<Connecting> =
        Some(Box::pin(connect(cfg.url.clone(), cfg.connect_timeout)));
    let mut ever_connected = false;
    let mut retries: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    let mut close_deadline: Option<Instant> = None;
    let mut commands_open = true;
    let mut last_rx = Instant::now();
    let mut keepalive = tokio::time::interval(cfg.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        // Drain the session: frames out, events to the application.
        while let Some(link) = ws.as_ref() {
            let Some(msg) = session.poll_transmit() else {
                break;
            };
            let id = session.frame_id();
            link.send(Message::text(msg.to_frame_text(&id)));
        }
        while let Some(ev) = session.poll_event() {
            shared.dispatch(ev);
        }
        if session.is_done() {
            if let Some(link) = ws.take() {
                link.close(Duration::from_secs(2)).await;
            }
            break;
        }
        if session.is_closing() && close_deadline.is_none() {
            close_deadline = Some(Instant::now() + cfg.close_timeout);
        }

        tokio::select! {
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => cmd.apply(&mut session),
                None => {
                    // Every handle is gone: release and close like a cancel.
                    commands_open = false;
                    session.cancel();
                }
            },
            res = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match res {
                    Ok(sock) => {
                        tracing::debug!(url = %cfg.url, "connected to the mailbox server");
                        ws = Some(Link::new(sock));
                        ever_connected = true;
                        retries = 0;
                        last_rx = Instant::now();
                        keepalive.reset();
                        session.connected();
                    }
                    Err(reason) if !ever_connected => {
                        session.fail_local(Error::ServerConnection { url: cfg.url.clone(), reason });
                    }
                    Err(reason) => {
                        tracing::debug!(url = %cfg.url, %reason, retries, "reconnection failed");
                        retry_at = next_retry(&mut retries);
                    }
                }
            },
            frame = async { ws.as_mut().expect("guarded").next().await }, if ws.is_some() => {
                last_rx = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match ServerMessage::parse(text.as_str()) {
                        Ok(msg) => session.handle_server(msg),
                        Err(e) => session.protocol_error(e),
                    },
                    Some(Ok(Message::Binary(_))) => {
                        session.protocol_error(Error::Protocol("server sent a binary frame".into()))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        tracing::debug!(url = %cfg.url, "lost the mailbox connection; will reconnect");
                        ws = None;
                        session.disconnected();
                        retry_at = next_retry(&mut retries);
                    }
                }
            },
            _ = async { sleep_until(retry_at.expect("guarded")).await }, if retry_at.is_some() && connecting.is_none() && ws.is_none() => {
                retry_at = None;
                connecting = Some(Box::pin(connect(cfg.url.clone(), cfg.connect_timeout)));
            },
            _ = keepalive.tick(), if ws.is_some() => {
                if last_rx.elapsed() > cfg.keepalive * 2 {
                    // No frame (not even a pong) for two intervals: the link is dead.
                    ws = None;
                    session.disconnected();
                    retry_at = next_retry(&mut retries);
                } else if let Some(link) = ws.as_ref() {
                    link.send(Message::Ping(Vec::new().into()));
                }
            },
            _ = async { sleep_until(close_deadline.expect("guarded")).await }, if close_deadline.is_some() => {
                session.abandon_close();
            },
        }
    }
    shared.driver_finished();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_matches_reference() {
        assert_eq!(reconnect_delay(1, 0.0), Duration::from_secs_f64(1.5));
        assert_eq!(reconnect_delay(2, 0.5), Duration::from_secs_f64(2.25 + 0.5));
        assert_eq!(reconnect_delay(11, 0.0), Duration::from_secs_f64(60.0));
        assert_eq!(reconnect_delay(1000, 0.0), Duration::from_secs_f64(60.0));
    }
}
