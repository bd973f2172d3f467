//! Files and directories for Kotlin and Swift: the file-transfer protocol of `wormhole
//! send` / `wormhole receive` over Transit (core's `transfer` module).
//!
//! Deferred style: [`Wormhole::send_file`], [`Wormhole::receive_offer`] returning the text
//! or an [`IncomingOffer`] to [`IncomingOffer::accept`] or [`IncomingOffer::reject`]; core's
//! awaitables are runtime-agnostic, so these suspend functions await them directly.
//! Delegated style: `start_*` methods, `accept_offer`/`reject_offer`, and the events on a
//! [`TransferDelegate`]. Core owns the protocol, the progress throttle and the transit
//! settings; this file only converts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wormhole_core::transfer::{self, OfferKind, Received, TransferOptions};
use wormhole_core::transit::TransitConfig;

use super::error::{DelegateError, WormholeError};
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
    progress: Option<Arc<dyn TransferProgress>>,
) -> Result<TransferOptions, WormholeError> {
    let mut opts = TransferOptions {
        transit: TransitConfig::with_relay(settings.transit_relay.as_deref(), !settings.no_listen)?,
        ..TransferOptions::default()
    };
    if let Some(p) = progress {
        opts.progress = Some(Arc::new(move |done, total| {
            if let Err(e) = p.on_progress(done, total) {
                tracing::warn!("wormhole: a progress callback failed: {e}");
            }
        }));
    }
    Ok(opts)
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
        let opts = options(&settings, progress)?;
        Ok(transfer::send_path(&self.inner, &PathBuf::from(path), &opts).await?)
    }

    /// Waits for what the peer sends, the receiver half of `wormhole receive`: a text
    /// (returned as is) or a file/directory offer to accept or reject.
    pub async fn receive_offer(
        &self,
        settings: TransferSettings,
    ) -> Result<Incoming, WormholeError> {
        let opts = options(&settings, None)?;
        match transfer::receive(&self.inner, &opts).await? {
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
    /// it fails with `Cancelled` and the peer sees the connection drop.
    pub fn cancel_transfer(&self) {
        self.inner.cancel_transfer();
    }

    /// Delegated mode: sends a text like `wormhole send --text`; ends with
    /// `TransferUpdate.TextSent`.
    pub fn start_send_text(&self, text: String) -> Result<(), WormholeError> {
        Ok(self.inner.start_send_text(&text)?)
    }

    /// Delegated mode: waits for a text; ends with `TransferUpdate.TextReceived`.
    pub fn start_receive_text(&self) -> Result<(), WormholeError> {
        Ok(self.inner.start_receive_text()?)
    }

    /// Delegated mode: sends the file or directory at `path`; `Progress` updates, then
    /// `TransferUpdate.FileSent`.
    pub fn start_send_file(
        &self,
        path: String,
        settings: TransferSettings,
    ) -> Result<(), WormholeError> {
        let opts = options(&settings, None)?;
        Ok(self.inner.start_send_file(&PathBuf::from(path), opts)?)
    }

    /// Delegated mode: receives what the sender offers: `TransferUpdate.Offer` (then
    /// `acceptOffer` or `rejectOffer`), `Progress`, `FileReceived`; or `TextReceived`.
    pub fn start_receive_file(&self, settings: TransferSettings) -> Result<(), WormholeError> {
        let opts = options(&settings, None)?;
        Ok(self.inner.start_receive_file(opts)?)
    }

    /// Delegated mode: accepts the waiting offer into `destination` (an existing directory:
    /// inside it, under the offered name); `InvalidState` when no offer waits.
    pub fn accept_offer(&self, destination: String, overwrite: bool) -> Result<(), WormholeError> {
        let offer = self.inner.pending_offer().ok_or_else(|| {
            WormholeError::from(wormhole_core::Error::InvalidState(
                "no offer is waiting".into(),
            ))
        })?;
        let dest = offer.destination(std::path::Path::new("."), Some(&PathBuf::from(destination)));
        Ok(self.inner.accept_offer(&dest, overwrite)?)
    }

    /// Delegated mode: rejects the waiting offer (the sender is told `transfer rejected`).
    pub fn reject_offer(&self) -> Result<(), WormholeError> {
        Ok(self.inner.reject_offer()?)
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
            opts.progress = options(&TransferSettings::default(), progress)?.progress;
        }
        let path = offer
            .accept(&PathBuf::from(destination), overwrite, &opts)
            .await?;
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
