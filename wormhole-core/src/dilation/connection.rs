//! L2: one TCP connection of a Dilation generation, sans-IO (PROTOCOL §9.6).
//!
//! ```text
//! [RelayOk]  relay connections only: we sent "please relay …\n", we wait for "ok\n"
//!    │ ok
//! Prologue   we sent our role's line, we wait for the other role's line
//!    │ line complete (Leader: send Noise message 1 "-> psk, e")
//! Handshake  Follower: wait for message 1, send message 2 "<- e, ee" and our KCM
//!    │       Leader:   wait for message 2
//! Transport  frames carry L3 records; the first record from the peer must be a KCM
//!    │       (event KeyConfirmed); the driver then calls select() on the winner
//! Failed     after any error: nothing more is accepted or sent
//! ```
//!
//! Noise is `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` with the Dilation key as psk 0 and an
//! empty Noise prologue; the Leader is the initiator. After the prologue lines every
//! message is a frame `be4(len) ‖ payload`. A record longer than [`MAX_PLAINTEXT`] is cut
//! into pieces, each encrypted on its own, and the ciphertexts are concatenated into one
//! frame.
//!
//! Usage: after [`Connection::new`] and after each [`Connection::handle_input`],
//! [`Connection::select`] or [`Connection::send_record`], drain
//! [`Connection::poll_transmit`] (bytes to write, in order) and [`Connection::poll_event`]
//! until `None`. Any error means: drop this TCP connection.
//!
//! snow runs the handshake; the transport messages are sealed and opened where they lie
//! with ring's ChaCha20-Poly1305 under the keys of snow's split ([`TransportCipher`]),
//! because snow's transport API copies each message into a second buffer, and at
//! hundreds of MB/s those copies cost as much as the cipher.
//!
//! Randomness: the ephemeral Noise private key is an input (32 bytes the caller draws from
//! its RNG), so the exchange of §10.5 is reproduced byte for byte in the tests.

use std::collections::VecDeque;

use ring::aead;
use snow::HandshakeState;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::keys::{DilationKey, DilationSide, Role};
use super::record::Record;
use super::{DilationError, Result};

/// The Noise protocol name.
pub const NOISE_PROTOCOL: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// The line the Leader sends before Noise.
pub const PROLOGUE_LEADER: &[u8] = b"Magic-Wormhole Dilation Handshake v1 Leader\n\n";
/// The line the Follower sends before Noise.
pub const PROLOGUE_FOLLOWER: &[u8] = b"Magic-Wormhole Dilation Handshake v1 Follower\n\n";
/// The relay's answer to a relay handshake.
pub const RELAY_OK: &[u8] = b"ok\n";
/// The largest Noise message (ciphertext).
pub const MAX_NOISE_MESSAGE: usize = 65535;
/// The largest plaintext per Noise message (65535 minus the 16-byte tag).
pub const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// How many written frame buffers a connection keeps for reuse, and the largest it keeps.
const MAX_SPARE_BUFFERS: usize = 8;
const MAX_SPARE_CAPACITY: usize = 1 << 20;
/// The ChaCha20-Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Default cap on an incoming frame (checked on the length prefix, before buffering).
/// The protocol has no limit; the reference writes one frame per application write.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Tunables of a [`Connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The largest frame accepted from the peer (bytes after the length prefix).
    pub max_frame: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// What a [`Connection`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// The peer's KCM arrived: this connection is keyed and confirmed. The Leader treats
    /// it as a candidate and selects the first one; the Follower selects the first
    /// connection on which this happens. Either way the driver calls
    /// [`Connection::select`] on the winner and drops the others.
    KeyConfirmed,
    /// A record other than the first KCM arrived (later KCMs are ignored).
    Record(Record),
}

/// Where a [`Connection`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Waiting for the relay's `ok\n`.
    RelayOk,
    /// Waiting for the peer's prologue line.
    Prologue,
    /// Running the Noise handshake.
    Handshake,
    /// Noise transport: records flow (see [`Connection::is_selected`]).
    Transport,
    /// An error happened; drop the connection.
    Failed,
}

/// A snow `Random` that yields one caller-chosen 32-byte ephemeral key, once.
struct OneEphemeral(Option<[u8; 32]>);

impl Random for OneEphemeral {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), snow::Error> {
        match self.0.take() {
            Some(k) if dest.len() == k.len() => {
                dest.copy_from_slice(&k);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

/// snow's primitives (the cipher from ring), with the ephemeral key taken from the caller
/// instead of the operating system's RNG.
struct EphemeralResolver([u8; 32]);

impl CryptoResolver for EphemeralResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OneEphemeral(Some(self.0))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        // ring's ChaCha20-Poly1305 (assembly) is about twice as fast as the portable one.
        RingResolver
            .resolve_cipher(choice)
            .or_else(|| DefaultResolver.resolve_cipher(choice))
    }
}

fn noise_err(e: snow::Error) -> DilationError {
    DilationError::Noise(e.to_string())
}

enum Noise {
    Handshake(Box<HandshakeState>),
    Transport(Box<Transport>),
    None,
}

/// The Noise transport phase: one [`TransportCipher`] per direction.
struct Transport {
    send: TransportCipher,
    recv: TransportCipher,
}

/// One direction of a Noise transport phase with ChaChaPoly (Noise spec §5.1, §12.3):
/// the key from the handshake's split, and the message counter `n`, used as the nonce
/// `0u32 ‖ le8(n)` with empty associated data.
struct TransportCipher {
    key: aead::LessSafeKey,
    n: u64,
}

impl TransportCipher {
    fn new(key: &[u8; 32]) -> Result<TransportCipher> {
        let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key)
            .map_err(|_| DilationError::Noise("bad transport key".into()))?;
        Ok(TransportCipher {
            key: aead::LessSafeKey::new(key),
            n: 0,
        })
    }

    fn nonce(&mut self) -> Result<aead::Nonce> {
        // Noise reserves 2^64-1; refuse rather than reuse a nonce.
        if self.n == u64::MAX {
            return Err(DilationError::Noise("transport nonces exhausted".into()));
        }
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&self.n.to_le_bytes());
        self.n += 1;
        Ok(aead::Nonce::assume_unique_for_key(b))
    }

    /// Encrypt `buf[at..]` (one message's plaintext) in place and append its tag.
    fn seal_tail(&mut self, buf: &mut Vec<u8>, at: usize) -> Result<()> {
        let nonce = self.nonce()?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, aead::Aad::empty(), &mut buf[at..])
            .map_err(|_| DilationError::Noise("encryption failed".into()))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypt one message (ciphertext ‖ tag) in place; its plaintext length.
    fn open(&mut self, msg: &mut [u8]) -> Result<usize> {
        let nonce = self.nonce()?;
        self.key
            .open_in_place(nonce, aead::Aad::empty(), msg)
            .map(|p| p.len())
            .map_err(|_| DilationError::Noise("decrypt error".into()))
    }
}

/// One Dilation connection (see the module docs for the call order).
pub struct Connection {
    role: Role,
    cfg: ConnectionConfig,
    state: ConnectionState,
    /// The line (or relay answer) being matched, and how much of it has arrived.
    expect: &'static [u8],
    pos: usize,
    /// Our prologue line, held back until the relay said ok.
    held_prologue: Option<&'static [u8]>,
    noise: Noise,
    inbuf: Vec<u8>,
    out: VecDeque<Vec<u8>>,
    /// Written frames handed back by the caller ([`Connection::reuse`]), for new frames:
    /// a fresh buffer per frame costs a page fault per 4 KiB written.
    spare: Vec<Vec<u8>>,
    events: VecDeque<ConnectionEvent>,
    peer_confirmed: bool,
    selected: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("peer_confirmed", &self.peer_confirmed)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Start a connection. `ephemeral` is the Noise ephemeral private key (32 fresh random
    /// bytes from the caller's RNG). `relay_side`: this is an outbound connection to a
    /// transit relay, and our dilation side goes into the relay handshake.
    pub fn new(
        role: Role,
        key: &DilationKey,
        ephemeral: [u8; 32],
        relay_side: Option<&DilationSide>,
        cfg: ConnectionConfig,
    ) -> Result<Connection> {
        let params: NoiseParams = NOISE_PROTOCOL.parse().map_err(noise_err)?;
        let builder = snow::Builder::with_resolver(params, Box::new(EphemeralResolver(ephemeral)))
            .psk(0, &key.0)
            .map_err(noise_err)?;
        let hs = match role {
            Role::Leader => builder.build_initiator(),
            Role::Follower => builder.build_responder(),
        }
        .map_err(noise_err)?;
        let (ours, theirs) = match role {
            Role::Leader => (PROLOGUE_LEADER, PROLOGUE_FOLLOWER),
            Role::Follower => (PROLOGUE_FOLLOWER, PROLOGUE_LEADER),
        };
        let mut c = Connection {
            role,
            cfg,
            state: ConnectionState::Prologue,
            expect: theirs,
            pos: 0,
            held_prologue: None,
            noise: Noise::Handshake(Box::new(hs)),
            inbuf: Vec::new(),
            out: VecDeque::new(),
            spare: Vec::new(),
            events: VecDeque::new(),
            peer_confirmed: false,
            selected: false,
        };
        match relay_side {
            Some(side) => {
                c.out.push_back(key.relay_handshake(side));
                c.state = ConnectionState::RelayOk;
                c.expect = RELAY_OK;
                c.held_prologue = Some(ours);
            }
            None => c.out.push_back(ours.to_vec()),
        }
        Ok(c)
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Whether [`Connection::select`] was called.
    pub fn is_selected(&self) -> bool {
        self.selected
    }

    /// The next bytes to write to the socket, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Give back a buffer from [`Connection::poll_transmit`] once it is written, to hold a
    /// later frame. Optional; a few are kept, the rest dropped.
    pub fn reuse(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < MAX_SPARE_BUFFERS && buf.capacity() <= MAX_SPARE_CAPACITY {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        self.events.pop_front()
    }

    /// Feed bytes read from the socket. On error the connection is failed for good.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<()> {
        if self.state == ConnectionState::Failed {
            return Err(DilationError::ConnectionClosed);
        }
        let r = self.input(data);
        if r.is_err() {
            self.fail();
        }
        r
    }

    fn fail(&mut self) {
        self.state = ConnectionState::Failed;
        self.noise = Noise::None;
        self.inbuf = Vec::new();
    }

    fn input(&mut self, mut data: &[u8]) -> Result<()> {
        // Plaintext lines, compared byte by byte: the first wrong byte fails.
        while matches!(
            self.state,
            ConnectionState::RelayOk | ConnectionState::Prologue
        ) {
            let Some((&b, rest)) = data.split_first() else {
                return Ok(());
            };
            data = rest;
            if b != self.expect[self.pos] {
                return Err(match self.state {
                    ConnectionState::RelayOk => DilationError::RelayRefused,
                    _ => DilationError::BadPrologue,
                });
            }
            self.pos += 1;
            if self.pos == self.expect.len() {
                self.pos = 0;
                self.line_complete()?;
            }
        }
        self.inbuf.extend_from_slice(data);
        // Frames are decrypted where they lie (the buffer is taken out meanwhile).
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut start = 0;
        let r = loop {
            let avail = &inbuf[start..];
            if avail.len() < 4 {
                break Ok(());
            }
            let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
            if len > self.cfg.max_frame {
                break Err(DilationError::Oversized {
                    len,
                    max: self.cfg.max_frame,
                });
            }
            if avail.len() < 4 + len {
                break Ok(());
            }
            let frame = &mut inbuf[start + 4..start + 4 + len];
            start += 4 + len;
            if let Err(e) = self.frame(frame) {
                break Err(e);
            }
        };
        if self.state != ConnectionState::Failed {
            self.inbuf = inbuf;
            self.inbuf.drain(..start);
        }
        r
    }

    fn line_complete(&mut self) -> Result<()> {
        match self.state {
            ConnectionState::RelayOk => {
                if let Some(p) = self.held_prologue.take() {
                    self.out.push_back(p.to_vec());
                }
                self.state = ConnectionState::Prologue;
                self.expect = match self.role {
                    Role::Leader => PROLOGUE_FOLLOWER,
                    Role::Follower => PROLOGUE_LEADER,
                };
            }
            ConnectionState::Prologue => {
                self.state = ConnectionState::Handshake;
                if self.role == Role::Leader {
                    // Noise message 1: "-> psk, e", empty payload.
                    let msg = self.handshake_write()?;
                    self.push_frame(msg);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handshake_write(&mut self) -> Result<Vec<u8>> {
        let Noise::Handshake(hs) = &mut self.noise else {
            return Err(DilationError::ConnectionClosed);
        };
        let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
        let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn enter_transport(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.noise, Noise::None) {
            Noise::Handshake(mut hs) => {
                if !hs.is_handshake_finished() {
                    return Err(DilationError::Noise("handshake not finished".into()));
                }
                let (initiator, responder) = hs.dangerously_get_raw_split();
                let (send, recv) = if hs.is_initiator() {
                    (initiator, responder)
                } else {
                    (responder, initiator)
                };
                self.noise = Noise::Transport(Box::new(Transport {
                    send: TransportCipher::new(&send)?,
                    recv: TransportCipher::new(&recv)?,
                }));
                self.state = ConnectionState::Transport;
                Ok(())
            }
            _ => Err(DilationError::ConnectionClosed),
        }
    }

    fn push_frame(&mut self, payload: Vec<u8>) {
        let mut f = Vec::with_capacity(4 + payload.len());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(&payload);
        self.out.push_back(f);
    }

    fn frame(&mut self, frame: &mut [u8]) -> Result<()> {
        match &mut self.noise {
            Noise::Handshake(hs) => {
                let mut payload = vec![0u8; frame.len()];
                hs.read_message(frame, &mut payload).map_err(noise_err)?;
                match self.role {
                    Role::Follower => {
                        // Noise message 2 "<- e, ee", then our KCM right away.
                        let msg = self.handshake_write()?;
                        self.push_frame(msg);
                        self.enter_transport()?;
                        self.encrypt_record(&Record::Kcm)?;
                    }
                    Role::Leader => self.enter_transport()?,
                }
                Ok(())
            }
            Noise::Transport(t) => {
                // Each message is opened where it lies and its plaintext moved down to
                // follow the previous one's, so the record ends up at the frame's start.
                let mut plain = 0;
                let mut at = 0;
                while at < frame.len() {
                    let end = (at + MAX_NOISE_MESSAGE).min(frame.len());
                    let n = t.recv.open(&mut frame[at..end])?;
                    if at != plain {
                        frame.copy_within(at..at + n, plain);
                    }
                    plain += n;
                    at = end;
                }
                let record = Record::decode(&frame[..plain], self.cfg.max_frame)?;
                self.record(record)
            }
            Noise::None => Err(DilationError::ConnectionClosed),
        }
    }

    fn record(&mut self, record: Record) -> Result<()> {
        if record == Record::Kcm {
            if !self.peer_confirmed {
                self.peer_confirmed = true;
                self.events.push_back(ConnectionEvent::KeyConfirmed);
            }
            // A later KCM is ignored (the reference logs it).
            return Ok(());
        }
        // The Follower sends records only after the Leader's KCM, which the Leader sends
        // only on selection; the Leader sends them only after its KCM.
        let allowed = self.peer_confirmed && (self.role == Role::Follower || self.selected);
        if !allowed {
            return Err(DilationError::UnexpectedRecord(record.kind()));
        }
        self.events.push_back(ConnectionEvent::Record(record));
        Ok(())
    }

    fn encrypt_record(&mut self, record: &Record) -> Result<()> {
        let Noise::Transport(t) = &mut self.noise else {
            return Err(DilationError::ConnectionClosed);
        };
        let plain_len = record.encoded_len();
        let pieces = plain_len.div_ceil(MAX_PLAINTEXT).max(1);
        let total = plain_len + pieces * TAG_LEN;
        let len = u32::try_from(total).map_err(|_| DilationError::Oversized {
            len: total,
            max: u32::MAX as usize,
        })?;
        // The plaintext (header, then a DATA record's payload) is copied into the frame
        // once, one message's worth at a time, and encrypted there.
        let mut head = Vec::with_capacity(16);
        let body = record.encode_head_into(&mut head);
        let mut parts = [head.as_slice(), body];
        let mut f = self.spare.pop().unwrap_or_default();
        f.reserve(4 + total);
        f.extend_from_slice(&len.to_be_bytes());
        let mut left = plain_len;
        loop {
            let at = f.len();
            let mut want = left.min(MAX_PLAINTEXT);
            left -= want;
            for part in parts.iter_mut() {
                let k = want.min(part.len());
                f.extend_from_slice(&part[..k]);
                *part = &part[k..];
                want -= k;
            }
            t.send.seal_tail(&mut f, at)?;
            if left == 0 {
                break;
            }
        }
        debug_assert_eq!(f.len(), 4 + total);
        self.out.push_back(f);
        Ok(())
    }

    /// Make this the connection of the generation, once its [`ConnectionEvent::KeyConfirmed`]
    /// came. The Leader sends its KCM now (its first record on the connection).
    pub fn select(&mut self) -> Result<()> {
        if self.state != ConnectionState::Transport || !self.peer_confirmed {
            return Err(DilationError::InvalidState(
                "select before the peer's key confirmation".into(),
            ));
        }
        if self.selected {
            return Ok(());
        }
        self.selected = true;
        if self.role == Role::Leader {
            if let Err(e) = self.encrypt_record(&Record::Kcm) {
                self.fail();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Encrypt and queue one record on the selected connection. KCM is sent by the
    /// connection itself and refused here.
    pub fn send_record(&mut self, record: &Record) -> Result<()> {
        if self.state == ConnectionState::Failed {
            return Err(DilationError::ConnectionClosed);
        }
        if !self.selected || *record == Record::Kcm {
            return Err(DilationError::InvalidState(format!(
                "{} record on a connection that is not selected",
                record.kind()
            )));
        }
        let r = self.encrypt_record(record);
        if r.is_err() {
            self.fail();
        }
        r
    }
}

#[cfg(test)]
mod tests;
