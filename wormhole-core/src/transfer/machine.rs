//! The transfer machine: the sans-IO half of text and file/directory transfer (PROTOCOL §8).
//!
//! It owns the protocol decisions of one transfer at a time: which peer message means what
//! in which state, which reply to post, which event to report, when Transit may connect.
//! It performs no I/O and reads no clock: the wormhole feeds it the peer's messages, the
//! application's commands and the reports of the transfer's I/O task
//! ([`super::io`]), each with the time, and performs what it returns ([`Output`]).
//!
//! States of one operation (see ARCHITECTURE.md for the diagram):
//!
//! ```text
//! send text:    AwaitingMessageAck ──message_ack ok──▶ done (TextSent)
//! receive text: AwaitingText ──offer{message}──▶ done (TextReceived)
//! send file:    AwaitingKey ──verified──▶ Preparing ──prepared──▶ AwaitingFileAck
//!                 ──file_ack ok──▶ Transferring ──finished──▶ done (FileSent)
//! receive file: AwaitingOffer ──offer{file|directory}──▶ Offered ──accept──▶ Accepting
//!                 ──ready──▶ Transferring ──finished──▶ done (FileReceived)
//!               AwaitingOffer ──offer{message}──▶ done (TextReceived)
//! any state: {"error"} from the peer, cancel, I/O failure or the wormhole closing ──▶ done (error)
//! a file transfer ends through Stopping: its I/O task is told to stop, and the final event
//! follows once it has (so no partial file is left when the application hears of it)
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::message::{Offer, TransferMessage};
use crate::error::{Error, Result};
use crate::transit::PathKind;

/// How often at most a progress event is reported by default (the final one always is).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What the sender offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferKind {
    /// One file of `size` bytes.
    File,
    /// A directory sent as a zip of `size` bytes holding `numfiles` files totalling
    /// `numbytes` bytes.
    Directory {
        /// Sum of the files' sizes.
        numbytes: u64,
        /// Number of files.
        numfiles: u64,
    },
}

/// What the peer offers, as the receiver's application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferInfo {
    /// The offered base name (already reduced to a safe base name).
    pub name: String,
    /// Bytes that will travel: the file size, or the zip size of a directory.
    pub size: u64,
    /// A file, or a directory with its totals.
    pub kind: OfferKind,
}

/// A transfer event: on the wormhole's event stream in delegated mode
/// ([`crate::Event::Transfer`]), and through [`super::TransferOptions::events`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// Receiver: the sender offers a file or directory; accept or reject it.
    Offer(OfferInfo),
    /// Transit connected; the data starts flowing.
    Connected(PathKind),
    /// The data continues after `offset` bytes that an earlier, interrupted attempt moved
    /// (both peers can resume; see [`advertise_resume`]). Progress counts from there.
    Resumed {
        /// Bytes the receiver already held and the sender verified.
        offset: u64,
    },
    /// `done` of `total` bytes moved (at most one per
    /// [`TransferOptions::progress_interval`](super::TransferOptions::progress_interval),
    /// plus the last).
    Progress {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Sender: every byte was sent; waiting for the receiver's ack.
    DataSent,
    /// Receiver: every byte arrived; a directory is unpacked next.
    DataReceived,
    /// A text send ended (`Ok` once the receiver acknowledged it).
    TextSent(Result<()>),
    /// A text arrived (and was acknowledged), or the receive failed. Also ends a file
    /// receive whose sender sent text.
    TextReceived(Result<String>),
    /// A file or directory send ended (`Ok` once the receiver confirmed every byte).
    FileSent(Result<()>),
    /// A file or directory receive ended: the path written, or the error.
    FileReceived(Result<PathBuf>),
}

impl TransferEvent {
    /// Whether this event ends its transfer.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TransferEvent::TextSent(_)
                | TransferEvent::TextReceived(_)
                | TransferEvent::FileSent(_)
                | TransferEvent::FileReceived(_)
        )
    }
}

/// The `app_versions` key by which a peer says it can resume an interrupted file
/// transfer (our extension; see [`advertise_resume`]).
pub const RESUME_VERSION_KEY: &str = "transfer-resume-v1";

/// Add [`RESUME_VERSION_KEY`] to `app_versions` (a JSON object; anything else is left
/// alone), so that a peer of ours offers to resume interrupted transfers. Peers that do not
/// know the key ignore it, and transfers with them run exactly as without it.
pub fn advertise_resume(app_versions: &mut Value) {
    if let Value::Object(m) = app_versions {
        m.insert(
            RESUME_VERSION_KEY.into(),
            Value::Object(serde_json::Map::new()),
        );
    }
}

/// Where a receiver's verified data ends, sent with its `file_ack` when both peers can
/// resume: `{"answer": {"file_ack": "ok", "resume": {"offset": N, "sha256": HEX}}}`, where
/// `HEX` is the SHA-256 of the first `N` bytes it holds. The sender checks that hash
/// against its own data before skipping them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// Bytes the receiver already holds.
    pub offset: u64,
    /// SHA-256 of those bytes.
    pub sha256: [u8; 32],
}

impl ResumePoint {
    fn to_json(&self) -> Value {
        serde_json::json!({"offset": self.offset, "sha256": hex::encode(self.sha256)})
    }

    /// The resume request of a `file_ack` message: `Ok(None)` without one, `Err` when it
    /// is malformed.
    fn from_file_ack(msg: &[u8]) -> std::result::Result<Option<ResumePoint>, ()> {
        let v: Value = serde_json::from_slice(msg).map_err(drop)?;
        let Some(r) = v.get("answer").and_then(|a| a.get("resume")) else {
            return Ok(None);
        };
        let offset = r.get("offset").and_then(Value::as_u64).ok_or(())?;
        let sha = r.get("sha256").and_then(Value::as_str).ok_or(())?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(sha, &mut sha256).map_err(drop)?;
        Ok(Some(ResumePoint { offset, sha256 }))
    }
}

/// Which transfer the application starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Send a text.
    SendText,
    /// Receive a text.
    ReceiveText,
    /// Send a file or directory.
    SendFile,
    /// Receive whatever the sender offers.
    ReceiveFile,
}

/// Reports of the transfer's I/O task.
#[derive(Debug)]
pub enum IoReport {
    /// Sender: Transit listens and the source is open: post these two messages.
    SenderPrepared {
        /// Our `{"transit": …}` message.
        transit: Vec<u8>,
        /// The `{"offer": …}` message.
        offer: Vec<u8>,
    },
    /// Receiver: Transit listens: post our `{"transit": …}` message.
    ReceiverPrepared(Vec<u8>),
    /// Receiver: the destination is checked and the temporary file created (or a partial
    /// file of an earlier attempt found: where its data ends).
    ReadyForData(Option<ResumePoint>),
    /// Receiver: the destination cannot be used; tell the sender `reply` and fail.
    Refused {
        /// The error text for the sender.
        reply: String,
        /// Our error.
        error: Error,
    },
    /// Transit connected.
    Connected(PathKind),
    /// The data continues after this many bytes an earlier attempt moved.
    Resumed(u64),
    /// Bytes moved so far.
    Progress(u64, u64),
    /// Sender: every byte sent.
    DataSent,
    /// Receiver: every byte received.
    DataReceived,
    /// The task ended: the written path (receiver), or the error.
    Finished(Result<Option<PathBuf>>),
    /// The task stopped when told to (or was dropped), its partial data removed.
    Stopped,
}

/// What the I/O task is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    /// Sender: open the source and start Transit (the key is verified).
    PrepareSender,
    /// Receiver: start Transit with the sender's first hints.
    PrepareReceiver(Value),
    /// More hints from the peer.
    AddHints(Value),
    /// Receiver: check `dest` and create the temporary file.
    Accept {
        /// Where to write.
        dest: PathBuf,
        /// Whether an existing file may be replaced.
        overwrite: bool,
        /// The accepted offer.
        offer: OfferInfo,
        /// Whether the peer can resume, so an earlier attempt's partial data may be used
        /// and this attempt's kept if it is cut (when the options allow).
        resume: bool,
    },
    /// Connect Transit and move the data; for a sender, from where the receiver's data
    /// ends if it asked to resume.
    Connect(Option<ResumePoint>),
    /// Stop: close Transit, remove partial data.
    Stop,
}

/// Inputs of the machine.
#[derive(Debug)]
pub enum Input {
    /// The application starts a transfer; for [`Kind::SendText`] with its text; progress
    /// events at most once per the given interval.
    Start(Kind, Option<String>, Duration),
    /// The key is verified (the peer proved it has it).
    Verified,
    /// The peer's `app_versions`.
    PeerVersions(Value),
    /// A decrypted application message from the peer.
    PeerMessage(Vec<u8>),
    /// A report of the I/O task of operation `id`.
    Io(u64, IoReport),
    /// The application accepts the pending offer.
    Accept {
        /// Where to write.
        dest: PathBuf,
        /// Whether an existing file may be replaced.
        overwrite: bool,
    },
    /// The application rejects the pending offer.
    Reject,
    /// The application cancels the transfer.
    Cancel,
    /// The wormhole closed with this outcome.
    Closed(Result<()>),
}

/// What the machine asks for.
#[derive(Debug, PartialEq)]
pub enum Output {
    /// Post this message to the peer.
    Send(Vec<u8>),
    /// Report this event of operation `id`.
    Emit(u64, TransferEvent),
    /// Tell the I/O task of operation `id`.
    Io(u64, Directive),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    AwaitingMessageAck,
    AwaitingText,
    AwaitingKey,
    Preparing,
    AwaitingFileAck,
    AwaitingOffer {
        transit: bool,
    },
    Offered {
        transit: bool,
        offer: OfferInfo,
    },
    Accepting {
        transit: bool,
        /// The destination is ready, with the resume point to send.
        ready: Option<Option<ResumePoint>>,
    },
    Transferring,
    /// The transfer has ended with this event; it is reported once the I/O task has
    /// stopped (and removed any partial file).
    Stopping(TransferEvent),
}

#[derive(Debug)]
struct Op {
    id: u64,
    kind: Kind,
    state: State,
}

/// The machine: at most one transfer at a time.
#[derive(Debug, Default)]
pub struct Machine {
    next_id: u64,
    op: Option<Op>,
    verified: bool,
    /// The peer advertised [`RESUME_VERSION_KEY`].
    peer_resumes: bool,
    closed: Option<Result<()>>,
    last_progress: Option<Instant>,
    progress_interval: Duration,
}

fn send(m: TransferMessage) -> Output {
    Output::Send(m.to_bytes())
}

/// The base name of an offered name, or `None` if nothing safe is left.
pub(crate) fn safe_base_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?;
    if base.is_empty() || base == "." || base == ".." || base.contains('\0') {
        return None;
    }
    Some(base.to_owned())
}

/// A file or directory offer: what it offers, or the error text to refuse it with.
fn file_offer(offer: &Value) -> std::result::Result<(String, u64, OfferKind), &'static str> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    if let Some(f) = offer.get("file") {
        return match (text(f, "filename"), num(f, "filesize")) {
            (Some(n), Some(s)) => Ok((n, s, OfferKind::File)),
            _ => Err("unknown offer type"),
        };
    }
    if let Some(d) = offer.get("directory") {
        if !d
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("")
            .starts_with("zipfile")
        {
            return Err("unknown mode");
        }
        return match (text(d, "dirname"), num(d, "zipsize")) {
            (Some(n), Some(s)) => Ok((
                n,
                s,
                OfferKind::Directory {
                    numbytes: num(d, "numbytes").unwrap_or(s),
                    numfiles: num(d, "numfiles").unwrap_or(0),
                },
            )),
            _ => Err("unknown offer type"),
        };
    }
    Err("unknown offer type")
}

impl Machine {
    /// A machine with no transfer.
    pub fn new() -> Machine {
        Machine::default()
    }

    /// The id of the running transfer, if any.
    pub fn current(&self) -> Option<u64> {
        self.op.as_ref().map(|o| o.id)
    }

    /// Whether the peer's messages belong to the running transfer (otherwise they are the
    /// application's).
    pub fn wants_messages(&self) -> bool {
        self.op.is_some()
    }

    /// The pending offer, when one waits for accept or reject.
    pub fn pending_offer(&self) -> Option<(u64, &OfferInfo)> {
        match &self.op {
            Some(Op {
                id,
                state: State::Offered { offer, .. },
                ..
            }) => Some((*id, offer)),
            _ => None,
        }
    }

    /// Feed one input. `Err` is for the application's commands that are invalid now
    /// ([`Error::InProgress`], [`Error::InvalidState`], the close outcome); nothing changes
    /// then. Peer messages and I/O reports never fail: what they break ends the transfer
    /// with an error event.
    pub fn handle(&mut self, input: Input, now: Instant) -> Result<(u64, Vec<Output>)> {
        let mut out = Vec::new();
        let id = match input {
            Input::Start(kind, text, every) => {
                self.progress_interval = every;
                self.start(kind, text, &mut out)?
            }
            Input::Verified => {
                self.verified = true;
                if let Some(op) = &mut self.op {
                    if op.state == State::AwaitingKey {
                        op.state = State::Preparing;
                        out.push(Output::Io(op.id, Directive::PrepareSender));
                    }
                }
                self.current().unwrap_or(0)
            }
            Input::PeerVersions(v) => {
                self.peer_resumes = v.get(RESUME_VERSION_KEY).is_some();
                self.current().unwrap_or(0)
            }
            Input::PeerMessage(m) => {
                self.peer_message(&m, &mut out);
                self.current().unwrap_or(0)
            }
            Input::Io(id, report) => {
                if self.current() == Some(id) {
                    self.io(report, now, &mut out);
                }
                id
            }
            Input::Accept { dest, overwrite } => self.accept(dest, overwrite, &mut out)?,
            Input::Reject => {
                let Some((id, _)) = self.pending_offer() else {
                    return Err(Error::InvalidState("no offer is waiting".into()));
                };
                out.push(send(TransferMessage::Error("transfer rejected".into())));
                self.finish(Err(Error::Cancelled), &mut out);
                id
            }
            Input::Cancel => {
                let id = self.current().unwrap_or(0);
                if let Some((_, _)) = self.pending_offer() {
                    out.push(send(TransferMessage::Error("transfer rejected".into())));
                }
                self.finish(Err(Error::Cancelled), &mut out);
                id
            }
            Input::Closed(r) => {
                let id = self.current().unwrap_or(0);
                let e = match &r {
                    Ok(()) => Error::Closed,
                    Err(e) => e.clone(),
                };
                self.closed = Some(r);
                self.finish(Err(e), &mut out);
                id
            }
        };
        Ok((id, out))
    }

    fn start(&mut self, kind: Kind, text: Option<String>, out: &mut Vec<Output>) -> Result<u64> {
        if let Some(r) = &self.closed {
            return Err(r.clone().err().unwrap_or(Error::Closed));
        }
        if self.op.is_some() {
            return Err(Error::InProgress);
        }
        self.next_id += 1;
        let id = self.next_id;
        let state = match kind {
            Kind::SendText => {
                let text = text.ok_or_else(|| Error::InvalidArgument("no text".into()))?;
                out.push(send(TransferMessage::Offer(Offer::Message(text))));
                State::AwaitingMessageAck
            }
            Kind::ReceiveText => State::AwaitingText,
            Kind::SendFile if self.verified => {
                out.push(Output::Io(id, Directive::PrepareSender));
                State::Preparing
            }
            Kind::SendFile => State::AwaitingKey,
            Kind::ReceiveFile => State::AwaitingOffer { transit: false },
        };
        self.last_progress = None;
        self.op = Some(Op { id, kind, state });
        Ok(id)
    }

    fn accept(&mut self, dest: PathBuf, overwrite: bool, out: &mut Vec<Output>) -> Result<u64> {
        let Some(op) = &mut self.op else {
            return Err(Error::InvalidState("no offer is waiting".into()));
        };
        let State::Offered { transit, offer } = &op.state else {
            return Err(Error::InvalidState("no offer is waiting".into()));
        };
        let offer = offer.clone();
        op.state = State::Accepting {
            transit: *transit,
            ready: None,
        };
        out.push(Output::Io(
            op.id,
            Directive::Accept {
                dest,
                overwrite,
                offer,
                resume: self.peer_resumes,
            },
        ));
        Ok(op.id)
    }

    /// End the running transfer (if any) with `outcome`.
    fn finish(&mut self, outcome: Result<Option<PathBuf>>, out: &mut Vec<Output>) {
        let Some(op) = &self.op else {
            return;
        };
        let ev = match op.kind {
            Kind::SendText => TransferEvent::TextSent(outcome.map(|_| ())),
            Kind::ReceiveText => TransferEvent::TextReceived(
                outcome.and_then(|_| Err(Error::Internal("no text".into()))),
            ),
            Kind::SendFile => TransferEvent::FileSent(outcome.map(|_| ())),
            Kind::ReceiveFile => TransferEvent::FileReceived(
                outcome.and_then(|p| p.ok_or_else(|| Error::Internal("no path".into()))),
            ),
        };
        self.finish_with(ev, out);
    }

    /// End with `ev`: at once for text; for a file transfer the I/O task is told to stop
    /// and `ev` follows once it has ([`IoReport::Stopped`]).
    fn finish_with(&mut self, ev: TransferEvent, out: &mut Vec<Output>) {
        let Some(op) = &mut self.op else {
            return;
        };
        if matches!(op.state, State::Stopping(_)) {
            return;
        }
        if matches!(op.kind, Kind::SendFile | Kind::ReceiveFile) {
            out.push(Output::Io(op.id, Directive::Stop));
            op.state = State::Stopping(ev);
        } else {
            out.push(Output::Emit(op.id, ev));
            self.op = None;
        }
    }

    /// The I/O task has ended: report the final event (the stored one, or `outcome`).
    fn io_ended(&mut self, outcome: Result<Option<PathBuf>>, out: &mut Vec<Output>) {
        let Some(op) = self.op.take() else {
            return;
        };
        let ev = match op.state {
            State::Stopping(ev) => ev,
            _ => match op.kind {
                Kind::SendFile => TransferEvent::FileSent(outcome.map(|_| ())),
                _ => TransferEvent::FileReceived(
                    outcome.and_then(|p| p.ok_or_else(|| Error::Internal("no path".into()))),
                ),
            },
        };
        out.push(Output::Emit(op.id, ev));
    }

    /// Whether no transfer runs or ends.
    pub fn is_idle(&self) -> bool {
        self.op.is_none()
    }

    fn peer_message(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        let Some(op) = &mut self.op else {
            return;
        };
        if matches!(op.state, State::Stopping(_)) {
            return;
        }
        let (id, kind) = (op.id, op.kind);
        let msg = match TransferMessage::parse(bytes) {
            Ok(m) => m,
            Err(e) => return self.finish(Err(e), out),
        };
        let remote = |e: &str| match kind {
            Kind::SendText | Kind::SendFile => {
                Error::Transfer(format!("remote error, transfer abandoned: {e}"))
            }
            _ => Error::Transfer(format!("remote error: {e}")),
        };
        match (&mut op.state, msg) {
            (_, TransferMessage::Error(e)) => self.finish(Err(remote(&e)), out),
            (State::AwaitingMessageAck, TransferMessage::MessageAck(a)) if a == "ok" => {
                self.finish(Ok(None), out)
            }
            (State::AwaitingFileAck, TransferMessage::FileAck(a)) if a == "ok" => {
                match ResumePoint::from_file_ack(bytes) {
                    Ok(resume) => {
                        op.state = State::Transferring;
                        out.push(Output::Io(id, Directive::Connect(resume)));
                    }
                    Err(()) => self.finish(
                        Err(Error::Transfer(
                            "the receiver's resume request is malformed".into(),
                        )),
                        out,
                    ),
                }
            }
            (
                State::AwaitingMessageAck | State::AwaitingFileAck,
                TransferMessage::MessageAck(_) | TransferMessage::FileAck(_),
            ) => self.finish(
                Err(Error::Transfer(
                    "ambiguous response from the receiver".into(),
                )),
                out,
            ),
            (State::AwaitingFileAck, TransferMessage::Transit(t)) => {
                out.push(Output::Io(id, Directive::AddHints(t)))
            }
            (State::Preparing | State::Transferring, TransferMessage::Transit(t))
                if kind == Kind::SendFile =>
            {
                out.push(Output::Io(id, Directive::AddHints(t)))
            }
            (State::AwaitingText, TransferMessage::Offer(Offer::Message(text)))
            | (State::AwaitingOffer { .. }, TransferMessage::Offer(Offer::Message(text))) => {
                out.push(send(TransferMessage::MessageAck("ok".into())));
                self.finish_with(TransferEvent::TextReceived(Ok(text)), out);
            }
            (State::AwaitingText, TransferMessage::Offer(_)) => {
                out.push(send(TransferMessage::Error("unknown offer type".into())));
                self.finish(
                    Err(Error::Transfer(
                        "the sender offered a file or directory; this receiver only accepts text"
                            .into(),
                    )),
                    out,
                );
            }
            (State::AwaitingOffer { transit }, TransferMessage::Offer(_)) => {
                let transit = *transit;
                let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
                match file_offer(&v["offer"]) {
                    Err(what) => {
                        out.push(send(TransferMessage::Error(what.into())));
                        self.finish(
                            Err(Error::Transfer(format!(
                                "the sender's offer was refused: {what}"
                            ))),
                            out,
                        );
                    }
                    Ok((name, size, okind)) => match safe_base_name(&name) {
                        None => {
                            out.push(send(TransferMessage::Error("transfer rejected".into())));
                            self.finish(
                                Err(Error::Transfer(format!(
                                    "the sender offered the unsafe name {name:?}"
                                ))),
                                out,
                            );
                        }
                        Some(name) => {
                            let offer = OfferInfo {
                                name,
                                size,
                                kind: okind,
                            };
                            op.state = State::Offered {
                                transit,
                                offer: offer.clone(),
                            };
                            out.push(Output::Emit(id, TransferEvent::Offer(offer)));
                        }
                    },
                }
            }
            (
                State::AwaitingOffer { transit }
                | State::Offered { transit, .. }
                | State::Accepting { transit, .. },
                TransferMessage::Transit(t),
            ) => {
                if *transit {
                    out.push(Output::Io(id, Directive::AddHints(t)));
                } else {
                    *transit = true;
                    out.push(Output::Io(id, Directive::PrepareReceiver(t)));
                    // Accepted before the sender's hints came: the ack waits for them.
                    if let State::Accepting {
                        ready: Some(resume),
                        ..
                    } = &op.state
                    {
                        let resume = resume.clone();
                        self.ready(resume, out);
                    }
                }
            }
            (State::Transferring, TransferMessage::Transit(t)) => {
                out.push(Output::Io(id, Directive::AddHints(t)))
            }
            // Anything else (a second offer, acks we did not ask for, unknown keys) is
            // ignored, as the reference does: the peer may speak a newer protocol.
            _ => {}
        }
    }

    /// Receiver: the destination is ready; once the sender's hints have arrived, post the
    /// `file_ack` (with the resume point, if any) and connect.
    fn ready(&mut self, resume: Option<ResumePoint>, out: &mut Vec<Output>) {
        let Some(op) = &mut self.op else {
            return;
        };
        match op.state {
            State::Accepting { transit: true, .. } => {
                op.state = State::Transferring;
                let ack = match &resume {
                    None => TransferMessage::FileAck("ok".into()).to_bytes(),
                    Some(r) => serde_json::to_vec(&serde_json::json!(
                        {"answer": {"file_ack": "ok", "resume": r.to_json()}}
                    ))
                    .unwrap_or_default(),
                };
                out.push(Output::Send(ack));
                out.push(Output::Io(op.id, Directive::Connect(None)));
            }
            State::Accepting {
                transit: false,
                ref mut ready,
            } => *ready = Some(resume),
            _ => {}
        }
    }

    fn io(&mut self, report: IoReport, now: Instant, out: &mut Vec<Output>) {
        let Some(op) = &mut self.op else {
            return;
        };
        let id = op.id;
        if matches!(op.state, State::Stopping(_))
            && !matches!(report, IoReport::Finished(_) | IoReport::Stopped)
        {
            return;
        }
        match report {
            IoReport::SenderPrepared { transit, offer } if op.state == State::Preparing => {
                op.state = State::AwaitingFileAck;
                out.push(Output::Send(transit));
                out.push(Output::Send(offer));
            }
            IoReport::ReceiverPrepared(msg) => out.push(Output::Send(msg)),
            IoReport::ReadyForData(resume) => self.ready(resume, out),
            IoReport::Refused { reply, error } => {
                out.push(send(TransferMessage::Error(reply)));
                self.finish(Err(error), out);
            }
            IoReport::Connected(path) => out.push(Output::Emit(id, TransferEvent::Connected(path))),
            IoReport::Progress(done, total) => {
                let due = done >= total
                    || self
                        .last_progress
                        .is_none_or(|t| now.saturating_duration_since(t) >= self.progress_interval);
                if due {
                    self.last_progress = Some(now);
                    out.push(Output::Emit(id, TransferEvent::Progress { done, total }));
                }
            }
            IoReport::Resumed(offset) => {
                out.push(Output::Emit(id, TransferEvent::Resumed { offset }))
            }
            IoReport::DataSent => out.push(Output::Emit(id, TransferEvent::DataSent)),
            IoReport::DataReceived => out.push(Output::Emit(id, TransferEvent::DataReceived)),
            IoReport::Finished(r) => self.io_ended(r, out),
            IoReport::Stopped => self.io_ended(
                Err(Error::Internal("the transfer task stopped".into())),
                out,
            ),
            IoReport::SenderPrepared { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
