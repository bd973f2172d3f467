//! The mailbox server's configuration: where channels are stored ([`Database`]), the
//! protective [`Limits`], and the rest of [`MailboxConfig`]. Plain data: nothing here
//! refers to the rest of the server.

use std::path::PathBuf;
use std::time::Duration;

/// Where the server keeps its channels (nameplates, mailboxes, messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An in-memory SQLite database: lost when the server stops (for tests and benchmarks).
    Memory,
    /// An SQLite file (created if missing, WAL mode): channels survive a restart, even
    /// after the process is killed.
    File(PathBuf),
    /// A PostgreSQL database, by its connection URL (`postgres://user@host:port/dbname`,
    /// anything `tokio-postgres` accepts). Several server processes may share it, behind
    /// a TCP load balancer: a message added through one reaches subscribers connected to
    /// another. The tables are created if missing.
    Postgres(String),
}

/// Protective limits. Every limit answers the client with an `error` frame; none crashes
/// the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted WebSocket frame and message, in bytes (`message too large`, then
    /// the connection is closed). Also how far a connection may fall behind on `message`
    /// broadcasts: when more than twice this (at least 64 KiB) waits for a client that does
    /// not read, its connection is closed, so that it reconnects and `open` replays the
    /// mailbox (a client is never left with a gap).
    pub max_message_bytes: usize,
    /// Most messages stored in one mailbox (`too many messages in this mailbox`, then the
    /// connection is closed).
    pub max_messages_per_mailbox: usize,
    /// Most mailboxes alive at once for one app id (`too many mailboxes for this app id`
    /// on the `allocate`, `claim` or `open` that would create one more).
    pub max_mailboxes_per_app: usize,
    /// Most bytes of stored messages, all mailboxes together (`server storage is full` on
    /// the `add` that would exceed it; the connection stays open). A message counts its
    /// strings (app id, mailbox id, side, phase, body, id) and a little bookkeeping, so
    /// this approximates the room messages take in the database.
    pub max_stored_bytes: u64,
    /// Most bytes of stored messages added from one client address, counted the same way
    /// (`too much data stored from your address`). IPv6 addresses count by their /64
    /// network. Messages stored before the server started count only in the total.
    pub max_stored_bytes_per_ip: u64,
    /// Largest size of the database file, or `None` for no limit (SQLite's
    /// `max_page_count`). A request that would need more room, like any request while the
    /// disk is full, is answered `server storage is full` and not stored; the server
    /// goes on, and serves again once mailboxes are closed or pruned (or space freed).
    /// SQLite only: on PostgreSQL, limit the database with the server's own means (a
    /// tablespace on a volume of that size); a full disk is answered the same way.
    pub max_database_bytes: Option<u64>,
    /// Most simultaneous client connections (`server is full`, then closed). Lowered
    /// when the server starts to fit the process's file-descriptor limit
    /// (`RLIMIT_NOFILE`, less 64 kept for everything else); see
    /// [`MailboxHandle::limits`](super::MailboxHandle::limits).
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (`too many connections from your
    /// address`, then closed). Loopback is not exempt. When `max_connections` is lowered
    /// to fit the descriptor limit this is lowered to at most half of it, so that one
    /// address still cannot take every connection.
    pub max_connections_per_ip: usize,
    /// A connection that sends no frame (WebSocket pings count) for this long is closed.
    pub idle_timeout: Duration,
    /// A connection whose client reads nothing of what we write for this long (the write
    /// makes no progress) is closed.
    pub write_timeout: Duration,
}

impl Default for Limits {
    /// 1 MiB messages, 500 messages per mailbox, 10,000 mailboxes per app id, 1 GiB of
    /// stored messages and 32 MiB of them per address, no database size limit, 20,000
    /// connections, 5,000 per address (so 1,000 concurrent pairs from one host fit), 30
    /// minutes of idleness, and 60 seconds for a write that makes no progress.
    fn default() -> Self {
        Limits {
            max_message_bytes: 1 << 20,
            max_messages_per_mailbox: 500,
            max_mailboxes_per_app: 10_000,
            max_stored_bytes: 1 << 30,
            max_stored_bytes_per_ip: 32 << 20,
            max_database_bytes: None,
            max_connections: 20_000,
            max_connections_per_ip: 5_000,
            idle_timeout: Duration::from_secs(30 * 60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Mailbox server configuration.
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// Where channels are stored.
    pub database: Database,
    /// Message of the day, sent in every `welcome` as `motd`.
    pub motd: Option<String>,
    /// Sent in every `welcome` as `error`: every client then fails (to retire a server).
    pub signal_error: Option<String>,
    /// Sent in every `welcome` as `current_cli_version`.
    pub current_cli_version: Option<String>,
    /// Answer `list` with the app's nameplates (`false`: always an empty list).
    pub allow_list: bool,
    /// Protective limits.
    pub limits: Limits,
    /// How often stale mailboxes are pruned.
    pub prune_interval: Duration,
    /// A mailbox untouched (and without a subscribed connection) for this long is deleted
    /// at the next prune, with its messages and nameplate.
    pub channel_expiry: Duration,
}

impl Default for MailboxConfig {
    /// In-memory database, no `motd`, listing allowed, default [`Limits`], prune every 5
    /// minutes, expire after 11 minutes (as the reference server).
    fn default() -> Self {
        MailboxConfig {
            database: Database::Memory,
            motd: None,
            signal_error: None,
            current_cli_version: None,
            allow_list: true,
            limits: Limits::default(),
            prune_interval: Duration::from_secs(5 * 60),
            channel_expiry: Duration::from_secs(11 * 60),
        }
    }
}
