//! Transit v1 (PROTOCOL §7): an encrypted, ordered record pipe over one TCP connection,
//! chosen by racing direct and relayed connections.
//!
//! [`proto`] is the sans-IO half (keys, hints, handshakes, records). This module is the
//! thin tokio driver: [`Transit::new`] binds the listeners the application chose (or
//! none), [`Transit::hints`] is what to send the peer in a `transit` message,
//! [`Transit::add_peer_hints`] takes the peer's, and [`Transit::connect`] races every way
//! to reach the peer with the reference's timing and returns the winning [`Connection`].
//!
//! Usable directly by applications that want their own bulk protocol over a wormhole:
//!
//! ```no_run
//! # async fn demo(w: &wormhole_core::Wormhole) -> wormhole_core::Result<()> {
//! use wormhole_core::transit::{Role, Transit, TransitConfig, TRANSIT_PURPOSE, Hints};
//! let key = w.derive_key(TRANSIT_PURPOSE, 32)?;
//! let mut transit = Transit::new(Role::Sender, &key, TransitConfig::default()).await?;
//! w.send_message(transit.transit_message())?;
//! // … receive the peer's `{"transit": …}` message, then:
//! # let peer_transit = serde_json::Value::Null;
//! transit.add_peer_hints(Hints::from_transit_json(&peer_transit));
//! let mut conn = transit.connect().await?;
//! conn.send_record(b"hello").await?;
//! let reply = conn.receive_record().await?;
//! # let _ = reply; Ok(()) }
//! ```
//!
//! Every method must be called inside a tokio runtime (the attempts are tokio tasks).

pub mod proto;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
pub use proto::{
    DEFAULT_MAX_RECORD, DirectHint, Handshake, HandshakeStep, Hints, NONCE_LEN, Opener,
    RECORD_OVERHEAD, Role, Sealer, TAG_LEN, TRANSIT_PURPOSE, TransitKeys, transit_message,
};

/// How a [`Transit`] listens and which relays it uses.
#[derive(Debug, Clone)]
pub struct TransitConfig {
    /// Addresses to listen on for direct connections (port 0: any free port). Empty: do
    /// not listen (the reference's `--no-listen`). Default: `0.0.0.0:0`.
    pub listen: Vec<SocketAddr>,
    /// The host names advertised for the listeners. `None` (default): each listener's own
    /// address, and for a wildcard listener this machine's non-loopback IPv4 addresses
    /// (or `127.0.0.1` when there are none), like the reference.
    pub advertise: Option<Vec<String>>,
    /// Our transit relays (`--transit-helper`). The peer's relays are added to them.
    pub relays: Vec<DirectHint>,
    /// Delay before the first relay group when a direct attempt was started (2 s).
    pub relay_delay: Duration,
    /// Limit for one connection's handshake after TCP connect (60 s).
    pub handshake_timeout: Duration,
    /// Limit for the whole [`Transit::connect`] (120 s).
    pub connect_timeout: Duration,
    /// Cap on an incoming record's size, checked before allocating
    /// ([`DEFAULT_MAX_RECORD`]).
    pub max_record: usize,
    /// Make every connection through this SOCKS5 proxy (names resolved by the proxy).
    /// With a proxy nothing listens and no direct hint of ours is sent, whatever
    /// [`TransitConfig::listen`] says: a peer could not reach us through it, and our
    /// addresses would tell it where we are.
    pub proxy: Option<crate::proxy::Socks5>,
    /// Tor mode (with `proxy` set to the tor's SOCKS port): the peer's `tor-tcp-v1` hints
    /// are dialled too, and hints whose host is an IPv6 literal or a non-public IPv4
    /// address are dropped ([`crate::tor::allows`]), like the reference. Without it,
    /// `tor-tcp-v1` hints are ignored.
    pub tor: bool,
    /// In Tor mode, publish an ephemeral onion service through this tor when it is set up
    /// for that ([`crate::tor::Tor::publishes_onions`]): a listener on 127.0.0.1 behind it,
    /// and its `tor-tcp-v1` hint.
    pub onion: Option<std::sync::Arc<crate::tor::Tor>>,
}

impl Default for TransitConfig {
    fn default() -> Self {
        TransitConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))],
            advertise: None,
            relays: Vec::new(),
            relay_delay: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(120),
            max_record: DEFAULT_MAX_RECORD,
            proxy: None,
            tor: false,
            onion: None,
        }
    }
}

impl TransitConfig {
    /// The settings every front end offers: our own transit relay (`tcp:HOST:PORT`, the
    /// CLI's `--transit-helper`) and whether to listen for direct connections (`false`:
    /// the CLI's `--no-listen`). The rest stays at its default.
    pub fn with_relay(relay: Option<&str>, listen: bool) -> Result<TransitConfig> {
        let mut c = TransitConfig::default();
        if !listen {
            c.listen.clear();
        }
        if let Some(r) = relay {
            c.relays = vec![DirectHint::parse_helper(r)?];
        }
        Ok(c)
    }
}

/// Which kind of path the winning connection took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// We connected to one of the peer's direct hints.
    DirectOutbound(String),
    /// The peer connected to our listener.
    DirectInbound(SocketAddr),
    /// Through a transit relay (`host:port`).
    Relay(String),
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathKind::DirectOutbound(a) => write!(f, "direct to {a}"),
            PathKind::DirectInbound(a) => write!(f, "direct from {a}"),
            PathKind::Relay(a) => write!(f, "relay {a}"),
        }
    }
}

enum Outcome {
    Won(TcpStream, PathKind),
    Failed,
}

struct Race {
    role: Role,
    keys: TransitKeys,
    side: String,
    claimed: AtomicBool,
    handshake_timeout: Duration,
}

impl Race {
    /// The peer handshake (PROTOCOL §7.5) on a connected stream, after an optional relay
    /// handshake (§7.4). `Ok` only for the winner.
    async fn negotiate(&self, s: &mut TcpStream, relay: bool) -> Result<()> {
        let io = |e: std::io::Error| Error::Transfer(format!("transit handshake failed: {e}"));
        let _ = s.set_nodelay(true);
        let mut hs = Handshake::new(&self.keys, self.role, relay.then_some(&*self.side));
        let mut buf = [0u8; 128];
        loop {
            while let Some(bytes) = hs.poll_transmit() {
                s.write_all(&bytes).await.map_err(io)?;
            }
            match hs.step() {
                HandshakeStep::Done => return self.claim_receiver(),
                HandshakeStep::Decide => {
                    let first = !self.claimed.swap(true, Ordering::SeqCst);
                    let decided = hs.decide(first);
                    while let Some(bytes) = hs.poll_transmit() {
                        let _ = s.write_all(&bytes).await;
                    }
                    return decided;
                }
                HandshakeStep::Read(n) => {
                    let want = n.min(buf.len());
                    let n = s.read(&mut buf[..want]).await.map_err(io)?;
                    if n == 0 {
                        return Err(Error::Transfer(
                            "transit handshake failed: connection closed".into(),
                        ));
                    }
                    hs.handle_input(&buf[..n])?;
                }
            }
        }
    }

    /// A receiver's connection that got `go` wins unless another one already did.
    fn claim_receiver(&self) -> Result<()> {
        if self.role == Role::Receiver && self.claimed.swap(true, Ordering::SeqCst) {
            return Err(Error::Transfer(
                "transit handshake failed: another connection won".into(),
            ));
        }
        Ok(())
    }

    async fn negotiate_timed(&self, s: &mut TcpStream, relay: bool) -> Result<()> {
        tokio::time::timeout(self.handshake_timeout, self.negotiate(s, relay))
            .await
            .map_err(|_| Error::Timeout("transit handshake"))?
    }
}

/// One side of a Transit connection being set up. See the [module docs](self).
pub struct Transit {
    race: Arc<Race>,
    /// Our onion service, kept while the connection it may carry lives.
    onion: Option<crate::tor::Onion>,
    config: TransitConfig,
    hints: Hints,
    peer: Hints,
    listening: bool,
    tasks: JoinSet<()>,
    tx: mpsc::UnboundedSender<Outcome>,
    rx: mpsc::UnboundedReceiver<Outcome>,
}

impl std::fmt::Debug for Transit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transit")
            .field("role", &self.race.role)
            .field("hints", &self.hints)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Transit {
    /// Derive the keys from the 32-byte `transit_key` (for file transfer:
    /// `wormhole.derive_key(TRANSIT_PURPOSE, 32)`), bind the listeners and start accepting:
    /// inbound connections are negotiated at once.
    pub async fn new(role: Role, transit_key: &[u8], config: TransitConfig) -> Result<Transit> {
        let side = hex::encode(rand::random::<[u8; 8]>());
        let race = Arc::new(Race {
            role,
            keys: TransitKeys::new(transit_key),
            side,
            claimed: AtomicBool::new(false),
            handshake_timeout: config.handshake_timeout,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let mut hints = Hints::default();
        let listen: &[SocketAddr] = if config.proxy.is_some() || config.tor {
            &[]
        } else {
            &config.listen
        };
        for addr in listen {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                Error::Transfer(format!("cannot listen for transit on {addr}: {e}"))
            })?;
            let local = l
                .local_addr()
                .map_err(|e| Error::Transfer(format!("transit listener: {e}")))?;
            let hosts = match &config.advertise {
                Some(h) => h.clone(),
                None if local.ip().is_unspecified() => local_addresses(),
                None => vec![local.ip().to_string()],
            };
            for h in hosts {
                let hint = DirectHint::new(h, local.port());
                if !hints.direct.contains(&hint) {
                    hints.direct.push(hint);
                }
            }
            tasks.spawn(accept_loop(l, race.clone(), tx.clone()));
        }
        let mut onion = None;
        if let Some(tor) = config
            .onion
            .clone()
            .filter(|t| config.tor && t.publishes_onions())
        {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|e| Error::Transfer(format!("cannot listen for transit: {e}")))?;
            let port = l
                .local_addr()
                .map_err(|e| Error::Transfer(format!("transit listener: {e}")))?
                .port();
            // Without an onion service the transfer still has the relays: go on without.
            match tokio::task::spawn_blocking(move || tor.add_onion(port)).await {
                Ok(Ok(o)) => {
                    hints.tor.push(DirectHint::new(o.host.clone(), o.port));
                    tasks.spawn(accept_loop(l, race.clone(), tx.clone()));
                    onion = Some(o);
                }
                Ok(Err(e)) => tracing::warn!("no onion service for this transfer: {e}"),
                Err(e) => return Err(Error::Internal(e.to_string())),
            }
        }
        for r in &config.relays {
            hints.relays.push(vec![r.clone()]);
        }
        Ok(Transit {
            race,
            listening: !listen.is_empty() || onion.is_some(),
            onion,
            config,
            hints,
            peer: Hints::default(),
            tasks,
            tx,
            rx,
        })
    }

    /// Our hints: direct hints for the listeners, then our relays.
    pub fn hints(&self) -> &Hints {
        &self.hints
    }

    /// The `{"transit": …}` mailbox message carrying [`Transit::hints`].
    pub fn transit_message(&self) -> Vec<u8> {
        transit_message(&self.hints)
    }

    /// Add the hints from the peer's `transit` message (may be called more than once).
    pub fn add_peer_hints(&mut self, hints: Hints) {
        self.peer.direct.extend(hints.direct);
        self.peer.tor.extend(hints.tor);
        self.peer.relays.extend(hints.relays);
    }

    /// Race all connections (PROTOCOL §7.3) and return the first that completes the
    /// handshake. Direct attempts start at once; relays (ours and the peer's, grouped by
    /// priority, highest first) after [`TransitConfig::relay_delay`] when a direct attempt
    /// was started, the next group one delay later. Fails after
    /// [`TransitConfig::connect_timeout`], or as soon as every attempt failed when we do
    /// not listen.
    pub async fn connect(mut self) -> Result<Connection> {
        let mut outstanding = 0usize;
        let mut direct_started = false;
        let tor = self.config.tor;
        let usable = |h: &DirectHint| !tor || crate::tor::allows(&h.hostname);
        let onions = if tor { &self.peer.tor[..] } else { &[] };
        for h in self.peer.direct.iter().chain(onions).filter(|h| usable(h)) {
            direct_started = true;
            outstanding += 1;
            self.tasks.spawn(attempt(
                h.clone(),
                false,
                Duration::ZERO,
                self.race.clone(),
                (self.tx.clone(), self.config.proxy.clone()),
            ));
        }
        let mut relays: Vec<DirectHint> = Vec::new();
        for h in self
            .config
            .relays
            .iter()
            .chain(self.peer.relays.iter().flatten())
            .filter(|h| usable(h))
        {
            if !relays.contains(h) {
                relays.push(h.clone());
            }
        }
        relays.sort_by(|a, b| b.priority.total_cmp(&a.priority));
        let mut delay = if direct_started {
            self.config.relay_delay
        } else {
            Duration::ZERO
        };
        let mut last_priority = relays.first().map(|r| r.priority);
        for h in relays {
            if Some(h.priority) != last_priority {
                delay += self.config.relay_delay;
                last_priority = Some(h.priority);
            }
            outstanding += 1;
            let to = (self.tx.clone(), self.config.proxy.clone());
            self.tasks
                .spawn(attempt(h, true, delay, self.race.clone(), to));
        }
        let listening = self.listening;
        let max_record = self.config.max_record;
        let role = self.race.role;
        let wait = async {
            loop {
                if outstanding == 0 && !listening {
                    return Err(Error::Transfer(
                        "could not connect to the peer: every direct and relay connection failed"
                            .into(),
                    ));
                }
                match self.rx.recv().await {
                    Some(Outcome::Won(s, kind)) => return Ok((s, kind)),
                    Some(Outcome::Failed) => outstanding = outstanding.saturating_sub(1),
                    None => return Err(Error::Internal("transit race ended".into())),
                }
            }
        };
        let (stream, kind) = tokio::time::timeout(self.config.connect_timeout, wait)
            .await
            .map_err(|_| Error::Timeout("transit connection"))??;
        // Stop listening and cancel the losers.
        self.tasks.abort_all();
        let (sealer, opener) = self.race.keys.record_layer(role);
        Ok(Connection {
            stream,
            sealer,
            opener,
            max_record,
            kind,
            _onion: self.onion.take(),
        })
    }
}

async fn accept_loop(l: TcpListener, race: Arc<Race>, tx: mpsc::UnboundedSender<Outcome>) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = l.accept() => {
                let Ok((mut s, peer)) = accepted else {
                    // E.g. out of file descriptors: don't spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let (race, tx) = (race.clone(), tx.clone());
                handshakes.spawn(async move {
                    if race.negotiate_timed(&mut s, false).await.is_ok() {
                        let _ = tx.send(Outcome::Won(s, PathKind::DirectInbound(peer)));
                    }
                });
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

async fn attempt(
    hint: DirectHint,
    relay: bool,
    delay: Duration,
    race: Arc<Race>,
    (tx, proxy): (mpsc::UnboundedSender<Outcome>, Option<crate::proxy::Socks5>),
) {
    tokio::time::sleep(delay).await;
    let addr = hint.address();
    // An onion service may need a few seconds after it is published before it can be
    // reached: retry those for a while.
    let retry_until = hint
        .hostname
        .ends_with(".onion")
        .then(|| tokio::time::Instant::now() + ONION_RETRY);
    let connected = loop {
        let r = crate::proxy::connect(proxy.as_ref(), &hint.hostname, hint.port).await;
        match (r, retry_until) {
            (Err(e), Some(until)) if tokio::time::Instant::now() + ONION_PAUSE < until => {
                tracing::debug!("transit connect to {addr} failed, will retry: {e}");
                tokio::time::sleep(ONION_PAUSE).await;
            }
            (r, _) => break r,
        }
    };
    let outcome = match connected {
        Ok(mut s) => match race.negotiate_timed(&mut s, relay).await {
            Ok(()) => Outcome::Won(
                s,
                if relay {
                    PathKind::Relay(addr)
                } else {
                    PathKind::DirectOutbound(addr)
                },
            ),
            Err(e) => {
                tracing::debug!("transit attempt to {addr} failed: {e}");
                Outcome::Failed
            }
        },
        Err(e) => {
            tracing::debug!("transit connect to {addr} failed: {e}");
            Outcome::Failed
        }
    };
    let _ = tx.send(outcome);
}

/// How long attempts to an onion hint are retried, and the pause between them.
const ONION_RETRY: Duration = Duration::from_secs(60);
const ONION_PAUSE: Duration = Duration::from_secs(2);

/// This machine's non-loopback IPv4 addresses, or `["127.0.0.1"]` when it has none
/// (what the reference advertises for a wildcard listener).
pub fn local_addresses() -> Vec<String> {
    let mut out: Vec<String> = interface_addresses()
        .into_iter()
        .filter(|ip| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| ip.to_string())
        .collect();
    out.dedup();
    if out.is_empty() {
        out.push("127.0.0.1".into());
    }
    out
}

/// Every address of every interface (the `if-addrs` crate: getifaddrs on Unix).
fn interface_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// An established Transit connection: records in both directions.
pub struct Connection {
    stream: TcpStream,
    sealer: Sealer,
    opener: Opener,
    max_record: usize,
    kind: PathKind,
    _onion: Option<crate::tor::Onion>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// How the connection reached the peer.
    pub fn path(&self) -> &PathKind {
        &self.kind
    }

    /// Encrypt and send one record.
    pub async fn send_record(&mut self, plaintext: &[u8]) -> Result<()> {
        let frame = self.sealer.seal(plaintext)?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| Error::Transfer(format!("transit connection lost: {e}")))
    }

    /// Receive and decrypt one record. Fails on EOF, on a record above the cap, a bad nonce
    /// or a record that does not decrypt.
    pub async fn receive_record(&mut self) -> Result<Vec<u8>> {
        let lost = |e: std::io::Error| Error::Transfer(format!("transit connection lost: {e}"));
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).await.map_err(lost)?;
        let n = Opener::box_len(header, self.max_record)?;
        let mut boxed = vec![0u8; n];
        self.stream.read_exact(&mut boxed).await.map_err(lost)?;
        let plain = self.opener.open_in_place(&mut boxed)?.to_vec();
        Ok(plain)
    }

    /// Close the connection (there is no close record: the TCP connection just ends).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Turn into a blocking connection for bulk transfers on plain threads.
    pub fn into_blocking(self) -> Result<BlockingConnection> {
        let std = self
            .stream
            .into_std()
            .map_err(|e| Error::Transfer(format!("transit connection: {e}")))?;
        std.set_nonblocking(false)
            .map_err(|e| Error::Transfer(format!("transit connection: {e}")))?;
        Ok(BlockingConnection {
            stream: std,
            sealer: self.sealer,
            opener: self.opener,
            max_record: self.max_record,
            kind: self.kind,
            _onion: self._onion,
        })
    }
}

/// A Transit connection on a blocking `std` socket, for pipelines on plain threads. Split
/// the socket (`stream.try_clone()`) to write and read on different threads.
pub struct BlockingConnection {
    /// The socket.
    pub stream: std::net::TcpStream,
    /// Encrypts our records.
    pub sealer: Sealer,
    /// Decrypts the peer's records.
    pub opener: Opener,
    /// Cap on incoming records.
    pub max_record: usize,
    /// How the connection reached the peer.
    pub kind: PathKind,
    /// Our onion service, if the connection may run through it.
    _onion: Option<crate::tor::Onion>,
}

impl std::fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingConnection")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl BlockingConnection {
    /// Read one record's box into `buf` (reused; grown as needed up to the cap) and return
    /// the decrypted plaintext, a sub-slice of `buf`.
    pub fn read_record<'a>(
        stream: &mut impl std::io::Read,
        opener: &mut Opener,
        max_record: usize,
        buf: &'a mut Vec<u8>,
    ) -> Result<Option<&'a mut [u8]>> {
        let mut header = [0u8; 4];
        if !read_exact_or_eof(stream, &mut header)? {
            return Ok(None);
        }
        let n = Opener::box_len(header, max_record)?;
        buf.resize(n, 0);
        stream
            .read_exact(&mut buf[..n])
            .map_err(|e| Error::Transfer(format!("transit connection lost: {e}")))?;
        Ok(Some(opener.open_in_place(&mut buf[..n])?))
    }
}

/// `read_exact`, but `Ok(false)` on a clean EOF before the first byte.
fn read_exact_or_eof(r: &mut impl std::io::Read, buf: &mut [u8]) -> Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(Error::Transfer(
                    "transit connection lost in the middle of a record".into(),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Transfer(format!("transit connection lost: {e}"))),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: bool) -> TransitConfig {
        TransitConfig {
            listen: if listen {
                vec!["127.0.0.1:0".parse().unwrap()]
            } else {
                vec![]
            },
            ..TransitConfig::default()
        }
    }

    #[tokio::test]
    async fn direct_connection_and_records_both_ways() {
        let key = [7u8; 32];
        let s = Transit::new(Role::Sender, &key, cfg(true)).await.unwrap();
        let mut r = Transit::new(Role::Receiver, &key, cfg(false))
            .await
            .unwrap();
        assert_eq!(s.hints().direct.len(), 1);
        assert_eq!(s.hints().direct[0].hostname, "127.0.0.1");
        r.add_peer_hints(s.hints().clone());
        let (cs, cr) = tokio::join!(s.connect(), r.connect());
        let (mut cs, mut cr) = (cs.unwrap(), cr.unwrap());
        assert!(matches!(cs.path(), PathKind::DirectInbound(_)));
        cs.send_record(b"hello").await.unwrap();
        assert_eq!(cr.receive_record().await.unwrap(), b"hello");
        cr.send_record(b"ack").await.unwrap();
        assert_eq!(cs.receive_record().await.unwrap(), b"ack");
    }

    /// A minimal relay: pairs two connections presenting the same token, answers `ok\n`,
    /// then forwards bytes (PROTOCOL §7.7).
    async fn fake_relay() -> (DirectHint, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut lines = Vec::new();
            while conns.len() < 2 {
                let (mut c, _) = l.accept().await.unwrap();
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while b[0] != b'\n' {
                    c.read_exact(&mut b).await.unwrap();
                    line.push(b[0]);
                }
                lines.push(String::from_utf8(line).unwrap());
                conns.push(c);
            }
            let (mut a, mut b) = (conns.remove(0), conns.remove(0));
            a.write_all(b"ok\n").await.unwrap();
            b.write_all(b"ok\n").await.unwrap();
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
            lines
        });
        (DirectHint::new("127.0.0.1", port), h)
    }

    #[tokio::test]
    async fn relay_only_connection() {
        let (relay, lines) = fake_relay().await;
        let key = [9u8; 32];
        let cfg = TransitConfig {
            listen: vec![],
            relays: vec![relay],
            ..TransitConfig::default()
        };
        let s = Transit::new(Role::Sender, &key, cfg.clone()).await.unwrap();
        let mut r = Transit::new(Role::Receiver, &key, cfg).await.unwrap();
        assert!(s.hints().direct.is_empty());
        assert_eq!(s.hints().relays.len(), 1);
        let mut s = s;
        s.add_peer_hints(r.hints().clone());
        r.add_peer_hints(s.hints().clone());
        let t0 = std::time::Instant::now();
        let (cs, cr) = tokio::join!(s.connect(), r.connect());
        // No direct attempt, so the relay is tried at once (no 2 s delay).
        assert!(t0.elapsed() < Duration::from_secs(1));
        let (mut cs, mut cr) = (cs.unwrap(), cr.unwrap());
        assert!(matches!(cs.path(), PathKind::Relay(_)));
        let lines = lines.await.unwrap();
        let token = &lines[0][13..77];
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("please relay ") && l.len() == 104)
        );
        assert_eq!(&lines[1][13..77], token, "same token");
        assert_ne!(lines[0][87..103], lines[1][87..103], "different sides");
        cs.send_record(b"through the relay").await.unwrap();
        assert_eq!(cr.receive_record().await.unwrap(), b"through the relay");
    }

    #[tokio::test]
    async fn relays_wait_for_the_direct_attempts() {
        let (relay, _lines) = fake_relay().await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let key = [5u8; 32];
        let cfg = TransitConfig {
            listen: vec![],
            relays: vec![relay],
            relay_delay: Duration::from_millis(300),
            ..TransitConfig::default()
        };
        let mut s = Transit::new(Role::Sender, &key, cfg.clone()).await.unwrap();
        let r = Transit::new(Role::Receiver, &key, cfg).await.unwrap();
        // The sender sees a (dead) direct hint, so its relay attempt waits one delay.
        s.add_peer_hints(Hints {
            direct: vec![DirectHint::new("127.0.0.1", closed)],
            ..Hints::default()
        });
        let t0 = std::time::Instant::now();
        let (cs, cr) = tokio::join!(s.connect(), r.connect());
        assert!(cs.is_ok() && cr.is_ok());
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn oversized_record_is_refused_before_allocating() {
        let key = [3u8; 32];
        let s = Transit::new(Role::Sender, &key, cfg(true)).await.unwrap();
        let mut rcfg = cfg(false);
        rcfg.max_record = 1000;
        let mut r = Transit::new(Role::Receiver, &key, rcfg).await.unwrap();
        r.add_peer_hints(s.hints().clone());
        let (cs, cr) = tokio::join!(s.connect(), r.connect());
        let (mut cs, mut cr) = (cs.unwrap(), cr.unwrap());
        // A header announcing 4 GiB - 1.
        cs.stream
            .write_all(&[0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let err = cr.receive_record().await.unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[tokio::test]
    async fn listens_where_the_application_says() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("SKIPPED: no IPv6 loopback here");
            return;
        }
        let key = [6u8; 32];
        let cfg = TransitConfig {
            listen: vec!["[::1]:0".parse().unwrap()],
            ..TransitConfig::default()
        };
        let s = Transit::new(Role::Sender, &key, cfg).await.unwrap();
        assert_eq!(s.hints().direct.len(), 1);
        assert_eq!(s.hints().direct[0].hostname, "::1");
        let mut r = Transit::new(
            Role::Receiver,
            &key,
            TransitConfig {
                listen: vec![],
                ..TransitConfig::default()
            },
        )
        .await
        .unwrap();
        r.add_peer_hints(s.hints().clone());
        let (cs, cr) = tokio::join!(s.connect(), r.connect());
        assert!(
            matches!(cr.unwrap().path(), PathKind::DirectOutbound(a) if a.starts_with("[::1]:"))
        );
        assert!(cs.is_ok());
    }

    #[tokio::test]
    async fn wrong_key_fails_fast_without_listener() {
        let s = Transit::new(Role::Sender, &[1u8; 32], cfg(true))
            .await
            .unwrap();
        let mut r = Transit::new(Role::Receiver, &[2u8; 32], cfg(false))
            .await
            .unwrap();
        r.add_peer_hints(s.hints().clone());
        let err = r.connect().await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Transfer);
        drop(s);
    }

    /// A SOCKS5 server that records every CONNECT target (`host:port`) and refuses it.
    async fn recording_socks() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut head = [0u8; 2];
                    c.read_exact(&mut head).await?;
                    let mut methods = vec![0u8; usize::from(head[1])];
                    c.read_exact(&mut methods).await?;
                    c.write_all(&[5, 0]).await?;
                    let mut req = [0u8; 4];
                    c.read_exact(&mut req).await?;
                    let host = match req[3] {
                        1 => {
                            let mut ip = [0u8; 4];
                            c.read_exact(&mut ip).await?;
                            std::net::Ipv4Addr::from(ip).to_string()
                        }
                        3 => {
                            let mut n = [0u8; 1];
                            c.read_exact(&mut n).await?;
                            let mut name = vec![0u8; usize::from(n[0])];
                            c.read_exact(&mut name).await?;
                            String::from_utf8_lossy(&name).into_owned()
                        }
                        4 => {
                            let mut ip = [0u8; 16];
                            c.read_exact(&mut ip).await?;
                            std::net::Ipv6Addr::from(ip).to_string()
                        }
                        _ => return Ok::<(), std::io::Error>(()),
                    };
                    let mut port = [0u8; 2];
                    c.read_exact(&mut port).await?;
                    seen.lock()
                        .unwrap()
                        .push(format!("{host}:{}", u16::from_be_bytes(port)));
                    // "connection refused"
                    c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
                    Ok(())
                });
            }
        });
        (addr, seen)
    }

    /// In Tor mode the peer's onion hints are dialled (and retried for a while: a new onion
    /// service takes a moment to be reachable) and numeric hints that are not public IPv4
    /// are dropped; without Tor, onion hints are ignored. Everything goes through the
    /// proxy, and nothing listens. (Virtual time: the retry pauses take none.)
    #[tokio::test(start_paused = true)]
    async fn tor_mode_chooses_the_hints_to_dial() {
        let peer = Hints::from_transit_json(&serde_json::json!({"hints-v1": [
            {"type": "direct-tcp-v1", "hostname": "127.0.0.1", "port": 1},
            {"type": "direct-tcp-v1", "hostname": "peer.example", "port": 2},
            {"type": "tor-tcp-v1", "hostname": "abc.onion", "port": 3},
            {"type": "direct-tcp-v1", "hostname": "fe80::1", "port": 6},
            {"type": "relay-v1", "hints": [
                {"type": "direct-tcp-v1", "hostname": "10.0.0.1", "port": 4},
                {"type": "direct-tcp-v1", "hostname": "relay.example", "port": 5}]}]}));
        for (tor, want) in [
            (
                true,
                vec!["abc.onion:3", "peer.example:2", "relay.example:5"],
            ),
            (
                false,
                vec![
                    "10.0.0.1:4",
                    "127.0.0.1:1",
                    "fe80::1:6",
                    "peer.example:2",
                    "relay.example:5",
                ],
            ),
        ] {
            let (proxy, seen) = recording_socks().await;
            let cfg = TransitConfig {
                proxy: Some(crate::proxy::Socks5::parse(&proxy).unwrap()),
                tor,
                relay_delay: Duration::from_millis(10),
                ..TransitConfig::default()
            };
            let mut t = Transit::new(Role::Sender, &[1u8; 32], cfg).await.unwrap();
            assert!(t.hints().direct.is_empty(), "no direct hints of our own");
            t.add_peer_hints(peer.clone());
            assert!(t.connect().await.is_err());
            let mut got = seen.lock().unwrap().clone();
            let onion_tries = got.iter().filter(|t| t.ends_with(".onion:3")).count();
            assert_eq!(onion_tries > 1, tor, "onion retries: {got:?}");
            got.sort();
            got.dedup();
            assert_eq!(got, want, "tor mode: {tor}");
        }
    }
}
