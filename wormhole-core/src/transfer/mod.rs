//! Files and directories over Transit: the file-transfer protocol of `wormhole send` /
//! `wormhole receive` (PROTOCOL §8), interoperable with the reference CLI 0.24.
//!
//! Sending: [`send_file`], [`send_directory`] (zipped while streaming, no temporary copy)
//! or [`send_path`]. Receiving: [`receive`] returns the text, or an [`IncomingOffer`] the
//! application inspects and then [`accept`](IncomingOffer::accept)s or
//! [`reject`](IncomingOffer::reject)s. Text keeps its own helpers in [`crate::text`].
//!
//! ```no_run
//! # async fn demo(w: wormhole_core::Wormhole) -> wormhole_core::Result<()> {
//! use wormhole_core::transfer::{self, Received, TransferOptions};
//! let opts = TransferOptions::default();
//! match transfer::receive(&w, &opts).await? {
//!     Received::Text(t) => println!("{t}"),
//!     Received::Offer(offer) => {
//!         let dest = offer.destination(std::path::Path::new("."), None);
//!         let path = offer.accept(&dest, false, &opts).await?;
//!         println!("saved {}", path.display());
//!     }
//! }
//! w.close().await
//! # }
//! ```
//!
//! Receive safety: names are reduced to their base name and must not be `.`/`..`; zip
//! entries may not be absolute, contain `..` or be links; an existing path is never
//! replaced unless asked; free space is checked before the `file_ack`; data goes to a
//! hidden temporary name that is renamed only once every byte has arrived (authenticated
//! record by record), so no partial file ever looks complete.

mod pipeline;
pub mod zip;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::Wormhole;
use crate::error::{Error, Result};
use crate::text::TransferMessage;
use crate::transit::{Hints, PathKind, Role, TRANSIT_PURPOSE, Transit, TransitConfig};

/// Progress callback: `(bytes done, bytes total)`. Called from a transfer thread after
/// each record; keep it cheap.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Milestones of a transfer, for user interfaces (see [`TransferOptions::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// Transit connected; the data starts flowing.
    Connected(PathKind),
    /// Sender: every byte was sent; waiting for the receiver's ack.
    DataSent,
    /// Receiver: every byte arrived; a directory is unpacked next.
    DataReceived,
}

/// Event callback, see [`TransferEvent`]. Called from a transfer thread or task.
pub type EventFn = Arc<dyn Fn(&TransferEvent) + Send + Sync>;

/// Default plaintext bytes per record we send (the reference sends 16 KiB; every known
/// receiver accepts larger records).
pub const DEFAULT_RECORD_SIZE: usize = 256 * 1024;

/// Cancels a transfer from anywhere (another task, a signal handler, another thread).
#[derive(Clone, Debug)]
pub struct CancelToken(Arc<watch::Sender<bool>>);

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken(Arc::new(watch::channel(false).0))
    }
}

impl CancelToken {
    /// A fresh, uncancelled token.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancel: the transfer stops, its connection is closed and it fails with
    /// [`Error::Cancelled`]; the peer sees the connection drop.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    async fn guard<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            r = fut => r,
            _ = self.cancelled() => Err(Error::Cancelled),
        }
    }
}

/// Options shared by sending and receiving.
#[derive(Clone)]
pub struct TransferOptions {
    /// How Transit listens and which relay it uses.
    pub transit: TransitConfig,
    /// Progress reports.
    pub progress: Option<ProgressFn>,
    /// Cancellation.
    pub cancel: CancelToken,
    /// Milestone events.
    pub events: Option<EventFn>,
    /// Plaintext bytes per record we send ([`DEFAULT_RECORD_SIZE`]).
    pub record_size: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            transit: TransitConfig::default(),
            progress: None,
            cancel: CancelToken::new(),
            events: None,
            record_size: DEFAULT_RECORD_SIZE,
        }
    }
}

impl TransferOptions {
    fn emit(&self, e: TransferEvent) {
        if let Some(f) = &self.events {
            f(&e);
        }
    }
}

impl std::fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("transit", &self.transit)
            .field("record_size", &self.record_size)
            .finish_non_exhaustive()
    }
}

fn file_name_of(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{} has no usable file name", path.display()))
        })
}

/// Send the file at `path` (the sender half of `wormhole send FILE`). Waits for the key to
/// be verified, offers the file, and returns once the receiver acknowledged every byte
/// with the matching SHA-256. The caller sets the code and closes the wormhole.
pub async fn send_file(w: &Wormhole, path: &Path, opts: &TransferOptions) -> Result<()> {
    let f = File::open(path)
        .map_err(|e| Error::InvalidArgument(format!("cannot open {}: {e}", path.display())))?;
    let size = f
        .metadata()
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?
        .len();
    let offer = json!({"offer": {"file": {"filename": file_name_of(path)?, "filesize": size}}});
    send_offer(w, offer, Box::new(f), size, opts).await
}

/// Send the directory at `path` as a zip built while streaming (the sender half of
/// `wormhole send DIR`).
pub async fn send_directory(w: &Wormhole, path: &Path, opts: &TransferOptions) -> Result<()> {
    let dir = path.to_owned();
    let z = tokio::task::spawn_blocking(move || zip::ZipStream::new(&dir))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    send_zip(w, &file_name_of(path)?, z, opts).await
}

/// Send a prepared [`zip::ZipStream`] as the directory `dirname` (for applications that
/// build it themselves, e.g. with [`zip::ZipStream::new_skipping`]).
pub async fn send_zip(
    w: &Wormhole,
    dirname: &str,
    z: zip::ZipStream,
    opts: &TransferOptions,
) -> Result<()> {
    let offer = json!({"offer": {"directory": {"mode": "zipfile/deflated",
        "dirname": dirname, "zipsize": z.zipsize,
        "numbytes": z.numbytes, "numfiles": z.numfiles}}});
    let size = z.zipsize;
    send_offer(w, offer, Box::new(z), size, opts).await
}

/// [`send_file`] or [`send_directory`], depending on what `path` is.
pub async fn send_path(w: &Wormhole, path: &Path, opts: &TransferOptions) -> Result<()> {
    let md = std::fs::metadata(path)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    if md.is_dir() {
        send_directory(w, path, opts).await
    } else {
        send_file(w, path, opts).await
    }
}

async fn send_offer(
    w: &Wormhole,
    offer: Value,
    src: Box<dyn std::io::Read + Send>,
    size: u64,
    opts: &TransferOptions,
) -> Result<()> {
    let cancel = &opts.cancel;
    cancel.guard(w.get_verifier()).await?;
    let key = w.derive_key(TRANSIT_PURPOSE, 32)?;
    let mut transit = Transit::new(Role::Sender, &key, opts.transit.clone()).await?;
    w.send_message(transit.transit_message())?;
    w.send_message(serde_json::to_vec(&offer).unwrap_or_default())?;
    loop {
        let msg = cancel.guard(w.get_message()).await?;
        match TransferMessage::parse(&msg)? {
            TransferMessage::Error(e) => {
                return Err(Error::Transfer(format!(
                    "remote error, transfer abandoned: {e}"
                )));
            }
            TransferMessage::Transit(t) => transit.add_peer_hints(Hints::from_transit_json(&t)),
            TransferMessage::FileAck(a) if a == "ok" => break,
            TransferMessage::FileAck(_) | TransferMessage::MessageAck(_) => {
                return Err(Error::Transfer(
                    "ambiguous response from the receiver".into(),
                ));
            }
            _ => {}
        }
    }
    let conn = cancel.guard(transit.connect()).await?;
    opts.emit(TransferEvent::Connected(conn.path().clone()));
    let conn = conn.into_blocking()?;
    let killer = conn.stream.try_clone().ok();
    let (chunk, progress, token) = (
        opts.record_size.max(1),
        opts.progress.clone(),
        cancel.clone(),
    );
    let events = opts.events.clone();
    let job = tokio::task::spawn_blocking(move || {
        let sent = || {
            if let Some(e) = &events {
                e(&TransferEvent::DataSent)
            }
        };
        pipeline::send(conn, src, size, chunk, progress, &token, &sent)
    });
    run_job(job, cancel, killer).await
}

async fn run_job<T: Send + 'static>(
    mut job: tokio::task::JoinHandle<Result<T>>,
    cancel: &CancelToken,
    killer: Option<std::net::TcpStream>,
) -> Result<T> {
    tokio::select! {
        r = &mut job => r.map_err(|e| Error::Internal(e.to_string()))?,
        _ = cancel.cancelled() => {
            if let Some(k) = &killer {
                // Abort (RST when the last descriptor closes) rather than a polite FIN, so
                // a peer blocked on a full window notices at once.
                abort_on_close(k);
                let _ = k.shutdown(std::net::Shutdown::Both);
            }
            let _ = job.await;
            drop(killer);
            Err(Error::Cancelled)
        }
    }
}

/// `SO_LINGER` with a zero timeout: closing the socket resets the connection.
fn abort_on_close(s: &std::net::TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
}

/// What [`receive`] got.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per transfer
pub enum Received {
    /// A text message (already acknowledged).
    Text(String),
    /// A file or directory, waiting for the application's decision.
    Offer(IncomingOffer),
}

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

/// A file or directory offer. Drop it, or call [`IncomingOffer::reject`], to refuse.
pub struct IncomingOffer {
    w: Wormhole,
    name: String,
    size: u64,
    kind: OfferKind,
    transit: Option<Transit>,
}

impl std::fmt::Debug for IncomingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingOffer")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Wait for the sender's offer (the receiver half of `wormhole receive`). Answers the
/// sender's `transit` message with ours as it arrives, acknowledges text at once, and
/// refuses unknown offer types with the reference's errors.
pub async fn receive(w: &Wormhole, opts: &TransferOptions) -> Result<Received> {
    let cancel = &opts.cancel;
    let mut transit: Option<Transit> = None;
    loop {
        let msg = cancel.guard(w.get_message()).await?;
        let parsed = TransferMessage::parse(&msg)?;
        match parsed {
            TransferMessage::Error(e) => return Err(Error::Transfer(format!("remote error: {e}"))),
            TransferMessage::Transit(t) if transit.is_none() => {
                let key = w.derive_key(TRANSIT_PURPOSE, 32)?;
                let mut tr = Transit::new(Role::Receiver, &key, opts.transit.clone()).await?;
                tr.add_peer_hints(Hints::from_transit_json(&t));
                w.send_message(tr.transit_message())?;
                transit = Some(tr);
            }
            TransferMessage::Offer(_) => {
                let v: Value = serde_json::from_slice(&msg).unwrap_or(Value::Null);
                let offer = &v["offer"];
                if let Some(text) = offer.get("message").and_then(Value::as_str) {
                    w.send_message(TransferMessage::MessageAck("ok".into()).to_bytes())?;
                    return Ok(Received::Text(text.to_owned()));
                }
                let refuse = |what: &str| -> Result<Received> {
                    w.send_message(TransferMessage::Error(what.into()).to_bytes())?;
                    Err(Error::Transfer(format!(
                        "the sender's offer was refused: {what}"
                    )))
                };
                let (name, size, kind) = if let Some(f) = offer.get("file") {
                    match (
                        f.get("filename").and_then(Value::as_str),
                        f.get("filesize").and_then(Value::as_u64),
                    ) {
                        (Some(n), Some(s)) => (n, s, OfferKind::File),
                        _ => return refuse("unknown offer type"),
                    }
                } else if let Some(d) = offer.get("directory") {
                    let mode = d.get("mode").and_then(Value::as_str).unwrap_or("");
                    if !mode.starts_with("zipfile") {
                        return refuse("unknown mode");
                    }
                    match (
                        d.get("dirname").and_then(Value::as_str),
                        d.get("zipsize").and_then(Value::as_u64),
                    ) {
                        (Some(n), Some(s)) => (
                            n,
                            s,
                            OfferKind::Directory {
                                numbytes: d.get("numbytes").and_then(Value::as_u64).unwrap_or(s),
                                numfiles: d.get("numfiles").and_then(Value::as_u64).unwrap_or(0),
                            },
                        ),
                        _ => return refuse("unknown offer type"),
                    }
                } else {
                    return refuse("unknown offer type");
                };
                let Some(name) = safe_base_name(name) else {
                    w.send_message(TransferMessage::Error("transfer rejected".into()).to_bytes())?;
                    return Err(Error::Transfer(format!(
                        "the sender offered the unsafe name {name:?}"
                    )));
                };
                return Ok(Received::Offer(IncomingOffer {
                    w: w.clone(),
                    name,
                    size,
                    kind,
                    transit,
                }));
            }
            _ => {}
        }
    }
}

/// Wait for the sender's `transit` message, answer with ours and return the Transit.
async fn receiver_transit(w: &Wormhole, opts: &TransferOptions) -> Result<Transit> {
    loop {
        let msg = opts.cancel.guard(w.get_message()).await?;
        match TransferMessage::parse(&msg)? {
            TransferMessage::Error(e) => return Err(Error::Transfer(format!("remote error: {e}"))),
            TransferMessage::Transit(t) => {
                let key = w.derive_key(TRANSIT_PURPOSE, 32)?;
                let mut tr = Transit::new(Role::Receiver, &key, opts.transit.clone()).await?;
                tr.add_peer_hints(Hints::from_transit_json(&t));
                w.send_message(tr.transit_message())?;
                return Ok(tr);
            }
            _ => {}
        }
    }
}

/// The base name of an offered name, or `None` if nothing safe is left.
fn safe_base_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?;
    if base.is_empty() || base == "." || base == ".." || base.contains('\0') {
        return None;
    }
    Some(base.to_owned())
}

/// Bytes available to unprivileged users on the file system holding `dir`.
#[cfg(unix)]
pub fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes available on the file system holding `dir` (unknown on this platform).
#[cfg(not(unix))]
pub fn free_space(_dir: &Path) -> Option<u64> {
    None
}

/// The longest file name (in bytes) the usual file systems accept (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// A hidden temporary path next to `dest` that no other run uses. Its name starts with
/// as much of `dest`'s name as fits in [`NAME_MAX`] bytes, so a destination whose own name
/// is at the limit still gets a valid temporary name.
fn temp_path(dest: &Path, suffix: &str) -> PathBuf {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tail = format!(
        ".{}.wormhole-{suffix}",
        hex::encode(rand::random::<[u8; 4]>())
    );
    let mut keep = NAME_MAX.saturating_sub(1 + tail.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    dir.join(format!(".{}{tail}", &name[..keep]))
}

/// Removes a path on drop unless disarmed.
struct Cleanup(Option<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

impl IncomingOffer {
    /// The offered base name (file name, or directory name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes that will travel: the file size, or the zip size of a directory.
    pub fn transfer_size(&self) -> u64 {
        self.size
    }

    /// A file or a directory, with the directory's totals.
    pub fn kind(&self) -> &OfferKind {
        &self.kind
    }

    /// Where [`IncomingOffer::accept`] would write: `output` if given (a directory given
    /// here means "inside it"), else the offered name inside `dir`.
    pub fn destination(&self, dir: &Path, output: Option<&Path>) -> PathBuf {
        match output {
            Some(o) if o.is_dir() => o.join(&self.name),
            Some(o) => o.to_owned(),
            None => dir.join(&self.name),
        }
    }

    /// Check that `dest` can be written: it must not exist unless `overwrite` (and an
    /// existing directory is never replaced by a file or vice versa), and the free space
    /// must hold the data. The reference checks this before asking the user.
    pub fn check_destination(&self, dest: &Path, overwrite: bool) -> Result<()> {
        if let Ok(md) = std::fs::symlink_metadata(dest) {
            if !overwrite {
                return Err(Error::Transfer(format!(
                    "refusing to overwrite existing '{}'",
                    dest.display()
                )));
            }
            // Like the reference, a directory is never deleted to make room, and neither
            // is a symbolic link followed or replaced.
            if md.is_dir() || md.file_type().is_symlink() || !matches!(self.kind, OfferKind::File) {
                return Err(Error::Transfer(format!(
                    "refusing to replace existing '{}'",
                    dest.display()
                )));
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let need = match self.kind {
            OfferKind::File => self.size,
            OfferKind::Directory { numbytes, .. } => self.size.saturating_add(numbytes),
        };
        if let Some(free) = free_space(&parent) {
            if free < need {
                return Err(Error::Transfer(format!(
                    "not enough free space in {} ({need} bytes needed, {free} available)",
                    parent.display()
                )));
            }
        }
        Ok(())
    }

    /// Refuse the offer: the sender gets `{"error": "transfer rejected"}`.
    pub fn reject(self) -> Result<()> {
        self.w
            .send_message(TransferMessage::Error("transfer rejected".into()).to_bytes())
    }

    /// Accept into `dest` (see [`IncomingOffer::destination`]): check it with
    /// [`IncomingOffer::check_destination`] (on failure the sender is told `transfer
    /// rejected`), send `file_ack`, connect Transit, receive into a temporary name, rename
    /// it into place once complete and send the ack with the SHA-256. Returns `dest`. A
    /// directory is unpacked (safely) before the rename.
    pub async fn accept(
        self,
        dest: &Path,
        overwrite: bool,
        opts: &TransferOptions,
    ) -> Result<PathBuf> {
        let dest = dest.to_owned();
        if let Err(e) = self.check_destination(&dest, overwrite) {
            let _ = self
                .w
                .send_message(TransferMessage::Error("transfer rejected".into()).to_bytes());
            return Err(e);
        }
        let is_dir = !matches!(self.kind, OfferKind::File);
        let tmp = temp_path(&dest, if is_dir { "zip.part" } else { "part" });
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) => {
                // The sender waits for our answer: tell it (without our local path).
                let _ = self.w.send_message(
                    TransferMessage::Error("the receiver cannot write the file".into()).to_bytes(),
                );
                return Err(Error::Transfer(format!(
                    "cannot create {}: {e}",
                    tmp.display()
                )));
            }
        };
        let mut cleanup = Cleanup(Some(tmp.clone()));
        let transit = match self.transit {
            Some(t) => t,
            // A sender may post its hints after the offer: wait for them.
            None => receiver_transit(&self.w, opts).await?,
        };
        self.w
            .send_message(TransferMessage::FileAck("ok".into()).to_bytes())?;
        let cancel = &opts.cancel;
        let conn = cancel.guard(transit.connect()).await?;
        opts.emit(TransferEvent::Connected(conn.path().clone()));
        let conn = conn.into_blocking()?;
        let killer = conn.stream.try_clone().ok();
        let events = opts.events.clone();
        let (size, progress, token) = (self.size, opts.progress.clone(), cancel.clone());
        let kind = self.kind.clone();
        let (dest2, tmp2) = (dest.clone(), tmp.clone());
        let job = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut finish = || -> Result<()> {
                if let Some(e) = &events {
                    e(&TransferEvent::DataReceived);
                }
                match &kind {
                    OfferKind::File => move_into_place(&tmp2, &dest2, overwrite),
                    OfferKind::Directory { numbytes, .. } => {
                        unpack(&tmp2, &dest2, *numbytes)?;
                        let _ = std::fs::remove_file(&tmp2);
                        Ok(())
                    }
                }
            };
            pipeline::receive(conn, Box::new(file), size, progress, &token, &mut finish).map(|_| ())
        });
        run_job(job, cancel, killer).await?;
        cleanup.0 = None;
        Ok(dest)
    }
}

/// Rename the complete file `tmp` to `dest`. Without `overwrite`, a hard link makes the
/// "does not exist yet" check and the move one atomic step (where links work).
fn move_into_place(tmp: &Path, dest: &Path, overwrite: bool) -> Result<()> {
    let failed =
        |e: std::io::Error| Error::Transfer(format!("cannot rename into {}: {e}", dest.display()));
    if !overwrite {
        match std::fs::hard_link(tmp, dest) {
            Ok(()) => {
                let _ = std::fs::remove_file(tmp);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Transfer(format!(
                    "refusing to overwrite existing '{}'",
                    dest.display()
                )));
            }
            Err(_) if std::fs::symlink_metadata(dest).is_ok() => {
                return Err(Error::Transfer(format!(
                    "refusing to overwrite existing '{}'",
                    dest.display()
                )));
            }
            Err(_) => {} // no hard links here: plain rename
        }
    }
    std::fs::rename(tmp, dest).map_err(failed)
}

/// Extract the received zip `zip` into a staging directory next to `dest`, then rename
/// it to `dest`, which must not exist.
fn unpack(zip: &Path, dest: &Path, numbytes: u64) -> Result<()> {
    let staging = temp_path(dest, "part");
    std::fs::create_dir(&staging)
        .map_err(|e| Error::Transfer(format!("cannot create {}: {e}", staging.display())))?;
    let mut staged = Cleanup(Some(staging.clone()));
    zip::extract(zip, &staging, numbytes)?;
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(Error::Transfer(format!(
            "refusing to overwrite existing '{}'",
            dest.display()
        )));
    }
    std::fs::rename(&staging, dest)
        .map_err(|e| Error::Transfer(format!("cannot rename into {}: {e}", dest.display())))?;
    staged.0 = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transit::Connection;
    use std::io::Read as _;

    async fn pair() -> (Connection, Connection) {
        let key = [4u8; 32];
        let cfg = |listen: bool| TransitConfig {
            listen: if listen {
                vec!["127.0.0.1:0".parse().unwrap()]
            } else {
                vec![]
            },
            ..TransitConfig::default()
        };
        let s = Transit::new(Role::Sender, &key, cfg(true)).await.unwrap();
        let mut r = Transit::new(Role::Receiver, &key, cfg(false))
            .await
            .unwrap();
        r.add_peer_hints(s.hints().clone());
        let (a, b) = tokio::join!(s.connect(), r.connect());
        (a.unwrap(), b.unwrap())
    }

    fn roundtrip(data: Vec<u8>, chunk: usize) -> (Result<()>, Result<String>, Vec<u8>) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (s, r) = rt.block_on(pair());
        let (s, r) = (s.into_blocking().unwrap(), r.into_blocking().unwrap());
        let total = data.len() as u64;
        let cancel = CancelToken::new();
        let c2 = cancel.clone();
        let src = data.clone();
        let sender = std::thread::spawn(move || {
            pipeline::send(
                s,
                Box::new(std::io::Cursor::new(src)),
                total,
                chunk,
                None,
                &c2,
                &|| {},
            )
        });
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let got = pipeline::receive(
            r,
            Box::new(Sink(out.clone())),
            total,
            None,
            &cancel,
            &mut || Ok(()),
        );
        let sent = sender.join().unwrap();
        let bytes = out.lock().unwrap().clone();
        (sent, got, bytes)
    }

    #[test]
    fn pipeline_moves_bytes_and_checks_the_hash() {
        use sha2::Digest;
        for (len, chunk) in [
            (0usize, 1000usize),
            (1, 1000),
            (100_000, 1000),
            (3_000_001, 65536),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (sent, got, bytes) = roundtrip(data.clone(), chunk);
            sent.unwrap();
            assert_eq!(got.unwrap(), hex::encode(sha2::Sha256::digest(&data)));
            assert_eq!(bytes, data);
        }
    }

    /// A receiver cancelled while the sender is blocked on a full window: the sender
    /// fails promptly (the cancel resets the connection).
    #[test]
    fn receiver_cancel_unblocks_the_sender() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (s, r) = rt.block_on(pair());
        let (s, r) = (s.into_blocking().unwrap(), r.into_blocking().unwrap());
        let total = 1u64 << 30;
        let sender = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let zeros = Box::new(std::io::repeat(0).take(total));
            let out = pipeline::send(s, zeros, total, 65536, None, &CancelToken::new(), &|| {});
            (out, t.elapsed())
        });
        // A sink that stalls, so the window fills up.
        struct Stall;
        impl std::io::Write for Stall {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(200));
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let cancel = CancelToken::new();
        let killer = r.stream.try_clone().ok();
        let c2 = cancel.clone();
        let result = rt.block_on(async {
            let job = tokio::task::spawn_blocking(move || {
                pipeline::receive(r, Box::new(Stall), total, None, &c2, &mut || Ok(()))
            });
            let c3 = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                c3.cancel();
            });
            run_job(job, &cancel, killer).await
        });
        assert_eq!(result.unwrap_err(), Error::Cancelled);
        let (sent, took) = sender.join().unwrap();
        assert!(sent.is_err());
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn safe_names() {
        assert_eq!(safe_base_name("a/b/c.txt").as_deref(), Some("c.txt"));
        assert_eq!(safe_base_name("..\\x").as_deref(), Some("x"));
        for bad in ["", ".", "..", "a/..", "a/", "x\0y"] {
            assert_eq!(safe_base_name(bad), None, "{bad:?}");
        }
    }

    /// A destination name at the file-system limit (255 bytes, here with multi-byte
    /// characters across the cut) still gets a temporary name that can be created.
    #[test]
    fn temporary_names_fit_the_name_limit() {
        let dir = std::env::temp_dir().join(format!("wh-tmpname-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "a".repeat(255),
            format!("{}é", "b".repeat(253)),
            "é".repeat(127),
        ] {
            assert!(name.len() >= 254);
            let dest = dir.join(&name);
            std::fs::write(&dest, b"x").expect("the destination itself is a valid name");
            for suffix in ["part", "zip.part"] {
                let tmp = temp_path(&dest, suffix);
                let base = tmp.file_name().unwrap().to_str().unwrap();
                assert!(base.len() <= NAME_MAX, "{} bytes: {base}", base.len());
                assert!(base.starts_with(".b") || base.starts_with(".a") || base.starts_with(".é"));
                assert!(base.ends_with(&format!(".wormhole-{suffix}")));
                std::fs::write(&tmp, b"y").expect("the temporary name is valid");
                std::fs::remove_file(&tmp).unwrap();
            }
        }
        let short = temp_path(&dir.join("f.txt"), "part");
        assert!(
            short
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(".f.txt.")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn destination_and_overwrite_rules() {
        let dir = std::env::temp_dir().join(format!("wh-dest-{}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("f.txt"), b"x").unwrap();
        let offer = |kind| IncomingOffer {
            w: Wormhole::create("app", "ws://127.0.0.1:9/v1", crate::Options::default()).unwrap(),
            name: "f.txt".into(),
            size: 1,
            kind,
            transit: None,
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let o = offer(OfferKind::File);
        assert_eq!(o.destination(&dir, None), dir.join("f.txt"));
        assert_eq!(
            o.destination(&dir, Some(&dir.join("sub"))),
            dir.join("sub/f.txt")
        );
        assert!(o.check_destination(&dir.join("f.txt"), false).is_err());
        assert!(o.check_destination(&dir.join("f.txt"), true).is_ok());
        assert!(o.check_destination(&dir.join("sub"), true).is_err());
        assert!(o.check_destination(&dir.join("new"), false).is_ok());
        let big = IncomingOffer {
            size: u64::MAX,
            ..o
        };
        assert!(big.check_destination(&dir.join("new"), false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
