//! Copying the bytes of a pair, both ways, until either end closes or the pair falls
//! silent.
//!
//! A TCP–TCP pair on Linux is moved with `splice(2)`: socket → pipe → socket, one kernel
//! pipe per direction, so relayed data never enters user space. A pair with a WebSocket
//! end (or any pair elsewhere) is copied through a buffer: TCP bytes become binary
//! messages and binary messages become TCP bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::end::End;

/// Copies until either direction ends (EOF or error) or nothing moved for about
/// `idle`; then both ends are dropped, which closes them. Returns the bytes moved.
pub(crate) async fn run(a: End, b: End, idle: Duration) -> u64 {
    let moved = AtomicU64::new(0);
    match (a, b) {
        #[cfg(target_os = "linux")]
        (End::Tcp(a), End::Tcp(b)) => match (splice::Pipe::new(), splice::Pipe::new()) {
            (Ok(p1), Ok(p2)) => {
                tokio::select! {
                    r = splice::one_way(&a, &b, &p1, &moved) => log_end(r),
                    r = splice::one_way(&b, &a, &p2, &moved) => log_end(r),
                    _ = watchdog(&moved, idle) => {}
                }
            }
            _ => buffered(End::Tcp(a), End::Tcp(b), idle, &moved).await,
        },
        (a, b) => buffered(a, b, idle, &moved).await,
    }
    moved.load(Ordering::Relaxed)
}

fn log_end(r: std::io::Result<()>) {
    if let Err(e) = r {
        tracing::debug!("relay: pair ended: {e}");
    }
}

/// Returns once a whole period of `idle` passes with no byte moved.
async fn watchdog(moved: &AtomicU64, idle: Duration) {
    let mut tick = tokio::time::interval(idle.max(Duration::from_millis(10)));
    tick.tick().await;
    let mut last = moved.load(Ordering::Relaxed);
    loop {
        tick.tick().await;
        let now = moved.load(Ordering::Relaxed);
        if now == last {
            tracing::debug!("relay: pair idle, closing");
            return;
        }
        last = now;
    }
}

type Ws = WebSocketStream<TcpStream>;

enum Rx {
    Tcp(OwnedReadHalf),
    Ws(SplitStream<Ws>),
}

enum Tx {
    Tcp(OwnedWriteHalf),
    Ws(SplitSink<Ws, Message>),
}

fn split(end: End) -> (Rx, Tx) {
    match end {
        End::Tcp(s) => {
            let (r, w) = s.into_split();
            (Rx::Tcp(r), Tx::Tcp(w))
        }
        End::Ws(ws) => {
            let (w, r) = (*ws).split();
            (Rx::Ws(r), Tx::Ws(w))
        }
    }
}

impl Rx {
    /// The next chunk, or None at the end (EOF, close, error, or a text message, which
    /// the relay protocol does not allow).
    async fn recv(&mut self, buf: &mut [u8]) -> Option<Bytes> {
        match self {
            Rx::Tcp(r) => match r.read(buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(Bytes::copy_from_slice(&buf[..n])),
            },
            Rx::Ws(r) => loop {
                match r.next().await? {
                    Ok(Message::Binary(b)) => return Some(b),
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                    Ok(Message::Text(_) | Message::Close(_)) | Err(_) => return None,
                }
            },
        }
    }
}

impl Tx {
    async fn send(&mut self, chunk: Bytes) -> bool {
        match self {
            Tx::Tcp(w) => w.write_all(&chunk).await.is_ok(),
            Tx::Ws(w) => w.send(Message::Binary(chunk)).await.is_ok(),
        }
    }
}

async fn pump(mut rx: Rx, mut tx: Tx, moved: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(chunk) = rx.recv(&mut buf).await {
        moved.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if !tx.send(chunk).await {
            break;
        }
    }
}

async fn buffered(a: End, b: End, idle: Duration, moved: &AtomicU64) {
    let (ar, at) = split(a);
    let (br, bt) = split(b);
    tokio::select! {
        _ = pump(ar, bt, moved) => {}
        _ = pump(br, at, moved) => {}
        _ = watchdog(moved, idle) => {}
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod splice {
    //! `splice(2)` between two tokio sockets through a kernel pipe.

    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// The pipe size we ask for (the kernel may give less; the default is 64 KiB).
    const PIPE_SIZE: libc::c_int = 1 << 20;

    /// A non-blocking pipe and its capacity.
    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        capacity: usize,
    }

    impl Pipe {
        pub(super) fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: F_SETPIPE_SZ/F_GETPIPE_SZ on a pipe we own; failures are harmless.
            let capacity = unsafe {
                libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
                libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
            };
            Ok(Pipe {
                read,
                write,
                capacity: usize::try_from(capacity).unwrap_or(0).max(4096),
            })
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the duration of the call (they belong to
        // sockets and a pipe borrowed by the caller); null offsets mean "current position",
        // as required for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Moves bytes from `from` to `to` until `from` reaches EOF (Ok) or either fails.
    ///
    /// The pipe is always emptied before the next fill, so `EAGAIN` while filling means
    /// the socket has nothing to read, and while draining that the socket cannot take
    /// more: tokio's readiness then waits for the right socket.
    pub(super) async fn one_way(
        from: &TcpStream,
        to: &TcpStream,
        pipe: &Pipe,
        moved: &AtomicU64,
    ) -> io::Result<()> {
        loop {
            let n = loop {
                from.readable().await?;
                match from.try_io(Interest::READABLE, || {
                    splice(from.as_raw_fd(), pipe.write.as_raw_fd(), pipe.capacity)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Ok(());
            }
            let mut left = n;
            while left > 0 {
                to.writable().await?;
                match to.try_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)
                }) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => left -= m.min(left),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            moved.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
