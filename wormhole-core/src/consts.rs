//! The crate's constants, in a file of their own so every module can use them.

/// The app id of the reference `wormhole send`/`receive` file-transfer tool.
pub const TRANSFER_APPID: &str = "lothar.com/wormhole/text-or-file-xfer";
/// The public mailbox server the reference 0.24 CLI uses by default.
pub const PUBLIC_RELAY_URL: &str = "ws://relay.magic-wormhole.io:4000/v1";
/// This library's version, sent as `client_version` in `bind`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
