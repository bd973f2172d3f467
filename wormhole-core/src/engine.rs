//! The tokio runtime that wormhole drivers run on.
//!
//! Every public `async fn` of this crate only waits on runtime-agnostic primitives, so it
//! can be polled by any executor (a test's `block_on`, Python's asyncio, uniffi's foreign
//! executors); the network work itself always runs on an [`Engine`].

use std::sync::Arc;
use std::time::Duration;

use once_cell::sync::OnceCell;
use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, Result};

struct Inner {
    runtime: Option<Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            if Handle::try_current().is_ok() {
                // Dropping a runtime inside async context panics; let it wind down alone.
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}

/// Owns a small multi-thread tokio runtime. Cheap to clone; the runtime shuts down when the
/// last clone (and every wormhole using it) is gone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

static GLOBAL: OnceCell<Engine> = OnceCell::new();

impl Engine {
    /// A new runtime with `worker_threads` workers (at least 1), threads named
    /// `wormhole-worker`.
    pub fn new(worker_threads: usize) -> Result<Engine> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("wormhole-worker")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
            }),
        })
    }

    /// The process-wide engine, created on first use (2 worker threads).
    pub fn global() -> Result<Engine> {
        GLOBAL.get_or_try_init(|| Engine::new(2)).cloned()
    }

    /// A handle for spawning onto this engine.
    pub fn handle(&self) -> Handle {
        // `runtime` is only taken in Drop.
        self.inner
            .runtime
            .as_ref()
            .map(|r| r.handle().clone())
            .expect("engine runtime present until drop")
    }

    /// Run a future to completion from synchronous code. Fails with
    /// [`Error::InvalidArgument`] when called from inside an async runtime, where blocking
    /// would deadlock.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output> {
        if Handle::try_current().is_ok() {
            return Err(Error::InvalidArgument(
                "a blocking call was made from inside an async runtime".into(),
            ));
        }
        Ok(self.handle().block_on(fut))
    }
}
