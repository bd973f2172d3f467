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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use wormhole_core::{Engine, Error, Event, InputHelper as CoreInputHelper, Options, Result};

mod errors;
mod transfer;

use errors::to_pyerr;

// ---------------------------------------------------------------------------------------
// Dispatcher: the only thread that attaches to Python on behalf of the engine.

pub(crate) type Job = Box<dyn FnOnce(Python<'_>) + Send>;

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Held by the dispatcher while it checks [`SHUTDOWN`] and runs a job, so `_shutdown()`
/// can wait until no job is attached.
static BUSY: Mutex<()> = Mutex::new(());
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

/// A result value, converted to Python on the dispatcher thread.
pub(crate) enum Out {
    None,
    Str(String),
    Bytes(Vec<u8>),
    /// JSON text (welcome, versions); the Python side decodes it with `json.loads`.
    Json(String),
    /// A file or directory offer (`wormhole._native.Offer`).
    Offer(Box<wormhole_core::transfer::IncomingOffer>),
}

impl Out {
    fn into_py(self, py: Python<'_>) -> Py<PyAny> {
        match self {
            Out::None => py.None(),
            Out::Str(s) | Out::Json(s) => PyString::new(py, &s).into_any().unbind(),
            Out::Bytes(b) => PyBytes::new(py, &b).into_any().unbind(),
            Out::Offer(o) => match Py::new(py, transfer::Offer::new(*o)) {
                Ok(p) => p.into_any(),
                Err(_) => py.None(),
            },
        }
    }
}

fn event_to_py(py: Python<'_>, ev: Event) -> (&'static str, Py<PyAny>) {
    match ev {
        Event::Welcome(w) => (
            "welcome",
            Out::Json(serde_json::Value::Object(w).to_string()).into_py(py),
        ),
        Event::Code(c) => ("code", Out::Str(c).into_py(py)),
        Event::UnverifiedKey(k) => ("unverified_key", Out::Bytes(k.0.to_vec()).into_py(py)),
        Event::Verifier(v) => ("verifier", Out::Bytes(v.to_vec()).into_py(py)),
        Event::Versions(v) => ("versions", Out::Json(v.to_string()).into_py(py)),
        Event::Message(m) => ("message", Out::Bytes(m).into_py(py)),
        Event::Closed(Ok(())) => ("closed", Out::Str("happy".into()).into_py(py)),
        Event::Closed(Err(e)) => ("closed", to_pyerr(e).into_value(py).into_any()),
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
fn block_on(
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

/// One wormhole (`wormhole.create()` wraps it).
///
/// Pending operations and input helpers hold their own core handles, so the wormhole
/// lives while any of them does; once this object and all of those are gone, core
/// cancels it (the nameplate and mailbox are released in the background).
#[pyclass(module = "wormhole._native", name = "Wormhole", frozen)]
pub(crate) struct Wormhole {
    pub(crate) inner: wormhole_core::Wormhole,
    /// The turn of the last operation that consumes peer messages: each such operation
    /// waits for the previous one (taken at call time), so concurrent `get_message()`
    /// calls resolve, and are delivered, in call order.
    last_turn: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Wormhole {
    fn op(&self, op: &str, arg: Option<String>) -> PyResult<BoxFut> {
        let w = self.inner.clone();
        let fut: BoxFut = match op {
            "welcome" => Box::pin(async move {
                w.get_welcome()
                    .await
                    .map(|m| Out::Json(serde_json::Value::Object(m).to_string()))
            }),
            "code" => Box::pin(async move { w.get_code().await.map(Out::Str) }),
            "unverified_key" => Box::pin(async move {
                w.get_unverified_key()
                    .await
                    .map(|k| Out::Bytes(k.0.to_vec()))
            }),
            "verifier" => {
                Box::pin(async move { w.get_verifier().await.map(|v| Out::Bytes(v.to_vec())) })
            }
            "versions" => {
                Box::pin(async move { w.get_versions().await.map(|v| Out::Json(v.to_string())) })
            }
            "message" => Box::pin(async move { w.get_message().await.map(Out::Bytes) }),
            "close" => Box::pin(async move { w.close().await.map(|()| Out::Str("happy".into())) }),
            "send_text" => {
                let text = arg.ok_or_else(|| PyValueError::new_err("send_text needs a text"))?;
                Box::pin(async move {
                    wormhole_core::text::send_text(&w, &text)
                        .await
                        .map(|()| Out::None)
                })
            }
            "receive_text" => {
                Box::pin(async move { wormhole_core::text::receive_text(&w).await.map(Out::Str) })
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown operation {other:?}"
                )));
            }
        };
        Ok(fut)
    }

    /// For operations that consume peer messages: the previous such operation's turn
    /// (to wait for) and this one's (dropped once its result is delivered).
    pub(crate) fn take_turn(
        &self,
        op: &str,
    ) -> Option<(Option<oneshot::Receiver<()>>, oneshot::Sender<()>)> {
        if !matches!(op, "message" | "send_text" | "receive_text") {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let prev = self
            .last_turn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(rx);
        Some((prev, tx))
    }
}

/// Wait for the previous turn (if any); returns this operation's turn to hold.
pub(crate) async fn wait_turn(
    turn: Option<(Option<oneshot::Receiver<()>>, oneshot::Sender<()>)>,
) -> Option<oneshot::Sender<()>> {
    let (prev, mine) = turn?;
    if let Some(prev) = prev {
        // Err only means the previous operation is gone: our turn either way.
        let _ = prev.await;
    }
    Some(mine)
}

#[pymethods]
impl Wormhole {
    /// Start operation `op` ("welcome", "code", "unverified_key", "verifier", "versions",
    /// "message", "close", "send_text", "receive_text") and call `callback(error, value)`
    /// on the dispatcher thread when it completes. Returns at once.
    #[pyo3(signature = (op, callback, arg=None))]
    fn start(&self, op: &str, callback: Py<PyAny>, arg: Option<String>) -> PyResult<()> {
        let fut = self.op(op, arg)?;
        let turn = self.take_turn(op);
        engine()?.handle().spawn(async move {
            let mine = wait_turn(turn).await;
            complete(callback, fut.await);
            // Released after the result is queued for the dispatcher, so results are
            // delivered in call order too.
            drop(mine);
        });
        Ok(())
    }

    /// Run operation `op` to completion, blocking the calling thread without holding the
    /// interpreter. Ctrl-C (or the timeout, in seconds) cancels the wormhole and raises.
    #[pyo3(signature = (op, arg=None, timeout=None))]
    fn wait(
        &self,
        py: Python<'_>,
        op: &str,
        arg: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let timeout = secs(timeout, "timeout")?;
        let inner = self.op(op, arg)?;
        let turn = self.take_turn(op);
        let fut: BoxFut = Box::pin(async move {
            let _mine = wait_turn(turn).await;
            inner.await
        });
        let w = self.inner.clone();
        block_on(py, fut, timeout, move || w.cancel()).map(|o| o.into_py(py))
    }

    /// Allocate a nameplate and generate a code of `length` words.
    #[pyo3(signature = (length=2))]
    fn allocate_code(&self, length: usize) -> PyResult<()> {
        self.inner.allocate_code(length).map_err(to_pyerr)
    }

    /// Use a complete code.
    fn set_code(&self, code: &str) -> PyResult<()> {
        self.inner.set_code(code).map_err(to_pyerr)
    }

    /// Start interactive code entry.
    fn input_code(&self) -> PyResult<InputHelper> {
        self.inner
            .input_code()
            .map(|inner| InputHelper { inner })
            .map_err(to_pyerr)
    }

    /// Queue a message for the peer.
    fn send_message(&self, msg: &[u8]) -> PyResult<()> {
        self.inner.send_message(msg.to_vec()).map_err(to_pyerr)
    }

    /// Derive an application key from the session key.
    fn derive_key<'py>(
        &self,
        py: Python<'py>,
        purpose: &str,
        length: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let key = self.inner.derive_key(purpose, length).map_err(to_pyerr)?;
        Ok(PyBytes::new(py, &key))
    }

    /// Cancel without waiting.
    fn cancel(&self) {
        self.inner.cancel();
    }
}

/// The code-entry helper of `input_code()`.
#[pyclass(module = "wormhole._native", name = "InputHelper", frozen)]
struct InputHelper {
    inner: CoreInputHelper,
}

#[pymethods]
impl InputHelper {
    /// Ask the server for the current nameplates.
    fn refresh_nameplates(&self) -> PyResult<()> {
        self.inner.refresh_nameplates().map_err(to_pyerr)
    }

    /// Known nameplates starting with `prefix`, each followed by `-`.
    fn get_nameplate_completions(&self, prefix: &str) -> PyResult<Vec<String>> {
        self.inner
            .get_nameplate_completions(prefix)
            .map(|s| s.into_iter().collect())
            .map_err(to_pyerr)
    }

    /// Commit and claim the nameplate.
    fn choose_nameplate(&self, nameplate: &str) -> PyResult<()> {
        self.inner.choose_nameplate(nameplate).map_err(to_pyerr)
    }

    /// Completions of the words typed so far.
    fn get_word_completions(&self, prefix: &str) -> PyResult<Vec<String>> {
        self.inner
            .get_word_completions(prefix)
            .map(|s| s.into_iter().collect())
            .map_err(to_pyerr)
    }

    /// Commit the words.
    fn choose_words(&self, words: &str) -> PyResult<()> {
        self.inner.choose_words(words).map_err(to_pyerr)
    }

    /// Call `callback(error, None)` once the wordlist is available.
    fn start_wordlist(&self, callback: Py<PyAny>) -> PyResult<()> {
        let h = self.inner.clone();
        engine()?.handle().spawn(async move {
            let r = h.when_wordlist_is_available().await.map(|()| Out::None);
            complete(callback, r);
        });
        Ok(())
    }

    /// Block (detached, interruptible) until the wordlist is available.
    #[pyo3(signature = (timeout=None))]
    fn wait_wordlist(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = secs(timeout, "timeout")?;
        let h = self.inner.clone();
        let fut: BoxFut =
            Box::pin(async move { h.when_wordlist_is_available().await.map(|()| Out::None) });
        block_on(py, fut, timeout, || {}).map(|_| ())
    }
}

/// Create a wormhole and start connecting. With `on_event`, it is delegated: every event
/// is passed to `on_event(name, value)` on the dispatcher thread, in order.
#[pyfunction]
#[pyo3(signature = (appid, relay_url, versions_json=None, on_event=None, connect_timeout=None, close_timeout=None))]
fn create(
    appid: &str,
    relay_url: &str,
    versions_json: Option<&str>,
    on_event: Option<Py<PyAny>>,
    connect_timeout: Option<f64>,
    close_timeout: Option<f64>,
) -> PyResult<Wormhole> {
    let mut options = Options::default();
    if let Some(v) = versions_json {
        options.app_versions = serde_json::from_str(v)
            .map_err(|e| PyValueError::new_err(format!("versions is not valid JSON: {e}")))?;
    }
    if let Some(t) = secs(connect_timeout, "connect_timeout")? {
        options.connect_timeout = t;
    }
    if let Some(t) = secs(close_timeout, "close_timeout")? {
        options.close_timeout = t;
    }
    match on_event {
        None => {
            let inner =
                wormhole_core::Wormhole::create(appid, relay_url, options).map_err(to_pyerr)?;
            Ok(Wormhole {
                inner,
                last_turn: Mutex::new(None),
            })
        }
        Some(cb) => {
            let (inner, mut events) =
                wormhole_core::Wormhole::create_delegated(appid, relay_url, options)
                    .map_err(to_pyerr)?;
            // Shared by reference count so this engine task never attaches to Python.
            let cb = Arc::new(cb);
            engine()?.handle().spawn(async move {
                while let Some(ev) = events.recv().await {
                    let cb = cb.clone();
                    dispatch(Box::new(move |py| {
                        let (name, value) = event_to_py(py, ev);
                        if let Err(e) = cb.call1(py, (name, value)) {
                            e.write_unraisable(py, Some(cb.bind(py)));
                        }
                    }));
                }
            });
            Ok(Wormhole {
                inner,
                last_turn: Mutex::new(None),
            })
        }
    }
}

/// Stop attaching to the interpreter (registered with `atexit`). Returns once the
/// dispatcher is not running a job, so no library thread is attached when the
/// interpreter finalizes (a thread attached then would be terminated mid-call).
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    SHUTDOWN.store(true, Ordering::Release);
    py.detach(|| drop(BUSY.lock().unwrap_or_else(|p| p.into_inner())));
}

/// The core library version.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Wormhole>()?;
    m.add_class::<InputHelper>()?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    transfer::register(m)?;
    m.add("CORE_VERSION", wormhole_core::VERSION)?;
    m.add("PUBLIC_RELAY_URL", wormhole_core::PUBLIC_RELAY_URL)?;
    m.add("TRANSFER_APPID", wormhole_core::TRANSFER_APPID)?;
    errors::register(m)?;
    Ok(())
}
