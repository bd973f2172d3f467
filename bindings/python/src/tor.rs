//! `find_tor` and the `Tor` handle behind `wormhole.tor_manager.get_tor()`: the core's
//! Tor discovery (control port, SOCKS only, or a launched tor), blocking, run by the Python
//! side in a thread.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use wormhole_core::tor::{Found, TorOptions};

use crate::errors::NoTorError;

/// A tor found or launched by [`find_tor`]; pass it to `create(..., tor=)`. A launched tor
/// stops when the last handle (and every wormhole using it) is gone.
#[pyclass(frozen, module = "wormhole._native")]
pub struct Tor {
    pub(crate) inner: Arc<wormhole_core::tor::Tor>,
}

#[pymethods]
impl Tor {
    /// The SOCKS port every connection goes through, `HOST:PORT`.
    #[getter]
    fn socks(&self) -> String {
        self.inner.socks().server.clone()
    }

    /// Stop a launched tor now and remove its directory (nothing for a found one).
    fn stop(&self) {
        self.inner.stop();
    }

    /// How it was found: `launched`, `control-port`, `default-control-port` or
    /// `socks-only`.
    #[getter]
    fn found(&self) -> &'static str {
        match self.inner.found() {
            Found::Launched => "launched",
            Found::ControlPort(_) => "control-port",
            Found::DefaultControlPort => "default-control-port",
            Found::SocksOnly => "socks-only",
        }
    }
}

/// Find a tor (through `control`, else the usual places) or launch one. Blocking: the
/// interpreter is released while it waits. Raises `NoTorError` when no tor can be used.
#[pyfunction]
#[pyo3(signature = (control=None, launch=false, password=None, launch_config=None, launch_timeout=None, onion=false))]
fn find_tor(
    py: Python<'_>,
    control: Option<String>,
    launch: bool,
    password: Option<String>,
    launch_config: Option<Vec<String>>,
    launch_timeout: Option<f64>,
    onion: bool,
) -> PyResult<Tor> {
    let launch_timeout = match launch_timeout {
        Some(t) if t.is_finite() && t > 0.0 => Duration::from_secs_f64(t),
        Some(_) => {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "launch_timeout must be a positive number of seconds",
            ));
        }
        None => Duration::ZERO,
    };
    let opts = TorOptions {
        control,
        password,
        launch,
        launch_config: launch_config.unwrap_or_default(),
        launch_timeout,
        onion,
    };
    let found = py.detach(move || wormhole_core::tor::Tor::connect(&opts));
    match found {
        Ok(t) => Ok(Tor { inner: Arc::new(t) }),
        Err(e) => Err(NoTorError::new_err(e.to_string())),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Tor>()?;
    m.add_function(wrap_pyfunction!(find_tor, m)?)?;
    Ok(())
}
