//! How a transfer runs: [`TransferOptions`], its callbacks and its [`CancelToken`].

use std::sync::Arc;

use tokio::sync::watch;

use super::machine::{self, TransferEvent};
use crate::transit::TransitConfig;

/// Progress callback: `(bytes done, bytes total)`, at most once per
/// [`machine::PROGRESS_INTERVAL`] plus the last. Called from a transfer thread; keep it
/// cheap.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Event callback, see [`TransferEvent`] (every event of the transfer but progress, which
/// goes to [`ProgressFn`]). Called from a library thread or task.
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
    /// At most one progress report per this interval, plus the last
    /// ([`machine::PROGRESS_INTERVAL`], 100 ms).
    pub progress_interval: std::time::Duration,
    /// Receiver: when the sender can resume (it advertised
    /// [`RESUME_VERSION_KEY`](super::machine::RESUME_VERSION_KEY)), keep the data of a cut
    /// transfer in a hidden partial file next to the destination
    /// (`.NAME.SIZE.wormhole-partial`), and continue from it when the same name and size are
    /// offered again. Off by default: a receiver then leaves nothing behind.
    pub resume: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            transit: TransitConfig::default(),
            progress: None,
            cancel: CancelToken::new(),
            events: None,
            record_size: DEFAULT_RECORD_SIZE,
            progress_interval: machine::PROGRESS_INTERVAL,
            resume: false,
        }
    }
}

impl std::fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("transit", &self.transit)
            .field("record_size", &self.record_size)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}
