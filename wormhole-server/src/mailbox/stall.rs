//! A byte stream whose writes may not stall for ever.
//!
//! The connection task writes replies and broadcasts with `feed`/`flush`, and a client that
//! stops reading makes such a write wait for ever: its task, its descriptor and its buffers
//! would stay until the server stops (the idle timer is not looked at while a write waits).
//! [`StallLimit`] fails a write (or flush) that has made no progress for its limit, so the
//! connection ends like any other broken one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Wraps a stream: a write, flush or shutdown that stays pending for longer than `limit`
/// fails with [`io::ErrorKind::TimedOut`]. Any progress restarts the clock.
pub(crate) struct StallLimit<S> {
    inner: S,
    limit: Duration,
    /// Armed when a write first returned pending; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallLimit<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> StallLimit<S> {
        StallLimit {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Turn a pending write into an error once the limit has passed (the timer's waker is
    /// this task, so it is polled again when the limit passes even if the socket never
    /// becomes writable); any other outcome clears the timer.
    fn check<T>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, res)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: the write fails after the limit instead of waiting for
    /// ever; a peer that reads keeps it going.
    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_limit() {
        let (a, _b) = tokio::io::duplex(1024);
        let mut s = StallLimit::new(a, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = s.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));

        let (a, mut b) = tokio::io::duplex(1024);
        let mut s = StallLimit::new(a, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut sink)
                .await
                .map(|_| sink.len())
        });
        // Slow but steady: each 1 KiB drains within the limit.
        s.write_all(&[1u8; 64 * 1024])
            .await
            .expect("a reading peer");
        s.shutdown().await.expect("shutdown");
        drop(s);
        assert_eq!(reader.await.unwrap().unwrap(), 64 * 1024);
    }
}
