//! The glue every part of the module shares: the dispatcher thread (the only thread that
//! attaches to Python on behalf of the engine), results handed to Python, and blocking
//! waits that release the interpreter.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use wormhole_core::{Engine, Error, Result};

use crate::errors::to_pyerr;

// ---------------------------------------------------------------------------------------
// Dispatcher: the only thread that attaches to Python on behalf of the engine.

pub(crate) type Job = Box<dyn FnOnce(Python<'_>) + Send>;

pub(crate) static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Held by the dispatcher while it checks [`SHUTDOWN`] and runs a job, so `_shutdown()`
/// can wait until no job is attached.
pub(crate) static BUSY: Mutex<()> = Mutex::new(());
static DISPATCH: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

fn dispatcher() -> &'static mpsc::Sender<Job> {
    DISPATCH.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("wormhole-py-dispatch".into())
            .spawn(move || {
                for job in rx {
                    let _busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
                    if SHUTDOWN.load(Ordering::Acquire) {
                        // Never attach to a finalizing interpreter; the job's Python
                        // references are released by pyo3's deferred reference pool.
                        drop(job);
                        continue;
                    }
                    Python::attach(|py| {
                        // A panic in glue code must not kill the dispatcher.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(py)));
                    });
                }
            });
        if spawned.is_err() {
            // Without a dispatcher thread, jobs are dropped: callbacks never fire, but
            // nothing crashes. Thread creation failing means the process is in trouble.
        }
        tx
    })
}

pub(crate) fn dispatch(job: Job) {
    let _ = dispatcher().send(job);
}

/// Call `cb(error, value)` on the dispatcher thread; a Python exception is reported as
/// unraisable, never propagated into Rust.
pub(crate) fn complete(cb: Py<PyAny>, outcome: Result<Out>) {
    dispatch(Box::new(move |py| {
        let (err, val) = match outcome {
            Ok(v) => (py.None(), v.into_py(py)),
            Err(e) => (to_pyerr(e).into_value(py).into_any(), py.None()),
        };
        if let Err(e) = cb.call1(py, (err, val)) {
            e.write_unraisable(py, Some(cb.bind(py)));
        }
    }));
}

pub(crate) fn engine() -> PyResult<Engine> {
    Engine::global().map_err(to_pyerr)
}

// ---------------------------------------------------------------------------------------
// Values handed to Python.

/// Builds a Python object once attached (on the dispatcher thread).
pub(crate) type MakePy = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// A result value, converted to Python on the dispatcher thread.
pub(crate) enum Out {
    None,
    Str(String),
    Bytes(Vec<u8>),
    /// JSON text (welcome, versions); the Python side decodes it with `json.loads`.
    Json(String),
    /// A Python object built on the dispatcher thread (e.g. an `Offer`).
    Py(MakePy),
}

impl Out {
    pub(crate) fn into_py(self, py: Python<'_>) -> Py<PyAny> {
        match self {
            Out::None => py.None(),
            Out::Str(s) | Out::Json(s) => PyString::new(py, &s).into_any().unbind(),
            Out::Bytes(b) => PyBytes::new(py, &b).into_any().unbind(),
            Out::Py(make) => make(py).unwrap_or_else(|_| py.None()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operations that wait.

pub(crate) type BoxFut = Pin<Box<dyn Future<Output = Result<Out>> + Send>>;

pub(crate) fn secs(d: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    match d {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => Err(PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds"
        ))),
    }
}

/// Wait for `fut` on the engine without holding the interpreter: in slices of 50 ms,
/// checking signals between slices. On an exception (Ctrl-C) or the deadline, `on_abort`
/// runs and the error is returned.
pub(crate) fn block_on(
    py: Python<'_>,
    fut: BoxFut,
    timeout: Option<Duration>,
    on_abort: impl FnOnce(),
) -> PyResult<Out> {
    block_on_with(py, fut, timeout, on_abort, &mut |_| Ok(()), None)
}

/// [`block_on`], plus: `tick` runs attached between slices and once more after the
/// result arrived (to deliver progress on the calling thread; its error aborts like
/// Ctrl-C), and after an abort the operation gets up to `drain` to wind down (so a
/// cancelled transfer has removed its partial file when this returns).
pub(crate) fn block_on_with(
    py: Python<'_>,
    fut: BoxFut,
    timeout: Option<Duration>,
    on_abort: impl FnOnce(),
    tick: &mut dyn FnMut(Python<'_>) -> PyResult<()>,
    drain: Option<Duration>,
) -> PyResult<Out> {
    let (tx, rx) = mpsc::sync_channel::<Result<Out>>(1);
    engine()?.handle().spawn(async move {
        let _ = tx.send(fut.await);
    });
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut rx = Some(rx);
    let mut abort = Some(on_abort);
    let mut fail = |py: Python<'_>, rx: Option<mpsc::Receiver<Result<Out>>>, e: PyErr| {
        if let Some(f) = abort.take() {
            f();
        }
        if let (Some(d), Some(rx)) = (drain, rx) {
            py.detach(move || drop(rx.recv_timeout(d)));
        }
        Err(e)
    };
    loop {
        // The receiver moves into the detached closure and back (it is Send, not Sync).
        let (got, back) = py.detach(move || {
            let rx = rx.take();
            let got = match &rx {
                Some(r) => r.recv_timeout(Duration::from_millis(50)),
                None => Err(mpsc::RecvTimeoutError::Disconnected),
            };
            (got, rx)
        });
        rx = back;
        match got {
            Ok(r) => {
                tick(py)?;
                return r.map_err(to_pyerr);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(to_pyerr(Error::Internal(
                    "the operation was dropped".into(),
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    return fail(py, rx.take(), e);
                }
                if let Err(e) = tick(py) {
                    return fail(py, rx.take(), e);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let e = to_pyerr(Error::Timeout("the blocking call timed out"));
                    return fail(py, rx.take(), e);
                }
            }
        }
    }
}
