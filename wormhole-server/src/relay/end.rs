//! One relay client connection once its handshake line is read ([`End`]): a TCP stream or
//! a WebSocket. The listener (`relay`) makes them and pairs them; `copy` moves bytes
//! between two of them.

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// One client connection, after its handshake.
pub(crate) enum End {
    /// Plain TCP.
    Tcp(TcpStream),
    /// A WebSocket carrying binary messages.
    Ws(Box<WebSocketStream<TcpStream>>),
}

impl End {
    /// Sends a control line (`ok\n`, `impatient\n`…): raw bytes on TCP, one binary
    /// message on WebSocket.
    pub(crate) async fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            End::Tcp(s) => s.write_all(line.as_bytes()).await,
            End::Ws(ws) => ws
                .send(Message::binary(line.as_bytes().to_vec()))
                .await
                .map_err(std::io::Error::other),
        }
    }

    /// Waits until the client sends something or goes away while it waits for its
    /// partner. Returns true when it sent data (it is impatient).
    pub(crate) async fn sent_something(&mut self) -> bool {
        match self {
            End::Tcp(s) => {
                let mut b = [0u8; 1];
                matches!(s.peek(&mut b).await, Ok(n) if n > 0)
            }
            End::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(_) | Message::Text(_))) => return true,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                    Some(Ok(_)) => continue, // ping/pong
                }
            },
        }
    }
}
