//! The bulk data path on plain threads: reading + hashing + sealing on one thread and
//! socket writes on another (sender); socket reads on one thread and opening + hashing +
//! writing on another (receiver). Buffers circulate between the two threads, so there is
//! no allocation per record.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{CancelToken, ProgressFn};
use crate::error::{Error, Result};
use crate::transit::{BlockingConnection, Opener, RECORD_OVERHEAD};

/// Buffers in flight between the two threads.
const DEPTH: usize = 4;

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

/// Send exactly `total` bytes of `src` in records of up to `chunk` bytes, then wait for
/// the receiver's ack record and check its SHA-256.
pub(crate) fn send(
    conn: BlockingConnection,
    src: &mut dyn Read,
    total: u64,
    chunk: usize,
    progress: Option<ProgressFn>,
    cancel: &CancelToken,
    on_sent: &dyn Fn(),
) -> Result<()> {
    let BlockingConnection {
        stream,
        mut sealer,
        mut opener,
        max_record,
        ..
    } = conn;
    let mut writer = stream.try_clone().map_err(lost)?;
    let (full_tx, full_rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(DEPTH);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(DEPTH + 1);
    for _ in 0..DEPTH {
        let _ = empty_tx.send(vec![0u8; RECORD_OVERHEAD + chunk]);
    }
    let progress2 = progress.clone();
    let writer_thread = std::thread::Builder::new()
        .name("wormhole-send-io".into())
        .spawn(move || -> Result<()> {
            let mut done = 0u64;
            for frame in full_rx {
                writer.write_all(&frame).map_err(lost)?;
                done += (frame.len() - RECORD_OVERHEAD) as u64;
                if let Some(p) = &progress2 {
                    p(done, total);
                }
                let _ = empty_tx.send(frame);
            }
            Ok(())
        })
        .map_err(|e| Error::Internal(format!("cannot start a thread: {e}")))?;

    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    let produce = (|| -> Result<()> {
        while sent < total {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let Ok(mut frame) = empty_rx.recv() else {
                // The writer thread stopped: its error is reported below.
                return Ok(());
            };
            let want = usize::try_from((total - sent).min(chunk as u64)).unwrap_or(chunk);
            frame.resize(RECORD_OVERHEAD + want, 0);
            let n = fill(src, &mut frame[RECORD_OVERHEAD..])
                .map_err(|e| Error::Transfer(format!("reading the data to send: {e}")))?;
            if n < want {
                return Err(Error::Transfer(
                    "the file shrank while it was being sent".into(),
                ));
            }
            hasher.update(&frame[RECORD_OVERHEAD..]);
            sealer.seal_in_place(&mut frame)?;
            sent += n as u64;
            if full_tx.send(frame).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })();
    drop(full_tx);
    if produce.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let written = writer_thread
        .join()
        .map_err(|_| Error::Internal("the transit writer panicked".into()))?;
    produce.map_err(|e| cancelled_or(cancel, e))?;
    written.map_err(|e| cancelled_or(cancel, e))?;
    if total == 0 {
        if let Some(p) = &progress {
            p(0, 0);
        }
    }

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
        let ours = hex::encode(hasher.finalize());
        if remote.as_str() != Some(ours.as_str()) {
            return Err(Error::Transfer("Transfer failed (bad remote hash)".into()));
        }
    }
    let _ = reader.shutdown(Shutdown::Both);
    Ok(())
}

/// Receive exactly `total` bytes into `sink`, then send the ack record with their SHA-256
/// (only after `finish` succeeded on the data). Returns the hex SHA-256.
pub(crate) fn receive(
    conn: BlockingConnection,
    sink: &mut dyn Write,
    total: u64,
    progress: Option<ProgressFn>,
    cancel: &CancelToken,
    finish: &mut dyn FnMut() -> Result<()>,
) -> Result<String> {
    let BlockingConnection {
        stream,
        mut sealer,
        mut opener,
        max_record,
        ..
    } = conn;
    let mut reader = stream.try_clone().map_err(lost)?;
    let (full_tx, full_rx) = sync_channel::<Vec<u8>>(DEPTH);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(DEPTH + 1);
    for _ in 0..DEPTH {
        let _ = empty_tx.send(Vec::with_capacity(256 * 1024 + RECORD_OVERHEAD));
    }
    // Reader thread: whole boxes (without the length prefix), until `total` plaintext bytes.
    let reader_thread = std::thread::Builder::new()
        .name("wormhole-recv-io".into())
        .spawn(move || -> Result<()> {
            let mut got = 0u64;
            while got < total {
                let Ok(mut buf) = empty_rx.recv() else {
                    return Ok(());
                };
                let mut header = [0u8; 4];
                reader.read_exact(&mut header).map_err(|_| {
                    Error::Transfer("Connection dropped before full file received".into())
                })?;
                let n = Opener::box_len(header, max_record)?;
                let plain = (n - (RECORD_OVERHEAD - 4)) as u64;
                if got + plain > total {
                    return Err(Error::Transfer(
                        "the sender sent more data than it offered".into(),
                    ));
                }
                buf.resize(n, 0);
                reader.read_exact(&mut buf).map_err(|_| {
                    Error::Transfer("Connection dropped before full file received".into())
                })?;
                got += plain;
                if full_tx.send(buf).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })
        .map_err(|e| Error::Internal(format!("cannot start a thread: {e}")))?;

    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let consume = (|| -> Result<()> {
        for mut boxed in full_rx.iter() {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let plain = opener.open_in_place(&mut boxed)?;
            hasher.update(&*plain);
            sink.write_all(plain)
                .map_err(|e| Error::Transfer(format!("cannot write the received data: {e}")))?;
            done += plain.len() as u64;
            if let Some(p) = &progress {
                p(done, total);
            }
            let _ = empty_tx.send(boxed);
        }
        Ok(())
    })();
    if consume.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    drop(empty_tx);
    let read = reader_thread
        .join()
        .map_err(|_| Error::Internal("the transit reader panicked".into()))?;
    consume.map_err(|e| cancelled_or(cancel, e))?;
    read.map_err(|e| cancelled_or(cancel, e))?;
    if done != total {
        return Err(cancelled_or(
            cancel,
            Error::Transfer("Connection dropped before full file received".into()),
        ));
    }
    if total == 0 {
        if let Some(p) = &progress {
            p(0, 0);
        }
    }
    sink.flush()
        .map_err(|e| Error::Transfer(format!("cannot write the received data: {e}")))?;
    finish()?;
    let sha = hex::encode(hasher.finalize());
    let ack = format!(r#"{{"ack": "ok", "sha256": "{sha}"}}"#);
    let frame = sealer.seal(ack.as_bytes())?;
    let mut w = &stream;
    w.write_all(&frame).map_err(lost)?;
    w.flush().map_err(lost)?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(sha)
}
