//! The wormhole object (`wormhole._native.Wormhole`), its input helper, and `create()`.
//! Only conversion and lifetime glue: every event, state and timer is core's.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use wormhole_core::transfer::{OfferKind, TransferEvent};
use wormhole_core::{Event, InputHelper as CoreInputHelper, Options};

use crate::errors::to_pyerr;
use crate::glue::{BoxFut, Out, block_on, complete, dispatch, engine, secs};

/// An outcome as Python sees it: the value, or the exception instance.
fn outcome<T>(py: Python<'_>, r: wormhole_core::Result<T>, ok: impl FnOnce(T) -> Out) -> Py<PyAny> {
    match r {
        Ok(v) => ok(v).into_py(py),
        Err(e) => to_pyerr(e).into_value(py).into_any(),
    }
}

/// One core event as `(name, value)` for the Python side's `on_event`; `None` for core
/// events Python does not deliver.
fn event_to_py(py: Python<'_>, ev: Event) -> Option<(&'static str, Py<PyAny>)> {
    let json = |v: String| Out::Json(v).into_py(py);
    Some(match ev {
        Event::Welcome(w) => ("welcome", json(serde_json::Value::Object(w).to_string())),
        Event::Code(c) => ("code", Out::Str(c).into_py(py)),
        Event::UnverifiedKey(k) => ("unverified_key", Out::Bytes(k.0.to_vec()).into_py(py)),
        Event::Verifier(v) => ("verifier", Out::Bytes(v.to_vec()).into_py(py)),
        Event::Versions(v) => ("versions", json(v.to_string())),
        Event::Message(m) => ("message", Out::Bytes(m).into_py(py)),
        Event::WordlistAvailable => ("wordlist_available", py.None()),
        Event::Closed(r) => ("closed", outcome(py, r, |()| Out::Str("happy".into()))),
        Event::Transfer(t) => match t {
            TransferEvent::Offer(o) => {
                let d = PyDict::new(py);
                let (kind, numbytes, numfiles) = match o.kind {
                    OfferKind::File => ("file", o.size, 1),
                    OfferKind::Directory { numbytes, numfiles } => {
                        ("directory", numbytes, numfiles)
                    }
                };
                let _ = d.set_item("kind", kind);
                let _ = d.set_item("name", o.name);
                let _ = d.set_item("size", o.size);
                let _ = d.set_item("numbytes", numbytes);
                let _ = d.set_item("numfiles", numfiles);
                ("offer", d.into_any().unbind())
            }
            TransferEvent::Progress { done, total } => (
                "transfer_progress",
                PyTuple::new(py, [done, total])
                    .map(|t| t.into_any().unbind())
                    .unwrap_or_else(|_| py.None()),
            ),
            TransferEvent::TextSent(r) => ("text_sent", outcome(py, r, |()| Out::None)),
            TransferEvent::TextReceived(r) => ("text_received", outcome(py, r, Out::Str)),
            TransferEvent::FileSent(r) => ("file_sent", outcome(py, r, |()| Out::None)),
            TransferEvent::FileReceived(r) => (
                "file_received",
                outcome(py, r, |p| Out::Str(p.to_string_lossy().into_owned())),
            ),
            _ => return None,
        },
        _ => return None,
    })
}

/// One wormhole (`wormhole.create()` wraps it).
///
/// Pending operations and input helpers hold their own core handles, so the wormhole
/// lives while any of them does; once this object and all of those are gone, core
/// cancels it (the nameplate and mailbox are released in the background).
#[pyclass(module = "wormhole._native", name = "Wormhole", frozen)]
pub(crate) struct Wormhole {
    pub(crate) inner: wormhole_core::Wormhole,
    /// Delegated mode: counts the events the Python side handed to the application.
    taken: Option<wormhole_core::Taken>,
}

/// A hold on a wormhole's outbound frames (`Wormhole.hold_outbound()`), for the journal.
#[pyclass(module = "wormhole._native", name = "OutboundHold")]
pub(crate) struct OutboundHold {
    inner: Option<wormhole_core::OutboundHold>,
}

#[pymethods]
impl OutboundHold {
    /// Release the held frames (once; later calls do nothing).
    fn release(&mut self) {
        if let Some(h) = self.inner.take() {
            h.release();
        }
    }
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
            "message" => {
                let next = w.get_message();
                Box::pin(async move { next.await.map(Out::Bytes) })
            }
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
}

#[pymethods]
impl Wormhole {
    /// Start operation `op` ("welcome", "code", "unverified_key", "verifier", "versions",
    /// "message", "close", "send_text", "receive_text") and call `callback(error, value)`
    /// on the dispatcher thread when it completes. Returns at once.
    #[pyo3(signature = (op, callback, arg=None))]
    fn start(&self, op: &str, callback: Py<PyAny>, arg: Option<String>) -> PyResult<()> {
        // Built now, so a `get_message` takes its turn in call order (core serves turns in
        // order and results reach the dispatcher in that order).
        let fut = self.op(op, arg)?;
        engine()?
            .handle()
            .spawn(async move { complete(callback, fut.await) });
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
        let fut = self.op(op, arg)?;
        let w = self.inner.clone();
        block_on(py, fut, timeout, move || w.cancel()).map(|o| o.into_py(py))
    }

    /// Delegated mode: the Python side handed the next event to the application (it
    /// counts as taken for `serialize`).
    fn took_event(&self) {
        if let Some(t) = &self.taken {
            t.one();
        }
    }

    /// Save the wormhole as a JSON string (see `wormhole_core::Wormhole::serialize`):
    /// blocking, without holding the interpreter. It holds secrets.
    fn serialize(&self, py: Python<'_>) -> PyResult<String> {
        let w = self.inner.clone();
        let fut: BoxFut = Box::pin(async move { w.serialize().await.map(Out::Str) });
        match block_on(py, fut, Some(std::time::Duration::from_secs(30)), || {})? {
            Out::Str(s) => Ok(s),
            _ => Err(PyValueError::new_err("serialize returned no string")),
        }
    }

    /// `serialize`, then stop without a word to the server (see
    /// `wormhole_core::Wormhole::suspend`): blocking, without holding the interpreter.
    fn suspend(&self, py: Python<'_>) -> PyResult<String> {
        let w = self.inner.clone();
        let fut: BoxFut = Box::pin(async move { w.suspend().await.map(Out::Str) });
        match block_on(py, fut, Some(std::time::Duration::from_secs(30)), || {})? {
            Out::Str(s) => Ok(s),
            _ => Err(PyValueError::new_err("suspend returned no string")),
        }
    }

    /// Hold every outbound frame until the returned hold is released (journaled mode).
    fn hold_outbound(&self) -> OutboundHold {
        OutboundHold {
            inner: Some(self.inner.hold_outbound()),
        }
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

    /// Start closing without waiting (delegated mode: the outcome is the `closed` event).
    fn begin_close(&self) {
        self.inner.begin_close();
    }

    /// Start sending a text; the outcome is the `text_sent` event.
    fn start_send_text(&self, text: &str) -> PyResult<()> {
        self.inner.start_send_text(text).map_err(to_pyerr)
    }

    /// Start waiting for a text; the outcome is the `text_received` event.
    fn start_receive_text(&self) -> PyResult<()> {
        self.inner.start_receive_text().map_err(to_pyerr)
    }

    /// Accept the waiting offer into `dest` (an existing directory: inside it, under the
    /// offered name); the outcome is the `file_received` event.
    #[pyo3(signature = (dest, overwrite=false))]
    fn accept_offer(&self, dest: std::path::PathBuf, overwrite: bool) -> PyResult<()> {
        let offer = self.inner.pending_offer().ok_or_else(|| {
            to_pyerr(wormhole_core::Error::InvalidState(
                "no offer is waiting".into(),
            ))
        })?;
        let dest = offer.destination(std::path::Path::new("."), Some(&dest));
        self.inner.accept_offer(&dest, overwrite).map_err(to_pyerr)
    }

    /// Reject the waiting offer (the sender is told `transfer rejected`).
    fn reject_offer(&self) -> PyResult<()> {
        self.inner.reject_offer().map_err(to_pyerr)
    }

    /// Cancel the running transfer, if any.
    fn cancel_transfer(&self) {
        self.inner.cancel_transfer();
    }

    /// Dilate (see `wormhole_core::Wormhole::dilate`): `relay` is `tcp:HOST:PORT`,
    /// `ping_interval` seconds, `side` 16 hex digits (tests choose the role with it).
    #[pyo3(signature = (relay=None, no_listen=false, ping_interval=None, side=None))]
    fn dilate(
        &self,
        relay: Option<String>,
        no_listen: bool,
        ping_interval: Option<f64>,
        side: Option<String>,
    ) -> PyResult<crate::dilation::Dilated> {
        let mut options = wormhole_core::dilation::handle::DilationOptions {
            relay,
            no_listen,
            side,
            ..Default::default()
        };
        if let Some(p) = secs(ping_interval, "ping_interval")? {
            if p.is_zero() {
                return Err(PyValueError::new_err("ping_interval must be positive"));
            }
            options.ping_interval = p;
        }
        self.inner
            .dilate(options)
            .map(crate::dilation::Dilated::new)
            .map_err(to_pyerr)
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
/// is passed to `on_event(name, value)` on the dispatcher thread, in order. `socks5`:
/// every connection through that SOCKS5 proxy (`[USER:PASSWORD@]HOST:PORT`).
#[pyfunction]
#[pyo3(signature = (appid, relay_url, versions_json=None, on_event=None, connect_timeout=None, close_timeout=None, socks5=None, tor=None, dilation=false))]
#[allow(clippy::too_many_arguments)]
fn create(
    appid: &str,
    relay_url: &str,
    versions_json: Option<&str>,
    on_event: Option<Py<PyAny>>,
    connect_timeout: Option<f64>,
    close_timeout: Option<f64>,
    socks5: Option<&str>,
    tor: Option<PyRef<'_, crate::tor::Tor>>,
    dilation: bool,
) -> PyResult<Wormhole> {
    let mut options = Options {
        tor: tor.map(|t| t.inner.clone()),
        dilation,
        ..Options::default()
    };
    if let Some(p) = socks5 {
        options.proxy = Some(wormhole_core::proxy::Socks5::parse(p).map_err(to_pyerr)?);
    }
    if let Some(v) = versions_json {
        options.app_versions = Options::parse_app_versions(v).map_err(to_pyerr)?;
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
            Ok(Wormhole { inner, taken: None })
        }
        Some(cb) => {
            let started = wormhole_core::Wormhole::create_delegated(appid, relay_url, options);
            delegated(started, cb)
        }
    }
}

/// A delegated wormhole whose events go to `cb(name, value)` on the dispatcher thread.
/// An event counts as taken when the Python side says so (`took_event`), or at once if it
/// is one Python does not deliver.
fn delegated(
    started: wormhole_core::Result<(wormhole_core::Wormhole, wormhole_core::Events)>,
    cb: Py<PyAny>,
) -> PyResult<Wormhole> {
    let (inner, mut events) = started.map_err(to_pyerr)?;
    let taken = events.deferred_taking();
    // Shared by reference count so this engine task never attaches to Python.
    let cb = Arc::new(cb);
    let t = taken.clone();
    engine()?.handle().spawn(async move {
        while let Some(ev) = events.recv().await {
            let (cb, t) = (cb.clone(), t.clone());
            dispatch(Box::new(move |py| {
                let Some((name, value)) = event_to_py(py, ev) else {
                    t.one();
                    return;
                };
                if let Err(e) = cb.call1(py, (name, value)) {
                    e.write_unraisable(py, Some(cb.bind(py)));
                }
            }));
        }
    });
    Ok(Wormhole {
        inner,
        taken: Some(taken),
    })
}

/// Continue a wormhole saved with `Wormhole.serialize()`, delegated: events go to
/// `on_event(name, value)` as with `create`. Options as for `create` (the app id,
/// versions and server come from `data`).
#[pyfunction]
#[pyo3(signature = (data, on_event, connect_timeout=None, close_timeout=None, socks5=None, tor=None))]
fn from_serialized(
    data: &str,
    on_event: Py<PyAny>,
    connect_timeout: Option<f64>,
    close_timeout: Option<f64>,
    socks5: Option<&str>,
    tor: Option<PyRef<'_, crate::tor::Tor>>,
) -> PyResult<Wormhole> {
    let mut options = Options {
        tor: tor.map(|t| t.inner.clone()),
        ..Options::default()
    };
    if let Some(p) = socks5 {
        options.proxy = Some(wormhole_core::proxy::Socks5::parse(p).map_err(to_pyerr)?);
    }
    if let Some(t) = secs(connect_timeout, "connect_timeout")? {
        options.connect_timeout = t;
    }
    if let Some(t) = secs(close_timeout, "close_timeout")? {
        options.close_timeout = t;
    }
    delegated(
        wormhole_core::Wormhole::from_serialized(data, options),
        on_event,
    )
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Wormhole>()?;
    m.add_class::<InputHelper>()?;
    m.add_class::<OutboundHold>()?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(from_serialized, m)?)?;
    Ok(())
}
