//! Tor for Kotlin and Swift: [`find_tor`] finds (or launches) a tor with the core's
//! discovery, and [`WormholeOptions::tor`](super::WormholeOptions::tor) makes a wormhole's
//! every connection go through it, with the reference's Tor rules.

use std::sync::Arc;

use super::error::WormholeError;

/// How [`find_tor`] finds a tor. Every field has a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, ::uniffi::Record)]
pub struct TorSettings {
    /// The control port, `tcp:HOST:PORT` or `unix:PATH`; none: the usual places
    /// (`unix:/var/run/tor/control`, 127.0.0.1:9051, 9151), else SOCKS only (9050, 9150).
    #[uniffi(default = None)]
    pub control_port: Option<String>,
    /// Start a private tor instead (it stops when the last handle to it is released).
    #[uniffi(default = false)]
    pub launch: bool,
    /// The control port's password, if it wants one.
    #[uniffi(default = None)]
    pub password: Option<String>,
    /// Publish an onion service for each transfer (needs the control port), so that two
    /// Tor-mode peers connect without a relay.
    #[uniffi(default = false)]
    pub onion: bool,
}

/// A tor found or launched by [`find_tor`].
#[derive(Debug, ::uniffi::Object)]
pub struct Tor {
    pub(crate) inner: Arc<wormhole_core::tor::Tor>,
}

impl PartialEq for Tor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Tor {}

#[::uniffi::export]
impl Tor {
    /// The SOCKS port every connection goes through, `HOST:PORT`.
    pub fn socks_address(&self) -> String {
        self.inner.socks().server.clone()
    }

    /// How it was found: `launched`, `control-port`, `default-control-port` or
    /// `socks-only`.
    pub fn found(&self) -> String {
        use wormhole_core::tor::Found;
        match self.inner.found() {
            Found::Launched => "launched",
            Found::ControlPort(_) => "control-port",
            Found::DefaultControlPort => "default-control-port",
            Found::SocksOnly => "socks-only",
        }
        .into()
    }
}

/// Find (or launch) a tor as `settings` say. Runs on a thread of its own (the control-port
/// exchange, and for a launch the bootstrap, block); fails with `InvalidArgument` when no
/// tor can be used.
#[::uniffi::export]
pub async fn find_tor(settings: TorSettings) -> Result<Arc<Tor>, WormholeError> {
    let opts = wormhole_core::tor::TorOptions {
        control: settings.control_port,
        password: settings.password,
        launch: settings.launch,
        onion: settings.onion,
        ..wormhole_core::tor::TorOptions::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wormhole-find-tor".into())
        .spawn(move || {
            let _ = tx.send(wormhole_core::tor::Tor::connect(&opts));
        })
        .map_err(|e| WormholeError::invalid_argument(format!("cannot start a thread: {e}")))?;
    let found = rx
        .await
        .map_err(|_| WormholeError::invalid_argument("the tor search ended without a result"))?;
    Ok(Arc::new(Tor {
        inner: Arc::new(found?),
    }))
}
