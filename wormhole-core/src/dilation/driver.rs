//! The Dilation driver: one tokio task per dilated wormhole owns the [`Endpoint`], the
//! listeners, dials and TCP connections, and the subchannels' channels. It performs the
//! endpoint's [`Io`], sends its `dilate-N` bodies through the wormhole's own driver, and
//! feeds it what happened with the time. Every decision (which connection wins, when to
//! reconnect, PING, ACK, re-send) is the endpoint's.
//!
//! Each connection has a reader task (bytes into one bounded channel shared by all
//! connections, so a driver that stops taking them stops the reads) and a writer task
//! (an unbounded queue, bounded in practice by the write window). Sockets are set to
//! linger 0: dropping one resets it, which is how a connection is aborted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::endpoint::{Endpoint, EndpointEvent, Io};
use super::handle::{Control, Delivery, DilationEvent, Link, Subchannel, Write};
use super::manager::{ConnId, DilateOptions, Path};
use super::subchannel::SubchannelEvent;
use crate::command::Command;
use crate::error::{Error, Result};
use crate::transit::{DirectHint, Hints};

/// How long one dial may take.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// How much one read takes from a socket.
const READ_CHUNK: usize = 256 << 10;
/// Encrypted bytes queued for one socket, at most (about): more records are encrypted
/// only as its writer drains the queue.
const WRITE_BUFFER: usize = 1 << 20;
/// Written buffers a writer holds for the endpoint to reuse.
const MAX_WRITTEN: usize = 8;

/// Where status events go: the [`super::handle::Dilated`] handle's stream, or a delegated
/// wormhole's event stream.
pub(crate) type StatusSink = Box<dyn Fn(DilationEvent) + Send>;

/// What the driver needs from the wormhole.
pub(crate) struct DriverParts {
    pub options: DilateOptions,
    pub commands: mpsc::WeakUnboundedSender<Command>,
    pub proxy: Option<crate::proxy::Socks5>,
    pub link: Arc<Link>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub writes: mpsc::UnboundedReceiver<Write>,
    pub events: StatusSink,
}

/// A TCP connection that is up, before the endpoint knows it.
struct NewConn {
    generation: u32,
    stream: TcpStream,
    path: Path,
}

/// One live connection's tasks; dropping it aborts both, and the socket resets.
struct ConnIo {
    out: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes given to the writer and not written yet.
    queued: Arc<AtomicUsize>,
    /// Buffers the writer wrote, for the endpoint to reuse.
    written: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// What reader and writer tasks report: bytes, or `None` when the connection ended.
type Input = (ConnId, Option<Vec<u8>>);

fn spawn_conn(
    id: ConnId,
    stream: TcpStream,
    input: mpsc::Sender<Input>,
    writable: Arc<Notify>,
) -> ConnIo {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    let (mut rd, mut wr) = stream.into_split();
    let (out, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
    let reader = tokio::spawn({
        let input = input.clone();
        async move {
            loop {
                let mut buf = Vec::with_capacity(READ_CHUNK);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if input.send((id, Some(buf))).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = input.send((id, None)).await;
        }
    });
    let queued = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = tokio::spawn({
        let queued = queued.clone();
        let written = written.clone();
        async move {
            while let Some(bytes) = queue.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    let _ = input.send((id, None)).await;
                    return;
                }
                let n = bytes.len();
                if let Ok(mut w) = written.lock() {
                    if w.len() < MAX_WRITTEN {
                        w.push(bytes);
                    }
                }
                let before = queued.fetch_sub(n, Ordering::AcqRel);
                if before >= WRITE_BUFFER / 2 && before - n < WRITE_BUFFER / 2 {
                    writable.notify_one();
                }
            }
        }
    });
    ConnIo {
        out,
        queued,
        written,
        reader,
        writer,
    }
}

async fn dial(
    hints: Vec<DirectHint>,
    relay: bool,
    generation: u32,
    proxy: Option<crate::proxy::Socks5>,
    tx: mpsc::UnboundedSender<NewConn>,
) {
    for hint in hints {
        let r = tokio::time::timeout(
            DIAL_TIMEOUT,
            crate::proxy::connect(proxy.as_ref(), &hint.hostname, hint.port),
        )
        .await;
        match r {
            Ok(Ok(stream)) => {
                let path = Path {
                    relay,
                    inbound: false,
                    peer: Some(hint.address()),
                };
                let _ = tx.send(NewConn {
                    generation,
                    stream,
                    path,
                });
                return;
            }
            Ok(Err(e)) => tracing::debug!("dilation dial to {} failed: {e}", hint.address()),
            Err(_) => tracing::debug!("dilation dial to {} timed out", hint.address()),
        }
    }
}

async fn accept_loop(l: TcpListener, generation: u32, tx: mpsc::UnboundedSender<NewConn>) {
    loop {
        match l.accept().await {
            Ok((stream, peer)) => {
                let path = Path {
                    relay: false,
                    inbound: true,
                    peer: Some(peer.to_string()),
                };
                if tx
                    .send(NewConn {
                        generation,
                        stream,
                        path,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// The open subchannels' delivery channels.
struct Sink {
    tx: mpsc::UnboundedSender<Delivery>,
    /// The handle's "no more writes" flag: set once the subchannel is closed both ways
    /// (the peer's CLOSE answered), so a later write is refused instead of dropped.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

struct Driver {
    ep: Endpoint,
    link: Arc<Link>,
    commands: mpsc::WeakUnboundedSender<Command>,
    proxy: Option<crate::proxy::Socks5>,
    events: StatusSink,
    conns: HashMap<ConnId, ConnIo>,
    /// Per generation: its listener and dials.
    attempts: HashMap<u32, Vec<JoinHandle<()>>>,
    new_conns: mpsc::UnboundedSender<NewConn>,
    input: mpsc::Sender<Input>,
    /// A writer's queue fell below half of [`WRITE_BUFFER`].
    writable: Arc<Notify>,
    sinks: HashMap<u32, Sink>,
    listeners: HashMap<String, mpsc::UnboundedSender<Subchannel>>,
    opens: VecDeque<(String, tokio::sync::oneshot::Sender<Result<Subchannel>>)>,
    /// Permits of the records handed to the endpoint and not acknowledged yet, in order,
    /// with each record's length.
    window: VecDeque<(usize, u32)>,
    /// The bytes of the records in `window`.
    handed: usize,
    failed: Option<String>,
    /// Listeners asked for before the roles were known are registered with the endpoint.
    registered: bool,
}

fn now() -> Instant {
    Instant::now()
}

impl Driver {
    /// Perform the endpoint's outputs, and the opens and listens that waited for the
    /// roles, until nothing is left.
    fn drain(&mut self) {
        loop {
            if self.ep.role().is_some() {
                if !self.registered {
                    self.registered = true;
                    let names: Vec<String> = self.listeners.keys().cloned().collect();
                    for n in names {
                        let _ = self.ep.listen(&n, false);
                    }
                }
                while let Some((name, reply)) = self.opens.pop_front() {
                    let r = self.open(&name);
                    let _ = reply.send(r);
                }
            }
            self.fill();
            while let Some(io) = self.ep.poll_io() {
                self.io(io);
            }
            while let Some(body) = self.ep.poll_mailbox() {
                if let Some(c) = self.commands.upgrade() {
                    let _ = c.send(Command::SendDilation(body));
                }
            }
            while let Some(ev) = self.ep.poll_event() {
                self.event(ev);
            }
            let waiting = !self.opens.is_empty() || !self.registered;
            if !(waiting && self.ep.role().is_some()) {
                break;
            }
        }
        self.settle_window();
    }

    /// Let the endpoint encrypt more records onto the selected connection while its
    /// writer's queue is short.
    fn fill(&mut self) {
        let Some(id) = self.ep.selected() else { return };
        let Some(c) = self.conns.get(&id) else { return };
        let queued = c.queued.load(Ordering::Acquire);
        if queued < WRITE_BUFFER && self.ep.has_unsent() {
            let written = c.written.lock().map(|mut w| std::mem::take(&mut *w));
            for buf in written.unwrap_or_default() {
                self.ep.reuse(id, buf);
            }
            self.ep.fill(WRITE_BUFFER - queued);
        }
    }

    /// Give back the permits of acknowledged records: L4 retires records in the order
    /// they were written, so the acknowledged ones are the oldest in `window`.
    fn settle_window(&mut self) {
        let mut acked = self.handed - self.ep.unacked_bytes();
        let mut permits = 0u32;
        while let Some(&(len, p)) = self.window.front() {
            if len > acked {
                break;
            }
            acked -= len;
            self.handed -= len;
            permits += p;
            self.window.pop_front();
        }
        if permits > 0 {
            self.link.window.add_permits(permits as usize);
        }
    }

    fn open(&mut self, name: &str) -> Result<Subchannel> {
        if let Some(e) = &self.failed {
            return Err(Error::InvalidState(e.clone()));
        }
        let scid = self.ep.open(name, false)?;
        Ok(self.subchannel(scid, name.to_owned()))
    }

    fn subchannel(&mut self, scid: u32, name: String) -> Subchannel {
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.sinks.insert(
            scid,
            Sink {
                tx,
                closed: closed.clone(),
            },
        );
        Subchannel::new(scid, name, self.link.clone(), rx, closed)
    }

    fn event(&mut self, ev: EndpointEvent) {
        match ev {
            EndpointEvent::Status(s) => {
                if let super::manager::Event::Failed(e) = &s {
                    self.failed = Some(e.to_string());
                }
                (self.events)(s);
            }
            EndpointEvent::Ready(_) => {}
            EndpointEvent::Subchannel(SubchannelEvent::Accepted { scid, name }) => {
                let sub = self.subchannel(scid, name.clone());
                if let Some(l) = self.listeners.get(&name) {
                    let _ = l.send(sub);
                }
            }
            EndpointEvent::Subchannel(SubchannelEvent::Data { scid, data }) => {
                if let Some(sink) = self.sinks.get(&scid) {
                    let n = data.len();
                    self.link.unread.add(n);
                    if sink.tx.send(Delivery::Data(data)).is_err() {
                        self.link.unread.sub(n);
                    }
                }
            }
            EndpointEvent::Subchannel(SubchannelEvent::ReadClosed { scid }) => {
                if let Some(sink) = self.sinks.get(&scid) {
                    let _ = sink.tx.send(Delivery::Closed);
                }
            }
            EndpointEvent::Subchannel(SubchannelEvent::Closed { scid }) => {
                if let Some(sink) = self.sinks.remove(&scid) {
                    sink.closed.store(true, Ordering::Release);
                    let _ = sink.tx.send(Delivery::Closed);
                }
            }
        }
    }

    fn io(&mut self, io: Io) {
        match io {
            Io::Listen { generation } => {
                // Bound synchronously so the hints go out with this generation.
                let std = std::net::TcpListener::bind(("0.0.0.0", 0)).and_then(|l| {
                    l.set_nonblocking(true)?;
                    Ok(l)
                });
                let listener = std.and_then(TcpListener::from_std);
                match listener {
                    Ok(l) => {
                        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                        let hints = Hints {
                            direct: crate::transit::local_addresses()
                                .into_iter()
                                .map(|h| DirectHint::new(h, port))
                                .collect(),
                            ..Hints::default()
                        };
                        let task = tokio::spawn(accept_loop(l, generation, self.new_conns.clone()));
                        self.attempts.entry(generation).or_default().push(task);
                        self.ep.listening(now(), generation, hints);
                    }
                    Err(e) => tracing::warn!("dilation cannot listen: {e}"),
                }
            }
            Io::ConnectDirect { generation, hint } => {
                let task = tokio::spawn(dial(
                    vec![hint],
                    false,
                    generation,
                    self.proxy.clone(),
                    self.new_conns.clone(),
                ));
                self.attempts.entry(generation).or_default().push(task);
            }
            Io::ConnectRelay { generation, hint } => {
                let task = tokio::spawn(dial(
                    hint,
                    true,
                    generation,
                    self.proxy.clone(),
                    self.new_conns.clone(),
                ));
                self.attempts.entry(generation).or_default().push(task);
            }
            Io::StopConnecting { generation } => {
                for t in self.attempts.remove(&generation).unwrap_or_default() {
                    t.abort();
                }
            }
            Io::Transmit { id, bytes } => {
                if let Some(c) = self.conns.get(&id) {
                    c.queued.fetch_add(bytes.len(), Ordering::AcqRel);
                    let _ = c.out.send(bytes);
                }
            }
            Io::Drop { id } => {
                self.conns.remove(&id);
            }
        }
    }

    fn new_conn(&mut self, c: NewConn) {
        let mut eph = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut eph);
        match self.ep.connection_made(now(), c.generation, c.path, eph) {
            Ok(id) => {
                let io = spawn_conn(id, c.stream, self.input.clone(), self.writable.clone());
                self.conns.insert(id, io);
            }
            Err(e) => tracing::debug!("dilation connection refused: {e}"),
        }
    }

    fn control(&mut self, c: Control) -> bool {
        match c {
            Control::PeerVersion { can_dilate, key } => {
                self.ep.peer_version(now(), &can_dilate, &key)
            }
            Control::PeerBody(b) => self.ep.peer_body(now(), &b),
            Control::Listen { name, accepted } => {
                // Before the roles are known the listener is kept and registered with
                // the endpoint once they are (`drain`).
                if self.ep.role().is_some() {
                    if let Err(e) = self.ep.listen(&name, false) {
                        tracing::debug!(%name, error = %e, "listen refused");
                        return true;
                    }
                }
                self.listeners.insert(name, accepted);
            }
            Control::Open { name, reply } => self.opens.push_back((name, reply)),
            Control::Stop => return false,
        }
        true
    }

    fn write(&mut self, w: Write) {
        match w {
            Write::Data {
                scid,
                data,
                permits,
            } => {
                let len = data.len();
                match self.ep.write(scid, data) {
                    Ok(()) => {
                        self.window.push_back((len, permits));
                        self.handed += len;
                    }
                    Err(e) => {
                        tracing::debug!("dilation write refused: {e}");
                        self.link.window.add_permits(permits as usize);
                    }
                }
            }
            Write::Close { scid } => {
                let _ = self.ep.close(scid);
            }
            Write::Dropped { scid } => {
                let _ = self.ep.close(scid);
                self.sinks.remove(&scid);
            }
        }
    }
}

/// Run one dilated wormhole until the wormhole closes.
pub(crate) async fn run(parts: DriverParts) {
    let DriverParts {
        options,
        commands,
        proxy,
        link,
        mut control,
        mut writes,
        events,
    } = parts;
    let (new_conns, mut new_rx) = mpsc::unbounded_channel();
    let (input, mut input_rx) = mpsc::channel::<Input>(16);
    let mut d = Driver {
        ep: Endpoint::default(),
        link: link.clone(),
        commands,
        proxy,
        events,
        conns: HashMap::new(),
        attempts: HashMap::new(),
        new_conns,
        input,
        writable: Arc::new(Notify::new()),
        sinks: HashMap::new(),
        listeners: HashMap::new(),
        opens: VecDeque::new(),
        window: VecDeque::new(),
        handed: 0,
        failed: None,
        registered: false,
    };
    if let Err(e) = d.ep.dilate(now(), options, &mut rand::rngs::OsRng) {
        (d.events)(super::manager::Event::Failed(e));
        return;
    }
    let writable = d.writable.clone();
    loop {
        // Held records count like unread ones: a peer cannot make us hold without bound.
        let pending = link.unread.bytes() + d.ep.held_bytes();
        d.ep.hold_acks(pending >= super::handle::READ_WINDOW);
        d.drain();
        let timer = d.ep.poll_timeout().map(tokio::time::Instant::from_std);
        let reading = pending < super::handle::READ_LIMIT;
        tokio::select! {
            c = control.recv() => match c {
                Some(c) => if !d.control(c) { break },
                None => break,
            },
            Some(w) = writes.recv() => {
                d.write(w);
                // Take what else is queued in one go.
                while let Ok(w) = writes.try_recv() {
                    d.write(w);
                }
            }
            Some(c) = new_rx.recv() => d.new_conn(c),
            Some((id, bytes)) = input_rx.recv(), if reading => match bytes {
                Some(b) => d.ep.connection_input(now(), id, &b),
                None => {
                    if d.conns.remove(&id).is_some() {
                        d.ep.connection_lost(now(), id);
                    }
                }
            },
            _ = link.unread.drained.notified(), if pending >= super::handle::READ_WINDOW => {}
            _ = writable.notified(), if d.ep.has_unsent() => {}
            _ = async { tokio::time::sleep_until(timer.expect("guarded")).await }, if timer.is_some() => {
                d.ep.handle_timeout(now(), &mut rand::rngs::OsRng);
            }
        }
    }
    d.ep.stop();
    d.drain();
    d.conns.clear();
    for (_, tasks) in d.attempts.drain() {
        for t in tasks {
            t.abort();
        }
    }
    link.window.close();
    for (_, sink) in d.sinks.drain() {
        let _ = sink.tx.send(Delivery::Failed("the wormhole closed".into()));
    }
}
