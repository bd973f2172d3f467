//! Moving bytes between one TCP connection and its `fowl` subchannel, both ways, with
//! backpressure and no unbounded buffer.
//!
//! - socket → subchannel: one read of at most [`CHUNK`] bytes becomes one record,
//!   sent with the core's `send`, which waits while the Dilation write window is full; the
//!   socket is not read meanwhile, so TCP pushes back on the local client.
//! - subchannel → socket: one record is written whole before the next is taken; the core
//!   stops acknowledging the peer's records while too much is unread, so the peer stops.
//!
//! Ends: the socket's end of stream (a half-close too) or a read error closes the
//! subchannel, and what the peer still sends until its close answers ours is written. The
//! peer's close (or a failed subchannel, or a failed write to the socket) ends the
//! connection: the socket is shut down after what arrived is written, and dropped.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wormhole_core::dilation::handle::Subchannel;

/// Bytes read from a socket at most per record.
const CHUNK: usize = 256 << 10;

/// Forward between `tcp` and `sub` until both directions are done (see the module docs).
pub async fn pump(tcp: TcpStream, mut sub: Subchannel) {
    let _ = tcp.set_nodelay(true);
    let id = sub.id();
    let (mut rd, mut wr) = tcp.into_split();
    let sender = sub.sender();
    let up = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if sender.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!("subchannel {id}: reading the socket: {e}");
                    break;
                }
            }
        }
        let _ = sender.close();
    };
    let down = async {
        loop {
            match sub.recv().await {
                Ok(Some(record)) => {
                    if let Err(e) = wr.write_all(&record).await {
                        tracing::debug!("subchannel {id}: writing the socket: {e}");
                        break;
                    }
                }
                Ok(None) => {
                    let _ = wr.shutdown().await;
                    break;
                }
                Err(e) => {
                    tracing::debug!("subchannel {id}: {e}");
                    break;
                }
            }
        }
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            () = &mut up, if !up_done => up_done = true,
            () = &mut down => break,
        }
    }
    // The subchannel is done (or failed): stop reading the socket too.
    let _ = sender.close();
}
