//! The application's side of a dilated wormhole: [`Dilated`], [`SubchannelListener`] and
//! [`Subchannel`], and the channels between them and the Dilation driver task.
//!
//! Flow control, both ways:
//! - **Writes**: every write takes permits from one semaphore of [`WRITE_WINDOW`] bytes
//!   (a record larger than the window takes the whole window); the driver gives them back
//!   when the peer acknowledges the record. (On loopback the window sets the throughput:
//!   4 MiB gave about 530 MB/s, 8 MiB 820, 16 MiB 920.) A peer that never acknowledges therefore
//!   stops the writers once a window is outstanding, and memory stays bounded.
//! - **Reads**: delivered records that the application has not read yet are counted
//!   (with records held for a subprotocol nobody listens to); while they exceed
//!   [`READ_WINDOW`] bytes inbound records are not acknowledged, so a peer like ours stops
//!   once its write window is out (one slow reader slows every subchannel, like the
//!   reference). The connection is still read meanwhile: keepalives, acknowledgements of
//!   our own writes and a new connection's handshake go on, so a reader that pauses does
//!   not look like a dead connection, and two sides that each wait to write while not
//!   reading still see each other's acknowledgements. Only past [`READ_LIMIT`] (a peer
//!   that ignores acknowledgements, like the reference) is the socket left unread, and TCP
//!   pushes back.
//!
//! Poll mode, for callers without an async runtime (the C, Kotlin and Python adapters):
//! [`Subchannel::try_send`], [`Subchannel::try_recv`] and [`SubchannelListener::try_accept`]
//! never wait. When one of them could not proceed, a [`Readiness`] event follows once it
//! can: on a delegated wormhole's event stream as [`crate::Event::DilationReady`], in order
//! with its other events. The wake-ups are wakers core registers on the handle's channel
//! or on the write window, so nothing polls.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::PollSemaphore;

use super::manager;
use crate::error::{Error, Result};

/// Bytes written and not yet acknowledged by the peer, at most (all subchannels).
pub const WRITE_WINDOW: usize = 16 << 20;
/// Bytes delivered and not yet read by the application (all subchannels) beyond which
/// inbound records are no longer acknowledged, so a peer like ours stops writing.
pub const READ_WINDOW: usize = 4 << 20;
/// Bytes delivered and not yet read beyond which the connection is not even read (for a
/// peer that writes without waiting for acknowledgements, like the reference): above
/// [`READ_WINDOW`] plus a peer's whole [`WRITE_WINDOW`], so our own peers never reach it.
pub const READ_LIMIT: usize = READ_WINDOW + WRITE_WINDOW + (4 << 20);
/// The largest record [`AsyncWrite`] makes of one `poll_write` (larger buffers are
/// taken in parts). [`Subchannel::send`] takes any size.
pub const MAX_STREAM_RECORD: usize = 256 << 10;

/// Settings of [`crate::Wormhole::dilate`].
#[derive(Debug, Clone, PartialEq)]
pub struct DilationOptions {
    /// Our transit relay, `tcp:HOST:PORT` (the reference's `transit_relay_location`).
    pub relay: Option<String>,
    /// Do not listen for direct connections (and send no direct hints).
    pub no_listen: bool,
    /// The Leader's keepalive interval (the reference's `ping_interval`, 30 s).
    pub ping_interval: std::time::Duration,
    /// How long a generation of connection attempts may take before both sides start
    /// a new one (the reference waits for ever).
    pub generation_timeout: std::time::Duration,
    /// Our dilation side, 16 lowercase hex digits (random when unset). Of the two sides
    /// the larger one is the Leader: tests use this to choose the role.
    pub side: Option<String>,
}

impl Default for DilationOptions {
    fn default() -> Self {
        DilationOptions {
            relay: None,
            no_listen: false,
            ping_interval: manager::DEFAULT_PING_INTERVAL,
            generation_timeout: manager::DEFAULT_GENERATION_TIMEOUT,
            side: None,
        }
    }
}

/// A change in the dilated connection (the reference's `DilationStatus`, as events).
pub type DilationEvent = manager::Event;

/// A subchannel or listener in poll mode can go on (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// [`Subchannel::try_recv`] on subchannel `id` has something: a record, the peer's
    /// CLOSE, or the end of Dilation.
    Readable {
        /// The subchannel id.
        id: u32,
    },
    /// [`Subchannel::try_send`] on subchannel `id` can take a record again.
    Writable {
        /// The subchannel id.
        id: u32,
    },
    /// [`SubchannelListener::try_accept`] for subprotocol `name` has a subchannel (or
    /// Dilation ended).
    Acceptable {
        /// The subprotocol.
        name: String,
    },
}

/// Where [`Readiness`] events go (a delegated wormhole's stream, or nowhere).
pub(crate) type ReadySink = Arc<dyn Fn(Readiness) + Send + Sync>;

/// A waker that reports one [`Readiness`] when woken.
struct ReadyWaker {
    sink: ReadySink,
    ready: Readiness,
}

impl std::task::Wake for ReadyWaker {
    fn wake(self: Arc<Self>) {
        (self.sink)(self.ready.clone());
    }
}

fn ready_waker(sink: &ReadySink, ready: Readiness) -> std::task::Waker {
    std::task::Waker::from(Arc::new(ReadyWaker {
        sink: sink.clone(),
        ready,
    }))
}

/// What [`Subchannel::try_recv`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryRecv {
    /// The next record.
    Record(Vec<u8>),
    /// Nothing yet: a [`Readiness::Readable`] follows when something arrives.
    Empty,
    /// The peer closed the subchannel: no more records.
    Closed,
}

/// Requests to the driver that are not writes.
pub(crate) enum Control {
    /// The peer's `can-dilate` list, with the wormhole's key.
    PeerVersion {
        can_dilate: Vec<String>,
        key: Vec<u8>,
    },
    /// One of the peer's `dilate-N` bodies, in order.
    PeerBody(Vec<u8>),
    /// Accept the peer's subchannels for `name` (not listened to before: the handle
    /// checked).
    Listen {
        name: String,
        accepted: mpsc::UnboundedSender<Subchannel>,
    },
    /// Open a subchannel to the peer's `name` (answered once the roles are known).
    Open {
        name: String,
        reply: oneshot::Sender<Result<Subchannel>>,
    },
    /// The wormhole is closing: stop.
    Stop,
}

/// Writes and closes, in the order the application made them.
pub(crate) enum Write {
    /// One record; `permits` were taken from the write window for it.
    Data {
        scid: u32,
        data: Vec<u8>,
        permits: u32,
    },
    /// `close()`: CLOSE.
    Close { scid: u32 },
    /// The handle is gone: CLOSE if not sent yet, and forget the subchannel.
    Dropped { scid: u32 },
}

/// What the driver delivers to one subchannel.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// One record.
    Data(Vec<u8>),
    /// The peer closed: no more records.
    Closed,
    /// Dilation ended or failed: no more records.
    Failed(String),
}

/// Bytes delivered and not read yet, shared by the driver and every subchannel.
#[derive(Debug, Default)]
pub(crate) struct Unread {
    bytes: AtomicUsize,
    /// Wakes the driver when `bytes` fell below [`READ_WINDOW`].
    pub(crate) drained: Notify,
}

impl Unread {
    pub(crate) fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn sub(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::AcqRel);
        if before >= READ_WINDOW && before - n < READ_WINDOW {
            self.drained.notify_one();
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// What every handle of one dilated wormhole shares with the driver.
pub(crate) struct Link {
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) writes: mpsc::UnboundedSender<Write>,
    pub(crate) window: Arc<Semaphore>,
    pub(crate) unread: Arc<Unread>,
    /// Where poll mode's [`Readiness`] events go.
    pub(crate) ready: ReadySink,
    /// The subprotocols listened to.
    pub(crate) listening: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// A dilated wormhole (from [`crate::Wormhole::dilate`]): subchannels to and from the
/// peer over one durable connection, and its status events. Dropping it does not stop
/// Dilation; closing the wormhole does.
pub struct Dilated {
    pub(crate) link: Arc<Link>,
    pub(crate) events: tokio::sync::Mutex<mpsc::UnboundedReceiver<DilationEvent>>,
    /// Keeps the wormhole (and so its mailbox) alive while the application holds this
    /// (a handle to it, type-erased).
    pub(crate) _wormhole: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for Dilated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dilated").finish_non_exhaustive()
    }
}

fn gone() -> Error {
    Error::InvalidState("dilation has ended".into())
}

impl Dilated {
    /// Accept the peer's subchannels for subprotocol `name` (the reference's
    /// `listener_for(name).listen(...)`). Subchannels the peer opened before this call
    /// were held and are accepted now. A name can be listened to once. Never waits.
    pub fn listen(&self, name: &str) -> Result<SubchannelListener> {
        let rx = {
            let mut names = self
                .link
                .listening
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if names.contains(name) {
                return Err(Error::InvalidState(format!(
                    "already listening for subchannels of {name:?}"
                )));
            }
            let (accepted, rx) = mpsc::unbounded_channel();
            self.link
                .control
                .send(Control::Listen {
                    name: name.to_owned(),
                    accepted,
                })
                .map_err(|_| gone())?;
            names.insert(name.to_owned());
            rx
        };
        Ok(SubchannelListener {
            name: name.to_owned(),
            rx,
            ready: self.link.ready.clone(),
        })
    }

    /// Open a subchannel to the peer's subprotocol `name` (the reference's
    /// `connector_for(name).connect(...)`). Returns once our role is known (both sides'
    /// `please` exchanged); the peer never answers an OPEN, so writes may start at once
    /// and are delivered when the peer listens.
    pub async fn connect(&self, name: &str) -> Result<Subchannel> {
        let (reply, answer) = oneshot::channel();
        self.link
            .control
            .send(Control::Open {
                name: name.to_owned(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// The next status event (generation started, connected and how, reconnecting,
    /// warnings, failure), or `None` once Dilation has ended.
    pub async fn next_event(&self) -> Option<DilationEvent> {
        self.events.lock().await.recv().await
    }
}

/// The peer's subchannels for one subprotocol, as they are opened.
pub struct SubchannelListener {
    name: String,
    rx: mpsc::UnboundedReceiver<Subchannel>,
    ready: ReadySink,
}

impl std::fmt::Debug for SubchannelListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubchannelListener")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SubchannelListener {
    /// The subprotocol name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next subchannel the peer opened, or `None` once Dilation has ended.
    pub async fn accept(&mut self) -> Option<Subchannel> {
        self.rx.recv().await
    }

    /// Poll mode: the next subchannel the peer opened if one waits. `Ok(None)`: none yet,
    /// and a [`Readiness::Acceptable`] follows when one arrives. An error once Dilation
    /// has ended.
    pub fn try_accept(&mut self) -> Result<Option<Subchannel>> {
        let waker = ready_waker(
            &self.ready,
            Readiness::Acceptable {
                name: self.name.clone(),
            },
        );
        match self.rx.poll_recv(&mut Context::from_waker(&waker)) {
            Poll::Ready(Some(s)) => Ok(Some(s)),
            Poll::Ready(None) => Err(gone()),
            Poll::Pending => Ok(None),
        }
    }
}

/// One subchannel: an ordered, reliable stream of records in both directions.
///
/// [`Subchannel::send`] and [`Subchannel::recv`] keep record boundaries (one `send` is
/// one `recv` on the other side, empty records included), which is what applications of
/// the reference (`fowl`) rely on. [`AsyncRead`] and [`AsyncWrite`] treat the records as
/// a byte stream. Do not mix the two read styles on one subchannel (bytes left in the
/// stream buffer are returned first by `recv`).
pub struct Subchannel {
    scid: u32,
    name: String,
    link: Arc<Link>,
    /// Writes go through this (shared with the [`SubchannelSender`]s).
    tx: SubchannelSender,
    window: PollSemaphore,
    rx: mpsc::UnboundedReceiver<Delivery>,
    /// The rest of a record partly read through [`AsyncRead`].
    partial: Vec<u8>,
    at: usize,
    /// No more deliveries (the peer's CLOSE, or the end of Dilation).
    ended: Option<Option<String>>,
}

/// The writing half of a [`Subchannel`] ([`Subchannel::sender`]): sends from another task
/// while the subchannel is being read, e.g. for bindings whose read and write calls run
/// concurrently. Clones share the subchannel; dropping the [`Subchannel`] closes it for
/// its senders too.
#[derive(Clone)]
pub struct SubchannelSender {
    scid: u32,
    link: Arc<Link>,
    /// We sent CLOSE, or the subchannel is closed both ways (the peer's CLOSE answered):
    /// no more writes.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for SubchannelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubchannelSender")
            .field("scid", &self.scid)
            .finish_non_exhaustive()
    }
}

impl SubchannelSender {
    /// The subchannel id.
    pub fn id(&self) -> u32 {
        self.scid
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::InvalidState(format!(
                "subchannel {} is closed",
                self.scid
            )));
        }
        Ok(())
    }

    fn push(&self, data: Vec<u8>, permits: u32) -> Result<()> {
        self.link
            .writes
            .send(Write::Data {
                scid: self.scid,
                data,
                permits,
            })
            .map_err(|_| gone())
    }

    /// Send one record (delivered whole, in order, exactly once; empty is allowed). Waits
    /// while the write window is full.
    pub async fn send(&self, data: Vec<u8>) -> Result<()> {
        self.check_open()?;
        let permits = Subchannel::permits_for(data.len());
        if permits > 0 {
            self.link
                .window
                .acquire_many(permits)
                .await
                .map_err(|_| gone())?
                .forget();
        }
        self.push(data, permits)
    }

    /// Close the subchannel (see [`Subchannel::close`]).
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.link
            .writes
            .send(Write::Close { scid: self.scid })
            .map_err(|_| gone())
    }
}

impl std::fmt::Debug for Subchannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subchannel")
            .field("scid", &self.scid)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Subchannel {
    pub(crate) fn new(
        scid: u32,
        name: String,
        link: Arc<Link>,
        rx: mpsc::UnboundedReceiver<Delivery>,
        closed: Arc<std::sync::atomic::AtomicBool>,
    ) -> Subchannel {
        Subchannel {
            scid,
            name,
            window: PollSemaphore::new(link.window.clone()),
            tx: SubchannelSender {
                scid,
                link: link.clone(),
                closed,
            },
            link,
            rx,
            partial: Vec::new(),
            at: 0,
            ended: None,
        }
    }

    /// The subchannel id (odd: opened by the Leader; even: by the Follower).
    pub fn id(&self) -> u32 {
        self.scid
    }

    /// The subprotocol name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn permits_for(len: usize) -> u32 {
        len.min(WRITE_WINDOW) as u32
    }

    /// A handle that sends on this subchannel from another task (see
    /// [`SubchannelSender`]).
    pub fn sender(&self) -> SubchannelSender {
        self.tx.clone()
    }

    /// Send one record (delivered whole, in order, exactly once; empty is allowed). Waits
    /// while the write window is full.
    pub async fn send(&mut self, data: Vec<u8>) -> Result<()> {
        self.tx.send(data).await
    }

    /// The next record, or `None` once the peer closed the subchannel. An error when
    /// Dilation failed or the wormhole closed first.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        if self.at < self.partial.len() {
            let rest = self.partial.split_off(self.at);
            self.partial.clear();
            self.at = 0;
            return Ok(Some(rest));
        }
        std::future::poll_fn(|cx| self.poll_record(cx)).await
    }

    /// The next records: waits for one, then takes those already delivered behind it, up
    /// to `max_bytes` in all (the first record always comes, whatever its size), so a
    /// binding crosses into its language once per batch instead of once per record.
    /// `Ok(None)` once the peer closed the subchannel and every record was taken; an
    /// error when Dilation failed or the wormhole closed first (after the records that
    /// arrived before it).
    pub async fn recv_batch(&mut self, max_bytes: usize) -> Result<Option<Vec<Vec<u8>>>> {
        let first = match self.recv().await? {
            None => return Ok(None),
            Some(r) => r,
        };
        let mut taken = first.len();
        let mut batch = vec![first];
        std::future::poll_fn(|cx| {
            while taken < max_bytes && self.ended.is_none() {
                match self.poll_record(cx) {
                    Poll::Ready(Ok(Some(r))) => {
                        taken += r.len();
                        batch.push(r);
                    }
                    // The end is kept in `ended` and reported by the next call.
                    Poll::Ready(_) | Poll::Pending => break,
                }
            }
            Poll::Ready(())
        })
        .await;
        Ok(Some(batch))
    }

    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>>> {
        if let Some(end) = &self.ended {
            return Poll::Ready(match end {
                None => Ok(None),
                Some(e) => Err(Error::Transfer(e.clone())),
            });
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(Delivery::Data(d)) => {
                self.link.unread.sub(d.len());
                Poll::Ready(Ok(Some(d)))
            }
            Some(Delivery::Closed) => {
                self.ended = Some(None);
                Poll::Ready(Ok(None))
            }
            Some(Delivery::Failed(e)) => {
                self.ended = Some(Some(e.clone()));
                Poll::Ready(Err(Error::Transfer(e)))
            }
            None => {
                let e = "dilation has ended".to_string();
                self.ended = Some(Some(e.clone()));
                Poll::Ready(Err(Error::Transfer(e)))
            }
        }
    }

    /// Poll mode: send one record if the write window has room for it. `Ok(false)`: it
    /// has not, nothing was sent, and a [`Readiness::Writable`] follows when it has (the
    /// room is then kept for this subchannel's next `try_send` or write).
    pub fn try_send(&mut self, data: &[u8]) -> Result<bool> {
        self.tx.check_open()?;
        let permits = Self::permits_for(data.len());
        if permits > 0 {
            let waker = ready_waker(&self.link.ready, Readiness::Writable { id: self.scid });
            match self
                .window
                .poll_acquire_many(&mut Context::from_waker(&waker), permits)
            {
                Poll::Ready(Some(p)) => p.forget(),
                Poll::Ready(None) => return Err(gone()),
                Poll::Pending => return Ok(false),
            }
        }
        self.tx.push(data.to_vec(), permits)?;
        Ok(true)
    }

    /// Poll mode, as a byte stream (like [`AsyncRead`]): copy what has arrived into
    /// `buf`. `Ok(Some(n))` with `n > 0`: bytes read; `Ok(Some(0))`: the peer closed the
    /// subchannel (or `buf` is empty); `Ok(None)`: nothing yet, and a
    /// [`Readiness::Readable`] follows when something arrives. An error when Dilation
    /// failed or the wormhole closed first.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        while self.at >= self.partial.len() {
            let waker = ready_waker(&self.link.ready, Readiness::Readable { id: self.scid });
            match self.poll_record(&mut Context::from_waker(&waker)) {
                Poll::Ready(Ok(Some(d))) => {
                    self.partial = d;
                    self.at = 0;
                }
                Poll::Ready(Ok(None)) => return Ok(Some(0)),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(None),
            }
        }
        let n = buf.len().min(self.partial.len() - self.at);
        buf[..n].copy_from_slice(&self.partial[self.at..self.at + n]);
        self.at += n;
        Ok(Some(n))
    }

    /// Poll mode: the next record if one has arrived (see [`TryRecv`]). An error when
    /// Dilation failed or the wormhole closed first.
    pub fn try_recv(&mut self) -> Result<TryRecv> {
        if self.at < self.partial.len() {
            let rest = self.partial.split_off(self.at);
            self.partial.clear();
            self.at = 0;
            return Ok(TryRecv::Record(rest));
        }
        let waker = ready_waker(&self.link.ready, Readiness::Readable { id: self.scid });
        match self.poll_record(&mut Context::from_waker(&waker)) {
            Poll::Ready(Ok(Some(d))) => Ok(TryRecv::Record(d)),
            Poll::Ready(Ok(None)) => Ok(TryRecv::Closed),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(TryRecv::Empty),
        }
    }

    /// Close the subchannel (CLOSE; the peer answers with its own). Records already sent
    /// are still delivered; records still arriving can be read until the peer's CLOSE.
    pub fn close(&mut self) -> Result<()> {
        self.tx.close()
    }
}

impl Drop for Subchannel {
    fn drop(&mut self) {
        self.tx
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = self.link.writes.send(Write::Dropped { scid: self.scid });
        // What was delivered and never read no longer holds the connection back (records
        // already received were counted off when they were).
        self.rx.close();
        let mut unread = 0;
        while let Ok(d) = self.rx.try_recv() {
            if let Delivery::Data(d) = d {
                unread += d.len();
            }
        }
        self.link.unread.sub(unread);
    }
}

impl AsyncRead for Subchannel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.at >= this.partial.len() {
            match ready!(this.poll_record(cx)) {
                Ok(Some(d)) => {
                    this.partial = d;
                    this.at = 0;
                }
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(std::io::Error::other(e.to_string()))),
            }
        }
        let n = buf.remaining().min(this.partial.len() - this.at);
        buf.put_slice(&this.partial[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Subchannel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Err(e) = this.tx.check_open() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                e.to_string(),
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_STREAM_RECORD);
        let permits = Self::permits_for(n);
        match ready!(this.window.poll_acquire_many(cx, permits)) {
            Some(p) => p.forget(),
            None => return Poll::Ready(Err(std::io::Error::other(gone().to_string()))),
        }
        this.tx
            .push(buf[..n].to_vec(), permits)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(
            self.close()
                .map_err(|e| std::io::Error::other(e.to_string())),
        )
    }
}
