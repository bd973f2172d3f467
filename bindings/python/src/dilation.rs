//! Dilation for the Python package (`wormhole._native.Dilated`, `SubchannelListener`,
//! `Subchannel`): conversion and lifetime glue over `wormhole_core::dilation`. The
//! package's `wormhole/_dilation.py` builds the reference's Twisted API, the seed's
//! endpoints and asyncio streams on these.
//!
//! Every wait is core's: a read is [`CoreSubchannel::recv_batch`] (one crossing into
//! Python per batch of records, never more than the caller asked for), a write is queued
//! to a per-subchannel writer task that waits on core's write window. The Python side
//! learns it should pause when a write returns `True` (more than [`HIGH_WATER`] bytes
//! queued here) and is called back once the queue fell to [`LOW_WATER`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use tokio::sync::mpsc;
use wormhole_core::dilation::handle::{
    Dilated as CoreDilated, Subchannel as CoreSubchannel,
    SubchannelListener as CoreSubchannelListener,
};
use wormhole_core::dilation::keys::Role;
use wormhole_core::dilation::manager::Event as DilationEvent;
use wormhole_core::{Error, Result};

use crate::errors::to_pyerr;
use crate::glue::{Out, complete, dispatch, engine};

/// Bytes queued in a subchannel's writer above which `write` asks the caller to pause.
/// Core's own write window (16 MiB) is behind it, so this only needs to cover a burst.
pub(crate) const HIGH_WATER: usize = 1 << 20;
/// Queued bytes at which a paused writer is told to go on.
pub(crate) const LOW_WATER: usize = 256 << 10;

/// One status event as a dict for the Python side (`kind` and its fields).
fn status_to_py(py: Python<'_>, ev: DilationEvent) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    match ev {
        DilationEvent::Generation { generation, role } => {
            d.set_item("kind", "generation")?;
            d.set_item("generation", generation)?;
            d.set_item("leader", role == Role::Leader)?;
        }
        DilationEvent::Connected {
            generation, path, ..
        } => {
            d.set_item("kind", "connected")?;
            d.set_item("generation", generation)?;
            d.set_item("relay", path.relay)?;
            d.set_item("peer", path.peer)?;
        }
        DilationEvent::Reconnecting { generation } => {
            d.set_item("kind", "reconnecting")?;
            d.set_item("generation", generation)?;
        }
        DilationEvent::Warning(e) => {
            d.set_item("kind", "warning")?;
            d.set_item("message", e.to_string())?;
        }
        DilationEvent::Failed(e) => {
            d.set_item("kind", "failed")?;
            d.set_item("message", e.to_string())?;
        }
    }
    Ok(d.into_any().unbind())
}

/// A dilated wormhole (`Wormhole.dilate(...)`).
#[pyclass(module = "wormhole._native", name = "Dilated", frozen)]
pub(crate) struct Dilated {
    inner: Arc<CoreDilated>,
}

impl Dilated {
    pub(crate) fn new(inner: CoreDilated) -> Dilated {
        Dilated {
            inner: Arc::new(inner),
        }
    }
}

#[pymethods]
impl Dilated {
    /// Accept the peer's subchannels for `name` (held ones first). Once per name
    /// (`InvalidStateError` otherwise). Never waits.
    fn listen(&self, name: &str) -> PyResult<SubchannelListener> {
        let inner = self.inner.listen(name).map_err(to_pyerr)?;
        Ok(SubchannelListener {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
        })
    }

    /// Open a subchannel to the peer's `name`; `callback(error, Subchannel)` once our
    /// role is known.
    fn start_connect(&self, name: String, callback: Py<PyAny>) -> PyResult<()> {
        let d = self.inner.clone();
        engine()?.handle().spawn(async move {
            let r = d.connect(&name).await.map(subchannel_out);
            complete(callback, r);
        });
        Ok(())
    }

    /// `callback(error, status)` with the next status event (a dict with `kind`:
    /// `generation`, `connected`, `reconnecting`, `warning`, `failed`), or `None` once
    /// Dilation ended. One call per event.
    fn start_next_status(&self, callback: Py<PyAny>) -> PyResult<()> {
        let d = self.inner.clone();
        engine()?.handle().spawn(async move {
            let r = match d.next_event().await {
                None => Out::None,
                Some(ev) => Out::Py(Box::new(move |py| status_to_py(py, ev))),
            };
            complete(callback, Ok(r));
        });
        Ok(())
    }
}

fn subchannel_out(sub: CoreSubchannel) -> Out {
    Out::Py(Box::new(move |py| {
        let s = Subchannel::new(sub)?;
        Ok(Py::new(py, s)?.into_any())
    }))
}

/// The peer's subchannels for one subprotocol.
#[pyclass(module = "wormhole._native", name = "SubchannelListener", frozen)]
pub(crate) struct SubchannelListener {
    inner: Arc<tokio::sync::Mutex<CoreSubchannelListener>>,
}

#[pymethods]
impl SubchannelListener {
    /// `callback(error, Subchannel)` with the next subchannel the peer opens, or
    /// `callback(None, None)` once Dilation ended.
    fn start_accept(&self, callback: Py<PyAny>) -> PyResult<()> {
        let l = self.inner.clone();
        engine()?.handle().spawn(async move {
            let r = match l.lock().await.accept().await {
                Some(sub) => subchannel_out(sub),
                None => Out::None,
            };
            complete(callback, Ok(r));
        });
        Ok(())
    }
}

/// What a subchannel's writer task does, in the order the application asked.
enum WriteOp {
    Data(Vec<u8>),
    Close,
}

/// What `write` and the writer task share.
#[derive(Default)]
struct WriteState {
    /// Bytes queued and not yet taken by core's write window.
    queued: AtomicUsize,
    /// `write` told the caller to pause; the writer calls `on_writable` when it may go on.
    paused: AtomicBool,
    /// No more writes: closed by us, or a send failed.
    closed: AtomicBool,
    /// Why a send failed (then writes are refused with it).
    failed: Mutex<Option<String>>,
    on_writable: Mutex<Option<Arc<Py<PyAny>>>>,
}

impl WriteState {
    /// Clear a pause the queue no longer justifies; true for whoever cleared it (that one
    /// owns the wake-up).
    fn unpause(&self) -> bool {
        self.queued.load(Ordering::Acquire) <= LOW_WATER
            && self.paused.swap(false, Ordering::AcqRel)
    }

    /// The queue fell: tell a paused writer to go on (once per pause).
    fn drained(&self) {
        if self.unpause() {
            let cb = self
                .on_writable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(cb) = cb {
                dispatch(Box::new(move |py| {
                    if let Err(e) = cb.call0(py) {
                        e.write_unraisable(py, Some(cb.bind(py)));
                    }
                }));
            }
        }
    }
}

/// One subchannel: records in order, both ways.
#[pyclass(module = "wormhole._native", name = "Subchannel", frozen)]
pub(crate) struct Subchannel {
    id: u32,
    name: String,
    reader: Arc<tokio::sync::Mutex<CoreSubchannel>>,
    writes: mpsc::UnboundedSender<WriteOp>,
    state: Arc<WriteState>,
}

impl Subchannel {
    fn new(sub: CoreSubchannel) -> PyResult<Subchannel> {
        let name = sub.name().to_owned();
        let (writes, mut rx) = mpsc::unbounded_channel::<WriteOp>();
        let state = Arc::new(WriteState::default());
        let sender = sub.sender();
        let st = state.clone();
        let reader = Arc::new(tokio::sync::Mutex::new(sub));
        // The writer keeps the subchannel open until it sent what was queued (dropping
        // the handle closes it).
        let keep = reader.clone();
        let id = sender.id();
        engine()?.handle().spawn(async move {
            let _keep = keep;
            while let Some(op) = rx.recv().await {
                match op {
                    WriteOp::Data(data) => {
                        let n = data.len();
                        let r = sender.send(data).await;
                        st.queued.fetch_sub(n, Ordering::AcqRel);
                        if let Err(e) = r {
                            fail(&st, e);
                            break;
                        }
                        st.drained();
                    }
                    WriteOp::Close => {
                        if let Err(e) = sender.close() {
                            fail(&st, e);
                        }
                        break;
                    }
                }
            }
            // Whatever is still queued will not be sent: nobody waits for it.
            rx.close();
            while let Ok(op) = rx.try_recv() {
                if let WriteOp::Data(d) = op {
                    st.queued.fetch_sub(d.len(), Ordering::AcqRel);
                }
            }
            st.drained();
        });
        Ok(Subchannel {
            id,
            name,
            reader,
            writes,
            state,
        })
    }

    fn refused(&self) -> PyErr {
        let why = self
            .state
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        to_pyerr(Error::InvalidState(
            why.unwrap_or_else(|| format!("subchannel {} is closed", self.id)),
        ))
    }
}

fn fail(st: &WriteState, e: Error) {
    st.closed.store(true, Ordering::Release);
    let mut f = st.failed.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_none() {
        *f = Some(e.to_string());
    }
}

#[pymethods]
impl Subchannel {
    /// The subchannel id (odd: opened by the Leader, even: by the Follower).
    #[getter]
    fn id(&self) -> u32 {
        self.id
    }

    /// The subprotocol name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// `callback(error, records)`: the next records (a list of bytes, at least one, at
    /// most about `max_bytes` in all), `None` once the peer closed, or the error that
    /// ended Dilation. One read at a time.
    fn start_read(&self, max_bytes: usize, callback: Py<PyAny>) -> PyResult<()> {
        let r = self.reader.clone();
        engine()?.handle().spawn(async move {
            let got = r.lock().await.recv_batch(max_bytes.max(1)).await;
            let out: Result<Out> = got.map(|batch| match batch {
                None => Out::None,
                Some(records) => Out::Py(Box::new(move |py| {
                    let items = records.iter().map(|b| PyBytes::new(py, b));
                    Ok(PyList::new(py, items)?.into_any().unbind())
                })),
            });
            complete(callback, out);
        });
        Ok(())
    }

    /// Queue one record (delivered whole, in order). Returns `True` when more than
    /// `HIGH_WATER` bytes are queued: the caller should pause until `on_writable` is
    /// called. Refused (`InvalidStateError`) once closed or failed.
    fn write(&self, data: &[u8]) -> PyResult<bool> {
        if self.state.closed.load(Ordering::Acquire) {
            return Err(self.refused());
        }
        let n = data.len();
        let total = self.state.queued.fetch_add(n, Ordering::AcqRel) + n;
        if self.writes.send(WriteOp::Data(data.to_vec())).is_err() {
            self.state.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(self.refused());
        }
        if total <= HIGH_WATER {
            return Ok(false);
        }
        self.state.paused.store(true, Ordering::Release);
        // The writer may have drained meanwhile.
        Ok(!self.state.unpause())
    }

    /// `callback()` (no arguments, on the dispatcher thread) when a paused writer may
    /// go on.
    fn set_on_writable(&self, callback: Py<PyAny>) {
        *self
            .state
            .on_writable
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(callback));
    }

    /// Bytes queued and not yet taken by the connection's write window.
    fn queued(&self) -> usize {
        self.state.queued.load(Ordering::Acquire)
    }

    /// Close after the queued records (CLOSE; the peer answers with its own, which ends
    /// reading). Later calls do nothing.
    fn close(&self) {
        if !self.state.closed.swap(true, Ordering::AcqRel) {
            let _ = self.writes.send(WriteOp::Close);
        }
    }

    /// Whether `close` was called or a write failed.
    #[getter]
    fn closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Dilated>()?;
    m.add_class::<SubchannelListener>()?;
    m.add_class::<Subchannel>()?;
    m.add("SUBCHANNEL_HIGH_WATER", HIGH_WATER)?;
    Ok(())
}
