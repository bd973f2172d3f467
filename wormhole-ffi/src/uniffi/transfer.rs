//! Files and directories for Kotlin and Swift: the file-transfer protocol of `wormhole
//! send` / `wormhole receive` over Transit (core's `transfer` module).
//!
//! Sending: [`Wormhole::send_file`]. Receiving: [`Wormhole::receive_offer`] returns the
//! text or an [`IncomingOffer`] to [`IncomingOffer::accept`] or [`IncomingOffer::reject`].
//! Core's transfer futures need its tokio runtime, so each runs as a task on the engine
//! and these methods await that task (executor-agnostic, like the rest of the API).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wormhole_core::transfer::{self, CancelToken, OfferKind, Received, TransferOptions};
use wormhole_core::transit::DirectHint;

use super::error::DelegateError;
use super::error::WormholeError;
use super::wormhole::Wormhole;

/// How Transit connects, for sending and receiving.
#[derive(Debug, Clone, PartialEq, Eq, Default, ::uniffi::Record)]
pub struct TransferSettings {
    /// A transit relay, `tcp:HOST:PORT` (the CLI's `--transit-helper`); none: only direct
    /// connections and the peer's relay.
    #[uniffi(default = None)]
    pub transit_relay: Option<String>,
    /// Do not listen for direct connections (the CLI's `--no-listen`).
    #[uniffi(default = false)]
    pub no_listen: bool,
}

/// Receives progress reports: `(bytes done, bytes total)`, at most about ten a second
/// plus the last one, on a transfer thread (never a network thread).
#[::uniffi::export(with_foreign)]
pub trait TransferProgress: Send + Sync {
    /// `done` of `total` bytes have moved.
    fn on_progress(&self, done: u64, total: u64) -> Result<(), DelegateError>;
}

/// What [`Wormhole::receive_offer`] got.
#[derive(::uniffi::Enum)]
pub enum Incoming {
    /// A text message (already acknowledged).
    Text {
        /// The text.
        text: String,
    },
    /// A file or directory, waiting for `accept` or `reject`.
    Offer {
        /// The offer.
        offer: Arc<IncomingOffer>,
    },
}

/// A file or directory offered by the peer. Accept it into a path or reject it; releasing
/// it undecided rejects it.
#[derive(::uniffi::Object)]
pub struct IncomingOffer {
    name: String,
    size: u64,
    directory: Option<(u64, u64)>,
    inner: Mutex<Option<transfer::IncomingOffer>>,
    opts: TransferOptions,
}

fn options(
    settings: &TransferSettings,
    cancel: CancelToken,
    progress: Option<Arc<dyn TransferProgress>>,
) -> Result<TransferOptions, WormholeError> {
    let mut opts = TransferOptions {
        cancel,
        ..TransferOptions::default()
    };
    if settings.no_listen {
        opts.transit.listen.clear();
    }
    if let Some(relay) = &settings.transit_relay {
        opts.transit.relays = vec![DirectHint::parse_helper(relay)?];
    }
    if let Some(p) = progress {
        // Foreign calls are not free: report at most every 100 ms, and always the end.
        let last = Mutex::new(None::<Instant>);
        opts.progress = Some(Arc::new(move |done, total| {
            let now = Instant::now();
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100));
            if due || done >= total {
                *last = Some(now);
                if let Err(e) = p.on_progress(done, total) {
                    tracing::warn!("wormhole: a progress callback failed: {e}");
                }
            }
        }));
    }
    Ok(opts)
}

/// Runs a core transfer future on the engine and waits for it.
async fn on_engine<T: Send + 'static>(
    fut: impl std::future::Future<Output = wormhole_core::Result<T>> + Send + 'static,
) -> Result<T, WormholeError> {
    let engine = wormhole_core::Engine::global()?;
    engine
        .handle()
        .spawn(fut)
        .await
        .map_err(|e| WormholeError::Internal(format!("transfer task failed: {e}")))?
        .map_err(WormholeError::from)
}

#[::uniffi::export]
impl Wormhole {
    /// Sends the file or directory at `path` (a directory is zipped while streaming), the
    /// sender half of `wormhole send PATH`: waits for the peer, offers it, moves the data
    /// over Transit and returns once the receiver confirmed every byte (SHA-256). Set the
    /// code first; close the wormhole afterwards with `shutdown()`.
    pub async fn send_file(
        &self,
        path: String,
        settings: TransferSettings,
        progress: Option<Arc<dyn TransferProgress>>,
    ) -> Result<(), WormholeError> {
        let opts = options(&settings, self.transfer_cancel(), progress)?;
        let w = self.inner.clone();
        on_engine(async move { transfer::send_path(&w, &PathBuf::from(path), &opts).await }).await
    }

    /// Waits for what the peer sends, the receiver half of `wormhole receive`: a text
    /// (returned as is) or a file/directory offer to accept or reject.
    pub async fn receive_offer(
        &self,
        settings: TransferSettings,
    ) -> Result<Incoming, WormholeError> {
        let opts = options(&settings, self.transfer_cancel(), None)?;
        let w = self.inner.clone();
        let o = opts.clone();
        match on_engine(async move { transfer::receive(&w, &o).await }).await? {
            Received::Text(text) => Ok(Incoming::Text { text }),
            Received::Offer(offer) => Ok(Incoming::Offer {
                offer: Arc::new(IncomingOffer {
                    name: offer.name().to_owned(),
                    size: offer.transfer_size(),
                    directory: match offer.kind() {
                        OfferKind::File => None,
                        OfferKind::Directory { numbytes, numfiles } => Some((*numbytes, *numfiles)),
                    },
                    inner: Mutex::new(Some(offer)),
                    opts,
                }),
            }),
        }
    }

    /// Stops the running transfer (sending or receiving, on either side of the offer):
    /// it fails with `Cancelled` and the peer sees the connection drop. Also applies to
    /// transfers this wormhole starts later.
    pub fn cancel_transfer(&self) {
        self.transfer_cancel().cancel();
    }
}

#[::uniffi::export]
impl IncomingOffer {
    /// The offered base name (a file name, or the directory's name).
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Bytes that will travel: the file's size, or the size of the directory's zip.
    pub fn transfer_size(&self) -> u64 {
        self.size
    }

    /// Whether a directory is offered.
    pub fn is_directory(&self) -> bool {
        self.directory.is_some()
    }

    /// For a directory: the number of files in it (0 for a file).
    pub fn file_count(&self) -> u64 {
        self.directory.map_or(0, |(_, n)| n)
    }

    /// Accepts into `destination` (a path that must not exist unless `overwrite`; free
    /// space is checked first). Data goes to a temporary name renamed into place only when
    /// every byte arrived and matched; a directory is unpacked safely (no absolute paths,
    /// `..` or links). Returns the path written.
    pub async fn accept(
        &self,
        destination: String,
        overwrite: bool,
        progress: Option<Arc<dyn TransferProgress>>,
    ) -> Result<String, WormholeError> {
        let offer = self.take()?;
        let mut opts = self.opts.clone();
        if progress.is_some() {
            let with = options(&TransferSettings::default(), opts.cancel.clone(), progress)?;
            opts.progress = with.progress;
        }
        let dest = PathBuf::from(destination);
        let path = on_engine(async move { offer.accept(&dest, overwrite, &opts).await }).await?;
        Ok(path.to_string_lossy().into_owned())
    }

    /// Refuses the offer: the sender is told `transfer rejected`.
    pub fn reject(&self) -> Result<(), WormholeError> {
        Ok(self.take()?.reject()?)
    }
}

impl IncomingOffer {
    fn take(&self) -> Result<transfer::IncomingOffer, WormholeError> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| WormholeError::InvalidArgument("the offer was already answered".into()))
    }
}
