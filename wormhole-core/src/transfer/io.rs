//! The I/O task of one file or directory transfer: the async half the machine
//! ([`super::machine`]) drives. It opens the source or creates the destination, runs
//! Transit, and moves the data on the pipeline threads; it decides nothing about the
//! protocol. It acts on [`Directive`]s and reports back as [`IoReport`]s.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use sha2::{Digest, Sha256};

use super::files::{
    Cleanup, check_destination, file_name_of, move_into_place, partial_path, temp_path, unpack,
};
use super::machine::{Directive, IoReport, OfferInfo, OfferKind, ResumePoint};
use super::options::{CancelToken, ProgressFn, TransferOptions};
use super::pipeline::{Reopen, Resume, Start};
use super::{pipeline, zip};
use crate::error::{Error, Result};
use crate::transit::{BlockingConnection, Hints, Role, Transit};

/// What a sender sends.
pub enum Source {
    /// A file or a directory (zipped while streaming).
    Path(PathBuf),
    /// A prepared zip, sent as the directory `dirname`.
    Zip {
        /// The directory name offered.
        dirname: String,
        /// The stream.
        zip: zip::ZipStream,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(p) => write!(f, "Source::Path({})", p.display()),
            Source::Zip { dirname, .. } => write!(f, "Source::Zip({dirname})"),
        }
    }
}

/// An order for the task: a directive, with the transit key for the two that start Transit.
pub(crate) type Order = (Directive, Option<Vec<u8>>);

/// Where the task reports.
pub(crate) type Reporter = Arc<dyn Fn(IoReport) + Send + Sync>;

/// Why the task stopped without a result of its own.
struct Stopped;

/// Start the I/O task of a transfer on the current runtime; returns where to send orders.
pub(crate) fn spawn(
    rt: &tokio::runtime::Handle,
    source: Option<Source>,
    opts: TransferOptions,
    report: Reporter,
) -> mpsc::UnboundedSender<Order> {
    let (tx, rx) = mpsc::unbounded_channel();
    // Reports `Stopped` if the task is dropped without a report (the runtime shut down),
    // so the machine never waits for it for ever.
    let mut guard = EndReport(Some(report.clone()));
    rt.spawn(async move {
        let r = Task {
            rx,
            source,
            opts,
            report: report.clone(),
            transit: None,
            hints: Vec::new(),
            sink: None,
            reader: None,
        }
        .run()
        .await;
        let report = guard.0.take();
        if let Some(report) = report {
            report(match r {
                Ok(r) => IoReport::Finished(r),
                Err(Stopped) => IoReport::Stopped,
            });
        }
    });
    tx
}

/// See [`spawn`].
struct EndReport(Option<Reporter>);

impl Drop for EndReport {
    fn drop(&mut self) {
        if let Some(report) = self.0.take() {
            report(IoReport::Stopped);
        }
    }
}

/// A receiver's destination, ready for data.
struct Sink {
    file: File,
    /// The file data goes to, renamed (or unpacked) into place at the end.
    path: PathBuf,
    dest: PathBuf,
    overwrite: bool,
    offer: OfferInfo,
    /// A resumable receive: the bytes `path` already holds and their hash state; the file
    /// is kept when the transfer is cut.
    resume: Option<(u64, Sha256)>,
    /// Removes a resumable receive's partial file if it ends up empty.
    empty: RemoveIfEmpty,
}

/// Removes a partial file on drop if it holds nothing (a transfer that stopped before any
/// data came leaves nothing behind).
struct RemoveIfEmpty(Option<PathBuf>);

impl Drop for RemoveIfEmpty {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if std::fs::metadata(&p).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// A sender's open source: the reader, its size, and how to start it over.
type Reader = (Box<dyn std::io::Read + Send>, u64, Reopen);

struct Task {
    rx: mpsc::UnboundedReceiver<Order>,
    source: Option<Source>,
    opts: TransferOptions,
    report: Reporter,
    transit: Option<Transit>,
    /// Hints that came before Transit started.
    hints: Vec<Value>,
    sink: Option<Sink>,
    /// Sender: the open source.
    reader: Option<Reader>,
}

/// A task outcome: `Err(Stopped)` when the machine stopped it (no report needed).
type Outcome = std::result::Result<Result<Option<PathBuf>>, Stopped>;

impl Task {
    /// The next order; `None` when told to stop (or the wormhole is gone); the user's
    /// cancel token counts as an order to fail with [`Error::Cancelled`].
    async fn next(&mut self) -> std::result::Result<Result<Order>, Stopped> {
        tokio::select! {
            o = self.rx.recv() => match o {
                Some((Directive::Stop, _)) | None => Err(Stopped),
                Some(o) => Ok(Ok(o)),
            },
            _ = self.opts.cancel.cancelled() => Ok(Err(Error::Cancelled)),
        }
    }

    async fn run(mut self) -> Outcome {
        loop {
            let (directive, key) = match self.next().await? {
                Ok(o) => o,
                Err(e) => return Ok(Err(e)),
            };
            let step = match directive {
                Directive::PrepareSender => self.prepare_sender(key).await,
                Directive::PrepareReceiver(hints) => self.prepare_receiver(key, hints).await,
                Directive::AddHints(h) => {
                    match &mut self.transit {
                        Some(t) => t.add_peer_hints(Hints::from_transit_json(&h)),
                        None => self.hints.push(h),
                    }
                    Ok(())
                }
                Directive::Accept {
                    dest,
                    overwrite,
                    offer,
                    resume,
                } => {
                    let resume = resume && self.opts.resume;
                    let report = match self.accept(dest, overwrite, offer, resume).await {
                        Ok(point) => IoReport::ReadyForData(point),
                        Err((reply, error)) => IoReport::Refused {
                            reply: reply.into(),
                            error,
                        },
                    };
                    (self.report)(report);
                    Ok(())
                }
                Directive::Connect(point) => return self.transfer(point).await,
                Directive::Stop => return Err(Stopped),
            };
            if let Err(e) = step {
                return Ok(Err(e));
            }
        }
    }

    async fn start_transit(&mut self, role: Role, key: Option<Vec<u8>>) -> Result<()> {
        let key = key.ok_or(Error::NoKey)?;
        let mut t = Transit::new(role, &key, self.opts.transit.clone()).await?;
        for h in self.hints.drain(..) {
            t.add_peer_hints(Hints::from_transit_json(&h));
        }
        self.transit = Some(t);
        Ok(())
    }

    async fn prepare_sender(&mut self, key: Option<Vec<u8>>) -> Result<()> {
        let source = self
            .source
            .take()
            .ok_or_else(|| Error::Internal("the source was already used".into()))?;
        let (offer, reader) = tokio::task::spawn_blocking(move || open(source))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        self.start_transit(Role::Sender, key).await?;
        self.reader = Some(reader);
        let transit = self
            .transit
            .as_ref()
            .map(Transit::transit_message)
            .unwrap_or_default();
        (self.report)(IoReport::SenderPrepared {
            transit,
            offer: serde_json::to_vec(&offer).unwrap_or_default(),
        });
        Ok(())
    }

    async fn prepare_receiver(&mut self, key: Option<Vec<u8>>, hints: Value) -> Result<()> {
        self.hints.push(hints);
        self.start_transit(Role::Receiver, key).await?;
        if let Some(t) = &self.transit {
            (self.report)(IoReport::ReceiverPrepared(t.transit_message()));
        }
        Ok(())
    }

    /// Check the destination and create the temporary file (or, when `resume`, open the
    /// partial file of an earlier attempt and hash what it holds). `Err` holds the reply
    /// for the sender (which never names our local paths) and our error.
    async fn accept(
        &mut self,
        dest: PathBuf,
        overwrite: bool,
        offer: OfferInfo,
        resume: bool,
    ) -> std::result::Result<Option<ResumePoint>, (&'static str, Error)> {
        check_destination(&offer, &dest, overwrite).map_err(|e| ("transfer rejected", e))?;
        let is_dir = !matches!(offer.kind, OfferKind::File);
        let cannot_write = |e| ("the receiver cannot write the file", e);
        if resume {
            let path = partial_path(&dest, offer.size, is_dir);
            let (p, size) = (path.clone(), offer.size);
            let path2 = path.clone();
            let (file, held, hasher) = tokio::task::spawn_blocking(move || open_partial(&p, size))
                .await
                .map_err(|e| cannot_write(Error::Internal(e.to_string())))?
                .map_err(cannot_write)?;
            let point = ResumePoint {
                offset: held,
                sha256: hasher.clone().finalize().into(),
            };
            self.sink = Some(Sink {
                file,
                path: path2,
                dest,
                overwrite,
                offer,
                resume: Some((held, hasher)),
                empty: RemoveIfEmpty(Some(path)),
            });
            return Ok(Some(point));
        }
        let tmp = temp_path(&dest, if is_dir { "zip.part" } else { "part" });
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| {
                cannot_write(Error::Transfer(format!(
                    "cannot create {}: {e}",
                    tmp.display()
                )))
            })?;
        self.sink = Some(Sink {
            file,
            path: tmp,
            dest,
            overwrite,
            offer,
            resume: None,
            empty: RemoveIfEmpty(None),
        });
        Ok(None)
    }

    /// Connect Transit and move the data (a sender from `point` if the receiver asked to
    /// resume); stops early on `Stop` or the user's cancel.
    async fn transfer(mut self, point: Option<ResumePoint>) -> Outcome {
        let Some(transit) = self.transit.take() else {
            return Ok(Err(Error::Internal("Transit was not started".into())));
        };
        // Our own token, so stopping one transfer never cancels the caller's token.
        let token = CancelToken::new();
        let (user, mut rx) = (self.opts.cancel.clone(), self.rx);
        let stop = {
            let token = token.clone();
            async move {
                let stopped = async {
                    while let Some((d, _)) = rx.recv().await {
                        if d == Directive::Stop {
                            break;
                        }
                    }
                };
                let r = tokio::select! {
                    _ = user.cancelled() => Ok(()),
                    _ = stopped => Err(Stopped),
                };
                token.cancel();
                r
            }
        };
        tokio::pin!(stop);
        let conn = tokio::select! {
            c = transit.connect() => c,
            s = &mut stop => return s.map(|()| Err(Error::Cancelled)),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        (self.report)(IoReport::Connected(conn.path().clone()));
        let conn = match conn.into_blocking() {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let killer = conn.stream.try_clone().ok();
        let report = self.report.clone();
        let progress: ProgressFn = {
            let report = report.clone();
            Arc::new(move |done, total| report(IoReport::Progress(done, total)))
        };
        let job_token = token.clone();
        let mut job = if let Some((src, size, reopen)) = self.reader.take() {
            let chunk = self.opts.record_size.max(1);
            let resumed = {
                let report = report.clone();
                Box::new(move |at| report(IoReport::Resumed(at)))
            };
            let resume = point.map(|point| Resume {
                point,
                reopen,
                resumed,
            });
            tokio::task::spawn_blocking(move || {
                let sent = || report(IoReport::DataSent);
                let p = Some(progress);
                pipeline::send(conn, src, size, chunk, p, &job_token, &sent, resume).map(|()| None)
            })
        } else if let Some(sink) = self.sink.take() {
            tokio::task::spawn_blocking(move || receive(conn, sink, progress, &job_token, &report))
        } else {
            return Ok(Err(Error::Internal("nothing to transfer".into())));
        };
        tokio::select! {
            r = &mut job => Ok(r.map_err(|e| Error::Internal(e.to_string())).and_then(|r| r)),
            s = &mut stop => {
                if let Some(k) = &killer {
                    abort(k);
                }
                let _ = job.await;
                drop(killer);
                s.map(|()| Err(Error::Cancelled))
            }
        }
    }
}

/// Abort a Transit connection: `SO_LINGER` zero (RST when the last descriptor closes)
/// rather than a polite FIN, so a peer blocked on a full window notices at once; and shut
/// it down so our own pipeline threads wake up.
pub(crate) fn abort(s: &std::net::TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// Open (or create) the partial file of a resumable receive of `size` bytes, locked against
/// a second receiver, and hash what it holds: the file positioned after that data, its
/// length and the hash state. Blocking.
fn open_partial(path: &std::path::Path, size: u64) -> Result<(File, u64, Sha256)> {
    let failed = |e: std::io::Error| Error::Transfer(format!("{}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    // The name is predictable: never follow a link someone put there.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NOFOLLOW.bits() as i32,
    );
    let file = options
        .open(path)
        .map_err(|e| Error::Transfer(format!("cannot create {}: {e}", path.display())))?;
    if !file.metadata().map_err(failed)?.is_file() {
        return Err(Error::Transfer(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            Error::Transfer(format!(
                "{} is being written by another receive",
                path.display()
            ))
        },
    )?;
    let len = file.metadata().map_err(failed)?.len();
    if len > size {
        file.set_len(0).map_err(failed)?;
    }
    let mut hasher = Sha256::new();
    let held = std::io::copy(&mut std::io::Read::take(&file, size), &mut hasher).map_err(failed)?;
    Ok((file, held, hasher))
}

/// Where a resumed receive starts: the sender's `{"offset": N}` record is either the
/// offset we hold (go on after it) or 0 (its data differs: start over).
fn resumed_start(
    conn: &mut BlockingConnection,
    file: &mut File,
    path: &std::path::Path,
    (held, hasher): (u64, Sha256),
) -> Result<Start> {
    use std::io::Seek;
    let mut buf = Vec::new();
    let mut stream = &conn.stream;
    let header =
        BlockingConnection::read_record(&mut stream, &mut conn.opener, conn.max_record, &mut buf)?
            .ok_or_else(|| Error::Transfer("the sender hung up before sending data".into()))?;
    let offset = serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|v| v.get("offset").and_then(Value::as_u64));
    let failed = |e: std::io::Error| Error::Transfer(format!("{}: {e}", path.display()));
    let hasher = match offset {
        Some(o) if o == held => hasher,
        Some(0) => {
            file.set_len(0).map_err(failed)?;
            Sha256::new()
        }
        _ => {
            return Err(Error::Transfer(
                "the sender's resume offset is not one the receiver offered".into(),
            ));
        }
    };
    let offset = offset.unwrap_or(0);
    file.seek(std::io::SeekFrom::Start(offset))
        .map_err(failed)?;
    Ok(Start {
        offset,
        hasher,
        partial: Some(path.to_owned()),
    })
}

/// Receive into the sink's temporary (or partial) file, then move it (or the unpacked
/// directory) into place. On a pipeline thread.
fn receive(
    mut conn: BlockingConnection,
    sink: Sink,
    progress: ProgressFn,
    token: &CancelToken,
    report: &Reporter,
) -> Result<Option<PathBuf>> {
    let Sink {
        mut file,
        path: tmp_path,
        dest,
        overwrite,
        offer,
        resume,
        empty: _empty,
    } = sink;
    // A resumable receive keeps its partial file when cut; otherwise it is removed.
    let mut tmp = Cleanup(resume.is_none().then(|| tmp_path.clone()));
    let start = match resume {
        Some(held) => resumed_start(&mut conn, &mut file, &tmp_path, held)?,
        None => Start::fresh(),
    };
    if start.offset > 0 {
        report(IoReport::Resumed(start.offset));
    }
    let mut finish = || -> Result<()> {
        report(IoReport::DataReceived);
        match &offer.kind {
            OfferKind::File => move_into_place(&tmp_path, &dest, overwrite),
            OfferKind::Directory { numbytes, .. } => {
                unpack(&tmp_path, &dest, *numbytes)?;
                let _ = std::fs::remove_file(&tmp_path);
                Ok(())
            }
        }
    };
    pipeline::receive(
        conn,
        Box::new(file),
        (start, offer.size),
        Some(progress),
        token,
        &mut finish,
    )?;
    tmp.0 = None;
    Ok(Some(dest))
}

/// Open what a sender sends: its offer and the reader. Blocking.
fn open(source: Source) -> Result<(Value, Reader)> {
    let zip_offer = |dirname: &str, z: zip::ZipStream| {
        let offer = json!({"offer": {"directory": {"mode": "zipfile/deflated",
            "dirname": dirname, "zipsize": z.zipsize,
            "numbytes": z.numbytes, "numfiles": z.numfiles}}});
        let size = z.zipsize;
        let again = z.restarter();
        let reopen: Reopen = Box::new(move || Ok(Box::new(again()?) as _));
        (
            offer,
            (Box::new(z) as Box<dyn std::io::Read + Send>, size, reopen),
        )
    };
    match source {
        Source::Zip { dirname, zip } => Ok(zip_offer(&dirname, zip)),
        Source::Path(path) => {
            let md = std::fs::metadata(&path)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
            let name = file_name_of(&path)?;
            if md.is_dir() {
                return Ok(zip_offer(&name, zip::ZipStream::new(&path)?));
            }
            let f = File::open(&path).map_err(|e| {
                Error::InvalidArgument(format!("cannot open {}: {e}", path.display()))
            })?;
            let size = f
                .metadata()
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?
                .len();
            let offer = json!({"offer": {"file": {"filename": name, "filesize": size}}});
            let reopen: Reopen = Box::new(move || {
                let f = File::open(&path).map_err(|e| {
                    Error::Transfer(format!("cannot open {} again: {e}", path.display()))
                })?;
                Ok(Box::new(f) as _)
            });
            Ok((offer, (Box::new(f), size, reopen)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "wormhole-io-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_partial_file_is_hashed_and_locked() {
        let d = scratch("partial");
        let p = d.join(".f.10.wormhole-partial");
        // None yet: created empty.
        let (f, held, h) = open_partial(&p, 10).unwrap();
        assert_eq!(held, 0);
        assert_eq!(h.finalize()[..], Sha256::digest(b"")[..]);
        // A second receive of the same file is refused while the first holds it.
        let e = open_partial(&p, 10).unwrap_err();
        assert!(e.to_string().contains("another receive"), "{e}");
        drop(f);
        std::fs::write(&p, b"abcd").unwrap();
        let (_f, held, h) = open_partial(&p, 10).unwrap();
        assert_eq!(held, 4);
        assert_eq!(h.finalize()[..], Sha256::digest(b"abcd")[..]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_partial_file_longer_than_the_offer_is_emptied() {
        let d = scratch("long");
        let p = d.join(".f.3.wormhole-partial");
        std::fs::write(&p, b"abcdef").unwrap();
        let (_f, held, _) = open_partial(&p, 3).unwrap();
        assert_eq!(held, 0);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_link_or_directory_at_the_partial_name_is_refused() {
        let d = scratch("link");
        let target = d.join("victim");
        std::fs::write(&target, b"keep me").unwrap();
        let p = d.join(".f.10.wormhole-partial");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(open_partial(&p, 10).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        let q = d.join(".g.10.wormhole-partial");
        std::fs::create_dir(&q).unwrap();
        assert!(open_partial(&q, 10).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
