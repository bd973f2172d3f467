//! The wormhole object for Kotlin and Swift: deferred mode (suspend/async getters) and
//! delegated mode (a [`WormholeDelegate`] receives the events).

use std::sync::Arc;
use std::time::Duration;

use super::delegate::{Outcome, TransferDelegate, TransferUpdate, WormholeDelegate};
use super::dilation::{Dilated, DilationDelegate, DilationOptions, DilationStatus};
use super::error::WormholeError;
use super::input::InputHelper;

/// Options for creating a wormhole. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, ::uniffi::Record)]
pub struct WormholeOptions {
    /// `app_versions` sent to the peer: a JSON object, or none for `{}`.
    #[uniffi(default = None)]
    pub app_versions_json: Option<String>,
    /// Limit for the first connection to the mailbox server, in milliseconds (30 s).
    #[uniffi(default = 30000)]
    pub connect_timeout_ms: u64,
    /// How long closing waits for the server's acknowledgement, in milliseconds (30 s).
    #[uniffi(default = 30000)]
    pub close_timeout_ms: u64,
    /// A SOCKS5 proxy for every connection, the mailbox and Transit:
    /// `[USER:PASSWORD@]HOST:PORT`. The proxy resolves the names; Transit then neither
    /// listens nor sends our addresses. None: connect directly.
    #[uniffi(default = None)]
    pub socks5: Option<String>,
    /// Tor mode: every connection through this tor (from `findTor`), with the reference's
    /// Tor rules; takes the place of `socks5`.
    #[uniffi(default = None)]
    pub tor: Option<Arc<super::tor::Tor>>,
    /// Offer Dilation to the peer (the reference's `dilation=True`); needed for `dilate`.
    #[uniffi(default = false)]
    pub dilation: bool,
}

impl Default for WormholeOptions {
    fn default() -> Self {
        WormholeOptions {
            app_versions_json: None,
            connect_timeout_ms: 30_000,
            close_timeout_ms: 30_000,
            socks5: None,
            tor: None,
            dilation: false,
        }
    }
}

impl WormholeOptions {
    fn to_core(&self) -> Result<wormhole_core::Options, WormholeError> {
        let mut o = wormhole_core::Options::default();
        if let Some(json) = &self.app_versions_json {
            o.app_versions = wormhole_core::Options::parse_app_versions(json)?;
        }
        o.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        o.close_timeout = Duration::from_millis(self.close_timeout_ms);
        if let Some(p) = &self.socks5 {
            o.proxy = Some(wormhole_core::proxy::Socks5::parse(p)?);
        }
        o.tor = self.tor.as_ref().map(|t| t.inner.clone());
        o.dilation = self.dilation;
        Ok(o)
    }
}

/// One wormhole: a code, a shared key, and ordered encrypted messages with one peer.
///
/// Create it with `Wormhole(appid, relayUrl, options)` (getters return when their event
/// happens) or `Wormhole.withDelegate(...)` (events go to the delegate). Releasing the
/// object (Kotlin `close()`/`use {}`, Swift deinit) cancels the wormhole if it is still
/// open: the nameplate is released and the mailbox closed in the background.
/// To close politely and learn the outcome, call [`Wormhole::shutdown`].
#[derive(::uniffi::Object)]
pub struct Wormhole {
    pub(crate) inner: wormhole_core::Wormhole,
    /// Delegated mode: the delegate thread's, where `dilate` puts its `DilationDelegate`.
    dilation_delegate: Option<DilationSlot>,
}

/// The `DilationDelegate` of a delegated wormhole, once `dilate` gave one.
type DilationSlot = Arc<std::sync::Mutex<Option<Arc<dyn DilationDelegate>>>>;

impl Wormhole {
    fn wrap(inner: wormhole_core::Wormhole, dilation_delegate: Option<DilationSlot>) -> Arc<Self> {
        Arc::new(Wormhole {
            inner,
            dilation_delegate,
        })
    }
}

fn len(n: u32, what: &str) -> Result<usize, WormholeError> {
    usize::try_from(n).map_err(|_| WormholeError::invalid_argument(format!("{what} too large")))
}

#[::uniffi::export]
impl Wormhole {
    /// Connects to the mailbox server at `relay_url` (`ws://…/v1` or `wss://…`) for the
    /// application `appid`. Getters wait for their event.
    #[uniffi::constructor]
    pub fn new(
        appid: String,
        relay_url: String,
        options: WormholeOptions,
    ) -> Result<Arc<Self>, WormholeError> {
        let inner = wormhole_core::Wormhole::create(&appid, &relay_url, options.to_core()?)?;
        Ok(Wormhole::wrap(inner, None))
    }

    /// Like the constructor, but every event goes to `delegate`, in order, on a thread of
    /// this wormhole's own (never concurrently). `on_closed` comes last. Transfer events
    /// (of `startSendFile` and friends) go to `transfer_delegate`, on the same thread and
    /// in the same order.
    #[uniffi::constructor(default(transfer_delegate = None))]
    pub fn with_delegate(
        appid: String,
        relay_url: String,
        options: WormholeOptions,
        delegate: Arc<dyn WormholeDelegate>,
        transfer_delegate: Option<Arc<dyn TransferDelegate>>,
    ) -> Result<Arc<Self>, WormholeError> {
        let (inner, events) =
            wormhole_core::Wormhole::create_delegated(&appid, &relay_url, options.to_core()?)?;
        let slot = DilationSlot::default();
        start_delegate_thread(events, delegate, transfer_delegate, slot.clone())?;
        Ok(Wormhole::wrap(inner, Some(slot)))
    }

    /// Continues a wormhole saved with [`Wormhole::serialize`], in this process or a new
    /// one: it reconnects to the same mailbox server and carries on where it was, and the
    /// peer notices nothing. The events that had not reached the delegate when it was
    /// saved come first. Fails with `InvalidArgument` for data that is not a saved
    /// wormhole, of another version, or damaged (the message never quotes it).
    ///
    /// Restoring the same data twice gives two copies of one side: keep one.
    #[uniffi::constructor(default(transfer_delegate = None))]
    pub fn from_serialized(
        data: String,
        options: WormholeOptions,
        delegate: Arc<dyn WormholeDelegate>,
        transfer_delegate: Option<Arc<dyn TransferDelegate>>,
    ) -> Result<Arc<Self>, WormholeError> {
        let (inner, events) = wormhole_core::Wormhole::from_serialized(&data, options.to_core()?)?;
        let slot = DilationSlot::default();
        start_delegate_thread(events, delegate, transfer_delegate, slot.clone())?;
        Ok(Wormhole::wrap(inner, Some(slot)))
    }

    /// Saves this wormhole (made with `withDelegate` or `fromSerialized`, no transfer
    /// running, not closing) as versioned JSON text, to keep in app storage and continue
    /// later with `fromSerialized`, e.g. after the OS ended the app. Call it once the
    /// delegate has handled the events it was given (from a delegate method is fine):
    /// events not yet handed to the delegate are saved and delivered again after a restore.
    ///
    /// **The text holds secrets** (the session key, or the code before it): store it like
    /// a key (encrypted app storage), and never log it.
    pub async fn serialize(&self) -> Result<String, WormholeError> {
        Ok(self.inner.serialize().await?)
    }

    /// `serialize`, then stop this wormhole without a word to the server, as if the app had
    /// ended: the nameplate and mailbox stay claimed and the peer keeps waiting, until
    /// `fromSerialized` continues it (the restored wormhole sends whatever this one had
    /// not sent yet). Afterwards calls fail with `Closed` and the delegate gets no
    /// `onClosed`: the restored wormhole delivers that. Releasing a wormhole instead
    /// cancels it, and the peer learns it is gone. If it fails, the wormhole runs on.
    pub async fn suspend(&self) -> Result<String, WormholeError> {
        Ok(self.inner.suspend().await?)
    }

    /// Asks the server for a fresh nameplate and builds a code of `length` words.
    pub fn allocate_code(&self, length: u32) -> Result<(), WormholeError> {
        Ok(self.inner.allocate_code(len(length, "length")?)?)
    }

    /// Uses a code agreed out of band (`4-purple-sausages`).
    pub fn set_code(&self, code: String) -> Result<(), WormholeError> {
        Ok(self.inner.set_code(&code)?)
    }

    /// Starts interactive code entry with completion.
    pub fn input_code(&self) -> Result<Arc<InputHelper>, WormholeError> {
        Ok(Arc::new(InputHelper {
            inner: self.inner.input_code()?,
        }))
    }

    /// The server's welcome, as a JSON object.
    pub async fn get_welcome(&self) -> Result<String, WormholeError> {
        let welcome = self.inner.get_welcome().await?;
        Ok(serde_json::Value::Object(welcome).to_string())
    }

    /// The code, once allocated, set or typed.
    pub async fn get_code(&self) -> Result<String, WormholeError> {
        Ok(self.inner.get_code().await?)
    }

    /// The shared key before the peer confirmed it (32 bytes).
    pub async fn get_unverified_key(&self) -> Result<Vec<u8>, WormholeError> {
        Ok(self.inner.get_unverified_key().await?.0.to_vec())
    }

    /// The verifier (32 bytes), once a peer message decrypted: compare out of band.
    pub async fn get_verifier(&self) -> Result<Vec<u8>, WormholeError> {
        Ok(self.inner.get_verifier().await?.to_vec())
    }

    /// The peer's `app_versions`, as JSON.
    pub async fn get_versions(&self) -> Result<String, WormholeError> {
        Ok(self.inner.get_versions().await?.to_string())
    }

    /// Queues one message for the peer (allowed before the peer arrives).
    pub fn send_message(&self, message: Vec<u8>) -> Result<(), WormholeError> {
        Ok(self.inner.send_message(message)?)
    }

    /// The next message from the peer, in order.
    pub async fn get_message(&self) -> Result<Vec<u8>, WormholeError> {
        Ok(self.inner.get_message().await?)
    }

    /// Derives `length` bytes for `purpose` from the shared key (`NoKey` before it is
    /// known). Both sides get the same bytes for the same purpose.
    pub fn derive_key(&self, purpose: String, length: u32) -> Result<Vec<u8>, WormholeError> {
        Ok(self.inner.derive_key(&purpose, len(length, "length")?)?)
    }

    /// Sends a text the way `wormhole send --text` does (offer, then wait for the answer).
    /// Use the app id [`super::transfer_appid`] to talk to the `wormhole` CLI.
    pub async fn send_text(&self, text: String) -> Result<(), WormholeError> {
        Ok(wormhole_core::text::send_text(&self.inner, &text).await?)
    }

    /// Receives a text the way `wormhole receive` does (accepts a text offer, refuses a
    /// file or directory offer with an error).
    pub async fn receive_text(&self) -> Result<String, WormholeError> {
        Ok(wormhole_core::text::receive_text(&self.inner).await?)
    }

    /// Closes the wormhole and returns when the server has acknowledged: normally when a
    /// peer was verified ("happy"); else the error says why (`Lonely`, `WrongPassword`…).
    /// (Not named `close`, which Kotlin's `AutoCloseable` owns.)
    pub async fn shutdown(&self) -> Result<(), WormholeError> {
        Ok(self.inner.close().await?)
    }

    /// Dilate (the reference's `w.dilate()`): a durable, encrypted connection to the peer,
    /// direct or through `options.relay`, carrying any number of subchannels. Needs
    /// `WormholeOptions.dilation`, and the peer must dilate too; returns at once. On a
    /// wormhole made with `withDelegate`, status changes go to `delegate` (on the event
    /// thread, in order); otherwise read them with `Dilated.nextStatus` (a delegate is
    /// then refused). Call it once.
    #[uniffi::method(default(delegate = None))]
    pub fn dilate(
        &self,
        options: DilationOptions,
        delegate: Option<Arc<dyn DilationDelegate>>,
    ) -> Result<Arc<Dilated>, WormholeError> {
        if delegate.is_some() && self.dilation_delegate.is_none() {
            return Err(WormholeError::invalid_argument(
                "a DilationDelegate needs a wormhole made with withDelegate",
            ));
        }
        if let (Some(slot), Some(d)) = (&self.dilation_delegate, delegate) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        }
        Ok(Arc::new(Dilated {
            inner: self.inner.dilate(options.to_core())?,
        }))
    }

    /// Cancels the wormhole now: pending calls fail with `Cancelled`. uniffi does not
    /// forward the cancellation of a Kotlin coroutine or Swift task: call this.
    pub fn cancel(&self) {
        self.inner.cancel();
    }
}

/// Delivers `events` to the delegates on a thread of their own, in order, until `Closed`.
fn start_delegate_thread(
    mut events: wormhole_core::Events,
    delegate: Arc<dyn WormholeDelegate>,
    transfer_delegate: Option<Arc<dyn TransferDelegate>>,
    dilation: DilationSlot,
) -> Result<(), WormholeError> {
    std::thread::Builder::new()
        .name("wormhole-delegate".into())
        .spawn(move || {
            while let Some(event) = events.blocking_recv() {
                if let wormhole_core::Event::Dilation(ev) = &event {
                    let d = dilation.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some(d) = d {
                        if let Err(e) = d.on_status(DilationStatus::from_core(ev)) {
                            tracing::warn!("wormhole: a dilation delegate method failed: {e}");
                        }
                    }
                    continue;
                }
                deliver(delegate.as_ref(), transfer_delegate.as_deref(), event);
            }
        })
        .map(drop)
        .map_err(|e| WormholeError::Internal(format!("cannot start the delegate thread: {e}")))
}

/// Hands one event to the delegate. A delegate that throws is logged; the next events are
/// still delivered.
fn deliver(
    d: &dyn WormholeDelegate,
    t: Option<&dyn TransferDelegate>,
    event: wormhole_core::Event,
) {
    use wormhole_core::Event;
    let r = match event {
        Event::Transfer(ev) => match (t, TransferUpdate::from_core(ev)) {
            (Some(t), Some(u)) => t.on_transfer(u),
            _ => Ok(()),
        },
        Event::Welcome(w) => d.on_welcome(serde_json::Value::Object(w).to_string()),
        Event::Code(c) => d.on_code(c),
        Event::UnverifiedKey(k) => d.on_unverified_key(k.0.to_vec()),
        Event::Verifier(v) => d.on_verifier(v.to_vec()),
        Event::Versions(v) => d.on_versions(v.to_string()),
        Event::Message(m) => d.on_message(m),
        Event::Closed(r) => d.on_closed(Outcome::from(r)),
        _ => Ok(()),
    };
    if let Err(e) = r {
        tracing::warn!("wormhole: a delegate method failed: {e}");
    }
}
