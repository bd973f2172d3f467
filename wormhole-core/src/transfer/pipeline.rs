//! The bulk data path on plain threads, three stages per side so hashing, the cipher and
//! socket I/O overlap:
//! - sender: read + SHA-256 → seal (the calling thread) → socket write;
//! - receiver: socket read → open (the calling thread) → SHA-256 + file write.
//!
//! Buffers circulate through bounded channels and come back to a pool, so there is no
//! allocation per record.
//!
//! A resumed transfer (both peers ours, see [`super::machine::ResumePoint`]) frames the data
//! with two JSON records: first `{"offset": N}` (where the sender starts: the receiver's
//! offset when the hash of its prefix matched, else 0), last `{"sha256": HEX}` (the
//! SHA-256 of the whole data), which the receiver checks before it moves the file into
//! place. The ack record is the same as without resume.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::machine::ResumePoint;
use super::options::{CancelToken, ProgressFn};
use crate::error::{Error, Result};
use crate::transit::{BlockingConnection, Opener, RECORD_OVERHEAD};

/// Buffers in flight per side.
const DEPTH: usize = 8;
/// Receive buffers larger than twice this are dropped after use rather than pooled.
const MAX_KEPT: usize = 256 * 1024 + RECORD_OVERHEAD;
/// Bytes of a received box before the plaintext: nonce + tag.
const BOX_HEAD: usize = RECORD_OVERHEAD - 4;

fn lost(e: std::io::Error) -> Error {
    Error::Transfer(format!("transit connection lost: {e}"))
}

fn cancelled_or(cancel: &CancelToken, e: Error) -> Error {
    if cancel.is_cancelled() {
        Error::Cancelled
    } else {
        e
    }
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Internal(format!("cannot start a thread: {e}")))
}

fn join<T>(h: JoinHandle<Result<T>>) -> Result<T> {
    h.join()
        .map_err(|_| Error::Internal("a transfer thread panicked".into()))?
}

/// Fill `buf` from `src` as far as possible; the count read (short only at EOF).
fn fill(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn pool(depth: usize, size: usize) -> (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) {
    let (tx, rx) = sync_channel(depth + 1);
    for _ in 0..depth {
        let _ = tx.send(vec![0u8; size]);
    }
    (tx, rx)
}

/// Makes the sender's data again from its start (when a receiver's prefix does not match).
pub(crate) type Reopen = Box<dyn FnOnce() -> Result<Box<dyn Read + Send>> + Send>;

/// A sender's part of a resumed transfer.
pub(crate) struct Resume {
    /// Where the receiver's data ends.
    pub point: ResumePoint,
    /// How to start over if its prefix does not match ours.
    pub reopen: Reopen,
    /// Told where the data starts, when that is past 0.
    pub resumed: Box<dyn FnOnce(u64) + Send>,
}

/// A record in the pipeline, with the data position after it (`None` for the JSON records
/// of a resumed transfer).
type Frame = (Vec<u8>, Option<u64>);

/// Hash the first `n` bytes of `src` into `hasher`; the count read (short at EOF).
fn hash_prefix(src: &mut dyn Read, hasher: &mut Sha256, n: u64) -> std::io::Result<u64> {
    std::io::copy(&mut src.take(n), hasher)
}

/// `src` positioned where a resumed send starts, the hash of what it skipped, and that
/// position: the receiver's offset when its prefix hash matches ours, else the start of
/// fresh data from `reopen`.
fn resume_source(
    mut src: Box<dyn Read + Send>,
    total: u64,
    point: &ResumePoint,
    reopen: Reopen,
) -> Result<(Box<dyn Read + Send>, Sha256, u64)> {
    let mut hasher = Sha256::new();
    let reading = |e| Error::Transfer(format!("reading the data to send: {e}"));
    if point.offset <= total {
        let n = hash_prefix(&mut *src, &mut hasher, point.offset).map_err(reading)?;
        if n == point.offset && hasher.clone().finalize()[..] == point.sha256 {
            return Ok((src, hasher, n));
        }
    }
    drop(src);
    Ok((reopen()?, Sha256::new(), 0))
}

/// A JSON record for the pipeline, in a pooled buffer.
fn control_frame(mut frame: Vec<u8>, json: &str) -> Frame {
    frame.resize(RECORD_OVERHEAD, 0);
    frame.extend_from_slice(json.as_bytes());
    (frame, None)
}

/// Send exactly `total` bytes of `src` in records of up to `chunk` bytes, then wait for
/// the receiver's ack record and check its SHA-256. With `resume`, skip the prefix the
/// receiver holds if its hash matches, and frame the data as a resumed transfer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send(
    conn: BlockingConnection,
    src: Box<dyn Read + Send>,
    total: u64,
    chunk: usize,
    progress: Option<ProgressFn>,
    cancel: &CancelToken,
    on_sent: &dyn Fn(),
    resume: Option<Resume>,
) -> Result<()> {
    let BlockingConnection {
        stream,
        mut sealer,
        mut opener,
        max_record,
        ..
    } = conn;
    let mut writer = stream.try_clone().map_err(lost)?;
    let (empty_tx, empty_rx) = pool(DEPTH, RECORD_OVERHEAD + chunk);
    let (plain_tx, plain_rx) = sync_channel::<Frame>(DEPTH);
    let (sealed_tx, sealed_rx) = sync_channel::<Frame>(DEPTH);

    // Stage 1: read + hash.
    let token = cancel.clone();
    let reader = spawn("wormhole-send-read", move || -> Result<[u8; 32]> {
        let resuming = resume.is_some();
        let (mut src, mut hasher, mut sent) = match resume {
            None => (src, Sha256::new(), 0),
            Some(Resume {
                point,
                reopen,
                resumed,
            }) => {
                let (src, hasher, start) = resume_source(src, total, &point, reopen)?;
                if start > 0 {
                    resumed(start);
                }
                let Ok(frame) = empty_rx.recv() else {
                    return Ok([0; 32]);
                };
                let header = control_frame(frame, &format!(r#"{{"offset": {start}}}"#));
                if plain_tx.send(header).is_err() {
                    return Ok([0; 32]);
                }
                (src, hasher, start)
            }
        };
        while sent < total {
            if token.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let Ok(mut frame) = empty_rx.recv() else {
                break; // a later stage stopped; its error is reported
            };
            let want = usize::try_from((total - sent).min(chunk as u64)).unwrap_or(chunk);
            frame.resize(RECORD_OVERHEAD + want, 0);
            let n = fill(&mut *src, &mut frame[RECORD_OVERHEAD..])
                .map_err(|e| Error::Transfer(format!("reading the data to send: {e}")))?;
            if n < want {
                return Err(Error::Transfer(
                    "the file shrank while it was being sent".into(),
                ));
            }
            hasher.update(&frame[RECORD_OVERHEAD..]);
            sent += n as u64;
            if plain_tx.send((frame, Some(sent))).is_err() {
                break;
            }
        }
        let hash: [u8; 32] = hasher.finalize().into();
        if resuming && sent == total {
            if let Ok(frame) = empty_rx.recv() {
                let trailer = format!(r#"{{"sha256": "{}"}}"#, hex::encode(hash));
                let _ = plain_tx.send(control_frame(frame, &trailer));
            }
        }
        Ok(hash)
    })?;

    // Stage 3: socket writes.
    let writer_thread = spawn("wormhole-send-io", move || -> Result<()> {
        for (frame, done) in sealed_rx {
            writer.write_all(&frame).map_err(lost)?;
            if let (Some(p), Some(done)) = (&progress, done) {
                p(done, total);
            }
            let _ = empty_tx.send(frame);
        }
        if total == 0 {
            if let Some(p) = &progress {
                p(0, 0);
            }
        }
        Ok(())
    })?;

    // Stage 2 (this thread): seal.
    let sealed = (|| -> Result<()> {
        for (mut frame, done) in plain_rx {
            sealer.seal_in_place(&mut frame)?;
            if sealed_tx.send((frame, done)).is_err() {
                break;
            }
        }
        Ok(())
    })();
    drop(sealed_tx);
    if sealed.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let written = join(writer_thread);
    if written.is_err() || sealed.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let hash = join(reader);
    // The first failure in pipeline order explains the others.
    let hash = hash.map_err(|e| cancelled_or(cancel, e))?;
    sealed.map_err(|e| cancelled_or(cancel, e))?;
    written.map_err(|e| cancelled_or(cancel, e))?;
    on_sent();

    // The ack: {"ack": "ok", "sha256": "<hex>"}.
    let mut reader = stream;
    let mut buf = Vec::new();
    let ack = BlockingConnection::read_record(&mut reader, &mut opener, max_record, &mut buf)
        .map_err(|e| cancelled_or(cancel, e))?
        .ok_or_else(|| {
            cancelled_or(
                cancel,
                Error::Transfer("the receiver hung up before acknowledging the data".into()),
            )
        })?;
    let ack: Value = serde_json::from_slice(ack)
        .map_err(|_| Error::Transfer("the receiver's ack is not JSON".into()))?;
    if ack.get("ack").and_then(Value::as_str) != Some("ok") {
        return Err(Error::Transfer(format!("transfer failed: {ack}")));
    }
    if let Some(remote) = ack.get("sha256") {
        if remote.as_str() != Some(hex::encode(hash).as_str()) {
            return Err(Error::Transfer("Transfer failed (bad remote hash)".into()));
        }
    }
    let _ = reader.shutdown(Shutdown::Both);
    Ok(())
}

/// Where a receive starts.
pub(crate) struct Start {
    /// Bytes already held (the sink is positioned after them).
    pub offset: u64,
    /// Their hash state.
    pub hasher: Sha256,
    /// A resumed transfer: the partial file, checked against the sender's final
    /// `{"sha256"}` record and removed if it does not match.
    pub partial: Option<std::path::PathBuf>,
}

impl Start {
    /// The start of a transfer that is not resumed.
    pub fn fresh() -> Start {
        Start {
            offset: 0,
            hasher: Sha256::new(),
            partial: None,
        }
    }
}

/// Check the sender's final record of a resumed transfer against our `hash`; remove the
/// partial file if it does not match.
fn check_trailer(
    stream: &std::net::TcpStream,
    opener: &mut Opener,
    max_record: usize,
    hash: &[u8; 32],
    partial: &Path,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut r = stream;
    let trailer = BlockingConnection::read_record(&mut r, opener, max_record, &mut buf)?
        .ok_or_else(|| Error::Transfer("the sender hung up before its final hash".into()))?;
    let theirs = serde_json::from_slice::<Value>(trailer)
        .ok()
        .and_then(|v| v.get("sha256").and_then(Value::as_str).map(str::to_owned));
    if theirs.as_deref() != Some(hex::encode(hash).as_str()) {
        let _ = std::fs::remove_file(partial);
        return Err(Error::Transfer(
            "the received data does not match the sender's SHA-256 (partial file removed)".into(),
        ));
    }
    Ok(())
}

/// Receive the data from `start.offset` to `total` into `sink`, flush it, run `finish`
/// (which renames the result into place), then send the ack record with the SHA-256 of
/// all `total` bytes. Returns the hex SHA-256.
pub(crate) fn receive(
    conn: BlockingConnection,
    sink: Box<dyn Write + Send>,
    (start, total): (Start, u64),
    progress: Option<ProgressFn>,
    cancel: &CancelToken,
    finish: &mut dyn FnMut() -> Result<()>,
) -> Result<String> {
    let Start {
        offset,
        hasher,
        partial,
    } = start;
    let BlockingConnection {
        stream,
        mut sealer,
        mut opener,
        max_record,
        ..
    } = conn;
    let mut reader = stream.try_clone().map_err(lost)?;
    let (empty_tx, empty_rx) = pool(DEPTH, 0);
    let (boxed_tx, boxed_rx) = sync_channel::<Vec<u8>>(DEPTH);
    let (plain_tx, plain_rx) = sync_channel::<Vec<u8>>(DEPTH);
    let dropped = || Error::Transfer("Connection dropped before full file received".into());

    // Stage 1: socket reads, whole boxes (without the length prefix), until `total`
    // plaintext bytes.
    let reader_thread = spawn("wormhole-recv-io", move || -> Result<()> {
        let mut got = offset;
        while got < total {
            let Ok(mut buf) = empty_rx.recv() else {
                return Ok(());
            };
            let mut header = [0u8; 4];
            reader.read_exact(&mut header).map_err(|_| dropped())?;
            let n = Opener::box_len(header, max_record)?;
            let plain = (n - BOX_HEAD) as u64;
            if got + plain > total {
                return Err(Error::Transfer(
                    "the sender sent more data than it offered".into(),
                ));
            }
            buf.resize(n, 0);
            reader.read_exact(&mut buf).map_err(|_| dropped())?;
            got += plain;
            if boxed_tx.send(buf).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })?;

    // Stage 3: hash + write.
    let token = cancel.clone();
    let writer_thread = spawn("wormhole-recv-write", move || -> Result<(u64, [u8; 32])> {
        let (mut sink, mut hasher) = (sink, hasher);
        let mut done = offset;
        for buf in plain_rx {
            if token.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let plain = &buf[BOX_HEAD..];
            hasher.update(plain);
            sink.write_all(plain)
                .map_err(|e| Error::Transfer(format!("cannot write the received data: {e}")))?;
            done += plain.len() as u64;
            if let Some(p) = &progress {
                p(done, total);
            }
            // Don't keep a hostile peer's oversized records around.
            let buf = if buf.capacity() > 2 * MAX_KEPT {
                Vec::new()
            } else {
                buf
            };
            let _ = empty_tx.send(buf);
        }
        sink.flush()
            .map_err(|e| Error::Transfer(format!("cannot write the received data: {e}")))?;
        if offset == total {
            if let Some(p) = &progress {
                p(total, total);
            }
        }
        Ok((done, hasher.finalize().into()))
    })?;

    // Stage 2 (this thread): open in place.
    let opened = (|| -> Result<()> {
        for mut buf in boxed_rx {
            opener.open_in_place(&mut buf)?;
            if plain_tx.send(buf).is_err() {
                break;
            }
        }
        Ok(())
    })();
    drop(plain_tx);
    if opened.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let written = join(writer_thread);
    if written.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let read = join(reader_thread);
    // A failed stage shuts the socket down, which also fails the reader: report the
    // cause first.
    opened.map_err(|e| cancelled_or(cancel, e))?;
    let (done, hash) = written.map_err(|e| cancelled_or(cancel, e))?;
    read.map_err(|e| cancelled_or(cancel, e))?;
    if done != total {
        return Err(cancelled_or(cancel, dropped()));
    }
    if let Some(partial) = &partial {
        check_trailer(&stream, &mut opener, max_record, &hash, partial)
            .map_err(|e| cancelled_or(cancel, e))?;
    }
    finish()?;
    let sha = hex::encode(hash);
    let ack = format!(r#"{{"ack": "ok", "sha256": "{sha}"}}"#);
    let frame = sealer.seal(ack.as_bytes())?;
    let mut w = &stream;
    w.write_all(&frame).map_err(lost)?;
    w.flush().map_err(lost)?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(sha)
}
