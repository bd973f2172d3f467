//! The checks behind every fuzz target, one public function per target.
//!
//! Each function takes the fuzzer's bytes, drives one parser or machine with them and
//! asserts an invariant stronger than "does not panic" where the input has one (a parsed
//! frame re-parses to the same frame, a zip never writes outside its directory, two honest
//! sessions deliver only what the other sent, …). The thin binaries in `fuzz_targets/`
//! hand libFuzzer's input to these functions; `tests/corpus.rs` replays the committed
//! corpus and regression inputs through the same functions on every `cargo test`, on
//! stable Rust. [`TARGETS`] lists them all.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use wormhole_core::proto::code::{
    nameplate_completions, validate_code, validate_nameplate, word_completions,
};
use wormhole_core::proto::session::{Event, Session, SessionConfig};
use wormhole_core::proto::wire::{
    ClientMessage, HexBytes, MailboxMessage, ServerFrame, ServerMessage,
};
use wormhole_core::text::TransferMessage;
use wormhole_core::transfer::zip;
use wormhole_core::transit::proto::{
    DirectHint, Handshake, HandshakeStep, Hints, NONCE_LEN, Opener, Role, TAG_LEN, TransitKeys,
};

/// A target's check: panics on a broken invariant.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the binary in `fuzz_targets/` and the folders under
/// `corpus/` and `regressions/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("server_frame", server_frame),
    ("client_frames", client_frames),
    ("session_schedule", session_schedule),
    ("code", code),
    ("transit_handshake", transit_handshake),
    ("transit_hints", transit_hints),
    ("record_opener", record_opener),
    ("transfer_message", transfer_message),
    ("transfer_machine", transfer_machine),
    ("zip_extract", zip_extract),
    ("relay_handshake", relay_handshake),
    ("ssh_key", ssh_key),
    ("socks5_proxy", socks5_proxy),
    ("dilation_wire", dilation_wire),
    ("forward_wire", forward_wire),
];

/// Split `data` at `0xff` bytes (never valid UTF-8) into at most `max` pieces.
fn pieces(data: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == 0xff).take(max)
}

// ---------------------------------------------------------------------------------------
// Mailbox frames
// ---------------------------------------------------------------------------------------

/// The client's parser of one server frame. A frame that parses must serialize back to a
/// frame that parses to the same message (the types carry everything the client reads).
pub fn server_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(msg) = ServerMessage::parse(text) else {
        return;
    };
    if msg == ServerMessage::Unknown {
        return;
    }
    let frame = ServerFrame {
        message: msg.clone(),
        server_tx: None,
    };
    let again = serde_json::to_string(&frame).expect("a parsed frame serializes");
    let back =
        ServerMessage::parse(&again).unwrap_or_else(|e| panic!("{again} does not parse back: {e}"));
    assert_eq!(back, msg, "{again}");
}

/// The mailbox server's handling of client frames: each input is split into up to 16
/// text frames sent on one WebSocket to an in-process server (in-memory database). Every
/// reply must be a JSON object with a string `type`, and the server must still answer a
/// `ping` on a fresh connection afterwards.
pub fn client_frames(data: &[u8]) {
    let frames: Vec<String> = pieces(data, 16)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let srv = server();
    srv.runtime.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let step = std::time::Duration::from_secs(10);
        let (mut ws, _) = tokio::time::timeout(step, tokio_tungstenite::connect_async(&srv.url))
            .await
            .expect("connect in time")
            .expect("the server accepts connections");
        for f in frames {
            if ws.send(Message::text(f)).await.is_err() {
                break; // the server hung up on a bad frame, like the reference
            }
        }
        let _ = ws.send(Message::Close(None)).await;
        // Read until the server closes; every text frame must be a typed JSON object.
        while let Ok(Some(Ok(m))) = tokio::time::timeout(step, ws.next()).await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("server sent non-JSON ({e}): {t}"));
                assert!(v["type"].is_string(), "server frame without a type: {t}");
            }
        }
        // Still alive and answering.
        let (mut ws, _) = tokio_tungstenite::connect_async(&srv.url)
            .await
            .expect("the server survives");
        ws.send(Message::text(
            r#"{"type": "ping", "ping": 7, "id": "0001"}"#,
        ))
        .await
        .expect("send ping");
        loop {
            let m = tokio::time::timeout(step, ws.next())
                .await
                .expect("an answer in time")
                .expect("an answer")
                .expect("a frame");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == "pong" {
                    assert_eq!(v["pong"], 7);
                    break;
                }
            }
        }
        let _ = ws.close(None).await;
    });
}

struct Server {
    runtime: tokio::runtime::Runtime,
    url: String,
    _handle: wormhole_server::MailboxHandle,
}

/// One in-process mailbox server for the whole fuzzing process.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let handle = runtime.block_on(async {
            let config = wormhole_server::MailboxConfig {
                database: wormhole_server::Database::Memory,
                allow_list: true,
                ..Default::default()
            };
            wormhole_server::MailboxServer::bind("127.0.0.1:0", config)
                .await
                .expect("bind a loopback port")
                .spawn()
        });
        Server {
            url: handle.url(),
            runtime,
            _handle: handle,
        }
    })
}

// ---------------------------------------------------------------------------------------
// The session: two honest peers, a fuzzed schedule and hostile frames
// ---------------------------------------------------------------------------------------

/// An in-memory mailbox for two [`Session`]s with the reference semantics a client
/// relies on: `claim` answers `claimed`, `add` is stored and `open` (re)plays the mailbox.
struct Peer {
    s: Session,
    /// How many stored messages this peer has been shown on its current connection.
    cursor: usize,
    open: bool,
    connected: bool,
    sent: Vec<Vec<u8>>,
    got: Vec<Vec<u8>>,
    closed: bool,
}

/// Two honest sessions with the same code exchange messages while the input decides the
/// schedule: which peer gets its next mailbox message, disconnects and reconnects, sends,
/// closes, or is fed a hostile server frame (the input's next piece, parsed as a frame).
/// Oracle: whatever a peer delivers is a prefix of what the other sent, in order, each
/// once: no frame without the key can forge, reorder or duplicate a message.
pub fn session_schedule(data: &[u8]) {
    schedule(data);
}

/// [`session_schedule`], returning how many messages both peers delivered.
fn schedule(data: &[u8]) -> usize {
    const MAILBOX: &str = "fuzzmailbox01";
    let mk = |seed| {
        let mut s = Session::new(
            SessionConfig {
                appid: "example.com/fuzz".into(),
                app_versions: json!({}),
                client_version: ("rust".into(), "fuzz".into()),
                dilation: false,
            },
            Box::new(StdRng::seed_from_u64(seed)),
        );
        s.set_code("5-fuzz-code").expect("a valid code");
        Peer {
            s,
            cursor: 0,
            open: false,
            connected: false,
            sent: Vec::new(),
            got: Vec::new(),
            closed: false,
        }
    };
    let mut peers = [mk(1), mk(2)];
    let mut store: Vec<MailboxMessage> = Vec::new();
    let mut input: VecDeque<u8> = data.iter().copied().collect();
    for p in &mut peers {
        p.connected = true;
        p.s.connected();
    }
    let mut steps = 0;
    while let Some(op) = input.pop_front() {
        steps += 1;
        if steps > 256 {
            break;
        }
        let i = usize::from(op & 1);
        match (op >> 1) % 8 {
            0..=2 => {
                // Deliver the next stored message (the common case).
                let p = &mut peers[i];
                if p.connected && p.open && p.cursor < store.len() {
                    let m = store[p.cursor].clone();
                    p.cursor += 1;
                    p.s.handle_server(ServerMessage::Message(m));
                }
            }
            3 => {
                let p = &mut peers[i];
                if p.connected {
                    p.s.disconnected();
                    p.connected = false;
                    p.open = false;
                } else {
                    p.connected = true;
                    p.cursor = 0;
                    p.s.connected();
                }
            }
            4 => {
                let len = usize::from(input.pop_front().unwrap_or(0) % 32);
                let body: Vec<u8> = input.drain(..len.min(input.len())).collect();
                let p = &mut peers[i];
                if p.s.send_message(body.clone()).is_ok() {
                    p.sent.push(body);
                }
            }
            5 => {
                // A hostile frame: up to the next 0xff.
                let end = input.iter().position(|&b| b == 0xff).unwrap_or(input.len());
                let raw: Vec<u8> = input.drain(..end).collect();
                input.pop_front();
                if let Ok(msg) = ServerMessage::parse(&String::from_utf8_lossy(&raw)) {
                    peers[i].s.handle_server(msg);
                }
            }
            6 => {
                // A replay of an old stored message, as a server may after a reconnect.
                let n = usize::from(input.pop_front().unwrap_or(0));
                if let Some(m) = store.get(n % store.len().max(1)).cloned() {
                    peers[i].s.handle_server(ServerMessage::Message(m));
                }
            }
            _ => peers[i].s.close(),
        }
        for p in &mut peers {
            serve(p, &mut store, MAILBOX);
        }
    }
    for (me, other) in [(0, 1), (1, 0)] {
        let got = &peers[me].got;
        let sent = &peers[other].sent;
        assert!(
            got.len() <= sent.len() && got[..] == sent[..got.len()],
            "peer {me} delivered {got:?}, the other sent {sent:?}"
        );
    }
    peers[0].got.len() + peers[1].got.len()
}

/// Answer what `p` sent like the server, and collect its events.
fn serve(p: &mut Peer, store: &mut Vec<MailboxMessage>, mailbox: &str) {
    while let Some(m) = p.s.poll_transmit() {
        if !p.connected {
            panic!("a frame was sent while disconnected: {m:?}");
        }
        match m {
            ClientMessage::Claim { .. } => p.s.handle_server(ServerMessage::Claimed {
                mailbox: mailbox.into(),
            }),
            ClientMessage::Open { .. } => {
                p.open = true;
                p.cursor = 0;
            }
            ClientMessage::Add { phase, body } => store.push(MailboxMessage {
                side: p.s.side().to_owned(),
                phase,
                body: HexBytes(body.0),
                server_rx: None,
                id: None,
            }),
            ClientMessage::Release { .. } => p.s.handle_server(ServerMessage::Released),
            ClientMessage::Close { .. } => p.s.handle_server(ServerMessage::Closed),
            _ => {}
        }
    }
    while let Some(e) = p.s.poll_event() {
        assert!(!p.closed, "an event after Closed: {e:?}");
        match e {
            Event::Message(m) => p.got.push(m),
            Event::Closed(_) => p.closed = true,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Codes
// ---------------------------------------------------------------------------------------

/// Code and nameplate validation and completion with what a user might type. A code that
/// validates has a valid nameplate; completions extend what was typed.
pub fn code(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(nameplate) = validate_code(&text) {
        assert!(text.starts_with(nameplate));
        validate_nameplate(nameplate).expect("the nameplate of a valid code is valid");
    }
    let _ = validate_nameplate(&text);
    let typed = text
        .split_once('-')
        .map(|(_, words)| words)
        .unwrap_or(&text);
    let num_words = data.first().map_or(2, |b| usize::from(b % 5));
    for c in word_completions(typed, num_words) {
        let stem = &typed[..typed.rfind('-').map_or(0, |i| i + 1)];
        assert!(c.starts_with(stem), "{c:?} does not extend {typed:?}");
    }
    let known: Vec<String> = text.split(',').map(str::to_owned).collect();
    for c in nameplate_completions(&known, &text) {
        assert!(c.ends_with('-'));
    }
}

// ---------------------------------------------------------------------------------------
// Transit
// ---------------------------------------------------------------------------------------

/// The relay and peer handshakes fed arbitrary bytes, in the sizes the machine asks for:
/// either an error, or a byte-exact honest handshake (the fuzzer cannot guess the key).
pub fn transit_handshake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = TransitKeys::new(&[7u8; 32]);
    let role = if mode & 1 == 0 {
        Role::Sender
    } else {
        Role::Receiver
    };
    let relay = (mode & 2 != 0).then_some("0123456789abcdef");
    let mut h = Handshake::new(&keys, role, relay);
    let mut rest = rest;
    loop {
        while h.poll_transmit().is_some() {}
        match h.step() {
            HandshakeStep::Read(n) => {
                assert!(n > 0);
                if rest.is_empty() {
                    return;
                }
                let take = n.min(rest.len()).min(usize::from(mode >> 2).max(1));
                let (now, later) = rest.split_at(take);
                rest = later;
                if h.handle_input(now).is_err() {
                    return;
                }
            }
            HandshakeStep::Decide => {
                if h.decide(mode & 4 == 0).is_err() {
                    return;
                }
            }
            HandshakeStep::Done => {
                // Only the exact expected bytes get here.
                let (_, theirs) = keys.handshakes(role);
                let consumed = data.len() - 1 - rest.len();
                assert!(consumed >= theirs.len(), "done after {consumed} bytes");
                return;
            }
        }
    }
}

/// The transit hints JSON and `tcp:HOST:PORT` relay strings.
pub fn transit_hints(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        let hints = Hints::from_transit_json(&v);
        let back = Hints::from_transit_json(&hints.to_transit_json());
        assert_eq!(back, hints, "hints do not survive a round trip");
    }
    if let Ok(h) = DirectHint::parse_helper(&text) {
        assert!(!h.hostname.is_empty());
    }
}

/// The record opener with arbitrary headers and boxes, after a few genuine records: a
/// header above the cap is refused before allocating, and nothing but the genuine next
/// record opens (the fuzzer may flip bits of a genuine record; the flip must be caught).
pub fn record_opener(data: &[u8]) {
    let keys = TransitKeys::new(&[9u8; 32]);
    let (mut sealer, _) = keys.record_layer(Role::Sender);
    let (_, mut opener) = keys.record_layer(Role::Receiver);
    let mut input = data;
    while input.len() >= 2 {
        let (op, rest) = input.split_at(2);
        input = rest;
        let len = usize::from(op[1]);
        let body = &input[..len.min(input.len())];
        input = &input[body.len()..];
        match op[0] % 3 {
            0 => {
                // A genuine record, possibly with one bit flipped.
                let mut boxed = sealer.seal(body).expect("seal");
                let flip = (op[0] / 3) as usize;
                let flipped = flip < 80 && 4 + flip / 8 < boxed.len();
                if flipped {
                    boxed[4 + flip / 8] ^= 1 << (flip % 8);
                }
                let mut b = boxed[4..].to_vec();
                match opener.open_in_place(&mut b) {
                    Ok(pt) => {
                        assert!(!flipped, "a flipped record opened");
                        assert_eq!(pt, body);
                    }
                    Err(_) => {
                        assert!(flipped, "a genuine record failed to open");
                        return; // the connection is dead after a bad record
                    }
                }
            }
            1 => {
                let mut header = [0u8; 4];
                for (h, b) in header.iter_mut().zip(body) {
                    *h = *b;
                }
                let n = u32::from_be_bytes(header) as usize;
                let allowed = NONCE_LEN + TAG_LEN..=1 << 16;
                match Opener::box_len(header, 1 << 16) {
                    Ok(len) => assert!(len == n && allowed.contains(&len)),
                    Err(_) => assert!(!allowed.contains(&n)),
                }
            }
            _ => {
                // Arbitrary bytes as a box: never opens.
                let mut b = body.to_vec();
                assert!(opener.open_in_place(&mut b).is_err(), "garbage opened");
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// File transfer
// ---------------------------------------------------------------------------------------

/// The file-transfer messages (offer, answer, transit, error).
pub fn transfer_message(data: &[u8]) {
    if let Ok(m) = TransferMessage::parse(data) {
        let again = m.to_bytes();
        let v: Value = serde_json::from_slice(&again).expect("re-encoded message is JSON");
        assert!(v.is_object());
    }
}

/// The transfer machine driven by a schedule read from the input: starts, peer messages
/// (canned ones with fuzzed fields, or raw bytes), the application's accept, reject and
/// cancel, I/O reports, verification and closing. Invariants: nothing panics; every
/// transfer gets at most one final event and nothing after it; a file transfer's final
/// event comes only once its I/O task has ended (it reported `Finished` or `Stopped`);
/// whatever ends a file transfer otherwise tells its task to stop; everything posted to
/// the peer is a JSON object; with no transfer running the machine claims no messages.
pub fn transfer_machine(data: &[u8]) {
    use std::collections::{HashMap, HashSet};
    use std::time::{Duration, Instant};
    use wormhole_core::transfer::machine::{
        Directive, Input, IoReport, Kind, Machine, Output, PROGRESS_INTERVAL,
    };
    let mut m = Machine::new();
    let t0 = Instant::now();
    let mut ended: HashSet<u64> = HashSet::new();
    let mut kinds: HashMap<u64, Kind> = HashMap::new();
    let mut stopping: HashSet<u64> = HashSet::new();
    let mut it = data.iter().copied();
    let mut step = 0u64;
    while let Some(op) = it.next() {
        step += 1;
        let now = t0 + Duration::from_millis(step * 7);
        let arg = it.next().unwrap_or(0);
        let text = |n: u8| {
            ["ok", "", "x", "..", "a/b", "transfer rejected", "nul\u{0}"][usize::from(n) % 7]
        };
        let current = m.current().unwrap_or(0);
        let input = match op % 12 {
            0 => {
                let kind = [Kind::SendText, Kind::ReceiveText, Kind::SendFile, Kind::ReceiveFile]
                    [usize::from(arg) % 4];
                Input::Start(kind, Some(text(arg >> 2).into()), PROGRESS_INTERVAL)
            }
            1 if arg & 1 == 1 => Input::PeerVersions(json!({"transfer-resume-v1": {}})),
            1 => Input::Verified,
            2 => Input::PeerMessage(
                match arg % 8 {
                    0 => json!({"offer": {"message": text(arg >> 3)}}),
                    1 => json!({"offer": {"file": {"filename": text(arg >> 3), "filesize": arg}}}),
                    2 => json!({"offer": {"directory": {"mode": if arg & 8 == 0 {"zipfile/deflated"} else {"tar"},
                        "dirname": text(arg >> 4), "zipsize": arg, "numbytes": 1, "numfiles": 1}}}),
                    3 => json!({"answer": {"message_ack": text(arg >> 3)}}),
                    4 if arg & 8 != 0 => json!({"answer": {"file_ack": "ok",
                        "resume": {"offset": arg >> 4, "sha256": if arg & 16 == 0 {"00"} else {"0000000000000000000000000000000000000000000000000000000000000000"}}}}),
                    4 => json!({"answer": {"file_ack": text(arg >> 3)}}),
                    5 => json!({"transit": {"hints-v1": [], "abilities-v1": []}}),
                    6 => json!({"error": text(arg >> 3)}),
                    _ => json!({"other": arg}),
                }
                .to_string()
                .into_bytes(),
            ),
            3 => {
                let n = usize::from(arg) % 16;
                let raw: Vec<u8> = it.by_ref().take(n).collect();
                Input::PeerMessage(raw)
            }
            4 => Input::Accept {
                dest: PathBuf::from(text(arg)),
                overwrite: arg & 1 == 1,
            },
            5 => Input::Reject,
            6 => Input::Cancel,
            7 => Input::Closed(if arg & 1 == 0 {
                Ok(())
            } else {
                Err(wormhole_core::Error::Lonely)
            }),
            op => {
                let id = if arg & 0x80 == 0 { current } else { u64::from(arg & 7) };
                let report = match (op, arg % 6) {
                    (8, 0) => IoReport::SenderPrepared {
                        transit: br#"{"transit":{}}"#.to_vec(),
                        offer: br#"{"offer":{}}"#.to_vec(),
                    },
                    (8, 1) => IoReport::ReceiverPrepared(br#"{"transit":{}}"#.to_vec()),
                    (8, 2) => IoReport::ReadyForData((arg & 8 != 0).then(|| {
                        wormhole_core::transfer::ResumePoint {
                            offset: u64::from(arg),
                            sha256: [arg; 32],
                        }
                    })),
                    (8, _) => IoReport::Refused {
                        reply: text(arg).into(),
                        error: wormhole_core::Error::Transfer("refused".into()),
                    },
                    (9, 5) => IoReport::Resumed(u64::from(arg)),
                    (9, _) => IoReport::Progress(u64::from(arg), u64::from(arg % 7) * 40),
                    (10, 0) => IoReport::DataSent,
                    (10, 1) => IoReport::DataReceived,
                    (10, 2) => IoReport::Connected(wormhole_core::transit::PathKind::Relay(
                        "r".into(),
                    )),
                    (10, 3) => IoReport::Stopped,
                    (10, _) => IoReport::Finished(Ok(None)),
                    _ => IoReport::Finished(if arg & 1 == 0 {
                        Ok(Some(PathBuf::from("p")))
                    } else {
                        Err(wormhole_core::Error::Cancelled)
                    }),
                };
                Input::Io(id, report)
            }
        };
        let task_ended = match &input {
            Input::Io(i, IoReport::Finished(_) | IoReport::Stopped) => Some(*i),
            _ => None,
        };
        let starting = matches!(input, Input::Start(..));
        let kind = if let Input::Start(k, ..) = &input {
            Some(*k)
        } else {
            None
        };
        let Ok((id, outputs)) = m.handle(input, now) else {
            continue;
        };
        if starting {
            assert!(
                !ended.contains(&id) && !kinds.contains_key(&id),
                "ids are fresh"
            );
            kinds.insert(id, kind.expect("a start"));
        }
        for out in &outputs {
            match out {
                Output::Send(bytes) => {
                    let v: Value = serde_json::from_slice(bytes).expect("posted JSON");
                    assert!(v.is_object(), "posted a non-object: {v}");
                }
                Output::Io(i, d) => {
                    assert!(!ended.contains(i), "a directive for ended transfer {i}");
                    if *d == Directive::Stop {
                        stopping.insert(*i);
                    }
                }
                Output::Emit(i, ev) => {
                    assert!(!ended.contains(i), "an event after the end of {i}: {ev:?}");
                    if ev.is_final() {
                        ended.insert(*i);
                        if matches!(kinds.get(i), Some(Kind::SendFile | Kind::ReceiveFile)) {
                            assert_eq!(
                                task_ended,
                                Some(*i),
                                "file transfer {i} ended before its task"
                            );
                        }
                        assert_ne!(m.current(), Some(*i), "ended but still current");
                    }
                }
            }
        }
        assert_eq!(m.wants_messages(), m.current().is_some());
        // A transfer told to stop stays current until its task has ended.
        if let Some(cur) = m.current() {
            if stopping.contains(&cur) {
                assert!(!ended.contains(&cur));
            }
        }
    }
}

/// The zip extractor on arbitrary bytes, into a scratch directory with a declared
/// maximum: whatever it writes stays inside the directory (no entry outside, no symlink)
/// and within the maximum.
pub fn zip_extract(data: &[u8]) {
    let scratch = scratch_dir();
    let zip_path = scratch.join("in.zip");
    let dest = scratch.join("out");
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir_all(&dest).expect("scratch dir");
    std::fs::write(&zip_path, data).expect("write the input");
    let max = 1 << 16;
    let _ = zip::extract(&zip_path, &dest, max);
    // Containment: walk the scratch dir; nothing but in.zip and out/ at the top.
    for e in std::fs::read_dir(&scratch).expect("scratch") {
        let name = e.expect("entry").file_name();
        assert!(
            name == "in.zip" || name == "out",
            "the extractor wrote {name:?} outside its directory"
        );
    }
    let total = walk_size(&dest);
    assert!(
        total <= max,
        "{total} bytes written, above the {max} maximum"
    );
}

fn walk_size(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        let t = e.file_type().expect("type");
        assert!(
            !t.is_symlink(),
            "the extractor made a symlink {:?}",
            e.path()
        );
        if t.is_dir() {
            total += walk_size(&e.path());
        } else {
            total += e.metadata().expect("metadata").len();
        }
    }
    total
}

/// A scratch directory of this process (and thread: tests run in parallel).
fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "wormhole-fuzz-zip-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).expect("scratch");
    d
}

// ---------------------------------------------------------------------------------------
// The relay server
// ---------------------------------------------------------------------------------------

/// The transit relay's handshake line parser: what it accepts re-serializes to the same
/// line.
pub fn relay_handshake(data: &[u8]) {
    if let Some((token, side)) = wormhole_server::relay::parse_handshake_line(data) {
        let line = match &side {
            Some(s) => format!("please relay {token} for side {s}"),
            None => format!("please relay {token}"),
        };
        assert_eq!(line.as_bytes(), data);
    }
}

// ---------------------------------------------------------------------------------------
// ssh invite
// ---------------------------------------------------------------------------------------

/// The public-key check of `wormhole ssh invite` on what a peer sends. What it accepts is
/// one line for `authorized_keys`: no control character but tab (no second key), no
/// options before the key type, the key itself base64; and it parses again to itself.
pub fn ssh_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(key) = wormhole_core::ssh::SshPublicKey::parse(&text) else {
        return;
    };
    let line = key.line();
    assert!(
        !line.contains(|c: char| c.is_control() && c != '\t'),
        "{line:?}"
    );
    assert!(line.starts_with(key.kind()) && !key.kind().contains(['=', '"', ',']));
    let b64 = line[key.kind().len()..]
        .trim_start()
        .split(char::is_whitespace)
        .next();
    let b64 = b64.expect("a key after the type");
    assert!(
        b64.len() >= 16
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    );
    let again = wormhole_core::ssh::SshPublicKey::parse(line).expect("its own line parses");
    assert_eq!(again, key);
}

// ---------------------------------------------------------------------------------------
// Proxies
// ---------------------------------------------------------------------------------------

/// The `--socks5` / `WORMHOLE_SOCKS5` parser. What it accepts is `HOST:PORT` with a port
/// of 1-65535 and credentials of 1-255 and 0-255 bytes; it parses again to itself when
/// written back; and its `Debug` form does not depend on the password.
pub fn socks5_proxy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(p) = wormhole_core::proxy::Socks5::parse(&text) else {
        return;
    };
    let (host, port) = p.server.rsplit_once(':').expect("HOST:PORT");
    assert!(
        !host.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0),
        "{p:?}"
    );
    let written = match &p.auth {
        None => p.server.clone(),
        Some((user, pass)) => {
            assert!(
                (1..=255).contains(&user.len()) && pass.len() <= 255,
                "{p:?}"
            );
            // The Debug form does not depend on the password at all.
            let other = wormhole_core::proxy::Socks5 {
                server: p.server.clone(),
                auth: Some((user.clone(), format!("{pass}x"))),
            };
            assert_eq!(format!("{p:?}"), format!("{other:?}"), "the password shows");
            format!("{user}:{pass}@{}", p.server)
        }
    };
    let again = wormhole_core::proxy::Socks5::parse(&written)
        .unwrap_or_else(|e| panic!("{written:?} does not parse again: {e}"));
    assert_eq!(again, p);
}

/// Dilation's wire, from an untrusted peer. The first byte picks the part:
/// - a `dilate-N` body: what parses serializes and parses again to itself;
/// - an L3 record: what decodes encodes (to `encoded_len` bytes) and decodes to itself;
/// - an L2 connection (Leader or Follower, relay or not) fed the rest in pieces: without
///   the key nothing confirms and no record comes out, and an error leaves it failed;
/// - an endpoint that dilated, fed the pieces as the peer's `dilate-N` bodies: no socket
///   write happens without a connection, and no subchannel event without one either.
pub fn dilation_wire(data: &[u8]) {
    use wormhole_core::dilation::connection::{Connection, ConnectionState};
    use wormhole_core::dilation::endpoint::{Endpoint, EndpointEvent, Io};
    use wormhole_core::dilation::keys::{DilationKey, DilationSide, Role as DRole};
    use wormhole_core::dilation::manager::DilateOptions;
    use wormhole_core::dilation::messages::DilationMessage;
    use wormhole_core::dilation::record::Record;

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(m) = DilationMessage::parse(rest) {
                let again = DilationMessage::parse(&m.to_bytes()).expect("re-parses");
                assert_eq!(again, m, "a dilate-N body does not survive a round trip");
            }
        }
        1 => {
            if let Ok(r) = Record::decode(rest, 1 << 16) {
                let bytes = r.encode();
                assert_eq!(bytes.len(), r.encoded_len());
                assert_eq!(Record::decode(&bytes, 1 << 16).expect("re-decodes"), r);
            }
        }
        2 => {
            let role = if mode & 4 == 0 {
                DRole::Leader
            } else {
                DRole::Follower
            };
            let side = DilationSide::parse("0123456789abcdef").expect("a side");
            let relay = (mode & 8 != 0).then_some(&side);
            let mut c = Connection::new(
                role,
                &DilationKey([7; 32]),
                [1; 32],
                relay,
                Default::default(),
            )
            .expect("a connection");
            for piece in pieces(rest, 64) {
                let failed = c.handle_input(piece).is_err();
                assert!(c.poll_event().is_none(), "an event without the key");
                while c.poll_transmit().is_some() {}
                if failed {
                    assert_eq!(c.state(), ConnectionState::Failed);
                    assert!(c.handle_input(b"more").is_err());
                    break;
                }
            }
        }
        _ => {
            let mut rng = StdRng::seed_from_u64(u64::from(mode));
            let now = std::time::Instant::now();
            let mut ep = Endpoint::default();
            ep.dilate(now, DilateOptions::default(), &mut rng)
                .expect("dilate");
            ep.peer_version(now, &["ged".to_string()], &[3; 32]);
            for piece in pieces(rest, 64) {
                ep.peer_body(now, piece);
                while let Some(io) = ep.poll_io() {
                    assert!(
                        !matches!(io, Io::Transmit { .. } | Io::Drop { .. }),
                        "socket work without a connection: {io:?}"
                    );
                }
                while ep.poll_mailbox().is_some() {}
                while let Some(ev) = ep.poll_event() {
                    assert!(
                        !matches!(ev, EndpointEvent::Subchannel(_)),
                        "a subchannel event without a connection"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------

/// fowl's messages as `wormhole forward` reads them from a peer: the input, split at
/// `0xff` into Dilation records, goes through `FrameReader` (frames may span records);
/// each frame's body is decoded as every message kind. A frame taken is the bytes its
/// 2-byte prefix declared, in order; what is left is less than one whole frame; and a
/// message that decodes encodes to a frame that decodes to the same message.
pub fn forward_wire(data: &[u8]) {
    use wormhole_cli::forward_wire::{Command, Connected, FrameReader, Open, decode, frame};
    let mut reader = FrameReader::default();
    // What the reader should hold: everything pushed, minus the frames taken.
    let mut pending: Vec<u8> = Vec::new();
    for record in pieces(data, 64) {
        reader.push(record);
        pending.extend_from_slice(record);
        while let Some(body) = reader.take() {
            assert!(pending.len() >= 2 + body.len());
            let declared = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            assert_eq!(body.len(), declared);
            assert_eq!(body[..], pending[2..2 + declared]);
            pending.drain(..2 + declared);
            let _ = decode::<Command>(&body);
            if let Ok(open) = decode::<Open>(&body) {
                let again = frame(&open).expect("a decoded Open encodes");
                assert_eq!(decode::<Open>(&again[2..]).expect("and decodes"), open);
            }
            if let Ok(c) = decode::<Connected>(&body) {
                let again = frame(&c).expect("a decoded answer encodes");
                assert_eq!(decode::<Connected>(&again[2..]).expect("and decodes"), c);
            }
        }
        assert_eq!(reader.leftover(), pending.len());
        if pending.len() >= 2 {
            let declared = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            assert!(
                pending.len() < 2 + declared,
                "a whole frame was left in the reader"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The schedule oracle is not vacuous: an honest schedule gets keys, verification and
    /// messages through both ways.
    #[test]
    fn an_honest_schedule_delivers_messages() {
        // Deliveries to both, then each sends "hi" (op 4: len 2), then deliveries.
        let mut ops = [0u8, 1].repeat(12);
        ops.extend([8, 2, b'h', b'i', 9, 2, b'h', b'o']);
        ops.extend([0u8, 1].repeat(12));
        assert_eq!(super::schedule(&ops), 2);
    }
}
