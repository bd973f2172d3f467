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

mod files;
pub(crate) mod io;
pub mod machine;
pub mod message;
pub(crate) mod options;
mod pipeline;
pub mod zip;

use std::path::{Path, PathBuf};

use crate::api::Wormhole;
use crate::error::{Error, Result};
pub use files::free_space;
use files::{check_destination, file_name_of};
pub use io::Source;
use machine::Kind;
pub use machine::{
    OfferInfo, OfferKind, RESUME_VERSION_KEY, ResumePoint, TransferEvent, advertise_resume,
};
pub use options::{CancelToken, DEFAULT_RECORD_SIZE, EventFn, ProgressFn, TransferOptions};

/// Send the file at `path` (the sender half of `wormhole send FILE`) on a wormhole of
/// either mode. Waits for the key to be verified, offers the file, and returns once the
/// receiver acknowledged every byte with the matching SHA-256. The caller sets the code
/// and closes the wormhole. See [`Wormhole::start_send_file`].
pub async fn send_file(w: &Wormhole, path: &Path, opts: &TransferOptions) -> Result<()> {
    if std::fs::metadata(path)
        .map_err(|e| Error::InvalidArgument(format!("cannot open {}: {e}", path.display())))?
        .is_dir()
    {
        return Err(Error::InvalidArgument(format!(
            "{} is a directory",
            path.display()
        )));
    }
    send_source(w, Source::Path(path.to_owned()), opts).await
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
    let source = Source::Zip {
        dirname: dirname.to_owned(),
        zip: z,
    };
    send_source(w, source, opts).await
}

/// [`send_file`] or [`send_directory`], depending on what `path` is.
pub async fn send_path(w: &Wormhole, path: &Path, opts: &TransferOptions) -> Result<()> {
    std::fs::metadata(path)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    send_source(w, Source::Path(path.to_owned()), opts).await
}

async fn send_source(w: &Wormhole, source: Source, opts: &TransferOptions) -> Result<()> {
    let id = w.start_transfer(Kind::SendFile, None, Some(source), Some(opts.clone()))?;
    match w.transfer_news(id, false).await? {
        TransferEvent::FileSent(r) => r,
        other => Err(Error::Internal(format!("unexpected {other:?}"))),
    }
}

/// What [`receive`] got.
#[derive(Debug)]
pub enum Received {
    /// A text message (already acknowledged).
    Text(String),
    /// A file or directory, waiting for the application's decision.
    Offer(IncomingOffer),
}

/// A file or directory offer waiting on its wormhole ([`Wormhole::pending_offer`]).
/// Accept or reject it; dropping it rejects it.
pub struct IncomingOffer {
    w: Wormhole,
    id: u64,
    info: OfferInfo,
    answered: bool,
}

impl std::fmt::Debug for IncomingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingOffer")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Wait for the sender's offer (the receiver half of `wormhole receive`), on a wormhole of
/// either mode. Text is acknowledged and returned; a file or directory comes back as an
/// [`IncomingOffer`]. The sender's `transit` message is answered with ours as it arrives,
/// and unknown offer types are refused with the reference's errors.
/// See [`Wormhole::start_receive_file`].
pub async fn receive(w: &Wormhole, opts: &TransferOptions) -> Result<Received> {
    let id = w.start_transfer(Kind::ReceiveFile, None, None, Some(opts.clone()))?;
    match w.transfer_news(id, true).await? {
        TransferEvent::Offer(info) => Ok(Received::Offer(IncomingOffer {
            w: w.clone(),
            id,
            info,
            answered: false,
        })),
        TransferEvent::TextReceived(r) => r.map(Received::Text),
        TransferEvent::FileReceived(Err(e)) => Err(e),
        other => Err(Error::Internal(format!("unexpected {other:?}"))),
    }
}

impl IncomingOffer {
    /// What is offered.
    pub fn info(&self) -> &OfferInfo {
        &self.info
    }

    /// The offered base name (file name, or directory name).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Bytes that will travel: the file size, or the zip size of a directory.
    pub fn transfer_size(&self) -> u64 {
        self.info.size
    }

    /// A file or a directory, with the directory's totals.
    pub fn kind(&self) -> &OfferKind {
        &self.info.kind
    }

    /// See [`OfferInfo::destination`].
    pub fn destination(&self, dir: &Path, output: Option<&Path>) -> PathBuf {
        self.info.destination(dir, output)
    }

    /// See [`OfferInfo::check_destination`].
    pub fn check_destination(&self, dest: &Path, overwrite: bool) -> Result<()> {
        check_destination(&self.info, dest, overwrite)
    }

    /// Refuse the offer: the sender gets `{"error": "transfer rejected"}`.
    pub fn reject(mut self) -> Result<()> {
        self.answered = true;
        self.w.reject_offer()
    }

    /// Accept into `dest` (see [`IncomingOffer::destination`]): check it with
    /// [`IncomingOffer::check_destination`] (on failure the sender is told `transfer
    /// rejected`), send `file_ack`, connect Transit, receive into a temporary name, rename
    /// it into place once complete and send the ack with the SHA-256. Returns `dest`. A
    /// directory is unpacked (safely) before the rename. The options given to [`receive`]
    /// apply, except that `opts.progress`, when set, replaces their progress callback, and
    /// that `opts.cancel` cancels the transfer too.
    pub async fn accept(
        mut self,
        dest: &Path,
        overwrite: bool,
        opts: &TransferOptions,
    ) -> Result<PathBuf> {
        self.answered = true;
        self.w.set_progress(self.id, opts.progress.clone());
        self.w.accept_offer(dest, overwrite)?;
        let news = self.w.transfer_news(self.id, false);
        tokio::pin!(news);
        let ev = tokio::select! {
            ev = &mut news => ev?,
            // `opts.cancel` cancels the accepted transfer too (the token given to
            // `receive` already does).
            _ = opts.cancel.cancelled() => {
                if self.w.current_transfer() == Some(self.id) {
                    self.w.cancel_transfer();
                }
                news.await?
            }
        };
        match ev {
            TransferEvent::FileReceived(r) => r,
            other => Err(Error::Internal(format!("unexpected {other:?}"))),
        }
    }
}

impl Drop for IncomingOffer {
    fn drop(&mut self) {
        if !self.answered && self.w.pending_offer_id() == Some(self.id) {
            let _ = self.w.reject_offer();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::files::{NAME_MAX, temp_path};
    use super::*;
    use crate::transit::{Connection, Role, Transit, TransitConfig};
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
                None,
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
            (pipeline::Start::fresh(), total),
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
            let out = pipeline::send(
                s,
                zeros,
                total,
                65536,
                None,
                &CancelToken::new(),
                &|| {},
                None,
            );
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
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            c2.cancel();
            if let Some(k) = &killer {
                io::abort(k);
            }
        });
        let result = pipeline::receive(
            r,
            Box::new(Stall),
            (pipeline::Start::fresh(), total),
            None,
            &cancel,
            &mut || Ok(()),
        );
        stopper.join().unwrap();
        assert_eq!(result.unwrap_err(), Error::Cancelled);
        let (sent, took) = sender.join().unwrap();
        assert!(sent.is_err());
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn safe_names() {
        use machine::safe_base_name;
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
        let o = OfferInfo {
            name: "f.txt".into(),
            size: 1,
            kind: OfferKind::File,
        };
        assert_eq!(o.destination(&dir, None), dir.join("f.txt"));
        assert_eq!(
            o.destination(&dir, Some(&dir.join("sub"))),
            dir.join("sub/f.txt")
        );
        assert!(o.check_destination(&dir.join("f.txt"), false).is_err());
        assert!(o.check_destination(&dir.join("f.txt"), true).is_ok());
        assert!(o.check_destination(&dir.join("sub"), true).is_err());
        assert!(o.check_destination(&dir.join("new"), false).is_ok());
        let big = OfferInfo {
            size: u64::MAX,
            ..o
        };
        assert!(big.check_destination(&dir.join("new"), false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
