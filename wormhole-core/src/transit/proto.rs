//! The sans-IO half of Transit v1 (PROTOCOL §7): key schedule, hints JSON, the relay and
//! peer handshakes and the record layer. Nothing here touches a socket or a clock, so all
//! of it is tested with the fixed vectors of PROTOCOL §10.3.

use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::proto::key;

/// The transit purpose the reference CLI always uses, whatever the app id (PROTOCOL §7.1):
/// `wormhole.derive_key(TRANSIT_PURPOSE, 32)` is the transit key of a file transfer.
pub const TRANSIT_PURPOSE: &str = "lothar.com/wormhole/text-or-file-xfer/transit-key";

/// Bytes added to each record on the wire: 4 (length) + 24 (nonce) + 16 (tag).
pub const RECORD_OVERHEAD: usize = 4 + NONCE_LEN + TAG_LEN;
/// Nonce length of a record box.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// The default cap on an incoming record's box length (checked before allocating). Known
/// senders use 16 KiB (the reference, wormhole-rs, wormhole-william) or 256 KiB (us).
pub const DEFAULT_MAX_RECORD: usize = 4 << 20;

/// Which end of a Transit connection we are. The file sender is the Transit sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Writes `go`/`nevermind`; encrypts with the sender→receiver key.
    Sender,
    /// Waits for `go`; encrypts with the receiver→sender key.
    Receiver,
}

/// Everything derived from a transit key (PROTOCOL §7.1).
#[derive(Clone)]
pub struct TransitKeys {
    sender_hs: [u8; 32],
    receiver_hs: [u8; 32],
    relay_token: [u8; 32],
    s2r: [u8; 32],
    r2s: [u8; 32],
}

impl std::fmt::Debug for TransitKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransitKeys(..)")
    }
}

fn hkdf32(k: &[u8], info: &[u8]) -> [u8; 32] {
    let v = key::derive_key(k, info, 32).unwrap_or_else(|_| vec![0; 32]);
    let mut out = [0u8; 32];
    out.copy_from_slice(&v);
    out
}

impl TransitKeys {
    /// Derive the handshake ids, relay token and record keys from a 32-byte transit key.
    pub fn new(transit_key: &[u8]) -> TransitKeys {
        TransitKeys {
            sender_hs: hkdf32(transit_key, b"transit_sender"),
            receiver_hs: hkdf32(transit_key, b"transit_receiver"),
            relay_token: relay_token(transit_key),
            s2r: hkdf32(transit_key, b"transit_record_sender_key"),
            r2s: hkdf32(transit_key, b"transit_record_receiver_key"),
        }
    }

    /// `please relay <token> for side <side>\n` (104 bytes). `side` is 16 hex chars.
    pub fn relay_handshake(&self, side: &str) -> Vec<u8> {
        relay_handshake(&self.relay_token, side)
    }

    /// `transit sender <id> ready\n\n` (87 bytes).
    pub fn sender_handshake(&self) -> Vec<u8> {
        format!("transit sender {} ready\n\n", hex::encode(self.sender_hs)).into_bytes()
    }

    /// `transit receiver <id> ready\n\n` (89 bytes).
    pub fn receiver_handshake(&self) -> Vec<u8> {
        format!(
            "transit receiver {} ready\n\n",
            hex::encode(self.receiver_hs)
        )
        .into_bytes()
    }

    /// What `role` writes first, and what it expects from the peer.
    pub fn handshakes(&self, role: Role) -> (Vec<u8>, Vec<u8>) {
        match role {
            Role::Sender => (self.sender_handshake(), self.receiver_handshake()),
            Role::Receiver => (self.receiver_handshake(), self.sender_handshake()),
        }
    }

    /// The record sealer and opener of `role`.
    pub fn record_layer(&self, role: Role) -> (Sealer, Opener) {
        match role {
            Role::Sender => (Sealer::new(&self.s2r), Opener::new(&self.r2s)),
            Role::Receiver => (Sealer::new(&self.r2s), Opener::new(&self.s2r)),
        }
    }
}

/// The relay token of a key: `HKDF(key, 32, "transit_relay_token")` (the transit key
/// for Transit, PROTOCOL §7.1; the Dilation key for Dilation, §9.2).
pub fn relay_token(key: &[u8]) -> [u8; 32] {
    hkdf32(key, b"transit_relay_token")
}

/// `please relay <hex(token)> for side <side>\n` (104 bytes with a 16-hex-char side),
/// the first line on a connection to a transit relay (PROTOCOL §7.4, §9.6).
pub fn relay_handshake(relay_token: &[u8; 32], side: &str) -> Vec<u8> {
    format!(
        "please relay {} for side {side}\n",
        hex::encode(relay_token)
    )
    .into_bytes()
}

fn counter_nonce(n: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[NONCE_LEN - 8..].copy_from_slice(&n.to_be_bytes());
    nonce
}

/// Encrypts outgoing records with a per-direction nonce counter.
pub struct Sealer {
    cipher: XSalsa20Poly1305,
    key: [u8; 32],
    fast: bool,
    next: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("next", &self.next).finish()
    }
}

impl Sealer {
    fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: XSalsa20Poly1305::new(key.into()),
            key: *key,
            fast: xsalsa20_simd::available(),
            next: 0,
        }
    }

    /// Seal in place, without allocating: `frame` holds [`RECORD_OVERHEAD`] bytes of room
    /// followed by the plaintext; on return it is the complete wire record
    /// `be4(len) ‖ nonce ‖ tag ‖ ciphertext`.
    pub fn seal_in_place(&mut self, frame: &mut [u8]) -> Result<()> {
        if frame.len() < RECORD_OVERHEAD {
            return Err(Error::InvalidArgument("record frame too short".into()));
        }
        let box_len = u32::try_from(frame.len() - 4)
            .map_err(|_| Error::InvalidArgument("record too large".into()))?;
        let nonce = counter_nonce(self.next);
        self.next += 1;
        let (head, body) = frame.split_at_mut(RECORD_OVERHEAD);
        let tag: [u8; TAG_LEN] = if self.fast {
            xsalsa20_simd::seal(&self.key, &nonce, body)
        } else {
            self.cipher
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", body)
                .map_err(|_| Error::Internal("record encryption failed".into()))?
                .into()
        };
        head[..4].copy_from_slice(&box_len.to_be_bytes());
        head[4..4 + NONCE_LEN].copy_from_slice(&nonce);
        head[4 + NONCE_LEN..].copy_from_slice(&tag);
        Ok(())
    }

    /// Seal `plaintext` into a new wire record (convenient for small records).
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut frame = vec![0u8; RECORD_OVERHEAD + plaintext.len()];
        frame[RECORD_OVERHEAD..].copy_from_slice(plaintext);
        self.seal_in_place(&mut frame)?;
        Ok(frame)
    }
}

/// Decrypts incoming records and checks their nonce counter.
pub struct Opener {
    cipher: XSalsa20Poly1305,
    key: [u8; 32],
    fast: bool,
    next: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener").field("next", &self.next).finish()
    }
}

impl Opener {
    fn new(key: &[u8; 32]) -> Opener {
        Opener {
            cipher: XSalsa20Poly1305::new(key.into()),
            key: *key,
            fast: xsalsa20_simd::available(),
            next: 0,
        }
    }

    /// The box length announced by a record's 4-byte header, refused above `max` (before
    /// anything is allocated) and below the nonce + tag size.
    pub fn box_len(header: [u8; 4], max: usize) -> Result<usize> {
        let n = u32::from_be_bytes(header) as usize;
        if n > max {
            return Err(Error::Transfer(format!(
                "the peer sent a {n}-byte record, above the {max}-byte limit"
            )));
        }
        if n < NONCE_LEN + TAG_LEN {
            return Err(Error::Transfer("the peer sent a truncated record".into()));
        }
        Ok(n)
    }

    /// Open one box (`nonce ‖ tag ‖ ciphertext`, without the length prefix) in place and
    /// return the plaintext, a sub-slice of `boxed`.
    pub fn open_in_place<'a>(&mut self, boxed: &'a mut [u8]) -> Result<&'a mut [u8]> {
        if boxed.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Transfer("the peer sent a truncated record".into()));
        }
        let expected = counter_nonce(self.next);
        let (head, body) = boxed.split_at_mut(NONCE_LEN + TAG_LEN);
        if head[..NONCE_LEN] != expected {
            return Err(Error::Transfer(
                "the peer sent a record out of order (bad nonce)".into(),
            ));
        }
        let corrupted = || Error::Transfer("a record failed to decrypt (corrupted)".into());
        if self.fast {
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&head[NONCE_LEN..]);
            if !xsalsa20_simd::open(&self.key, &expected, body, &tag) {
                return Err(corrupted());
            }
        } else {
            let tag = Tag::clone_from_slice(&head[NONCE_LEN..]);
            self.cipher
                .decrypt_in_place_detached(Nonce::from_slice(&expected), b"", body, &tag)
                .map_err(|_| corrupted())?;
        }
        self.next += 1;
        Ok(body)
    }
}

/// What a [`Handshake`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Send what [`Handshake::poll_transmit`] yields, then read at most this many bytes
    /// and pass them to [`Handshake::handle_input`] (never more, so record bytes that may
    /// follow `go` stay unread).
    Read(usize),
    /// Sender only: the peer's handshake is complete; call [`Handshake::decide`] with
    /// whether this connection is the first to get here.
    Decide,
    /// Flush [`Handshake::poll_transmit`]; the connection is the winner and carries records
    /// from now on.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HsState {
    RelayOk,
    Peer,
    Decide,
    Go,
    Done,
    Failed,
}

/// The sans-IO connection handshake of one candidate connection: the optional relay
/// handshake (PROTOCOL §7.4), the peer handshake, and `go`/`nevermind` (§7.5).
///
/// Drive it with: drain [`Handshake::poll_transmit`] and write; then act on
/// [`Handshake::step`] (read and [`Handshake::handle_input`], or [`Handshake::decide`]);
/// repeat until `Done` or an error. Incoming bytes are compared one by one, so the first
/// wrong byte fails the handshake.
#[derive(Debug)]
pub struct Handshake {
    role: Role,
    state: HsState,
    expect: Vec<u8>,
    pos: usize,
    peer_hs: Vec<u8>,
    peer_hs_out: Option<Vec<u8>>,
    out: Vec<Vec<u8>>,
}

impl Handshake {
    /// Start: through a relay when `relay_side` (our 16-hex-digit transit side) is given,
    /// else directly.
    pub fn new(keys: &TransitKeys, role: Role, relay_side: Option<&str>) -> Handshake {
        let (mine, theirs) = keys.handshakes(role);
        let mut h = Handshake {
            role,
            state: HsState::Peer,
            expect: theirs.clone(),
            pos: 0,
            peer_hs: theirs,
            peer_hs_out: None,
            out: Vec::new(),
        };
        match relay_side {
            Some(side) => {
                h.out.push(keys.relay_handshake(side));
                h.state = HsState::RelayOk;
                h.expect = b"ok\n".to_vec();
                // Our peer handshake goes out only after the relay's "ok".
                h.peer_hs_out = Some(mine);
            }
            None => h.out.push(mine),
        }
        h
    }

    /// The next bytes to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    /// What to do next.
    pub fn step(&self) -> HandshakeStep {
        match self.state {
            HsState::Decide => HandshakeStep::Decide,
            HsState::Done => HandshakeStep::Done,
            _ => HandshakeStep::Read(self.expect.len() - self.pos),
        }
    }

    /// Feed bytes read from the connection (at most what [`HandshakeStep::Read`] asked).
    pub fn handle_input(&mut self, data: &[u8]) -> Result<()> {
        let fail = |what: &str| Error::Transfer(format!("transit handshake failed: {what}"));
        for &b in data {
            if !matches!(self.state, HsState::RelayOk | HsState::Peer | HsState::Go)
                || self.pos >= self.expect.len()
            {
                self.state = HsState::Failed;
                return Err(fail("unexpected data"));
            }
            if b != self.expect[self.pos] {
                let what = match self.state {
                    HsState::RelayOk => "the relay refused",
                    HsState::Go => "the sender chose another connection",
                    _ => "wrong peer handshake",
                };
                self.state = HsState::Failed;
                return Err(fail(what));
            }
            self.pos += 1;
            if self.pos == self.expect.len() {
                self.pos = 0;
                match self.state {
                    HsState::RelayOk => {
                        self.state = HsState::Peer;
                        self.expect = self.peer_hs.clone();
                        if let Some(m) = self.peer_hs_out.take() {
                            self.out.push(m);
                        }
                    }
                    HsState::Peer => match self.role {
                        Role::Sender => self.state = HsState::Decide,
                        Role::Receiver => {
                            self.state = HsState::Go;
                            self.expect = b"go\n".to_vec();
                        }
                    },
                    HsState::Go => self.state = HsState::Done,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Sender: `winner` sends `go` (and the handshake is done); otherwise `nevermind` is
    /// queued and this fails, so the caller hangs up after writing it.
    pub fn decide(&mut self, winner: bool) -> Result<()> {
        if self.state != HsState::Decide {
            return Err(Error::Internal("handshake decision out of order".into()));
        }
        if winner {
            self.out.push(b"go\n".to_vec());
            self.state = HsState::Done;
            Ok(())
        } else {
            self.out.push(b"nevermind\n".to_vec());
            self.state = HsState::Failed;
            Err(Error::Transfer(
                "transit handshake failed: another connection won".into(),
            ))
        }
    }
}

/// One way to reach a peer or a relay over TCP (`direct-tcp-v1`).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectHint {
    /// IP literal or DNS name.
    pub hostname: String,
    /// TCP port.
    pub port: u16,
    /// Higher is preferred (default 0.0).
    pub priority: f64,
}

impl DirectHint {
    /// A hint with priority 0.0.
    pub fn new(hostname: impl Into<String>, port: u16) -> DirectHint {
        DirectHint {
            hostname: hostname.into(),
            port,
            priority: 0.0,
        }
    }

    /// `host:port`, with an IPv6 literal in brackets (for dialling and for messages).
    pub fn address(&self) -> String {
        if self.hostname.contains(':') {
            format!("[{}]:{}", self.hostname, self.port)
        } else {
            format!("{}:{}", self.hostname, self.port)
        }
    }

    /// Parse the reference's `tcp:HOST:PORT[:priority=FLOAT]` syntax (`tcp:[::1]:4001`
    /// for IPv6).
    pub fn parse_helper(s: &str) -> Result<DirectHint> {
        let bad = || Error::InvalidArgument(format!("bad transit helper {s:?}: use tcp:HOST:PORT"));
        let rest = s.strip_prefix("tcp:").ok_or_else(bad)?;
        let (host, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (h, r) = r.split_once(']').ok_or_else(bad)?;
            (h, r.strip_prefix(':').ok_or_else(bad)?)
        } else {
            rest.split_once(':').ok_or_else(bad)?
        };
        let mut parts = rest.split(':');
        let port = parts
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(bad)?;
        let mut priority = 0.0;
        for p in parts {
            let v = p.strip_prefix("priority=").ok_or_else(bad)?;
            priority = v.parse().map_err(|_| bad())?;
        }
        if host.is_empty() {
            return Err(bad());
        }
        Ok(DirectHint {
            hostname: host.to_owned(),
            port,
            priority,
        })
    }

    fn to_json(&self) -> Value {
        json!({"type": "direct-tcp-v1", "priority": self.priority,
               "hostname": self.hostname, "port": self.port})
    }

    fn from_json(v: &Value) -> Option<DirectHint> {
        Self::from_json_of(v, "direct-tcp-v1")
    }

    /// A hint of `kind` (`direct-tcp-v1` or `tor-tcp-v1`; both have the same fields).
    fn from_json_of(v: &Value, kind: &str) -> Option<DirectHint> {
        let o = v.as_object()?;
        if o.get("type")?.as_str()? != kind {
            return None;
        }
        let hostname = o.get("hostname")?.as_str()?.to_owned();
        let port = u16::try_from(o.get("port")?.as_u64()?).ok()?;
        let priority = match o.get("priority") {
            None => 0.0,
            Some(p) => p.as_f64()?,
        };
        Some(DirectHint {
            hostname,
            port,
            priority,
        })
    }
}

/// The peer's (or our) hints, split by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hints {
    /// `direct-tcp-v1` hints: where the peer listens.
    pub direct: Vec<DirectHint>,
    /// `relay-v1` hints: each is a list of alternative ways to reach one relay.
    pub relays: Vec<Vec<DirectHint>>,
    /// `tor-tcp-v1` hints (onion services): used only in Tor mode.
    pub tor: Vec<DirectHint>,
}

impl Hints {
    /// The hint objects alone (direct, then Tor, then relay), as a JSON list: the
    /// `hints-v1` of a `transit` message and the `hints` of a Dilation
    /// `connection-hints` message (PROTOCOL §7.2, §9.3).
    pub fn to_json_list(&self) -> Vec<Value> {
        let mut hints: Vec<Value> = self.direct.iter().map(DirectHint::to_json).collect();
        for t in &self.tor {
            let mut v = t.to_json();
            v["type"] = json!("tor-tcp-v1");
            hints.push(v);
        }
        for r in &self.relays {
            hints.push(json!({"type": "relay-v1",
                "hints": r.iter().map(DirectHint::to_json).collect::<Vec<_>>()}));
        }
        hints
    }

    /// The `{"abilities-v1": …, "hints-v1": …}` object of a `transit` message.
    pub fn to_transit_json(&self) -> Value {
        json!({"abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}],
               "hints-v1": self.to_json_list()})
    }

    /// Parse the content of a peer's `transit` message. Unknown and malformed hints are
    /// skipped, like the reference.
    pub fn from_transit_json(v: &Value) -> Hints {
        let list = v.get("hints-v1").and_then(Value::as_array);
        Hints::from_json_list(list.map(Vec::as_slice).unwrap_or_default())
    }

    /// Parse a list of hint objects. Unknown and malformed hints are skipped, like the
    /// reference.
    pub fn from_json_list(list: &[Value]) -> Hints {
        let mut out = Hints::default();
        for h in list {
            match h.get("type").and_then(Value::as_str) {
                Some("direct-tcp-v1") => out.direct.extend(DirectHint::from_json(h)),
                Some("tor-tcp-v1") => out.tor.extend(DirectHint::from_json_of(h, "tor-tcp-v1")),
                Some("relay-v1") => {
                    let inner: Vec<DirectHint> = h
                        .get("hints")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(DirectHint::from_json)
                        .collect();
                    if !inner.is_empty() {
                        out.relays.push(inner);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// The `{"transit": …}` mailbox message for `hints`.
pub fn transit_message(hints: &Hints) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("transit".into(), hints.to_transit_json());
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PROTOCOL §10.3, from the §10.1 key.
    fn vector_keys() -> TransitKeys {
        TransitKeys::new(
            &hex::decode("9329a646acaba7172c557c7971191ec6a1e287f84abe58c60dce2659c44c2925")
                .unwrap(),
        )
    }

    #[test]
    fn handshakes_match_the_vectors() {
        let k = vector_keys();
        assert_eq!(
            k.sender_handshake(),
            b"transit sender 6fa5ad1bb11461d5165ff989e5ce9bf1c2d464385caf06870527e62fc0643f4c ready\n\n"
        );
        assert_eq!(
            k.receiver_handshake(),
            b"transit receiver 0b5d03da4672ec8428bd2485e126faf13ef3ffb278196ddc2f95d96d3d82c1fd ready\n\n"
        );
        let relay = k.relay_handshake("0123456789abcdef");
        assert_eq!(
            relay,
            b"please relay ecd85f320731169f5768239a248b8b0f3e7834f1c05937a5939b13d6bfa933e1 for side 0123456789abcdef\n"
        );
        assert_eq!(relay.len(), 104);
        assert_eq!(k.sender_handshake().len(), 87);
        assert_eq!(k.receiver_handshake().len(), 89);
        assert_eq!(
            hex::encode(k.s2r),
            "4860c8f20d819f7caff59f3e9c6c90c7d70405c6e1247fc6eebb6686768b0d75"
        );
        assert_eq!(
            hex::encode(k.r2s),
            "31b1d3d847b354590e5db2d5f1fa0c018f175e569925258ecaeb456b3ce7de39"
        );
    }

    #[test]
    fn records_match_the_vectors() {
        let k = vector_keys();
        let (mut s, _) = k.record_layer(Role::Sender);
        assert_eq!(
            hex::encode(s.seal(b"hello").unwrap()),
            "0000002d000000000000000000000000000000000000000000000000c4c7142d3b1c49ae2ef740567bff62b0e6bdbe5baa"
        );
        assert_eq!(
            hex::encode(s.seal(b"world").unwrap()),
            "0000002d0000000000000000000000000000000000000000000000010e1f9378208c1e9993165e9f2d9d0c08412b4e48b2"
        );
        let (mut r, _) = k.record_layer(Role::Receiver);
        let ack = br#"{"ack": "ok", "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}"#;
        assert_eq!(
            hex::encode(r.seal(ack).unwrap()),
            "00000083000000000000000000000000000000000000000000000000634a7e039bca6434bdde6d77171491cfd6c60e1f0ab1133e\
             3b8b369341dd532084a8d2cde08a64bbb8284e84b668e7b1848ea3cb4abacd8967d1c3d8922e0d270be935d88d6ab87d8019c985\
             c8ed44399f3c0d5727f6d4cd81698f27b29d4bc2beb3e92de7400c78326bf4"
        );
    }

    #[test]
    fn opener_checks_order_length_and_tag() {
        let k = vector_keys();
        let (mut s, _) = k.record_layer(Role::Sender);
        let (_, mut o) = k.record_layer(Role::Receiver);
        let r0 = s.seal(b"hello").unwrap();
        let r1 = s.seal(b"world").unwrap();
        let header = |r: &[u8]| [r[0], r[1], r[2], r[3]];
        assert_eq!(Opener::box_len(header(&r0), 1 << 20).unwrap(), r0.len() - 4);
        assert!(Opener::box_len([0xff, 0xff, 0xff, 0xff], 1 << 20).is_err());
        assert!(Opener::box_len([0, 0, 0, 39], 1 << 20).is_err());
        // Out of order: record 1 first.
        assert!(o.open_in_place(&mut r1.clone()[4..]).is_err());
        let mut b0 = r0.clone();
        assert_eq!(o.open_in_place(&mut b0[4..]).unwrap(), b"hello");
        // Corrupted.
        let mut bad = r1.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(o.open_in_place(&mut bad[4..]).is_err());
        let mut b1 = r1.clone();
        assert_eq!(o.open_in_place(&mut b1[4..]).unwrap(), b"world");
    }

    #[test]
    fn hints_roundtrip_and_parse_like_the_reference() {
        let v: Value = serde_json::from_str(
            r#"{"abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}],
                "hints-v1": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "192.0.2.2", "port": 33445},
                             {"type": "direct-tcp-v1", "hostname": "h", "port": "bad"},
                             {"type": "tor-tcp-v1", "priority": 0.0, "hostname": "x.onion", "port": 1},
                             {"type": "unknown"},
                             {"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 14001}]}]}"#,
        )
        .unwrap();
        let h = Hints::from_transit_json(&v);
        assert_eq!(h.direct, vec![DirectHint::new("192.0.2.2", 33445)]);
        assert_eq!(h.relays, vec![vec![DirectHint::new("127.0.0.1", 14001)]]);
        assert_eq!(h.tor, vec![DirectHint::new("x.onion", 1)]);
        assert_eq!(Hints::from_transit_json(&h.to_transit_json()), h);
        let msg = String::from_utf8(transit_message(&h)).unwrap();
        assert!(msg.starts_with(r#"{"transit":{"abilities-v1":[{"type":"direct-tcp-v1"},{"type":"relay-v1"}],"hints-v1":[{"#));
    }

    /// Run two handshakes against each other in memory (no sockets).
    fn exchange(a: &mut Handshake, b: &mut Handshake, a_wins: bool) -> (Result<()>, Result<()>) {
        fn pass(x: &mut Handshake, y: &mut Handshake, r: &mut Result<()>) {
            while let Some(bytes) = x.poll_transmit() {
                if r.is_ok() {
                    *r = y.handle_input(&bytes);
                }
            }
        }
        let (mut ra, mut rb) = (Ok(()), Ok(()));
        for _ in 0..10 {
            pass(a, b, &mut rb);
            pass(b, a, &mut ra);
            if ra.is_ok() && a.step() == HandshakeStep::Decide {
                ra = a.decide(a_wins);
            }
            if rb.is_ok() && b.step() == HandshakeStep::Decide {
                rb = b.decide(a_wins);
            }
        }
        (ra, rb)
    }

    #[test]
    fn handshake_go_and_nevermind() {
        let k = vector_keys();
        let mut s = Handshake::new(&k, Role::Sender, None);
        let mut r = Handshake::new(&k, Role::Receiver, None);
        let (rs, rr) = exchange(&mut s, &mut r, true);
        rs.unwrap();
        rr.unwrap();
        assert_eq!(s.step(), HandshakeStep::Done);
        assert_eq!(r.step(), HandshakeStep::Done);

        let mut s = Handshake::new(&k, Role::Sender, None);
        let mut r = Handshake::new(&k, Role::Receiver, None);
        let (rs, rr) = exchange(&mut s, &mut r, false);
        assert!(rs.is_err(), "the sender hangs up after nevermind");
        assert!(rr.unwrap_err().to_string().contains("another connection"));
    }

    #[test]
    fn handshake_steps_and_mismatch() {
        let k = vector_keys();
        let mut r = Handshake::new(&k, Role::Receiver, Some("0123456789abcdef"));
        assert_eq!(
            r.poll_transmit().unwrap(),
            k.relay_handshake("0123456789abcdef")
        );
        assert_eq!(
            r.poll_transmit(),
            None,
            "nothing else before the relay's ok"
        );
        assert_eq!(r.step(), HandshakeStep::Read(3));
        r.handle_input(b"ok\n").unwrap();
        assert_eq!(r.poll_transmit().unwrap(), k.receiver_handshake());
        assert_eq!(r.step(), HandshakeStep::Read(87));
        r.handle_input(&k.sender_handshake()[..10]).unwrap();
        assert_eq!(r.step(), HandshakeStep::Read(77));
        r.handle_input(&k.sender_handshake()[10..]).unwrap();
        assert_eq!(r.step(), HandshakeStep::Read(3));
        r.handle_input(b"go\n").unwrap();
        assert_eq!(r.step(), HandshakeStep::Done);

        let mut bad = Handshake::new(&k, Role::Receiver, Some("0123456789abcdef"));
        assert!(bad.handle_input(b"impatient\n").is_err());
        let mut other = Handshake::new(&TransitKeys::new(&[0; 32]), Role::Sender, None);
        assert!(other.handle_input(&k.receiver_handshake()).is_err());
    }

    #[test]
    fn helper_syntax() {
        assert_eq!(
            DirectHint::parse_helper("tcp:127.0.0.1:4001").unwrap(),
            DirectHint::new("127.0.0.1", 4001)
        );
        assert_eq!(
            DirectHint::parse_helper("tcp:[::1]:4001:priority=2.5").unwrap(),
            DirectHint {
                hostname: "::1".into(),
                port: 4001,
                priority: 2.5
            }
        );
        for bad in [
            "127.0.0.1:4001",
            "tcp:host",
            "tcp::4001",
            "tcp:h:99999",
            "tcp:h:1:x=1",
        ] {
            assert!(DirectHint::parse_helper(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod speed {
    /// `cargo test --release -p wormhole-core seal_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn seal_speed() {
        use sha2::Digest;
        let k = super::TransitKeys::new(&[1u8; 32]);
        let (mut s, _) = k.record_layer(super::Role::Sender);
        let mut frame = vec![0u8; super::RECORD_OVERHEAD + 256 * 1024];
        let t = std::time::Instant::now();
        for _ in 0..1024 {
            s.seal_in_place(&mut frame).unwrap();
        }
        let dt = t.elapsed().as_secs_f64();
        println!("seal: {:.0} MB/s", 256.0 * 1.048576 / dt);
        let t = std::time::Instant::now();
        let mut h = sha2::Sha256::new();
        for _ in 0..1024 {
            h.update(&frame);
        }
        let _ = h.finalize();
        println!(
            "sha256: {:.0} MB/s",
            256.0 * 1.048576 / t.elapsed().as_secs_f64()
        );
    }
}
