//! What connection tasks and the store thread hand each other: the [`Request`]s a
//! connection sends the store and the [`Refusal`]s it may get back, and the broadcast
//! [`Queue`] through which the store delivers `message` [`Frame`]s to a subscribed
//! connection (the store holds its [`Outlet`]). Both sides import this module; it imports
//! neither.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc, oneshot};

/// A server frame without its trailing `, "server_tx": …}`: the connection that sends it
/// appends the send time (see `conn::finish`).
pub(crate) type Frame = Arc<str>;

/// One connection's queue of `message` broadcasts: the store fills it, the connection
/// empties it into its socket.
///
/// Broadcasts are never dropped on the way: a connection that lets more than `budget`
/// bytes of them wait (its client does not read, so writes to it stall) is marked
/// overflowed and notified. It gets nothing more and closes, and its client, on
/// reconnecting, has `open` replay the whole mailbox. A connection that saw a gap would
/// instead wait forever for the missing message.
pub(crate) struct Queue {
    /// Bytes of the frames sent and not yet taken by the connection.
    queued: AtomicUsize,
    /// Most bytes that may wait (one frame always may, however large).
    budget: usize,
    /// Set once, on overflow; from then on nothing is queued.
    overflowed: AtomicBool,
    /// Notified on overflow.
    overflow: Notify,
}

impl Queue {
    /// An empty queue holding at most `budget` bytes.
    pub(crate) fn new(budget: usize) -> Queue {
        Queue {
            queued: AtomicUsize::new(0),
            budget,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
        }
    }

    /// Completes once the queue has overflowed (at once if it already has).
    pub(crate) async fn overflowed(&self) {
        self.overflow.notified().await;
    }

    /// The connection took `frame` out of the queue.
    pub(crate) fn taken(&self, frame: &Frame) {
        self.queued.fetch_sub(frame.len(), Ordering::Relaxed);
    }
}

/// The store's end of a connection's broadcast [`Queue`].
#[derive(Clone)]
pub(crate) struct Outlet {
    /// The frames themselves.
    pub(crate) tx: mpsc::UnboundedSender<Frame>,
    /// What is queued, and the overflow signal.
    pub(crate) queue: Arc<Queue>,
}

impl Outlet {
    /// Queues a broadcast, or overflows the queue when it is over its budget.
    pub(crate) fn push(&self, frame: &Frame) {
        let q = &*self.queue;
        if q.overflowed.load(Ordering::Relaxed) {
            return;
        }
        let len = frame.len();
        let before = q.queued.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before.saturating_add(len) > q.budget {
            q.overflowed.store(true, Ordering::Relaxed);
            q.overflow.notify_one();
        } else {
            // A closed channel: the connection is gone and unsubscribes on its way out.
            let _ = self.tx.send(frame.clone());
        }
    }

    /// The connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Why the store refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A third side on a nameplate or mailbox.
    Crowded,
    /// A side claimed a nameplate it had released.
    Reclaimed,
    /// `max_mailboxes_per_app` reached.
    TooManyMailboxes,
    /// `max_messages_per_mailbox` reached.
    TooManyMessages,
    /// No nameplate left to allocate.
    NoFreeNameplate,
    /// `max_stored_bytes_per_ip` reached by the sender's address.
    AddressStorageFull,
    /// `max_stored_bytes` reached, or the database is out of space (`SQLITE_FULL`).
    StorageFull,
    /// The database failed otherwise. Nothing of the request was kept.
    DatabaseError,
}

/// One request to the store thread. Every reply is sent after the commit.
pub(crate) enum Request {
    /// Nameplates of an app id, sorted as strings.
    List {
        app: Arc<str>,
        reply: oneshot::Sender<Result<Vec<String>, Refusal>>,
    },
    /// Allocate the smallest free nameplate and claim it for `side`.
    Allocate {
        app: Arc<str>,
        side: Arc<str>,
        now: f64,
        reply: oneshot::Sender<Result<String, Refusal>>,
    },
    /// Claim a nameplate; the reply is its mailbox id.
    Claim {
        app: Arc<str>,
        side: Arc<str>,
        nameplate: String,
        now: f64,
        reply: oneshot::Sender<Result<String, Refusal>>,
    },
    /// Release a side's claim.
    Release {
        app: Arc<str>,
        side: Arc<str>,
        nameplate: String,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Open a mailbox for a side and subscribe `conn`; the reply is the stored messages.
    Open {
        app: Arc<str>,
        side: Arc<str>,
        mailbox: String,
        conn: u64,
        outlet: Outlet,
        now: f64,
        reply: oneshot::Sender<Result<Vec<Frame>, Refusal>>,
    },
    /// Store a message and broadcast it to the mailbox's subscribers.
    Add {
        app: Arc<str>,
        side: Arc<str>,
        /// The sender's address, as [`client_key`] gives it.
        client: IpAddr,
        mailbox: String,
        /// JSON text of the `phase` value.
        phase: String,
        /// JSON text of the `body` value.
        body: String,
        /// JSON text of the `add` frame's `id` (`null` when absent).
        id: String,
        now: f64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Close a side of a mailbox (opening it first if needed) and unsubscribe `conn`.
    Close {
        app: Arc<str>,
        side: Arc<str>,
        mailbox: String,
        mood: Option<String>,
        conn: u64,
        now: f64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A connection went away while subscribed.
    Unsubscribe {
        app: Arc<str>,
        mailbox: String,
        conn: u64,
    },
    /// Delete mailboxes untouched since `now - expiry` (subscribed ones count as touched).
    Prune { now: f64, expiry: f64 },
    /// Commit, checkpoint, close the database and answer.
    Shutdown { done: oneshot::Sender<()> },
}

/// The address a client's stored bytes are accounted to: IPv4 addresses as they are, IPv6
/// addresses by their /64 network (one host usually has a whole /64 to pick from).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// A float the way Python's `repr` writes it (`12.0`, `1795354269.490503`).
pub(crate) fn py_float(x: f64) -> String {
    if !x.is_finite() {
        return "0.0".to_owned();
    }
    let s = format!("{x}");
    if s.contains('.') { s } else { s + ".0" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_key_groups_ipv6_by_slash_64() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::ffff"), "2001:db8:1:2::");
        assert_eq!(key("::1"), "::");
    }
}
