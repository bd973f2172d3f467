//! `wormhole._native`: the private pyo3 module under the Python package `wormhole`.
//!
//! It is a thin adapter over `wormhole_core`: type conversion, error mapping (once, in
//! `errors.rs`) and lifetime glue. The Python package turns its primitives into the
//! reference library's API (asyncio awaitables, Twisted Deferreds, delegates, blocking).
//!
//! Threads and the interpreter:
//! - Network work runs on core's process-wide [`Engine`]; no tokio worker ever attaches
//!   to Python.
//! - Completions and delegate events are handed to one dispatcher thread
//!   (`wormhole-py-dispatch`), which attaches, calls the Python callback in order, and
//!   detaches. The Python callbacks only schedule work onto the user's event loop or
//!   reactor (`call_soon_threadsafe`, `callFromThread`), so user code runs there.
//! - Blocking waits (`Wormhole.wait`) detach from the interpreter while they wait, in
//!   short slices, checking for signals (Ctrl-C) between slices.
//! - After `_shutdown()` (registered with `atexit` by the package) the dispatcher stops
//!   attaching, so nothing touches a finalizing interpreter.
//! - File transfers (`transfer.rs`) run core's pipeline threads, which never attach:
//!   progress is coalesced there and handed to the dispatcher (asynchronous mode) or
//!   picked up by the blocked caller between its wait slices (blocking mode).

mod dilation;
mod errors;
mod glue;
mod tor;
mod transfer;
mod wormhole;

use std::sync::atomic::Ordering;

use pyo3::prelude::*;

/// Stop attaching to the interpreter (registered with `atexit`). Returns once the
/// dispatcher is not running a job, so no library thread is attached when the
/// interpreter finalizes (a thread attached then would be terminated mid-call).
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    glue::SHUTDOWN.store(true, Ordering::Release);
    py.detach(|| drop(glue::BUSY.lock().unwrap_or_else(|p| p.into_inner())));
}

/// The core library version.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    wormhole::register(m)?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    transfer::register(m)?;
    dilation::register(m)?;
    tor::register(m)?;
    m.add("CORE_VERSION", wormhole_core::VERSION)?;
    m.add("PUBLIC_RELAY_URL", wormhole_core::PUBLIC_RELAY_URL)?;
    m.add("TRANSFER_APPID", wormhole_core::TRANSFER_APPID)?;
    errors::register(m)?;
    Ok(())
}
