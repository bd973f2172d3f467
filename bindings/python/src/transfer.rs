//! File transfer (PROTOCOL §8 over Transit): `wormhole_core::transfer` for Python.
//!
//! A [`Transfer`] holds one operation's options: the Transit settings, the cancel token
//! and the progress callback. Core reports progress on a transfer thread, already
//! throttled (every 50 ms here, plus the last report); it is never handed to Python from
//! there. In asynchronous mode each report is passed to the Python callback on the
//! dispatcher thread (always before the operation's result); in blocking mode the waiting
//! thread itself calls the callback with the latest report between its wait slices.
//!
//! On a delegated wormhole, `start_send_file` / `start_receive_file` start core's transfer
//! and its events (offer, progress, outcome) arrive with the wormhole's other events.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use wormhole_core::transfer::{self, CancelToken, IncomingOffer, OfferKind, TransferOptions};
use wormhole_core::transit::TransitConfig;
use wormhole_core::{Error, Result};

use crate::errors::to_pyerr;
use crate::glue::{BoxFut, Out, block_on_with, complete, dispatch, engine, secs};
use crate::wormhole::Wormhole;

/// Core's progress interval for Python transfers.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);
/// How long a blocking call waits for an aborted transfer to remove its partial file.
const DRAIN: Duration = Duration::from_secs(5);

/// Blocking mode's progress: the latest report, and the last one handed to Python.
type Reports = (Option<(u64, u64)>, Option<(u64, u64)>);

/// Options of one transfer operation (`wormhole._native.Transfer`).
#[pyclass(module = "wormhole._native", name = "Transfer", frozen)]
pub(crate) struct Transfer {
    opts: TransferOptions,
    progress: Option<Arc<Py<PyAny>>>,
    /// Blocking mode: the latest report, and the last one handed to Python.
    latest: Arc<Mutex<Reports>>,
}

impl Transfer {
    /// Call the progress callback with the latest report, if it changed (blocking mode,
    /// on the waiting thread).
    fn deliver_here(&self, py: Python<'_>) -> PyResult<()> {
        let Some(cb) = &self.progress else {
            return Ok(());
        };
        let report = {
            let mut st = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            match st.0 {
                Some(r) if st.1 != Some(r) => {
                    st.1 = Some(r);
                    r
                }
                _ => return Ok(()),
            }
        };
        cb.call1(py, report).map(|_| ())
    }
}

#[pymethods]
impl Transfer {
    /// Options for one send, receive or accept. `progress(done, total)` is called on the
    /// dispatcher thread (or, with `blocking`, on the thread of the blocking call);
    /// `transit_helper` is a relay such as `"tcp:HOST:PORT"`; `no_listen` opens no
    /// listening socket for direct connections.
    #[new]
    #[pyo3(signature = (progress=None, transit_helper=None, no_listen=false, blocking=false))]
    fn new(
        progress: Option<Py<PyAny>>,
        transit_helper: Option<&str>,
        no_listen: bool,
        blocking: bool,
    ) -> PyResult<Transfer> {
        let transit =
            TransitConfig::with_relay(transit_helper.filter(|h| !h.is_empty()), !no_listen)
                .map_err(to_pyerr)?;
        let mut opts = TransferOptions {
            transit,
            cancel: CancelToken::new(),
            progress_interval: PROGRESS_INTERVAL,
            ..TransferOptions::default()
        };
        let latest = Arc::new(Mutex::new((None, None)));
        let progress = progress.map(Arc::new);
        if let Some(cb) = &progress {
            let (st, cb) = (latest.clone(), cb.clone());
            opts.progress = Some(Arc::new(move |done, total| {
                if blocking {
                    st.lock().unwrap_or_else(|p| p.into_inner()).0 = Some((done, total));
                    return;
                }
                let cb = cb.clone();
                dispatch(Box::new(move |py| {
                    if let Err(e) = cb.call1(py, (done, total)) {
                        e.write_unraisable(py, Some(cb.bind(py)));
                    }
                }));
            }));
        }
        Ok(Transfer {
            opts,
            progress,
            latest,
        })
    }

    /// Cancel the operation: it fails with `WormholeCancelled`, the Transit connection
    /// is closed, and a partially received file is removed.
    fn cancel(&self) {
        self.opts.cancel.cancel();
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.opts.cancel.is_cancelled()
    }
}

/// A file or directory offer received by `receive()` (`wormhole._native.Offer`).
#[pyclass(module = "wormhole._native", name = "Offer", frozen)]
pub(crate) struct Offer {
    inner: Mutex<Option<IncomingOffer>>,
    name: String,
    size: u64,
    kind: OfferKind,
}

impl Offer {
    pub(crate) fn new(o: IncomingOffer) -> Offer {
        Offer {
            name: o.name().to_owned(),
            size: o.transfer_size(),
            kind: o.kind().clone(),
            inner: Mutex::new(Some(o)),
        }
    }

    fn take(&self) -> PyResult<IncomingOffer> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                to_pyerr(Error::InvalidArgument(
                    "this offer was already accepted or rejected".into(),
                ))
            })
    }

    fn accept_fut(&self, dest: PathBuf, overwrite: bool, t: &Transfer) -> PyResult<BoxFut> {
        let offer = self.take()?;
        let opts = t.opts.clone();
        Ok(Box::pin(async move {
            let dest = offer.destination(std::path::Path::new("."), Some(&dest));
            offer
                .accept(&dest, overwrite, &opts)
                .await
                .map(|p| Out::Str(p.to_string_lossy().into_owned()))
        }))
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        // An offer dropped undecided is refused, so the sender does not wait forever.
        if let Some(o) = self.inner.get_mut().ok().and_then(Option::take) {
            let _ = o.reject();
        }
    }
}

#[pymethods]
impl Offer {
    /// The offered base name (file or directory name).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Bytes that travel: the file size, or the zip size of a directory.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// `"file"` or `"directory"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.kind {
            OfferKind::File => "file",
            _ => "directory",
        }
    }

    /// For a directory: the sum of its files' sizes; for a file: its size.
    #[getter]
    fn numbytes(&self) -> u64 {
        match self.kind {
            OfferKind::Directory { numbytes, .. } => numbytes,
            _ => self.size,
        }
    }

    /// For a directory: the number of files; for a file: 1.
    #[getter]
    fn numfiles(&self) -> u64 {
        match self.kind {
            OfferKind::Directory { numfiles, .. } => numfiles,
            _ => 1,
        }
    }

    /// Where `accept(dest)` writes: inside `dest` if it is a directory, else `dest`.
    fn destination(&self, dest: PathBuf) -> PyResult<String> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let o = guard.as_ref().ok_or_else(|| {
            to_pyerr(Error::InvalidArgument(
                "this offer was already accepted or rejected".into(),
            ))
        })?;
        Ok(o.destination(std::path::Path::new("."), Some(&dest))
            .to_string_lossy()
            .into_owned())
    }

    /// Refuse the offer: the sender fails with `TransferError`.
    fn reject(&self) -> PyResult<()> {
        self.take()?.reject().map_err(to_pyerr)
    }

    /// Accept into `dest` (see `destination`) and call `callback(error, path)` on the
    /// dispatcher thread once every byte arrived and was acknowledged.
    fn start_accept(
        &self,
        dest: PathBuf,
        overwrite: bool,
        transfer: &Transfer,
        callback: Py<PyAny>,
    ) -> PyResult<()> {
        let fut = self.accept_fut(dest, overwrite, transfer)?;
        engine()?
            .handle()
            .spawn(async move { complete(callback, fut.await) });
        Ok(())
    }

    /// Accept into `dest`, blocking without holding the interpreter; returns the path.
    /// Ctrl-C, an exception from the progress callback or the timeout cancel it.
    #[pyo3(signature = (dest, overwrite, transfer, timeout=None))]
    fn wait_accept(
        &self,
        py: Python<'_>,
        dest: PathBuf,
        overwrite: bool,
        transfer: &Transfer,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let timeout = secs(timeout, "timeout")?;
        let fut = self.accept_fut(dest, overwrite, transfer)?;
        let token = transfer.opts.cancel.clone();
        block_on_with(
            py,
            fut,
            timeout,
            move || token.cancel(),
            &mut |py| transfer.deliver_here(py),
            Some(DRAIN),
        )
        .map(|o| o.into_py(py))
    }
}

fn send_fut(w: &Wormhole, path: PathBuf, t: &Transfer) -> BoxFut {
    let (w, opts) = (w.inner.clone(), t.opts.clone());
    Box::pin(async move {
        transfer::send_path(&w, &path, &opts)
            .await
            .map(|()| Out::None)
    })
}

fn receive_fut(w: &Wormhole, t: &Transfer) -> BoxFut {
    let (w, opts) = (w.inner.clone(), t.opts.clone());
    Box::pin(async move {
        let r: Result<transfer::Received> = transfer::receive(&w, &opts).await;
        r.map(|r| match r {
            transfer::Received::Text(t) => Out::Str(t),
            transfer::Received::Offer(o) => {
                let offer = Offer::new(o);
                Out::Py(Box::new(move |py| Ok(Py::new(py, offer)?.into_any())))
            }
        })
    })
}

/// Send the file or directory at `path` and call `callback(error, None)` on the
/// dispatcher thread once the receiver acknowledged every byte.
#[pyfunction]
fn start_send(
    w: &Wormhole,
    path: PathBuf,
    transfer: &Transfer,
    callback: Py<PyAny>,
) -> PyResult<()> {
    let fut = send_fut(w, path, transfer);
    engine()?
        .handle()
        .spawn(async move { complete(callback, fut.await) });
    Ok(())
}

/// Send the file or directory at `path`, blocking without holding the interpreter.
#[pyfunction]
#[pyo3(signature = (w, path, transfer, timeout=None))]
fn wait_send(
    py: Python<'_>,
    w: &Wormhole,
    path: PathBuf,
    transfer: &Transfer,
    timeout: Option<f64>,
) -> PyResult<()> {
    let timeout = secs(timeout, "timeout")?;
    let fut = send_fut(w, path, transfer);
    let (token, inner) = (transfer.opts.cancel.clone(), w.inner.clone());
    block_on_with(
        py,
        fut,
        timeout,
        move || {
            token.cancel();
            inner.cancel();
        },
        &mut |py| transfer.deliver_here(py),
        Some(DRAIN),
    )
    .map(|_| ())
}

/// Wait for the sender's offer and call `callback(error, value)` on the dispatcher
/// thread: `value` is an `Offer`, or the text (str) of a text offer (already
/// acknowledged).
#[pyfunction]
fn start_receive(w: &Wormhole, transfer: &Transfer, callback: Py<PyAny>) -> PyResult<()> {
    let fut = receive_fut(w, transfer);
    engine()?
        .handle()
        .spawn(async move { complete(callback, fut.await) });
    Ok(())
}

/// Wait for the sender's offer, blocking without holding the interpreter: an `Offer`,
/// or the text (str) of a text offer.
#[pyfunction]
#[pyo3(signature = (w, transfer, timeout=None))]
fn wait_receive(
    py: Python<'_>,
    w: &Wormhole,
    transfer: &Transfer,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let timeout = secs(timeout, "timeout")?;
    let fut = receive_fut(w, transfer);
    let (token, inner) = (transfer.opts.cancel.clone(), w.inner.clone());
    block_on_with(
        py,
        fut,
        timeout,
        move || {
            token.cancel();
            inner.cancel();
        },
        &mut |_| Ok(()),
        None,
    )
    .map(|o| o.into_py(py))
}

/// Delegated mode: start sending the file or directory at `path`; its events (progress,
/// `file_sent`) arrive with the wormhole's other events.
#[pyfunction]
fn start_send_file(w: &Wormhole, path: PathBuf, transfer: &Transfer) -> PyResult<()> {
    w.inner
        .start_send_file(&path, transfer.opts.clone())
        .map_err(to_pyerr)
}

/// Delegated mode: start receiving; the `offer` (or `text_received`) event follows.
#[pyfunction]
fn start_receive_file(w: &Wormhole, transfer: &Transfer) -> PyResult<()> {
    w.inner
        .start_receive_file(transfer.opts.clone())
        .map_err(to_pyerr)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(start_send_file, m)?)?;
    m.add_function(wrap_pyfunction!(start_receive_file, m)?)?;
    m.add_class::<Transfer>()?;
    m.add_class::<Offer>()?;
    m.add_function(wrap_pyfunction!(start_send, m)?)?;
    m.add_function(wrap_pyfunction!(wait_send, m)?)?;
    m.add_function(wrap_pyfunction!(start_receive, m)?)?;
    m.add_function(wrap_pyfunction!(wait_receive, m)?)?;
    Ok(())
}
