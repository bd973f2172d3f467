//! A Magic Wormhole rendezvous (mailbox) server and transit relay.
//!
//! Both speak the protocol of the reference servers (magic-wormhole-mailbox-server 0.8.0
//! and magic-wormhole-transit-relay 0.5.0, PROTOCOL §3.5 and §7.7), so every client that
//! works with those works with these. Each is a library first: bind on an address (port 0
//! for tests), spawn on the current tokio runtime, shut down.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use wormhole_server::{MailboxConfig, MailboxServer, RelayConfig, RelayServer};
//! let mailbox = MailboxServer::bind("127.0.0.1:0", MailboxConfig::default()).await?.spawn();
//! let relay = RelayServer::bind("127.0.0.1:0", None, RelayConfig::default()).await?.spawn();
//! println!("mailbox {} relay {}", mailbox.url(), relay.local_addr());
//! mailbox.shutdown().await;
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

pub mod mailbox;
pub mod relay;

pub use mailbox::{
    Database, Health, Limits, MailboxConfig, MailboxHandle, MailboxServer, serve_health,
};
pub use relay::{RelayConfig, RelayHandle, RelayServer};
