//! The I/O task of one file or directory transfer: the async half the machine
//! ([`super::machine`]) drives. It opens the source or creates the destination, runs
//! Transit, and moves the data on the pipeline threads; it decides nothing about the
//! protocol. It acts on [`Directive`]s and reports back as [`IoReport`]s.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::files::{Cleanup, check_destination, file_name_of, move_into_place, temp_path, unpack};
use super::machine::{Directive, IoReport, OfferInfo, OfferKind};
use super::options::{CancelToken, ProgressFn, TransferOptions};
use super::{pipeline, zip};
use crate::error::{Error, Result};
use crate::transit::{Hints, Role, Transit};

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
    tmp: Cleanup,
    dest: PathBuf,
    overwrite: bool,
    offer: OfferInfo,
}

struct Task {
    rx: mpsc::UnboundedReceiver<Order>,
    source: Option<Source>,
    opts: TransferOptions,
    report: Reporter,
    transit: Option<Transit>,
    /// Hints that came before Transit started.
    hints: Vec<Value>,
    sink: Option<Sink>,
    /// Sender: the open source and its size.
    reader: Option<(Box<dyn std::io::Read + Send>, u64)>,
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
                } => {
                    self.accept(dest, overwrite, offer);
                    Ok(())
                }
                Directive::Connect => return self.transfer().await,
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
        let (offer, reader, size) = tokio::task::spawn_blocking(move || open(source))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        self.start_transit(Role::Sender, key).await?;
        self.reader = Some((reader, size));
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

    /// Check the destination and create the temporary file; report the outcome.
    fn accept(&mut self, dest: PathBuf, overwrite: bool, offer: OfferInfo) {
        if let Err(error) = check_destination(&offer, &dest, overwrite) {
            return (self.report)(IoReport::Refused {
                reply: "transfer rejected".into(),
                error,
            });
        }
        let is_dir = !matches!(offer.kind, OfferKind::File);
        let tmp = temp_path(&dest, if is_dir { "zip.part" } else { "part" });
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => {
                self.sink = Some(Sink {
                    file,
                    tmp: Cleanup(Some(tmp)),
                    dest,
                    overwrite,
                    offer,
                });
                (self.report)(IoReport::ReadyForData);
            }
            // The sender waits for our answer: tell it (without our local path).
            Err(e) => (self.report)(IoReport::Refused {
                reply: "the receiver cannot write the file".into(),
                error: Error::Transfer(format!("cannot create {}: {e}", tmp.display())),
            }),
        }
    }

    /// Connect Transit and move the data; stops early on `Stop` or the user's cancel.
    async fn transfer(mut self) -> Outcome {
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
        let mut job = if let Some((src, size)) = self.reader.take() {
            let chunk = self.opts.record_size.max(1);
            tokio::task::spawn_blocking(move || {
                let sent = || report(IoReport::DataSent);
                pipeline::send(conn, src, size, chunk, Some(progress), &job_token, &sent)
                    .map(|()| None)
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

/// Receive into the sink's temporary file, then move it (or the unpacked directory) into
/// place. On a pipeline thread.
fn receive(
    conn: crate::transit::BlockingConnection,
    sink: Sink,
    progress: ProgressFn,
    token: &CancelToken,
    report: &Reporter,
) -> Result<Option<PathBuf>> {
    let Sink {
        file,
        mut tmp,
        dest,
        overwrite,
        offer,
    } = sink;
    let tmp_path = tmp.0.clone().unwrap_or_default();
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
        offer.size,
        Some(progress),
        token,
        &mut finish,
    )?;
    tmp.0 = None;
    Ok(Some(dest))
}

/// Open what a sender sends: its offer, a reader and the byte count. Blocking.
fn open(source: Source) -> Result<(Value, Box<dyn std::io::Read + Send>, u64)> {
    let zip_offer = |dirname: &str, z: zip::ZipStream| {
        let offer = json!({"offer": {"directory": {"mode": "zipfile/deflated",
            "dirname": dirname, "zipsize": z.zipsize,
            "numbytes": z.numbytes, "numfiles": z.numfiles}}});
        let size = z.zipsize;
        (offer, Box::new(z) as Box<dyn std::io::Read + Send>, size)
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
            Ok((offer, Box::new(f), size))
        }
    }
}
