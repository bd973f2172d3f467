//! Dilation for Kotlin and Swift: [`Wormhole::dilate`](super::wormhole::Wormhole::dilate)
//! gives a [`Dilated`]; subchannels have suspend/async `send` (waits while the write
//! window is full: backpressure) and `recv` (one record per call). Status comes from
//! [`Dilated::next_status`], or on a delegated wormhole through the [`DilationDelegate`]
//! given to `dilate`, in order with the wormhole's other events.

use std::sync::Arc;
use std::time::Duration;

use wormhole_core::dilation::handle::{self as core, DilationEvent};
use wormhole_core::dilation::keys::Role;

use super::error::{DelegateError, WormholeError};

/// Settings of `dilate`. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, ::uniffi::Record)]
pub struct DilationOptions {
    /// A transit relay, `tcp:HOST:PORT`; none: direct connections only.
    #[uniffi(default = None)]
    pub relay: Option<String>,
    /// Do not listen for direct connections (and send no direct hints).
    #[uniffi(default = false)]
    pub no_listen: bool,
    /// The Leader's keepalive interval in milliseconds (30 s): a connection that does not
    /// answer by the next one is replaced.
    #[uniffi(default = 30000)]
    pub ping_interval_ms: u64,
}

impl DilationOptions {
    pub(crate) fn to_core(&self) -> core::DilationOptions {
        core::DilationOptions {
            relay: self.relay.clone(),
            no_listen: self.no_listen,
            ping_interval: Duration::from_millis(self.ping_interval_ms.max(1)),
            ..Default::default()
        }
    }
}

/// A change in the dilated connection.
#[derive(Debug, Clone, PartialEq, Eq, ::uniffi::Enum)]
pub enum DilationStatus {
    /// A generation of connection attempts started (1 for the first); our role is known,
    /// so `connect` returns at once from here.
    Generation {
        /// Its number.
        generation: u32,
        /// Whether we lead (the side that selects connections).
        leader: bool,
    },
    /// A connection was selected for `generation` (the first: "dilated").
    Connected {
        /// The generation.
        generation: u32,
        /// Through a transit relay.
        relay: bool,
        /// The remote address (`host:port`), when known.
        peer: Option<String>,
    },
    /// The connection of `generation` was lost; a new one is being made. Nothing written
    /// is lost.
    Reconnecting {
        /// The generation that was lost.
        generation: u32,
    },
    /// A peer message was ignored; Dilation goes on.
    Warning {
        /// Why.
        message: String,
    },
    /// Dilation failed for good; subchannel calls fail from now on.
    Failed {
        /// Why.
        message: String,
    },
}

impl DilationStatus {
    pub(crate) fn from_core(ev: &DilationEvent) -> Self {
        match ev {
            DilationEvent::Generation { generation, role } => DilationStatus::Generation {
                generation: *generation,
                leader: *role == Role::Leader,
            },
            DilationEvent::Connected {
                generation, path, ..
            } => DilationStatus::Connected {
                generation: *generation,
                relay: path.relay,
                peer: path.peer.clone(),
            },
            DilationEvent::Reconnecting { generation } => DilationStatus::Reconnecting {
                generation: *generation,
            },
            DilationEvent::Warning(e) => DilationStatus::Warning {
                message: e.to_string(),
            },
            DilationEvent::Failed(e) => DilationStatus::Failed {
                message: e.to_string(),
            },
        }
    }
}

/// Receives the Dilation status of a wormhole made with `Wormhole.withDelegate`, on its
/// event thread, in order with the delegate's other calls.
#[::uniffi::export(with_foreign)]
pub trait DilationDelegate: Send + Sync {
    /// One status change.
    fn on_status(&self, status: DilationStatus) -> Result<(), DelegateError>;
}

/// A dilated wormhole: subchannels to and from the peer over one durable connection.
#[derive(::uniffi::Object)]
pub struct Dilated {
    pub(crate) inner: core::Dilated,
}

#[::uniffi::export]
impl Dilated {
    /// Accept the peer's subchannels for subprotocol `name` (those it opened before are
    /// held and come first). A name can be listened for once.
    pub fn listen(&self, name: String) -> Result<Arc<SubchannelListener>, WormholeError> {
        Ok(Arc::new(SubchannelListener {
            inner: tokio::sync::Mutex::new(self.inner.listen(&name)?),
        }))
    }

    /// Open a subchannel to the peer's subprotocol `name`. Returns once our role is known
    /// (at once after the `Generation` status); the peer never answers an open, so `send`
    /// may start right away.
    pub async fn connect(&self, name: String) -> Result<Arc<Subchannel>, WormholeError> {
        Ok(Subchannel::wrap(self.inner.connect(&name).await?))
    }

    /// The next status change, or none once Dilation has ended. On a wormhole made with
    /// `withDelegate` the status goes to the `DilationDelegate` instead, and this returns
    /// none.
    pub async fn next_status(&self) -> Option<DilationStatus> {
        self.inner
            .next_event()
            .await
            .map(|e| DilationStatus::from_core(&e))
    }
}

/// The peer's subchannels for one subprotocol, as they are opened.
#[derive(::uniffi::Object)]
pub struct SubchannelListener {
    inner: tokio::sync::Mutex<core::SubchannelListener>,
}

#[::uniffi::export]
impl SubchannelListener {
    /// The next subchannel the peer opened, or none once Dilation has ended.
    pub async fn accept(&self) -> Option<Arc<Subchannel>> {
        self.inner.lock().await.accept().await.map(Subchannel::wrap)
    }
}

/// One subchannel: an ordered, reliable stream of records both ways. `send` and `recv`
/// may run at the same time (in two coroutines or tasks); one `send` is one `recv` on the
/// other side. Releasing it closes it.
#[derive(::uniffi::Object)]
pub struct Subchannel {
    id: u32,
    name: String,
    sender: core::SubchannelSender,
    reader: tokio::sync::Mutex<core::Subchannel>,
}

impl Subchannel {
    fn wrap(s: core::Subchannel) -> Arc<Self> {
        Arc::new(Subchannel {
            id: s.id(),
            name: s.name().to_owned(),
            sender: s.sender(),
            reader: tokio::sync::Mutex::new(s),
        })
    }
}

#[::uniffi::export]
impl Subchannel {
    /// The subchannel id (odd: opened by the Leader, even: by the Follower).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The subprotocol name.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Send one record (delivered whole, in order, exactly once; empty is allowed).
    /// Suspends while 16 MiB are unacknowledged by the peer (all subchannels together).
    pub async fn send(&self, data: Vec<u8>) -> Result<(), WormholeError> {
        Ok(self.sender.send(data).await?)
    }

    /// The next record, or none once the peer closed the subchannel.
    pub async fn recv(&self) -> Result<Option<Vec<u8>>, WormholeError> {
        Ok(self.reader.lock().await.recv().await?)
    }

    /// Close: the peer's `recv` ends after what was sent, and it answers with its own
    /// close, which ends ours: a close ends both directions (no half-close, like the
    /// reference). (Not named `close`, which Kotlin's `AutoCloseable` owns.)
    pub fn shutdown(&self) -> Result<(), WormholeError> {
        Ok(self.sender.close()?)
    }
}
